import BitbucketEmulator
import Foundation
import OpenAPIKit30

/// A small JSON-schema checker over OpenAPIKit's `JSONSchema`: types, required properties, nested objects and
/// arrays, `additionalProperties`, string enums, `date-time`/`uri` formats, `allOf`/`oneOf`/`anyOf`, and `$ref`
/// resolution through the document's components. Enough to catch wrong field names and types in emulator answers.
struct ContractSchemaValidator {
    let components: OpenAPI.Components
    /// Also report properties that no schema on the path declares (stricter than the spec, which mostly allows
    /// extra properties), except the names in `allowedUndeclared`.
    var strictUnknownProperties = true
    /// Real responses carry fields the published schemas leave out; each is listed with its reason by the caller.
    var allowedUndeclared: Set<String> = []
    /// DC's schemas never say `nullable`, yet DC sends `null` for absent optional values (e.g. error `context`).
    var nullAllowedForOptional = false

    func validate(_ value: JSONValue, against schema: JSONSchema) -> [String] {
        var errors: [String] = []
        check(value, schema, path: "$", required: true, strict: strictUnknownProperties, errors: &errors, depth: 0)
        return errors
    }

    private func resolve(_ ref: JSONReference<JSONSchema>) -> JSONSchema? {
        guard let name = ref.name, let key = OpenAPI.ComponentKey(rawValue: name) else { return nil }
        return components.schemas[key]
    }

    /// Cloud's schemas are polymorphic through `discriminator: type` with implicit mapping (the `type` value is the
    /// component name, e.g. an `account` field holding a `user`). Returns the subtype schema when `value` names one
    /// that extends the referenced schema.
    private func subtype(of ref: JSONReference<JSONSchema>, for value: JSONValue) -> JSONSchema? {
        guard let base = ref.name, let typeName = value["type"]?.stringValue, typeName != base,
            let key = OpenAPI.ComponentKey(rawValue: typeName), let candidate = components.schemas[key]
        else { return nil }
        return extends(candidate, base, depth: 0) ? candidate : nil
    }

    private func extends(_ schema: JSONSchema, _ base: String, depth: Int) -> Bool {
        guard depth < 10, case .all(let of, _) = schema.value else { return false }
        for member in of {
            if case .reference(let r, _) = member.value, let name = r.name {
                if name == base { return true }
                if let key = OpenAPI.ComponentKey(rawValue: name), let parent = components.schemas[key],
                    extends(parent, base, depth: depth + 1)
                {
                    return true
                }
            }
        }
        return false
    }

    /// Property names declared by a schema, through references and compositions.
    private func declaredProperties(_ schema: JSONSchema, depth: Int = 0) -> (names: Set<String>, open: Bool) {
        guard depth < 20 else { return ([], true) }
        switch schema.value {
        case .object(_, let ctx):
            let names = Set(ctx.properties.keys)
            // An object schema without declared properties is a free-form map.
            return (names, names.isEmpty)
        case .reference(let ref, _):
            return resolve(ref).map { declaredProperties($0, depth: depth + 1) } ?? ([], true)
        case .all(let of, _), .one(let of, _), .any(let of, _):
            var names: Set<String> = []
            var open = false
            for s in of {
                let d = declaredProperties(s, depth: depth + 1)
                names.formUnion(d.names)
                open = open || d.open
            }
            return (names, open && names.isEmpty)
        case .fragment:
            return ([], true)
        default:
            return ([], false)
        }
    }

