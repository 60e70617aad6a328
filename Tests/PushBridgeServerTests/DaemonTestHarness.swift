import AsyncHTTPClient
import BitbucketEmulator
import BitbucketKit
import Foundation
import GitHTTPServer
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import PushBridge
import ServiceLifecycle
import Synchronization
import Testing
import TestSupport

@testable import PushBridgeServer

/// Every log line of a daemon (all its loggers), to grep for secrets and to read what happened.
typealias DaemonLogCapture = LogCapture

/// A response of the daemon's HTTP API.
struct DaemonResponse: Sendable {
    let status: Int
    let headers: HTTPHeaders
    let body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }

    /// The body as a JSON object (an issue is recorded when it is not one).
    var object: [String: Any] {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            Issue.record("not a JSON object (status \(status)): \(text)")
            return [:]
        }
        return object
    }

    /// `error.code` when the body is the error envelope `{"error": {"code", "message"}}` with both strings.
    var errorCode: String? {
        guard let error = object["error"] as? [String: Any], let code = error["code"] as? String,
            let message = error["message"] as? String, !message.isEmpty
        else { return nil }
        return code
    }
}

/// Bitbucket emulator + a real ``PushBridgeDaemon`` (SQLite store, archive store, worker, API on an
/// ephemeral port) in a temporary directory, driven over plain HTTP with the bearer token.
///
/// The emulator is seeded like the pipeline tests' environment: user `alice`, Cloud workspace
/// `acme` (project `PROJ`), DC project `PRJ`, a Cloud OAuth consumer, a DC OAuth 2.0 client and an
/// application-link consumer whose PKCS#8 key the daemon reads from a file. The daemon runs under a
/// test-owned `ServiceGroup` (no signal handlers of its own), so ``stopDaemon()`` is exactly the
/// graceful shutdown SIGTERM starts in production. Its logs are captured (no global LoggingSystem
/// bootstrap) and every response body is kept, so tests can grep both for secrets.
final class DaemonHarness: Sendable {
    static let apiToken = "e2e-api-token-6b1f0c9d2e7a"
    static let cloudClient = "e2e-cloud-client"
    static let cloudSecret = "e2e-cloud-secret-3f8a1c"
    static let dcClient = "e2e-dc-client"
    static let dcSecret = "e2e-dc-secret-9d2b7e"
    static let webhookSecret = "e2e-webhook-secret-51c0aa"
    static let consumerKey = "pushbridge-e2e"

    let emulator: BitbucketEmulator
    let directory: TemporaryDirectory
    let environment: [String: String]
    let masterKey: String
    let oauth1Key: OAuth1PrivateKey
    let http: HTTPClient
    let logs = DaemonLogCapture()
    /// Every secret handed to the daemon or issued for it (grep targets).
    let secrets = Mutex<[String]>([])
    /// Every response body received, for the secret grep.
    let responses = Mutex<[String]>([])
    private let current = Mutex<RunningDaemon?>(nil)

    struct RunningDaemon: Sendable {
        let group: ServiceGroup
        let task: Task<Void, any Error>
        let port: Int
        let registry: PrometheusCollectorRegistry
    }

    private init(
        emulator: BitbucketEmulator, directory: TemporaryDirectory, environment: [String: String], masterKey: String,
        oauth1Key: OAuth1PrivateKey
    ) {
        self.emulator = emulator
        self.directory = directory
        self.environment = environment
        self.masterKey = masterKey
        self.oauth1Key = oauth1Key
        self.http = HTTPClient(eventLoopGroupProvider: .singleton)
    }

    var sourceRoot: URL { directory.appending("builds") }
    var baseURL: String {
        guard let port = current.withLock({ $0?.port }) else { return "http://127.0.0.1:1" }
        return "http://127.0.0.1:\(port)"
    }
    var registry: PrometheusCollectorRegistry? { current.withLock { $0?.registry } }

