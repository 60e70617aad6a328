import BitbucketEmulator
import BitbucketKit
import Foundation
import Logging
import Synchronization
import Testing
import TestSupport

/// BitbucketKit's clients against the local Bitbucket emulator (real HTTP, real git).
@Suite("Clients against the emulator")
struct ClientAgainstEmulatorTests {
    private static func cloudEndpoints(_ h: EmulatorHarness) -> CloudEndpoints {
        CloudEndpoints(apiBaseURL: h.emulator.endpoints.cloudAPI, siteURL: h.emulator.endpoints.cloudSite, gitBaseURL: h.emulator.endpoints.cloudGit)
    }

    private static func dcEndpoints(_ h: EmulatorHarness) -> DataCenterEndpoints {
        DataCenterEndpoints(baseURL: h.emulator.endpoints.dataCenter)
    }

    private static func cloudClient(_ h: EmulatorHarness, _ transport: BitbucketHTTPTransport, token: String, sleeper: RecordingSleeper = RecordingSleeper(), maxAttempts: Int = 4) -> CloudClient {
        CloudClient(
            endpoints: cloudEndpoints(h),
            credentials: StaticCredentialProvider(.bearer(Secret(token))),
            transport: transport,
            options: testOptions(sleeper: sleeper, maxAttempts: maxAttempts)
        )
    }

    private static func dcClient(_ h: EmulatorHarness, _ transport: BitbucketHTTPTransport, credentials: any CredentialProvider) -> DataCenterClient {
        DataCenterClient(endpoints: dcEndpoints(h), credentials: credentials, transport: transport, options: testOptions())
    }

    // MARK: Cloud

    @Test func cloudOperations() async throws {
        try await EmulatorHarness.with { h in
            try await withTransport { transport in
                let token = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
                let client = Self.cloudClient(h, transport, token: token)

                let user = try await client.currentUser()
                #expect(user.username == "alice")
                #expect(user.displayName == "Alice Example")
                let workspaces = try await client.allNamespaces()
                #expect(workspaces.map(\.key) == ["acme"])
                #expect(workspaces.first?.kind == .workspace)

                let ref = RepositoryRef(namespace: "acme", slug: "Billing-Service")
                let created = try await client.ensureRepository(ref, create: RepositoryCreateOptions(isPrivate: true, projectKey: "PROJ"))
                #expect(created.created)
                #expect(created.repository.ref == RepositoryRef(namespace: "acme", slug: "billing-service"))
                #expect(created.repository.projectKey == "PROJ")
                #expect(created.repository.isPrivate)
                let canonical = created.repository.ref
                #expect(try client.gitRemoteURL(for: canonical) == h.emulator.endpoints.cloudCloneURL(workspace: "acme", slug: "billing-service"))
                // Adopting, and creating again, both return the existing repository.
                #expect(try await client.ensureRepository(canonical, create: .init()).created == false)
                #expect(try await client.createRepository(canonical, options: .init(projectKey: "PROJ")).created == false)
                #expect(try await client.repository(RepositoryRef(namespace: "acme", slug: "nope")) == nil)
                #expect(try await client.branch("main", in: canonical) == nil)

                let tips = try await EmulatorGit.pushTwoBranches(
                    to: try client.gitRemoteURL(for: canonical),
                    auth: .basicAuth(username: "x-token-auth", password: token),
                    feature: "pushbridge/billing"
                )
                #expect(try await client.branch("pushbridge/billing", in: canonical) == Branch(name: "pushbridge/billing", tipCommit: tips.feature))
                let fetched = try #require(try await client.repository(canonical))
                #expect(fetched.defaultBranch == "main")
                #expect(fetched.httpCloneURL != nil)

                let request = NewPullRequest(
                    title: "Build 1", description: "Generated", sourceBranch: "pushbridge/billing", destinationBranch: "main",
                    draft: true, closeSourceBranch: true
                )
                let first = try await client.findOrCreatePullRequest(request, in: canonical)
                #expect(first.created && !first.updated)
                let again = try await client.findOrCreatePullRequest(request, in: canonical)
                #expect(!again.created && !again.updated && again.pullRequest.id == first.pullRequest.id)
                var retitled = request
                retitled.title = "Build 2"
                let updated = try await client.findOrCreatePullRequest(retitled, in: canonical)
                #expect(updated.updated && updated.pullRequest.title == "Build 2")
                let duplicate = try await client.createPullRequest(request, in: canonical)
                #expect(!duplicate.created && duplicate.pullRequest.id == first.pullRequest.id)
                #expect(try await client.openPullRequest(from: "pushbridge/billing", to: "main", in: canonical)?.id == first.pullRequest.id)
                #expect(try await client.openPullRequest(from: "other", to: "main", in: canonical) == nil)
                let comment = try await client.commentOnPullRequest(first.pullRequest.id, in: canonical, text: "Regenerated.")
                #expect(comment.text == "Regenerated.")

                let stored = try #require(await h.emulator.pullRequest(in: .cloud(workspace: "acme", slug: "billing-service"), id: first.pullRequest.id))
                #expect(stored.title == "Build 2")
                #expect(stored.description == "Generated")
                #expect(stored.draft && stored.closeSourceBranch)
                #expect(stored.comments.map(\.text) == ["Regenerated."])
                #expect(await h.emulator.pullRequests(in: .cloud(workspace: "acme", slug: "billing-service")).count == 1)
            }
        }
    }

