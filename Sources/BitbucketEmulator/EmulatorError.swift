import Foundation

/// Errors thrown by the emulator's control API (never sent over HTTP).
public struct EmulatorControlError: Error, Sendable, CustomStringConvertible {
    /// Stable machine-readable code, e.g. `unknown_user`, `already_exists`, `not_running`, `git_failed`.
    public let code: String
    /// Human-readable detail (never contains secrets).
    public let message: String

    init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "EmulatorControlError(\(code)): \(message)" }
}

/// An error answer of the HTTP API, rendered in the owning product's error format.
struct APIError: Error, Sendable {
    enum Format: Sendable {
        /// `{"type":"error","error":{"message":…}}`
        case cloud
        /// `{"errors":[{"context":null,"message":…,"exceptionName":…}]}`
        case dataCenter(exceptionName: String?, extra: [String: JSONValue])
        /// OAuth 2.0 token endpoint: `{"error": code, "error_description": …}`
        case oauth2(code: String)
        /// OAuth 1.0a: form-encoded `oauth_problem=…` (plus a `WWW-Authenticate: OAuth` header).
        case oauth1(problem: String)
        /// text/plain body (Cloud's 429, git).
        case text
    }

    let status: Int
    let message: String
    let format: Format
    var detail: String? = nil
    var headers: [(String, String)] = []

    static func cloud(_ status: Int, _ message: String, detail: String? = nil) -> APIError {
        APIError(status: status, message: message, format: .cloud, detail: detail)
    }

    static func dc(_ status: Int, _ message: String, exception: String? = nil, extra: [String: JSONValue] = [:]) -> APIError {
        APIError(status: status, message: message, format: .dataCenter(exceptionName: exception, extra: extra))
    }

    static func oauth2(_ status: Int, _ code: String, _ description: String) -> APIError {
        APIError(status: status, message: description, format: .oauth2(code: code))
    }

    static func oauth1(_ problem: String, _ message: String, status: Int = 401) -> APIError {
        APIError(status: status, message: message, format: .oauth1(problem: problem))
    }

    func response() -> EmulatorResponse {
        var response: EmulatorResponse
        switch format {
        case .cloud:
            var err: [String: JSONValue] = ["message": .string(message)]
            if let detail { err["detail"] = .string(detail) }
            response = .json(status, ["type": "error", "error": .object(err)])
        case .dataCenter(let exceptionName, let extra):
            var entry: [String: JSONValue] = [
                "context": .null, "message": .string(message), "exceptionName": .optString(exceptionName),
            ]
            for (k, v) in extra { entry[k] = v }
            response = .json(status, ["errors": [.object(entry)]])
        case .oauth2(let code):
            response = .json(status, ["error": .string(code), "error_description": .string(message)])
        case .oauth1(let problem):
            response = EmulatorResponse(
                status: status,
                headers: [
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("WWW-Authenticate", "OAuth realm=\"\", oauth_problem=\"\(problem)\""),
                ],
                body: Data(
                    "oauth_problem=\(problem)&oauth_problem_advice=\(FormCoding.percentEncode(message))".utf8))
        case .text:
            response = .text(status, message)
        }
        response.headers.append(contentsOf: headers)
        return response
    }
}
