import Foundation
import Hummingbird

/// A REST/OAuth request as the emulator's handlers see it: body collected, path parameters extracted.
struct EmulatorRequest: Sendable {
    let method: String
    /// Raw path (percent-encoded as received), query excluded.
    let path: String
    /// Decoded query parameters in order (repeated keys kept).
    let queryItems: [(String, String)]
    /// Raw query string (without `?`), needed verbatim for OAuth 1.0a signature checks.
    let rawQuery: String
    let headers: HTTPFields
    /// `Host` as received (HTTP/1 `Host` becomes the `:authority` pseudo-header, not a field).
    let authority: String?
    let body: Data
    /// Path parameters by template name, percent-decoded.
    var parameters: [String: String] = [:]
    /// The matched route.
    var route: EmulatorRoute?

    func query(_ name: String) -> String? { queryItems.first { $0.0 == name }?.1 }
    func queryAll(_ name: String) -> [String] { queryItems.filter { $0.0 == name }.map(\.1) }
    func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.canonicalName == lower }?.value
    }
    func param(_ name: String) -> String { parameters[name] ?? "" }

    var contentType: String { (header("Content-Type") ?? "").lowercased() }
    var isJSONBody: Bool { contentType.hasPrefix("application/json") }
    var isFormBody: Bool { contentType.hasPrefix("application/x-www-form-urlencoded") }

    /// The body parsed as JSON (`nil` when empty or not JSON).
    var json: JSONValue? { body.isEmpty ? nil : JSONValue(data: body) }

    /// The body parsed as `application/x-www-form-urlencoded`.
    var form: [(String, String)] { FormCoding.decode(String(decoding: body, as: UTF8.self)) }
    func formValue(_ name: String) -> String? { form.first { $0.0 == name }?.1 }
}

/// A response before it becomes a Hummingbird `Response`.
struct EmulatorResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: Data
    /// Close the connection instead of answering (fault injection).
    var dropConnection = false

    static func json(_ status: Int, _ value: JSONValue, headers: [(String, String)] = []) -> EmulatorResponse {
        EmulatorResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: value.encoded())
    }

    static func text(_ status: Int, _ text: String, contentType: String = "text/plain; charset=utf-8") -> EmulatorResponse {
        EmulatorResponse(status: status, headers: [("Content-Type", contentType)], body: Data(text.utf8))
    }

    static func redirect(_ location: String) -> EmulatorResponse {
        EmulatorResponse(status: 302, headers: [("Location", location)], body: Data())
    }

    static func empty(_ status: Int) -> EmulatorResponse {
        EmulatorResponse(status: status, headers: [], body: Data())
    }
}

/// `application/x-www-form-urlencoded` and RFC 3986 percent-coding.
///
/// Written by hand because the OAuth 1.0a signature base string needs RFC 5849 §3.6 encoding exactly
/// (only `A-Za-z0-9-._~` unreserved, upper-case hex), which Foundation's URL APIs do not expose.
enum FormCoding {
    private static let unreserved: Set<UInt8> = Set(
        Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8))

    /// RFC 5849 §3.6 / RFC 3986 percent-encoding of every byte outside the unreserved set.
    static func percentEncode(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for byte in s.utf8 {
            if unreserved.contains(byte) {
                out.unicodeScalars.append(UnicodeScalar(byte))
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// Percent-decoding; with `plusIsSpace` (form bodies and query strings) `+` means a space.
    static func percentDecode(_ s: Substring, plusIsSpace: Bool = true) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count)
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%"), it.count >= 2,
                let hi = hexValue(it[it.startIndex]), let lo = hexValue(it[it.startIndex + 1])
            {
                bytes.append(hi << 4 | lo)
                it = it.dropFirst(2)
            } else if b == UInt8(ascii: "+") && plusIsSpace {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func percentDecode(_ s: String, plusIsSpace: Bool = true) -> String {
        percentDecode(s[...], plusIsSpace: plusIsSpace)
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Decodes `a=1&b=2` pairs (empty pieces skipped, a key without `=` gets an empty value).
    static func decode(_ s: String) -> [(String, String)] {
        s.split(separator: "&", omittingEmptySubsequences: true).map { piece in
            if let eq = piece.firstIndex(of: "=") {
                return (percentDecode(piece[..<eq]), percentDecode(piece[piece.index(after: eq)...]))
            }
            return (percentDecode(piece), "")
        }
    }

    /// Encodes pairs as a form body / query string.
    static func encode(_ pairs: [(String, String)]) -> String {
        pairs.map { "\(percentEncode($0.0))=\(percentEncode($0.1))" }.joined(separator: "&")
    }
}

/// Glob matching for fault rules: `*` stays inside one path segment, `**` spans segments.
enum PathGlob {
    static func matches(_ pattern: String, _ path: String) -> Bool {
        let p = Array(pattern.utf8)
        let s = Array(path.utf8)
        return match(p[...], s[...])
    }

    private static func match(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool {
        guard let first = p.first else { return s.isEmpty }
        if first == UInt8(ascii: "*") {
            let doubleStar = p.dropFirst().first == UInt8(ascii: "*")
            let rest = doubleStar ? p.dropFirst(2) : p.dropFirst()
            var i = s.startIndex
            while true {
                if match(rest, s[i...]) { return true }
                if i == s.endIndex { return false }
                if !doubleStar && s[i] == UInt8(ascii: "/") { return false }
                i += 1
            }
        }
        guard let c = s.first, c == first else { return false }
        return match(p.dropFirst(), s.dropFirst())
    }
}
