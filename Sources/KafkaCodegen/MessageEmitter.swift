import Foundation

/// A struct to emit: the message itself or one of its nested/common structs.
struct StructDef {
    let name: String
    let fields: [FieldSpec]
    /// The versions in which this struct can appear (conditions are simplified against them).
    let within: VersionRange
    let about: String
}

/// Emits one message spec: its types and codec, and the test helper that builds random values.
struct MessageEmitter {
    let spec: MessageSpec
    let structs: [StructDef]
    let structNames: Set<String>

    init(spec: MessageSpec) throws {
        self.spec = spec
        var defs: [StructDef] = []
        var seen: Set<String> = []
        let common = Dictionary(uniqueKeysWithValues: spec.commonStructs.map { ($0.name, $0.fields) })
        func collect(_ fields: [FieldSpec], within: VersionRange) throws {
            for f in fields {
                if !f.taggedVersions.isEmpty && !f.taggedVersions.covers(f.versions.intersect(within)) {
                    throw CodegenError("\(spec.name).\(f.name): partly tagged fields are not supported")
                }
                guard f.fields != nil || !isPrimitive(f.elementType) else { continue }
                let name = f.elementType
                if let nested = f.fields, !nested.isEmpty || common[name] == nil {
                    guard !seen.contains(name) else { throw CodegenError("\(spec.name): struct \(name) defined twice") }
                    seen.insert(name)
                    let w = f.versions.intersect(within)
                    defs.append(StructDef(name: name, fields: nested, within: w, about: f.about))
                    try collect(nested, within: w)
                } else if common[name] == nil && !seen.contains(name) {
                    throw CodegenError("\(spec.name): unknown type \(f.type) of field \(f.name)")
                }
            }
        }
        try collect(spec.fields, within: spec.validVersions)
        for (name, fields) in spec.commonStructs {
            defs.append(StructDef(name: name, fields: fields, within: spec.validVersions, about: ""))
            try collect(fields, within: spec.validVersions)
        }
        self.structs = defs
        self.structNames = Set(defs.map(\.name))
    }

    // MARK: Types

    private func swiftElementType(_ t: String) -> String {
        switch t {
        case "bool": "Bool"
        case "int8": "Int8"
        case "int16": "Int16"
        case "int32": "Int32"
        case "int64": "Int64"
        case "uint16": "UInt16"
        case "uint32": "UInt32"
        case "float64": "Double"
        case "string": "String"
        case "bytes", "records": "[UInt8]"
        case "uuid": "KafkaUUID"
        default: t
        }
    }

    func swiftType(_ f: FieldSpec) -> String {
        let base = f.isArray ? "[\(swiftElementType(f.elementType))]" : swiftElementType(f.type)
        return f.isNullableAnywhere ? base + "?" : base
    }

    func defaultExpr(_ f: FieldSpec) -> String {
        let d = f.defaultValue
        if f.isNullableAnywhere && (d == "null" || (f.type == "records" && d == nil)) { return "nil" }
        if f.isArray { return "[]" }
        switch f.type {
        case "bool": return d == "true" ? "true" : "false"
        case "int8", "int16", "int32", "int64", "uint16", "uint32":
            guard let d, !d.isEmpty else { return "0" }
            return d.lowercased().hasPrefix("-0x") ? "-" + d.dropFirst() : d
        case "float64": return d.flatMap(Double.init).map { "\($0)" } ?? "0"
        case "string":
            guard let d, d != "null" else { return "\"\"" }
            return "\"" + d.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        case "bytes", "records": return "[]"
        case "uuid": return ".zero"
        default: return "\(spec.name).\(f.type)()"
        }
    }

    // MARK: Message file

