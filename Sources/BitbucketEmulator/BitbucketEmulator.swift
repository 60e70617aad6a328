import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Base URLs of a running emulator. One instance serves both products on one port.
public struct EmulatorEndpoints: Sendable, Hashable {
    /// `http://host:port` — the server root.
    public let root: URL
    /// Cloud REST API base, e.g. `http://127.0.0.1:port/2.0` (`PUSHBRIDGE_CLOUD_API_URL`).
    public let cloudAPI: URL
    /// Cloud site base for OAuth (`/site/oauth2/authorize`, `/site/oauth2/access_token`) (`PUSHBRIDGE_CLOUD_SITE_URL`).
    public let cloudSite: URL
    /// Cloud git base: clone URLs are `{cloudGit}/{workspace}/{slug}.git` (`PUSHBRIDGE_CLOUD_GIT_URL`).
    public let cloudGit: URL
    /// DC base URL: REST at `/rest/api/1.0`, OAuth 2.0 at `/rest/oauth2/latest`, OAuth 1.0a at `/plugins/servlet/oauth`,
    /// git at `/scm/{KEY}/{slug}.git`.
    public let dataCenter: URL

    /// Cloud https clone URL of a repository.
    public func cloudCloneURL(workspace: String, slug: String) -> URL {
        cloudGit.appendingPathComponent(workspace).appendingPathComponent("\(slug).git")
    }

    /// DC http clone URL of a repository (`/scm/{key lower-cased}/{slug}.git`, as DC prints it).
    public func dataCenterCloneURL(project: String, slug: String) -> URL {
        dataCenter.appendingPathComponent("scm").appendingPathComponent(project.lowercased())
            .appendingPathComponent("\(slug).git")
    }
}

/// A local, in-memory Bitbucket for tests and `pushbridge demo`: Cloud REST 2.0, Data Center REST 1.0, both
/// OAuth 2.0 flavours (with refresh-token rotation and PKCE), OAuth 1.0a RSA-SHA1 application links, HTTP access
/// tokens, and git smart HTTP over real bare repositories.
///
/// ```swift
/// let emulator = try await BitbucketEmulator.start()
/// defer { Task { try await emulator.stop() } }
/// try await emulator.createUser("alice")
/// try await emulator.createWorkspace("acme", members: ["alice"])
/// let tokens = try await emulator.issueTokens(product: .cloud, username: "alice")
/// // GET \(emulator.endpoints.cloudAPI)/user with "Authorization: Bearer \(tokens.accessToken)"
/// ```
///
/// All state lives in memory and in a directory of bare repositories; ``stop()`` ends the server and removes the
/// directory when the emulator created it.
public final class BitbucketEmulator: Sendable {
    /// Where the running emulator answers.
    public let endpoints: EmulatorEndpoints
    /// Every route served, machine-readable (used by the OpenAPI contract test).
    public let routes: [EmulatorRoute]
    /// Directory that holds the bare repositories (`cloud/{ws}/{slug}.git`, `dc/{KEY}/{slug}.git`).
    public let repositoriesDirectory: URL

    let state: EmulatorState
    let service: EmulatorService
    private let runner: ServerRunner
    private let ownsDirectory: Bool

    private init(
        endpoints: EmulatorEndpoints, routes: [EmulatorRoute], repositoriesDirectory: URL, state: EmulatorState,
        service: EmulatorService, runner: ServerRunner, ownsDirectory: Bool
    ) {
        self.endpoints = endpoints
        self.routes = routes
        self.repositoriesDirectory = repositoriesDirectory
        self.state = state
        self.service = service
        self.runner = runner
        self.ownsDirectory = ownsDirectory
    }

