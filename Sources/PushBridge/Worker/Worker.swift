import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Settings of a ``Worker``.
public struct WorkerConfiguration: Sendable {
    /// Unique per process (leases name it).
    public var workerID: String
    /// Jobs run concurrently (`PUSHBRIDGE_WORKERS`).
    public var slots: Int
    /// Lease taken per claim and renewed by every heartbeat.
    public var leaseDuration: Duration
    /// Heartbeat period; well below `leaseDuration`.
    public var heartbeatInterval: Duration
    /// Running jobs per connection across all daemons.
    public var perConnectionLimit: Int
    /// Pause of an idle slot before it polls the queue again.
    public var pollInterval: Duration
    /// On graceful shutdown, how long running jobs may still finish before their leases are released.
    public var shutdownGrace: Duration
    /// Delay before attempt `n + 1` after a retryable failure of attempt `n`.
    public var retryBackoff: @Sendable (Int) -> Duration
    /// Where the worker's metrics go; `nil` uses the process-wide `MetricsSystem.factory`. The
    /// daemon passes its Prometheus registry's factory so `/metrics` shows them without a global
    /// bootstrap (which a process can do only once, e.g. not per test daemon).
    public var metricsFactory: (any MetricsFactory)?

    public init(
        workerID: String = "worker-\(UUID().uuidString.lowercased())",
        slots: Int = 4,
        leaseDuration: Duration = .seconds(60),
        heartbeatInterval: Duration = .seconds(15),
        perConnectionLimit: Int = 4,
        pollInterval: Duration = .seconds(1),
        shutdownGrace: Duration = .seconds(30),
        retryBackoff: @escaping @Sendable (Int) -> Duration = StoreOptions.defaultBackoff,
        metricsFactory: (any MetricsFactory)? = nil
    ) {
        self.workerID = workerID
        self.slots = slots
        self.leaseDuration = leaseDuration
        self.heartbeatInterval = heartbeatInterval
        self.perConnectionLimit = perConnectionLimit
        self.pollInterval = pollInterval
        self.shutdownGrace = shutdownGrace
        self.retryBackoff = retryBackoff
        self.metricsFactory = metricsFactory
    }
}

/// Runs queued jobs through the ``PushPipeline`` as a swift-service-lifecycle `Service`.
///
/// Each of ``WorkerConfiguration/slots`` loops: claim (lease + per-connection limit) → run the
/// pipeline while a heartbeat renews the lease and watches for cancel requests → record the
/// outcome: ``Store/complete(jobID:workerID:result:)``, or ``Store/fail(jobID:workerID:error:retryAt:)``
/// with exponential backoff for retryable errors (terminal otherwise: `reauthorization_required`,
/// validation, `not_found`, …). A job that reaches a final state gets a webhook delivery in the
/// outbox. A lost lease stops the job without recording anything (its new owner resumes it from
/// the checkpoint).
///
/// Graceful shutdown: slots stop claiming at once; running jobs get
/// ``WorkerConfiguration/shutdownGrace`` to finish, then they are cancelled and their leases
/// released (the job is queued again, attempt not counted).
///
/// Metrics (swift-metrics): `pushbridge_jobs_total{state,provider}`, `pushbridge_job_duration_seconds{provider}`,
/// `pushbridge_git_pushed_bytes_total`, `pushbridge_git_pushed_objects_total`, `pushbridge_lease_lost_total`,
/// `pushbridge_jobs_running` and `pushbridge_queue_depth` (gauges).
public final class Worker: Service, Sendable {
    private let store: any Store
    private let pipeline: PushPipeline
    private let configuration: WorkerConfiguration
    private let logger: Logger
    private let shutdown = Mutex(false)
    private let running = Mutex<[String: Task<JobResult, any Error>]>([:])
    private let shutdownCancelled = Mutex<Set<String>>([])
    /// Set when the shutdown grace has run out: a job registered after that is stopped at once.
    private let graceOver = Mutex(false)
    /// Test hook forwarded to every pipeline run.
    private let stepObserver: PushPipeline.StepObserver?

    private let metrics: any MetricsFactory
    private let pushedBytes: Counter
    private let pushedObjects: Counter
    private let leaseLost: Counter
    private let runningGauge: Gauge
    private let queueDepth: Gauge

