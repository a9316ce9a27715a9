import Dispatch

/// Unlinks files on a background thread, so deleting a large segment never stalls a shard.
/// Thread-safe.
public final class BackgroundUnlinker: Sendable {
    public static let shared = BackgroundUnlinker()
    private let queue = DispatchQueue(label: "apus.unlink", qos: .utility)

    public func unlink(_ paths: [String]) {
        guard !paths.isEmpty else { return }
        queue.async {
            for path in paths { try? Sys.unlink(path) }
        }
    }

    /// Blocks until every unlink queued so far is done (tests, shutdown).
    public func waitUntilIdle() {
        queue.sync {}
    }
}