    /// Starts emulator and daemon, runs `body`, then shuts everything down and removes the temp dir.
    ///
    /// - Parameter environment: extra or overriding `PUSHBRIDGE_*` variables.
    static func with(
        environment extra: [String: String] = [:], startDaemon: Bool = true, _ body: (DaemonHarness) async throws -> Void
    ) async throws {
        let quiet = Logger(label: "emulator") { _ in SwiftLogNoOpLogHandler() }
        let emulator = try await BitbucketEmulator.start(logger: quiet)
        let directory = try TemporaryDirectory(prefix: "pb-e2e")
        let harness: DaemonHarness
        do {
            try FileManager.default.createDirectory(
                at: directory.appending("builds"), withIntermediateDirectories: true)
            let key = try OAuth1PrivateKey.generate()
            let keyFile = directory.appending("oauth1-private.pem")
            try Data(key.pkcs8PEM.reveal().utf8).write(to: keyFile)
            let masterKey = MasterKey.generate().exportBase64()
            let endpoints = emulator.endpoints
            var environment = [
                "PUSHBRIDGE_LISTEN": "127.0.0.1:0",
                "PUSHBRIDGE_API_TOKENS": apiToken,
                "PUSHBRIDGE_MASTER_KEY": masterKey,
                "PUSHBRIDGE_DATA_DIR": directory.appending("data").path,
                "PUSHBRIDGE_DATABASE_URL": "sqlite://\(directory.appending("pushbridge.sqlite").path)",
                "PUSHBRIDGE_SOURCE_ROOTS": directory.appending("builds").path,
                "PUSHBRIDGE_PUBLIC_URL": "http://127.0.0.1:1",
                "PUSHBRIDGE_CLOUD_API_URL": endpoints.cloudAPI.absoluteString,
                "PUSHBRIDGE_CLOUD_SITE_URL": endpoints.cloudSite.absoluteString,
                "PUSHBRIDGE_CLOUD_GIT_URL": endpoints.cloudGit.absoluteString,
                "PUSHBRIDGE_CLOUD_CLIENT_ID": cloudClient,
                "PUSHBRIDGE_CLOUD_CLIENT_SECRET": cloudSecret,
                "PUSHBRIDGE_DC_CLIENT_ID": dcClient,
                "PUSHBRIDGE_DC_CLIENT_SECRET": dcSecret,
                "PUSHBRIDGE_OAUTH1_CONSUMER_KEY": consumerKey,
                "PUSHBRIDGE_OAUTH1_PRIVATE_KEY_FILE": keyFile.path,
                // The emulator answers 404 here: deliveries are attempted (and retried) with the secret in use.
                "PUSHBRIDGE_WEBHOOK_URL": endpoints.root.appendingPathComponent("e2e-webhook-sink").absoluteString,
                "PUSHBRIDGE_WEBHOOK_SECRET": webhookSecret,
                "PUSHBRIDGE_WORKERS": "2",
                "PUSHBRIDGE_MAX_REQUEST_BYTES": "64KiB",
                "PUSHBRIDGE_LOG_LEVEL": "trace",
            ]
            environment.merge(extra) { $1 }
            harness = DaemonHarness(
                emulator: emulator, directory: directory, environment: environment, masterKey: masterKey,
                oauth1Key: key)
            harness.secrets.withLock {
                $0 += [apiToken, cloudSecret, dcSecret, webhookSecret, masterKey, key.pkcs8PEM.reveal()]
            }
        } catch {
            try? await emulator.stop()
            throw error
        }
        var failure: (any Error)?
        do {
            try await harness.seed()
            if startDaemon { try await harness.startDaemon() }
            try await body(harness)
        } catch {
            failure = error
        }
        // Cleanup runs whatever happened above: an HTTPClient must be shut down before it is freed.
        do {
            try await harness.stopDaemon()
        } catch {
            Issue.record("daemon shutdown failed: \(error)")
        }
        try? await harness.http.shutdown()
        try? await emulator.stop()
        if let failure { throw failure }
    }

    private func seed() async throws {
        try await emulator.createUser("alice", displayName: "Alice")
        try await emulator.createWorkspace("acme", name: "Acme", administrators: ["alice"])
        try await emulator.createCloudProject(workspace: "acme", key: "PROJ", name: "Project")
        try await emulator.createDataCenterProject(key: "PRJ", name: "Platform", members: ["alice"])
        let callback = "http://127.0.0.1:1/v1/oauth/callback"
        try await emulator.registerOAuth2Client(OAuth2ClientRegistration(
            product: .cloud, clientID: Self.cloudClient, clientSecret: Self.cloudSecret, redirectURI: callback,
            ownerUsername: "alice"))
        try await emulator.registerOAuth2Client(OAuth2ClientRegistration(
            product: .dataCenter, clientID: Self.dcClient, clientSecret: Self.dcSecret,
            redirectURI: "http://127.0.0.1:1/v1/oauth/bitbucket-datacenter/callback"))
        await emulator.registerOAuth1Consumer(
            OAuth1ConsumerRegistration(consumerKey: Self.consumerKey, publicKeyPEM: oauth1Key.publicKeyPEM))
    }

