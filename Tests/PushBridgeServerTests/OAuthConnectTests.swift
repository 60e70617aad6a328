import AsyncHTTPClient
import BitbucketEmulator
import BitbucketKit
import Foundation
import Hummingbird
import HummingbirdTesting
import InMemoryLogging
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import PushBridge
import Synchronization
import Testing

@testable import PushBridgeServer

/// The OAuth connect flows end to end: the real API (live HTTP server, SQLite store, token manager)
/// against the Bitbucket emulator, with a plain HTTP client playing the user's browser.
@Suite("OAuth connect flows")
struct OAuthConnectTests {
    @Test("each provider: authorize → Bitbucket approves → callback creates a working connection", arguments: Provider.allCases)
    func connect(_ provider: Provider) async throws {
        try await OAuthFixture.with { fx in
            let dance = try await fx.dance(provider, connection: "conn-1", workspace: fx.workspace(provider))
            #expect(dance.callback.status == 200, "\(dance.callback.body)")
            let view = try #require(dance.callback.json["connection"] as? [String: Any])
            #expect(view["id"] as? String == "conn-1")
            #expect(view["provider"] as? String == provider.rawValue)
            #expect(view["state"] as? String == "active")

            let stored = try #require(try await fx.store.connection(id: "conn-1"))
            #expect(stored.state == .active)
            #expect(stored.workspace == fx.workspace(provider))
            #expect(stored.credentialsKind == (provider == .bitbucketServer ? .oauth1 : .oauth2))
            #expect(try await fx.currentUser("conn-1") == "alice")
            #expect(await fx.exchanges(provider) == 1)

            // DC: the authorize URL carried an S256 challenge of the verifier derived from the state.
            if provider == .bitbucketDataCenter {
                let query = URLComponents(string: dance.authorizeLocation)?.queryItems ?? []
                #expect(query.first { $0.name == "code_challenge_method" }?.value == "S256")
                #expect(query.first { $0.name == "code_challenge" }?.value == fx.pkce(dance.state).challenge)
            }
            if provider == .bitbucketServer {
                #expect(dance.authorizeLocation.hasPrefix(fx.emulator.endpoints.dataCenter.absoluteString + "/plugins/servlet/oauth/authorize?oauth_token="))
            }
            try await fx.expectNoSecrets(
                in: [dance.authorize.body, dance.authorizeLocation, dance.callbackLocation, dance.callback.body], dance: dance)
        }
    }

    @Test("a replayed callback is refused before any second exchange")
    func replay() async throws {
        try await OAuthFixture.with { fx in
            for provider in Provider.allCases {
                let id = "replay-\(provider.rawValue)"
                let dance = try await fx.dance(provider, connection: id, workspace: fx.workspace(provider))
                #expect(dance.callback.status == 200)
                let again = try await fx.get(fx.daemonURL(dance.callbackLocation))
                #expect(again.status == 400)
                #expect(again.errorCode == "invalid_oauth_state")
                #expect(await fx.exchanges(provider) == 1, "\(provider)")
            }
        }
    }

    @Test("forged, expired, other-provider and missing states are refused without an exchange")
    func badStates() async throws {
        try await OAuthFixture.with { fx in
            // Forged: the payload names another connection but keeps the original signature.
            let first = try await fx.dance(.bitbucketCloud, connection: "victim", workspace: "acme", followCallback: false)
            let parts = first.state.split(separator: ".").map(String.init)
            var payload = try #require(Base64URLText.decode(parts[1]))
            let text = String(decoding: payload, as: UTF8.self).replacingOccurrences(of: "victim", with: "attack")
            payload = Array(text.utf8)
            let forged = [parts[0], Base64URLText.encode(payload), parts[2]].joined(separator: ".")
            let forgedURL = first.callbackLocation.replacingOccurrences(of: first.state, with: forged)
            #expect(forgedURL != first.callbackLocation)
            var response = try await fx.get(fx.daemonURL(forgedURL))
            #expect(response.status == 400)
            #expect(response.errorCode == "invalid_oauth_state")
            #expect(response.errorMessage.contains("signature"))

            // Another provider's callback route.
            response = try await fx.get(
                fx.daemonURL(first.callbackLocation.replacingOccurrences(of: "/bitbucket-cloud/", with: "/bitbucket-datacenter/")))
            #expect(response.status == 400)
            #expect(response.errorCode == "invalid_oauth_state")
            #expect(response.errorMessage.contains("another provider"))

            // No state at all.
            response = try await fx.get(fx.daemonURL(OAuthFixture.publicURL + "/v1/oauth/bitbucket-cloud/callback?code=abc"))
            #expect(response.status == 400)
            #expect(response.errorCode == "invalid_oauth_state")

            // Expired: the clock moves past the TTL between Bitbucket's approval and the callback.
            fx.clock.advance(by: 601)
            response = try await fx.get(fx.daemonURL(first.callbackLocation))
            #expect(response.status == 400)
            #expect(response.errorCode == "invalid_oauth_state")
            #expect(response.errorMessage.contains("expired"))

            #expect(await fx.exchanges(.bitbucketCloud) == 0)
            #expect(try await fx.store.listConnections().isEmpty)
        }
    }

