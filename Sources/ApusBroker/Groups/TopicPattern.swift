/// A regular expression over topic names that matches in linear time (a Thompson NFA run as a
/// state set, as RE2 — which Kafka uses for subscriptions — does), so that a client's pattern
/// can never stall the coordinator shard, whatever it nests. A backtracking engine would take
/// exponential time on patterns such as `(a|a)*b` against a 249-character name.
///
/// Syntax (RE2's, the part subscriptions use): literals; `.`; classes `[a-z0-9._-]`, `[^…]`;
/// escapes `\d \w \s \D \W \S` and escaped punctuation; groups `(…)`, `(?:…)`; alternation `|`;
/// quantifiers `* + ?`, `{m}`, `{m,}`, `{m,n}`; anchors `^` and `$` (librdkafka sends several
/// subscriptions as `(^a.*$)|(^b$)`). A pattern matches a whole name (Kafka's `matches()`). Anything else is refused (INVALID_REGULAR_EXPRESSION).
struct TopicPattern: Sendable {
    /// One NFA state.
    private enum Node: Sendable {
        case byte(ByteSet, next: Int)
        case split(Int, Int)
        case jump(Int)
        /// `^` and `$`: passable only at the start or the end of the name.
        case atStart(Int)
        case atEnd(Int)
        case accept
    }

    /// A set of bytes (names are ASCII: [a-zA-Z0-9._-]).
    struct ByteSet: Sendable, Equatable {
        var bits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        static func == (a: ByteSet, b: ByteSet) -> Bool { a.bits == b.bits }
        func contains(_ b: UInt8) -> Bool {
            let word: UInt64 = switch b >> 6 { case 0: bits.0; case 1: bits.1; case 2: bits.2; default: bits.3 }
            return word & (1 << UInt64(b & 63)) != 0
        }
        mutating func insert(_ b: UInt8) {
            let bit: UInt64 = 1 << UInt64(b & 63)
            switch b >> 6 { case 0: bits.0 |= bit; case 1: bits.1 |= bit; case 2: bits.2 |= bit; default: bits.3 |= bit }
        }
        mutating func insert(_ range: ClosedRange<UInt8>) { for b in range { insert(b) } }
        var inverted: ByteSet { ByteSet(bits: (~bits.0, ~bits.1, ~bits.2, ~bits.3)) }
        static func of(_ bytes: [UInt8]) -> ByteSet { var s = ByteSet(); for b in bytes { s.insert(b) }; return s }
    }

    struct Invalid: Error, Equatable { let reason: String }

    private let nodes: [Node]
    private let start: Int
    /// Patterns longer than this, or expanding (by counted repetition) to more states, are refused.
    static let maxLength = 1_000, maxStates = 10_000

    init(_ pattern: String) throws(Invalid) {
        let bytes = Array(pattern.utf8)
        guard bytes.count <= Self.maxLength else { throw Invalid(reason: "longer than \(Self.maxLength) characters") }
        var parser = Parser(bytes: bytes)
        let tree = try parser.parseAlternation()
        guard parser.position == bytes.count else { throw Invalid(reason: "unexpected ')' at \(parser.position)") }
        var builder = Builder()
        let accept = builder.add(.accept)
        start = try builder.compile(tree, then: accept)
        nodes = builder.nodes
    }

    /// Whether the whole `name` matches.
    func matches(_ name: String) -> Bool {
        var current = [Int](), next = [Int]()
        var seen = [Int](repeating: -1, count: nodes.count)
        let length = name.utf8.count
        func add(_ state: Int, _ step: Int, to list: inout [Int]) {
            var stack = [state]
            while let s = stack.popLast() {
                guard seen[s] != step else { continue }
                seen[s] = step
                switch nodes[s] {
                case .split(let a, let b): stack.append(b); stack.append(a)
                case .jump(let a): stack.append(a)
                case .atStart(let a): if step == 0 { stack.append(a) }
                case .atEnd(let a): if step == length { stack.append(a) }
                case .byte, .accept: list.append(s)
                }
            }
        }
        add(start, 0, to: &current)
        var step = 0
        for byte in name.utf8 {
            step += 1
            next.removeAll(keepingCapacity: true)
            for s in current {
                if case .byte(let set, let to) = nodes[s], set.contains(byte) { add(to, step, to: &next) }
            }
            swap(&current, &next)
            if current.isEmpty { return false }
        }
        return current.contains { if case .accept = nodes[$0] { true } else { false } }
    }

