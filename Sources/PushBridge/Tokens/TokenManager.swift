import AsyncHTTPClient
import BitbucketKit
import Foundation
import GitKit
import Logging
import Metrics
import Synchronization

/// What ``TokenManager`` needs to refresh and mint tokens.
public struct TokenManagerConfiguration: Sendable {
    /// Refresh an OAuth 2.0 access token when it expires within this interval (default 5 min).
    public var refreshSkew: Duration
    /// Bitbucket Cloud addresses used when a connection leaves its URLs `nil`.
    public var cloudEndpoints: CloudEndpoints
    /// Cloud OAuth consumer (`PUSHBRIDGE_CLOUD_CLIENT_ID` / `_SECRET`), used unless the connection carries its own.
    public var cloudClientID: String?
    public var cloudClientSecret: Secret?
    /// Default Data Center OAuth 2.0 client (`PUSHBRIDGE_DC_CLIENT_ID` / `_SECRET`).
    public var dataCenterClientID: String?
    public var dataCenterClientSecret: Secret?
    /// The redirect URI registered with the Data Center client (sent with refreshes).
    public var dataCenterRedirectURI: URL
    /// Data Center / Server base URL used when a connection leaves its URLs `nil`
    /// (`PUSHBRIDGE_DC_API_URL`, the same default the pipeline and pickers use).
    public var dataCenterBaseURL: URL?
    /// Application-link consumer key used when the connection's credentials name none.
    public var oauth1ConsumerKey: String?
    /// Application-link private key (`PUSHBRIDGE_OAUTH1_PRIVATE_KEY_FILE`).
    public var oauth1PrivateKey: OAuth1PrivateKey?
    /// Lifetime requested for git HTTP access tokens of OAuth 1.0a connections (default 30 days).
    public var gitTokenExpiryDays: Int
    /// Mint a new git access token when the stored one expires within this interval (default 2 days).
    public var gitTokenRenewBefore: Duration
    /// Options of the OAuth clients (timeouts, retries, logger).
    public var clientOptions: BitbucketClientOptions
    /// Clock (tests inject one).
    public var now: @Sendable () -> Date
    /// Logs refreshes and state changes; never token values.
    public var logger: Logger

    public init(
        refreshSkew: Duration = .seconds(300),
        cloudEndpoints: CloudEndpoints = .production,
        cloudClientID: String? = nil,
        cloudClientSecret: Secret? = nil,
        dataCenterClientID: String? = nil,
        dataCenterClientSecret: Secret? = nil,
        dataCenterRedirectURI: URL = URL(string: "http://127.0.0.1/v1/oauth/bitbucket-datacenter/callback")!,
        dataCenterBaseURL: URL? = nil,
        oauth1ConsumerKey: String? = nil,
        oauth1PrivateKey: OAuth1PrivateKey? = nil,
        gitTokenExpiryDays: Int = 30,
        gitTokenRenewBefore: Duration = .seconds(2 * 86_400),
        clientOptions: BitbucketClientOptions = .init(),
        now: @escaping @Sendable () -> Date = { Date() },
        logger: Logger = Logger(label: "pushbridge.tokens")
    ) {
        self.refreshSkew = refreshSkew
        self.cloudEndpoints = cloudEndpoints
        self.cloudClientID = cloudClientID
        self.cloudClientSecret = cloudClientSecret
        self.dataCenterClientID = dataCenterClientID
        self.dataCenterClientSecret = dataCenterClientSecret
        self.dataCenterRedirectURI = dataCenterRedirectURI
        self.dataCenterBaseURL = dataCenterBaseURL
        self.oauth1ConsumerKey = oauth1ConsumerKey
        self.oauth1PrivateKey = oauth1PrivateKey
        self.gitTokenExpiryDays = gitTokenExpiryDays
        self.gitTokenRenewBefore = gitTokenRenewBefore
        self.clientOptions = clientOptions
        self.now = now
        self.logger = logger
    }
}