    @Test("a user who denies access gets authorization_denied and no connection", arguments: Provider.allCases)
    func denied(_ provider: Provider) async throws {
        try await OAuthFixture.with { fx in
            await fx.emulator.setAuthorizationDenied(true)
            let dance = try await fx.dance(provider, connection: "denied", workspace: fx.workspace(provider))
            #expect(dance.callback.status == 400)
            #expect(dance.callback.errorCode == "authorization_denied")
            #expect(try await fx.store.connection(id: "denied") == nil)
            #expect(await fx.exchanges(provider) == 0)
        }
    }

    @Test("re-authorizing a reauthorization-required connection makes it active with new tokens", arguments: Provider.allCases)
    func reauthorize(_ provider: Provider) async throws {
        try await OAuthFixture.with { fx in
            let first = try await fx.dance(provider, connection: "again", workspace: fx.workspace(provider))
            #expect(first.callback.status == 200)
            #expect(try await fx.currentUser("again") == "alice")
            let before = try await fx.store.credentials(connectionID: "again")
            try await fx.store.setConnectionState(connectionID: "again", .reauthorizationRequired)

            // Only the connection id: provider, workspace and base URL come from the stored connection.
            let second = try await fx.dance(provider, connection: "again", workspace: nil)
            #expect(second.callback.status == 200, "\(second.callback.body)")
            let stored = try #require(try await fx.store.connection(id: "again"))
            #expect(stored.state == .active)
            let after = try await fx.store.credentials(connectionID: "again")
            #expect(Self.accessToken(after) != Self.accessToken(before))
            #expect(try await fx.currentUser("again") == "alice")
            #expect(await fx.exchanges(provider) == 2)
            try await fx.expectNoSecrets(in: [second.callback.body], dance: second)
        }
    }

    @Test("authorize: JSON answer for API clients, validation, unconfigured providers")
    func authorizeRoute() async throws {
        try await OAuthFixture.with { fx in
            let json = try await fx.get(
                fx.daemon("/v1/oauth/bitbucket-cloud/authorize?connection=c1&workspace=acme"),
                headers: [("Authorization", "Bearer \(OAuthFixture.apiToken)"), ("Accept", "application/json")])
            #expect(json.status == 200)
            let url = try #require(json.json["url"] as? String)
            #expect(url.hasPrefix(fx.emulator.endpoints.cloudSite.absoluteString + "/site/oauth2/authorize?"))
            #expect(url.contains("state="))
            #expect((json.json["expiresAt"] as? String)?.isEmpty == false)

            let unauthenticated = try await fx.get(fx.daemon("/v1/oauth/bitbucket-cloud/authorize?connection=c1&workspace=acme"), headers: [])
            #expect(unauthenticated.status == 401)
            let noWorkspace = try await fx.get(fx.daemon("/v1/oauth/bitbucket-cloud/authorize?connection=c1"))
            #expect(noWorkspace.status == 422)
            #expect(noWorkspace.errorMessage.hasPrefix("workspace"))
            let badID = try await fx.get(fx.daemon("/v1/oauth/bitbucket-cloud/authorize?connection=Bad%20Id&workspace=acme"))
            #expect(badID.errorCode == "invalid_field")
            let unknown = try await fx.get(fx.daemon("/v1/oauth/gitlab/authorize?connection=c1&workspace=acme"))
            #expect(unknown.status == 404)
        }
        // A daemon without OAuth 1.0a settings or a DC client refuses those providers.
        try await OAuthFixture.with(configureDataCenterAndServer: false) { fx in
            for provider in [Provider.bitbucketDataCenter, .bitbucketServer] {
                let response = try await fx.get(
                    fx.daemon("/v1/oauth/\(provider.rawValue)/authorize?connection=c1&workspace=PRJ&baseUrl=http://127.0.0.1:9"))
                #expect(response.status == 422)
                #expect(response.errorCode == "oauth_not_configured")
            }
        }
    }

