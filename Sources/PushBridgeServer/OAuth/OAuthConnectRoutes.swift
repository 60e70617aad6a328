import BitbucketKit
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PushBridge

/// The OAuth connect flows of all three providers (DESIGN.md "HTTP API"):
///
/// - `GET /v1/oauth/{provider}/authorize?connection=&workspace=[&baseUrl=]` (bearer token): answers
///   `302` to Bitbucket's authorize page (or `200 {"url", "expiresAt"}` for `Accept: application/json`)
///   with a signed, expiring, single-use `state`; Data Center adds PKCE S256; OAuth 1.0a first obtains
///   a request token whose `oauth_callback` carries the state.
/// - `GET /v1/oauth/{provider}/callback` (public: a browser arrives here, protected by `state`):
///   exchanges the code or verifier and creates the connection, or replaces the credentials of an
///   existing one and sets it `active`.
///
/// No secret (client secret, tokens, PKCE verifier, private key) appears in a response or a log line.
public struct OAuthConnectRoutes: APIRouteExtension {
    /// DC scopes requested: repository creation needs project admin, pushes and pull requests need
    /// repository write (implied).
    public static let dataCenterScopes = ["PROJECT_ADMIN"]

    let context: DaemonContext
    let codec: OAuthStateCodec
    let now: @Sendable () -> Date

    /// - Parameters:
    ///   - context: The daemon's configuration, store and Bitbucket services.
    ///   - now: Clock for issuing and checking `state` expiry (tests inject one).
    public init(context: DaemonContext, now: @escaping @Sendable () -> Date = { Date() }) {
        self.context = context
        self.codec = OAuthStateCodec(masterKey: context.configuration.masterKey.value)
        self.now = now
    }

    public func addPublicRoutes(to router: Router<PushBridgeRequestContext>) {
        router.get("/v1/oauth/:provider/callback") { request, requestContext in
            try await callback(request, context: requestContext)
        }
    }

    public func addAuthenticatedRoutes(to group: RouterGroup<PushBridgeRequestContext>) {
        group.get("/oauth/:provider/authorize") { request, requestContext in
            try await authorize(request, context: requestContext)
        }
    }

    // MARK: Authorize

    struct AuthorizeView: Encodable {
        var url: String
        var expiresAt: Date
    }