    private func typeName(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    private func check(
        _ value: JSONValue, _ schema: JSONSchema, path: String, required: Bool, strict: Bool, errors: inout [String],
        depth: Int
    ) {
        guard depth < 64 else { return }
        if case .null = value {
            if schema.nullable || (nullAllowedForOptional && !required) { return }
            if case .fragment = schema.value { return }
            if case .reference = schema.value, nullAllowedForOptional && !required { return }
            errors.append("\(path): null is not allowed")
            return
        }
        switch schema.value {
        case .reference(let ref, _):
            guard let target = resolve(ref) else {
                errors.append("\(path): unresolvable reference \(ref)")
                return
            }
            let chosen = subtype(of: ref, for: value) ?? target
            check(value, chosen, path: path, required: required, strict: strict, errors: &errors, depth: depth + 1)
        case .all(let of, _):
            // A property declared by several members (e.g. `links` in `account` and again in `user`) is checked
            // loosely per member and for undeclared names against the union of its declarations.
            var byName: [String: [JSONSchema]] = [:]
            for member in of {
                for (name, propertySchema) in propertySchemas(member) { byName[name, default: []].append(propertySchema) }
            }
            let shared = Set(byName.filter { $0.value.count > 1 }.keys)
            for s in of { checkShallow(value, s, path: path, strict: strict, loose: shared, errors: &errors, depth: depth) }
            if strict {
                checkUnknown(value, schema, path: path, errors: &errors)
                for name in shared.sorted() {
                    guard case .object(let members)? = value[name] else { continue }
                    var declared: Set<String> = []
                    var open = false
                    for s in byName[name] ?? [] {
                        let d = declaredProperties(s)
                        declared.formUnion(d.names)
                        open = open || d.open
                    }
                    if open && declared.isEmpty { continue }
                    for key in members.keys.sorted() where !declared.contains(key) && !allowedUndeclared.contains(key) {
                        errors.append("\(path).\(name): property \"\(key)\" is not declared by the schema")
                    }
                }
            }
        case .one(let of, _), .any(let of, _):
            let ok = of.contains { s in
                var e: [String] = []
                check(value, s, path: path, required: required, strict: strict, errors: &e, depth: depth + 1)
                return e.isEmpty
            }
            if !ok { errors.append("\(path): matches none of the alternatives") }
        case .not, .fragment:
            return
        case .boolean:
            if case .bool = value {} else { errors.append("\(path): expected boolean, got \(typeName(value))") }
        case .integer:
            if case .number(let d) = value, d.rounded() == d {} else {
                errors.append("\(path): expected integer, got \(typeName(value))")
            }
        case .number:
            if case .number = value {} else { errors.append("\(path): expected number, got \(typeName(value))") }
        case .string(let core, _):
            guard case .string(let s) = value else {
                errors.append("\(path): expected string, got \(typeName(value))")
                return
            }
            if let allowed = core.allowedValues?.compactMap({ $0.value as? String }), !allowed.isEmpty, !allowed.contains(s) {
                errors.append("\(path): \"\(s)\" is not one of \(allowed)")
            }
            switch core.formatString {
            case "date-time":
                let f = ISO8601DateFormatter()
                f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                let g = ISO8601DateFormatter()
                if f.date(from: s) == nil && g.date(from: s) == nil { errors.append("\(path): \"\(s)\" is not a date-time") }
            case "uri":
                if URL(string: s)?.scheme == nil { errors.append("\(path): \"\(s)\" is not an absolute URI") }
            default:
                break
            }
        case .array(_, let ctx):
            guard case .array(let items) = value else {
                errors.append("\(path): expected array, got \(typeName(value))")
                return
            }
            if let itemSchema = ctx.items {
                for (i, item) in items.enumerated() {
                    check(
                        item, itemSchema, path: "\(path)[\(i)]", required: true, strict: strict, errors: &errors,
                        depth: depth + 1)
                }
            }
        case .object:
            checkShallow(value, schema, path: path, strict: strict, loose: [], errors: &errors, depth: depth)
            if strict { checkUnknown(value, schema, path: path, errors: &errors) }
        }
    }

    /// Declared property schemas of a schema, through references and `allOf`.
    private func propertySchemas(_ schema: JSONSchema, depth: Int = 0) -> [(String, JSONSchema)] {
        guard depth < 20 else { return [] }
        switch schema.value {
        case .object(_, let ctx): return ctx.properties.map { ($0.key, $0.value) }
        case .reference(let ref, _): return resolve(ref).map { propertySchemas($0, depth: depth + 1) } ?? []
        case .all(let of, _): return of.flatMap { propertySchemas($0, depth: depth + 1) }
        default: return []
        }
    }

    /// Object rules of one schema (no unknown-property check: inside `allOf` that is done on the union).
    private func checkShallow(
        _ value: JSONValue, _ schema: JSONSchema, path: String, strict: Bool, loose: Set<String>, errors: inout [String],
        depth: Int
    ) {
        switch schema.value {
        case .reference(let ref, _):
            if let target = resolve(ref) {
                checkShallow(value, target, path: path, strict: strict, loose: loose, errors: &errors, depth: depth + 1)
            }
        case .all(let of, _):
            for s in of {
                checkShallow(value, s, path: path, strict: strict, loose: loose, errors: &errors, depth: depth + 1)
            }
        case .object(_, let ctx):
            guard case .object(let members) = value else {
                errors.append("\(path): expected object, got \(typeName(value))")
                return
            }
            for name in ctx.requiredProperties where members[name] == nil {
                errors.append("\(path): missing required property \"\(name)\"")
            }
            for (name, member) in members {
                if let propertySchema = ctx.properties[name] {
                    check(
                        member, propertySchema, path: "\(path).\(name)", required: propertySchema.required,
                        strict: strict && !loose.contains(name), errors: &errors, depth: depth + 1)
                } else if case .a(false) = ctx.additionalProperties {
                    errors.append("\(path): property \"\(name)\" is not allowed (additionalProperties: false)")
                } else if case .b(let extra) = ctx.additionalProperties {
                    check(
                        member, extra, path: "\(path).\(name)", required: false, strict: strict, errors: &errors,
                        depth: depth + 1)
                }
            }
        default:
            check(value, schema, path: path, required: true, strict: strict, errors: &errors, depth: depth + 1)
        }
    }

    private func checkUnknown(_ value: JSONValue, _ schema: JSONSchema, path: String, errors: inout [String]) {
        guard strictUnknownProperties, case .object(let members) = value else { return }
        let declared = declaredProperties(schema)
        guard !declared.open else { return }
        for name in members.keys.sorted() where !declared.names.contains(name) && !allowedUndeclared.contains(name) {
            errors.append("\(path): property \"\(name)\" is not declared by the schema")
        }
    }
}

/// The official OpenAPI documents, loaded once per test process.
enum ContractDocuments {
    static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared/bitbucket-openapi")

