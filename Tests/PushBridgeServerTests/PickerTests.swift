import BitbucketEmulator
import BitbucketKit
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import OpenAPIKit30
import Prometheus
import PushBridge
import Synchronization
import Testing

@testable import PushBridgeServer

/// The daemon's API with its production route extensions, in-process, over a real SQLite store,
/// talking to a real ``BitbucketEmulator`` through the daemon's own ``BitbucketServices``.
///
/// Emulator fixture: user `alice`; Cloud workspaces `acme` (admin), `beta`, `gamma`; DC projects
/// `PRJ`, `OPS`; seven repositories in `acme` and in `PRJ` (three named `billing-*`). Connections:
/// `cloud` (OAuth 2.0 consumer), `dc` (DC OAuth 2.0), `server` (OAuth 1.0a application link).
struct PickerFixture {
    static let slugs = ["auth", "billing-api", "billing-jobs", "billing-web", "frontend", "mailer", "search"]
    static let cloudClient = "pb-cloud"
    static let cloudSecret = "CLOUD-CLIENT-SECRET-7f3a"
    static let dcClient = "pb-dc"
    static let dcSecret = "DC-CLIENT-SECRET-91be"
    static let consumerKey = "pb-link"

    let directory: URL
    let emulator: BitbucketEmulator
    let store: any Store
    let services: BitbucketServices
    let configuration: PushBridgeConfiguration
    let api: PushBridgeAPI
    /// Every secret the daemon holds: none may appear in a response.
    let secrets: [String]
    let tokens: [String: EmulatorIssuedTokens]
    /// Every response body the test saw.
    let seen = ResponseLog()

    static func run(_ body: @escaping @Sendable (PickerFixture, any TestClientProtocol) async throws -> Void) async throws {
        let fixture = try await make()
        do {
            try await Application(router: fixture.api.buildRouter()).test(.router) { client in
                try await body(fixture, client)
            }
            for text in fixture.seen.texts.withLock({ $0 }) {
                for secret in fixture.secrets {
                    #expect(!text.contains(secret), "a secret leaked into a response: \(text.prefix(200))")
                }
            }
        } catch {
            await fixture.close()
            throw error
        }
        await fixture.close()
    }