    func authorize(_ request: Request, context requestContext: PushBridgeRequestContext) async throws -> Response {
        let provider = try Self.provider(requestContext)
        let query = request.uri.queryParameters
        guard let connectionID = query["connection"].map(String.init), PushBridgeAPI.isValidConnectionID(connectionID)
        else {
            throw APIError.invalidField("connection", "must be 1 to 64 of a-z 0-9 . _ - starting with a letter or digit")
        }
        let workspaceParameter = query["workspace"].map(String.init)
        let baseParameter = try PushBridgeAPI.url(query["baseUrl"].map(String.init), field: "baseUrl")
        if baseParameter != nil, provider == .bitbucketCloud {
            throw APIError.invalidField("baseUrl", "applies to bitbucket-datacenter and bitbucket-server only")
        }

        let workspace: String
        let baseURL: URL?
        let reauthorization: Bool
        if let existing = try await context.store.connection(id: connectionID) {
            guard existing.provider == provider else {
                throw APIError.invalidField("connection", "belongs to provider \(existing.provider.rawValue)")
            }
            if let workspaceParameter, workspaceParameter != existing.workspace {
                throw APIError.invalidField("workspace", "differs from the existing connection's workspace")
            }
            let existingBase = provider == .bitbucketCloud ? nil : existing.siteURL ?? existing.apiURL
            if let baseParameter, let existingBase, baseParameter != existingBase {
                throw APIError.invalidField("baseUrl", "differs from the existing connection's base URL")
            }
            workspace = existing.workspace
            baseURL = provider == .bitbucketCloud ? nil : existingBase ?? baseParameter ?? defaultBaseURL
            reauthorization = true
        } else {
            guard let workspaceParameter, !workspaceParameter.isEmpty, workspaceParameter.count <= 128 else {
                throw APIError.invalidField("workspace", "is required for a new connection (1 to 128 characters)")
            }
            workspace = workspaceParameter
            baseURL = provider == .bitbucketCloud ? nil : baseParameter ?? defaultBaseURL
            reauthorization = false
        }
        if provider != .bitbucketCloud, baseURL == nil {
            throw APIError.invalidField("baseUrl", "is required for \(provider.rawValue) (no PUSHBRIDGE_DC_API_URL default)")
        }
        try requireConfigured(provider)

        let ttl = context.configuration.oauthStateTTL.components.seconds
        let expiresAt = Date(timeIntervalSince1970: (now().timeIntervalSince1970 + Double(ttl)).rounded(.down))
        let claims = OAuthStateClaims(
            provider: provider, connection: connectionID, workspace: workspace, baseURL: baseURL,
            reauthorization: reauthorization, nonce: OAuthStateCodec.makeNonce(), expiresAt: expiresAt)
        let state = codec.issue(claims)
        let url = try await authorizationURL(claims, state: state)
        requestContext.logger.info(
            "OAuth authorization started",
            metadata: ["connection": "\(connectionID)", "provider": "\(provider.rawValue)", "reauthorization": "\(reauthorization)"])

        let wantsJSON = request.headers[.accept]?.contains("application/json") == true
        if wantsJSON {
            var response = try jsonResponse(AuthorizeView(url: url.absoluteString, expiresAt: expiresAt), status: .ok)
            response.headers[.cacheControl] = "no-store"
            return response
        }
        return Response(
            status: .found, headers: [.location: url.absoluteString, .cacheControl: "no-store"], body: .init())
    }

    private var defaultBaseURL: URL? {
        context.configuration.dataCenter.siteURL ?? context.configuration.dataCenter.apiURL
    }

    /// `<PUSHBRIDGE_PUBLIC_URL>/v1/oauth/{provider}/callback`.
    func callbackURL(_ provider: Provider) -> URL {
        context.configuration.publicURL.appendingPathComponent("v1/oauth/\(provider.rawValue)/callback")
    }

    private func authorizationURL(_ claims: OAuthStateClaims, state: String) async throws -> URL {
        switch claims.provider {
        case .bitbucketCloud:
            return try cloudClient().authorizationURL(state: state, redirectURI: callbackURL(.bitbucketCloud))
        case .bitbucketDataCenter:
            return try dataCenterClient(claims).authorizationURL(
                state: state, scopes: Self.dataCenterScopes, pkce: codec.pkce(nonce: claims.nonce))
        case .bitbucketServer:
            let client = try applicationLinkClient(claims)
            var components = URLComponents(url: callbackURL(.bitbucketServer), resolvingAgainstBaseURL: false)!
            components.queryItems = [URLQueryItem(name: "state", value: state)]
            let callback = components.url!
            do {
                let requestToken = try await client.requestToken(callback: callback)
                return try client.authorizationURL(requestToken: requestToken.token)
            } catch let error as BitbucketError {
                throw APIError(
                    .badGateway, code: "oauth_exchange_failed",
                    "Bitbucket refused the request-token call (\(error.code.rawValue))")
            }
        }
    }

    // MARK: Callback

    struct CallbackView: Encodable, ResponseEncodable {
        var connection: ConnectionView
    }

