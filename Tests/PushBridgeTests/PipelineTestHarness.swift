import BitbucketEmulator
import BitbucketKit
import Foundation
import GitKit
import Logging
@testable import PushBridge
import Synchronization
import Testing
import TestSupport

/// Thrown by a test's step observer to stop the pipeline as a crash would.
struct SimulatedCrash: Error {}

/// Every log line of the pipeline/worker/token loggers, to look for secrets.
typealias PipelineLogCapture = LogCapture

/// Emulator (user alice, Cloud workspace `acme`, DC project `PRJ`, OAuth clients, an OAuth 1.0a
/// consumer) + SQLite store + token manager + git caches + pipeline, all in a temporary directory.
final class PipelineEnvironment: Sendable {
    let emulator: BitbucketEmulator
    let transport: BitbucketHTTPTransport
    let store: any Store
    let directory: TemporaryDirectory
    let oauth1Key: OAuth1PrivateKey
    let logs = PipelineLogCapture()
    let secrets = Mutex<[String]>([])

    static let cloudClient = "cloud-client"
    static let cloudSecret = "cloud-secret-value-123"
    static let dcClient = "dc-client"
    static let dcSecret = "dc-secret-value-456"
    static let callback = "http://127.0.0.1:1/callback"

    private init(
        emulator: BitbucketEmulator, transport: BitbucketHTTPTransport, store: any Store, directory: TemporaryDirectory,
        oauth1Key: OAuth1PrivateKey
    ) {
        self.emulator = emulator
        self.transport = transport
        self.store = store
        self.directory = directory
        self.oauth1Key = oauth1Key
    }

    static func with(store makeStore: ((URL) async throws -> any Store)? = nil, _ body: (PipelineEnvironment) async throws -> Void)
        async throws
    {
        let quiet = Logger(label: "emulator") { _ in SwiftLogNoOpLogHandler() }
        let emulator = try await BitbucketEmulator.start(logger: quiet)
        let transport = try BitbucketHTTPTransport()
        let directory = try TemporaryDirectory(prefix: "pb-pipeline")
        do {
            let store: any Store
            if let makeStore {
                store = try await makeStore(directory.url)
            } else {
                store = try SQLiteStore(
                    path: directory.appending("pushbridge.sqlite").path, vault: testVault,
                    options: StoreOptions(logger: Logger(label: "store") { _ in SwiftLogNoOpLogHandler() }))
            }
            try await store.migrate()
            let key = try OAuth1PrivateKey.generate()
            let env = PipelineEnvironment(
                emulator: emulator, transport: transport, store: store, directory: directory, oauth1Key: key)
            try await env.seed()
            do {
                try await body(env)
            } catch {
                try? await store.close()
                throw error
            }
            try await store.close()
        } catch {
            try? await transport.shutdown()
            try? await emulator.stop()
            throw error
        }
        try await transport.shutdown()
        try await emulator.stop()
    }

    private func seed() async throws {
        try await emulator.createUser("alice", displayName: "Alice")
        try await emulator.createWorkspace("acme", name: "Acme", administrators: ["alice"])
        try await emulator.createCloudProject(workspace: "acme", key: "PROJ", name: "Project")
        try await emulator.createDataCenterProject(key: "PRJ", name: "Platform", members: ["alice"])
        try await emulator.registerOAuth2Client(OAuth2ClientRegistration(
            product: .cloud, clientID: Self.cloudClient, clientSecret: Self.cloudSecret, redirectURI: Self.callback,
            ownerUsername: "alice"))
        try await emulator.registerOAuth2Client(OAuth2ClientRegistration(
            product: .dataCenter, clientID: Self.dcClient, clientSecret: Self.dcSecret, redirectURI: Self.callback))
        await emulator.registerOAuth1Consumer(
            OAuth1ConsumerRegistration(consumerKey: "pushbridge", publicKeyPEM: oauth1Key.publicKeyPEM))
        try FileManager.default.createDirectory(at: directory.appending("sources"), withIntermediateDirectories: true)
    }

    var cloudEndpoints: CloudEndpoints {
        CloudEndpoints(
            apiBaseURL: emulator.endpoints.cloudAPI, siteURL: emulator.endpoints.cloudSite,
            gitBaseURL: emulator.endpoints.cloudGit)
    }
    var sourcesRoot: URL { directory.appending("sources") }

