import BitbucketEmulator
import BitbucketKit
import Foundation
import GitKit
@testable import PushBridge
import Testing

@Suite("TokenManager")
struct TokenManagerTests {
    @Test("20 concurrent credentials calls on an expired connection → one refresh grant", arguments: StoreBackend.allCases)
    func concurrentSingleFlight(backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            try await TokenEnvironment.with { bb in
                let issued = try await bb.addExpiredCloudConnection("acme-cloud", store: env.store)
                let manager = bb.manager(env.store)
                let results = try await withThrowingTaskGroup(of: ConnectionCredentials.self) { group in
                    for _ in 0..<20 { group.addTask { try await manager.credentials(connectionID: "acme-cloud") } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let grants = await bb.refreshGrants()
                print("[figures] \(backend): 20 concurrent calls, 1 manager → refresh grants = \(grants)")
                #expect(grants == 1)
                let stored = try await storedOAuth2(env.store, "acme-cloud")
                #expect(stored.accessToken != issued.accessToken)
                #expect(stored.refreshToken != issued.refreshToken)
                for result in results {
                    guard case .bearer(let token) = result.authorization else { Issue.record("not bearer"); continue }
                    #expect(token.reveal() == stored.accessToken)
                    #expect(result.git.description == "userPassword(username: x-token-auth, password: ***)")
                }
                // The new token works against Bitbucket.
                let client = CloudClient(
                    endpoints: bb.cloudEndpoints, credentials: manager.credentialProvider(connectionID: "acme-cloud"),
                    transport: bb.transport)
                #expect(try await client.currentUser().username == "alice")
                bb.logs.expectFree(of: [
                    issued.accessToken, issued.refreshToken ?? "", stored.accessToken, stored.refreshToken ?? "",
                    TokenEnvironment.cloudSecret,
                ])
            }
        }
    }

    @Test("two TokenManagers on two store instances (two daemons) → one refresh grant", arguments: StoreBackend.allCases)
    func twoDaemonsSingleFlight(backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            try await TokenEnvironment.with { bb in
                try await bb.addExpiredCloudConnection("acme-cloud", store: env.store)
                let other = try await env.openAnother()
                let managers = [bb.manager(env.store), bb.manager(other)]
                let tokens = try await withThrowingTaskGroup(of: String.self) { group in
                    for i in 0..<20 {
                        let manager = managers[i % 2]
                        group.addTask {
                            guard case .bearer(let t) = try await manager.credentials(connectionID: "acme-cloud").authorization
                            else { return "" }
                            return t.reveal()
                        }
                    }
                    return try await group.reduce(into: Set<String>()) { $0.insert($1) }
                }
                let grants = await bb.refreshGrants()
                print("[figures] \(backend): 20 concurrent calls, 2 managers on 2 store instances → refresh grants = \(grants)")
                #expect(grants == 1)
                #expect(tokens.count == 1)
            }
        }
    }