    // MARK: Daemon lifecycle

    /// Loads the configuration from ``environment`` and starts a daemon; returns once it listens.
    func startDaemon() async throws {
        precondition(current.withLock { $0 == nil }, "a daemon is already running")
        let configuration = try await ConfigurationLoader.load(environment: environment, envFile: .none)
        let registry = PrometheusCollectorRegistry()
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let daemon = PushBridgeDaemon(
            configuration: configuration, registry: registry, logger: logs.logger("pushbridge"), notifier: nil,
            onListening: { address in portContinuation.yield(address.port) })
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: DaemonService(daemon: daemon))], gracefulShutdownSignals: [],
                logger: Logger(label: "e2e-group") { _ in SwiftLogNoOpLogHandler() }))
        let task = Task {
            defer { portContinuation.finish() }
            try await group.run()
        }
        let port = try await withDeadline(.seconds(60), "daemon start") {
            var iterator = ports.makeAsyncIterator()
            return await iterator.next()
        }
        guard let port, port > 0 else {
            task.cancel()
            try await task.value
            throw HarnessError("the daemon ended before it listened")
        }
        current.withLock { $0 = RunningDaemon(group: group, task: task, port: port, registry: registry) }
    }

    /// Triggers graceful shutdown (what SIGTERM does) and waits for the daemon to exit.
    ///
    /// - Returns: How long the shutdown took (`nil` when no daemon ran).
    @discardableResult
    func stopDaemon(deadline: Duration = .seconds(90)) async throws -> Duration? {
        guard let running = current.withLock({ value -> RunningDaemon? in
            defer { value = nil }
            return value
        }) else { return nil }
        let start = ContinuousClock.now
        await running.group.triggerGracefulShutdown()
        try await withDeadline(deadline, "daemon shutdown") { try await running.task.value }
        return ContinuousClock.now - start
    }

    // MARK: HTTP

    /// Sends a request to the running daemon. `token: nil` sends no `Authorization` header.
    func request(
        _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, json: String? = nil,
        headers: [(String, String)] = [], token: String? = DaemonHarness.apiToken
    ) async throws -> DaemonResponse {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        } else if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        let response = try await http.execute(request, timeout: .seconds(30))
        let buffer = try await response.body.collect(upTo: 16 << 20)
        let result = DaemonResponse(
            status: Int(response.status.code), headers: response.headers, body: Array(buffer.readableBytesView))
        responses.withLock { $0.append(result.text) }
        return result
    }

    /// Polls `GET /v1/jobs/{id}` until the job is in one of `states`.
    func waitForJob(_ id: String, in states: Set<String> = ["succeeded", "failed", "cancelled"], deadline: Duration = .seconds(90))
        async throws -> DaemonResponse
    {
        try await withDeadline(deadline, "job \(id) to reach \(states.sorted())") {
            while true {
                let response = try await self.request(.GET, "/v1/jobs/\(id)")
                guard response.status == 200 else { throw HarnessError("GET /v1/jobs/\(id): \(response.status) \(response.text)") }
                if let state = response.object["state"] as? String, states.contains(state) { return response }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    // MARK: Connections and sources

    /// Registers connection `id` of `provider` through `POST /v1/connections` with tokens the
    /// emulator issued for alice. `expired`: the access token is registered as expired a minute ago,
    /// so the first job must refresh it.
    func registerConnection(_ id: String, _ provider: Provider, expired: Bool = false) async throws {
        let root = emulator.endpoints.root.absoluteString
        let credentials: String
        let workspace: String
        var base = ""
        switch provider {
        case .bitbucketCloud, .bitbucketDataCenter:
            let issued = try await emulator.issueTokens(
                product: provider == .bitbucketCloud ? .cloud : .dataCenter, username: "alice", clientID: provider == .bitbucketCloud ? Self.cloudClient : Self.dcClient)
            let refresh = try #require(issued.refreshToken)
            secrets.withLock { $0 += [issued.accessToken, refresh] }
            let expiresAt = ISO8601DateFormatter().string(from: Date().addingTimeInterval(expired ? -60 : 3600))
            credentials = """
                {"type": "oauth2", "accessToken": "\(issued.accessToken)", "refreshToken": "\(refresh)", "expiresAt": "\(expiresAt)"}
                """
            workspace = provider == .bitbucketCloud ? "acme" : "PRJ"
            if provider == .bitbucketDataCenter { base = #", "baseUrl": "\#(root)""# }
        case .bitbucketServer:
            let issued = try await emulator.issueOAuth1AccessToken(consumerKey: Self.consumerKey, username: "alice")
            secrets.withLock { $0 += [issued.token, issued.secret] }
            credentials = #"{"type": "oauth1", "consumerKey": "\#(Self.consumerKey)", "accessToken": "\#(issued.token)"}"#
            workspace = "PRJ"
            base = #", "baseUrl": "\#(root)""#
        }
        let response = try await request(
            .POST, "/v1/connections",
            json: #"{"id": "\#(id)", "provider": "\#(provider.rawValue)", "workspace": "\#(workspace)"\#(base), "credentials": \#(credentials)}"#)
        guard response.status == 201 else { throw HarnessError("POST /v1/connections: \(response.status) \(response.text)") }
    }

    /// Writes `files` (path → text) into a fresh directory under the source root.
    func source(_ files: [String: String]) throws -> String {
        let dir = sourceRoot.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (path, text) in files {
            let url = dir.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        return dir.path
    }

    /// A `.tar.gz` of `files` made by the real `tar`.
    func tarball(_ files: [String: String]) async throws -> [UInt8] {
        let staging = directory.appending("staging-\(UUID().uuidString)")
        for (path, text) in files {
            let url = staging.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        let output = directory.appending("archive-\(UUID().uuidString).tar.gz")
        let result = try await ChildProcess.run(
            executable: URL(fileURLWithPath: "/usr/bin/env"),
            arguments: ["tar", "-czf", output.path, "-C", staging.path] + files.keys.sorted(),
            environment: ProcessInfo.processInfo.environment)
        guard result.succeeded else { throw HarnessError("tar failed: \(result.standardErrorString)") }
        return Array(try Data(contentsOf: output))
    }

    // MARK: Inspection

    func emulatorRef(_ provider: Provider, _ slug: String) -> EmulatorRepositoryRef {
        provider == .bitbucketCloud ? .cloud(workspace: "acme", slug: slug) : .dataCenter(project: "PRJ", slug: slug)
    }

    static func counterKey(_ ref: EmulatorRepositoryRef) -> String {
        switch ref {
        case .cloud(let ws, let slug): "\(ws)/\(slug)"
        case .dataCenter(let key, let slug): "\(key)/\(slug)"
        }
    }

    /// `git clone --branch` of the emulator's bare repository into a fresh directory.
    func clone(_ ref: EmulatorRepositoryRef, branch: String) async throws -> URL {
        let repository = try #require(await emulator.repository(ref))
        let target = directory.appending("clone-\(UUID().uuidString)")
        try await runGit(
            ["clone", "--quiet", "--branch", branch, repository.gitDirectory.path, target.path], in: directory.url)
        return target
    }

    /// Records an issue for every secret found in a captured log line or a response body.
    func expectNoSecretsLeaked(sourceLocation: SourceLocation = #_sourceLocation) {
        let logText = logs.all
        let bodies = responses.withLock { $0.joined(separator: "\n") }
        for secret in secrets.withLock({ $0 }) where secret.count >= 8 {
            #expect(!logText.contains(secret), "a secret appeared in the daemon log", sourceLocation: sourceLocation)
            #expect(!bodies.contains(secret), "a secret appeared in a response body", sourceLocation: sourceLocation)
        }
    }
}

/// Runs a daemon as a service of the test's group, so the group's graceful shutdown reaches the
/// daemon's own ServiceGroup exactly as a signal would.
struct DaemonService: Service {
    let daemon: PushBridgeDaemon
    func run() async throws { try await daemon.run() }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body`, failing with a ``HarnessError`` when it takes longer than `limit` (the body is cancelled).
func withDeadline<T: Sendable>(
    _ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw HarnessError("timed out after \(limit) waiting for \(what)")
        }
        return value
    }
}