    // MARK: Parsing

    private indirect enum Tree {
        case set(ByteSet)
        case atStart, atEnd
        case empty
        case concat([Tree])
        case alternation([Tree])
        case repeat_(Tree, min: Int, max: Int?)
    }

    private struct Parser {
        let bytes: [UInt8]
        var position = 0

        mutating func parseAlternation() throws(Invalid) -> Tree {
            var branches = [try parseConcat()]
            while position < bytes.count, bytes[position] == UInt8(ascii: "|") {
                position += 1
                branches.append(try parseConcat())
            }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        mutating func parseConcat() throws(Invalid) -> Tree {
            var items: [Tree] = []
            while position < bytes.count, bytes[position] != UInt8(ascii: "|"), bytes[position] != UInt8(ascii: ")") {
                var atom = try parseAtom()
                while position < bytes.count {
                    let c = bytes[position]
                    if c == UInt8(ascii: "*") { atom = .repeat_(atom, min: 0, max: nil); position += 1 }
                    else if c == UInt8(ascii: "+") { atom = .repeat_(atom, min: 1, max: nil); position += 1 }
                    else if c == UInt8(ascii: "?") { atom = .repeat_(atom, min: 0, max: 1); position += 1 }
                    else if c == UInt8(ascii: "{"), let (lo, hi) = try parseCount() { atom = .repeat_(atom, min: lo, max: hi) }
                    else { break }
                    if position < bytes.count, bytes[position] == UInt8(ascii: "?") { position += 1 }  // lazy: same matches
                }
                items.append(atom)
            }
            return items.isEmpty ? .empty : items.count == 1 ? items[0] : .concat(items)
        }

        /// `{m}`, `{m,}`, `{m,n}` at `position`; nil (and nothing consumed) if it is a literal `{`.
        mutating func parseCount() throws(Invalid) -> (Int, Int?)? {
            var i = position + 1
            func number() -> Int? {
                var n: Int? = nil
                while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 { n = min((n ?? 0) * 10 + Int(bytes[i] - 48), 100_000); i += 1 }
                return n
            }
            guard let lo = number() else { return nil }
            var hi: Int? = lo
            if i < bytes.count, bytes[i] == UInt8(ascii: ",") { i += 1; hi = number() }
            guard i < bytes.count, bytes[i] == UInt8(ascii: "}") else { return nil }
            if let hi, hi < lo { throw Invalid(reason: "bad repetition {\(lo),\(hi)}") }
            position = i + 1
            return (lo, hi)
        }

        mutating func parseAtom() throws(Invalid) -> Tree {
            let c = bytes[position]
            position += 1
            switch c {
            case UInt8(ascii: "("):
                if position + 1 < bytes.count, bytes[position] == UInt8(ascii: "?") {
                    guard bytes[position + 1] == UInt8(ascii: ":") else { throw Invalid(reason: "unsupported group (?\(UnicodeScalar(bytes[position + 1]))") }
                    position += 2
                }
                let inner = try parseAlternation()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ")") else { throw Invalid(reason: "missing ')'") }
                position += 1
                return inner
            case UInt8(ascii: "["):
                return .set(try parseClass())
            case UInt8(ascii: "."):
                return .set(ByteSet.of([10]).inverted)
            case UInt8(ascii: "\\"):
                return .set(try parseEscape())
            case UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "?"):
                throw Invalid(reason: "nothing to repeat at \(position - 1)")
            case UInt8(ascii: "^"):
                return .atStart
            case UInt8(ascii: "$"):
                return .atEnd
            default:
                return .set(ByteSet.of([c]))
            }
        }

