import BitbucketKit

/// Why ``TokenManager`` could not produce credentials for a connection.
///
/// Messages name connection ids and Bitbucket error codes, never tokens.
public struct TokenError: CodedError, Hashable {
    public enum Code: String, Sendable, Hashable {
        /// The refresh token was rejected (`invalid_grant`) or is missing: a human must run the
        /// OAuth flow again. The connection's state is `reauthorization-required`. Not retryable.
        case reauthorizationRequired = "reauthorization_required"
        /// Refreshing failed for another reason (network, 5xx, rate limit, `invalid_client`).
        /// The connection state is unchanged; `retryable` says whether trying later may help.
        case refreshFailed = "token_refresh_failed"
        /// Minting the Data Center HTTP access token for git (OAuth 1.0a connections) failed.
        case gitTokenFailed = "git_token_failed"
        /// The new tokens could not be written to the store. Retryable: Bitbucket keeps the
        /// previous refresh token valid for a grace period.
        case persistFailed = "token_persist_failed"
        /// Required configuration is missing (OAuth client id/secret, OAuth 1.0a key, base URL).
        case configuration = "token_configuration"
        /// No connection with this id.
        case connectionNotFound = "connection_not_found"
    }

    public let kind: Code
    public let message: String
    /// Whether the same operation may succeed later without a human.
    public let retryable: Bool

    public var code: String { kind.rawValue }

    public init(_ kind: Code, _ message: String, retryable: Bool = false) {
        self.kind = kind
        self.message = message
        self.retryable = retryable
    }

    /// The form a job stores when an attempt fails for this reason.
    public var jobError: JobError { JobError(code: code, message: message, retryable: retryable) }

    static func reauthorization(_ connectionID: String, _ why: String) -> TokenError {
        TokenError(
            .reauthorizationRequired,
            "connection '\(connectionID)' needs a new authorization: \(why)")
    }

    /// Bitbucket failures that are worth retrying even when BitbucketKit did not flag them
    /// (its retry budget is spent, but a later job attempt may still succeed).
    static func isTransient(_ error: BitbucketError) -> Bool {
        if error.retryable { return true }
        switch error.code {
        case .network, .timeout, .serverError, .rateLimited: return true
        default: return false
        }
    }
}