    @Test func cloudPaginationOverSeveralPages() async throws {
        try await EmulatorHarness.with { h in
            for index in 1...5 { try await h.emulator.createRepository(.cloud(workspace: "acme", slug: "svc-\(index)")) }
            try await h.emulator.createRepository(.cloud(workspace: "acme", slug: "other"))
            try await withTransport { transport in
                let token = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
                let client = Self.cloudClient(h, transport, token: token)
                let everything = try await client.allRepositories(in: "acme")
                #expect(everything.count == 6)
                await h.emulator.resetCounters()
                var slugs: [String] = []
                var cursor: PageCursor?
                var pages = 0
                repeat {
                    let page = try await client.repositories(in: "acme", query: "svc", cursor: cursor, pageSize: 2)
                    slugs += page.values.map(\.ref.slug)
                    cursor = page.nextCursor
                    pages += 1
                } while cursor != nil
                #expect(pages == 3)
                #expect(slugs.sorted() == (1...5).map { "svc-\($0)" })
                #expect(await h.emulator.counters().requestCount(method: "GET") == 3)
            }
        }
    }

    // MARK: Data Center (OAuth 2.0 bearer)

    @Test func dataCenterOperations() async throws {
        try await EmulatorHarness.with { h in
            try await withTransport { transport in
                let token = try await h.emulator.issueTokens(product: .dataCenter, username: "alice").accessToken
                let client = Self.dcClient(h, transport, credentials: StaticCredentialProvider(.bearer(Secret(token))))

                #expect(try await client.currentUser().username == "alice")
                #expect(try await client.allNamespaces().map(\.key).contains("PRJ"))

                let ref = RepositoryRef(namespace: "PRJ", slug: "svc")
                let created = try await client.createRepository(ref, options: RepositoryCreateOptions(isPrivate: true))
                #expect(created.created)
                #expect(created.repository.ref == ref)
                let again = try await client.createRepository(ref, options: .init())
                #expect(!again.created)
                #expect(try client.gitRemoteURL(for: ref) == h.emulator.endpoints.dataCenterCloneURL(project: "PRJ", slug: "svc"))
                #expect(try await client.allRepositories(in: "PRJ", query: "sv").map(\.ref.slug) == ["svc"])
                #expect(try await client.allRepositories(in: "PRJ", query: "zzz").isEmpty)

                let tips = try await EmulatorGit.pushTwoBranches(
                    to: try client.gitRemoteURL(for: ref), auth: .bearerAuth(token: token), feature: "pushbridge/svc")
                #expect(try await client.branch("pushbridge/svc", in: ref) == Branch(name: "pushbridge/svc", tipCommit: tips.feature))
                #expect(try await client.branch("pushbridge", in: ref) == nil)
                #expect(try await client.repository(ref)?.defaultBranch == "main")

                let request = NewPullRequest(title: "Build 1", description: "Generated", sourceBranch: "pushbridge/svc", destinationBranch: "main")
                let first = try await client.findOrCreatePullRequest(request, in: ref)
                #expect(first.created)
                let duplicate = try await client.createPullRequest(request, in: ref)
                #expect(!duplicate.created && duplicate.pullRequest.id == first.pullRequest.id)
                #expect(try await client.openPullRequest(from: "pushbridge/svc", to: "main", in: ref)?.id == first.pullRequest.id)

                // Stale version: a person edits the PR between our read and our write.
                let id = first.pullRequest.id
                let staleUpdate = try await StaleVersionScenario.run(h: h, token: token, ref: ref, id: id)
                #expect(staleUpdate.title == "Build 2")
                #expect(staleUpdate.description == "Edited by a person")
                let stored = try #require(await h.emulator.pullRequest(in: .dataCenter(project: "PRJ", slug: "svc"), id: id))
                #expect(stored.title == "Build 2")
                #expect(stored.version == staleUpdate.version)

                let comment = try await client.commentOnPullRequest(id, in: ref, text: "Regenerated.")
                #expect(comment.text == "Regenerated.")
                #expect(await h.emulator.pullRequest(in: .dataCenter(project: "PRJ", slug: "svc"), id: id)?.comments.map(\.text) == ["Regenerated."])
            }
        }
    }

