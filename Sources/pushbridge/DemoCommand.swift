import ArgumentParser
import AsyncHTTPClient
import BitbucketEmulator
import Foundation
import Logging
import PushBridge
import PushBridgeServer

/// `pushbridge demo`: the product path end to end on a fresh machine.
///
/// Starts the Bitbucket emulator in-process and the daemon as a real child process (`serve
/// --env-file`, SQLite in a throw-away state directory), connects a Cloud workspace through the
/// daemon's OAuth routes while playing the user's browser, pushes two generations of a sample app
/// through `POST /v1/jobs` (a directory source, then an uploaded archive), and verifies the result
/// independently with the `git` CLI and the emulator's state. Exits 0 only when every check passed.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Start a local Bitbucket emulator and the daemon, connect via OAuth, push a sample app as a pull request.")

    @Flag(name: .long, help: "Keep the temporary state directory (printed) instead of deleting it; it is always kept on failure.")
    var keep = false

    func run() async throws {
        let stateDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("pushbridge-demo-\(UUID().uuidString.prefix(8))").resolvingSymlinksInPath().path
        // 0700: it holds the env file, the database and the git caches of this run.
        try FileManager.default.createDirectory(
            atPath: stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var succeeded = false
        do {
            try await DemoRun(stateDirectory: stateDirectory).run()
            succeeded = true
        } catch {
            printError("demo FAILED: \(error)")
        }
        if keep || !succeeded {
            print("state directory kept: \(stateDirectory)")
        } else {
            try? FileManager.default.removeItem(atPath: stateDirectory)
        }
        if !succeeded { throw ExitCode.failure }
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// A job as `GET /v1/jobs/{id}` shows it (the fields the demo reads).
struct DemoJob: Decodable {
    var id: String
    var state: String
    var attempts: Int
    var result: JobResult?
    var error: JobError?

    var isTerminal: Bool { ["succeeded", "failed", "cancelled"].contains(state) }
}

/// One run of the demo in its state directory.
struct DemoRun {
    static let workspace = "acme"
    static let username = "demo-user"
    static let clientID = "pushbridge-demo"
    static let connectionID = "acme-cloud"
    static let provider = "bitbucket-cloud"
    static let slug = "demo-app"
    static let branch = "pushbridge/demo-app"
    static let baseBranch = "main"

    static func commitMessage(_ generation: Int) -> String { "Generate demo-app (generation \(generation))" }
    static func pullRequestTitle(_ generation: Int) -> String { "Generated app: demo-app (generation \(generation))" }

    let stateDirectory: String
    let quiet = Logger(label: "pushbridge.demo") { _ in SwiftLogNoOpLogHandler() }

    func path(_ component: String) -> String { (stateDirectory as NSString).appendingPathComponent(component) }

    func run() async throws {
        print("pushbridge demo: state directory \(stateDirectory)")
        var emulatorConfiguration = EmulatorConfiguration()
        emulatorConfiguration.repositoriesDirectory = URL(fileURLWithPath: path("emulator-repos"))
        let emulator = try await BitbucketEmulator.start(configuration: emulatorConfiguration, logger: quiet)
        // Plays the user's browser: never follows redirects, so each hop is checked.
        let browser = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5), read: .seconds(30))))
        do {
            try await withEmulator(emulator, browser: browser)
        } catch {
            try? await browser.shutdown()
            try? await emulator.stop()
            throw error
        }
        try await browser.shutdown()
        try await emulator.stop()
    }

    private func withEmulator(_ emulator: BitbucketEmulator, browser: HTTPClient) async throws {
        try await emulator.createUser(Self.username, displayName: "Demo User")
        try await emulator.createWorkspace(Self.workspace, name: "Acme", administrators: [Self.username])
        _ = try await emulator.createCloudProject(workspace: Self.workspace, key: "DEMO", name: "Demo")
        await emulator.setAuthorizingUser(Self.username, for: .cloud)
        print("emulator: \(emulator.endpoints.root.absoluteString) (Cloud workspace \(Self.workspace), user \(Self.username))")

        // Generated per run: nothing secret is embedded in the binary, and all of it reaches the
        // daemon through the 0600 env file only.
        let secrets = DemoSecrets(
            apiToken: Self.randomHex(32), masterKey: MasterKey.generate().exportBase64(), clientSecret: Self.randomHex(24))
        let sourceRoot = path("generated")
        try FileManager.default.createDirectory(atPath: sourceRoot, withIntermediateDirectories: true)
        let settings: [(String, String)] = [
            ("PUSHBRIDGE_API_TOKENS", secrets.apiToken),
            ("PUSHBRIDGE_DATABASE_URL", "sqlite://" + path("pushbridge.sqlite")),
            ("PUSHBRIDGE_DATA_DIR", path("data")),
            ("PUSHBRIDGE_SOURCE_ROOTS", sourceRoot),
            ("PUSHBRIDGE_MASTER_KEY", secrets.masterKey),
            ("PUSHBRIDGE_CLOUD_API_URL", emulator.endpoints.cloudAPI.absoluteString),
            ("PUSHBRIDGE_CLOUD_SITE_URL", emulator.endpoints.cloudSite.absoluteString),
            ("PUSHBRIDGE_CLOUD_GIT_URL", emulator.endpoints.cloudGit.absoluteString),
            ("PUSHBRIDGE_CLOUD_CLIENT_ID", Self.clientID),
            ("PUSHBRIDGE_CLOUD_CLIENT_SECRET", secrets.clientSecret),
            ("PUSHBRIDGE_WORKERS", "2"),
            ("PUSHBRIDGE_SHUTDOWN_GRACE", "10s"),
            ("PUSHBRIDGE_LOG_LEVEL", "info"),
        ]
        try FileManager.default.createDirectory(atPath: path("data"), withIntermediateDirectories: true)
        let daemon: DemoDaemon
        do {
            daemon = try await DemoDaemon.start(stateDirectory: stateDirectory, settings: settings, apiToken: secrets.apiToken)
        } catch {
            printDaemonLog(path("daemon.log"))
            throw error
        }
        let checks = DemoChecks()
        print("daemon:   \(daemon.baseURL) ready (pid \(daemon.pid), `serve --env-file \(daemon.envFilePath)`, log \(daemon.logPath))")
        let api = APIClient(baseURL: daemon.baseURL, token: secrets.apiToken)
        var failure: (any Error)?
        do {
            try await drive(emulator: emulator, daemon: daemon, api: api, browser: browser, secrets: secrets, checks: checks)
        } catch {
            failure = error
        }
        let exit = await daemon.stop(within: .seconds(30))
        checks.expect(
            "daemon: SIGTERM → graceful shutdown, exit status 0", exit == 0,
            exit.map { "exit status \($0)" } ?? "still running after 30 s, killed")
        let log = (try? String(contentsOfFile: daemon.logPath, encoding: .utf8)) ?? ""
        let leaked = secrets.all.filter { log.contains($0.value) }.map(\.name)
        checks.expect(
            "secrets: API token, master key and client secret never appear in daemon.log", leaked.isEmpty,
            "found \(leaked)")
        print("")
        print("Checks:")
        checks.printAll()
        if failure != nil || !checks.failed.isEmpty { printDaemonLog(daemon.logPath) }
        if let failure { throw failure }
        guard checks.failed.isEmpty else {
            throw DemoFailure("checks", "\(checks.failed.count) failed: \(checks.failed.joined(separator: "; "))")
        }
        print("")
        print("demo OK: \(checks.passed) checks passed")
    }

    private func printDaemonLog(_ logPath: String) {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no log)"
        printError("--- daemon log (last 40 lines of \(logPath)) ---")
        printError(text.split(separator: "\n", omittingEmptySubsequences: false).suffix(40).joined(separator: "\n"))
        printError("--- end of daemon log ---")
    }

    // swiftlint:disable:next function_body_length
    private func drive(
        emulator: BitbucketEmulator, daemon: DemoDaemon, api: APIClient, browser: HTTPClient, secrets: DemoSecrets,
        checks: DemoChecks
    ) async throws {
        let arguments = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(daemon.pid)/cmdline"))) ?? Data()
        let envMode = (try? FileManager.default.attributesOfItem(atPath: daemon.envFilePath)[.posixPermissions] as? Int) ?? -1

        // 1. Connect the workspace through the daemon's OAuth routes.
        let callback = daemon.baseURL + "/v1/oauth/\(Self.provider)/callback"
        try await emulator.registerOAuth2Client(OAuth2ClientRegistration(
            product: .cloud, clientID: Self.clientID, clientSecret: secrets.clientSecret, redirectURI: callback,
            ownerUsername: Self.username))
        let issuedBefore = await emulator.counters().tokensIssued["oauth2"] ?? 0
        let connected = try await connect(api: api, browser: browser, callback: callback, emulator: emulator)
        let connection = try await api.object(.GET, "/v1/connections/\(Self.connectionID)")
        let credentials = connection["credentials"] as? [String: Any] ?? [:]
        print("oauth:    connection \(Self.connectionID) \(connection["state"] ?? "?") "
            + "(\(credentials["type"] ?? "?"), expires \(credentials["expiresAt"] ?? "-"), refreshable: \((credentials["refreshable"] as? Bool).map { "\($0)" } ?? "-"))")

        // 2. Generation 1: a directory under the daemon's source root.
        let gen1Dir = path("generated/gen1")
        try SampleApp.write(SampleApp.generation1, to: gen1Dir)
        let job1 = try await runJob(
            generation: 1, source: ["directory": gen1Dir], api: api, label: "directory \(gen1Dir)")

        // 3. Generation 2: a few files changed, uploaded as a tar.gz archive.
        let gen2Dir = path("generated/gen2")
        try SampleApp.write(SampleApp.generation2, to: gen2Dir)
        let archivePath = path("gen2.tar.gz")
        let tar = try await GitCLI.run(tool: "tar", ["-czf", archivePath, "-C", gen2Dir, "."])
        guard tar.status == 0 else { throw DemoFailure("archive", "tar failed: \(tar.stderr)") }
        let archive = try await api.uploadArchive(path: archivePath)
        guard let archiveID = archive["id"] as? String else { throw DemoFailure("archive", "upload answered without an id") }
        let job2 = try await runJob(
            generation: 2, source: ["archive": archiveID], api: api,
            label: "archive \(archiveID.prefix(12))… (\(archive["files"] ?? "?") files, \(archive["bytes"] ?? "?") bytes)")

        // 4. Independent verification.
        let repository = EmulatorRepositoryRef.cloud(workspace: Self.workspace, slug: Self.slug)
        let pullRequests = await emulator.pullRequests(in: repository)
        let open = pullRequests.filter { $0.state == .open }
        let verifier = try await emulator.issueTokens(product: .cloud, username: Self.username)
        let counters = await emulator.counters()
        let clone = try await verifyClone(
            url: emulator.endpoints.cloudCloneURL(workspace: Self.workspace, slug: Self.slug), token: verifier.accessToken,
            commits: [job1.commit, job2.commit], checks: checks)

        // 5. Report.
        print("")
        if let pr = open.first {
            print("Pull request #\(pr.id): \(pr.title)")
            print("  url:    \(job2.pullRequest?.url ?? "(none)")")
            print("  branch: \(pr.sourceBranch) → \(pr.destinationBranch)  state: \(pr.state.rawValue)")
        } else {
            print("Pull request: none open")
        }
        print("")
        print("Commits on \(Self.branch) (fresh git clone):")
        for line in clone.log { print("  \(line)") }
        print("")
        print("Files changed, generation 1 (\(job1.commit.prefix(8)), \(job1.stats.filesWritten) files written):")
        for line in clone.changedGeneration1 { print("  \(line)") }
        print("Files changed, generation 2 (\(job2.commit.prefix(8)), \(job2.stats.filesWritten) files written):")
        for line in clone.changedGeneration2 { print("  \(line)") }
        checks.expect(
            "daemon: secrets only in the env file (mode 0600), not in its arguments",
            envMode == 0o600 && !secrets.all.contains { arguments.range(of: Data($0.value.utf8)) != nil },
            "env file mode \(String(envMode, radix: 8))")
        let view = connected.connection
        checks.expect(
            "oauth: the daemon's callback created connection \(Self.connectionID) (\(Self.provider), workspace \(Self.workspace))",
            view["provider"] as? String == Self.provider && view["workspace"] as? String == Self.workspace,
            "provider \(view["provider"] ?? "-"), workspace \(view["workspace"] ?? "-")")
        checks.expect(
            "oauth: replaying the callback is refused (400 invalid_oauth_state)",
            connected.replayStatus == 400 && connected.replayCode == "invalid_oauth_state",
            "answered \(connected.replayStatus) \(connected.replayCode ?? "")")
        checks.expect(
            "oauth: connection \(Self.connectionID) is active with oauth2 credentials",
            connection["state"] as? String == "active" && credentials["type"] as? String == "oauth2", "\(connection)")
        checks.expect(
            "oauth: the authorization code was exchanged at the emulator exactly once",
            (counters.tokensIssued["oauth2"] ?? 0) - issuedBefore == 1,
            "oauth2 tokens issued: \((counters.tokensIssued["oauth2"] ?? 0) - issuedBefore)")
        checks.expect(
            "job 1: changed, pull request created", job1.changed && job1.pullRequest?.created == true,
            "changed \(job1.changed), pullRequest \(String(describing: job1.pullRequest))")
        checks.expect(
            "job 2: changed: true, pullRequest.created: false, same pull request",
            job2.changed && job2.pullRequest?.created == false && job2.pullRequest?.id == job1.pullRequest?.id,
            "changed \(job2.changed), pullRequest \(String(describing: job2.pullRequest))")
        checks.expect(
            "emulator: exactly one pull request, open, \(Self.branch) → \(Self.baseBranch), titled for generation 2",
            pullRequests.count == 1 && open.count == 1 && open.first?.sourceBranch == Self.branch
                && open.first?.destinationBranch == Self.baseBranch && open.first?.id == job2.pullRequest?.id
                && open.first?.title == Self.pullRequestTitle(2),
            "\(pullRequests.map { "#\($0.id) \($0.sourceBranch)→\($0.destinationBranch) \($0.state.rawValue) \($0.title)" })")
        checks.expect(
            "emulator: 3 git pushes (initial commit, generation 1, generation 2), 1 pull request created",
            counters.gitPushes["\(Self.workspace)/\(Self.slug)"] == 3
                && counters.pullRequestsCreated["\(Self.workspace)/\(Self.slug)"] == 1,
            "pushes \(counters.gitPushes), pull requests \(counters.pullRequestsCreated)")
    }
}
