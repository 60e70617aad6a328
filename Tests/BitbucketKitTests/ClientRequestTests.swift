import BitbucketKit
import Foundation
import Testing

private func dcPR(id: Int, version: Int, title: String = "T", from: String = "feature", to: String = "main") -> String {
    #"{"id":\#(id),"version":\#(version),"title":"\#(title)","description":"D","state":"OPEN","fromRef":{"id":"refs/heads/\#(from)","displayId":"\#(from)","repository":{"slug":"svc","project":{"key":"PROJ"}}},"toRef":{"id":"refs/heads/\#(to)","displayId":"\#(to)","repository":{"slug":"svc","project":{"key":"PROJ"}}},"reviewers":[{"user":{"name":"bob"}}],"links":{"self":[{"href":"http://h/pr/\#(id)"}]}}"#
}

private func dcClient(_ server: ScriptedServer, _ transport: BitbucketHTTPTransport) -> DataCenterClient {
    DataCenterClient(
        endpoints: .init(baseURL: server.baseURL),
        credentials: StaticCredentialProvider(.bearer(Secret("dc"))),
        transport: transport,
        options: testOptions()
    )
}

private func cloudClient(_ server: ScriptedServer, _ transport: BitbucketHTTPTransport) -> CloudClient {
    CloudClient(
        endpoints: CloudEndpoints(apiBaseURL: server.baseURL.appendingPathComponent("2.0"), siteURL: server.baseURL, gitBaseURL: URL(string: "https://git.example.org/")!),
        credentials: StaticCredentialProvider(.bearer(Secret("c"))),
        transport: transport,
        options: testOptions()
    )
}

private let ref = RepositoryRef(namespace: "PROJ", slug: "svc")

