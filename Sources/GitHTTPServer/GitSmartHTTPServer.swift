import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A standalone git smart-HTTP server on loopback, for tests and benchmarks.
///
/// Serves every bare repository under ``root`` at `http://127.0.0.1:<port>/<relative path>`
/// through `git http-backend`, enforcing an ``GitHTTPAuthPolicy`` on every request
/// (a missing or wrong credential gets `401` with `WWW-Authenticate: Basic`, so
/// git clients retry with credentials). Several servers can run in one process.
///
/// ```swift
/// let server = GitSmartHTTPServer(root: dir, auth: .basic(username: "u", password: "p"))
/// let base = try await server.start()            // http://127.0.0.1:54321/
/// let repo = try await server.createBareRepository("ws/app.git")
/// // git clone \(base)ws/app.git …
/// print(server.statistics.requestBodyBytes(.receivePack))
/// await server.stop()
/// ```
public actor GitSmartHTTPServer {
    /// Tunables of a server.
    public struct Configuration: Sendable {
        /// Interface to bind. Default `127.0.0.1`.
        public var host: String
        /// Port to bind; `0` picks a free ephemeral port.
        public var port: Int
        /// Realm sent in `WWW-Authenticate`.
        public var realm: String
        /// Settings of the underlying ``GitHTTPBackend``.
        public var backend: GitHTTPBackend.Configuration
        /// URL path segments in front of the repository path, e.g. `scm` to serve
        /// `root/PROJ/repo.git` at `/scm/PROJ/repo.git` like Bitbucket Data Center.
        /// Empty (the default) serves it at `/PROJ/repo.git`.
        public var pathPrefix: String
        /// How long ``GitSmartHTTPServer/stop()`` lets in-flight requests finish before
        /// cancelling them (which also kills their `git http-backend`). `nil` waits forever.
        public var shutdownGracePeriod: Duration?

        /// Creates a configuration.
        public init(
            host: String = "127.0.0.1",
            port: Int = 0,
            realm: String = "pushbridge-git",
            backend: GitHTTPBackend.Configuration = .init(),
            pathPrefix: String = "",
            shutdownGracePeriod: Duration? = .seconds(10)
        ) {
            self.host = host
            self.port = port
            self.realm = realm
            self.backend = backend
            self.pathPrefix = pathPrefix.split(separator: "/").joined(separator: "/")
            self.shutdownGracePeriod = shutdownGracePeriod
        }
    }

    private enum State {
        case idle
        case starting
        case running(group: ServiceGroup, task: Task<Void, Never>, baseURL: URL)
        case stopping(task: Task<Void, Never>)
    }

    /// Directory whose bare repositories are served.
    public nonisolated let root: URL
    /// Request counters, updated for every answered request (including `401`s).
    public nonisolated let statistics: GitHTTPStatistics
    /// The backend that runs `git http-backend`.
    public nonisolated let backend: GitHTTPBackend

    private nonisolated let configuration: Configuration
    private nonisolated let authPolicy: PolicyBox
    private nonisolated let logger: Logger
    private var state: State = .idle

    /// Creates a stopped server.
    ///
    /// - Parameters:
    ///   - root: Directory of bare repositories (created on ``start()`` if missing).
    ///   - auth: Which credentials are accepted; changeable later with ``setAuthPolicy(_:)``.
    ///   - configuration: Bind address, realm and backend settings.
    ///   - logger: Server and CGI logging (CGI stderr at `debug`).
    public init(
        root: URL,
        auth: GitHTTPAuthPolicy = .none,
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "GitSmartHTTPServer")
    ) {
        self.root = root.standardizedFileURL
        self.configuration = configuration
        self.logger = logger
        self.authPolicy = PolicyBox(auth)
        let statistics = GitHTTPStatistics()
        self.statistics = statistics
        self.backend = GitHTTPBackend(
            projectRoot: root,
            configuration: configuration.backend,
            statistics: statistics,
            logger: logger
        )
    }

    deinit {
        // Safety net for a server that was never stopped: cancelling the service
        // group closes the listener instead of leaking it for the process lifetime.
        switch state {
        case .running(_, let task, _), .stopping(let task): task.cancel()
        case .idle, .starting: break
        }
    }

    /// Binds and starts serving.
    ///
    /// - Returns: The base URL, e.g. `http://127.0.0.1:54321/`; a repository at
    ///   `root/ws/app.git` is served at `<base>ws/app.git`.
    /// - Throws: ``GitHTTPServerError/alreadyStarted``, ``GitHTTPServerError/gitNotFound(_:)``,
    ///   ``GitHTTPServerError/startFailed(_:)``.
    @discardableResult
    public func start() async throws -> URL {
        guard case .idle = state else { throw GitHTTPServerError.alreadyStarted }
        state = .starting
        do {
            // Fail before binding if git is missing, rather than on the first request.
            if configuration.backend.executables == nil { _ = try await GitExecutables.locate() }
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        } catch {
            state = .idle
            throw error
        }

        let bound = OneShot<Int>()
        let requestedPort = configuration.port
        let router = Router(context: GitServerRequestContext.self)
        GitServerResponder(
            backend: backend,
            policy: authPolicy,
            realm: configuration.realm,
            statistics: statistics
        ).addRoutes(to: router, prefix: configuration.pathPrefix)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port)),
            onServerRunning: { channel in
                bound.resolve(.success(channel.localAddress?.port ?? requestedPort))
            },
            logger: logger
        )
        var groupConfiguration = ServiceGroupConfiguration(services: [app], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownGracePeriod
        let group = ServiceGroup(configuration: groupConfiguration)
        let task = Task.detached {
            do {
                try await group.run()
                bound.resolve(.failure(GitHTTPServerError.startFailed("server stopped before it was listening")))
            } catch {
                bound.resolve(.failure(GitHTTPServerError.startFailed("\(error)")))
            }
        }
        let port: Int
        do {
            port = try await bound.value
        } catch {
            await task.value
            state = .idle
            throw error
        }
        let baseURL = URL(string: "http://\(configuration.host):\(port)/")!
        state = .running(group: group, task: task, baseURL: baseURL)
        return baseURL
    }

    /// Stops accepting connections, lets in-flight requests finish, and returns
    /// when the listener and its tasks are gone. Calling it again is harmless.
    public func stop() async {
        switch state {
        case .idle, .starting:
            return
        case .stopping(let task):
            await task.value
        case .running(let group, let task, _):
            state = .stopping(task: task)
            await group.triggerGracefulShutdown()
            await task.value
            state = .idle
        }
    }

    /// Same as ``stop()``.
    public func shutdown() async {
        await stop()
    }

    /// The base URL while running, e.g. `http://127.0.0.1:54321/`.
    public var baseURL: URL? {
        if case .running(_, _, let url) = state { return url }
        return nil
    }

    /// The clone URL of the repository at `relativePath` under ``root`` (includes
    /// ``Configuration/pathPrefix``).
    ///
    /// - Throws: ``GitHTTPServerError/notRunning``, ``GitHTTPServerError/invalidRepositoryPath(_:)``.
    public func repositoryURL(_ relativePath: String) throws -> URL {
        guard let baseURL else { throw GitHTTPServerError.notRunning }
        try Self.validate(relativePath)
        let prefix = configuration.pathPrefix
        return baseURL.appendingPathComponent(prefix.isEmpty ? relativePath : "\(prefix)/\(relativePath)")
    }

    /// Replaces the accepted credentials; applies to the next request.
    public nonisolated func setAuthPolicy(_ policy: GitHTTPAuthPolicy) {
        authPolicy.set(policy)
    }

    /// Creates an empty bare repository at `root/relativePath`, configured like a
    /// real host (`receive.denyNonFastForwards=true`).
    ///
    /// - Parameters:
    ///   - relativePath: e.g. `ws/app.git`; no `..`, not absolute.
    ///   - defaultBranch: The branch `HEAD` points at.
    /// - Returns: The repository directory.
    /// - Throws: ``GitHTTPServerError/invalidRepositoryPath(_:)``, ``GitHTTPServerError/commandFailed(command:exitCode:standardError:)``.
    @discardableResult
    public nonisolated func createBareRepository(_ relativePath: String, defaultBranch: String = "main") async throws -> URL {
        try Self.validate(relativePath)
        let directory = root.appendingPathComponent(relativePath)
        try await Self.git(["init", "--quiet", "--bare", "--initial-branch=\(defaultBranch)", directory.path], configuration.backend)
        try await Self.git(["--git-dir=\(directory.path)", "config", "receive.denyNonFastForwards", "true"], configuration.backend)
        return directory
    }

    static func validate(_ relativePath: String) throws {
        guard !relativePath.isEmpty, !relativePath.hasPrefix("/"),
            GitHTTPBackend.isSafe(pathInfo: "/" + relativePath)
        else { throw GitHTTPServerError.invalidRepositoryPath(relativePath) }
    }

    private static func git(_ arguments: [String], _ backend: GitHTTPBackend.Configuration) async throws {
        let executables: GitExecutables
        if let configured = backend.executables {
            executables = configured
        } else {
            executables = try await GitExecutables.locate()
        }
        let result = try await ChildProcess.run(
            executable: executables.git,
            arguments: arguments,
            environment: [
                "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": "/dev/null",
                "LC_ALL": "C",
            ]
        )
        guard result.succeeded else {
            throw GitHTTPServerError.commandFailed(
                command: "git " + arguments.joined(separator: " "),
                exitCode: result.exitCode,
                standardError: result.standardErrorString
            )
        }
    }
}

