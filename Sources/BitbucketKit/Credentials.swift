import Foundation

/// How one request is authenticated.
public enum Authorization: Sendable {
    /// `Authorization: Bearer <token>`: OAuth 2.0 access tokens (Cloud, Data Center), Cloud
    /// workspace/repository access tokens, Data Center HTTP access tokens.
    case bearer(Secret)
    /// `Authorization: Basic …` (Cloud API tokens with an e-mail address as user name).
    case basic(username: String, password: Secret)
    /// An OAuth 1.0a RSA-SHA1 signature computed per request (Server/DC application link).
    case oauth1(OAuth1Signer)
    /// No `Authorization` header.
    case none

    /// The secrets this authorization would put on the wire (used to scrub error messages).
    var secrets: [Secret] {
        switch self {
        case .bearer(let token): return [token]
        case .basic(let username, let password):
            // The encoded header value is as sensitive as the password itself.
            return [password, Secret(Data("\(username):\(password.reveal())".utf8).base64EncodedString())]
        case .oauth1(let signer): return signer.token.map { [$0] } ?? []
        case .none: return []
        }
    }
}

/// Supplies the authorization for a connection's requests.
///
/// The domain's token manager implements this: it returns the stored access token, refreshing it
/// first when it is about to expire. When Bitbucket answers `401`, a client calls
/// `authorization(forceRefresh: true)` exactly once and replays the request once with the result;
/// a second `401` is thrown as ``BitbucketError/Code-swift.struct/unauthorized`` or
/// ``BitbucketError/Code-swift.struct/tokenExpired``. Errors thrown by the provider (for example
/// `invalid_grant` from a refresh) propagate unchanged.
public protocol CredentialProvider: Sendable {
    /// The authorization to use now. With `forceRefresh`, the cached access token was just rejected:
    /// obtain a new one (single-flight per connection) instead of returning it again.
    func authorization(forceRefresh: Bool) async throws -> Authorization
}

/// A ``CredentialProvider`` that always returns the same authorization (access tokens that cannot be
/// refreshed, OAuth 1.0a signers, tests).
public struct StaticCredentialProvider: CredentialProvider {
    public let value: Authorization

    public init(_ value: Authorization) {
        self.value = value
    }

    public func authorization(forceRefresh: Bool) async throws -> Authorization {
        value
    }
}
