#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PushBridge
import Testing

@testable import PushBridgeServer

/// The `pushbridge` executable of the build under test.
///
/// swift-testing may run a copy of the test bundle from a temporary directory, so the build
/// directory is taken from the `swift test` process that started us (`--scratch-path`, else
/// `<package>/.build`); `PUSHBRIDGE_TEST_BINARY` overrides it.
let executable: URL = {
    if let path = ProcessInfo.processInfo.environment["PUSHBRIDGE_TEST_BINARY"] { return URL(fileURLWithPath: path) }
    var pid = getppid()
    for _ in 0..<6 where pid > 1 {
        let raw = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
        let arguments = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        if arguments.contains(where: { $0.hasSuffix("swift-test") }) || arguments.starts(with: ["swift", "test"])
            || (arguments.first?.hasSuffix("swift") == true && arguments.dropFirst().first == "test")
        {
            let cwd = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) ?? "."
            var scratch = TestPaths.packageRoot.appendingPathComponent(".build")
            if let index = arguments.firstIndex(of: "--scratch-path"), index + 1 < arguments.count {
                let value = arguments[index + 1]
                scratch = URL(fileURLWithPath: value.hasPrefix("/") ? value : cwd + "/" + value)
            }
            return scratch.appendingPathComponent("debug/pushbridge")
        }
        let status = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        // Field 4 of /proc/PID/stat (after the parenthesised command name) is the parent pid.
        guard let close = status.lastIndex(of: ")"),
            let parent = status[status.index(after: close)...].split(separator: " ").dropFirst().first.flatMap({ Int32($0) })
        else { break }
        pid = parent
    }
    return TestPaths.packageRoot.appendingPathComponent(".build/debug/pushbridge")
}()
let executableExists = FileManager.default.isExecutableFile(atPath: executable.path)