    static func accessToken(_ credentials: Credentials) -> String {
        switch credentials {
        case .oauth2(let o): o.accessToken
        case .oauth1(let o): o.accessToken
        case .accessToken(let t): t.token
        }
    }
}

// MARK: Fixture

/// A clock the test moves by hand (state expiry without sleeping).
final class OAuthTestClock: Sendable {
    private let current = Mutex(Date())
    var now: Date { current.withLock { $0 } }
    func advance(by seconds: TimeInterval) { current.withLock { $0 += seconds } }
}

struct HTTPAnswer {
    var status: Int
    var location: String?
    var body: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorMessage: String { ((json["error"] as? [String: Any])?["message"] as? String) ?? "" }
}

struct Dance {
    var authorize: HTTPAnswer
    var authorizeLocation: String
    var callbackLocation: String
    var state: String
    var callback: HTTPAnswer
}

struct OAuthFixture: Sendable {
    static let publicURL = "https://pushbridge.example.test"
    static let apiToken = "oauth-test-token-0123456789"
    static let cloudClient = "pb-cloud-client"
    static let cloudSecret = "cloud-client-SECRET-4711"
    static let dcClient = "pb-dc-client"
    static let dcSecret = "dc-client-SECRET-0815"
    static let consumerKey = "pushbridge-applink"

    let emulator: BitbucketEmulator
    let store: any Store
    let bitbucket: BitbucketServices
    let configuration: PushBridgeConfiguration
    let codec: OAuthStateCodec
    let clock: OAuthTestClock
    let logs: InMemoryLogHandler
    let http: HTTPClient
    let port: Int
    let privateKeyPEM: String

    func workspace(_ provider: Provider) -> String { provider == .bitbucketCloud ? "acme" : "PRJ" }

    /// Runs `body` against a live API; always tears everything down.
    static func with(
        configureDataCenterAndServer: Bool = true, _ body: @escaping @Sendable (OAuthFixture) async throws -> Void
    ) async throws {
        let directory = try TestPaths.makeTemporaryDirectory("oauth")
        defer { try? FileManager.default.removeItem(at: directory) }
        let emulator = try await BitbucketEmulator.start(logger: Logger(label: "emulator") { _ in SwiftLogNoOpLogHandler() })
        do {
            try await run(directory, emulator, configureDataCenterAndServer, body)
        } catch {
            try? await emulator.stop()
            throw error
        }
        try await emulator.stop()
    }