    @Test func dataCenterPaginationOverSeveralPages() async throws {
        try await EmulatorHarness.with { h in
            for index in 1...5 { try await h.emulator.createRepository(.dataCenter(project: "PRJ", slug: "repo-\(index)")) }
            try await withTransport { transport in
                let token = try await h.emulator.issueTokens(product: .dataCenter, username: "alice").accessToken
                let client = Self.dcClient(h, transport, credentials: StaticCredentialProvider(.bearer(Secret(token))))
                var slugs: [String] = []
                var cursor: PageCursor?
                var pages = 0
                repeat {
                    let page = try await client.repositories(in: "PRJ", query: nil, cursor: cursor, pageSize: 2)
                    slugs += page.values.map(\.ref.slug)
                    cursor = page.nextCursor
                    pages += 1
                } while cursor != nil
                #expect(pages == 3)
                #expect(slugs.sorted() == (1...5).map { "repo-\($0)" })
                #expect(try await client.allRepositories(in: "PRJ").count == 5)
            }
        }
    }

    // MARK: Server/DC application link (OAuth 1.0a)

    @Test func applicationLinkFlowSignedCallsAndAccessTokenForGit() async throws {
        try await EmulatorHarness.with { h in
            let key = try OAuth1PrivateKey.generate()
            await h.emulator.registerOAuth1Consumer(OAuth1ConsumerRegistration(consumerKey: "pushbridge-link", publicKeyPEM: key.publicKeyPEM))
            try await h.emulator.createRepository(.dataCenter(project: "PRJ", slug: "linked"))
            try await withTransport { transport in
                let flow = OAuth1ApplicationLinkClient(endpoints: Self.dcEndpoints(h), consumerKey: "pushbridge-link", privateKey: key, transport: transport, options: testOptions())
                let requestToken = try await flow.requestToken(callback: URL(string: "http://127.0.0.1:1/oauth1-callback")!)
                #expect(requestToken.callbackConfirmed)
                let approval = try await h.send("GET", try flow.authorizationURL(requestToken: requestToken.token).absoluteString)
                #expect(approval.status == 302)
                let verifier = try #require(EmulatorHarness.queryItems(approval.header("Location"))["oauth_verifier"])
                let access = try await flow.accessToken(requestToken: requestToken.token, verifier: verifier)

                let client = Self.dcClient(h, transport, credentials: StaticCredentialProvider(.oauth1(flow.signer(accessToken: access.token))))
                #expect(try await client.currentUser().username == "alice")
                let ref = RepositoryRef(namespace: "PRJ", slug: "linked")
                #expect(try await client.repository(ref)?.ref == ref)
                let created = try await client.createRepository(RepositoryRef(namespace: "PRJ", slug: "via-oauth1"), options: .init())
                #expect(created.created)

                // OAuth 1.0a does not work for git: mint an HTTP access token and push with it.
                let gitToken = try await client.createAccessToken(for: ref, name: "pushbridge", permissions: [.repoWrite], expiryDays: 1)
                #expect(gitToken.expiresAt != nil)
                let tips = try await EmulatorGit.pushTwoBranches(
                    to: try client.gitRemoteURL(for: ref), auth: .bearerAuth(token: gitToken.token.reveal()), feature: "pushbridge/linked")
                #expect(try await client.branch("pushbridge/linked", in: ref)?.tipCommit == tips.feature)

                // Signed with another key: rejected.
                let forger = OAuth1Signer(consumerKey: "pushbridge-link", privateKey: try OAuth1PrivateKey.generate(), token: access.token)
                let forged = Self.dcClient(h, transport, credentials: StaticCredentialProvider(.oauth1(forger)))
                let error = await #expect(throws: BitbucketError.self) { try await forged.repository(ref) }
                #expect(error?.status == 401)
                // A verifier that does not belong to the request token: invalid_grant.
                let second = try await flow.requestToken(callback: URL(string: "http://127.0.0.1:1/oauth1-callback")!)
                let wrong = await #expect(throws: BitbucketError.self) { try await flow.accessToken(requestToken: second.token, verifier: "not-the-verifier") }
                #expect(wrong?.status == 401)
            }
        }
    }

