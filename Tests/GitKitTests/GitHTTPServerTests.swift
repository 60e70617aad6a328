import Foundation
import GitHTTPServer
import Synchronization
import Testing
import TestSupport

/// End-to-end tests of the loopback git server, driven only by the real `git` CLI.
@Suite("GitHTTPServer")
struct GitHTTPServerTests {
    static let user = "alice"
    static let password = "s3cret-pässword-42"
    static let token = "tok_ABCdef0123456789-bearer"

    // MARK: helpers

    /// Clones `url` into a new directory under `parent`, commits `files`, pushes `main`.
    @discardableResult
    func pushCommit(
        to url: URL,
        files: [String: Data],
        message: String = "commit",
        in parent: URL,
        env: GitClientEnvironment
    ) async throws -> (clone: URL, commit: String) {
        let clone = parent.appendingPathComponent("work-\(UUID().uuidString)")
        try await runGit(["clone", "--quiet", url.absoluteString, clone.path], in: parent, env: env.environment)
        try await runGit(["checkout", "--quiet", "-B", "main"], in: clone)
        for (path, data) in files {
            let file = clone.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: file)
        }
        try await runGit(["add", "-A"], in: clone)
        try await runGit(["commit", "--quiet", "-m", message], in: clone)
        try await runGit(["push", "--quiet", "origin", "main"], in: clone, env: env.environment)
        let commit = try await runGit(["rev-parse", "HEAD"], in: clone).trimmingCharacters(in: .whitespacesAndNewlines)
        return (clone, commit)
    }

    func remoteHead(_ directory: URL, branch: String = "main") async throws -> String? {
        let result = try await gitResult(["--git-dir=\(directory.path)", "rev-parse", "--verify", "--quiet", "refs/heads/\(branch)"], in: directory)
        return result.succeeded ? result.standardOutputString.trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }

    // MARK: tests

    @Test("clone empty repo, push with Basic auth, clone again and see the commit")
    func basicAuthRoundTrip() async throws {
        try await withGitServer(auth: .basic(username: Self.user, password: Self.password)) { fixture in
            let url = try await fixture.makeRepository("ws/app.git")
            let auth = GitClientEnvironment.basicAuth(username: Self.user, password: Self.password)
            let work = try TemporaryDirectory()

            let pushed = try await pushCommit(
                to: url, files: ["README.md": Data("hello\n".utf8), "src/main.swift": Data("print(1)\n".utf8)],
                in: work.url, env: auth
            )
            #expect(try await remoteHead(fixture.repositoryDirectory("ws/app.git")) == pushed.commit)

            let second = work.appending("second")
            try await runGit(["clone", "--quiet", url.absoluteString, second.path], in: work.url, env: auth.environment)
            let head = try await runGit(["rev-parse", "HEAD"], in: second).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(head == pushed.commit)
            #expect(try String(contentsOf: second.appendingPathComponent("src/main.swift"), encoding: .utf8) == "print(1)\n")

            let stats = fixture.server.statistics
            // git asks anonymously first, gets 401 with a Basic challenge, then retries with credentials.
            #expect(stats.requestCount(.infoRefs, status: 401) >= 1)
            #expect(stats.requestCount(.receivePack, status: 200) == 1)
            #expect(stats.requestCount(.uploadPack, status: 200) >= 1)
            #expect(stats.requestBodyBytes(.receivePack) > 0)
        }
    }

    @Test("Bearer token via http.extraHeader (from GIT_CONFIG_* env) is accepted without a 401 round trip")
    func bearerAuth() async throws {
        try await withGitServer(auth: .bearer(token: Self.token)) { fixture in
            let url = try await fixture.makeRepository("ws/bearer.git")
            let work = try TemporaryDirectory()
            let auth = GitClientEnvironment.bearerAuth(token: Self.token)
            let pushed = try await pushCommit(to: url, files: ["a.txt": Data("a".utf8)], in: work.url, env: auth)
            #expect(try await remoteHead(fixture.repositoryDirectory("ws/bearer.git")) == pushed.commit)
            #expect(fixture.server.statistics.requestCount(status: 401) == 0)
            #expect(fixture.server.statistics.requestCount(.receivePack, status: 200) == 1)

            // Without the header the same server refuses.
            let refused = try await gitResult(["ls-remote", url.absoluteString], in: work.url)
            #expect(!refused.succeeded)
            #expect(fixture.server.statistics.requestCount(.infoRefs, status: 401) == 1)
        }
    }

    @Test("wrong password: push fails with 401, counter shows it, nothing lands")
    func wrongPassword() async throws {
        try await withGitServer(auth: .basic(username: Self.user, password: Self.password)) { fixture in
            let url = try await fixture.makeRepository("ws/locked.git")
            let work = try TemporaryDirectory()
            let source = work.appending("src")
            try await runGit(["init", "--quiet", "--initial-branch=main", source.path], in: work.url)
            try "x".write(to: source.appendingPathComponent("x"), atomically: true, encoding: .utf8)
            try await runGit(["add", "x"], in: source)
            try await runGit(["commit", "--quiet", "-m", "x"], in: source)

            let wrong = GitClientEnvironment.basicAuth(username: Self.user, password: "not-the-password")
            let result = try await gitResult(["push", url.absoluteString, "main"], in: source, env: wrong.environment)
            #expect(!result.succeeded)
            #expect(result.standardErrorString.contains("Authentication failed"))
            let stats = fixture.server.statistics
            #expect(stats.requestCount(.infoRefs, status: 401) >= 2)  // anonymous, then wrong password
            #expect(stats.requestCount(status: 200) == 0)
            #expect(stats.requestCount(.receivePack) == 0)
            #expect(try await remoteHead(fixture.repositoryDirectory("ws/locked.git")) == nil)
        }
    }

    @Test("a forced non-fast-forward push is rejected by the server")
    func nonFastForwardRejected() async throws {
        try await withGitServer { fixture in
            let url = try await fixture.makeRepository("ws/ff.git")
            let work = try TemporaryDirectory()
            let none = GitClientEnvironment()
            let first = try await pushCommit(to: url, files: ["f": Data("1".utf8)], message: "one", in: work.url, env: none)
            _ = try await pushCommit(to: url, files: ["f": Data("2".utf8)], message: "two", in: work.url, env: none)
            let tip = try #require(try await remoteHead(fixture.repositoryDirectory("ws/ff.git")))

            // `first.clone` is now behind; rewrite its history and force-push.
            try await runGit(["commit", "--quiet", "--amend", "-m", "rewritten"], in: first.clone)
            let result = try await gitResult(["push", "--force", "origin", "main"], in: first.clone)
            #expect(!result.succeeded)
            #expect(result.standardErrorString.contains("non-fast-forward"))
            #expect(try await remoteHead(fixture.repositoryDirectory("ws/ff.git")) == tip)
        }
    }

    @Test("a push of a few MB of random bytes round-trips byte-exact; the counter sees the bytes")
    func largeBinaryRoundTrip() async throws {
        try await withGitServer(auth: .basic(username: Self.user, password: Self.password)) { fixture in
            let url = try await fixture.makeRepository("ws/big.git")
            let work = try TemporaryDirectory()
            let auth = GitClientEnvironment.basicAuth(username: Self.user, password: Self.password)
            var generator = SystemRandomNumberGenerator()
            let size = 3 * 1024 * 1024 + 17
            let blob = Data((0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) })

            try await pushCommit(to: url, files: ["assets/blob.bin": blob], in: work.url, env: auth)
            // Random data does not compress: the pack the client sent is at least the blob's size.
            #expect(fixture.server.statistics.requestBodyBytes(.receivePack) >= size)

            let second = work.appending("second")
            try await runGit(["clone", "--quiet", url.absoluteString, second.path], in: work.url, env: auth.environment)
            let copy = try Data(contentsOf: second.appendingPathComponent("assets/blob.bin"))
            #expect(copy == blob)
        }
    }

    @Test("gzip-encoded upload-pack request bodies (sent by git for big negotiations) are inflated")
    func gzipUploadPack() async throws {
        try await withGitServer { fixture in
            let url = try await fixture.makeRepository("ws/many.git")
            let work = try TemporaryDirectory()
            // 80 branches on 80 distinct commits: a clone sends 80 `want` lines,
            // well over the 1 KiB above which git gzips the request body.
            let source = work.appending("source")
            try await runGit(["init", "--quiet", "--initial-branch=main", source.path], in: work.url)
            var stream = ""
            for index in 1...80 {
                let content = "file \(index)\n"
                stream += "commit refs/heads/branch-\(index)\n"
                stream += "committer T <t@example.com> \(1_700_000_000 + index) +0000\n"
                stream += "data \(("c\(index)").utf8.count)\nc\(index)\n"
                stream += "M 100644 inline f.txt\ndata \(content.utf8.count)\n\(content)\n"
            }
            try await runGit(["fast-import", "--quiet"], in: source, input: stream)
            try await runGit(["push", "--quiet", url.absoluteString, "refs/heads/*:refs/heads/*"], in: source)
            fixture.server.statistics.reset()

            let clone = work.appending("clone")
            try await runGit(["clone", "--quiet", "--no-checkout", url.absoluteString, clone.path], in: work.url)
            let branches = try await runGit(["branch", "-r"], in: clone)
            #expect(branches.split(separator: "\n").count == 80)
            let stats = fixture.server.statistics
            #expect(stats.gzipRequestCount(.uploadPack) >= 1)
            #expect(stats.requestCount(.uploadPack, status: 200) == stats.requestCount(.uploadPack))
            let content = try await runGit(["show", "origin/branch-42:f.txt"], in: clone)
            #expect(content == "file 42\n")
        }
    }

    @Test("http-backend's environment and arguments never contain the password or token")
    func noSecretsReachTheCGI() async throws {
        let launches = Mutex<[GitCGILaunch]>([])
        var configuration = GitSmartHTTPServer.Configuration()
        configuration.backend.launchObserver = { launch in launches.withLock { $0.append(launch) } }
        let policy = GitHTTPAuthPolicy.anyOf([
            .basic(username: Self.user, password: Self.password), .bearer(token: Self.token),
        ])
        try await withGitServer(auth: policy, configuration: configuration) { fixture in
            let url = try await fixture.makeRepository("ws/secret.git")
            let work = try TemporaryDirectory()
            let basic = GitClientEnvironment.basicAuth(username: Self.user, password: Self.password)
            try await pushCommit(to: url, files: ["a": Data("a".utf8)], in: work.url, env: basic)
            try await runGit(
                ["clone", "--quiet", url.absoluteString, work.appending("viaBearer").path],
                in: work.url, env: GitClientEnvironment.bearerAuth(token: Self.token).environment
            )
        }
        let recorded = launches.withLock { $0 }
        #expect(recorded.count >= 4)
        let basicHeader = Data("\(Self.user):\(Self.password)".utf8).base64EncodedString()
        for launch in recorded {
            let everything = launch.arguments + launch.environment.keys + launch.environment.values
            for secret in [Self.password, Self.token, basicHeader] {
                #expect(!everything.contains { $0.contains(secret) })
            }
            #expect(launch.environment["HTTP_AUTHORIZATION"] == nil)
        }
        // Basic requests carry the user name (not a secret); bearer ones none.
        #expect(recorded.contains { $0.environment["REMOTE_USER"] == Self.user })
        #expect(recorded.contains { $0.environment["REMOTE_USER"] == nil && $0.environment["PATH_INFO"] == "/ws/secret.git/git-upload-pack" })
        #expect(recorded.allSatisfy { $0.environment["GIT_HTTP_EXPORT_ALL"] == "1" && $0.executable.lastPathComponent == "git-http-backend" })
        // The Git-Protocol header reaches http-backend (git 2.39 speaks protocol v2 for fetches).
        #expect(recorded.contains { $0.environment["GIT_PROTOCOL"] == "version=2" })
    }

    @Test(
        "request bodies over the configured cap get 413 and nothing lands",
        arguments: [false, true]  // body with Content-Length, or chunked (small http.postBuffer)
    )
    func bodyCap(chunked: Bool) async throws {
        let cap = 64 * 1024
        var configuration = GitSmartHTTPServer.Configuration()
        configuration.backend.maxRequestBodySize = cap
        try await withGitServer(configuration: configuration) { fixture in
            let url = try await fixture.makeRepository("ws/capped.git")
            let work = try TemporaryDirectory()
            let blob = Data((0..<(256 * 1024)).map { _ in UInt8.random(in: 0...255) })
            let client = chunked ? GitClientEnvironment(config: [("http.postBuffer", "70000")]) : GitClientEnvironment()
            let error = await #expect(throws: GitCommandError.self) {
                try await pushCommit(to: url, files: ["big.bin": blob], in: work.url, env: client)
            }
            #expect(error?.arguments.first == "push")
            #expect(error?.standardError.contains("413") == true)
            let stats = fixture.server.statistics
            #expect(stats.requestCount(.receivePack, status: 413) == 1)
            // Reading stopped at the cap (a chunked push is preceded by git's 4-byte probe request).
            #expect(stats.requestBodyBytes(.receivePack) <= cap + 4)
            #expect(try await remoteHead(fixture.repositoryDirectory("ws/capped.git")) == nil)
        }
    }

    @Test("two servers run side by side, each serving its own root; missing repos are 404")
    func twoServers() async throws {
        try await withGitServer { one in
            try await withGitServer(auth: .bearer(token: Self.token)) { two in
                #expect(one.baseURL != two.baseURL)
                let urlOne = try await one.makeRepository("a.git")
                let urlTwo = try await two.makeRepository("b.git")
                let work = try TemporaryDirectory()
                async let first = pushCommit(to: urlOne, files: ["1": Data("1".utf8)], in: work.url, env: GitClientEnvironment())
                async let second = pushCommit(
                    to: urlTwo, files: ["2": Data("2".utf8)], in: work.url, env: .bearerAuth(token: Self.token)
                )
                let (pushedOne, pushedTwo) = try await (first, second)
                #expect(try await remoteHead(one.repositoryDirectory("a.git")) == pushedOne.commit)
                #expect(try await remoteHead(two.repositoryDirectory("b.git")) == pushedTwo.commit)

                let missing = try await gitResult(["ls-remote", one.baseURL.appendingPathComponent("nope.git").absoluteString], in: work.url)
                #expect(!missing.succeeded)
                #expect(one.server.statistics.requestCount(.infoRefs, status: 404) == 1)
            }
        }
    }

    @Test("a path prefix serves root/PROJ/repo.git at /scm/PROJ/repo.git; seeded history is cloned")
    func pathPrefix() async throws {
        let configuration = GitSmartHTTPServer.Configuration(pathPrefix: "/scm/")
        try await withGitServer(configuration: configuration) { fixture in
            let url = try await fixture.makeRepository("PROJ/repo.git")
            #expect(url.path == "/scm/PROJ/repo.git")
            let directory = fixture.repositoryDirectory("PROJ/repo.git")
            let first = try await seedCommit(in: directory, files: ["a.txt": Data("a\n".utf8)])
            let second = try await seedCommit(in: directory, files: ["dir/b.txt": Data("b\n".utf8)], message: "two")
            let feature = try await seedCommit(in: directory, files: ["c.txt": Data("c\n".utf8)], branch: "feature")
            #expect(Set([first, second, feature]).count == 3)
            #expect(fixture.server.statistics.requestCount() == 0)

            let work = try TemporaryDirectory()
            let clone = work.appending("clone")
            try await runGit(["clone", "--quiet", url.absoluteString, clone.path], in: work.url)
            #expect(try await runGit(["rev-parse", "HEAD~1"], in: clone) == first + "\n")
            #expect(try String(contentsOf: clone.appendingPathComponent("a.txt"), encoding: .utf8) == "a\n")
            #expect(try String(contentsOf: clone.appendingPathComponent("dir/b.txt"), encoding: .utf8) == "b\n")
            // `feature` is an orphan branch holding only its own file.
            let featureFiles = try await runGit(["ls-tree", "-r", "--name-only", "origin/feature"], in: clone)
            #expect(featureFiles == "c.txt\n")
            #expect(fixture.server.statistics.responseBodyBytes(.uploadPack) > 0)

            let unprefixed = try await gitResult(["ls-remote", fixture.baseURL.appendingPathComponent("PROJ/repo.git").absoluteString], in: work.url)
            #expect(!unprefixed.succeeded)
        }
    }

    @Test("eight concurrent clones all succeed")
    func concurrentClones() async throws {
        try await withGitServer(auth: .basic(username: Self.user, password: Self.password)) { fixture in
            let url = try await fixture.makeRepository("ws/busy.git")
            let head = try await seedCommit(
                in: fixture.repositoryDirectory("ws/busy.git"),
                files: Dictionary(uniqueKeysWithValues: (0..<50).map { ("f\($0).txt", Data(repeating: UInt8($0), count: 10_000)) })
            )
            let work = try TemporaryDirectory()
            let auth = GitClientEnvironment.basicAuth(username: Self.user, password: Self.password).environment
            let heads = try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<8 {
                    group.addTask {
                        let clone = work.appending("clone-\(index)")
                        try await runGit(["clone", "--quiet", url.absoluteString, clone.path], in: work.url, env: auth)
                        return try await runGit(["rev-parse", "HEAD"], in: clone).trimmingCharacters(in: .whitespacesAndNewlines)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(heads == Array(repeating: head, count: 8))
            // Protocol v2 makes two upload-pack POSTs per clone (ls-refs, fetch); none may fail.
            let stats = fixture.server.statistics
            #expect(stats.requestCount(.uploadPack, status: 200) >= 8)
            #expect(stats.requestCount(.uploadPack, status: 200) == stats.requestCount(.uploadPack))
            #expect(stats.requestCount(.infoRefs, status: 401) >= 8)
        }
    }

    @Test("stop() closes the listener; the server can be stopped twice")
    func stopClosesListener() async throws {
        let root = try TemporaryDirectory()
        let server = GitSmartHTTPServer(root: root.url)
        let base = try await server.start()
        await #expect(throws: GitHTTPServerError.alreadyStarted) { try await server.start() }
        try await server.createBareRepository("r.git")
        let work = try TemporaryDirectory()
        try await runGit(["ls-remote", base.appendingPathComponent("r.git").absoluteString], in: work.url)
        await server.stop()
        await server.stop()
        #expect(await server.baseURL == nil)
        let after = try await gitResult(["ls-remote", base.appendingPathComponent("r.git").absoluteString], in: work.url)
        #expect(!after.succeeded)
        #expect(after.standardErrorString.contains("Failed to connect") || after.standardErrorString.contains("Connection refused"))
    }

    @Test("401 carries a Basic challenge; an authorized advertisement has git's content type")
    func challengeAndContentType() async throws {
        try await withGitServer(auth: .bearer(token: Self.token)) { fixture in
            let url = try await fixture.makeRepository("ws/plain.git")
            _ = try await seedCommit(in: fixture.repositoryDirectory("ws/plain.git"), files: ["a": Data("a".utf8)])
            let work = try TemporaryDirectory()
            // GIT_TRACE_CURL prints the response headers git received (and redacts credentials).
            let trace = ["GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"]

            let denied = try await gitResult(["ls-remote", url.absoluteString], in: work.url, env: trace)
            #expect(!denied.succeeded)
            #expect(denied.standardErrorString.contains("<= Recv header: HTTP/1.1 401"))
            #expect(denied.standardErrorString.contains(#"<= Recv header: WWW-Authenticate: Basic realm="pushbridge-git""#))

            let bearer = GitClientEnvironment.bearerAuth(token: Self.token).environment.merging(trace) { $1 }
            let allowed = try await gitResult(["-c", "protocol.version=0", "ls-remote", url.absoluteString], in: work.url, env: bearer)
            #expect(allowed.succeeded)
            #expect(allowed.standardOutputString.contains("refs/heads/main"))
            #expect(allowed.standardErrorString.contains("<= Recv header: Content-Type: application/x-git-upload-pack-advertisement"))
            #expect(!allowed.standardErrorString.contains(Self.token))
        }
    }

    // MARK: units

    @Test("ChildProcess: 2 MB (32 pipe buffers) through cat both ways at once, exact environment, exit codes, stderr")
    func childProcess() async throws {
        let bytes = (0..<(2 * 1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
        let echoed = try await ChildProcess.run(
            executable: URL(fileURLWithPath: "/bin/cat"), arguments: [], environment: [:],
            standardInput: ByteBuffer(bytes: bytes)
        )
        #expect(echoed.succeeded)
        #expect(Array(echoed.standardOutput.readableBytesView) == bytes)

        let env = try await ChildProcess.run(
            executable: URL(fileURLWithPath: "/usr/bin/env"), arguments: [], environment: ["ONLY": "this"]
        )
        #expect(env.standardOutputString == "ONLY=this\n")

        let failing = try await ChildProcess.run(
            executable: URL(fileURLWithPath: "/bin/sh"), arguments: ["-c", "echo oops >&2; exit 3"], environment: [:]
        )
        #expect(!failing.succeeded)
        #expect(failing.exitCode == 3)
        #expect(failing.standardErrorString == "oops\n")

        // The child ignores its input and exits: the unread rest is dropped, no error.
        let ignoring = try await ChildProcess.run(
            executable: URL(fileURLWithPath: "/bin/true"), arguments: [], environment: [:],
            standardInput: ByteBuffer(bytes: bytes)
        )
        #expect(ignoring.succeeded)

        await #expect(throws: GitHTTPServerError.self) {
            try await ChildProcess.run(executable: URL(fileURLWithPath: "/nonexistent/program"), arguments: [], environment: [:])
        }
    }

    @Test("CGI responses: Status header, default 200, LF-only headers, malformed output")
    func parseCGI() throws {
        let notFound = try GitHTTPBackend.parseCGIResponse(
            ByteBuffer(string: "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nRepository not found.")
        )
        #expect(notFound.status == 404)
        #expect(notFound.reasonPhrase == "Not Found")
        #expect(notFound.header("content-type") == "text/plain")
        #expect(String(buffer: notFound.body) == "Repository not found.")

        let ok = try GitHTTPBackend.parseCGIResponse(ByteBuffer(string: "Content-Type: x\n\n\r\n\r\nbinary"))
        #expect(ok.status == 200)
        #expect(String(buffer: ok.body) == "\r\n\r\nbinary")

        #expect(throws: GitHTTPServerError.self) { try GitHTTPBackend.parseCGIResponse(ByteBuffer(string: "no headers end")) }
        #expect(throws: GitHTTPServerError.self) { try GitHTTPBackend.parseCGIResponse(ByteBuffer(string: "Status: abc\r\n\r\n")) }
    }

    @Test("auth policies: decisions and redacted descriptions")
    func authPolicy() {
        let basic = "Basic " + Data("\(Self.user):\(Self.password)".utf8).base64EncodedString()
        let policy = GitHTTPAuthPolicy.anyOf([.basic(username: Self.user, password: Self.password), .bearer(token: Self.token)])
        #expect(policy.authorize(basic) == .allowed(user: Self.user))
        #expect(policy.authorize("bearer \(Self.token)") == .allowed(user: nil))
        #expect(policy.authorize("Bearer \(Self.token)x") == .denied)
        #expect(policy.authorize("Basic " + Data("\(Self.user):nope".utf8).base64EncodedString()) == .denied)
        #expect(policy.authorize(nil) == .denied)
        #expect(GitHTTPAuthPolicy.anyOf([]).authorize(basic) == .denied)
        #expect(GitHTTPAuthPolicy.none.authorize(nil) == .allowed(user: nil))
        #expect(!policy.description.contains(Self.password))
        #expect(!policy.description.contains(Self.token))
    }

    @Test("paths with .. are refused before reaching http-backend")
    func unsafePaths() async throws {
        #expect(GitHTTPBackend.isSafe(pathInfo: "/ws/repo.git/info/refs"))
        #expect(!GitHTTPBackend.isSafe(pathInfo: "/ws/../../etc/passwd"))
        #expect(!GitHTTPBackend.isSafe(pathInfo: "relative/path"))
        let root = try TemporaryDirectory()
        let backend = GitHTTPBackend(projectRoot: root.url)
        await #expect(throws: GitHTTPServerError.invalidRepositoryPath("/a/../b.git/info/refs")) {
            try await backend.execute(GitCGIRequest(method: "GET", pathInfo: "/a/../b.git/info/refs"))
        }
        let server = GitSmartHTTPServer(root: root.url)
        await #expect(throws: GitHTTPServerError.self) { try await server.createBareRepository("../escape.git") }
    }
}
