import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import PushBridge
import Testing

@testable import PushBridgeServer

@Suite("HTTP API")
struct APITests {
    @Test("health is public; readiness reports the store")
    func health() async throws {
        let harness = try await APITestHarness.make()
        try await harness.test { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.object["status"] as? String == "ok")
            }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                #expect((response.object["checks"] as? [String: String])?["store"] == "ok")
            }
            try await harness.store.close()
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.object["status"] as? String == "unavailable")
            }
        }
    }

    @Test("missing or wrong bearer tokens get 401; every configured token works")
    func authentication() async throws {
        let harness = try await APITestHarness.make()
        try await harness.test { client in
            try await client.execute(uri: "/v1/jobs", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(response.errorCode == "unauthorized")
                #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
            }
            for header in ["Bearer wrong-token-0123456789", "Basic Zm9vOmJhcg==", "Bearer ", APITestHarness.tokens[0]] {
                try await client.execute(uri: "/v1/jobs", method: .get, headers: [.authorization: header]) { response in
                    #expect(response.status == .unauthorized, "\(header)")
                    #expect(!response.text.contains("wrong-token"))
                }
            }
            for token in APITestHarness.tokens {
                try await client.execute(uri: "/v1/jobs", method: .get, headers: auth(token)) { response in
                    #expect(response.status == .ok)
                }
            }
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .unauthorized) }
        }
    }

    @Test("the token comparison finds the right token and rejects near misses")
    func tokenComparison() {
        let middleware = BearerAuthMiddleware(tokens: APITestHarness.tokens)
        #expect(middleware.authenticate("Bearer \(APITestHarness.tokens[0])") == APIPrincipal(tokenNumber: 1))
        #expect(middleware.authenticate("bearer \(APITestHarness.tokens[1])") == APIPrincipal(tokenNumber: 2))
        #expect(middleware.authenticate("Bearer \(APITestHarness.tokens[1].dropLast())") == nil)
        #expect(middleware.authenticate("Bearer \(APITestHarness.tokens[1])x") == nil)
        #expect(middleware.authenticate(nil) == nil)
    }

    @Test("unknown routes answer 404 with the error envelope")
    func unknownRoute() async throws {
        let harness = try await APITestHarness.make()
        try await harness.test { client in
            try await client.execute(uri: "/v1/nothing-here", method: .get, headers: auth()) { response in
                #expect(response.status == .notFound)
                #expect(response.errorCode == "not_found")
            }
            try await client.execute(uri: "/v1/jobs/0000", method: .get, headers: auth()) { response in
                #expect(response.status == .notFound)
                #expect(response.errorCode == "not_found")
            }
        }
    }

    @Test("connections: create, show, list, conflict, delete — secrets never echoed")
    func connections() async throws {
        let harness = try await APITestHarness.make()
        try await harness.test { client in
            try await client.execute(
                uri: "/v1/connections", method: .post, headers: auth(), body: jsonBody(oauthConnectionJSON)
            ) { response in
                #expect(response.status == .created)
                #expect(!response.text.contains("SECRET"))
                let json = response.object
                #expect(json["id"] as? String == "acme-cloud")
                #expect(json["state"] as? String == "active")
                let credentials = try #require(json["credentials"] as? [String: Any])
                #expect(credentials["type"] as? String == "oauth2")
                #expect(credentials["expiresAt"] as? String == "2030-01-02T03:04:05Z")
                #expect(Set(credentials.keys).isSubset(of: ["type", "expiresAt", "refreshable", "consumerKey"]))
            }
            for uri in ["/v1/connections/acme-cloud", "/v1/connections"] {
                try await client.execute(uri: uri, method: .get, headers: auth()) { response in
                    #expect(response.status == .ok)
                    #expect(!response.text.contains("SECRET"))
                    #expect(response.text.contains("acme-cloud"))
                }
            }
            try await client.execute(
                uri: "/v1/connections", method: .post, headers: auth(), body: jsonBody(oauthConnectionJSON)
            ) { response in
                #expect(response.status == .conflict)
                #expect(response.errorCode == "connection_exists")
            }
            let dataCenter = #"{"id": "dc", "provider": "bitbucket-datacenter", "workspace": "PROJ", "credentials": {"type": "access-token", "token": "TOKEN-SECRET"}}"#
            try await client.execute(uri: "/v1/connections", method: .post, headers: auth(), body: jsonBody(dataCenter)) {
                response in
                #expect(response.status == .unprocessableContent)
                #expect(response.errorMessage.hasPrefix("baseUrl"))
            }
            let withBase = dataCenter.replacingOccurrences(
                of: #""workspace": "PROJ","#, with: #""workspace": "PROJ", "baseUrl": "https://bb.example.com/","#)
            try await client.execute(uri: "/v1/connections", method: .post, headers: auth(), body: jsonBody(withBase)) {
                response in
                #expect(response.status == .created)
                let json = response.object
                #expect(json["apiUrl"] as? String == "https://bb.example.com")
                #expect(json["gitUrl"] as? String == "https://bb.example.com")
                #expect(!response.text.contains("TOKEN-SECRET"))
            }
            try await client.execute(uri: "/v1/connections/acme-cloud", method: .delete, headers: auth()) {
                #expect($0.status == .noContent)
            }
            try await client.execute(uri: "/v1/connections/acme-cloud", method: .get, headers: auth()) { response in
                #expect(response.status == .notFound)
                #expect(response.errorCode == "connection_not_found")
            }
            try await client.execute(uri: "/v1/connections/acme-cloud", method: .delete, headers: auth()) {
                #expect($0.status == .notFound)
            }
        }
    }

    @Test(
        "bad connection bodies: 400 for malformed JSON, 422 naming the field",
        arguments: [
            ("{not json", 400, "malformed_json", ""),
            ("", 400, "malformed_json", ""),
            (#"{"id": "x", "provider": "bitbucket-cloud", "workspace": "w"}"#, 422, "invalid_field", "credentials"),
            (#"{"id": "x", "provider": "gitlab", "workspace": "w", "credentials": {"type": "access-token", "token": "t"}}"#,
             422, "invalid_field", "provider"),
            (#"{"id": "Bad ID", "provider": "bitbucket-cloud", "workspace": "w", "credentials": {"type": "access-token", "token": "t"}}"#,
             422, "invalid_field", "id"),
            (#"{"id": "x", "provider": "bitbucket-cloud", "workspace": "w", "credentials": {"type": "magic", "token": "t"}}"#,
             422, "invalid_field", "credentials"),
            (#"{"id": "x", "provider": "bitbucket-cloud", "workspace": "w", "credentials": {"type": "oauth2", "accessToken": "a", "expiresAt": "tomorrow"}}"#,
             422, "invalid_field", "credentials.expiresAt"),
        ])
    func badConnectionBodies(body: String, status: Int, code: String, field: String) async throws {
        let harness = try await APITestHarness.make()
        try await harness.test { client in
            try await client.execute(uri: "/v1/connections", method: .post, headers: auth(), body: jsonBody(body)) {
                response in
                #expect(response.status.code == status)
                let envelope = (code: response.errorCode, message: response.errorMessage)
                #expect(envelope.code == code)
                #expect(envelope.message.hasPrefix(field))
            }
        }
    }

    @Test("archives: upload a real tar.gz, refuse oversize and hostile ones")
    func archives() async throws {
        let harness = try await APITestHarness.make()
        let tree = harness.directory.appendingPathComponent("tree")
        try FileManager.default.createDirectory(at: tree.appendingPathComponent("src"), withIntermediateDirectories: true)
        try Data("print('hi')\n".utf8).write(to: tree.appendingPathComponent("src/main.py"))
        let archive = harness.directory.appendingPathComponent("a.tar.gz")
        _ = try await ProcessRunner.run("tar", ["-czf", archive.path, "-C", tree.path, "."])
        let data = try Data(contentsOf: archive)
        let evil = harness.directory.appendingPathComponent("evil.tar")
        let script = "import tarfile,io,sys\nt=tarfile.open(sys.argv[1],'w')\ni=tarfile.TarInfo('../escape')\ni.size=1\nt.addfile(i,io.BytesIO(b'x'))\nt.close()"
        _ = try await ProcessRunner.run("python3", ["-c", script, evil.path])
        let evilData = try Data(contentsOf: evil)
        try await harness.test { client in
            try await client.execute(uri: "/v1/archives", method: .post, headers: auth(), body: ByteBuffer(bytes: data)) {
                response in
                #expect(response.status == .created)
                let json = response.object
                #expect(json["files"] as? Int == 1)
                #expect(json["bytes"] as? Int == data.count)
                #expect((json["sha256"] as? String)?.count == 64)
                #expect(json["id"] as? String == json["sha256"] as? String)
            }
            try await client.execute(
                uri: "/v1/archives", method: .post, headers: auth(), body: ByteBuffer(repeating: 0x41, count: (1 << 20) + 1)
            ) { response in
                #expect(response.status == .contentTooLarge)
                #expect(response.errorCode == "archive_too_large")
            }
            try await client.execute(uri: "/v1/archives", method: .post, headers: auth(), body: ByteBuffer(bytes: evilData)) {
                response in
                #expect(response.status == .unprocessableContent)
                let envelope = (code: response.errorCode, message: response.errorMessage)
                #expect(envelope.code == "invalid_path")
                #expect(envelope.message.contains("../escape"))
            }
        }
    }

    @Test("jobs: enqueue, idempotency, show, list with cursor, cancel and retry")
    func jobs() async throws {
        let harness = try await APITestHarness.make()
        let build = harness.sourceRoot.appendingPathComponent("123")
        try FileManager.default.createDirectory(at: build, withIntermediateDirectories: true)
        let source = #"{"directory": "\#(build.path)"}"#
        try await harness.test { client in
            try await client.execute(uri: "/v1/connections", method: .post, headers: auth(), body: jsonBody(oauthConnectionJSON)) {
                #expect($0.status == .created)
            }
            let key: HTTPFields = [.idempotencyKey: "build-123"]
            let firstID = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: auth(APITestHarness.tokens[0], key), body: jsonBody(jobJSON(source: source))
            ) { response in
                #expect(response.status == .accepted)
                let json = response.object
                #expect(json["state"] as? String == "queued")
                let id = try #require(json["id"] as? String)
                #expect(response.headers[.location] == "/v1/jobs/\(id)")
                #expect(response.headers[.idempotentReplayed] == nil)
                return id
            }
            // Same key, same body (defaults spelled out): same job.
            let sameBody = jobJSON(source: source, extra: #", "mode": "overlay", "root": """#)
            try await client.execute(uri: "/v1/jobs", method: .post, headers: auth(APITestHarness.tokens[0], key), body: jsonBody(sameBody)) {
                response in
                #expect(response.status == .accepted)
                #expect(response.object["id"] as? String == firstID)
                #expect(response.headers[.idempotentReplayed] == "true")
            }
            try await client.execute(
                uri: "/v1/jobs", method: .post, headers: auth(APITestHarness.tokens[0], key),
                body: jsonBody(jobJSON(source: source, branch: "other"))
            ) { response in
                #expect(response.status == .conflict)
                #expect(response.errorCode == "idempotency_conflict")
            }
            let secondID = try await client.execute(
                uri: "/v1/jobs", method: .post, headers: auth(), body: jsonBody(jobJSON(source: source, branch: "second"))
            ) { try #require($0.object["id"] as? String) }

            try await client.execute(uri: "/v1/jobs/\(firstID)", method: .get, headers: auth()) { response in
                #expect(response.status == .ok)
                let json = response.object
                #expect(json["state"] as? String == "queued")
                #expect(json["connection"] as? String == "acme-cloud")
                #expect(json["idempotencyKey"] as? String == "build-123")
                #expect(json["lease"] == nil)
            }

            let cursor = try await client.execute(uri: "/v1/jobs?limit=1", method: .get, headers: auth()) { response in
                let json = response.object
                let jobs = try #require(json["jobs"] as? [[String: Any]])
                #expect(jobs.map { $0["id"] as? String } == [secondID])
                return try #require(json["nextCursor"] as? String)
            }
            try await client.execute(uri: "/v1/jobs?limit=1&cursor=\(cursor)", method: .get, headers: auth()) { response in
                let json = response.object
                #expect((json["jobs"] as? [[String: Any]])?.map { $0["id"] as? String } == [firstID])
            }
            try await client.execute(uri: "/v1/jobs?state=queued&connection=acme-cloud", method: .get, headers: auth()) {
                #expect(($0.object["jobs"] as? [Any])?.count == 2)
            }
            try await client.execute(uri: "/v1/jobs?state=done", method: .get, headers: auth()) { response in
                #expect(response.status == .unprocessableContent)
                #expect(response.errorMessage.hasPrefix("state"))
            }
            try await client.execute(uri: "/v1/jobs?cursor=garbage", method: .get, headers: auth()) { response in
                #expect(response.status == .unprocessableContent)
                #expect(response.errorCode == "invalid_cursor")
            }

            try await client.execute(uri: "/v1/jobs/\(firstID)/cancel", method: .post, headers: auth()) { response in
                #expect(response.status == .ok)
                #expect(response.object["state"] as? String == "cancelled")
            }
            // Cancelling a cancelled job is idempotent.
            try await client.execute(uri: "/v1/jobs/\(firstID)/cancel", method: .post, headers: auth()) { response in
                #expect(response.status == .ok)
                #expect(response.object["state"] as? String == "cancelled")
            }
            try await client.execute(uri: "/v1/jobs/\(firstID)/retry", method: .post, headers: auth()) { response in
                #expect(response.status == .ok)
                #expect(response.object["state"] as? String == "queued")
            }
            try await client.execute(uri: "/v1/jobs/\(secondID)/retry", method: .post, headers: auth()) { response in
                #expect(response.status == .conflict)  // queued jobs cannot be retried
                #expect(response.errorCode == "invalid_state")
            }
            // A finished job can be neither cancelled nor retried.
            let claimed = try #require(
                try await harness.store.claimNext(workerID: "test", leaseDuration: .seconds(60), perConnectionLimit: 5))
            _ = try await harness.store.complete(
                jobID: claimed.id, workerID: "test",
                result: JobResult(repositoryUrl: "https://example.com/r", branch: claimed.spec.branch, commit: "abc", changed: true))
            try await client.execute(uri: "/v1/jobs/\(claimed.id)/cancel", method: .post, headers: auth()) { response in
                #expect(response.status == .conflict)
                #expect(response.errorCode == "invalid_state")
            }
            try await client.execute(uri: "/v1/jobs/\(claimed.id)", method: .get, headers: auth()) { response in
                #expect(response.object["state"] as? String == "succeeded")
                #expect((response.object["result"] as? [String: Any])?["changed"] as? Bool == true)
            }
            try await client.execute(uri: "/v1/jobs/nope/cancel", method: .post, headers: auth()) {
                #expect($0.status == .notFound)
            }
        }
    }

    @Test("job validation names the field; unknown references are 404; oversize bodies 413")
    func jobValidation() async throws {
        let harness = try await APITestHarness.make()
        let inside = harness.sourceRoot.appendingPathComponent("ok")
        try FileManager.default.createDirectory(at: inside, withIntermediateDirectories: true)
        let outside = harness.directory.appendingPathComponent("outside")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        let sneaky = harness.sourceRoot.appendingPathComponent("sneaky")
        try FileManager.default.createSymbolicLink(at: sneaky, withDestinationURL: outside)
        let good = #"{"directory": "\#(inside.path)"}"#

        let cases: [(String, Int, String, String)] = [
            (jobJSON(source: good, branch: "feature..x"), 422, "invalid_field", "branch"),
            (jobJSON(source: good, branch: "bad branch"), 422, "invalid_field", "branch"),
            (jobJSON(source: good, branch: "x.lock"), 422, "invalid_field", "branch"),
            (jobJSON(source: good, branch: "main"), 422, "invalid_field", "baseBranch"),
            (jobJSON(source: #"{"directory": "\#(outside.path)"}"#), 422, "invalid_field", "source.directory"),
            (jobJSON(source: #"{"directory": "\#(sneaky.path)"}"#), 422, "invalid_field", "source.directory"),
            (jobJSON(source: #"{"directory": "relative/path"}"#), 422, "invalid_field", "source.directory"),
            (jobJSON(source: #"{"directory": "\#(inside.path)", "archive": "x"}"#), 422, "invalid_field", "source"),
            (jobJSON(source: #"{}"#), 422, "invalid_field", "source"),
            (jobJSON(source: #"{"archive": "not-an-id"}"#), 422, "invalid_field", "source.archive"),
            (jobJSON(source: #"{"archive": "\#(String(repeating: "a", count: 64))"}"#), 404, "archive_not_found", ""),
            (jobJSON(source: good, extra: #", "mode": "mirror""#), 422, "invalid_field", "mode"),
            (jobJSON(source: good, extra: #", "preserve": ["[abc"]"#), 422, "invalid_field", "preserve[0]"),
            (jobJSON(source: good, extra: #", "preserve": ["../x"]"#), 422, "invalid_field", "preserve[0]"),
            (jobJSON(source: good, extra: #", "root": "../up""#), 422, "invalid_field", "root"),
            (jobJSON(source: good, extra: #", "root": "a/.git""#), 422, "invalid_field", "root"),
            (jobJSON(source: good, connection: "ghost"), 404, "connection_not_found", ""),
            (#"{"connection": "acme-cloud"}"#, 422, "invalid_field", "repository"),
            ("[1, 2", 400, "malformed_json", ""),
        ]
        try await harness.test { client in
            try await client.execute(uri: "/v1/connections", method: .post, headers: auth(), body: jsonBody(oauthConnectionJSON)) {
                #expect($0.status == .created)
            }
            for (body, status, code, field) in cases {
                try await client.execute(uri: "/v1/jobs", method: .post, headers: auth(), body: jsonBody(body)) { response in
                    #expect(response.status.code == status, "\(field): \(response.text)")
                    let envelope = (code: response.errorCode, message: response.errorMessage)
                    #expect(envelope.code == code, "\(field)")
                    #expect(envelope.message.hasPrefix(field), "\(envelope.message)")
                }
            }
            let huge = jobJSON(source: good, extra: #", "preserve": ["\#(String(repeating: "x", count: 70_000))"]"#)
            try await client.execute(uri: "/v1/jobs", method: .post, headers: auth(), body: jsonBody(huge)) { response in
                #expect(response.status == .contentTooLarge)
                #expect(response.errorCode == "request_too_large")
            }
            try await client.execute(
                uri: "/v1/jobs", method: .post, headers: auth(APITestHarness.tokens[0], [.idempotencyKey: String(repeating: "k", count: 256)]),
                body: jsonBody(jobJSON(source: good))
            ) { #expect($0.status == .badRequest) }
            try await client.execute(uri: "/v1/jobs", method: .post, headers: auth(), body: jsonBody(jobJSON(source: good))) {
                #expect($0.status == .accepted)
            }
        }
    }

    @Test("metrics expose request counters to authenticated scrapers")
    func metrics() async throws {
        let harness = try await APITestHarness.make()
        try await harness.test { client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/metrics", method: .get, headers: auth()) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
                #expect(response.text.contains(#"pushbridge_http_requests_total{method="GET",route="/healthz",status="200"} 1"#))
            }
        }
    }
}
