import Foundation

/// The kind of Bitbucket a connection talks to.
public enum Provider: String, Codable, Sendable, Hashable, CaseIterable {
    /// bitbucket.org, REST 2.0, OAuth 2.0 consumer.
    case bitbucketCloud = "bitbucket-cloud"
    /// Data Center 7.21+, REST 1.0, OAuth 2.0 (+PKCE) or HTTP access tokens.
    case bitbucketDataCenter = "bitbucket-datacenter"
    /// Server / Data Center via Application Link, OAuth 1.0a RSA-SHA1.
    case bitbucketServer = "bitbucket-server"
}

/// Whether a connection can currently be used by workers.
public enum ConnectionState: String, Codable, Sendable, Hashable, CaseIterable {
    /// Credentials are believed valid (or refreshable).
    case active
    /// Refresh failed permanently (revoked grant, rotated-away refresh token, …);
    /// a human must run the OAuth flow again. Jobs for it fail with a non-retryable error.
    case reauthorizationRequired = "reauthorization-required"
}

/// Which variant of ``Credentials`` a connection holds. Stored in clear next to the
/// sealed credentials so listings never need the master key.
public enum CredentialsKind: String, Codable, Sendable, Hashable, CaseIterable {
    case oauth2
    case oauth1
    case accessToken = "access-token"
}

/// A registered link between pushbridge and one Bitbucket workspace (Cloud) or
/// project (Data Center / Server).
///
/// This value never contains secrets: credentials live sealed in the store and are
/// read with ``Store/credentials(connectionID:)``.
public struct Connection: Codable, Sendable, Hashable, Identifiable {
    /// Caller-chosen identifier (e.g. `acme-cloud`), unique, referenced by jobs.
    public var id: String
    public var provider: Provider
    /// Cloud workspace slug, or Data Center / Server project key.
    public var workspace: String
    /// REST API base: `https://api.bitbucket.org/2.0` for Cloud, the instance root
    /// (e.g. `https://bitbucket.example.com`) for Data Center / Server.
    /// `nil` means "the configured default for this provider".
    public var apiURL: URL?
    /// Site / OAuth base (authorize and token endpoints hang off it). `nil` = configured default.
    public var siteURL: URL?
    /// Git smart-HTTP base. `nil` = configured default.
    public var gitURL: URL?
    /// Which credentials variant is sealed for this connection. Maintained by the store.
    public var credentialsKind: CredentialsKind
    public var state: ConnectionState
    /// Set by the store on insert.
    public var createdAt: Date
    /// Set by the store on every write.
    public var updatedAt: Date

    public init(
        id: String,
        provider: Provider,
        workspace: String,
        apiURL: URL? = nil,
        siteURL: URL? = nil,
        gitURL: URL? = nil,
        credentialsKind: CredentialsKind,
        state: ConnectionState = .active,
        createdAt: Date = Date(),
        updatedAt: Date = Date()
    ) {
        self.id = id
        self.provider = provider
        self.workspace = workspace
        self.apiURL = apiURL
        self.siteURL = siteURL
        self.gitURL = gitURL
        self.credentialsKind = credentialsKind
        self.state = state
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}
