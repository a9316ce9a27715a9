import Foundation

/// A version range from a spec: "3+", "0-7", "5", or "none".
struct VersionRange: Equatable {
    var low: Int
    /// nil = open-ended.
    var high: Int?

    static let none = VersionRange(low: 1, high: 0)

    init(low: Int, high: Int?) {
        self.low = low
        self.high = high
    }

    init(parsing text: String) throws {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t == "none" {
            self = .none
        } else if t.hasSuffix("+"), let lo = Int(t.dropLast()) {
            self.init(low: lo, high: nil)
        } else if let dash = t.firstIndex(of: "-"), let lo = Int(t[..<dash]), let hi = Int(t[t.index(after: dash)...]) {
            self.init(low: lo, high: hi)
        } else if let v = Int(t) {
            self.init(low: v, high: v)
        } else {
            throw CodegenError("bad version range '\(text)'")
        }
    }

    var isEmpty: Bool { if let high { return high < low } else { return false } }

    func contains(_ v: Int) -> Bool { v >= low && (high.map { v <= $0 } ?? true) }

    /// This range clipped to `valid`.
    func intersect(_ valid: VersionRange) -> VersionRange {
        let lo = max(low, valid.low)
        let hi: Int?
        switch (high, valid.high) {
        case (nil, nil): hi = nil
        case let (a?, nil): hi = a
        case let (nil, b?): hi = b
        case let (a?, b?): hi = min(a, b)
        }
        return VersionRange(low: lo, high: hi)
    }

    /// True when every version of `within` is in this range.
    func covers(_ within: VersionRange) -> Bool {
        if within.isEmpty { return true }
        if within.low < low { return false }
        guard let high else { return true }
        guard let wh = within.high else { return false }
        return wh <= high
    }

    /// A Swift condition on `variable` for this range, simplified against the versions the
    /// code can see (`within`): "true", "version >= 3", "version <= 12", "(3...5).contains(version)".
    func condition(_ variable: String, within: VersionRange) -> String {
        let r = intersect(within)
        if r.isEmpty { return "false" }
        if r.covers(within) { return "true" }
        let needLow = r.low > within.low
        let needHigh: Bool
        if let rh = r.high { needHigh = within.high.map { rh < $0 } ?? true } else { needHigh = false }
        switch (needLow, needHigh) {
        case (true, true):
            if r.low == r.high! { return "\(variable) == \(r.low)" }
            return "(\(r.low)...\(r.high!)).contains(\(variable))"
        case (true, false): return "\(variable) >= \(r.low)"
        case (false, true): return "\(variable) <= \(r.high!)"
        case (false, false): return "true"
        }
    }
}

struct CodegenError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// One field of a message or struct, as the JSON spec gives it.
final class FieldSpec {
    let name: String
    let type: String
    let versions: VersionRange
    let nullableVersions: VersionRange
    let taggedVersions: VersionRange
    let tag: Int?
    let defaultValue: String?
    let about: String
    /// Overrides the message's flexible versions for this field (RequestHeader.ClientId).
    let flexibleVersions: VersionRange?
    let fields: [FieldSpec]?

    init(json: [String: Any]) throws {
        guard let name = json["name"] as? String, let type = json["type"] as? String else {
            throw CodegenError("field without name or type: \(json)")
        }
        self.name = name
        self.type = type
        self.versions = try VersionRange(parsing: json["versions"] as? String ?? "none")
        self.nullableVersions = try (json["nullableVersions"] as? String).map(VersionRange.init(parsing:)) ?? .none
        self.taggedVersions = try (json["taggedVersions"] as? String).map(VersionRange.init(parsing:)) ?? .none
        self.tag = json["tag"] as? Int
        switch json["default"] {
        case let s as String: defaultValue = s
        case let b as Bool: defaultValue = b ? "true" : "false"
        case let n as NSNumber: defaultValue = n.stringValue
        default: defaultValue = nil
        }
        self.about = (json["about"] as? String) ?? ""
        self.flexibleVersions = try (json["flexibleVersions"] as? String).map(VersionRange.init(parsing:))
        self.fields = try (json["fields"] as? [[String: Any]])?.map(FieldSpec.init(json:))
    }

    var isArray: Bool { type.hasPrefix("[]") }
    var elementType: String { isArray ? String(type.dropFirst(2)) : type }
    var isNullableAnywhere: Bool { !nullableVersions.isEmpty }
    var isTaggedAnywhere: Bool { !taggedVersions.isEmpty }
}

/// A whole message spec file.
struct MessageSpec {
    let name: String
    let kind: String
    let apiKey: Int?
    let validVersions: VersionRange
    let flexibleVersions: VersionRange
    let fields: [FieldSpec]
    let commonStructs: [(name: String, fields: [FieldSpec])]

    init(json: [String: Any]) throws {
        guard let name = json["name"] as? String, let kind = json["type"] as? String else {
            throw CodegenError("spec without name or type")
        }
        self.name = name
        self.kind = kind
        self.apiKey = json["apiKey"] as? Int
        self.validVersions = try VersionRange(parsing: json["validVersions"] as? String ?? "none")
        self.flexibleVersions = try VersionRange(parsing: json["flexibleVersions"] as? String ?? "none")
        self.fields = try (json["fields"] as? [[String: Any]] ?? []).map(FieldSpec.init(json:))
        self.commonStructs = try (json["commonStructs"] as? [[String: Any]] ?? []).map { s in
            guard let n = s["name"] as? String else { throw CodegenError("common struct without name") }
            return (n, try (s["fields"] as? [[String: Any]] ?? []).map(FieldSpec.init(json:)))
        }
    }

    /// Reads a spec file, stripping Kafka's `//` comment lines.
    static func load(_ url: URL) throws -> MessageSpec {
        let text = try String(contentsOf: url, encoding: .utf8)
        let stripped = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            // Comments are whole lines or trail after JSON; no spec string contains "//" except URLs in "about",
            // so only strip when the comment is outside a string (even number of quotes before it).
            guard let r = line.range(of: "//") else { return line }
            let before = line[..<r.lowerBound]
            return before.filter { $0 == "\"" }.count % 2 == 0 ? before : line
        }.joined(separator: "\n")
        guard let json = try JSONSerialization.jsonObject(with: Data(stripped.utf8)) as? [String: Any] else {
            throw CodegenError("\(url.lastPathComponent): not a JSON object")
        }
        do {
            return try MessageSpec(json: json)
        } catch {
            throw CodegenError("\(url.lastPathComponent): \(error)")
        }
    }
}