/// Valid credentials for one connection, as ``TokenManager/credentials(connectionID:)`` returns them.
public struct ConnectionCredentials: Sendable {
    /// The connection as stored when the credentials were resolved.
    public let connection: Connection
    /// For BitbucketKit clients: returns the current authorization and, on a `401`, refreshes once
    /// (single-flight) so the client can replay the request.
    public let rest: TokenCredentialProvider
    /// The authorization valid now (bearer token, or an OAuth 1.0a signer).
    public let authorization: Authorization
    /// For GitKit: `x-token-auth` + access token (Cloud), `Authorization: Bearer` (Data Center
    /// OAuth 2.0, HTTP access tokens, and the minted git token of OAuth 1.0a connections).
    public let git: GitCredentials
    /// When the REST access token (or, for OAuth 1.0a, the git token) expires; `nil` = unknown/never.
    public let expiresAt: Date?
}

/// Hands out valid credentials per connection, refreshing OAuth 2.0 tokens and minting git access
/// tokens for OAuth 1.0a connections.
///
/// Guarantees:
/// - **Ahead of expiry**: an access token expiring within ``TokenManagerConfiguration/refreshSkew``
///   is refreshed before it is handed out; a `401` triggers one forced refresh
///   (``TokenCredentialProvider``).
/// - **Single flight in the process**: concurrent callers for one connection await the same
///   refresh.
/// - **Single flight across processes**: the refresh runs inside ``Store/withConnectionLock(connectionID:_:)``
///   and re-reads the credentials there; if another daemon already refreshed, its tokens are used
///   without calling Bitbucket.
/// - **Rotation is durable first**: the new refresh token is committed to the store before the new
///   access token is returned to anyone.
/// - `invalid_grant` sets the connection to `reauthorization-required` and throws
///   `reauthorization_required` (not retryable); other connections are unaffected. Network
///   failures throw a retryable `token_refresh_failed` and leave the state alone.
public actor TokenManager {
    private let store: any Store
    private let transport: BitbucketHTTPTransport
    private let configuration: TokenManagerConfiguration
    private let minter: ProjectAccessTokenMinter

    private var cache: [String: Snapshot] = [:]
    private var inFlight: [String: (id: UInt64, task: Task<Snapshot, any Error>)] = [:]
    private var nextTaskID: UInt64 = 0

    /// - Parameters:
    ///   - store: where connections and their sealed credentials live.
    ///   - transport: the shared BitbucketKit connection pool (OAuth token endpoints).
    ///   - httpClient: used to mint git access tokens for OAuth 1.0a connections; configure it like
    ///     the transport (CA bundle, proxy, no redirects).
    ///   - configuration: OAuth clients, keys, skew, clock, logger.
    public init(
        store: any Store,
        transport: BitbucketHTTPTransport,
        httpClient: HTTPClient = .shared,
        configuration: TokenManagerConfiguration = .init()
    ) {
        self.store = store
        self.transport = transport
        self.configuration = configuration
        self.minter = ProjectAccessTokenMinter(httpClient: httpClient, timeout: configuration.clientOptions.requestTimeout)
    }

    // MARK: Public API

    /// Valid REST and git credentials for `connectionID`, refreshing (or minting the git token)
    /// first when needed.
    ///
    /// - Throws: ``TokenError`` (`reauthorization_required`, `token_refresh_failed`,
    ///   `git_token_failed`, `token_persist_failed`, `token_configuration`, `connection_not_found`),
    ///   or a store error.
    public func credentials(connectionID: String) async throws -> ConnectionCredentials {
        let snapshot = try await resolve(connectionID, Need(git: true))
        return try makeCredentials(snapshot)
    }

    /// The REST authorization valid now. With `forceRefresh`, the token `rejected` (or, when `nil`,
    /// the one last handed out) was refused by Bitbucket: a new one is obtained unless another
    /// caller already replaced it.
    public func authorization(connectionID: String, forceRefresh: Bool = false, rejected: Secret? = nil) async throws
        -> Authorization
    {
        var need = Need(git: false)
        if forceRefresh {
            need.rejectedAccessToken = rejected?.reveal() ?? cache[connectionID]?.accessToken
        }
        let snapshot = try await resolve(connectionID, need)
        return try restAuthorization(snapshot)
    }

    /// Git credentials valid now. With `rejected`, that git token was refused: a new one is obtained
    /// (refresh for OAuth 2.0, a new HTTP access token for OAuth 1.0a) unless already replaced.
    public func gitCredentials(connectionID: String, rejected: Secret? = nil) async throws -> GitCredentials {
        var need = Need(git: true)
        if let rejected {
            need.rejectedAccessToken = rejected.reveal()
            need.rejectedGitToken = rejected.reveal()
        }
        return try gitCredentials(try await resolve(connectionID, need))
    }

    /// A credentials provider for BitbucketKit clients of this connection.
    public nonisolated func credentialProvider(connectionID: String) -> TokenCredentialProvider {
        TokenCredentialProvider(manager: self, connectionID: connectionID)
    }

    /// Drops what is cached for the connection (after it was deleted or re-authorized).
    public func forget(connectionID: String) {
        cache[connectionID] = nil
    }

    // MARK: Resolution

    struct Need: Sendable {
        var git: Bool
        /// A REST/OAuth 2.0 access token Bitbucket refused: the result must carry another one.
        var rejectedAccessToken: String?
        /// A git token (OAuth 1.0a HTTP access token) Bitbucket refused.
        var rejectedGitToken: String?
    }

    struct Snapshot: Sendable {
        var connection: Connection
        var credentials: Credentials

        var accessToken: String? {
            switch credentials {
            case .oauth2(let o): o.accessToken
            case .accessToken(let t): t.token
            case .oauth1(let o): o.accessToken
            }
        }
    }

    /// Whether `snapshot` satisfies `need` at `now` without contacting Bitbucket.
    nonisolated static func isUsable(
        _ snapshot: Snapshot, _ need: Need, now: Date, configuration: TokenManagerConfiguration
    ) -> Bool {
        guard snapshot.connection.state == .active else { return false }
        switch snapshot.credentials {
        case .oauth2(let o):
            if let rejected = need.rejectedAccessToken, rejected == o.accessToken { return false }
            if let expiresAt = o.expiresAt, expiresAt.timeIntervalSince(now) <= configuration.refreshSkew.seconds {
                return false
            }
            return true
        case .accessToken(let t):
            // Cannot be refreshed: a rejected long-lived token stays rejected (the caller's second
            // 401 surfaces as `unauthorized`).
            _ = t
            return true
        case .oauth1(let o):
            guard need.git else { return true }
            guard let git = o.gitAccessToken else { return false }
            if let rejected = need.rejectedGitToken, rejected == git { return false }
            if let expiresAt = o.gitAccessTokenExpiresAt,
               expiresAt.timeIntervalSince(now) <= configuration.gitTokenRenewBefore.seconds
            {
                return false
            }
            return true
        }
    }

    private func resolve(_ connectionID: String, _ need: Need) async throws -> Snapshot {
        // Bounded: each round either returns, or waits for a refresh that made progress.
        for _ in 0..<4 {
            if let cached = cache[connectionID],
               Self.isUsable(cached, need, now: configuration.now(), configuration: configuration)
            {
                return cached
            }
            if let running = inFlight[connectionID] {
                // Join the refresh in flight; its failure is every joiner's failure.
                let snapshot = try await running.task.value
                if Self.isUsable(snapshot, need, now: configuration.now(), configuration: configuration) {
                    return snapshot
                }
                continue
            }
            return try await startRefresh(connectionID, need)
        }
        return try await startRefresh(connectionID, need)
    }

    private func startRefresh(_ connectionID: String, _ need: Need) async throws -> Snapshot {
        nextTaskID += 1
        let taskID = nextTaskID
        let context = RefreshContext(
            store: store, transport: transport, configuration: configuration, minter: minter)
        let task = Task { try await context.refreshUnderLock(connectionID, need) }
        inFlight[connectionID] = (taskID, task)
        let result = await task.result
        if inFlight[connectionID]?.id == taskID { inFlight[connectionID] = nil }
        switch result {
        case .success(let snapshot):
            cache[connectionID] = snapshot
            return snapshot
        case .failure(let error):
            if let error = error as? TokenError, error.kind == .reauthorizationRequired || error.kind == .connectionNotFound {
                cache[connectionID] = nil
            }
            throw error
        }
    }

    // MARK: Shaping credentials

    private func makeCredentials(_ snapshot: Snapshot) throws -> ConnectionCredentials {
        let expiresAt: Date?
        switch snapshot.credentials {
        case .oauth2(let o): expiresAt = o.expiresAt
        case .oauth1(let o): expiresAt = o.gitAccessTokenExpiresAt
        case .accessToken: expiresAt = nil
        }
        return ConnectionCredentials(
            connection: snapshot.connection,
            rest: credentialProvider(connectionID: snapshot.connection.id),
            authorization: try restAuthorization(snapshot),
            git: try gitCredentials(snapshot),
            expiresAt: expiresAt)
    }

    private func restAuthorization(_ snapshot: Snapshot) throws -> Authorization {
        switch snapshot.credentials {
        case .oauth2(let o): return .bearer(Secret(o.accessToken))
        case .accessToken(let t): return .bearer(Secret(t.token))
        case .oauth1(let o): return .oauth1(try RefreshContext.signer(o, snapshot.connection, configuration))
        }
    }

    private func gitCredentials(_ snapshot: Snapshot) throws -> GitCredentials {
        let token: String
        switch snapshot.credentials {
        case .oauth2(let o): token = o.accessToken
        case .accessToken(let t): token = t.token
        case .oauth1(let o):
            guard let git = o.gitAccessToken else {
                throw TokenError(.gitTokenFailed, "connection '\(snapshot.connection.id)' has no git access token")
            }
            token = git
        }
        switch snapshot.connection.provider {
        case .bitbucketCloud: return .userPassword(username: "x-token-auth", password: token)
        case .bitbucketDataCenter, .bitbucketServer: return .bearerToken(token)
        }
    }
}

