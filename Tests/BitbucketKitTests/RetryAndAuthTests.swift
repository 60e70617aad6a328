import BitbucketKit
import Foundation
import InMemoryLogging
import Logging
import Testing

private let userJSON = #"{"type":"user","uuid":"{u-1}","account_id":"acc-1","nickname":"bot","display_name":"Bot"}"#

private func cloud(_ server: ScriptedServer, _ transport: BitbucketHTTPTransport, tokens: [String] = ["t"], options: BitbucketClientOptions) -> CloudClient {
    CloudClient(
        endpoints: CloudEndpoints(apiBaseURL: server.baseURL.appendingPathComponent("2.0"), siteURL: server.baseURL, gitBaseURL: server.baseURL),
        credentials: SequenceCredentialProvider(tokens),
        transport: transport,
        options: options
    )
}

private func dataCenter(_ server: ScriptedServer, _ transport: BitbucketHTTPTransport, options: BitbucketClientOptions) -> DataCenterClient {
    DataCenterClient(
        endpoints: DataCenterEndpoints(baseURL: server.baseURL),
        credentials: StaticCredentialProvider(.bearer(Secret("dc-token"))),
        transport: transport,
        options: options
    )
}

private let dcRepoJSON = #"{"id":7,"slug":"svc","name":"svc","public":false,"project":{"key":"PROJ"},"defaultBranch":"main","links":{"clone":[{"href":"http://h/scm/proj/svc.git","name":"http"}],"self":[{"href":"http://h/projects/PROJ/repos/svc/browse"}]}}"#

@Suite("Retry, backoff and the 401 refresh hook")
struct RetryAndAuthTests {
    @Test func rateLimitedThenSuccess() async throws {
        let sleeper = RecordingSleeper()
        try await withScriptedServer({ _, index in
            index == 0 ? .text(429, "Rate limit for this resource has been exceeded") : .json(200, userJSON)
        }) { server in
            try await withTransport { transport in
                let user = try await cloud(server, transport, options: testOptions(sleeper: sleeper)).currentUser()
                #expect(user.username == "bot")
                #expect(user.id == "{u-1}")
                #expect(server.requests.count == 2)
                #expect(sleeper.recorded.count == 1)
                #expect(sleeper.recorded.allSatisfy { $0 <= .milliseconds(5) })
            }
        }
    }

    @Test func serviceUnavailableGivesUpWithServerError() async throws {
        let sleeper = RecordingSleeper()
        try await withScriptedServer({ _, _ in .text(503, "down") }) { server in
            try await withTransport { transport in
                let client = cloud(server, transport, options: testOptions(sleeper: sleeper, maxAttempts: 3))
                let error = await #expect(throws: BitbucketError.self) { try await client.currentUser() }
                #expect(error?.code == .serverError)
                #expect(error?.status == 503)
                #expect(error?.retryable == true)
                #expect(server.requests.count == 3)
                #expect(sleeper.recorded.count == 2)
            }
        }
    }

    @Test func retryAfterSecondsIsHonoured() async throws {
        let sleeper = RecordingSleeper()
        try await withScriptedServer({ _, index in
            index == 0 ? .text(429, "slow down", headers: [("Retry-After", "7")]) : .json(200, userJSON)
        }) { server in
            try await withTransport { transport in
                _ = try await cloud(server, transport, options: testOptions(sleeper: sleeper)).currentUser()
                #expect(server.requests.count == 2)
                #expect(sleeper.recorded == [.seconds(7)])
            }
        }
    }

    @Test func retryAfterHTTPDateIsHonoured() async throws {
        let sleeper = RecordingSleeper()
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let start = Date()
        let date = formatter.string(from: start.addingTimeInterval(40))
        try await withScriptedServer({ _, index in
            index == 0 ? .text(503, "", headers: [("Retry-After", date)]) : .json(200, userJSON)
        }) { server in
            try await withTransport { transport in
                _ = try await cloud(server, transport, options: testOptions(sleeper: sleeper)).currentUser()
                #expect(server.requests.count == 2)
                let delay = try #require(sleeper.recorded.first)
                // The header has one-second resolution and was produced before the request ran, so the
                // delay is 40 s less the time that has passed since (which a loaded machine stretches).
                let elapsed = Date().timeIntervalSince(start)
                #expect(delay > .seconds(40 - elapsed - 1) && delay <= .seconds(40))
            }
        }
    }