    private static func make() async throws -> PickerFixture {
        let directory = try TestPaths.makeTemporaryDirectory("pickers")
        let emulator = try await BitbucketEmulator.start(
            logger: Logger(label: "emulator", factory: { _ in SwiftLogNoOpLogHandler() }))
        do {
            try await emulator.createUser("alice", displayName: "Alice")
            try await emulator.createWorkspace("acme", name: "Acme", administrators: ["alice"])
            try await emulator.createWorkspace("beta", name: "Beta", members: ["alice"])
            try await emulator.createWorkspace("gamma", name: "Gamma", members: ["alice"])
            try await emulator.createCloudProject(workspace: "acme", key: "PROJ", name: "Project")
            try await emulator.createDataCenterProject(key: "PRJ", name: "Platform", members: ["alice"])
            try await emulator.createDataCenterProject(key: "OPS", name: "Operations", members: ["alice"])
            for slug in slugs {
                try await emulator.createRepository(.cloud(workspace: "acme", slug: slug), name: slug)
                try await emulator.createRepository(.dataCenter(project: "PRJ", slug: slug), name: slug)
            }
            try await emulator.createRepository(.cloud(workspace: "beta", slug: "billing-beta"), name: "billing-beta")
            let callback = "http://127.0.0.1:1/callback"
            try await emulator.registerOAuth2Client(
                OAuth2ClientRegistration(
                    product: .cloud, clientID: cloudClient, clientSecret: cloudSecret, redirectURI: callback,
                    ownerUsername: "alice"))
            try await emulator.registerOAuth2Client(
                OAuth2ClientRegistration(product: .dataCenter, clientID: dcClient, clientSecret: dcSecret, redirectURI: callback))
            let key = try OAuth1PrivateKey.generate(bits: 2048)
            await emulator.registerOAuth1Consumer(OAuth1ConsumerRegistration(consumerKey: consumerKey, publicKeyPEM: key.publicKeyPEM))
            let keyFile = directory.appendingPathComponent("private.pem")
            try Data(key.pkcs8PEM.reveal().utf8).write(to: keyFile)

            let endpoints = emulator.endpoints
            let masterKey = MasterKey.generate()
            let configuration = try await ConfigurationLoader.load(
                environment: [
                    "PUSHBRIDGE_API_TOKENS": APITestHarness.tokens.joined(separator: ","),
                    "PUSHBRIDGE_MASTER_KEY": masterKey.exportBase64(),
                    "PUSHBRIDGE_DATA_DIR": directory.path,
                    "PUSHBRIDGE_DATABASE_URL": "sqlite://\(directory.path)/pushbridge.sqlite",
                    "PUSHBRIDGE_CLOUD_API_URL": endpoints.cloudAPI.absoluteString,
                    "PUSHBRIDGE_CLOUD_SITE_URL": endpoints.cloudSite.absoluteString,
                    "PUSHBRIDGE_CLOUD_GIT_URL": endpoints.cloudGit.absoluteString,
                    "PUSHBRIDGE_CLOUD_CLIENT_ID": cloudClient, "PUSHBRIDGE_CLOUD_CLIENT_SECRET": cloudSecret,
                    "PUSHBRIDGE_DC_API_URL": endpoints.dataCenter.absoluteString,
                    "PUSHBRIDGE_DC_CLIENT_ID": dcClient, "PUSHBRIDGE_DC_CLIENT_SECRET": dcSecret,
                    "PUSHBRIDGE_OAUTH1_CONSUMER_KEY": consumerKey, "PUSHBRIDGE_OAUTH1_PRIVATE_KEY_FILE": keyFile.path,
                ], envFile: .none)
            let store = try await StoreFactory.open(
                databaseURL: "sqlite://\(directory.path)/pushbridge.sqlite", vault: try PushBridgeDaemon.vault(configuration))
            let logger = Logger(label: "pickers", factory: { _ in SwiftLogNoOpLogHandler() })
            let services = try BitbucketServices(configuration: configuration, store: store, logger: logger)

            let cloud = try await emulator.issueTokens(product: .cloud, username: "alice", clientID: cloudClient)
            let dc = try await emulator.issueTokens(product: .dataCenter, username: "alice", clientID: dcClient)
            let oauth1 = try await emulator.issueOAuth1AccessToken(consumerKey: consumerKey, username: "alice")
            func oauth2(_ tokens: EmulatorIssuedTokens) -> Credentials {
                .oauth2(.init(
                    accessToken: tokens.accessToken, refreshToken: tokens.refreshToken,
                    expiresAt: Date().addingTimeInterval(TimeInterval(tokens.expiresIn))))
            }
            _ = try await store.createConnection(
                Connection(id: "cloud", provider: .bitbucketCloud, workspace: "acme", credentialsKind: .oauth2),
                credentials: oauth2(cloud))
            _ = try await store.createConnection(
                // URLs as `POST /v1/connections` with `baseUrl` stores them (TokenManager refreshes
                // Data Center tokens against the connection's own site URL).
                Connection(
                    id: "dc", provider: .bitbucketDataCenter, workspace: "PRJ", apiURL: endpoints.dataCenter,
                    siteURL: endpoints.dataCenter, credentialsKind: .oauth2),
                credentials: oauth2(dc))
            _ = try await store.createConnection(
                Connection(
                    id: "server", provider: .bitbucketServer, workspace: "PRJ", apiURL: endpoints.dataCenter,
                    siteURL: endpoints.dataCenter, credentialsKind: .oauth1),
                credentials: .oauth1(.init(consumerKey: consumerKey, accessToken: oauth1.token, tokenSecret: oauth1.secret)))

            let archives = ArchiveStore(directory: configuration.archivesDirectory, limits: configuration.limits.archive)
            let context = DaemonContext(
                configuration: configuration, store: store, archives: archives, bitbucket: services, logger: logger)
            let api = PushBridgeAPI(
                configuration: configuration, store: store, archives: archives, registry: PrometheusCollectorRegistry(),
                extensions: try PushBridgeDaemon.productionRoutes(context))
            let secrets =
                [cloud.accessToken, dc.accessToken, oauth1.token, oauth1.secret, cloudSecret, dcSecret, masterKey.exportBase64()]
                + [cloud.refreshToken, dc.refreshToken].compactMap { $0 }
                + key.pkcs8PEM.reveal().split(separator: "\n").filter { $0.count > 40 }.map(String.init)
            return PickerFixture(
                directory: directory, emulator: emulator, store: store, services: services,
                configuration: configuration, api: api, secrets: secrets, tokens: ["cloud": cloud, "dc": dc])
        } catch {
            try? await emulator.stop()
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    func close() async {
        try? await store.close()
        try? await services.shutdown()
        try? await emulator.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// GET `uri` with the bearer token; records the body for the secret check.
    func get(_ client: any TestClientProtocol, _ uri: String) async throws -> (status: HTTPResponse.Status, body: [String: Any], text: String) {
        try await client.execute(uri: uri, method: .get, headers: auth()) { response in
            let text = response.text
            seen.texts.withLock { $0.append(text) }
            let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
            return (response.status, object, text)
        }
    }

    /// Follows `next` from `uri` to the end; returns all items and the number of pages.
    func walk(_ client: any TestClientProtocol, _ uri: String) async throws -> (items: [[String: Any]], pages: Int) {
        var items: [[String: Any]] = []
        var next: String?
        var pages = 0
        repeat {
            let separator = uri.contains("?") ? "&" : "?"
            let page = try await get(client, next.map { uri + separator + "cursor=" + $0 } ?? uri)
            try #require(page.status == .ok, "\(uri): \(page.text)")
            items += try #require(page.body["items"] as? [[String: Any]], "\(page.text)")
            #expect(page.body.keys.contains("next"), "next must always be present: \(page.text)")
            next = page.body["next"] as? String
            pages += 1
        } while next != nil && pages < 50
        #expect(next == nil, "pagination did not end")
        return (items, pages)
    }

    /// The `next` cursor of the first page of `uri`.
    func firstCursor(_ client: any TestClientProtocol, _ uri: String) async throws -> String {
        let page = try await get(client, uri)
        return try #require(page.body["next"] as? String, "\(page.text)")
    }
}

/// Response bodies seen by a test, checked for secrets at its end.
final class ResponseLog: Sendable {
    let texts = Mutex<[String]>([])
}

@Suite("Pickers")
struct PickerTests {
    @Test("Cloud: workspaces and repositories page by cursor, every repository once; q filters on Bitbucket's side")
    func cloud() async throws {
        try await PickerFixture.run { fixture, client in
            let workspaces = try await fixture.walk(client, "/v1/connections/cloud/workspaces?limit=2")
            #expect(workspaces.pages == 2)
            #expect(workspaces.items.compactMap { $0["slug"] as? String }.sorted() == ["acme", "beta", "gamma"])
            let acme = try #require(workspaces.items.first { $0["slug"] as? String == "acme" })
            #expect(acme["administrator"] as? Bool == true)
            #expect((acme["name"] as? String)?.isEmpty == false)

            let all = try await fixture.walk(client, "/v1/connections/cloud/repositories?limit=3")
            #expect(all.pages == 3)
            let slugs = all.items.compactMap { $0["slug"] as? String }
            #expect(slugs.count == PickerFixture.slugs.count)
            #expect(Set(slugs) == Set(PickerFixture.slugs), "every repository exactly once: \(slugs)")
            let billing = try #require(all.items.first { $0["slug"] as? String == "billing-api" })
            #expect(billing["workspace"] as? String == "acme")
            #expect(billing["project"] as? String == "PROJ")
            #expect(billing["private"] as? Bool == true)
            #expect(billing["name"] as? String == "billing-api")
            #expect(billing.keys.contains("defaultBranch"))
            let cloneURL = fixture.emulator.endpoints.cloudCloneURL(workspace: "acme", slug: "billing-api").absoluteString
            #expect(billing["cloneUrl"] as? String == cloneURL)
            #expect((billing["url"] as? String)?.isEmpty == false)

            let filtered = try await fixture.walk(client, "/v1/connections/cloud/repositories?q=billing&limit=2")
            #expect(filtered.pages == 2)
            #expect(filtered.items.compactMap { $0["slug"] as? String }.sorted() == ["billing-api", "billing-jobs", "billing-web"])
            // The filter ran in Bitbucket: the emulator answered BBQL queries, not one unfiltered listing.
            let other = try await fixture.walk(client, "/v1/connections/cloud/repositories?workspace=beta&q=billing")
            #expect(other.items.compactMap { $0["slug"] as? String } == ["billing-beta"])
            #expect(other.items.first?["workspace"] as? String == "beta")
        }
    }

    @Test(
        "Data Center (OAuth 2.0) and Server (OAuth 1.0a): projects and repositories page by cursor; q filters",
        arguments: ["dc", "server"])
    func dataCenter(connection: String) async throws {
        try await PickerFixture.run { fixture, client in
            let projects = try await fixture.walk(client, "/v1/connections/\(connection)/projects?limit=1")
            #expect(projects.pages == 2)
            #expect(projects.items.compactMap { $0["key"] as? String }.sorted() == ["OPS", "PRJ"])
            #expect(projects.items.first { $0["key"] as? String == "PRJ" }?["name"] as? String == "Platform")

            let all = try await fixture.walk(client, "/v1/connections/\(connection)/repositories?limit=2")
            #expect(all.pages == 4)
            let slugs = all.items.compactMap { $0["slug"] as? String }
            #expect(slugs.count == PickerFixture.slugs.count)
            #expect(Set(slugs) == Set(PickerFixture.slugs), "every repository exactly once: \(slugs)")
            let item = try #require(all.items.first { $0["slug"] as? String == "search" })
            #expect(item["workspace"] as? String == "PRJ")
            #expect(item["project"] as? String == "PRJ")
            let clone = try #require(item["cloneUrl"] as? String)
            #expect(clone.hasPrefix(fixture.emulator.endpoints.dataCenter.absoluteString) && clone.hasSuffix("/search.git"), "\(clone)")

            let filtered = try await fixture.walk(client, "/v1/connections/\(connection)/repositories?q=billing&limit=2")
            #expect(filtered.pages == 2)
            #expect(filtered.items.compactMap { $0["slug"] as? String }.sorted() == ["billing-api", "billing-jobs", "billing-web"])
            let empty = try await fixture.walk(client, "/v1/connections/\(connection)/repositories?workspace=OPS")
            #expect(empty.items.isEmpty && empty.pages == 1)
        }
    }

    @Test("the other product's namespace route is 422 provider_mismatch; unknown connection 404; bad limit 422")
    func routing() async throws {
        try await PickerFixture.run { fixture, client in
            for (connection, route, hint) in [
                ("cloud", "projects", "workspaces"), ("dc", "workspaces", "projects"), ("server", "workspaces", "projects"),
            ] {
                let answer = try await fixture.get(client, "/v1/connections/\(connection)/\(route)")
                #expect(answer.status == .unprocessableContent, "\(connection)/\(route): \(answer.text)")
                #expect((answer.body["error"] as? [String: Any])?["code"] as? String == "provider_mismatch")
                let message = (answer.body["error"] as? [String: Any])?["message"] as? String ?? ""
                #expect(message.contains("/v1/connections/\(connection)/\(hint)"), "\(message)")
            }
            for route in ["workspaces", "projects", "repositories"] {
                let answer = try await fixture.get(client, "/v1/connections/nope/\(route)")
                #expect(answer.status == .notFound, "\(route): \(answer.text)")
                #expect((answer.body["error"] as? [String: Any])?["code"] as? String == "connection_not_found")
            }
            for limit in ["0", "101", "x"] {
                let answer = try await fixture.get(client, "/v1/connections/cloud/repositories?limit=\(limit)")
                #expect(answer.status == .unprocessableContent, "limit=\(limit): \(answer.text)")
            }
            let unknownWorkspace = try await fixture.get(client, "/v1/connections/cloud/repositories?workspace=nowhere")
            #expect(unknownWorkspace.status == .notFound, "\(unknownWorkspace.text)")
            #expect((unknownWorkspace.body["error"] as? [String: Any])?["code"] as? String == "bitbucket_not_found")
            try await client.execute(uri: "/v1/connections/cloud/repositories", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    @Test("bad, tampered, foreign and off-host cursors are refused with 400 before any Bitbucket call")
    func cursors() async throws {
        try await PickerFixture.run { fixture, client in
            let base = "/v1/connections/cloud/repositories?limit=2"
            let cursor = try await fixture.firstCursor(client, base)
            #expect(cursor.hasPrefix("pc1."))
            #expect(!cursor.contains("127.0.0.1") && !cursor.contains("http"), "the cursor is opaque")

            var tampered = Array(cursor)
            let index = tampered.index(tampered.startIndex, offsetBy: cursor.count / 2)
            tampered[index] = tampered[index] == "A" ? "B" : "A"
            let sealer = PickerCursorSealer(masterKey: fixture.configuration.masterKey.value)
            let cloudListing = PickerListing(connection: "cloud", route: "repositories", namespace: "acme", query: "")
            let inner = try sealer.open(cursor, for: cloudListing)
            // Sealed with the right key, bound to the right listing, but pointing at another host:
            // BitbucketKit's origin check must refuse it, so the token never leaves for that host.
            let nextURL = String(decoding: try #require(PickerCursorSealer.fromBase64URL(String(inner.rawValue.dropFirst(2)))), as: UTF8.self)
            #expect(nextURL.hasPrefix(fixture.emulator.endpoints.cloudAPI.absoluteString), "\(nextURL)")
            let elsewhere = nextURL.replacingOccurrences(of: "127.0.0.1", with: "127.0.0.2")
            let offHost = try #require(try sealer.seal(
                PageCursor(rawValue: "c." + PickerCursorSealer.base64URL(Data(elsewhere.utf8))), for: cloudListing))
            let foreignKey = try #require(try PickerCursorSealer(masterKey: Array(repeating: 7, count: 32)).seal(inner, for: cloudListing))

            let before = await fixture.emulator.counters().requestCount()
            let cases: [(String, String)] = [
                ("garbage", base + "&cursor=not-a-cursor"),
                ("tampered", base + "&cursor=" + String(tampered)),
                ("truncated", base + "&cursor=" + String(cursor.dropLast(6))),
                ("other q", base + "&q=billing&cursor=" + cursor),
                ("other workspace", base + "&workspace=beta&cursor=" + cursor),
                ("other connection", "/v1/connections/dc/repositories?cursor=" + cursor),
                ("other route", "/v1/connections/cloud/workspaces?cursor=" + cursor),
                ("other master key", base + "&cursor=" + foreignKey),
                ("off-host", base + "&cursor=" + offHost),
            ]
            for (label, uri) in cases {
                let answer = try await fixture.get(client, uri)
                #expect(answer.status == .badRequest, "\(label): \(answer.text)")
                #expect((answer.body["error"] as? [String: Any])?["code"] as? String == "invalid_cursor", "\(label)")
            }
            #expect(await fixture.emulator.counters().requestCount() == before, "a refused cursor must not reach Bitbucket")
            // The genuine cursor still works.
            #expect(try await fixture.get(client, base + "&cursor=" + cursor).status == .ok)
        }
    }

    @Test("an expired access token is refreshed transparently, once; a revoked refresh token is 409 reauthorization_required")
    func tokens() async throws {
        try await PickerFixture.run { fixture, client in
            for (connection, clientID) in [("cloud", PickerFixture.cloudClient), ("dc", PickerFixture.dcClient)] {
                let issued = try #require(fixture.tokens[connection])
                #expect(await fixture.emulator.expireAccessToken(issued.accessToken))
                let first = try await fixture.get(client, "/v1/connections/\(connection)/repositories")
                #expect(first.status == .ok, "\(first.text)")
                #expect((first.body["items"] as? [Any])?.count == PickerFixture.slugs.count)
                #expect(await fixture.emulator.counters().refreshGrants[clientID] == 1)
                let second = try await fixture.get(client, "/v1/connections/\(connection)/repositories")
                #expect(second.status == .ok)
                #expect(await fixture.emulator.counters().refreshGrants[clientID] == 1, "the refreshed token is reused")
            }

            // The rotated refresh token is the stored one now: revoke it, and expire the access token.
            guard case .oauth2(let stored) = try await fixture.store.credentials(connectionID: "cloud") else {
                Issue.record("cloud credentials are not OAuth 2.0")
                return
            }
            #expect(await fixture.emulator.revokeRefreshToken(try #require(stored.refreshToken)))
            #expect(await fixture.emulator.expireAccessToken(stored.accessToken))
            let refused = try await fixture.get(client, "/v1/connections/cloud/workspaces")
            #expect(refused.status == .conflict, "\(refused.text)")
            #expect((refused.body["error"] as? [String: Any])?["code"] as? String == "reauthorization_required")
            #expect(try await fixture.store.connection(id: "cloud")?.state == .reauthorizationRequired)
            #expect(!refused.text.contains(stored.refreshToken ?? "-") && !refused.text.contains(stored.accessToken))
        }
    }

    @Test("the picker routes are in the OpenAPI document")
    func documented() async throws {
        try await PickerFixture.run { fixture, _ in
            let router = fixture.api.buildRouter()
            // ":id" (router) and "{id}" (OpenAPI) are the same parameter.
            let routed = Set(
                router.routes.map { route in
                    "/" + route.path.description.trimmingCharacters(in: ["/"]).split(separator: "/").map { segment in
                        segment.hasPrefix(":") || segment.hasPrefix("{") ? "{id}" : String(segment)
                    }.joined(separator: "/")
                }.filter { $0.hasPrefix("/v1/connections/{id}/") })
            #expect(routed == ["/v1/connections/{id}/workspaces", "/v1/connections/{id}/projects", "/v1/connections/{id}/repositories"])
            let file = TestPaths.packageRoot.appendingPathComponent("openapi/pushbridge.json")
            let document = try JSONDecoder().decode(OpenAPI.Document.self, from: Data(contentsOf: file))
            for path in routed {
                let item = document.paths[OpenAPI.Path(rawValue: path)]
                let operation = item?.pathItemValue?.get
                #expect(operation != nil, "\(path) is not documented")
            }
        }
    }
}
