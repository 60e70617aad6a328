import Foundation

/// Secrets a connection authenticates with.
///
/// The `Codable` form is the JSON the API accepts (`{"type": "oauth2", …}`,
/// `{"type": "oauth1", …}`, `{"type": "access-token", "token"}`) and also the
/// plaintext the ``Vault`` seals. It therefore contains the secrets: never encode
/// it into a response or a log. `description`, `debugDescription` and the mirror
/// (used by `dump`, string interpolation of containers, swift-testing failure
/// output) are redacted so an accidental print leaks nothing.
public enum Credentials: Sendable, Hashable {
    /// OAuth 2.0 (Cloud consumer, Data Center external application).
    case oauth2(OAuth2)
    /// OAuth 1.0a via an Application Link (Server / Data Center).
    case oauth1(OAuth1)
    /// A long-lived token (Cloud workspace/repository access token, DC HTTP access token).
    case accessToken(AccessToken)

    /// OAuth 2.0 tokens, plus the client a Data Center connection may carry itself.
    public struct OAuth2: Codable, Sendable, Hashable {
        public var accessToken: String
        /// Cloud rotates it on every refresh; the new one must be persisted atomically.
        public var refreshToken: String?
        public var expiresAt: Date?
        /// Per-connection OAuth client; `nil` = the configured default client.
        public var clientId: String?
        public var clientSecret: String?
        public var scopes: [String]

        public init(
            accessToken: String,
            refreshToken: String? = nil,
            expiresAt: Date? = nil,
            clientId: String? = nil,
            clientSecret: String? = nil,
            scopes: [String] = []
        ) {
            self.accessToken = accessToken
            self.refreshToken = refreshToken
            self.expiresAt = expiresAt
            self.clientId = clientId
            self.clientSecret = clientSecret
            self.scopes = scopes
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.accessToken = try c.decode(String.self, forKey: .accessToken)
            self.refreshToken = try c.decodeIfPresent(String.self, forKey: .refreshToken)
            self.expiresAt = try c.decodeIfPresent(Date.self, forKey: .expiresAt)
            self.clientId = try c.decodeIfPresent(String.self, forKey: .clientId)
            self.clientSecret = try c.decodeIfPresent(String.self, forKey: .clientSecret)
            self.scopes = try c.decodeIfPresent([String].self, forKey: .scopes) ?? []
        }
    }

    /// OAuth 1.0a access token obtained through an Application Link, plus the HTTP
    /// access token pushbridge minted over REST for git traffic (git cannot sign
    /// OAuth 1.0a requests).
    public struct OAuth1: Codable, Sendable, Hashable {
        /// Application-link consumer key (not secret; the RSA private key is configuration).
        public var consumerKey: String
        public var accessToken: String
        /// RSA-SHA1 does not use it, but some servers hand one out.
        public var tokenSecret: String?
        public var gitAccessToken: String?
        public var gitAccessTokenExpiresAt: Date?

        public init(
            consumerKey: String,
            accessToken: String,
            tokenSecret: String? = nil,
            gitAccessToken: String? = nil,
            gitAccessTokenExpiresAt: Date? = nil
        ) {
            self.consumerKey = consumerKey
            self.accessToken = accessToken
            self.tokenSecret = tokenSecret
            self.gitAccessToken = gitAccessToken
            self.gitAccessTokenExpiresAt = gitAccessTokenExpiresAt
        }
    }

    /// A bearer token that is not refreshed.
    public struct AccessToken: Codable, Sendable, Hashable {
        public var token: String
        public init(token: String) { self.token = token }
    }

    /// The variant, as stored in clear next to the sealed blob.
    public var kind: CredentialsKind {
        switch self {
        case .oauth2: .oauth2
        case .oauth1: .oauth1
        case .accessToken: .accessToken
        }
    }
}

extension Credentials: Codable {
    private enum TypeKey: String, CodingKey { case type }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: TypeKey.self)
        let type = try c.decode(String.self, forKey: .type)
        switch CredentialsKind(rawValue: type) {
        case .oauth2: self = .oauth2(try OAuth2(from: decoder))
        case .oauth1: self = .oauth1(try OAuth1(from: decoder))
        case .accessToken: self = .accessToken(try AccessToken(from: decoder))
        case nil:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: c,
                debugDescription: "unknown credentials type '\(type)' (expected oauth2, oauth1 or access-token)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: TypeKey.self)
        try c.encode(kind.rawValue, forKey: .type)
        switch self {
        case .oauth2(let v): try v.encode(to: encoder)
        case .oauth1(let v): try v.encode(to: encoder)
        case .accessToken(let v): try v.encode(to: encoder)
        }
    }
}

// Redaction: every textual rendering shows which fields are present, never their values.
extension Credentials: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        switch self {
        case .oauth2(let v): v.description
        case .oauth1(let v): v.description
        case .accessToken(let v): v.description
        }
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description]) }
}

private func presence(_ value: String?) -> String { value == nil ? "nil" : "<redacted>" }

extension Credentials.OAuth2: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "oauth2(accessToken: <redacted>, refreshToken: \(presence(refreshToken)), "
            + "expiresAt: \(expiresAt.map { "\($0)" } ?? "nil"), clientId: \(clientId ?? "nil"), "
            + "clientSecret: \(presence(clientSecret)), scopes: \(scopes))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description]) }
}

extension Credentials.OAuth1: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "oauth1(consumerKey: \(consumerKey), accessToken: <redacted>, tokenSecret: \(presence(tokenSecret)), "
            + "gitAccessToken: \(presence(gitAccessToken)), "
            + "gitAccessTokenExpiresAt: \(gitAccessTokenExpiresAt.map { "\($0)" } ?? "nil"))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description]) }
}

extension Credentials.AccessToken: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "access-token(token: <redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["redacted": description]) }
}