    // MARK: OAuth 2.0

    @Test func cloudCodeRefreshRotationAndInvalidGrant() async throws {
        try await EmulatorHarness.with { h in
            await h.emulator.setRefreshTokenGrace(60)
            try await withTransport { transport in
                let oauth = CloudOAuth2Client(
                    endpoints: Self.cloudEndpoints(h), clientID: EmulatorHarness.cloudClient,
                    clientSecret: Secret(EmulatorHarness.cloudSecret), transport: transport, options: testOptions())
                let authorize = try await h.send("GET", try oauth.authorizationURL(state: "st-1").absoluteString)
                let query = EmulatorHarness.queryItems(authorize.header("Location"))
                #expect(query["state"] == "st-1")
                let code = try #require(query["code"])
                let token = try await oauth.exchange(code: code)
                let refresh1 = try #require(token.refreshToken)
                #expect(token.expiresIn == 7200)
                #expect(token.scopes.contains("pullrequest:write"))
                #expect(try await Self.cloudClient(h, transport, token: token.accessToken.reveal()).currentUser().username == "alice")

                let reused = await #expect(throws: BitbucketError.self) { try await oauth.exchange(code: code) }
                #expect(reused?.code == .invalidGrant)

                let rotated = try await oauth.refresh(refresh1)
                let refresh2 = try #require(rotated.refreshToken)
                #expect(refresh2 != refresh1)
                #expect(rotated.accessToken != token.accessToken)
                await h.emulator.advanceClock(by: 120)
                let stale = await #expect(throws: BitbucketError.self) { try await oauth.refresh(refresh1) }
                #expect(stale?.code == .invalidGrant)
                #expect(stale?.retryable == false)
                #expect(try await oauth.refresh(refresh2).refreshToken != refresh2)

                let wrongSecret = CloudOAuth2Client(
                    endpoints: Self.cloudEndpoints(h), clientID: EmulatorHarness.cloudClient,
                    clientSecret: Secret("wrong"), transport: transport, options: testOptions())
                let client = await #expect(throws: BitbucketError.self) { try await wrongSecret.clientCredentials() }
                #expect(client?.code == .invalidClient)
                #expect(try await oauth.clientCredentials().accessToken.isEmpty == false)
            }
        }
    }