    /// Starts an emulator and returns once it accepts connections.
    ///
    /// - Parameters:
    ///   - configuration: Address, prefixes and token behaviour.
    ///   - logger: Receives one line per request (method, path without query, route, status, duration) and
    ///     never a header, query string or body, so no secret reaches it.
    public static func start(
        configuration: EmulatorConfiguration = EmulatorConfiguration(),
        logger: Logger = Logger(label: "BitbucketEmulator")
    ) async throws -> BitbucketEmulator {
        var prefix = configuration.cloudAPIPrefix
        if !prefix.hasPrefix("/") { prefix = "/" + prefix }
        while prefix.hasSuffix("/") { prefix.removeLast() }

        let ownsDirectory = configuration.repositoriesDirectory == nil
        let dir =
            configuration.repositoriesDirectory
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("bitbucket-emulator-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)

        let routes = RouteTable.build(cloudPrefix: prefix)
        let state = EmulatorState(settings: configuration)
        let box = EndpointsBox()
        let service = EmulatorService(
            state: state, routes: routes, cloudPrefix: prefix, repositoriesDirectory: dir, logger: logger,
            endpointsBox: box)
        let runner = ServerRunner()
        let port = try await runner.start(
            host: configuration.host, port: configuration.port, service: service, logger: logger)
        let root = URL(string: "http://\(configuration.host):\(port)")!
        let endpoints = EmulatorEndpoints(
            root: root, cloudAPI: URL(string: root.absoluteString + prefix)!, cloudSite: root, cloudGit: root,
            dataCenter: root)
        box.set(endpoints)
        return BitbucketEmulator(
            endpoints: endpoints, routes: routes, repositoriesDirectory: dir, state: state, service: service,
            runner: runner, ownsDirectory: ownsDirectory)
    }

    /// The route table an emulator with the given Cloud API prefix serves (no server needed).
    public static func routeTable(cloudAPIPrefix: String = "/2.0") -> [EmulatorRoute] {
        RouteTable.build(cloudPrefix: cloudAPIPrefix)
    }

    /// Stops the server (in-flight requests finish) and removes the repositories directory if the emulator
    /// created it. Safe to call more than once.
    public func stop() async throws {
        try await runner.stop()
        if ownsDirectory {
            try? FileManager.default.removeItem(at: repositoriesDirectory)
        }
    }
}

/// Written once, right after the port is known; read by handlers to build absolute links.
final class EndpointsBox: Sendable {
    private let storage = Mutex<EmulatorEndpoints?>(nil)
    func set(_ e: EmulatorEndpoints) { storage.withLock { $0 = e } }
    var value: EmulatorEndpoints {
        storage.withLock { $0 }!
    }
}

/// Owns the Hummingbird application task.
final class ServerRunner: Sendable {
    private struct Running: Sendable {
        let group: ServiceGroup
        let task: Task<Void, any Error>
    }

    private let running = Mutex<Running?>(nil)

    func start(host: String, port: Int, service: EmulatorService, logger: Logger) async throws -> Int {
        let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
        var appLogger = logger
        // Hummingbird's own per-request logging would duplicate ours.
        appLogger.logLevel = max(logger.logLevel, .warning)
        let app = Application(
            responder: EmulatorResponder(service: service),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                portContinuation.yield(channel.localAddress?.port ?? 0)
                portContinuation.finish()
            },
            logger: appLogger
        )
        let group = ServiceGroup(
            configuration: .init(services: [app], gracefulShutdownSignals: [], logger: appLogger))
        let task = Task {
            defer { portContinuation.finish() }
            try await group.run()
        }
        running.withLock { $0 = Running(group: group, task: task) }
        var iterator = portStream.makeAsyncIterator()
        guard let bound = await iterator.next(), bound != 0 else {
            task.cancel()
            _ = try? await task.value
            throw EmulatorControlError("start_failed", "the emulator could not bind \(host):\(port)")
        }
        return bound
    }

    func stop() async throws {
        guard let r = running.withLock({ current -> Running? in
            defer { current = nil }
            return current
        }) else { return }
        await r.group.triggerGracefulShutdown()
        try await r.task.value
    }
}

/// Request context that keeps the channel, so a fault can drop the connection.
struct EmulatorRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

struct EmulatorResponder: HTTPResponder {
    let service: EmulatorService

    func respond(to request: Request, context: EmulatorRequestContext) async throws -> Response {
        try await service.handle(request, context: context)
    }
}