    public init(
        store: any Store, pipeline: PushPipeline, configuration: WorkerConfiguration = .init(),
        logger: Logger = Logger(label: "pushbridge.worker"), stepObserver: PushPipeline.StepObserver? = nil
    ) {
        self.store = store
        self.pipeline = pipeline
        self.configuration = configuration
        self.logger = logger
        self.stepObserver = stepObserver
        let metrics = configuration.metricsFactory ?? MetricsSystem.factory
        self.metrics = metrics
        self.pushedBytes = Counter(label: "pushbridge_git_pushed_bytes_total", factory: metrics)
        self.pushedObjects = Counter(label: "pushbridge_git_pushed_objects_total", factory: metrics)
        self.leaseLost = Counter(label: "pushbridge_lease_lost_total", factory: metrics)
        self.runningGauge = Gauge(label: "pushbridge_jobs_running", factory: metrics)
        self.queueDepth = Gauge(label: "pushbridge_queue_depth", factory: metrics)
    }

    /// Runs the slots until graceful shutdown (or task cancellation).
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for slot in 0..<max(1, configuration.slots) {
                    group.addTask { await self.slotLoop(slot) }
                }
                try await group.waitForAll()
            }
        } onGracefulShutdown: {
            self.beginShutdown()
        }
    }

    /// Stops claiming; after the grace period cancels what still runs (its lease is then released).
    public func beginShutdown() {
        let first = shutdown.withLock { flag in
            defer { flag = true }
            return !flag
        }
        guard first else { return }
        logger.info("worker shutting down: no new claims")
        let grace = configuration.shutdownGrace
        Task {
            try? await Task.sleep(for: grace)
            // Set before reading `running`; `process` registers before reading the flag: a job
            // registering concurrently is seen by at least one of the two.
            self.graceOver.withLock { $0 = true }
            let tasks = self.running.withLock { $0 }
            self.shutdownCancelled.withLock { $0.formUnion(tasks.keys) }
            for task in tasks.values { task.cancel() }
        }
    }

    private var isShuttingDown: Bool { shutdown.withLock { $0 } }

    private func slotLoop(_ slot: Int) async {
        while !isShuttingDown && !Task.isCancelled {
            do {
                guard
                    let job = try await store.claimNext(
                        workerID: configuration.workerID, leaseDuration: configuration.leaseDuration,
                        perConnectionLimit: configuration.perConnectionLimit)
                else {
                    await updateQueueDepth()
                    try? await Task.sleep(for: configuration.pollInterval)
                    continue
                }
                if isShuttingDown {
                    // Claimed while shutdown began: give it back untouched instead of starting work
                    // the grace period may not cover.
                    do {
                        try await store.release(jobID: job.id, workerID: configuration.workerID)
                    } catch {
                        logger.warning("releasing a job claimed during shutdown failed", metadata: ["error": "\(PipelineError.classify(error).code)"])
                    }
                    return
                }
                await process(job)
            } catch {
                logger.warning("claiming failed", metadata: ["error": "\(PipelineError.classify(error).code)"])
                try? await Task.sleep(for: configuration.pollInterval)
            }
        }
    }

    private func updateQueueDepth() async {
        if let page = try? await store.listJobs(JobQuery(state: .queued, limit: 500)) {
            queueDepth.record(page.jobs.count)
        }
    }

    private func process(_ job: Job) async {
        var log = logger
        log[metadataKey: "job"] = "\(job.id)"
        log[metadataKey: "connection"] = "\(job.spec.connection)"
        log[metadataKey: "attempt"] = "\(job.attempts)"
        let provider = (try? await store.connection(id: job.spec.connection))?.provider.rawValue ?? "unknown"
        let started = ContinuousClock.now
        let store = self.store
        let workerID = configuration.workerID
        let jobID = job.id
        let pipeline = self.pipeline
        let observer = stepObserver
        log.info("job started")

        let task = Task<JobResult, any Error> {
            try await pipeline.run(
                jobID: jobID, spec: job.spec, checkpoint: job.checkpoint,
                save: { try await store.saveCheckpoint(jobID: jobID, workerID: workerID, $0) }, stepObserver: observer)
        }
        running.withLock { $0[jobID] = task }
        runningGauge.record(running.withLock { $0.count })
        if graceOver.withLock({ $0 }) {
            shutdownCancelled.withLock { _ = $0.insert(jobID) }
            task.cancel()
        }
        let lost = Mutex(false)
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: configuration.heartbeatInterval)
                if Task.isCancelled { return }
                do {
                    let current = try await store.heartbeat(
                        jobID: jobID, workerID: workerID, leaseDuration: configuration.leaseDuration)
                    if current.cancelRequested {
                        log.info("cancel requested; stopping the job")
                        task.cancel()
                    }
                } catch let error as StoreError where error.kind == .leaseLost {
                    lost.withLock { $0 = true }
                    task.cancel()
                    return
                } catch {
                    log.warning("heartbeat failed", metadata: ["error": "\(PipelineError.classify(error).code)"])
                }
            }
        }
        let outcome = await task.result
        heartbeat.cancel()
        running.withLock { $0[jobID] = nil }
        runningGauge.record(running.withLock { $0.count })
        let stoppedForShutdown = shutdownCancelled.withLock { $0.remove(jobID) != nil }

        do {
            switch outcome {
            case .success(var result):
                let elapsed = (ContinuousClock.now - started).components
                result.stats.durationMs = Int(elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000)
                let done = try await store.complete(jobID: jobID, workerID: workerID, result: result)
                pushedBytes.increment(by: result.stats.bytesSent)
                pushedObjects.increment(by: result.stats.objectsSent)
                log.info("job succeeded", metadata: ["changed": "\(result.changed)", "commit": "\(result.commit)"])
                await finished(done, provider: provider, started: started, log: log)
            case .failure(let error):
                if lost.withLock({ $0 }) || (error as? StoreError)?.kind == .leaseLost {
                    leaseLost.increment()
                    log.warning("lease lost; another worker owns the job now")
                    return
                }
                if stoppedForShutdown {
                    try await store.release(jobID: jobID, workerID: workerID)
                    log.info("job released at shutdown")
                    return
                }
                var jobError = PipelineError.classify(error)
                let retryAt: Date? =
                    jobError.retryable
                    ? Date().addingTimeInterval(Self.seconds(configuration.retryBackoff(job.attempts))) : nil
                // A cancel request stops libgit2/HTTP mid-way; whatever error that surfaces as, the
                // store ends the job as cancelled because `cancelRequested` is set.
                if error is CancellationError || jobError.code == "cancelled" {
                    jobError = JobError(code: "cancelled", message: "the job was cancelled", retryable: false)
                }
                let after = try await store.fail(jobID: jobID, workerID: workerID, error: jobError, retryAt: retryAt)
                log.info(
                    "job attempt failed",
                    metadata: ["code": "\(jobError.code)", "retryable": "\(jobError.retryable)", "state": "\(after.state.rawValue)"])
                if after.state.isFinal {
                    await finished(after, provider: provider, started: started, log: log)
                }
            }
        } catch {
            if (error as? StoreError)?.kind == .leaseLost { leaseLost.increment() }
            log.warning("recording the job outcome failed", metadata: ["error": "\(PipelineError.classify(error).code)"])
        }
    }

    private func finished(_ job: Job, provider: String, started: ContinuousClock.Instant, log: Logger) async {
        Counter(
            label: "pushbridge_jobs_total", dimensions: [("state", job.state.rawValue), ("provider", provider)],
            factory: metrics
        ).increment()
        Timer(label: "pushbridge_job_duration_seconds", dimensions: [("provider", provider)], factory: metrics)
            .recordNanoseconds(Self.nanoseconds(ContinuousClock.now - started))
        do {
            _ = try await store.enqueueWebhook(jobID: job.id, body: try Self.webhookBody(job))
        } catch {
            log.warning("could not enqueue the webhook", metadata: ["error": "\(PipelineError.classify(error).code)"])
        }
    }

    /// The job JSON POSTed to the webhook (no lease, no checkpoint internals).
    static func webhookBody(_ job: Job) throws -> Data {
        struct Body: Encodable {
            let id: String
            let state: String
            let connection: String
            let attempts: Int
            let result: JobResult?
            let error: JobError?
            let finishedAt: Date?
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(Body(
            id: job.id, state: job.state.rawValue, connection: job.spec.connection, attempts: job.attempts,
            result: job.result, error: job.error, finishedAt: job.finishedAt))
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }

    static func seconds(_ d: Duration) -> TimeInterval {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