@Suite("Client request shapes")
struct ClientRequestTests {
    @Test func dataCenterDuplicatePullRequestReturnsExisting() async throws {
        try await withScriptedServer({ request, _ in
            .json(409, #"{"errors":[{"context":null,"message":"Only one pull request may be open for a given source and target branch","exceptionName":"com.atlassian.bitbucket.pull.DuplicatePullRequestException","existingPullRequest":\#(dcPR(id: 12, version: 3))}]}"#)
        }) { server in
            try await withTransport { transport in
                let creation = try await dcClient(server, transport).createPullRequest(
                    NewPullRequest(title: "T", sourceBranch: "feature", destinationBranch: "main", reviewers: ["bob"]),
                    in: ref
                )
                #expect(!creation.created)
                #expect(creation.pullRequest.id == 12)
                #expect(creation.pullRequest.version == 3)
                #expect(creation.pullRequest.sourceBranch == "feature")
                let post = try #require(server.requests.first)
                #expect(post.path == "/rest/api/1.0/projects/PROJ/repos/svc/pull-requests")
                #expect(post.headers["x-atlassian-token"] == "no-check")
                let body = try #require(post.jsonBody)
                #expect((body["fromRef"] as? [String: Any])?["id"] as? String == "refs/heads/feature")
                #expect(((body["toRef"] as? [String: Any])?["repository"] as? [String: Any])?["slug"] as? String == "svc")
                #expect(((body["reviewers"] as? [[String: Any]])?.first?["user"] as? [String: Any])?["name"] as? String == "bob")
                #expect(body["draft"] == nil)
                #expect(server.requests.count == 1)
            }
        }
    }

    @Test func dataCenterStaleVersionIsReReadAndRetriedOnce() async throws {
        let counter = RequestCounter()
        try await withScriptedServer({ request, _ in
            switch request.method {
            case "GET":
                return .json(200, dcPR(id: 4, version: counter.next("get") == 0 ? 1 : 2))
            default:
                let version = request.jsonBody?["version"] as? Int
                return version == 2
                    ? .json(200, dcPR(id: 4, version: 3, title: "New"))
                    : .json(409, #"{"errors":[{"message":"You are attempting to modify a pull request based on out-of-date information.","exceptionName":"com.atlassian.bitbucket.pull.PullRequestOutOfDateException"}]}"#)
            }
        }) { server in
            try await withTransport { transport in
                let updated = try await dcClient(server, transport).updatePullRequest(4, in: ref, with: PullRequestUpdate(title: "New"))
                #expect(updated.title == "New")
                #expect(updated.version == 3)
                #expect(server.requests.map(\.method) == ["GET", "PUT", "GET", "PUT"])
                let put = try #require(server.requests.last?.jsonBody)
                #expect(put["title"] as? String == "New")
                #expect(put["description"] as? String == "D")
                #expect(((put["reviewers"] as? [[String: Any]])?.first?["user"] as? [String: Any])?["name"] as? String == "bob")
                #expect(server.requests.last?.headers["x-atlassian-token"] == "no-check")
            }
        }
    }

    @Test func dataCenterPersistentConflictIsThrown() async throws {
        try await withScriptedServer({ request, _ in
            request.method == "GET" ? .json(200, dcPR(id: 4, version: 1)) : .json(409, #"{"errors":[{"message":"stale"}]}"#)
        }) { server in
            try await withTransport { transport in
                let error = await #expect(throws: BitbucketError.self) {
                    try await dcClient(server, transport).updatePullRequest(4, in: ref, with: PullRequestUpdate(description: "x"))
                }
                #expect(error?.code == .conflict)
                #expect(server.requests.filter { $0.method == "PUT" }.count == 2)
            }
        }
    }

    @Test func dataCenterPaginationAndCursor() async throws {
        try await withScriptedServer({ request, _ in
            let start = Int(request.queryItems["start"] ?? "0") ?? 0
            let isLast = start >= 4
            let values = (start..<min(start + 2, 5)).map { #"{"key":"P\#($0)","name":"Project \#($0)","id":\#($0)}"# }.joined(separator: ",")
            return .json(200, #"{"values":[\#(values)],"isLastPage":\#(isLast),"start":\#(start),"limit":2,"size":2\#(isLast ? "" : ",\"nextPageStart\":\(start + 2)")}"#)
        }) { server in
            try await withTransport { transport in
                let client = dcClient(server, transport)
                let all = try await client.allNamespaces()
                #expect(all.map(\.key) == ["P0", "P1", "P2", "P3", "P4"])
                let first = try await client.namespaces(cursor: nil, pageSize: 2)
                #expect(first.values.map(\.key) == ["P0", "P1"])
                let cursor = try #require(first.nextCursor)
                let second = try await client.namespaces(cursor: cursor, pageSize: 2)
                #expect(second.values.map(\.key) == ["P2", "P3"])
                #expect(server.requests.last?.queryItems["start"] == "2")
                #expect(server.requests.last?.queryItems["limit"] == "2")
                let error = await #expect(throws: BitbucketError.self) {
                    try await client.namespaces(cursor: PageCursor(rawValue: "c.aHR0cDovL2V2aWwuZXhhbXBsZS8"), pageSize: 2)
                }
                #expect(error?.code == .invalidCursor)
            }
        }
    }

    @Test func cloudPaginationFollowsNextAndRejectsForeignCursors() async throws {
        // `next` links are absolute URLs of the API itself.
        let base = RequestBoxURL()
        try await withScriptedServer({ request, _ in
            let page = Int(request.queryItems["page"] ?? "1") ?? 1
            let root = base.url?.absoluteString ?? ""
            let next = page < 3 ? #","next":"\#(root)/2.0/repositories/acme?pagelen=2&q=name+~+%22svc%22&page=\#(page + 1)""# : ""
            return .json(200, #"{"pagelen":2,"page":\#(page),"values":[{"uuid":"{r\#(page)}","slug":"svc-\#(page)","full_name":"acme/svc-\#(page)","name":"svc-\#(page)","is_private":true,"project":{"key":"PROJ"},"mainbranch":{"name":"main"},"links":{"clone":[{"name":"https","href":"https://bitbucket.org/acme/svc-\#(page).git"}]}}]\#(next)}"#)
        }) { server in
            base.url = server.baseURL
            try await withTransport { transport in
                let client = cloudClient(server, transport)
                let all = try await client.allRepositories(in: "acme", query: "svc")
                #expect(all.map(\.ref.slug) == ["svc-1", "svc-2", "svc-3"])
                #expect(all.first?.defaultBranch == "main")
                #expect(all.first?.projectKey == "PROJ")
                #expect(all.first?.httpCloneURL?.absoluteString == "https://bitbucket.org/acme/svc-1.git")
                #expect(server.requests.first?.queryItems["q"] == #"name ~ "svc""#)
                #expect(server.requests.first?.path == "/2.0/repositories/acme")

                let first = try await client.repositories(in: "acme", query: "svc", cursor: nil, pageSize: 2)
                let cursor = try #require(first.nextCursor)
                let second = try await client.repositories(in: "acme", query: "svc", cursor: cursor, pageSize: 2)
                #expect(second.values.map(\.ref.slug) == ["svc-2"])
                // A cursor built for another host (token exfiltration) or another listing is refused.
                let foreign = PageCursor(rawValue: "c." + Data("http://evil.example/2.0/repositories/acme?page=2".utf8).base64EncodedString())
                let error = await #expect(throws: BitbucketError.self) {
                    try await client.repositories(in: "acme", query: nil, cursor: foreign, pageSize: nil)
                }
                #expect(error?.code == .invalidCursor)
                let otherListing = PageCursor(rawValue: cursor.rawValue)
                await #expect(throws: BitbucketError.self) {
                    try await client.repositories(in: "other", query: nil, cursor: otherListing, pageSize: nil)
                }
            }
        }
    }

    @Test func cloudCreateRepositoryLowercasesSlugAndAdoptsExisting() async throws {
        let repo = #"{"uuid":"{1}","slug":"my-svc","full_name":"acme/my-svc","name":"My-Svc","is_private":true,"project":{"key":"PROJ"},"links":{"clone":[]}}"#
        try await withScriptedServer({ request, _ in
            request.method == "POST"
                ? .json(400, #"{"type":"error","error":{"message":"Repository with this Slug and Owner already exists."}}"#)
                : .json(200, repo)
        }) { server in
            try await withTransport { transport in
                let outcome = try await cloudClient(server, transport).createRepository(
                    RepositoryRef(namespace: "acme", slug: "My-Svc"),
                    options: RepositoryCreateOptions(isPrivate: true, projectKey: "PROJ")
                )
                #expect(!outcome.created)
                #expect(outcome.repository.ref == RepositoryRef(namespace: "acme", slug: "my-svc"))
                #expect(server.requests.map { "\($0.method) \($0.path)" } == ["POST /2.0/repositories/acme/my-svc", "GET /2.0/repositories/acme/my-svc"])
                let body = try #require(server.requests.first?.jsonBody)
                #expect(body["scm"] as? String == "git")
                #expect(body["is_private"] as? Bool == true)
                #expect((body["project"] as? [String: Any])?["key"] as? String == "PROJ")
            }
        }
    }

    @Test func branchLookups() async throws {
        try await withScriptedServer({ request, _ in
            switch request.path {
            case "/2.0/repositories/acme/svc/refs/branches/feature/x":
                return .json(200, #"{"name":"feature/x","target":{"hash":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}"#)
            case "/rest/api/1.0/projects/PROJ/repos/svc/branches":
                return .json(200, #"{"values":[{"id":"refs/heads/feature/xy","displayId":"feature/xy","latestCommit":"cccccccccccccccccccccccccccccccccccccccc"},{"id":"refs/heads/feature/x","displayId":"feature/x","latestCommit":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}],"isLastPage":true}"#)
            default:
                return .json(404, #"{"type":"error","error":{"message":"not found"}}"#)
            }
        }) { server in
            try await withTransport { transport in
                let cloud = cloudClient(server, transport)
                let acme = RepositoryRef(namespace: "acme", slug: "svc")
                let cloudBranch = try await cloud.branch("feature/x", in: acme)
                #expect(cloudBranch == Branch(name: "feature/x", tipCommit: String(repeating: "a", count: 40)))
                let missing = try await cloud.branch("nope", in: acme)
                #expect(missing == nil)
                let dc = dcClient(server, transport)
                let dcBranch = try await dc.branch("feature/x", in: ref)
                #expect(dcBranch == Branch(name: "feature/x", tipCommit: String(repeating: "b", count: 40)))
                let prefixOnly = try await dc.branch("feature", in: ref)
                #expect(prefixOnly == nil)
                #expect(server.requests.last?.queryItems["filterText"] == "feature")
            }
        }
    }

    @Test func dataCenterAccessTokenAndIdentity() async throws {
        try await withScriptedServer({ request, _ in
            switch request.path {
            case "/rest/access-tokens/1.0/projects/PROJ/repos/svc":
                return .json(200, #"{"id":"123","name":"pushbridge-git","createdDate":1700000000000,"token":"BBDC-secret-token-value"}"#)
            case "/plugins/servlet/applinks/whoami":
                return .text(200, "alice\n")
            case "/rest/api/1.0/users/alice":
                return .json(200, #"{"name":"alice","emailAddress":"alice@example.com","id":101,"displayName":"Alice","active":true,"slug":"alice","type":"NORMAL"}"#)
            default:
                return .json(404, "{}")
            }
        }) { server in
            try await withTransport { transport in
                let client = dcClient(server, transport)
                let before = Date()
                let token = try await client.createAccessToken(for: ref, name: "pushbridge-git", permissions: [.repoWrite], expiryDays: 2)
                #expect(token.token.reveal() == "BBDC-secret-token-value")
                #expect(token.id == "123")
                let expiresAt = try #require(token.expiresAt)
                #expect(expiresAt >= before.addingTimeInterval(2 * 86_400))
                #expect(!"\(token)".contains("BBDC-secret-token-value"))
                let put = try #require(server.requests.first)
                #expect(put.method == "PUT")
                #expect(put.headers["x-atlassian-token"] == "no-check")
                #expect(put.jsonBody?["permissions"] as? [String] == ["REPO_WRITE"])
                #expect(put.jsonBody?["expiryDays"] as? Int == 2)

                let user = try await client.currentUser()
                #expect(user == BitbucketUser(id: "101", username: "alice", displayName: "Alice", emailAddress: "alice@example.com"))
            }
        }
    }

    @Test func gitRemoteURLs() async throws {
        try await withTransport { transport in
            let cloud = CloudClient(credentials: StaticCredentialProvider(.none), transport: transport)
            let cloudURL = try cloud.gitRemoteURL(for: RepositoryRef(namespace: "acme", slug: "Svc"))
            #expect(cloudURL.absoluteString == "https://bitbucket.org/acme/svc.git")
            let dc = DataCenterClient(
                endpoints: .init(baseURL: URL(string: "https://bb.example.com/ctx")!),
                credentials: StaticCredentialProvider(.none),
                transport: transport
            )
            let dcURL = try dc.gitRemoteURL(for: ref)
            #expect(dcURL.absoluteString == "https://bb.example.com/ctx/scm/proj/svc.git")
        }
    }
}