/// The part of a refresh that runs inside the store's connection lock. A separate Sendable value so
/// the lock body captures no actor state.
struct RefreshContext: Sendable {
    let store: any Store
    let transport: BitbucketHTTPTransport
    let configuration: TokenManagerConfiguration
    let minter: ProjectAccessTokenMinter

    var logger: Logger { configuration.logger }

    func refreshUnderLock(_ connectionID: String, _ need: TokenManager.Need) async throws -> TokenManager.Snapshot {
        do {
            return try await store.withConnectionLock(connectionID: connectionID) { locked in
                try await refresh(locked, need)
            }
        } catch let error as StoreError where error.kind == .connectionNotFound {
            throw TokenError(.connectionNotFound, "connection '\(connectionID)' does not exist")
        }
    }

    private func refresh(_ locked: any LockedConnection, _ need: TokenManager.Need) async throws -> TokenManager.Snapshot {
        let connection = try await locked.connection()
        let id = connection.id
        guard connection.state == .active else {
            throw TokenError.reauthorization(id, "connection state is \(connection.state.rawValue)")
        }
        // Re-read inside the lock: another process may have refreshed while we waited for it.
        let stored = TokenManager.Snapshot(connection: connection, credentials: try await locked.credentials())
        if TokenManager.isUsable(stored, need, now: configuration.now(), configuration: configuration) {
            logger.debug("credentials already fresh in store", metadata: ["connection": "\(id)"])
            if let kind = Self.refreshKind(stored.credentials) {
                countRefresh(kind: kind, provider: connection.provider, outcome: "already_fresh")
            }
            return stored
        }
        switch stored.credentials {
        case .accessToken:
            return stored
        case .oauth2(let o):
            let refreshed = try await measured(kind: "oauth2", provider: connection.provider) {
                try await refreshOAuth2(o, connection, locked)
            }
            return TokenManager.Snapshot(connection: connection, credentials: .oauth2(refreshed))
        case .oauth1(let o):
            let minted = try await measured(kind: "git_token", provider: connection.provider) {
                try await mintGitToken(o, connection, locked)
            }
            return TokenManager.Snapshot(connection: connection, credentials: .oauth1(minted))
        }
    }