/// Request context of the standalone server: exposes the peer address so
/// `REMOTE_ADDR` is real.
struct GitServerRequestContext: RequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}

/// Authenticates, then hands the whole path to the backend.
///
/// Mounted on a Hummingbird `Router` with a catch-all route, exactly as an
/// embedding application (the Bitbucket emulator) mounts ``GitHTTPBackend``.
struct GitServerResponder: Sendable {
    let backend: GitHTTPBackend
    let policy: PolicyBox
    let realm: String
    let statistics: GitHTTPStatistics

    func addRoutes(to router: Router<GitServerRequestContext>, prefix: String) {
        let route = RouterPath(prefix.isEmpty ? "**" : "/\(prefix)/**")
        for method in [HTTPRequest.Method.get, .head, .post] {
            router.on(route, method: method) { request, context in
                await respond(to: request, context: context)
            }
        }
    }

    func respond(to request: Request, context: GitServerRequestContext) async -> Response {
        let path = "/" + context.parameters.getCatchAll().joined(separator: "/")
        let pathInfo = path.removingPercentEncoding ?? path
        switch policy.get().authorize(request.headers[.authorization]) {
        case .denied:
            statistics.record(GitRequestKind(pathInfo: pathInfo), status: 401)
            return GitHTTPBackend.unauthorized(realm: realm)
        case .allowed(let user):
            return await backend.respond(to: request, pathInfo: pathInfo, remoteUser: user, context: context)
        }
    }
}

final class PolicyBox: Sendable {
    private let policy: Mutex<GitHTTPAuthPolicy>
    init(_ policy: GitHTTPAuthPolicy) { self.policy = Mutex(policy) }
    func get() -> GitHTTPAuthPolicy { policy.withLock { $0 } }
    func set(_ newValue: GitHTTPAuthPolicy) { policy.withLock { $0 = newValue } }
}

/// A value delivered once from any thread to one async waiter; later deliveries are ignored.
final class OneShot<Value: Sendable>: Sendable {
    private enum State {
        case pending(CheckedContinuation<Value, any Error>?)
        case done(Result<Value, any Error>)
    }

    private let state = Mutex<State>(.pending(nil))

    func resolve(_ result: Result<Value, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            guard case .pending(let continuation) = state else { return nil }
            state = .done(result)
            return continuation
        }
        waiter?.resume(with: result)
    }

    var value: Value {
        get async throws {
            try await withCheckedThrowingContinuation { continuation in
                let ready = state.withLock { state -> Result<Value, any Error>? in
                    switch state {
                    case .pending:
                        state = .pending(continuation)
                        return nil
                    case .done(let result):
                        return result
                    }
                }
                if let ready { continuation.resume(with: ready) }
            }
        }
    }
}