    func emitMessage() -> String {
        let o = Output()
        o.line(banner("\(spec.name).json"))
        o.line("import KafkaWire")
        o.line("")
        let flexibleNote = spec.flexibleVersions.isEmpty ? "" : ", flexible from v\(spec.flexibleVersions.low)"
        let keyNote = spec.apiKey.map { "API key \($0), " } ?? ""
        o.line("/// Kafka's \(spec.name) (\(keyNote)versions \(spec.validVersions.low)–\(spec.validVersions.high!)\(flexibleNote)).")
        let conformance: String
        switch spec.kind {
        case "request": conformance = "KafkaRequest"
        case "response": conformance = "KafkaResponse"
        default: conformance = "KafkaMessage"
        }
        let root = StructDef(name: spec.name, fields: spec.fields, within: spec.validVersions, about: "")
        o.block("public struct \(spec.name): \(conformance)") {
            if let key = spec.apiKey { o.line("public static let apiKey: Int16 = \(key)") }
            o.line("public static let messageName: StaticString = \"\(spec.name)\"")
            o.line("public static let validVersions: ClosedRange<Int16> = \(spec.validVersions.low)...\(spec.validVersions.high!)")
            o.line("public static let firstFlexibleVersion: Int16? = \(spec.flexibleVersions.isEmpty ? "nil" : String(spec.flexibleVersions.low))")
            if spec.kind == "request" {
                o.line("public typealias Response = \(spec.name.dropLast("Request".count))Response")
            }
            o.line("")
            emitMembers(root, o)
            for s in structs {
                o.line("")
                o.doc(s.about)
                o.block("public struct \(s.name): KafkaStruct") {
                    emitMembers(s, o)
                }
            }
        }
        for s in [root] + structs {
            o.line("")
            let qualified = s.name == spec.name ? s.name : "\(spec.name).\(s.name)"
            o.block("extension \(qualified)") {
                emitDecode(s, o)
                o.line("")
                emitEncode(s, o)
                if spec.kind == "response" && (s.name == spec.name || carriesErrorCodes(s.name)) {
                    o.line("")
                    emitErrorCodes(s, o)
                }
            }
        }
        return o.text
    }

    // MARK: Error codes

    /// Whether struct `name` has an `ErrorCode` field, directly or in a struct it holds.
    private func carriesErrorCodes(_ name: String, seen: Set<String> = []) -> Bool {
        guard !seen.contains(name), let s = structs.first(where: { $0.name == name }) else { return false }
        return s.fields.contains { f in
            f.name == "ErrorCode" && f.type == "int16" || (structNames.contains(f.elementType) && carriesErrorCodes(f.elementType, seen: seen.union([name])))
        }
    }

    /// `forEachErrorCode`: every error code the value carries, nested ones included (what
    /// Kafka's `AbstractResponse.errorCounts` counts for its request error metrics).
    private func emitErrorCodes(_ s: StructDef, _ o: Output) {
        o.line("/// Calls `body` with every error code this value carries, nested ones included.")
        o.block("public func forEachErrorCode(_ body: (Int16) -> Void)") {
            for f in s.fields {
                let n = lowerCamel(f.name)
                if f.name == "ErrorCode" && f.type == "int16" {
                    o.line("body(\(n))")
                } else if structNames.contains(f.elementType) && carriesErrorCodes(f.elementType) {
                    let visit = f.isArray ? "for item in %@ { item.forEachErrorCode(body) }" : "%@.forEachErrorCode(body)"
                    if f.isNullableAnywhere {
                        o.line("if let \(n) { " + visit.replacingOccurrences(of: "%@", with: n) + " }")
                    } else {
                        o.line(visit.replacingOccurrences(of: "%@", with: n))
                    }
                }
            }
        }
    }

    private func emitMembers(_ s: StructDef, _ o: Output) {
        for f in s.fields {
            o.doc(f.about)
            o.line("public var \(lowerCamel(f.name)): \(swiftType(f)) = \(defaultExpr(f))")
        }
        if !s.fields.isEmpty { o.line("") }
        o.line("public init() {}")
        guard !s.fields.isEmpty else { return }
        o.line("")
        let params = s.fields.map { "\(lowerCamel($0.name)): \(swiftType($0)) = \(defaultExpr($0))" }
        o.line("public init(")
        o.line("    " + params.joined(separator: ",\n    "))
        o.block(")") {
            for f in s.fields {
                let n = lowerCamel(f.name)
                o.line("self.\(n) = \(n)")
            }
        }
    }

    /// "flexible", "true" or "false" for code inside struct `s`.
    private func flexibleExpr(_ s: StructDef) -> String {
        let c = spec.flexibleVersions.condition("version", within: s.within)
        return c == "true" || c == "false" ? c : "flexible"
    }

    private func compactExpr(_ f: FieldSpec, _ s: StructDef, tagged: Bool) -> String {
        if tagged { return "true" }
        if let override = f.flexibleVersions {
            let c = override.condition("version", within: s.within)
            return c == "true" || c == "false" ? c : "(\(c))"
        }
        return flexibleExpr(s)
    }