    // MARK: Metrics

    /// `pushbridge_token_refreshes_total{provider, kind, outcome}`: `kind` is `oauth2` (refresh
    /// grant) or `git_token` (HTTP access token minted for an OAuth 1.0a connection); `outcome` is
    /// `success`, `already_fresh` (another worker or daemon refreshed while this one waited for the
    /// lock), `reauthorization_required`, `persist_failed` or `failed`.
    static let refreshesLabel = "pushbridge_token_refreshes_total"

    private func measured<T: Sendable>(kind: String, provider: Provider, _ body: () async throws -> T) async throws -> T {
        do {
            let value = try await body()
            countRefresh(kind: kind, provider: provider, outcome: "success")
            return value
        } catch {
            countRefresh(kind: kind, provider: provider, outcome: Self.outcome(of: error))
            throw error
        }
    }

    private func countRefresh(kind: String, provider: Provider, outcome: String) {
        Counter(
            label: Self.refreshesLabel,
            dimensions: [("provider", provider.rawValue), ("kind", kind), ("outcome", outcome)],
            factory: configuration.clientOptions.metricsFactory ?? MetricsSystem.factory
        ).increment()
    }

    static func refreshKind(_ credentials: Credentials) -> String? {
        switch credentials {
        case .oauth2: "oauth2"
        case .oauth1: "git_token"
        case .accessToken: nil
        }
    }

