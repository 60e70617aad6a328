import Foundation

/// A JSON value whose object keys keep their insertion order.
///
/// Hand-written because Foundation's `JSONEncoder` on Linux emits keys in hash order (or
/// sorted), and the result lines are read by people first: `scenario`, then the times and
/// the ratio, then details. String escaping is delegated to `JSONEncoder`.
enum JSON: Sendable {
    case string(String)
    case int(Int)
    /// A number printed with at most `digits` fractional digits.
    case double(Double, digits: Int)
    case bool(Bool)
    case array([JSON])
    case object([(String, JSON)])
    case null

    static func seconds(_ value: Double) -> JSON { .double(value, digits: 4) }
    static func ratio(_ value: Double) -> JSON { .double(value, digits: 2) }

    /// Compact single-line serialization.
    var serialized: String {
        switch self {
        case .string(let s):
            return Self.quote(s)
        case .int(let i):
            return String(i)
        case .double(let d, let digits):
            guard d.isFinite else { return "null" }
            var text = String(format: "%.\(digits)f", d)
            if text.contains(".") {
                while text.hasSuffix("0") { text.removeLast() }
                if text.hasSuffix(".") { text.removeLast() }
            }
            return text
        case .bool(let b):
            return b ? "true" : "false"
        case .array(let values):
            return "[" + values.map(\.serialized).joined(separator: ",") + "]"
        case .object(let fields):
            return "{" + fields.map { Self.quote($0.0) + ":" + $0.1.serialized }.joined(separator: ",") + "}"
        case .null:
            return "null"
        }
    }

    private static func quote(_ s: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        guard let data = try? encoder.encode(s) else { return "\"\"" }
        return String(decoding: data, as: UTF8.self)
    }
}