    func callback(_ request: Request, context requestContext: PushBridgeRequestContext) async throws -> Response {
        let provider = try Self.provider(requestContext)
        let query = request.uri.queryParameters
        guard let state = query["state"].map(String.init), !state.isEmpty else {
            throw Self.invalidState("the callback carries no state")
        }
        let claims: OAuthStateClaims
        do {
            claims = try codec.verify(state, provider: provider, now: now())
        } catch {
            throw Self.invalidState(error.rawValue)
        }
        // Consumed before anything else happens: a replay must never reach the token endpoint, even
        // when the first callback is still exchanging its code on another daemon.
        guard try await context.store.consumeOAuthState(nonce: claims.nonce, expiresAt: claims.expiresAt) else {
            throw Self.invalidState(OAuthStateRejection.replayed.rawValue)
        }

        if let problem = query["error"].map(String.init) ?? query["oauth_problem"].map(String.init) {
            if problem == "access_denied" || problem == "permission_denied" {
                throw APIError(.badRequest, code: "authorization_denied", "the Bitbucket user denied the authorization")
            }
            throw APIError(
                .badGateway, code: "oauth_exchange_failed",
                "Bitbucket answered the authorization with \(Self.printable(problem))")
        }
        try requireConfigured(provider)

        let credentials: Credentials
        do {
            credentials = try await exchange(claims, query: query)
        } catch let error as BitbucketError {
            throw APIError(
                .badGateway, code: "oauth_exchange_failed",
                "Bitbucket refused the authorization exchange (\(error.code.rawValue))")
        }

        let store = context.store
        let connection: Connection
        if claims.reauthorization {
            guard let existing = try await store.connection(id: claims.connection), existing.provider == provider else {
                throw StoreError(.connectionNotFound, "connection \"\(claims.connection)\" does not exist")
            }
            try await store.updateCredentials(connectionID: existing.id, credentials, state: .active)
            connection = try await store.connection(id: existing.id) ?? existing
        } else {
            var apiURL: URL?
            var gitURL: URL?
            if let base = claims.baseURL {
                apiURL = base
                gitURL = base.appendingPathComponent("scm")
            }
            connection = try await store.createConnection(
                Connection(
                    id: claims.connection, provider: provider, workspace: claims.workspace, apiURL: apiURL,
                    siteURL: claims.baseURL, gitURL: gitURL, credentialsKind: credentials.kind),
                credentials: credentials)
        }
        // The token manager may still hold the credentials Bitbucket just replaced.
        await context.bitbucket.tokens.forget(connectionID: connection.id)
        requestContext.logger.info(
            "connection authorized",
            metadata: [
                "connection": "\(connection.id)", "provider": "\(provider.rawValue)",
                "reauthorization": "\(claims.reauthorization)",
            ])
        var response = try jsonResponse(
            CallbackView(connection: ConnectionView(connection, credentials: credentials)), status: .ok)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    private func exchange(_ claims: OAuthStateClaims, query: Parameters) async throws -> Credentials {
        switch claims.provider {
        case .bitbucketCloud:
            let token = try await cloudClient().exchange(
                code: try Self.required(query, "code"), redirectURI: callbackURL(.bitbucketCloud))
            return .oauth2(Self.credentials(token))
        case .bitbucketDataCenter:
            let token = try await dataCenterClient(claims).exchange(
                code: try Self.required(query, "code"), verifier: codec.pkce(nonce: claims.nonce).verifier)
            return .oauth2(Self.credentials(token))
        case .bitbucketServer:
            let client = try applicationLinkClient(claims)
            let token = try await client.accessToken(
                requestToken: Secret(try Self.required(query, "oauth_token")),
                verifier: try Self.required(query, "oauth_verifier"))
            return .oauth1(
                .init(
                    consumerKey: client.consumer.consumerKey, accessToken: token.token.reveal(),
                    tokenSecret: token.tokenSecret?.reveal()))
        }
    }

    static func credentials(_ token: OAuth2Token) -> Credentials.OAuth2 {
        Credentials.OAuth2(
            accessToken: token.accessToken.reveal(), refreshToken: token.refreshToken?.reveal(),
            expiresAt: token.expiresAt, scopes: token.scopes)
    }

    // MARK: Clients

    private func cloudClient() throws -> CloudOAuth2Client {
        let cloud = context.configuration.cloud
        guard let id = cloud.clientID, let secret = cloud.clientSecret else { throw Self.notConfigured(.bitbucketCloud) }
        return CloudOAuth2Client(
            endpoints: context.bitbucket.cloudEndpoints, clientID: id, clientSecret: Secret(secret.value),
            transport: context.bitbucket.transport, options: context.bitbucket.clientOptions)
    }

    private func dataCenterClient(_ claims: OAuthStateClaims) throws -> DataCenterOAuth2Client {
        let dc = context.configuration.dataCenter
        guard let id = dc.clientID, let secret = dc.clientSecret else { throw Self.notConfigured(.bitbucketDataCenter) }
        guard let base = claims.baseURL else { throw Self.invalidState(OAuthStateRejection.malformed.rawValue) }
        return DataCenterOAuth2Client(
            endpoints: DataCenterEndpoints(baseURL: base), clientID: id, clientSecret: Secret(secret.value),
            redirectURI: callbackURL(.bitbucketDataCenter), transport: context.bitbucket.transport,
            options: context.bitbucket.clientOptions)
    }

    private func applicationLinkClient(_ claims: OAuthStateClaims) throws -> OAuth1ApplicationLinkClient {
        guard let consumerKey = context.configuration.oauth1.consumerKey, let key = context.bitbucket.oauth1PrivateKey
        else { throw Self.notConfigured(.bitbucketServer) }
        guard let base = claims.baseURL else { throw Self.invalidState(OAuthStateRejection.malformed.rawValue) }
        return OAuth1ApplicationLinkClient(
            endpoints: DataCenterEndpoints(baseURL: base), consumerKey: consumerKey, privateKey: key,
            transport: context.bitbucket.transport, options: context.bitbucket.clientOptions)
    }

    private func requireConfigured(_ provider: Provider) throws {
        let configuration = context.configuration
        let configured =
            switch provider {
            case .bitbucketCloud: configuration.cloud.clientID != nil && configuration.cloud.clientSecret != nil
            case .bitbucketDataCenter:
                configuration.dataCenter.clientID != nil && configuration.dataCenter.clientSecret != nil
            case .bitbucketServer: configuration.oauth1.consumerKey != nil && context.bitbucket.oauth1PrivateKey != nil
            }
        if !configured { throw Self.notConfigured(provider) }
    }

    // MARK: Helpers

    static func provider(_ context: PushBridgeRequestContext) throws -> Provider {
        let name = try context.parameters.require("provider")
        guard let provider = Provider(rawValue: name) else {
            throw APIError(.notFound, code: "not_found", "unknown OAuth provider \"\(printable(name))\"")
        }
        return provider
    }

    static func required(_ query: Parameters, _ name: String) throws -> String {
        guard let value = query[Substring(name)].map(String.init), !value.isEmpty else {
            throw APIError(.badRequest, code: "invalid_oauth_callback", "the callback carries no \(name)")
        }
        return value
    }

    static func invalidState(_ reason: String) -> APIError {
        APIError(.badRequest, code: "invalid_oauth_state", "invalid OAuth state: \(reason)")
    }

    static func notConfigured(_ provider: Provider) -> APIError {
        let variables =
            switch provider {
            case .bitbucketCloud: "PUSHBRIDGE_CLOUD_CLIENT_ID and PUSHBRIDGE_CLOUD_CLIENT_SECRET"
            case .bitbucketDataCenter: "PUSHBRIDGE_DC_CLIENT_ID and PUSHBRIDGE_DC_CLIENT_SECRET"
            case .bitbucketServer: "PUSHBRIDGE_OAUTH1_CONSUMER_KEY and PUSHBRIDGE_OAUTH1_PRIVATE_KEY_FILE"
            }
        return APIError(
            .unprocessableContent, code: "oauth_not_configured",
            "\(provider.rawValue) OAuth is not configured (set \(variables))")
    }

    /// Untrusted text for a message: short, printable ASCII only.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.prefix(64).filter { $0.value >= 0x20 && $0.value < 0x7F }))
    }
}