    // MARK: Decoding

    private func emitDecode(_ s: StructDef, _ o: Output) {
        o.block("public init(from r: inout WireReader, version: Int16) throws(WireError)") {
            o.line("self.init()")
            let flex = spec.flexibleVersions.condition("version", within: s.within)
            if flex != "true" && flex != "false" { o.line("let flexible = \(flex)") }
            for f in s.fields where f.taggedVersions.isEmpty {
                let present = f.versions.condition("version", within: s.within)
                if present == "false" { continue }
                let body: (Output) -> Void = { o in
                    o.line("r.field = \"\(s.name).\(f.name)\"")
                    readStatements(f, s, reader: "r", tagged: false, o)
                }
                if present == "true" { body(o) } else { o.block("if \(present)") { body(o) } }
            }
            let flexE = flexibleExpr(s)
            guard flexE != "false" else { return }
            let tagged = s.fields.filter { !$0.taggedVersions.isEmpty && $0.versions.condition("version", within: s.within) != "false" }
            let emitTags: (Output) -> Void = { o in
                o.line("r.field = \"\(s.name)._tagged_fields\"")
                if tagged.isEmpty {
                    o.line("try r.skipTaggedFields()")
                    return
                }
                o.line("var tagCount = try r.readTaggedFieldCount()")
                o.block("while tagCount > 0") {
                    o.line("tagCount -= 1")
                    o.line("let tag = try r.readUnsignedVarint()")
                    o.line("var field = try r.taggedFieldReader()")
                    o.block("switch tag") {
                        for f in tagged.sorted(by: { $0.tag! < $1.tag! }) {
                            let present = f.versions.intersect(f.taggedVersions).condition("version", within: s.within)
                            o.indent -= 1
                            o.line("case \(f.tag!)\(present == "true" ? "" : " where \(present)"):")
                            o.indent += 1
                            o.line("field.field = \"\(s.name).\(f.name)\"")
                            readStatements(f, s, reader: "field", tagged: true, o)
                        }
                        o.indent -= 1
                        o.line("default:")
                        o.line("    break")
                        o.indent += 1
                    }
                }
            }
            if flexE == "true" { emitTags(o) } else { o.block("if \(flexE)") { emitTags(o) } }
        }
    }

    private func minSize(_ t: String, compact: String) -> String {
        switch t {
        case "bool", "int8": "1"
        case "int16", "uint16": "2"
        case "int32", "uint32": "4"
        case "int64", "float64": "8"
        case "uuid": "16"
        case "string": compact == "true" ? "1" : compact == "false" ? "2" : "\(compact) ? 1 : 2"
        case "bytes", "records": compact == "true" ? "1" : compact == "false" ? "4" : "\(compact) ? 1 : 4"
        default: "1"
        }
    }

    private func readScalar(_ t: String, nullable: String, reader r: String, compact c: String) -> (String, String?) {
        // Returns (non-null read, nullable read) expressions.
        switch t {
        case "bool": return ("try \(r).readBool()", nil)
        case "int8": return ("try \(r).readInt8()", nil)
        case "int16": return ("try \(r).readInt16()", nil)
        case "int32": return ("try \(r).readInt32()", nil)
        case "int64": return ("try \(r).readInt64()", nil)
        case "uint16": return ("try \(r).readUInt16()", nil)
        case "uint32": return ("try \(r).readUInt32()", nil)
        case "float64": return ("try \(r).readFloat64()", nil)
        case "uuid": return ("try \(r).readUUID()", nil)
        case "string": return ("try \(r).readString(compact: \(c))", "try \(r).readNullableString(compact: \(c))")
        case "bytes", "records": return ("try \(r).readBytes(compact: \(c))", "try \(r).readNullableBytes(compact: \(c))")
        default:
            return ("try \(spec.name).\(t)(from: &\(r), version: version)",
                    "try \(r).readInt8() < 0 ? nil : \(spec.name).\(t)(from: &\(r), version: version)")
        }
    }