    static func outcome(of error: any Error) -> String {
        switch (error as? TokenError)?.kind {
        case .reauthorizationRequired?: "reauthorization_required"
        case .persistFailed?: "persist_failed"
        default: "failed"
        }
    }

    private func refreshOAuth2(
        _ current: Credentials.OAuth2, _ connection: Connection, _ locked: any LockedConnection
    ) async throws -> Credentials.OAuth2 {
        let id = connection.id
        guard let refreshToken = current.refreshToken, !refreshToken.isEmpty else {
            try await locked.setState(.reauthorizationRequired)
            logger.warning("access token expired or rejected and no refresh token stored", metadata: ["connection": "\(id)"])
            throw TokenError.reauthorization(id, "the access token expired and there is no refresh token")
        }
        let token: OAuth2Token
        do {
            token = try await refreshCall(Secret(refreshToken), current, connection)
        } catch let error as BitbucketError {
            if error.code == .invalidGrant {
                try await locked.setState(.reauthorizationRequired)
                logger.warning(
                    "refresh token rejected; connection needs reauthorization",
                    metadata: ["connection": "\(id)", "code": "\(error.code)"])
                throw TokenError.reauthorization(id, "Bitbucket rejected the refresh token (invalid_grant)")
            }
            let retryable = TokenError.isTransient(error)
            logger.warning(
                "token refresh failed", metadata: ["connection": "\(id)", "code": "\(error.code)", "retryable": "\(retryable)"])
            throw TokenError(
                .refreshFailed, "refreshing the token of connection '\(id)' failed: \(error.code.rawValue)",
                retryable: retryable)
        }
        var updated = current
        updated.accessToken = token.accessToken.reveal()
        updated.refreshToken = token.refreshToken?.reveal() ?? refreshToken
        updated.expiresAt = token.expiresAt
        if !token.scopes.isEmpty { updated.scopes = token.scopes }
        // Rotation: the old refresh token dies after Bitbucket's grace period, so the new pair is
        // committed before anyone uses the new access token. A failed write is retried a few times
        // (the new refresh token exists nowhere else); if it still fails the old one stays usable
        // for the grace period and the caller retries the whole refresh.
        var lastError: (any Error)?
        for attempt in 1...3 {
            do {
                try await locked.updateCredentials(.oauth2(updated), state: nil)
                logger.info(
                    "token refreshed",
                    metadata: [
                        "connection": "\(id)", "rotated": "\(token.refreshToken != nil && token.refreshToken?.reveal() != refreshToken)",
                        "expiresAt": "\(updated.expiresAt.map { "\($0)" } ?? "unknown")",
                    ])
                return updated
            } catch {
                lastError = error
                logger.error("persisting refreshed tokens failed", metadata: ["connection": "\(id)", "attempt": "\(attempt)"])
                try? await Task.sleep(for: .milliseconds(50 * attempt))
            }
        }
        throw TokenError(
            .persistFailed,
            "refreshed tokens of connection '\(id)' could not be stored: \(lastError.map { "\(type(of: $0))" } ?? "?")",
            retryable: true)
    }

    private func refreshCall(_ refreshToken: Secret, _ current: Credentials.OAuth2, _ connection: Connection) async throws
        -> OAuth2Token
    {
        switch connection.provider {
        case .bitbucketCloud:
            guard let clientID = current.clientId ?? configuration.cloudClientID,
                  let secret = current.clientSecret.map(Secret.init) ?? configuration.cloudClientSecret
            else {
                throw TokenError(.configuration, "no Cloud OAuth consumer configured for connection '\(connection.id)'")
            }
            let client = CloudOAuth2Client(
                endpoints: Self.cloudEndpoints(connection, configuration), clientID: clientID, clientSecret: secret,
                transport: transport, options: configuration.clientOptions)
            return try await client.refresh(refreshToken)
        case .bitbucketDataCenter, .bitbucketServer:
            guard let clientID = current.clientId ?? configuration.dataCenterClientID,
                  let secret = current.clientSecret.map(Secret.init) ?? configuration.dataCenterClientSecret
            else {
                throw TokenError(.configuration, "no Data Center OAuth client configured for connection '\(connection.id)'")
            }
            let client = DataCenterOAuth2Client(
                endpoints: try Self.dataCenterEndpoints(connection, configuration), clientID: clientID, clientSecret: secret,
                redirectURI: configuration.dataCenterRedirectURI, transport: transport, options: configuration.clientOptions)
            return try await client.refresh(refreshToken)
        }
    }

