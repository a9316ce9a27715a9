import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM and SIGINT handled on a dispatch queue (not in a signal handler, so `handler` may do
/// anything), and SIGPIPE ignored: a closed socket is an error return, not the end of the process.
final class TerminationSignals {
    private var sources: [DispatchSourceSignal] = []

    init(_ handler: @escaping () -> Void) {
        signal(SIGPIPE, SIG_IGN)
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
