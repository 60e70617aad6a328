import Foundation

/// Turns a non-success HTTP response into a ``BitbucketError``.
///
/// Understands all error shapes Bitbucket produces:
/// - Cloud REST: `{"type": "error", "error": {"message": "…", "detail": "…"}}`
/// - Data Center REST: `{"errors": [{"context": …, "message": "…", "exceptionName": "…"}]}`
/// - OAuth 2.0 token endpoints: `{"error": "invalid_grant", "error_description": "…"}`
/// - anything else (Cloud's 429 text body, HTML from a proxy): the text, truncated.
public enum BitbucketErrorParser {
    /// Builds the error for a response with `status`, `body` and an optional `Retry-After` value.
    ///
    /// - Parameters:
    ///   - status: HTTP status code (expected to be ≥ 400).
    ///   - body: raw response body.
    ///   - retryAfter: the `Retry-After` header value, if any (seconds or an HTTP date).
    ///   - now: the reference time for HTTP-date `Retry-After` values.
    ///   - secrets: values to replace by `<redacted>` wherever the body quotes them (done before
    ///     truncation, so no partial secret survives).
    public static func error(
        status: Int,
        body: [UInt8],
        retryAfter: String? = nil,
        now: Date = Date(),
        secrets: [Secret] = []
    ) -> BitbucketError {
        var body = body
        if !secrets.isEmpty {
            body = Array(Redaction.scrub(String(decoding: body, as: UTF8.self), secrets: secrets).utf8)
        }
        let parsed = parseBody(body)
        let retryAfterDuration = retryAfter.flatMap { RetryAfter.parse($0, now: now) }
        var code: BitbucketError.Code
        var retryable = false
        switch status {
        case 400, 422:
            code = .invalidRequest
        case 401:
            code = parsed.message.lowercased().contains("expired") ? .tokenExpired : .unauthorized
        case 403:
            code = .forbidden
        case 404, 410:
            code = .notFound
        case 409:
            code = .conflict
        case 408:
            code = .timeout
            retryable = true
        case 429:
            code = .rateLimited
            retryable = true
        case 502, 503, 504:
            code = .serverError
            retryable = true
        case 500...599:
            code = .serverError
        default:
            code = .unexpectedStatus
        }
        if let oauthError = parsed.oauthError {
            switch oauthError {
            case "invalid_grant":
                code = .invalidGrant
                retryable = false
            case "invalid_client", "unauthorized_client":
                code = .invalidClient
                retryable = false
            default:
                if status < 500 && status != 429 {
                    code = .invalidRequest
                    retryable = false
                }
            }
        }
        var message = parsed.message
        if message.isEmpty {
            message = HTTPStatusText.reason(status)
        }
        return BitbucketError(
            code: code,
            status: status,
            message: message,
            retryable: retryable,
            retryAfter: retryAfterDuration,
            exceptionName: parsed.exceptionName
        )
    }

    struct ParsedBody {
        var message: String = ""
        var exceptionName: String?
        var oauthError: String?
    }

    static func parseBody(_ body: [UInt8]) -> ParsedBody {
        var result = ParsedBody()
        guard !body.isEmpty else { return result }
        if let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] {
            // Cloud REST.
            if let error = object["error"] as? [String: Any] {
                var parts: [String] = []
                if let message = error["message"] as? String { parts.append(message) }
                if let detail = error["detail"] as? String, !detail.isEmpty { parts.append(detail) }
                result.message = Redaction.truncate(parts.joined(separator: ": "))
                return result
            }
            // OAuth 2.0 token endpoint (RFC 6749 §5.2).
            if let error = object["error"] as? String {
                result.oauthError = error
                if let description = object["error_description"] as? String, !description.isEmpty {
                    result.message = Redaction.truncate("\(error): \(description)")
                } else {
                    result.message = error
                }
                return result
            }
            // Data Center REST.
            if let errors = object["errors"] as? [[String: Any]] {
                let messages = errors.compactMap { entry -> String? in
                    guard let message = entry["message"] as? String else { return nil }
                    if let context = entry["context"] as? String, !context.isEmpty {
                        return "\(context): \(message)"
                    }
                    return message
                }
                result.message = Redaction.truncate(messages.joined(separator: "; "))
                result.exceptionName = errors.first?["exceptionName"] as? String
                return result
            }
            if let message = object["message"] as? String {
                result.message = Redaction.truncate(message)
                return result
            }
        }
        let text = String(decoding: body, as: UTF8.self)
        // OAuth 1.0a problem reporting (form-encoded `oauth_problem=…`).
        if text.contains("oauth_problem=") {
            let fields = FormEncoding.decode(text.trimmingCharacters(in: .whitespacesAndNewlines))
            if let problem = fields.first(where: { $0.0 == "oauth_problem" })?.1 {
                switch problem {
                case "token_expired", "token_rejected", "token_revoked", "token_used", "permission_denied",
                    "permission_unknown":
                    result.oauthError = "invalid_grant"
                case "consumer_key_unknown", "consumer_key_rejected", "consumer_key_refused", "signature_invalid",
                    "signature_method_rejected":
                    result.oauthError = "invalid_client"
                default:
                    result.oauthError = "invalid_request"
                }
                let advice = fields.first(where: { $0.0 == "oauth_problem_advice" })?.1
                result.message = Redaction.truncate("oauth_problem=\(problem)" + (advice.map { ": \($0)" } ?? ""))
                return result
            }
        }
        // An HTML page (proxy, load balancer) says nothing useful and can be long.
        if text.lowercased().contains("<html") {
            return result
        }
        result.message = Redaction.truncate(text)
        return result
    }
}

enum HTTPStatusText {
    static func reason(_ status: Int) -> String {
        switch status {
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 410: return "Gone"
        case 422: return "Unprocessable Entity"
        case 429: return "Too Many Requests"
        case 500: return "Internal Server Error"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        default: return "HTTP status \(status)"
        }
    }
}

/// Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
public enum RetryAfter {
    /// Returns the delay the value asks for, or `nil` when it is malformed. Dates in the past give
    /// zero.
    public static func parse(_ value: String, now: Date = Date()) -> Duration? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Int(trimmed) {
            return seconds >= 0 ? .seconds(seconds) : nil
        }
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = format
            if let date = formatter.date(from: trimmed) {
                let interval = max(0, date.timeIntervalSince(now))
                return .milliseconds(Int64((interval * 1000).rounded()))
            }
        }
        return nil
    }
}