    private func readStatements(_ f: FieldSpec, _ s: StructDef, reader r: String, tagged: Bool, _ o: Output) {
        let c = compactExpr(f, s, tagged: tagged)
        let name = "self." + lowerCamel(f.name)
        let nullable = f.nullableVersions.condition("version", within: f.versions.intersect(s.within))
        if f.isArray {
            let elem = readScalar(f.elementType, nullable: "false", reader: "r", compact: c).0
            let m = minSize(f.elementType, compact: c)
            let call: (String) -> String = { method in
                "\(name) = try \(r).\(method)(compact: \(c), minElementSize: \(m)) { (r: inout WireReader) throws(WireError) in \(elem) }"
            }
            emitNullableSwitch(nullable, { $0.line(call("readArray")) }, { $0.line(call("readNullableArray")) }, o)
            return
        }
        let (plain, nullRead) = readScalar(f.type, nullable: nullable, reader: r, compact: c)
        guard let nullRead else {
            o.line("\(name) = \(plain)")
            return
        }
        emitNullableSwitch(nullable, { $0.line("\(name) = \(plain)") }, { $0.line("\(name) = \(nullRead)") }, o)
    }

    private func emitNullableSwitch(
        _ nullable: String, _ nonNull: (Output) -> Void, _ maybeNull: (Output) -> Void, _ o: Output
    ) {
        switch nullable {
        case "false": nonNull(o)
        case "true": maybeNull(o)
        default:
            o.block("if \(nullable)") { maybeNull(o) }
            o.block("else") { nonNull(o) }
        }
    }

    // MARK: Encoding

    private func emitEncode(_ s: StructDef, _ o: Output) {
        o.block("public func encode(into w: inout WireWriter, version: Int16)") {
            let flex = spec.flexibleVersions.condition("version", within: s.within)
            if flex != "true" && flex != "false" { o.line("let flexible = \(flex)") }
            for f in s.fields where f.taggedVersions.isEmpty {
                let present = f.versions.condition("version", within: s.within)
                if present == "false" { continue }
                if present == "true" {
                    writeStatements(f, s, writer: "w", tagged: false, o)
                } else {
                    o.block("if \(present)") { writeStatements(f, s, writer: "w", tagged: false, o) }
                }
            }
            let flexE = flexibleExpr(s)
            guard flexE != "false" else { return }
            let tagged = s.fields.filter { !$0.taggedVersions.isEmpty && $0.versions.condition("version", within: s.within) != "false" }
                .sorted { $0.tag! < $1.tag! }
            let emitTags: (Output) -> Void = { o in
                if tagged.isEmpty {
                    o.line("w.writeUnsignedVarint(0)  // no tagged fields")
                    return
                }
                func isSet(_ f: FieldSpec) -> String {
                    let present = f.versions.intersect(f.taggedVersions).condition("version", within: s.within)
                    let differs = "self.\(lowerCamel(f.name)) != \(defaultExpr(f))"
                    return present == "true" ? differs : "\(present) && \(differs)"
                }
                o.line("var tagCount: UInt32 = 0")
                for f in tagged { o.line("if \(isSet(f)) { tagCount += 1 }") }
                o.line("w.writeUnsignedVarint(tagCount)")
                for f in tagged {
                    o.block("if \(isSet(f))") {
                        o.block("w.writeTaggedField(tag: \(f.tag!)) { (w: inout WireWriter) in", open: false) {
                            writeStatements(f, s, writer: "w", tagged: true, o)
                        }
                    }
                }
            }
            if flexE == "true" { emitTags(o) } else { o.block("if \(flexE)") { emitTags(o) } }
        }
    }

    private func writeScalar(_ t: String, _ value: String, writer w: String, compact c: String) -> String {
        switch t {
        case "bool": "\(w).writeBool(\(value))"
        case "int8": "\(w).writeInt8(\(value))"
        case "int16": "\(w).writeInt16(\(value))"
        case "int32": "\(w).writeInt32(\(value))"
        case "int64": "\(w).writeInt64(\(value))"
        case "uint16": "\(w).writeUInt16(\(value))"
        case "uint32": "\(w).writeUInt32(\(value))"
        case "float64": "\(w).writeFloat64(\(value))"
        case "uuid": "\(w).writeUUID(\(value))"
        case "string": "\(w).writeString(\(value), compact: \(c))"
        case "bytes", "records": "\(w).writeBytes(\(value), compact: \(c))"
        default: "\(value).encode(into: &\(w), version: version)"
        }
    }

