import BitbucketEmulator
import BitbucketKit
import Foundation
import Logging
@testable import PushBridge
import ServiceLifecycle
import Synchronization
import Testing
import TestSupport

extension PipelineEnvironment {
    func worker(
        _ id: String, store: (any Store)? = nil, slots: Int = 4, perConnectionLimit: Int = 4, tokens: TokenManager? = nil,
        dataDirectory: String = "data", observer: PushPipeline.StepObserver? = nil
    ) -> Worker {
        Worker(
            store: store ?? self.store, pipeline: pipeline(tokens: tokens, dataDirectory: dataDirectory),
            configuration: WorkerConfiguration(
                workerID: id, slots: slots, leaseDuration: .seconds(60), heartbeatInterval: .milliseconds(200),
                perConnectionLimit: perConnectionLimit, pollInterval: .milliseconds(50), shutdownGrace: .seconds(5),
                retryBackoff: { _ in .milliseconds(100) }),
            logger: logs.logger("pushbridge.worker"), stepObserver: observer)
    }

    /// Runs `workers` until every job in `ids` is final (or 120 s pass), then shuts them down gracefully.
    func drive(_ workers: [Worker], until ids: [String], store: (any Store)? = nil) async throws -> [Job] {
        let store = store ?? self.store
        let tasks = workers.map { worker in Task { try await worker.run() } }
        let deadline = ContinuousClock.now + .seconds(120)
        var jobs: [Job] = []
        while ContinuousClock.now < deadline {
            jobs = try await ids.asyncMap { try #require(try await store.job(id: $0)) }
            if jobs.allSatisfy({ $0.state.isFinal }) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        for worker in workers { worker.beginShutdown() }
        for task in tasks { try await task.value }
        return jobs
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}

@Suite("Worker", .serialized)
struct WorkerTests {
    @Test("worker runs jobs for all three providers, records results and enqueues webhooks")
    func allProviders() async throws {
        try await PipelineEnvironment.with { env in
            var ids: [String] = []
            for provider in PipelineTests.providers {
                try await env.addConnection(provider.rawValue, provider)
                ids.append(try await env.store.enqueue(try env.spec(provider.rawValue, slug: "w-\(provider.rawValue)", files: ["f.txt": "1\n"])).job.id)
            }
            let jobs = try await env.drive([env.worker("w1")], until: ids)
            for job in jobs {
                #expect(job.state == .succeeded, "\(job.spec.connection): \(String(describing: job.error))")
                #expect(job.result?.changed == true)
                #expect(job.result?.pullRequest?.created == true)
            }
            let hooks = try await env.store.dueWebhooks(limit: 10)
            #expect(Set(hooks.map(\.jobID)) == Set(ids))
            for hook in hooks {
                let text = String(decoding: hook.body, as: UTF8.self)
                #expect(text.contains("\"state\":\"succeeded\""))
            }
            env.expectNoSecretsLogged()
        }
    }

    @Test("20 concurrent jobs on a connection with an expired token cause exactly one refresh grant")
    func singleRefresh() async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("cloud", .bitbucketCloud, expired: true)
            var ids: [String] = []
            for i in 0..<20 {
                ids.append(try await env.store.enqueue(try env.spec("cloud", slug: "conc-\(i)", files: ["n.txt": "\(i)\n"])).job.id)
            }
            let before = await env.emulator.counters().refreshGrants[PipelineEnvironment.cloudClient] ?? 0
            let tokens = env.tokenManager()
            let jobs = try await env.drive(
                [env.worker("w1", slots: 20, perConnectionLimit: 20, tokens: tokens)], until: ids)
            let grants = (await env.emulator.counters().refreshGrants[PipelineEnvironment.cloudClient] ?? 0) - before
            let succeeded = jobs.filter { $0.state == .succeeded }.count
            print("[worker concurrency] 20 jobs, 20 slots, expired token: succeeded=\(succeeded) refreshGrants=\(grants)")
            #expect(succeeded == 20)
            #expect(grants == 1)
            env.expectNoSecretsLogged()
        }
    }

    @Test("invalid_grant fails the job reauthorization_required; other connections still succeed")
    func invalidGrant() async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("broken", .bitbucketCloud, expired: true)
            try await env.addConnection("fine", .bitbucketDataCenter)
            guard case .oauth2(let creds) = try await env.store.credentials(connectionID: "broken") else {
                Issue.record("no oauth2 credentials"); return
            }
            #expect(await env.emulator.revokeRefreshToken(creds.refreshToken ?? ""))
            let bad = try await env.store.enqueue(try env.spec("broken", slug: "bad", files: ["a": "1"])).job.id
            let good = try await env.store.enqueue(try env.spec("fine", slug: "good", files: ["a": "1"])).job.id
            let jobs = try await env.drive([env.worker("w1")], until: [bad, good])
            #expect(jobs[0].state == .failed)
            #expect(jobs[0].error?.code == "reauthorization_required")
            #expect(jobs[0].attempts == 1, "terminal errors are not retried")
            #expect(jobs[1].state == .succeeded)
            #expect(try await env.store.connection(id: "broken")?.state == .reauthorizationRequired)
        }
    }

    @Test("two workers on two PostgreSQL store instances never run one job twice")
    func twoWorkersPostgres() async throws {
        if let reason = PostgresFixture.unavailableReason { try Test.cancel("PostgreSQL unavailable: \(reason)") }
        let database = try await PostgresFixture.shared.makeDatabase()
        defer { Task { await database.drop() } }
        let quiet = StoreOptions(logger: Logger(label: "store") { _ in SwiftLogNoOpLogHandler() })
        try await PipelineEnvironment.with(store: { _ in try PostgresStore(url: database.url, vault: testVault, options: quiet) }) { env in
            let second = try PostgresStore(url: database.url, vault: testVault, options: quiet)
            try await env.addConnection("cloud", .bitbucketCloud)
            try await env.addConnection("dc", .bitbucketDataCenter)
            var ids: [String] = []
            for i in 0..<12 {
                let connection = i % 2 == 0 ? "cloud" : "dc"
                ids.append(try await env.store.enqueue(try env.spec(connection, slug: "two-\(i)", files: ["a": "\(i)"])).job.id)
            }
            let jobs = try await env.drive(
                [env.worker("wa", dataDirectory: "data-a"), env.worker("wb", store: second, dataDirectory: "data-b")],
                until: ids)
            try await second.close()
            var pushes = 0
            for (i, job) in jobs.enumerated() {
                #expect(job.state == .succeeded)
                #expect(job.attempts == 1)
                let ref = env.ref(i % 2 == 0 ? .bitbucketCloud : .bitbucketDataCenter, "two-\(i)")
                pushes += await env.pushes(ref)
                #expect(await env.pushes(ref) == 2)
                #expect(await env.emulator.pullRequests(in: ref).count == 1)
            }
            print("[worker two-daemons postgres] jobs=\(jobs.count) attempts=\(jobs.map(\.attempts).reduce(0, +)) pushes=\(pushes) (2 per new repo)")
        }
    }

    @Test("an attempt that crashes after the commit checkpoint is resumed by the retry: one commit, one push, one PR")
    func crashThroughWorker() async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", .bitbucketCloud)
            let id = try await env.store.enqueue(try env.spec("c", slug: "wcrash", files: ["a": "1"]), idempotencyKey: nil, maxAttempts: 5).job.id
            let crashed = Mutex(false)
            // First attempt dies right after the commit is checkpointed (before pushing); the failure is a
            // retryable internal error, so the job is re-queued and the next attempt resumes from the checkpoint.
            let worker = env.worker("w1") { step, _ in
                if step == .commit, crashed.withLock({ done in defer { done = true }; return !done }) { throw SimulatedCrash() }
            }
            let jobs = try await env.drive([worker], until: [id])
            #expect(jobs[0].attempts == 2)
            let ref = env.ref(.bitbucketCloud, "wcrash")
            #expect(jobs[0].state == .succeeded)
            #expect(try await env.commitCount(ref, "pushbridge/wcrash") == 2)
            #expect(await env.pushes(ref) == 2)
            #expect(await env.emulator.pullRequests(in: ref).count == 1)
        }
    }
}
