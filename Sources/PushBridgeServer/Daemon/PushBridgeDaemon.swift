import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import PushBridge
import ServiceLifecycle

/// `pushbridge serve`: the API, the job worker and housekeeping under swift-service-lifecycle.
///
/// SIGTERM/SIGINT start a graceful shutdown: the API stops first (no new jobs), then the worker
/// gets up to `PUSHBRIDGE_SHUTDOWN_GRACE` to finish running jobs and release leases; systemd
/// hears `STOPPING=1` at once and keeps receiving `WATCHDOG=1` until the very end.
public struct PushBridgeDaemon: Sendable {
    /// Builds the job worker services (the push pipeline lives in the domain module; the webhook
    /// sender rides along). They shut down after the API, so running jobs can finish.
    public typealias WorkerFactory = @Sendable (DaemonContext) async throws -> [any Service]
    /// Builds extra `/v1` routes (OAuth connect flows, pickers) once the store is open.
    public typealias RouteFactory = @Sendable (DaemonContext) throws -> [any APIRouteExtension]

    public let configuration: PushBridgeConfiguration
    public let registry: PrometheusCollectorRegistry
    public let logger: Logger
    let workerFactory: WorkerFactory?
    let notifier: SystemdNotifier?
    let routeFactory: RouteFactory
    let onListening: @Sendable (ListenAddress) async -> Void

    /// - Parameters:
    ///   - workerFactory: Creates the worker; `nil` runs the API alone (jobs stay queued).
    ///   - notifier: sd_notify client (`SystemdNotifier()` under systemd, `nil` elsewhere).
    ///   - routes: Extra `/v1` routes; production passes ``productionRoutes``.
    ///   - onListening: Called with the bound address once the API accepts connections.
    public init(
        configuration: PushBridgeConfiguration, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        logger: Logger, workerFactory: WorkerFactory? = PushBridgeDaemon.productionWorkers,
        notifier: SystemdNotifier? = SystemdNotifier(), routes: @escaping RouteFactory = PushBridgeDaemon.productionRoutes,
        onListening: @escaping @Sendable (ListenAddress) async -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.registry = registry
        self.logger = logger
        self.workerFactory = workerFactory
        self.notifier = notifier
        self.routeFactory = routes
        self.onListening = onListening
    }

    /// Routes swift-log to stderr at the configured level and swift-metrics to `registry`.
    /// Call once per process, before ``run()``.
    public static func bootstrapObservability(logLevel: Logger.Level, registry: PrometheusCollectorRegistry) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    /// Opens the store (migrating it), then runs until SIGTERM/SIGINT or a service fails.
    public func run() async throws {
        let store = try await StoreFactory.open(
            databaseURL: configuration.database.urlString, vault: try Self.vault(configuration))
        do {
            // Metrics go to this daemon's registry explicitly: the global MetricsSystem can be
            // bootstrapped once per process, which would tie every daemon in a test process to one registry.
            let bitbucket = try BitbucketServices(
                configuration: configuration, store: store, logger: logger,
                metricsFactory: PrometheusMetricsFactory(registry: registry))
            do {
                try await runServices(store: store, bitbucket: bitbucket)
            } catch {
                try? await bitbucket.shutdown()
                throw error
            }
            try await bitbucket.shutdown()
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    /// The vault for the configured master key (and previous keys, during rotation).
    public static func vault(_ configuration: PushBridgeConfiguration) throws -> Vault {
        Vault(
            current: try MasterKey(bytes: configuration.masterKey.value),
            previous: try configuration.previousMasterKeys.value.map { try MasterKey(bytes: $0) })
    }

    private func runServices(store: any Store, bitbucket: BitbucketServices) async throws {
        let archives = ArchiveStore(directory: configuration.archivesDirectory, limits: configuration.limits.archive)
        let context = DaemonContext(
            configuration: configuration, store: store, archives: archives, bitbucket: bitbucket, logger: logger)
        let api = PushBridgeAPI(
            configuration: configuration, store: store, archives: archives, registry: registry,
            extensions: try routeFactory(context))
        let notifier = self.notifier
        let logger = self.logger
        let onListening = self.onListening
        let configuredListen = configuration.listen
        let app = Application(
            router: api.buildRouter(),
            configuration: .init(
                address: .hostname(configuration.listen.host, port: configuration.listen.port),
                serverName: "pushbridge"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuredListen.port
                let bound = ListenAddress(host: configuredListen.host, port: port)
                logger.info("API listening", metadata: ["address": "\(bound)"])
                do {
                    try notifier?.notify([.ready, .status("listening on \(bound)")])
                } catch {
                    logger.warning("sd_notify READY failed", metadata: ["error": "\(error)"])
                }
                await onListening(bound)
            },
            logger: logger)

        var services: [any Service] = [SystemdWatchdogService(notifier: notifier, logger: logger)]
        if let workerFactory {
            services.append(contentsOf: try await workerFactory(context))
        } else {
            logger.warning("no worker configured: jobs are accepted but stay queued")
        }
        services.append(ArchiveCollectorService(archives: archives, store: store, ttl: configuration.archiveTTL, logger: logger))
        services.append(app)
        // Last, so it is the first to hear of the shutdown.
        services.append(StoppingNotifierService(notifier: notifier, logger: logger))

        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownGrace + .seconds(5)
        try await ServiceGroup(configuration: groupConfiguration).run()
    }
}

/// Sends `STOPPING=1` as soon as graceful shutdown begins.
struct StoppingNotifierService: Service {
    let notifier: SystemdNotifier?
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.info("shutting down")
        try? notifier?.notify([.stopping, .status("shutting down")])
    }
}

/// Deletes archives older than the TTL that no queued or running job uses, every TTL/4 (at most hourly).
struct ArchiveCollectorService: Service {
    let archives: ArchiveStore
    let store: any Store
    let ttl: Duration
    let logger: Logger

    func run() async throws {
        let interval = max(min(ttl / 4, .seconds(3600)), .seconds(1))
        await runPeriodically(every: interval) {
            do {
                try await collect()
            } catch {
                logger.warning("archive garbage collection failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// One collection pass; returns the removed ids.
    @discardableResult
    func collect(now: Date = Date()) async throws -> [String] {
        let keep = try await ArchiveReferences.live(in: store)
        let removed = try archives.collectGarbage(ttl: ttl, keep: keep, now: now)
        if !removed.isEmpty { logger.info("archives removed", metadata: ["count": "\(removed.count)"]) }
        return removed
    }
}

/// Archive ids used by jobs that may still read them.
enum ArchiveReferences {
    static func live(in store: any Store) async throws -> Set<String> {
        var ids: Set<String> = []
        for state in [JobState.queued, .running] {
            var cursor: String?
            repeat {
                let page = try await store.listJobs(JobQuery(state: state, cursor: cursor, limit: 500))
                for job in page.jobs {
                    if case .archive(let id) = job.spec.source { ids.insert(id) }
                }
                cursor = page.nextCursor
            } while cursor != nil
        }
        return ids
    }
}

extension DatabaseLocation {
    /// The URL form `StoreFactory.open` takes.
    public var urlString: String {
        switch self {
        case .sqlite(let path): "sqlite://\(path)"
        case .postgres(let url): url
        }
    }
}