    private func writeStatements(_ f: FieldSpec, _ s: StructDef, writer w: String, tagged: Bool, _ o: Output) {
        let c = compactExpr(f, s, tagged: tagged)
        let name = "self." + lowerCamel(f.name)
        let nullable = f.nullableVersions.condition("version", within: f.versions.intersect(s.within))
        let optional = f.isNullableAnywhere
        let emptyValue = f.isArray ? "[]" : (isPrimitive(f.type) ? defaultExpr(nonNull: f) : "\(spec.name).\(f.type)()")
        let writeValue: (String, Output) -> Void = { value, o in
            if f.isArray {
                o.line("\(w).writeLength(\(value).count, compact: \(c), wide: true)")
                o.line("for item in \(value) { \(writeScalar(f.elementType, "item", writer: w, compact: c)) }")
            } else {
                o.line(writeScalar(f.type, value, writer: w, compact: c))
            }
        }
        guard optional else {
            writeValue(name, o)
            return
        }
        let nonNull: (Output) -> Void = { o in writeValue("(\(name) ?? \(emptyValue))", o) }
        let maybeNull: (Output) -> Void = { o in
            o.block("if let value = \(name)") {
                if !f.isArray && !isPrimitive(f.type) { o.line("\(w).writeInt8(1)") }
                writeValue("value", o)
            }
            o.block("else") {
                if f.isArray {
                    o.line("\(w).writeLength(nil, compact: \(c), wide: true)")
                } else if f.type == "string" {
                    o.line("\(w).writeLength(nil, compact: \(c), wide: false)")
                } else if f.type == "bytes" || f.type == "records" {
                    o.line("\(w).writeLength(nil, compact: \(c), wide: true)")
                } else {
                    o.line("\(w).writeInt8(-1)")
                }
            }
        }
        emitNullableSwitch(nullable, nonNull, maybeNull, o)
    }

    /// The value written for a nullable field in a version where it may not be null.
    private func defaultExpr(nonNull f: FieldSpec) -> String {
        switch f.type {
        case "string": "\"\""
        case "bytes", "records": "[]"
        default: defaultExpr(f)
        }
    }

    // MARK: Random values for tests

    func emitArbitrary() -> String {
        let o = Output()
        o.line(banner("\(spec.name).json"))
        o.line("import KafkaProtocol")
        o.line("import KafkaWire")
        let root = StructDef(name: spec.name, fields: spec.fields, within: spec.validVersions, about: "")
        for s in [root] + structs {
            let qualified = s.name == spec.name ? "\(s.name): ArbitraryMessage" : "\(spec.name).\(s.name)"
            o.line("")
            o.block("extension \(qualified)") {
                o.line("/// A value with random contents in every field that `version` has; the others keep their defaults.")
                o.block("static func arbitrary(version: Int16, _ g: inout Gen) -> Self") {
                    o.line(s.fields.isEmpty ? "let v = Self()" : "var v = Self()")
                    for f in s.fields {
                        let present = f.versions.condition("version", within: s.within)
                        if present == "false" { continue }
                        let nullable = f.nullableVersions.condition("version", within: f.versions.intersect(s.within))
                        var value = f.isArray
                            ? "g.array { g in \(randomScalar(f.elementType)) }"
                            : randomScalar(f.type)
                        if f.isNullableAnywhere && nullable != "false" {
                            value = "g.nullable(\(nullable)) { g in \(value) }"
                        }
                        let assign = "v.\(lowerCamel(f.name)) = \(value)"
                        o.line(present == "true" ? assign : "if \(present) { \(assign) }")
                    }
                    o.line("return v")
                }
            }
        }
        return o.text
    }

    private func randomScalar(_ t: String) -> String {
        switch t {
        case "bool": "g.bool()"
        case "int8": "g.int8()"
        case "int16": "g.int16()"
        case "int32": "g.int32()"
        case "int64": "g.int64()"
        case "uint16": "g.uint16()"
        case "uint32": "g.uint32()"
        case "float64": "g.float64()"
        case "uuid": "g.uuid()"
        case "string": "g.string()"
        case "bytes", "records": "g.bytes()"
        default: "\(spec.name).\(t).arbitrary(version: version, &g)"
        }
    }
}

func isPrimitive(_ t: String) -> Bool {
    ["bool", "int8", "int16", "int32", "int64", "uint16", "uint32", "float64", "string", "bytes", "records", "uuid"].contains(t)
}