        mutating func parseEscape() throws(Invalid) -> ByteSet {
            guard position < bytes.count else { throw Invalid(reason: "trailing backslash") }
            let c = bytes[position]
            position += 1
            var set = ByteSet()
            switch c {
            case UInt8(ascii: "d"), UInt8(ascii: "D"): set.insert(48...57)
            case UInt8(ascii: "w"), UInt8(ascii: "W"): set.insert(48...57); set.insert(65...90); set.insert(97...122); set.insert(95)
            case UInt8(ascii: "s"), UInt8(ascii: "S"): for b: UInt8 in [9, 10, 11, 12, 13, 32] { set.insert(b) }
            default:
                // Escaped punctuation stands for itself; letters and digits would be classes or
                // backreferences this syntax does not have.
                guard !((48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c)) else {
                    throw Invalid(reason: "unsupported escape \\\(UnicodeScalar(c))")
                }
                set.insert(c)
                return set
            }
            return (65...90).contains(c) ? set.inverted : set
        }

        mutating func parseClass() throws(Invalid) -> ByteSet {
            var set = ByteSet()
            var negated = false
            if position < bytes.count, bytes[position] == UInt8(ascii: "^") { negated = true; position += 1 }
            var first = true
            while true {
                guard position < bytes.count else { throw Invalid(reason: "missing ']'") }
                let c = bytes[position]
                if c == UInt8(ascii: "]") && !first { position += 1; break }
                first = false
                position += 1
                if c == UInt8(ascii: "\\") {
                    let escaped = try parseEscape()
                    if position < bytes.count, bytes[position] == UInt8(ascii: "-"), position + 1 < bytes.count, bytes[position + 1] != UInt8(ascii: "]") {
                        throw Invalid(reason: "a range cannot start with an escape")
                    }
                    for b in 0...255 where escaped.contains(UInt8(b)) { set.insert(UInt8(b)) }
                    continue
                }
                if position + 1 < bytes.count, bytes[position] == UInt8(ascii: "-"), bytes[position + 1] != UInt8(ascii: "]") {
                    var hi = bytes[position + 1]
                    position += 2
                    if hi == UInt8(ascii: "\\") {
                        guard position < bytes.count else { throw Invalid(reason: "trailing backslash") }
                        hi = bytes[position]
                        position += 1
                    }
                    guard c <= hi else { throw Invalid(reason: "bad range") }
                    set.insert(c...hi)
                } else {
                    set.insert(c)
                }
            }
            return negated ? set.inverted : set
        }
    }

    // MARK: Compiling

    private struct Builder {
        var nodes: [Node] = []

        mutating func add(_ node: Node) -> Int {
            nodes.append(node)
            return nodes.count - 1
        }

        /// Compiles `tree` so that it continues to `next`; returns its entry state.
        mutating func compile(_ tree: Tree, then next: Int) throws(Invalid) -> Int {
            guard nodes.count < TopicPattern.maxStates else { throw Invalid(reason: "pattern too large") }
            switch tree {
            case .empty:
                return next
            case .set(let set):
                return add(.byte(set, next: next))
            case .atStart:
                return add(.atStart(next))
            case .atEnd:
                return add(.atEnd(next))
            case .concat(let items):
                var entry = next
                for item in items.reversed() { entry = try compile(item, then: entry) }
                return entry
            case .alternation(let branches):
                var entries: [Int] = []
                for branch in branches { entries.append(try compile(branch, then: next)) }
                var entry = entries.last!
                for e in entries.dropLast().reversed() { entry = add(.split(e, entry)) }
                return entry
            case .repeat_(let inner, let lo, let hi):
                var entry = next
                if let hi {
                    // hi - lo optional copies, each leading to the next: (x(x)?)?
                    for _ in 0..<(hi - lo) {
                        let body = try compile(inner, then: entry)
                        entry = add(.split(body, next))
                    }
                } else {
                    // x*: a loop back to a split.
                    let loop = add(.split(-1, next))
                    let body = try compile(inner, then: loop)
                    nodes[loop] = .split(body, next)
                    entry = loop
                }
                for _ in 0..<lo { entry = try compile(inner, then: entry) }
                return entry
            }
        }
    }
}