@Suite("pushbridge CLI", .enabled(if: executableExists, "pushbridge executable not built (swift build --build-tests)"))
struct CLITests {
    @Test("serve: READY with the bound address, client commands over HTTP, SIGTERM → STOPPING and exit 0")
    func serveAndClient() async throws {
        let dir = try TestPaths.makeTemporaryDirectory("cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let token = "cli-test-token-0123456789abcdef"
        let listener = try NotifySocketListener(name: "@pushbridge-cli-\(UUID().uuidString)")
        let environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "PUSHBRIDGE_API_TOKENS": token,
            "PUSHBRIDGE_MASTER_KEY": MasterKey.generate().exportBase64(),
            "PUSHBRIDGE_DATA_DIR": dir.path,
            "PUSHBRIDGE_DATABASE_URL": "sqlite://\(dir.path)/pb.sqlite",
            "PUSHBRIDGE_LISTEN": "127.0.0.1:0",
            "PUSHBRIDGE_LOG_LEVEL": "debug",
            // The real worker runs: point it at a closed local port so nothing leaves the machine.
            "PUSHBRIDGE_CLOUD_API_URL": "http://127.0.0.1:9", "PUSHBRIDGE_CLOUD_SITE_URL": "http://127.0.0.1:9",
            "PUSHBRIDGE_CLOUD_GIT_URL": "http://127.0.0.1:9", "PUSHBRIDGE_WORKERS": "1",
            "PUSHBRIDGE_CLOUD_CLIENT_ID": "cli-consumer", "PUSHBRIDGE_CLOUD_CLIENT_SECRET": "CLI-SECRET-CONSUMER",
            "PUSHBRIDGE_PUBLIC_URL": "https://pushbridge.example.test",
            "NOTIFY_SOCKET": listener.name,
        ]
        let serve = Process()
        serve.executableURL = executable
        serve.arguments = ["serve", "--env-file", dir.appendingPathComponent("absent.env").path]
        serve.environment = environment
        let logFile = dir.appendingPathComponent("serve.log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let logText = { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }
        let log = try FileHandle(forWritingTo: logFile)
        serve.standardError = log
        serve.standardOutput = log
        // An explicit env file that is missing must fail with a clear message.
        try serve.run()
        await waitForExit(serve)
        #expect(serve.terminationStatus != 0)
        let failure = try String(contentsOf: logFile, encoding: .utf8)
        #expect(failure.contains("--env-file"), "\(failure)")

        let daemon = Process()
        daemon.executableURL = executable
        daemon.arguments = ["serve"]
        var daemonEnvironment = environment
        daemonEnvironment["PUSHBRIDGE_SOURCE_ROOTS"] = dir.path
        daemon.environment = daemonEnvironment
        daemon.standardError = log
        daemon.standardOutput = log
        try daemon.run()
        defer { if daemon.isRunning { daemon.terminate() } }

        let ready = try #require(await listener.next(), "no READY=1 within 60 s: \(logText())")
        #expect(ready.hasPrefix("READY=1\nSTATUS=listening on 127.0.0.1:"))
        let port = try #require(ready.split(separator: ":").last.flatMap { Int($0) })
        let clientEnvironment = [
            "PATH": environment["PATH"]!, "PUSHBRIDGE_API_TOKEN": token, "PUSHBRIDGE_URL": "http://127.0.0.1:\(port)",
        ]
        let emptyEnvFile = dir.appendingPathComponent("client.env")
        try Data().write(to: emptyEnvFile)
        func cli(_ arguments: [String], input: String? = nil) async throws -> ProcessOutput {
            try await ProcessRunner.run(executable.path, arguments + ["--env-file", emptyEnvFile.path], environment: clientEnvironment, input: input.map { Data($0.utf8) })
        }

        let credentials = #"{"type": "oauth2", "accessToken": "CLI-SECRET-AT", "refreshToken": "CLI-SECRET-RT"}"#
        let add = try await cli(
            ["connections", "add", "--id", "acme", "--provider", "bitbucket-cloud", "--workspace", "acme", "--credentials-file", "-"],
            input: credentials)
        #expect(add.status == 0, "\(add.stderr)")
        #expect(!add.stdout.contains("CLI-SECRET"))
        let list = try await cli(["connections", "list"])
        #expect(list.stdout.hasPrefix("acme\tbitbucket-cloud\tacme\tactive\toauth2"))

        // authorize: a new connection needs provider and workspace; an existing one is re-authorized
        // with its own. Both print the Bitbucket consent URL carrying a signed state, never the secret.
        for arguments in [
            ["connections", "authorize", "acme-new", "--provider", "bitbucket-cloud", "--workspace", "acme"],
            ["connections", "authorize", "acme"],
        ] {
            let authorize = try await cli(arguments)
            #expect(authorize.status == 0, "\(arguments): \(authorize.stderr)")
            let printed = authorize.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let url = try #require(URLComponents(string: printed), "\(arguments) printed \(printed)")
            #expect(url.host == "127.0.0.1" && url.port == 9)
            let query = Dictionary((url.queryItems ?? []).map { ($0.name, $0.value ?? "") }) { first, _ in first }
            #expect(query["client_id"] == "cli-consumer")
            #expect(query["state"]?.hasPrefix("v1.") == true)
            #expect(query["redirect_uri"] == "https://pushbridge.example.test/v1/oauth/bitbucket-cloud/callback")
            #expect(!authorize.stdout.contains("CLI-SECRET") && !authorize.stderr.contains("CLI-SECRET"))
        }
        let unknown = try await cli(["connections", "authorize", "nobody"])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("--provider"), "\(unknown.stderr)")

        let build = dir.appendingPathComponent("build")
        try FileManager.default.createDirectory(at: build, withIntermediateDirectories: true)
        try Data("generated\n".utf8).write(to: build.appendingPathComponent("README.md"))
        let enqueue = try await cli([
            "enqueue", "--connection", "acme", "--repo", "billing", "--dir", build.path, "--branch", "pushbridge/x",
            "--message", "Generated", "--pr-title", "Build", "--no-wait",
        ])
        #expect(enqueue.status == 0, "\(enqueue.stderr)")
        let jobID = enqueue.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let show = try await cli(["jobs", "show", jobID])
        // The worker may already have picked it up (and failed to reach the closed port).
        #expect(show.stdout.contains(#""state" : "queued""#) || show.stdout.contains(#""state" : "running""#), "\(show.stdout)")
        #expect(show.stdout.contains(#""archive" : ""#))
        let missing = try await cli(["jobs", "show", "no-such-job"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("not_found"))
        let cancel = try await cli(["jobs", "cancel", jobID])
        #expect(cancel.stdout.contains("cancel"), "\(cancel.stdout) \(cancel.stderr)")

        kill(daemon.processIdentifier, SIGTERM)
        #expect(await listener.next()?.hasPrefix("STOPPING=1") == true)
        await waitForExit(daemon)
        #expect(daemon.terminationStatus == 0, "\(logText())")
        let output = try String(contentsOf: logFile, encoding: .utf8)
        #expect(!output.contains(token))
        #expect(!output.contains("CLI-SECRET"))
    }

    @Test("oauth1-keygen writes a PKCS#8 private key (0600) and a SubjectPublicKeyInfo public key")
    func keygen() async throws {
        let dir = try TestPaths.makeTemporaryDirectory("keygen")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("keys")
        let result = try await ProcessRunner.run(executable.path, ["oauth1-keygen", "--out", out.path, "--consumer-key", "pb-test"])
        #expect(result.status == 0, "\(result.stderr)")
        let privateKey = try String(contentsOf: out.appendingPathComponent("private.pem"), encoding: .utf8)
        let publicKey = try String(contentsOf: out.appendingPathComponent("public.pem"), encoding: .utf8)
        #expect(privateKey.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        #expect(publicKey.hasPrefix("-----BEGIN PUBLIC KEY-----"))
        #expect(result.stdout.contains("pb-test"))
        #expect(result.stdout.contains(publicKey.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(!result.stdout.contains("PRIVATE KEY"))
        let mode = try FileManager.default.attributesOfItem(atPath: out.appendingPathComponent("private.pem").path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // openssl agrees the two halves belong together.
        let derived = try await ProcessRunner.run("openssl", ["pkey", "-in", out.appendingPathComponent("private.pem").path, "-pubout"])
        #expect(derived.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == publicKey.trimmingCharacters(in: .whitespacesAndNewlines))
        // Never overwrites a key in use.
        #expect(try await ProcessRunner.run(executable.path, ["oauth1-keygen", "--out", out.path]).status != 0)
    }
}
