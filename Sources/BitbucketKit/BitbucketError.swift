import Foundation

/// The one error type thrown by BitbucketKit.
///
/// `code` is a stable, machine-readable string that callers switch on and that pushbridge puts in
/// job results (`error.code`). `message` is human readable and never contains credentials: it is
/// built from Bitbucket's error body, truncated, and scrubbed of every secret the failing request
/// carried.
public struct BitbucketError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable error code. New codes may be added; existing ones keep their spelling.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// 401: the credentials were rejected (after one forced refresh and replay).
        public static let unauthorized = Code(rawValue: "unauthorized")
        /// 401 whose body says the access token expired (after one forced refresh and replay).
        public static let tokenExpired = Code(rawValue: "token_expired")
        /// 403: authenticated, but not allowed.
        public static let forbidden = Code(rawValue: "forbidden")
        /// 404 / 410.
        public static let notFound = Code(rawValue: "not_found")
        /// 409 that the operation could not resolve (stale version twice, name clash, …).
        public static let conflict = Code(rawValue: "conflict")
        /// 429, after the retry budget ran out.
        public static let rateLimited = Code(rawValue: "rate_limited")
        /// 5xx.
        public static let serverError = Code(rawValue: "server_error")
        /// OAuth token endpoint: the code, refresh token or verifier is invalid, expired or revoked.
        /// The connection needs a new authorization.
        public static let invalidGrant = Code(rawValue: "invalid_grant")
        /// OAuth token endpoint: client id/secret rejected.
        public static let invalidClient = Code(rawValue: "invalid_client")
        /// 400/422 and other OAuth errors: the request itself was wrong.
        public static let invalidRequest = Code(rawValue: "invalid_request")
        /// Connection refused/reset/closed, DNS failure.
        public static let network = Code(rawValue: "network")
        /// Connect, read or overall request timeout.
        public static let timeout = Code(rawValue: "timeout")
        /// TLS handshake or certificate verification failed.
        public static let tls = Code(rawValue: "tls")
        /// A response body did not have the expected shape.
        public static let decoding = Code(rawValue: "decoding")
        /// Invalid client configuration: bad URL, unreadable CA bundle, bad proxy URL, bad key.
        public static let configuration = Code(rawValue: "configuration")
        /// An HTTP status BitbucketKit has no specific code for.
        public static let unexpectedStatus = Code(rawValue: "unexpected_status")
        /// A server-provided pagination cursor or a caller-provided cursor was not acceptable.
        public static let invalidCursor = Code(rawValue: "invalid_cursor")
    }

    /// Stable machine-readable code.
    public var code: Code
    /// HTTP status of the response that caused the error, if there was one.
    public var status: Int?
    /// Human-readable explanation, free of secrets.
    public var message: String
    /// Whether repeating the same operation later may succeed.
    public var retryable: Bool
    /// The server's `Retry-After`, when it sent one.
    public var retryAfter: Duration?
    /// Data Center `exceptionName` of the first error entry, e.g.
    /// `com.atlassian.bitbucket.pull.DuplicatePullRequestException`.
    public var exceptionName: String?

    public init(
        code: Code,
        status: Int? = nil,
        message: String,
        retryable: Bool = false,
        retryAfter: Duration? = nil,
        exceptionName: String? = nil
    ) {
        self.code = code
        self.status = status
        self.message = message
        self.retryable = retryable
        self.retryAfter = retryAfter
        self.exceptionName = exceptionName
    }

    public var description: String {
        var text = "BitbucketError(\(code.rawValue)"
        if let status { text += ", HTTP \(status)" }
        text += "): \(message)"
        return text
    }
}

extension BitbucketError {
    /// Returns a copy whose message has every occurrence of `secrets` replaced by `<redacted>`.
    ///
    /// Bitbucket does not echo credentials today, but error bodies are foreign input; scrubbing the
    /// values the request carried makes "no secret in an error" hold regardless of the server.
    func scrubbed(_ secrets: [Secret]) -> BitbucketError {
        var copy = self
        copy.message = Redaction.scrub(message, secrets: secrets)
        return copy
    }

    static func configuration(_ message: String) -> BitbucketError {
        BitbucketError(code: .configuration, message: message)
    }

    static func decoding(_ what: String, _ error: any Error) -> BitbucketError {
        BitbucketError(code: .decoding, message: "could not decode \(what): \(Redaction.describeDecodingError(error))")
    }
}

enum Redaction {
    static func scrub(_ text: String, secrets: [Secret]) -> String {
        var result = text
        // Servers may echo a value as sent (form/percent-encoded) or JSON-escaped; scrub those forms too.
        let forms = secrets.map { $0.reveal() }.filter { $0.count >= 4 }.flatMap { value in
            [value, OAuth1.percentEncode(value), value.replacingOccurrences(of: "/", with: "\\/")]
        }
        // Longest first so a secret that contains a shorter one is removed whole.
        for secret in Set(forms).sorted(by: { $0.count > $1.count }) {
            result = result.replacingOccurrences(of: secret, with: "<redacted>")
        }
        return result
    }

    /// Describes a `DecodingError` by coding path only: the default description can quote values
    /// from the body, and a token response body holds tokens.
    static func describeDecodingError(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "invalid data" }
        func path(_ context: DecodingError.Context) -> String {
            let joined = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
            return joined.isEmpty ? "<root>" : joined
        }
        switch error {
        case .keyNotFound(let key, let context):
            let prefix = path(context)
            return "missing key '\(key.stringValue)' at \(prefix)"
        case .typeMismatch(let type, let context):
            return "type mismatch for \(type) at \(path(context))"
        case .valueNotFound(let type, let context):
            return "null value for \(type) at \(path(context))"
        case .dataCorrupted(let context):
            return "malformed data at \(path(context))"
        @unknown default:
            return "invalid data"
        }
    }

    /// Truncates foreign text (error bodies) to a sane size for messages.
    static func truncate(_ text: String, limit: Int = 500) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.count > limit else { return trimmed }
        return String(trimmed.prefix(limit)) + "…"
    }
}
