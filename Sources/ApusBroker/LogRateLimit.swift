/// Lets the first `perSecond` events of each second through to the log and counts the rest, so
/// that a flood of bad clients (a fuzzer, a password guesser) cannot flood the log: the caller
/// logs one summary line with the count when the next second begins.
public struct LogRateLimit: Sendable {
    public let perSecond: Int
    private var windowStartMs: Int64 = 0
    private var logged = 0
    private var suppressed = 0

    public init(perSecond: Int) { self.perSecond = perSecond }

    /// Whether this event may be logged; `summary(count, seconds)` is called first when events
    /// were held back in the window that just ended.
    public mutating func allow(nowMs: Int64, summary: (_ count: Int, _ seconds: Double) -> Void) -> Bool {
        if nowMs - windowStartMs >= 1_000 {
            if suppressed > 0 { summary(suppressed, Double(nowMs - windowStartMs) / 1000) }
            (windowStartMs, logged, suppressed) = (nowMs, 0, 0)
        }
        guard logged < perSecond else {
            suppressed += 1
            return false
        }
        logged += 1
        return true
    }
}
