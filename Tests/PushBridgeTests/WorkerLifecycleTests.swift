import BitbucketEmulator
import Foundation
import Logging
@testable import PushBridge
import ServiceLifecycle
import Synchronization
import Testing
import TestSupport

/// Polls `condition` every 20 ms until it holds or `deadline` passes; returns whether it held.
/// A deadline, not a timing assertion: it only keeps a broken run from hanging the suite.
func eventually(
    within deadline: Duration = .seconds(60), _ condition: @Sendable () async throws -> Bool
) async rethrows -> Bool {
    let end = ContinuousClock.now + deadline
    while ContinuousClock.now < end {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// Step observer that holds the pipeline after `step` (once) until the pipeline's task is cancelled,
/// i.e. until the worker acted on a cancel request or on the end of the shutdown grace. The observer
/// returns normally: stopping is the pipeline's own job at its next cancellation point.
final class StepHold: Sendable {
    let step: PipelineStep
    /// Runs inside the held observer call, before waiting (e.g. request the cancel).
    let onHold: @Sendable () async throws -> Void
    private let state = Mutex<(held: Bool, released: Bool)>((false, false))

    init(at step: PipelineStep, onHold: @escaping @Sendable () async throws -> Void = {}) {
        self.step = step
        self.onHold = onHold
    }

    var held: Bool { state.withLock { $0.held } }
    /// The held pipeline saw its task cancelled (as opposed to the deadline passing).
    var sawCancellation: Bool { state.withLock { $0.released } }

    var observer: PushPipeline.StepObserver {
        { [self] step, _ in
            guard step == self.step, state.withLock({ s in defer { s.held = true }; return !s.held }) else { return }
            try await onHold()
            let cancelled = await eventually { Task.isCancelled }
            state.withLock { $0.released = cancelled }
        }
    }
}

@Suite("Worker lifecycle: cancel and graceful shutdown", .serialized)
struct WorkerLifecycleTests {
    /// Cancel requested while job 1 is held right after `hold` (before the push for `.commit`, after it
    /// for `.push`). Job 2 targets the same repository and branch and is queued behind it.
    @Test("cancelling a running job stops it at the next step boundary, ends it cancelled, and frees its branch",
          arguments: [PipelineStep.commit, .push])
    func cancelRunning(hold: PipelineStep) async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", .bitbucketCloud)
            let slug = "cancel-\(hold.rawValue)"
            let ref = env.ref(.bitbucketCloud, slug)
            let first = try await env.store.enqueue(try env.spec("c", slug: slug, files: ["gen/a.txt": "first\n"])).job.id
            let second = try await env.store.enqueue(try env.spec("c", slug: slug, files: ["gen/b.txt": "second\n"])).job.id
            let store = env.store
            let hold = StepHold(at: hold) { _ = try await store.cancel(jobID: first) }
            // What job 2's pipeline saw of job 1 at each of its steps, and the PRs created by then.
            let seenBySecond = Mutex<[(JobState, Int)]>([])
            let emulator = env.emulator
            let key = PipelineEnvironment.counterKey(ref)
            let holdObserver = hold.observer
            let worker = env.worker("w1", slots: 2) { step, checkpoint in
                if hold.held {
                    let state = try await store.job(id: first)?.state ?? .queued
                    let prs = await emulator.counters().pullRequestsCreated[key] ?? 0
                    seenBySecond.withLock { $0.append((state, prs)) }
                }
                try await holdObserver(step, checkpoint)
            }
            let jobs = try await env.drive([worker], until: [first, second])
            let cancelled = jobs[0]
            let next = jobs[1]
            let seen = seenBySecond.withLock { $0 }
            let pushes = await env.pushes(ref)
            let prs = await env.pullRequestsCreated(ref)
            print(
                "[cancel hold=\(hold.step.rawValue)] job1=\(cancelled.state.rawValue) error=\(cancelled.error?.code ?? "-") attempts=\(cancelled.attempts) "
                    + "prsWhenJob2Started=\(seen.first?.1 ?? -1) job2=\(next.state.rawValue) pushes=\(pushes) prsCreated=\(prs)")

            #expect(hold.sawCancellation, "the heartbeat never cancelled the held pipeline")
            #expect(cancelled.state == .cancelled)
            #expect(cancelled.error?.code == "cancelled")
            #expect(cancelled.error?.retryable == false)
            #expect(cancelled.attempts == 1, "a cancelled job is not retried")
            #expect(cancelled.lease == nil)
            #expect(cancelled.result == nil)
            // Job 2 only ran once job 1 had ended: the branch slot was held until then and freed after.
            #expect(!seen.isEmpty)
            #expect(seen.allSatisfy { $0.0 == .cancelled }, "\(seen.map(\.0))")
            // No pull request came from job 1: none existed when job 1 had ended; job 2 opened the only one.
            #expect(seen.first?.1 == 0)
            #expect(next.state == .succeeded, "\(String(describing: next.error))")
            #expect(next.attempts == 1)
            #expect(next.result?.pullRequest?.created == true)
            #expect(prs == 1)
            #expect(await env.emulator.pullRequests(in: ref).count == 1)
            let builtByFirst = try #require(cancelled.checkpoint.builtCommit)
            let history = try await env.git(ref, ["rev-list", "refs/heads/pushbridge/\(slug)"]).split(separator: "\n").map(String.init)
            switch hold.step {
            case .commit:
                // Cancelled before its push: job 1's commit never reached Bitbucket.
                #expect(!history.contains(builtByFirst))
                #expect(try await env.fileAt(ref, "pushbridge/\(slug)", "gen/a.txt") == nil)
                #expect(pushes == 2, "seed + job 2")
            default:
                // Cancelled after its push: the commit stays (pushes are never undone), job 2 stacks on it.
                #expect(history.contains(builtByFirst))
                #expect(try await env.git(ref, ["rev-parse", "\(try #require(next.result?.commit))^"]) == builtByFirst)
                #expect(pushes == 3, "seed + job 1 + job 2")
            }
            #expect(try await env.fileAt(ref, "pushbridge/\(slug)", "gen/b.txt") == "second\n")
            let hooks = try await env.store.dueWebhooks(limit: 10)
            #expect(hooks.contains { $0.jobID == first && String(decoding: $0.body, as: UTF8.self).contains("\"state\":\"cancelled\"") })
            env.expectNoSecretsLogged()
        }
    }

    @Test("graceful shutdown on SQLite releases the held job; a new worker finishes it with one commit, push and PR")
    func shutdownReleasesSQLite() async throws {
        try await PipelineEnvironment.with { env in
            try await Self.shutdownReleases(env, label: "sqlite", store: env.store)
        }
    }

    @Test("graceful shutdown on PostgreSQL releases the held job; a new worker on another store instance finishes it")
    func shutdownReleasesPostgres() async throws {
        if let reason = PostgresFixture.unavailableReason { try Test.cancel("PostgreSQL unavailable: \(reason)") }
        let database = try await PostgresFixture.shared.makeDatabase()
        let quiet = StoreOptions(logger: Logger(label: "store") { _ in SwiftLogNoOpLogHandler() })
        do {
            try await PipelineEnvironment.with(store: { _ in try PostgresStore(url: database.url, vault: testVault, options: quiet) }) { env in
                let second = try PostgresStore(url: database.url, vault: testVault, options: quiet)
                do {
                    try await Self.shutdownReleases(env, label: "postgres", store: second)
                } catch {
                    try? await second.close()
                    throw error
                }
                try await second.close()
            }
        } catch {
            await database.drop()
            throw error
        }
        await database.drop()
    }

    /// Worker A runs as a `Service` in a `ServiceGroup`; its job is held after the commit step (before
    /// the push) for longer than the shutdown grace; graceful shutdown must release it. Worker B, on
    /// `store` (another instance of the same database), then finishes it.
    static func shutdownReleases(_ env: PipelineEnvironment, label: String, store: any Store) async throws {
        try await env.addConnection("c", .bitbucketDataCenter)
        let slug = "shutdown-\(label)"
        let ref = env.ref(.bitbucketDataCenter, slug)
        let id = try await env.store.enqueue(try env.spec("c", slug: slug, files: ["gen/x.txt": "x\n"])).job.id
        let grace = Duration.milliseconds(300)
        let hold = StepHold(at: .commit)
        let workerA = Worker(
            store: env.store, pipeline: env.pipeline(dataDirectory: "data-a"),
            configuration: WorkerConfiguration(
                workerID: "wa", slots: 2, leaseDuration: .seconds(60), heartbeatInterval: .milliseconds(200),
                pollInterval: .milliseconds(50), shutdownGrace: grace, retryBackoff: { _ in .milliseconds(100) }),
            logger: env.logs.logger("pushbridge.worker"), stepObserver: hold.observer)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [workerA], logger: Logger(label: "group") { _ in SwiftLogNoOpLogHandler() }))
        let finished = Mutex(false)
        let running = Task {
            defer { finished.withLock { $0 = true } }
            try await group.run()
        }
        let wasHeld = await eventually { hold.held }
        #expect(wasHeld, "the job never reached the commit step")
        let held = try #require(try await env.store.job(id: id))
        #expect(held.state == .running && held.lease?.owner == "wa")

        let shutdownStarted = ContinuousClock.now
        await group.triggerGracefulShutdown()
        // Bound the wait so a worker that never returns fails the test instead of hanging it.
        let returned = await eventually(within: .seconds(60)) { finished.withLock { $0 } }
        let stopped = ContinuousClock.now - shutdownStarted
        #expect(returned, "the worker did not return after graceful shutdown")
        try await running.value

        let released = try #require(try await env.store.job(id: id))
        let pushesBefore = await env.pushes(ref)
        print(
            "[shutdown \(label)] released=\(released.state == .queued ? 1 : 0) state=\(released.state.rawValue) attempts=\(released.attempts) "
                + "lease=\(released.lease == nil ? "nil" : "set") checkpointCommit=\(released.checkpoint.builtCommit?.prefix(12) ?? "-") "
                + "workerReturnedAfter=\(stopped) grace=\(grace) pushesBeforeB=\(pushesBefore)")
        #expect(hold.sawCancellation, "the pipeline was not cancelled at the end of the grace")
        // Held past the grace: the job was stopped by the grace timer, not by finishing.
        #expect(stopped >= grace)
        #expect(released.state == .queued)
        #expect(released.lease == nil)
        #expect(released.attempts == 0, "a released attempt is not counted")
        #expect(released.error == nil)
        #expect(!released.cancelRequested)
        let builtByA = try #require(released.checkpoint.builtCommit, "the checkpoint was not kept")
        #expect(pushesBefore == 1, "only the seed of the empty repository; A never pushed the job's commit")

        let workerB = env.worker("wb", store: store, dataDirectory: "data-b")
        let jobs = try await env.drive([workerB], until: [id], store: store)
        let done = jobs[0]
        let commits = try await env.commitCount(ref, "pushbridge/\(slug)")
        let pushes = await env.pushes(ref)
        let prs = await env.emulator.pullRequests(in: ref).count
        print("[shutdown \(label)] finishedBy=wb state=\(done.state.rawValue) attempts=\(done.attempts) commits=\(commits) pushes=\(pushes) prs=\(prs) sameCommit=\(done.result?.commit == builtByA)")
        #expect(done.state == .succeeded, "\(String(describing: done.error))")
        #expect(done.attempts == 1)
        #expect(commits == 2, "initial commit + the job's one commit")
        #expect(pushes == 2, "seed + one push of the job's commit")
        #expect(prs == 1)
        // The commit time was checkpointed before the push, so B rebuilt A's very commit.
        #expect(done.result?.commit == builtByA)
        env.expectNoSecretsLogged()
    }
}