    func tokenManager() -> TokenManager {
        TokenManager(
            store: store, transport: transport,
            configuration: TokenManagerConfiguration(
                cloudEndpoints: cloudEndpoints,
                cloudClientID: Self.cloudClient, cloudClientSecret: Secret(Self.cloudSecret),
                dataCenterClientID: Self.dcClient, dataCenterClientSecret: Secret(Self.dcSecret),
                dataCenterRedirectURI: URL(string: Self.callback)!, oauth1PrivateKey: oauth1Key,
                clientOptions: BitbucketClientOptions(logger: logs.logger("pushbridge.bitbucket")),
                logger: logs.logger("pushbridge.tokens")))
    }

    /// A pipeline with its own token manager and a git cache in `dataDirectory` (default: shared `data`).
    func pipeline(tokens: TokenManager? = nil, dataDirectory: String = "data") -> PushPipeline {
        PushPipeline(
            tokens: tokens ?? tokenManager(),
            caches: GitCacheStore(dataDirectory: directory.appending(dataDirectory).path),
            transport: transport,
            configuration: PipelineConfiguration(
                sourceRoots: [sourcesRoot.path], cloudEndpoints: cloudEndpoints,
                dataCenterBaseURL: emulator.endpoints.dataCenter,
                clientOptions: BitbucketClientOptions(
                    retry: RetryPolicy.default, logger: logs.logger("pushbridge.bitbucket"))),
            logger: logs.logger("pushbridge.pipeline"))
    }

    /// Registers a connection of `provider` for alice. `expired`: the stored access token expired a minute ago.
    func addConnection(_ id: String, _ provider: Provider, expired: Bool = false) async throws {
        switch provider {
        case .bitbucketCloud:
            let issued = try await emulator.issueTokens(product: .cloud, username: "alice", clientID: Self.cloudClient)
            secrets.withLock { $0 += [issued.accessToken, issued.refreshToken ?? ""] }
            _ = try await store.createConnection(
                Connection(
                    id: id, provider: .bitbucketCloud, workspace: "acme", apiURL: emulator.endpoints.cloudAPI,
                    siteURL: emulator.endpoints.cloudSite, gitURL: emulator.endpoints.cloudGit, credentialsKind: .oauth2),
                credentials: .oauth2(.init(
                    accessToken: issued.accessToken, refreshToken: issued.refreshToken,
                    expiresAt: Date().addingTimeInterval(expired ? -60 : 3600))))
        case .bitbucketDataCenter:
            let issued = try await emulator.issueTokens(product: .dataCenter, username: "alice", clientID: Self.dcClient)
            secrets.withLock { $0 += [issued.accessToken, issued.refreshToken ?? ""] }
            _ = try await store.createConnection(
                Connection(
                    id: id, provider: .bitbucketDataCenter, workspace: "PRJ", apiURL: emulator.endpoints.dataCenter,
                    siteURL: emulator.endpoints.dataCenter, credentialsKind: .oauth2),
                credentials: .oauth2(.init(
                    accessToken: issued.accessToken, refreshToken: issued.refreshToken,
                    expiresAt: Date().addingTimeInterval(expired ? -60 : 3600))))
        case .bitbucketServer:
            let oauth1 = try await emulator.issueOAuth1AccessToken(consumerKey: "pushbridge", username: "alice")
            secrets.withLock { $0 += [oauth1.token] }
            _ = try await store.createConnection(
                Connection(
                    id: id, provider: .bitbucketServer, workspace: "PRJ", apiURL: emulator.endpoints.dataCenter,
                    siteURL: emulator.endpoints.dataCenter, credentialsKind: .oauth1),
                credentials: .oauth1(.init(consumerKey: "pushbridge", accessToken: oauth1.token)))
        }
    }