    @Test func dataCenterPKCE() async throws {
        try await EmulatorHarness.with { h in
            try await withTransport { transport in
                let oauth = DataCenterOAuth2Client(
                    endpoints: Self.dcEndpoints(h), clientID: EmulatorHarness.dcClient, clientSecret: Secret(EmulatorHarness.dcSecret),
                    redirectURI: URL(string: EmulatorHarness.callback)!, transport: transport, options: testOptions())
                func code(_ pkce: PKCE) async throws -> String {
                    let response = try await h.send("GET", try oauth.authorizationURL(state: "s", scopes: ["REPO_ADMIN"], pkce: pkce).absoluteString)
                    return try #require(EmulatorHarness.queryItems(response.header("Location"))["code"])
                }
                let pkce = PKCE.generate()
                let mismatch = await #expect(throws: BitbucketError.self) {
                    try await oauth.exchange(code: try await code(pkce), verifier: PKCE.generate().verifier)
                }
                #expect(mismatch?.code == .invalidGrant)
                let token = try await oauth.exchange(code: try await code(pkce), verifier: pkce.verifier)
                let client = Self.dcClient(h, transport, credentials: StaticCredentialProvider(.bearer(token.accessToken)))
                #expect(try await client.currentUser().username == "alice")
                let refreshed = try await oauth.refresh(try #require(token.refreshToken))
                #expect(refreshed.accessToken != token.accessToken)
                #expect(refreshed.refreshToken != nil)
            }
        }
    }

    /// The 401 hook with a real refresh: the access token expires, the provider refreshes through the
    /// token endpoint, the request is replayed.
    @Test func expiredAccessTokenIsRefreshedAndReplayed() async throws {
        try await EmulatorHarness.with { h in
            try await withTransport { transport in
                let issued = try await h.emulator.issueTokens(product: .cloud, username: "alice", clientID: EmulatorHarness.cloudClient)
                let oauth = CloudOAuth2Client(
                    endpoints: Self.cloudEndpoints(h), clientID: EmulatorHarness.cloudClient,
                    clientSecret: Secret(EmulatorHarness.cloudSecret), transport: transport, options: testOptions())
                let provider = RefreshingProvider(
                    oauth: oauth,
                    token: OAuth2Token(accessToken: Secret(issued.accessToken), refreshToken: issued.refreshToken.map(Secret.init))
                )
                let client = CloudClient(endpoints: Self.cloudEndpoints(h), credentials: provider, transport: transport, options: testOptions())
                #expect(try await client.currentUser().username == "alice")
                #expect(await h.emulator.expireAccessToken(issued.accessToken))
                #expect(try await client.currentUser().username == "alice")
                #expect(provider.refreshes == 1)
                #expect(await h.emulator.counters().requestCount(route: "/2.0/user", status: 401) == 1)
            }
        }
    }

    // MARK: Faults

    @Test func faultInjection() async throws {
        try await EmulatorHarness.with { h in
            try await withTransport { transport in
                let token = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
                let sleeper = RecordingSleeper()
                let client = Self.cloudClient(h, transport, token: token, sleeper: sleeper, maxAttempts: 3)

                await h.emulator.injectFault(EmulatorFault(method: "GET", path: "/2.0/user", action: .status(429), count: 2))
                #expect(try await client.currentUser().username == "alice")
                #expect(sleeper.recorded.count == 2)

                await h.emulator.injectFault(EmulatorFault(method: "GET", path: "/2.0/user", action: .status(503, retryAfter: 3), count: 1))
                _ = try await client.currentUser()
                #expect(sleeper.recorded.last == .seconds(3))

                await h.emulator.injectFault(EmulatorFault(method: "GET", path: "/2.0/user", action: .status(503), count: nil))
                await h.emulator.resetCounters()
                let error = await #expect(throws: BitbucketError.self) { try await client.currentUser() }
                #expect(error?.code == .serverError)
                #expect(await h.emulator.counters().requestCount(method: "GET", status: 503) == 3)
                await h.emulator.clearFaults()

                await h.emulator.injectFault(EmulatorFault(method: "GET", path: "/2.0/user", action: .dropConnection, count: 1))
                #expect(try await client.currentUser().username == "alice")

                // A create whose answer is lost: looked up (absent), then sent again — one repository.
                await h.emulator.injectFault(EmulatorFault(method: "POST", path: "/2.0/repositories/*/*", action: .status(502), count: 1))
                await h.emulator.resetCounters()
                let outcome = try await client.createRepository(RepositoryRef(namespace: "acme", slug: "flaky"), options: .init(projectKey: "PROJ"))
                #expect(outcome.created)
                #expect(await h.emulator.counters().requestCount(method: "POST") == 2)
                #expect(await h.emulator.counters().requestCount(method: "GET") == 1)
                // A comment is never sent twice.
                await h.emulator.injectFault(EmulatorFault(method: "POST", path: "/2.0/repositories/*/*/pullrequests/*/comments", action: .status(503), count: 1))
                let comment = await #expect(throws: BitbucketError.self) {
                    try await client.commentOnPullRequest(1, in: RepositoryRef(namespace: "acme", slug: "flaky"), text: "x")
                }
                #expect(comment?.code == .serverError)
            }
        }
    }
}

