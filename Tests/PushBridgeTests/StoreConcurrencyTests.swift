import Foundation
import PushBridge
import Testing

@Suite struct StoreConcurrencyTests {
    /// Two store instances (two daemons) × three workers each drain 100 jobs concurrently:
    /// every job is claimed exactly once and ends succeeded.
    @Test(arguments: StoreBackend.allCases)
    func hundredJobsEachClaimedExactlyOnceAcrossInstances(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            _ = try await env.store.createConnection(makeConnection(), credentials: sampleCredentials)
            _ = try await env.store.createConnection(makeConnection("other"), credentials: sampleCredentials)
            var enqueued = Set<String>()
            for i in 0..<100 {
                let spec = makeSpec(connection: i.isMultiple(of: 2) ? "acme-cloud" : "other", branch: "b\(i % 40)")
                enqueued.insert(try await env.store.enqueue(spec).job.id)
            }
            let second = try await env.openAnother()
            let claims = Recorder<[String: [String]]>([:])
            let stores = [env.store, second]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<6 {
                    let store = stores[worker % 2]
                    let workerID = "worker-\(worker)"
                    group.addTask {
                        var idle = 0
                        // Bounded: a worker stops after the queue has looked empty a few times.
                        while idle < 5 {
                            guard let job = try await store.claimNext(
                                workerID: workerID, leaseDuration: .seconds(300), perConnectionLimit: 3)
                            else {
                                idle += 1
                                try await Task.sleep(for: .milliseconds(5))
                                continue
                            }
                            idle = 0
                            claims.mutate { $0[job.id, default: []].append(workerID) }
                            _ = try await store.complete(
                                jobID: job.id, workerID: workerID,
                                result: JobResult(repositoryUrl: "http://h/r", branch: job.spec.branch, commit: "c", changed: true))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let recorded = claims.snapshot
            #expect(recorded.count == 100)
            #expect(Set(recorded.keys) == enqueued)
            #expect(recorded.values.allSatisfy { $0.count == 1 }, "claimed more than once: \(recorded.filter { $0.value.count > 1 })")
            #expect(Set(recorded.values.map { $0[0] }).count > 1)  // the work really was shared
            let succeeded = try await env.store.listJobs(JobQuery(state: .succeeded, limit: 500))
            #expect(succeeded.jobs.count == 100)
            #expect(succeeded.jobs.allSatisfy { $0.attempts == 1 })
        }
    }

    /// Exclusivity and the per-connection limit hold under concurrent claims from two instances:
    /// no claim is ever handed out while a same-branch job is running, nor beyond the limit.
    @Test(arguments: StoreBackend.allCases)
    func concurrentClaimsRespectBranchExclusivityAndLimit(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            _ = try await env.store.createConnection(makeConnection(), credentials: sampleCredentials)
            for i in 0..<30 { _ = try await env.store.enqueue(makeSpec(branch: "b\(i % 3)")) }
            let second = try await env.openAnother()
            // Each worker claims once and holds its job; we then inspect what is running.
            let claimed = Recorder<[Job]>([])
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<8 {
                    let store = worker.isMultiple(of: 2) ? env.store : second
                    group.addTask {
                        if let job = try await store.claimNext(
                            workerID: "w\(worker)", leaseDuration: .seconds(300), perConnectionLimit: 2)
                        {
                            claimed.mutate { $0.append(job) }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let jobs = claimed.snapshot
            #expect(jobs.count == 2)  // limit 2 per connection
            #expect(Set(jobs.map(\.spec.branch)).count == jobs.count)  // never two on one branch
            let running = try await env.store.listJobs(JobQuery(state: .running, limit: 100)).jobs
            #expect(Set(running.map(\.id)) == Set(jobs.map(\.id)))
        }
    }

    /// Applying migrations concurrently from two instances is safe and idempotent.
    @Test(arguments: StoreBackend.allCases)
    func concurrentMigrationsAreIdempotent(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let a = try await env.openAnother(migrate: false)
            let b = try await env.openAnother(migrate: false)
            async let first: Void = a.migrate()
            async let second: Void = b.migrate()
            _ = try await (first, second)
            switch backend {
            case .sqlite:
                #expect(try await (a as! SQLiteStore).appliedMigrations() == ["v1-initial", "v2-oauth-states"])
            case .postgres:
                #expect(try await (a as! PostgresStore).appliedMigrations() == [1, 2])
            }
            try await a.ping()
        }
    }
}

@Suite struct StoreSQLiteTests {
    /// Everything written survives closing the database and opening it again (a daemon restart).
    @Test func reopenAfterCloseKeepsEverything() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pb-restart-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = "sqlite://" + dir.appendingPathComponent("state/pushbridge.sqlite").path
        let clock = ManualClock()

        let store = try await StoreFactory.open(databaseURL: url, vault: testVault, options: testStoreOptions(clock))
        #expect(store is SQLiteStore)
        _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
        let queued = try await store.enqueue(makeSpec(branch: "q"), idempotencyKey: "k").job
        let running = try await store.enqueue(makeSpec(branch: "r")).job
        _ = try await store.claimNext(workerID: "w", leaseDuration: .seconds(60), perConnectionLimit: 4)
        _ = try await store.claimNext(workerID: "w", leaseDuration: .seconds(60), perConnectionLimit: 4)
        try await store.saveCheckpoint(jobID: running.id, workerID: "w", JobCheckpoint(builtCommit: "abc"))
        try await store.release(jobID: queued.id, workerID: "w")
        let hook = try await store.enqueueWebhook(jobID: running.id, body: Data("{}".utf8))
        try await store.close()

        let reopened = try await StoreFactory.open(databaseURL: url, vault: testVault, options: testStoreOptions(clock))
        #expect(try await reopened.credentials(connectionID: "acme-cloud") == sampleCredentials)
        #expect(try await reopened.job(id: running.id)?.checkpoint.builtCommit == "abc")
        #expect(try await reopened.job(id: running.id)?.lease?.owner == "w")
        #expect(try await reopened.job(id: queued.id)?.state == .queued)
        #expect(try await reopened.enqueue(makeSpec(branch: "q"), idempotencyKey: "k").created == false)
        #expect(try await reopened.dueWebhooks(limit: 5).map(\.id) == [hook.id])
        #expect(try await (reopened as! SQLiteStore).appliedMigrations() == ["v1-initial", "v2-oauth-states"])
        try await reopened.close()
    }

    @Test func databaseURLsAreValidatedWithoutEchoingSecrets() async throws {
        await expectCode("invalid_database_url") {
            _ = try await StoreFactory.open(databaseURL: "sqlite://relative.db", vault: testVault)
        }
        let error = await expectCode("invalid_database_url") {
            _ = try await StoreFactory.open(databaseURL: "mysql://root:hunter2@db/x", vault: testVault)
        }
        #expect(error.map { "\($0)".contains("hunter2") } == false)
        let pgError = await expectCode("invalid_database_url") {
            _ = try PostgresStore.configuration(from: "postgres://u:hunter2@db/x?sslmode=bogus")
        }
        #expect(pgError.map { "\($0)".contains("hunter2") } == false)
        let configuration = try PostgresStore.configuration(from: "postgresql://us%40er:p%2Fw@db.example:6543/pb?sslmode=disable")
        #expect(configuration.host == "db.example")
        #expect(configuration.port == 6543)
        #expect(configuration.username == "us@er")
        #expect(configuration.password == "p/w")
        #expect(configuration.database == "pb")
    }
}
