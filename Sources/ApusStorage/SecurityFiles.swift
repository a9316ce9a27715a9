import ApusIO

/// The broker's security state on disk — SCRAM credentials and ACLs — one small file each in
/// `<data dir>/.security/`, rewritten whole and atomically (write, sync, rename, directory sync)
/// by the disk worker at every change and read at start-up.
extension LogManager {
    static let securityDirectory = ".security"

    private var securityPath: String { dataDirectory + "/" + Self.securityDirectory }

    /// The file `name`'s bytes, or nil if there is none.
    public func securityFile(_ name: String) throws(StorageError) -> [UInt8]? {
        do {
            return try Sys.readFile(securityPath + "/" + name)
        } catch {
            throw .io(error)
        }
    }

    /// Replaces the file `name`. Waits on the disk: call it off the shard threads.
    public func writeSecurityFile(_ name: String, _ bytes: [UInt8]) throws(StorageError) {
        do {
            if !Sys.exists(securityPath) {
                try Sys.makeDirectories(securityPath)
                try Sys.syncDirectory(dataDirectory)
            }
            try Sys.writeFileAtomically(securityPath + "/" + name, bytes)
        } catch {
            throw .io(error)
        }
    }
}
