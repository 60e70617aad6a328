import Foundation
import Hummingbird
import NIOCore

/// pushbridge's own OpenAPI document (`openapi/pushbridge.json`), served at `/openapi.json` and,
/// converted, at `/openapi.yaml`.
public enum OpenAPIDocument {
    /// The document as YAML (block style), converted once from ``json``.
    public static let yaml: String = {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)) else {
            return json  // JSON is valid YAML 1.2: still a correct answer
        }
        return YAMLWriter.document(value)
    }()

    static func jsonResponse() -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: json + "\n")))
    }

    static func yamlResponse() -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: yaml)))
    }

    /// The JSON text of the document.
    public static var jsonText: String { json + "\n" }
}

/// A JSON value, decoded without Foundation's untyped `Any` trees (whose booleans and numbers
/// are indistinguishable on Linux).
indirect enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }
}

/// Emits a JSON value tree as block-style YAML. Written by hand: none of the packages pushbridge
/// may use writes YAML, and a JSON tree needs only maps, lists and quoted scalars.
enum YAMLWriter {
    static func document(_ value: JSONValue) -> String {
        var out = ""
        write(value, indent: 0, into: &out, nested: false)
        return out
    }

    private static func write(_ value: JSONValue, indent: Int, into out: inout String, nested: Bool) {
        let pad = String(repeating: "  ", count: indent)
        switch value {
        case .object(let members) where !members.isEmpty:
            if nested { out += "\n" }
            // Decoding loses key order; sorted keys keep the output stable.
            for key in members.keys.sorted() {
                out += pad + quoted(key) + ":"
                write(members[key]!, indent: indent + 1, into: &out, nested: true)
            }
        case .array(let elements) where !elements.isEmpty:
            if nested { out += "\n" }
            for element in elements {
                out += pad + "-"
                write(element, indent: indent + 1, into: &out, nested: true)
            }
        default:
            out += (nested ? " " : "") + scalar(value) + "\n"
        }
    }

    /// A scalar (or empty collection) in flow style.
    static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let value): value ? "true" : "false"
        case .integer(let value): String(value)
        case .number(let value): String(value)
        case .string(let value): quoted(value)
        case .array: "[]"
        case .object: "{}"
        }
    }

    /// A double-quoted scalar; YAML's double-quoted style accepts JSON's escapes.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\u%04X", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