    private func mintGitToken(
        _ current: Credentials.OAuth1, _ connection: Connection, _ locked: any LockedConnection
    ) async throws -> Credentials.OAuth1 {
        let signer = try Self.signer(current, connection, configuration)
        let now = configuration.now()
        let minted = try await minter.mint(
            baseURL: try Self.dataCenterEndpoints(connection, configuration).baseURL, projectKey: connection.workspace, signer: signer,
            name: "pushbridge-\(connection.id)-\(Int(now.timeIntervalSince1970))", expiryDays: configuration.gitTokenExpiryDays,
            now: now)
        var updated = current
        updated.gitAccessToken = minted.token.reveal()
        updated.gitAccessTokenExpiresAt = minted.expiresAt
        do {
            try await locked.updateCredentials(.oauth1(updated), state: nil)
        } catch {
            throw TokenError(
                .persistFailed, "git access token of connection '\(connection.id)' could not be stored", retryable: true)
        }
        logger.info(
            "git access token minted",
            metadata: ["connection": "\(connection.id)", "expiresAt": "\(minted.expiresAt.map { "\($0)" } ?? "never")"])
        return updated
    }

    // MARK: Endpoints

    static func cloudEndpoints(_ connection: Connection, _ configuration: TokenManagerConfiguration) -> CloudEndpoints {
        CloudEndpoints(
            apiBaseURL: connection.apiURL ?? configuration.cloudEndpoints.apiBaseURL,
            siteURL: connection.siteURL ?? configuration.cloudEndpoints.siteURL,
            gitBaseURL: connection.gitURL ?? configuration.cloudEndpoints.gitBaseURL)
    }

    static func dataCenterEndpoints(_ connection: Connection, _ configuration: TokenManagerConfiguration) throws
        -> DataCenterEndpoints
    {
        guard let base = connection.siteURL ?? connection.apiURL ?? configuration.dataCenterBaseURL else {
            throw TokenError(.configuration, "connection '\(connection.id)' has no base URL and PUSHBRIDGE_DC_API_URL is not set")
        }
        return DataCenterEndpoints(baseURL: base, gitBaseURL: connection.gitURL)
    }

    static func signer(
        _ credentials: Credentials.OAuth1, _ connection: Connection, _ configuration: TokenManagerConfiguration
    ) throws -> OAuth1Signer {
        guard let key = configuration.oauth1PrivateKey else {
            throw TokenError(.configuration, "no OAuth 1.0a private key configured (connection '\(connection.id)')")
        }
        let consumerKey = credentials.consumerKey.isEmpty ? (configuration.oauth1ConsumerKey ?? "") : credentials.consumerKey
        return OAuth1Signer(consumerKey: consumerKey, privateKey: key, token: Secret(credentials.accessToken))
    }
}

/// BitbucketKit ``CredentialProvider`` backed by a ``TokenManager``.
///
/// Remembers the access token it last handed out, so that when a client reports a `401`
/// (`forceRefresh: true`) the manager refreshes only if that token is still current — many
/// requests failing with the same expired token cause one refresh, not one each.
public final class TokenCredentialProvider: CredentialProvider {
    public let connectionID: String
    private let manager: TokenManager
    private let lastHandedOut = Mutex<Secret?>(nil)

    init(manager: TokenManager, connectionID: String) {
        self.manager = manager
        self.connectionID = connectionID
    }

    public func authorization(forceRefresh: Bool) async throws -> Authorization {
        let rejected = forceRefresh ? lastHandedOut.withLock { $0 } : nil
        let authorization = try await manager.authorization(
            connectionID: connectionID, forceRefresh: forceRefresh, rejected: rejected)
        if case .bearer(let token) = authorization {
            lastHandedOut.withLock { $0 = token }
        }
        return authorization
    }
}

extension Duration {
    var seconds: TimeInterval {
        let c = components
        return TimeInterval(c.seconds) + TimeInterval(c.attoseconds) / 1e18
    }
}