    @Test func retryAfterBeyondTotalBudgetStopsImmediately() async throws {
        let sleeper = RecordingSleeper()
        try await withScriptedServer({ _, _ in .text(429, "", headers: [("Retry-After", "3600")]) }) { server in
            try await withTransport { transport in
                let error = await #expect(throws: BitbucketError.self) {
                    try await cloud(server, transport, options: testOptions(sleeper: sleeper)).currentUser()
                }
                #expect(error?.code == .rateLimited)
                #expect(error?.retryAfter == .seconds(3600))
                #expect(server.requests.count == 1)
                #expect(sleeper.recorded.isEmpty)
            }
        }
    }

    @Test func connectionFailuresAreRetriedAsNetworkErrors() async throws {
        let sleeper = RecordingSleeper()
        // AsyncHTTPClient keeps re-dialling a refused connection until the connect timeout; keep it short.
        try await withTransport(.init(connectTimeout: .milliseconds(200))) { transport in
            // Port 9 (discard) on loopback: nothing listens, the connection is refused.
            let client = CloudClient(
                endpoints: CloudEndpoints(apiBaseURL: URL(string: "http://127.0.0.1:9/2.0")!),
                credentials: StaticCredentialProvider(.bearer(Secret("t"))),
                transport: transport,
                options: testOptions(sleeper: sleeper, maxAttempts: 3)
            )
            let error = await #expect(throws: BitbucketError.self) { try await client.currentUser() }
            #expect(error?.code == .network)
            #expect(error?.retryable == true)
            #expect(sleeper.recorded.count == 2)
        }
    }

    @Test func postIsNotRetriedBlindly() async throws {
        let sleeper = RecordingSleeper()
        try await withScriptedServer({ _, _ in .text(503, "") }) { server in
            try await withTransport { transport in
                let client = cloud(server, transport, options: testOptions(sleeper: sleeper))
                let error = await #expect(throws: BitbucketError.self) {
                    try await client.commentOnPullRequest(3, in: RepositoryRef(namespace: "ws", slug: "r"), text: "hi")
                }
                #expect(error?.code == .serverError)
                #expect(server.requests.count == 1)
            }
        }
    }

    @Test func createRepositoryIsRetriedOnlyAfterLookupProvesAbsence() async throws {
        let sleeper = RecordingSleeper()
        let counter = RequestCounter()
        try await withScriptedServer({ request, _ in
            switch (request.method, request.path) {
            case ("POST", "/rest/api/1.0/projects/PROJ/repos"):
                // First POST fails in transit, the second succeeds.
                return counter.next("post") == 0 ? .text(503, "") : .json(201, dcRepoJSON)
            case ("GET", "/rest/api/1.0/projects/PROJ/repos/svc"):
                return .json(404, #"{"errors":[{"message":"Repository PROJ/svc does not exist."}]}"#)
            default:
                return .json(500, "{}")
            }
        }) { server in
            try await withTransport { transport in
                let outcome = try await dataCenter(server, transport, options: testOptions(sleeper: sleeper))
                    .createRepository(RepositoryRef(namespace: "PROJ", slug: "svc"), options: .init())
                #expect(outcome.created)
                #expect(outcome.repository.ref == RepositoryRef(namespace: "PROJ", slug: "svc"))
                #expect(outcome.repository.defaultBranch == "main")
                #expect(server.requests.map { "\($0.method) \($0.path)" } == [
                    "POST /rest/api/1.0/projects/PROJ/repos",
                    "GET /rest/api/1.0/projects/PROJ/repos/svc",
                    "POST /rest/api/1.0/projects/PROJ/repos",
                ])
                #expect(server.requests.filter { $0.method == "POST" }.allSatisfy { $0.headers["x-atlassian-token"] == "no-check" })
                let body = try #require(server.requests.first?.jsonBody)
                #expect(body["name"] as? String == "svc")
                #expect(body["scmId"] as? String == "git")
                #expect(body["public"] as? Bool == false)
            }
        }
    }

    @Test func createRepositoryIsNotRepeatedWhenLookupFindsIt() async throws {
        try await withScriptedServer({ request, _ in
            switch (request.method, request.path) {
            case ("POST", _): return .text(504, "gateway timeout")  // created, but the answer was lost
            case ("GET", "/rest/api/1.0/projects/PROJ/repos/svc"): return .json(200, dcRepoJSON)
            default: return .json(500, "{}")
            }
        }) { server in
            try await withTransport { transport in
                let outcome = try await dataCenter(server, transport, options: testOptions())
                    .createRepository(RepositoryRef(namespace: "PROJ", slug: "svc"), options: .init())
                #expect(!outcome.created)
                #expect(server.requests.filter { $0.method == "POST" }.count == 1)
            }
        }
    }

    @Test func createPullRequestIsRetriedOnlyAfterLookupProvesAbsence() async throws {
        let counter = RequestCounter()
        let created = #"{"id":5,"title":"T","description":"D","state":"OPEN","source":{"branch":{"name":"feature/x"}},"destination":{"branch":{"name":"main"}},"links":{"html":{"href":"http://h/pr/5"}}}"#
        try await withScriptedServer({ request, _ in
            switch request.method {
            case "POST": return counter.next("pr") == 0 ? .text(502, "bad gateway") : .json(201, created)
            default: return .json(200, #"{"values":[],"pagelen":50}"#)
            }
        }) { server in
            try await withTransport { transport in
                let creation = try await cloud(server, transport, options: testOptions()).createPullRequest(
                    NewPullRequest(title: "T", description: "D", sourceBranch: "feature/x", destinationBranch: "main", reviewers: ["{r-1}", "acc-2"], draft: true, closeSourceBranch: true),
                    in: RepositoryRef(namespace: "ws", slug: "svc")
                )
                #expect(creation.created)
                #expect(creation.pullRequest.id == 5)
                #expect(server.requests.map(\.method) == ["POST", "GET", "POST"])
                let lookup = server.requests[1]
                #expect(lookup.path == "/2.0/repositories/ws/svc/pullrequests")
                #expect(lookup.queryItems["q"] == #"source.branch.name = "feature/x" AND destination.branch.name = "main" AND state = "OPEN""#)
                let body = try #require(server.requests[0].jsonBody)
                #expect(body["title"] as? String == "T")
                #expect(body["draft"] as? Bool == true)
                #expect(body["close_source_branch"] as? Bool == true)
                #expect((body["source"] as? [String: Any]).flatMap { ($0["branch"] as? [String: Any])?["name"] as? String } == "feature/x")
                let reviewers = try #require(body["reviewers"] as? [[String: Any]])
                #expect(reviewers.first?["uuid"] as? String == "{r-1}")
                #expect(reviewers.last?["account_id"] as? String == "acc-2")
            }
        }
    }

    @Test func unauthorizedRefreshesOnceAndReplays() async throws {
        let provider = SequenceCredentialProvider(["stale-token", "fresh-token"])
        try await withScriptedServer({ request, _ in
            request.headers["authorization"] == "Bearer fresh-token"
                ? .json(200, userJSON)
                : .json(401, #"{"type":"error","error":{"message":"Access token expired."}}"#)
        }) { server in
            try await withTransport { transport in
                let client = CloudClient(
                    endpoints: CloudEndpoints(apiBaseURL: server.baseURL, siteURL: server.baseURL, gitBaseURL: server.baseURL),
                    credentials: provider,
                    transport: transport,
                    options: testOptions(maxAttempts: 1)
                )
                let user = try await client.currentUser()
                #expect(user.displayName == "Bot")
                #expect(provider.calls == [false, true])
                #expect(server.requests.map { $0.headers["authorization"] } == ["Bearer stale-token", "Bearer fresh-token"])
            }
        }
    }

    @Test func secondUnauthorizedIsThrownAfterOneReplay() async throws {
        let provider = SequenceCredentialProvider(["a", "b", "c"])
        try await withScriptedServer({ _, _ in .json(401, #"{"type":"error","error":{"message":"Access token expired."}}"#) }) { server in
            try await withTransport { transport in
                let client = CloudClient(
                    endpoints: CloudEndpoints(apiBaseURL: server.baseURL),
                    credentials: provider,
                    transport: transport,
                    options: testOptions()
                )
                let error = await #expect(throws: BitbucketError.self) { try await client.currentUser() }
                #expect(error?.code == .tokenExpired)
                #expect(provider.calls == [false, true])
                #expect(server.requests.count == 2)
            }
        }
    }

    @Test func providerErrorsPropagate() async throws {
        struct Refresh: CredentialProvider {
            func authorization(forceRefresh: Bool) async throws -> Authorization {
                if forceRefresh { throw BitbucketError(code: .invalidGrant, status: 400, message: "refresh token revoked") }
                return .bearer(Secret("old"))
            }
        }
        try await withScriptedServer({ _, _ in .json(401, "{}") }) { server in
            try await withTransport { transport in
                let client = DataCenterClient(endpoints: .init(baseURL: server.baseURL), credentials: Refresh(), transport: transport, options: testOptions())
                let error = await #expect(throws: BitbucketError.self) { try await client.namespaces(cursor: nil, pageSize: nil) }
                #expect(error?.code == .invalidGrant)
            }
        }
    }

    @Test func userAgentAndAcceptHeaders() async throws {
        try await withScriptedServer({ _, _ in .json(200, userJSON) }) { server in
            try await withTransport { transport in
                _ = try await cloud(server, transport, options: testOptions()).currentUser()
                let request = try #require(server.requests.first)
                #expect(request.headers["user-agent"] == "pushbridge/\(BitbucketKitVersion.current)")
                #expect(request.headers["accept"] == "application/json")
                #expect(request.path == "/2.0/user")
            }
        }
    }

    /// A hostile or buggy server echoing credentials must not get them into errors or logs.
    @Test func secretsStayOutOfErrorsAndLogs() async throws {
        let logs = InMemoryLogHandler()
        var logger = Logger(label: "test", factory: { _ in logs })
        logger.logLevel = .trace
        let accessToken = "access-SECRET-" + String(repeating: "z", count: 3000)
        let refreshToken = "refresh-SECRET-123"
        let clientSecret = "client-SECRET-456"
        try await withScriptedServer({ request, _ in
            if request.path.hasSuffix("/access_token") {
                let form = request.formItems
                return .json(400, #"{"error":"invalid_grant","error_description":"bad token \#(form["refresh_token"] ?? "") with \#(request.headers["authorization"] ?? "")"}"#)
            }
            if request.path == "/rest/oauth2/latest/token" {
                return .json(400, #"{"error":"invalid_grant","error_description":"verifier \#(request.formItems["code_verifier"] ?? "") secret \#(request.formItems["client_secret"] ?? "")"}"#)
            }
            return .json(403, #"{"type":"error","error":{"message":"token \#(request.headers["authorization"] ?? "") is not allowed"}}"#)
        }) { server in
            try await withTransport { transport in
                let options = testOptions(logger: logger)
                var errors: [BitbucketError] = []
                let client = CloudClient(
                    endpoints: CloudEndpoints(apiBaseURL: server.baseURL),
                    credentials: StaticCredentialProvider(.bearer(Secret(accessToken))),
                    transport: transport,
                    options: options
                )
                do { _ = try await client.currentUser() } catch let error as BitbucketError { errors.append(error) }
                let oauth = CloudOAuth2Client(
                    endpoints: CloudEndpoints(apiBaseURL: server.baseURL, siteURL: server.baseURL, gitBaseURL: server.baseURL),
                    clientID: "client-id",
                    clientSecret: Secret(clientSecret),
                    transport: transport,
                    options: options
                )
                do { _ = try await oauth.refresh(Secret(refreshToken)) } catch let error as BitbucketError { errors.append(error) }
                let pkce = PKCE.generate()
                let dc = DataCenterOAuth2Client(
                    endpoints: .init(baseURL: server.baseURL),
                    clientID: "dc-client",
                    clientSecret: Secret(clientSecret),
                    redirectURI: URL(string: "https://pushbridge.example/cb")!,
                    transport: transport,
                    options: options
                )
                do { _ = try await dc.exchange(code: "the-code-789", verifier: pkce.verifier) } catch let error as BitbucketError { errors.append(error) }

                #expect(errors.map(\.code) == [.forbidden, .invalidGrant, .invalidGrant])
                // The server really echoed them (so the test can fail) ...
                #expect(server.requests.count == 3)
                // ... but no error text or log line contains any secret.
                let basic = Data("client-id:\(clientSecret)".utf8).base64EncodedString()
                let secrets = [accessToken, refreshToken, clientSecret, basic, pkce.verifier.reveal(), "the-code-789"]
                let texts = errors.flatMap { [$0.description, $0.message, String(reflecting: $0)] }
                    + logs.entries.map { "\($0.message) \($0.metadata)" }
                #expect(!logs.entries.isEmpty)
                for (index, secret) in secrets.enumerated() {
                    #expect(!texts.contains { $0.contains(secret) }, "secret #\(index) leaked")
                }
                #expect(errors[0].message.contains("<redacted>"))
            }
        }
    }
}

/// Counts calls per key, for scripted handlers that answer differently the n-th time.
final class RequestCounter: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    func next(_ key: String) -> Int {
        counts.withLock { counts in
            let value = counts[key, default: 0]
            counts[key] = value + 1
            return value
        }
    }
}

import Synchronization