    private static func run(
        _ directory: URL, _ emulator: BitbucketEmulator, _ full: Bool,
        _ body: @escaping @Sendable (OAuthFixture) async throws -> Void
    ) async throws {
        try await emulator.createUser("alice", displayName: "Alice")
        try await emulator.createWorkspace("acme", name: "Acme", administrators: ["alice"])
        try await emulator.createDataCenterProject(key: "PRJ", name: "Platform", members: ["alice"])
        try await emulator.registerOAuth2Client(
            OAuth2ClientRegistration(
                product: .cloud, clientID: cloudClient, clientSecret: cloudSecret,
                redirectURI: publicURL + "/v1/oauth/bitbucket-cloud/callback"))
        try await emulator.registerOAuth2Client(
            OAuth2ClientRegistration(
                product: .dataCenter, clientID: dcClient, clientSecret: dcSecret,
                redirectURI: publicURL + "/v1/oauth/bitbucket-datacenter/callback",
                scopes: ["REPO_ADMIN", "PROJECT_ADMIN"]))
        let key = try OAuth1PrivateKey.generate()
        await emulator.registerOAuth1Consumer(OAuth1ConsumerRegistration(consumerKey: consumerKey, publicKeyPEM: key.publicKeyPEM))
        let keyFile = directory.appendingPathComponent("private.pem")
        try key.pkcs8PEM.reveal().write(to: keyFile, atomically: true, encoding: .utf8)

        var environment = [
            "PUSHBRIDGE_API_TOKENS": apiToken,
            "PUSHBRIDGE_MASTER_KEY": MasterKey.generate().exportBase64(),
            "PUSHBRIDGE_DATA_DIR": directory.path,
            "PUSHBRIDGE_DATABASE_URL": "sqlite://\(directory.path)/pushbridge.sqlite",
            "PUSHBRIDGE_PUBLIC_URL": publicURL,
            "PUSHBRIDGE_CLOUD_API_URL": emulator.endpoints.cloudAPI.absoluteString,
            "PUSHBRIDGE_CLOUD_SITE_URL": emulator.endpoints.cloudSite.absoluteString,
            "PUSHBRIDGE_CLOUD_GIT_URL": emulator.endpoints.cloudGit.absoluteString,
            "PUSHBRIDGE_CLOUD_CLIENT_ID": cloudClient,
            "PUSHBRIDGE_CLOUD_CLIENT_SECRET": cloudSecret,
            "PUSHBRIDGE_OAUTH_STATE_TTL": "10m",
        ]
        if full {
            environment.merge([
                "PUSHBRIDGE_DC_API_URL": emulator.endpoints.dataCenter.absoluteString,
                "PUSHBRIDGE_DC_CLIENT_ID": dcClient,
                "PUSHBRIDGE_DC_CLIENT_SECRET": dcSecret,
                "PUSHBRIDGE_OAUTH1_CONSUMER_KEY": consumerKey,
                "PUSHBRIDGE_OAUTH1_PRIVATE_KEY_FILE": keyFile.path,
            ]) { $1 }
        }
        let configuration = try await ConfigurationLoader.load(environment: environment, envFile: .none)
        let store = try await StoreFactory.open(
            databaseURL: "sqlite://\(directory.path)/pushbridge.sqlite", vault: try PushBridgeDaemon.vault(configuration))
        let logs = InMemoryLogHandler()
        var logger = Logger(label: "pushbridge") { _ in logs }
        logger.logLevel = .trace
        let bitbucket = try BitbucketServices(configuration: configuration, store: store, logger: logger)
        let clock = OAuthTestClock()
        let context = DaemonContext(
            configuration: configuration, store: store,
            archives: ArchiveStore(directory: configuration.archivesDirectory, limits: configuration.limits.archive),
            bitbucket: bitbucket, logger: logger)
        let api = PushBridgeAPI(
            configuration: configuration, store: store, archives: context.archives,
            registry: PrometheusCollectorRegistry(),
            extensions: [OAuthConnectRoutes(context: context, now: { clock.now })])
        let app = Application(
            router: api.buildRouter(), configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.redirectConfiguration = .disallow
        httpConfiguration.timeout = .init(connect: .seconds(5), read: .seconds(30))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        do {
            try await app.test(.live) { client in
                let fixture = OAuthFixture(
                    emulator: emulator, store: store, bitbucket: bitbucket, configuration: configuration,
                    codec: OAuthStateCodec(masterKey: configuration.masterKey.value), clock: clock, logs: logs, http: http,
                    port: try #require(client.port), privateKeyPEM: key.pkcs8PEM.reveal())
                try await body(fixture)
            }
        } catch {
            try? await http.shutdown()
            try? await bitbucket.shutdown()
            try? await store.close()
            throw error
        }
        try await http.shutdown()
        try await bitbucket.shutdown()
        try await store.close()
    }

    // MARK: Browser

    func daemon(_ pathAndQuery: String) -> String { "http://127.0.0.1:\(port)\(pathAndQuery)" }

    /// Where the browser would go: the public URL (a reverse proxy in production) maps to this daemon.
    func daemonURL(_ publicLocation: String) throws -> String {
        guard publicLocation.hasPrefix(Self.publicURL + "/") else {
            Issue.record("callback \(publicLocation) is not under PUSHBRIDGE_PUBLIC_URL")
            throw CancellationError()
        }
        return daemon(String(publicLocation.dropFirst(Self.publicURL.count)))
    }

    func get(_ url: String, headers: [(String, String)]? = nil) async throws -> HTTPAnswer {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        for (name, value) in headers ?? [("Authorization", "Bearer \(Self.apiToken)")] {
            request.headers.add(name: name, value: value)
        }
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return HTTPAnswer(
            status: Int(response.status.code), location: response.headers.first(name: "Location"),
            body: String(buffer: body))
    }

    /// authorize (bearer) → Bitbucket's authorize page (auto-approves, redirects) → callback (no bearer).
    func dance(_ provider: Provider, connection: String, workspace: String?, followCallback: Bool = true) async throws
        -> Dance
    {
        var query = "connection=\(connection)"
        if let workspace { query += "&workspace=\(workspace)" }
        let authorize = try await get(daemon("/v1/oauth/\(provider.rawValue)/authorize?\(query)"))
        guard authorize.status == 302, let bitbucketURL = authorize.location else {
            Issue.record("authorize answered \(authorize.status): \(authorize.body)")
            throw CancellationError()
        }
        let page = try await get(bitbucketURL, headers: [])
        guard page.status == 302, let callbackLocation = page.location else {
            Issue.record("Bitbucket authorize page answered \(page.status): \(page.body)")
            throw CancellationError()
        }
        let state = try #require(
            URLComponents(string: callbackLocation)?.queryItems?.first { $0.name == "state" }?.value)
        let callback =
            followCallback
            ? try await get(daemonURL(callbackLocation), headers: []) : HTTPAnswer(status: 0, location: nil, body: "")
        return Dance(
            authorize: authorize, authorizeLocation: bitbucketURL, callbackLocation: callbackLocation, state: state,
            callback: callback)
    }

    // MARK: Checks

    /// The connection's credentials, taken through the token manager, make a REST call Bitbucket accepts.
    func currentUser(_ connectionID: String) async throws -> String {
        let credentials = try await bitbucket.tokens.credentials(connectionID: connectionID)
        let client = try bitbucket.clients.client(for: credentials.connection, credentials: credentials.rest)
        return try await client.currentUser().username
    }

    /// Successful code / verifier exchanges the emulator answered for `provider`.
    func exchanges(_ provider: Provider) async -> Int {
        let route =
            switch provider {
            case .bitbucketCloud: "/site/oauth2/access_token"
            case .bitbucketDataCenter: "/rest/oauth2/latest/token"
            case .bitbucketServer: "/plugins/servlet/oauth/access-token"
            }
        return await emulator.counters().requestCount(method: "POST", route: route, status: 200)
    }

    func pkce(_ state: String) -> PKCE {
        let claims = try? codec.verify(state, provider: .bitbucketDataCenter, now: clock.now)
        return codec.pkce(nonce: claims?.nonce ?? "")
    }

    /// No client secret, token, PKCE verifier or private key in `bodies` or in any log line.
    func expectNoSecrets(in bodies: [String], dance: Dance, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        var secrets = [Self.cloudSecret, Self.dcSecret, Self.apiToken]
        secrets += privateKeyPEM.split(separator: "\n").filter { !$0.hasPrefix("-----") }.map(String.init)
        for connection in try await store.listConnections() {
            switch try await store.credentials(connectionID: connection.id) {
            case .oauth2(let o): secrets += [o.accessToken] + (o.refreshToken.map { [$0] } ?? [])
            case .oauth1(let o): secrets += [o.accessToken] + (o.gitAccessToken.map { [$0] } ?? [])
            case .accessToken(let t): secrets.append(t.token)
            }
        }
        if let claims = try? codec.verify(dance.state, provider: .bitbucketDataCenter, now: clock.now) {
            secrets.append(codec.pkce(nonce: claims.nonce).verifier.reveal())
        }
        let logText = logs.entries.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
        #expect(!logText.isEmpty, sourceLocation: sourceLocation)
        // Booleans, not the texts, go into the expectations: a failure must not print the secret.
        for secret in secrets where secret.count >= 8 {
            let inBody = bodies.contains { $0.contains(secret) }
            let inLogs = logText.contains(secret)
            #expect(!inBody, "a secret appeared in a response body", sourceLocation: sourceLocation)
            #expect(!inLogs, "a secret appeared in the logs", sourceLocation: sourceLocation)
        }
    }
}