    @Test("rotation persisted: a new store instance reads the new refresh token; the old one dies after the grace", arguments: StoreBackend.allCases)
    func rotationSurvivesRestart(backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            try await TokenEnvironment.with { bb in
                let issued = try await bb.addExpiredCloudConnection("acme-cloud", store: env.store)
                _ = try await bb.manager(env.store).credentials(connectionID: "acme-cloud")

                // "Restart": a fresh store instance and manager, nothing cached.
                let restarted = try await env.openAnother()
                let persisted = try await storedOAuth2(restarted, "acme-cloud")
                #expect(persisted.refreshToken != nil)
                #expect(persisted.refreshToken != issued.refreshToken)

                await bb.emulator.advanceClock(by: 121)  // past the emulator's 120 s rotation grace
                let oauth = CloudOAuth2Client(
                    endpoints: bb.cloudEndpoints, clientID: TokenEnvironment.cloudClient,
                    clientSecret: Secret(TokenEnvironment.cloudSecret), transport: bb.transport,
                    options: BitbucketClientOptions(retry: .none))
                await #expect(throws: BitbucketError.self) { _ = try await oauth.refresh(Secret(issued.refreshToken!)) }

                let manager = bb.manager(restarted)
                let auth = try await manager.authorization(
                    connectionID: "acme-cloud", forceRefresh: true, rejected: Secret(persisted.accessToken))
                guard case .bearer(let token) = auth else { Issue.record("not bearer"); return }
                #expect(token.reveal() != persisted.accessToken)
                let grants = await bb.refreshGrants()
                print("[figures] \(backend): refresh grants after restart + forced refresh = \(grants)")
                #expect(grants == 2)
            }
        }
    }

    @Test("invalid_grant → reauthorization-required + reauthorization_required; another connection still works", arguments: StoreBackend.allCases)
    func invalidGrant(backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            try await TokenEnvironment.with { bb in
                let revoked = try await bb.addExpiredCloudConnection("revoked", store: env.store)
                try await bb.addExpiredCloudConnection("healthy", store: env.store)
                #expect(await bb.emulator.revokeRefreshToken(revoked.refreshToken!))
                let manager = bb.manager(env.store)

                let error = await expectCode("reauthorization_required") {
                    _ = try await manager.credentials(connectionID: "revoked")
                }
                #expect((error as? TokenError)?.retryable == false)
                #expect(try await env.store.connection(id: "revoked")?.state == .reauthorizationRequired)
                // Known bad: no second call to Bitbucket.
                await expectCode("reauthorization_required") { _ = try await manager.credentials(connectionID: "revoked") }
                let rejected = await bb.emulator.counters().rejectedRefreshes[TokenEnvironment.cloudClient] ?? 0
                print("[figures] \(backend): rejected refreshes for the revoked connection = \(rejected)")
                #expect(rejected == 1)

                _ = try await manager.credentials(connectionID: "healthy")
                #expect(try await env.store.connection(id: "healthy")?.state == .active)
                #expect(await bb.refreshGrants() == 1)
                bb.logs.expectFree(of: [revoked.accessToken, revoked.refreshToken!])
            }
        }
    }

    @Test("network error during refresh is retryable and keeps the state")
    func networkErrorIsRetryable() async throws {
        try await withStore(.sqlite) { env in
            try await TokenEnvironment.with { bb in
                _ = try await env.store.createConnection(
                    Connection(
                        id: "unreachable", provider: .bitbucketCloud, workspace: "acme",
                        apiURL: URL(string: "http://127.0.0.1:1/2.0"), siteURL: URL(string: "http://127.0.0.1:1"),
                        credentialsKind: .oauth2),
                    credentials: .oauth2(.init(
                        accessToken: "at-unreachable-secret", refreshToken: "rt-unreachable-secret",
                        expiresAt: Date().addingTimeInterval(-1))))
                let error = await expectCode("token_refresh_failed") {
                    _ = try await bb.manager(env.store).credentials(connectionID: "unreachable")
                }
                #expect((error as? TokenError)?.retryable == true)
                #expect(!"\(String(describing: error))".contains("rt-unreachable-secret"))
                #expect(try await env.store.connection(id: "unreachable")?.state == .active)
                #expect(try await storedOAuth2(env.store, "unreachable").refreshToken == "rt-unreachable-secret")
            }
        }
    }

    @Test("a Data Center connection without URLs refreshes against PUSHBRIDGE_DC_API_URL, and says which setting is missing without it")
    func dataCenterDefaultBaseURL() async throws {
        try await withStore(.sqlite) { env in
            try await TokenEnvironment.with { bb in
                let issued = try await bb.emulator.issueTokens(
                    product: .dataCenter, username: "alice", clientID: TokenEnvironment.dcClient)
                _ = try await env.store.createConnection(
                    Connection(id: "dc-default", provider: .bitbucketDataCenter, workspace: "PRJ", credentialsKind: .oauth2),
                    credentials: .oauth2(.init(
                        accessToken: issued.accessToken, refreshToken: issued.refreshToken,
                        expiresAt: Date().addingTimeInterval(-60))))

                let error = await expectCode("token_configuration") {
                    _ = try await bb.manager(env.store).credentials(connectionID: "dc-default")
                }
                #expect("\(String(describing: error))".contains("PUSHBRIDGE_DC_API_URL"))

                var configuration = bb.configuration()
                configuration.dataCenterBaseURL = bb.emulator.endpoints.dataCenter
                let tokens = TokenManager(store: env.store, transport: bb.transport, configuration: configuration)
                _ = try await tokens.credentials(connectionID: "dc-default")
                #expect(await bb.emulator.counters().refreshGrants[TokenEnvironment.dcClient] == 1)
                #expect(try await storedOAuth2(env.store, "dc-default").accessToken != issued.accessToken)
            }
        }
    }

    @Test("401 on a REST call → one refresh and one replay, even for concurrent requests")
    func unauthorizedTriggersOneRefresh() async throws {
        try await withStore(.sqlite) { env in
            try await TokenEnvironment.with { bb in
                // Stored expiry far ahead: only the 401 can trigger the refresh.
                let issued = try await bb.addExpiredCloudConnection(
                    "acme-cloud", store: env.store, expiresAt: Date().addingTimeInterval(3600))
                let manager = bb.manager(env.store)
                let client = CloudClient(
                    endpoints: bb.cloudEndpoints, credentials: manager.credentialProvider(connectionID: "acme-cloud"),
                    transport: bb.transport, options: BitbucketClientOptions(retry: .none))
                #expect(try await client.currentUser().username == "alice")
                #expect(await bb.refreshGrants() == 0)

                #expect(await bb.emulator.expireAccessToken(issued.accessToken))
                let users = try await withThrowingTaskGroup(of: String.self) { group in
                    for _ in 0..<5 { group.addTask { try await client.currentUser().username } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(users == Array(repeating: "alice", count: 5))
                let grants = await bb.refreshGrants()
                let unauthorized = await bb.emulator.counters().requestCount(status: 401)
                print("[figures] 401 → refresh grants = \(grants), 401 answers = \(unauthorized)")
                #expect(grants == 1)
                #expect(try await storedOAuth2(env.store, "acme-cloud").accessToken != issued.accessToken)
            }
        }
    }

    @Test("OAuth 1.0a: git access token minted once, reused across managers, renewed near expiry")
    func oauth1GitToken() async throws {
        try await withStore(.sqlite) { env in
            try await TokenEnvironment.with { bb in
                let key = try OAuth1PrivateKey.generate()
                await bb.emulator.registerOAuth1Consumer(
                    OAuth1ConsumerRegistration(consumerKey: "pushbridge", publicKeyPEM: key.publicKeyPEM))
                let oauth1 = try await bb.emulator.issueOAuth1AccessToken(consumerKey: "pushbridge", username: "alice")
                _ = try await env.store.createConnection(
                    Connection(
                        id: "server", provider: .bitbucketServer, workspace: "PRJ", siteURL: bb.emulator.endpoints.dataCenter,
                        credentialsKind: .oauth1),
                    credentials: .oauth1(.init(consumerKey: "pushbridge", accessToken: oauth1.token)))
                func minted() async -> Int { await bb.emulator.counters().tokensIssued["http-access-token"] ?? 0 }

                let manager = bb.manager(env.store, oauth1Key: key)
                let first = try await manager.credentials(connectionID: "server")
                _ = try await manager.gitCredentials(connectionID: "server")
                _ = try await bb.manager(env.store, oauth1Key: key).gitCredentials(connectionID: "server")
                let afterReuse = await minted()
                #expect(afterReuse == 1)
                guard case .oauth1(let stored) = try await env.store.credentials(connectionID: "server"),
                      let gitToken = stored.gitAccessToken
                else { Issue.record("no git token stored"); return }
                #expect(first.git.description == "httpHeader(Authorization: ***)")

                // The minted token authenticates as alice (Bearer); REST signs with OAuth 1.0a.
                let viaGitToken = DataCenterClient(
                    endpoints: DataCenterEndpoints(baseURL: bb.emulator.endpoints.dataCenter),
                    credentials: StaticCredentialProvider(.bearer(Secret(gitToken))), transport: bb.transport)
                #expect(try await viaGitToken.currentUser().username == "alice")
                let viaOAuth1 = DataCenterClient(
                    endpoints: DataCenterEndpoints(baseURL: bb.emulator.endpoints.dataCenter),
                    credentials: first.rest, transport: bb.transport)
                #expect(try await viaOAuth1.currentUser().username == "alice")

                // Near expiry (inside the 2-day renewal window) → a new token.
                var nearExpiry = stored
                nearExpiry.gitAccessTokenExpiresAt = Date().addingTimeInterval(3600)
                try await env.store.updateCredentials(connectionID: "server", .oauth1(nearExpiry), state: nil)
                _ = try await bb.manager(env.store, oauth1Key: key).gitCredentials(connectionID: "server")
                let afterRenewal = await minted()
                print("[figures] OAuth 1.0a git tokens minted: after 3 uses = \(afterReuse), after renewal = \(afterRenewal)")
                #expect(afterRenewal == 2)
                guard case .oauth1(let renewed) = try await env.store.credentials(connectionID: "server") else { return }
                #expect(renewed.gitAccessToken != gitToken)
                #expect((renewed.gitAccessTokenExpiresAt ?? .distantPast) > Date().addingTimeInterval(86_400 * 20))
                bb.logs.expectFree(of: [oauth1.token, gitToken, renewed.gitAccessToken ?? ""])
            }
        }
    }
}