    static var available: Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent("cloud-2.0.json").path)
            && FileManager.default.fileExists(atPath: directory.appendingPathComponent("datacenter-9.2.json").path)
    }

    static let cloud: Result<OpenAPI.Document, any Error> = Result { try load("cloud-2.0.json", product: .cloud) }
    static let dataCenter: Result<OpenAPI.Document, any Error> = Result { try load("datacenter-9.2.json", product: .dataCenter) }

    /// Decodes a reduced document: the paths the emulator's route table names (and the non-spec candidates, so
    /// their absence is checked too) plus every component schema reachable from them. Decoding the full 1–2 MB files
    /// with OpenAPIKit takes most of a minute in a debug build; the reduced one is a small fraction of that.
    private static func load(_ name: String, product: BitbucketProduct) throws -> OpenAPI.Document {
        let raw = try Data(contentsOf: directory.appendingPathComponent(name))
        guard var tree = try JSONSerialization.jsonObject(with: raw) as? [String: Any],
            let paths = tree["paths"] as? [String: Any],
            var components = tree["components"] as? [String: Any],
            let schemas = components["schemas"] as? [String: Any]
        else { throw CocoaError(.coderReadCorrupt) }
        var wanted: [String: Any] = [:]
        for route in BitbucketEmulator.routeTable() where route.product == product {
            let candidates = [route.specPath, route.template, route.template.hasPrefix("/rest") ? String(route.template.dropFirst(5)) : nil]
            for case let p? in candidates { if let item = paths[p] { wanted[p] = item } }
        }
        var keep: [String: Any] = [:]
        var otherComponents = components
        otherComponents["schemas"] = nil
        var queue = referencedSchemas(in: wanted) + referencedSchemas(in: otherComponents)
        func close() {
            while let next = queue.popLast() {
                guard keep[next] == nil, let schema = schemas[next] else { continue }
                keep[next] = schema
                queue += referencedSchemas(in: schema)
            }
        }
        close()
        // Discriminator subtypes (`user` for `account`, …) are reached through `type`, not `$ref`: keep every schema
        // whose `allOf` extends a kept one (except the universal base `object`).
        var grew = true
        while grew {
            grew = false
            for (name, schema) in schemas where keep[name] == nil {
                let parents = ((schema as? [String: Any])?["allOf"] as? [Any] ?? []).flatMap { referencedSchemas(in: $0) }
                if parents.contains(where: { $0 != "object" && keep[$0] != nil }) {
                    queue.append(name)
                    close()
                    grew = true
                }
            }
        }
        tree["paths"] = wanted
        components["schemas"] = keep
        tree["components"] = components
        let data = try JSONSerialization.data(withJSONObject: normalizeNullEnums(tree))
        return try JSONDecoder().decode(OpenAPI.Document.self, from: data)
    }

    private static func referencedSchemas(in node: Any) -> [String] {
        if let dict = node as? [String: Any] {
            var out: [String] = []
            if let ref = dict["$ref"] as? String, ref.hasPrefix("#/components/schemas/") {
                out.append(String(ref.dropFirst("#/components/schemas/".count)))
            }
            for v in dict.values { out += referencedSchemas(in: v) }
            return out
        }
        if let array = node as? [Any] { return array.flatMap(referencedSchemas) }
        return []
    }

    /// Atlassian's Cloud file writes OAS 3.1-style `enum: [..., null]`, which OpenAPIKit30 rejects. In OAS 3.0 the
    /// same meaning is `nullable: true` with the non-null values, so rewrite it before decoding.
    private static func normalizeNullEnums(_ node: Any) -> Any {
        if var dict = node as? [String: Any] {
            for (k, v) in dict { dict[k] = normalizeNullEnums(v) }
            if let values = dict["enum"] as? [Any], values.contains(where: { $0 is NSNull }) {
                dict["enum"] = values.filter { !($0 is NSNull) }
                dict["nullable"] = true
            }
            return dict
        }
        if let array = node as? [Any] { return array.map(normalizeNullEnums) }
        return node
    }

    static func document(_ product: BitbucketProduct) throws -> OpenAPI.Document {
        try (product == .cloud ? cloud : dataCenter).get()
    }

    static func pathItem(_ doc: OpenAPI.Document, _ path: String) -> OpenAPI.PathItem? {
        guard let entry = doc.paths[OpenAPI.Path(rawValue: path)] else { return nil }
        switch entry {
        case .b(let item): return item
        case .a:
            // OpenAPI 3.0 path items cannot be components; neither document uses path-item references.
            return nil
        }
    }

    static func operation(_ doc: OpenAPI.Document, path: String, method: String) -> OpenAPI.Operation? {
        guard let verb = OpenAPI.BuiltinHttpMethod(rawValue: method.uppercased()) else { return nil }
        return pathItem(doc, path)?.for(verb)
    }

    /// The JSON schema of an operation's response for `status`.
    static func responseSchema(_ doc: OpenAPI.Document, path: String, method: String, status: Int) -> JSONSchema? {
        guard let op = operation(doc, path: path, method: method),
            let code = OpenAPI.Response.StatusCode(rawValue: String(status)),
            let entry = op.responses[code]
        else { return nil }
        let response: OpenAPI.Response?
        switch entry {
        case .b(let r): response = r
        case .a(let ref):
            response = ref.name.flatMap { OpenAPI.ComponentKey(rawValue: $0) }.flatMap { doc.components.responses[$0] }
        }
        guard let content = response?.content[.json]?.schema else { return nil }
        switch content {
        case .b(let s): return s
        case .a(let ref): return JSONSchema.reference(ref)
        }
    }
}