/// Bearer credentials whose `n`-th request (1-based) first runs `hook`.
final class HookedProvider: CredentialProvider {
    private let token: String
    private let counter = Mutex(0)
    private let hook: @Sendable (Int) async -> Void

    init(token: String, hook: @escaping @Sendable (Int) async -> Void) {
        self.token = token
        self.hook = hook
    }

    func authorization(forceRefresh: Bool) async throws -> Authorization {
        let n = counter.withLock { value -> Int in
            value += 1
            return value
        }
        await hook(n)
        return .bearer(Secret(token))
    }
}

/// Drives a DC PR update whose first PUT carries a stale version: a second client edits the PR
/// right before our PUT (from inside the credentials provider, which runs just before each request).
enum StaleVersionScenario {
    static func run(h: EmulatorHarness, token: String, ref: RepositoryRef, id: Int) async throws -> PullRequest {
        let editor = HookedProvider(token: token) { n in
            // Request 2 of updatePullRequest is the PUT that follows the GET.
            guard n == 2 else { return }
            let path = "/rest/api/1.0/projects/\(ref.namespace)/repos/\(ref.slug)/pull-requests/\(id)"
            let current = try? await h.send("GET", path, bearer: token)
            let version = current?.json?["version"]?.intValue ?? 0
            let edit = try? await h.send("PUT", path, bearer: token, json: ["version": .number(Double(version)), "title": "Build 1", "description": "Edited by a person"])
            #expect(edit?.status == 200)
        }
        let updating = DataCenterClient(endpoints: DataCenterEndpoints(baseURL: h.emulator.endpoints.dataCenter), credentials: editor, transport: BitbucketHTTPTransport(borrowing: h.http), options: testOptions())
        await h.emulator.resetCounters()
        let updated = try await updating.updatePullRequest(id, in: ref, with: PullRequestUpdate(title: "Build 2"))
        // GET, PUT (409), GET, PUT.
        #expect(await h.emulator.counters().requestCount(method: "PUT", status: 409) == 1)
        return updated
    }
}

/// A minimal token manager: refreshes on `forceRefresh` through the OAuth client and keeps the
/// rotated refresh token.
final class RefreshingProvider: CredentialProvider {
    private let oauth: CloudOAuth2Client
    private let state: Mutex<(token: OAuth2Token, refreshes: Int)>

    init(oauth: CloudOAuth2Client, token: OAuth2Token) {
        self.oauth = oauth
        self.state = Mutex((token, 0))
    }

    var refreshes: Int { state.withLock { $0.refreshes } }

    func authorization(forceRefresh: Bool) async throws -> Authorization {
        let current = state.withLock { $0.token }
        guard forceRefresh else { return .bearer(current.accessToken) }
        guard let refreshToken = current.refreshToken else { throw BitbucketError(code: .unauthorized, message: "no refresh token") }
        let fresh = try await oauth.refresh(refreshToken)
        state.withLock { $0 = (fresh, $0.refreshes + 1) }
        return .bearer(fresh.accessToken)
    }
}