    /// Writes `files` (path → text) into a fresh directory under the source root.
    func source(_ files: [String: String]) throws -> String {
        let dir = sourcesRoot.appendingPathComponent(UUID().uuidString)
        for (path, text) in files {
            let url = dir.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    func spec(
        _ connection: String, slug: String, files: [String: String], create: Bool = true, mode: JobSpec.Mode = .overlay,
        preserve: [String] = [], title: String = "Generated code", message: String = "Generate"
    ) throws -> JobSpec {
        JobSpec(
            connection: connection, repository: .init(slug: slug, create: create), source: .directory(try source(files)),
            mode: mode, preserve: preserve, branch: "pushbridge/\(slug.lowercased())", baseBranch: "main",
            commit: .init(message: message, author: .init(name: "Bot", email: "bot@example.com")),
            pullRequest: .init(title: title, description: "generated"))
    }

    /// Enqueues, claims and runs one job through `pipeline`; throws what the pipeline throws.
    @discardableResult
    func run(
        _ spec: JobSpec, pipeline: PushPipeline? = nil, observer: PushPipeline.StepObserver? = nil
    ) async throws -> (job: Job, result: JobResult) {
        let job = try await store.enqueue(spec).job
        let claimed = try #require(try await store.claimNext(workerID: "test", leaseDuration: .seconds(300), perConnectionLimit: 10))
        #expect(claimed.id == job.id)
        do {
            let result = try await resume(job.id, pipeline: pipeline ?? self.pipeline(), observer: observer)
            _ = try await store.complete(jobID: job.id, workerID: "test", result: result)
            return (job, result)
        } catch {
            _ = try? await store.fail(
                jobID: job.id, workerID: "test", error: PipelineError.classify(error).nonRetryable, retryAt: nil)
            throw error
        }
    }

    /// Runs a claimed job again from its stored checkpoint (what a restarted worker does).
    func resume(_ jobID: String, pipeline: PushPipeline, observer: PushPipeline.StepObserver? = nil) async throws -> JobResult {
        let job = try #require(try await store.job(id: jobID))
        let store = self.store
        return try await pipeline.run(
            jobID: jobID, spec: job.spec, checkpoint: job.checkpoint,
            save: { try await store.saveCheckpoint(jobID: jobID, workerID: "test", $0) }, stepObserver: observer)
    }

    func ref(_ provider: Provider, _ slug: String) -> EmulatorRepositoryRef {
        provider == .bitbucketCloud ? .cloud(workspace: "acme", slug: slug.lowercased()) : .dataCenter(project: "PRJ", slug: slug.lowercased())
    }

    func pushes(_ ref: EmulatorRepositoryRef) async -> Int {
        await emulator.counters().gitPushes[Self.counterKey(ref)] ?? 0
    }

    func pullRequestsCreated(_ ref: EmulatorRepositoryRef) async -> Int {
        await emulator.counters().pullRequestsCreated[Self.counterKey(ref)] ?? 0
    }

    static func counterKey(_ ref: EmulatorRepositoryRef) -> String {
        switch ref {
        case .cloud(let ws, let slug): "\(ws)/\(slug)"
        case .dataCenter(let key, let slug): "\(key)/\(slug)"
        }
    }

    func gitDirectory(_ ref: EmulatorRepositoryRef) async throws -> URL {
        try #require(await emulator.repository(ref)).gitDirectory
    }

    /// `git <args>` in the emulator's bare repository.
    func git(_ ref: EmulatorRepositoryRef, _ args: [String]) async throws -> String {
        try await runGit(args, in: try await gitDirectory(ref)).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func commitCount(_ ref: EmulatorRepositoryRef, _ branch: String) async throws -> Int {
        Int(try await git(ref, ["rev-list", "--count", "refs/heads/\(branch)"])) ?? -1
    }

    func fileAt(_ ref: EmulatorRepositoryRef, _ branch: String, _ path: String) async throws -> String? {
        let result = try await gitResult(["show", "refs/heads/\(branch):\(path)"], in: try await gitDirectory(ref))
        return result.succeeded ? result.standardOutputString : nil
    }

    func expectNoSecretsLogged(sourceLocation: SourceLocation = #_sourceLocation) {
        let text = logs.all
        for secret in secrets.withLock({ $0 }) where secret.count >= 6 {
            #expect(!text.contains(secret), "a secret appeared in the logs", sourceLocation: sourceLocation)
        }
    }
}

extension JobError {
    var nonRetryable: JobError { JobError(code: code, message: message, retryable: false) }
}
