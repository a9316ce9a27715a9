import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM and SIGINT (and SIGHUP, when given a handler) handled on a dispatch queue (not in a
/// signal handler, so the handlers may do anything), and SIGPIPE ignored: a closed socket is an error return, not the end of the process.
final class TerminationSignals {
    private var sources: [DispatchSourceSignal] = []

    init(_ handler: @escaping () -> Void, hangup: (() -> Void)? = nil) {
        signal(SIGPIPE, SIG_IGN)
        if let hangup {
            signal(SIGHUP, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
            source.setEventHandler(handler: hangup)
            source.resume()
            sources.append(source)
        }
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            sources.append(source)
        }
    }

    /// Keeps the handlers installed until here (call after the work they guard).
    func keep() { withExtendedLifetime(sources) {} }
}
