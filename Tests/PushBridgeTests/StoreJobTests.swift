import Foundation
import PushBridge
import Testing

@Suite struct StoreJobTests {
    @Test(arguments: StoreBackend.allCases)
    func enqueueIsIdempotentPerKeyAndBody(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            let first = try await store.enqueue(makeSpec(), idempotencyKey: "key-1")
            #expect(first.created)
            #expect(first.job.state == .queued)
            #expect(first.job.attempts == 0)
            #expect(first.job.maxAttempts == 5)
            #expect(first.job.idempotencyKey == "key-1")
            #expect(first.job.bodyHash == (try makeSpec().canonicalHash()))
            #expect(first.job.spec == makeSpec())

            // Same body spelled differently (defaults written out) → same job.
            var json = try JSONSerialization.jsonObject(with: try makeSpec().canonicalJSON()) as! [String: Any]
            json["mode"] = "overlay"
            json["root"] = ""
            let respelled = try JSONDecoder().decode(JobSpec.self, from: JSONSerialization.data(withJSONObject: json))
            let again = try await store.enqueue(respelled, idempotencyKey: "key-1")
            #expect(!again.created)
            #expect(again.job.id == first.job.id)

            await expectCode("idempotency_conflict") {
                _ = try await store.enqueue(makeSpec(message: "other"), idempotencyKey: "key-1")
            }
            let unkeyed1 = try await store.enqueue(makeSpec())
            let unkeyed2 = try await store.enqueue(makeSpec())
            #expect(unkeyed1.job.id != unkeyed2.job.id)
            await expectCode("connection_not_found") { _ = try await store.enqueue(makeSpec(connection: "ghost")) }
            #expect(try await store.job(id: first.job.id) == first.job)
            #expect(try await store.job(id: "missing") == nil)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func claimsOldestDueJobFirstAndHonoursNotBefore(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            var ids: [String] = []
            for branch in ["a", "b", "c"] {
                env.clock.advance(.seconds(1))
                ids.append(try await store.enqueue(makeSpec(branch: branch)).job.id)
            }
            let claimed = try #require(try await store.claimNext(workerID: "w1", leaseDuration: .seconds(60), perConnectionLimit: 10))
            #expect(claimed.id == ids[0])
            #expect(claimed.state == .running)
            #expect(claimed.attempts == 1)
            #expect(claimed.lease == JobLease(owner: "w1", expiresAt: env.clock.now.addingTimeInterval(60)))

            // A retryable failure with a backoff puts the job behind the others until it is due.
            let failed = try await store.fail(
                jobID: claimed.id, workerID: "w1", error: JobError(code: "network", message: "reset", retryable: true),
                retryAt: env.clock.now.addingTimeInterval(30))
            #expect(failed.state == .queued)
            #expect(failed.error?.code == "network")
            #expect(failed.lease == nil)
            #expect(try await store.claimNext(workerID: "w1", leaseDuration: .seconds(60), perConnectionLimit: 10)?.id == ids[1])
            #expect(try await store.claimNext(workerID: "w1", leaseDuration: .seconds(60), perConnectionLimit: 10)?.id == ids[2])
            #expect(try await store.claimNext(workerID: "w1", leaseDuration: .seconds(60), perConnectionLimit: 10) == nil)
            env.clock.advance(.seconds(30))
            let retried = try await store.claimNext(workerID: "w2", leaseDuration: .seconds(60), perConnectionLimit: 10)
            #expect(retried?.id == ids[0])
            #expect(retried?.attempts == 2)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func oneRunningJobPerRepositoryBranch(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            _ = try await store.createConnection(makeConnection("other"), credentials: sampleCredentials)
            let first = try await store.enqueue(makeSpec(branch: "x")).job
            let sameBranch = try await store.enqueue(makeSpec(branch: "x")).job
            let otherRepo = try await store.enqueue(makeSpec(slug: "ledger", branch: "x")).job
            let otherConnection = try await store.enqueue(makeSpec(connection: "other", branch: "x")).job
            func claim() async throws -> Job? {
                try await store.claimNext(workerID: "w", leaseDuration: .seconds(60), perConnectionLimit: 10)
            }
            #expect(try await claim()?.id == first.id)
            // The second job of branch x waits; jobs for other repositories/connections pass it.
            #expect(try await claim()?.id == otherRepo.id)
            #expect(try await claim()?.id == otherConnection.id)
            #expect(try await claim() == nil)
            _ = try await store.complete(
                jobID: first.id, workerID: "w",
                result: JobResult(repositoryUrl: "http://h/r", branch: "x", commit: "abc", changed: true))
            #expect(try await claim()?.id == sameBranch.id)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func perConnectionLimitCapsRunningJobs(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            _ = try await store.createConnection(makeConnection("other"), credentials: sampleCredentials)
            var jobs: [Job] = []
            for i in 0..<4 { jobs.append(try await store.enqueue(makeSpec(branch: "b\(i)")).job) }
            let foreign = try await store.enqueue(makeSpec(connection: "other")).job
            func claim() async throws -> Job? {
                try await store.claimNext(workerID: "w", leaseDuration: .seconds(60), perConnectionLimit: 2)
            }
            #expect(try await claim()?.id == jobs[0].id)
            #expect(try await claim()?.id == jobs[1].id)
            #expect(try await claim()?.id == foreign.id)
            #expect(try await claim() == nil)
            _ = try await store.fail(
                jobID: jobs[0].id, workerID: "w", error: JobError(code: "bad_input", message: "no", retryable: false),
                retryAt: nil)
            #expect(try await claim()?.id == jobs[2].id)
            #expect(try await claim() == nil)
            // An expired lease no longer counts against the limit.
            env.clock.advance(.seconds(61))
            let reclaimed = try #require(try await claim())
            #expect(reclaimed.id == jobs[1].id)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func expiredLeaseIsReclaimedAndTheOldWorkerLosesIt(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            let job = try await store.enqueue(makeSpec(), idempotencyKey: nil, maxAttempts: 2).job
            let a = try #require(try await store.claimNext(workerID: "A", leaseDuration: .seconds(30), perConnectionLimit: 4))
            try await store.saveCheckpoint(jobID: job.id, workerID: "A", JobCheckpoint(repositoryUrl: "http://h/r", builtCommit: "c0ffee"))

            env.clock.advance(.seconds(20))
            let beat = try await store.heartbeat(jobID: job.id, workerID: "A", leaseDuration: .seconds(30))
            #expect(beat.lease?.expiresAt == env.clock.now.addingTimeInterval(30))
            env.clock.advance(.seconds(20))
            // Heartbeat kept it alive: 40 s after the claim, nobody can take it.
            #expect(try await store.claimNext(workerID: "B", leaseDuration: .seconds(30), perConnectionLimit: 4) == nil)

            env.clock.advance(.seconds(11))
            let other = try await env.openAnother()
            let b = try #require(try await other.claimNext(workerID: "B", leaseDuration: .seconds(30), perConnectionLimit: 4))
            #expect(b.id == a.id)
            #expect(b.attempts == 2)
            #expect(b.leaseExpiries == 1)
            #expect(b.lease?.owner == "B")
            #expect(b.checkpoint.builtCommit == "c0ffee")  // the resumed attempt sees the progress

            await expectCode("lease_lost") { _ = try await store.heartbeat(jobID: job.id, workerID: "A", leaseDuration: .seconds(30)) }
            await expectCode("lease_lost") { try await store.saveCheckpoint(jobID: job.id, workerID: "A", JobCheckpoint()) }
            await expectCode("lease_lost") {
                _ = try await store.complete(jobID: job.id, workerID: "A", result: JobResult(repositoryUrl: "", branch: "", commit: "", changed: false))
            }
            await expectCode("lease_lost") {
                _ = try await store.fail(jobID: job.id, workerID: "A", error: JobError(code: "x", message: "x", retryable: true), retryAt: nil)
            }
            await expectCode("lease_lost") { try await store.release(jobID: job.id, workerID: "A") }
            await expectCode("not_found") { _ = try await store.heartbeat(jobID: "nope", workerID: "A", leaseDuration: .seconds(1)) }

            // B's lease also dies, on the last allowed attempt: the job fails instead of running a third time.
            env.clock.advance(.seconds(31))
            #expect(try await store.claimNext(workerID: "C", leaseDuration: .seconds(30), perConnectionLimit: 4) == nil)
            let dead = try #require(try await store.job(id: job.id))
            #expect(dead.state == .failed)
            #expect(dead.error?.code == "lease_expired")
            #expect(dead.leaseExpiries == 2)
            #expect(dead.finishedAt == env.clock.now)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func retryableFailuresBackOffUntilAttemptsRunOut(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            let job = try await store.enqueue(makeSpec(), idempotencyKey: nil, maxAttempts: 3).job
            let transient = JobError(code: "bitbucket_unavailable", message: "503", retryable: true)
            func claim() async throws -> Job? {
                try await store.claimNext(workerID: "w", leaseDuration: .seconds(600), perConnectionLimit: 4)
            }
            _ = try #require(try await claim())
            let first = try await store.fail(jobID: job.id, workerID: "w", error: transient, retryAt: nil)
            #expect(first.state == .queued)
            #expect(first.notBefore == env.clock.now.addingTimeInterval(5))  // default backoff after attempt 1
            #expect(try await claim() == nil)
            env.clock.advance(.seconds(5))
            _ = try #require(try await claim())
            let second = try await store.fail(jobID: job.id, workerID: "w", error: transient, retryAt: nil)
            #expect(second.notBefore == env.clock.now.addingTimeInterval(10))
            env.clock.advance(.seconds(10))
            let third = try #require(try await claim())
            #expect(third.attempts == 3)
            let final = try await store.fail(jobID: job.id, workerID: "w", error: transient, retryAt: nil)
            #expect(final.state == .failed)
            #expect(final.error == transient)
            #expect(final.finishedAt == env.clock.now)
            env.clock.advance(.seconds(3600))
            #expect(try await claim() == nil)

            // Manual retry: attempts reset, error cleared.
            let retried = try await store.retry(jobID: job.id)
            #expect(retried.state == .queued)
            #expect(retried.attempts == 0)
            #expect(retried.error == nil)
            #expect(retried.finishedAt == nil)
            let again = try #require(try await claim())
            #expect(again.attempts == 1)
            // A non-retryable error fails at once even with attempts left.
            let fatal = try await store.fail(
                jobID: job.id, workerID: "w", error: JobError(code: "path_invalid", message: "..", retryable: false), retryAt: nil)
            #expect(fatal.state == .failed)
            await expectCode("invalid_state") {
                _ = try await store.retry(jobID: try await store.enqueue(makeSpec(branch: "q")).job.id)
            }
            await expectCode("not_found") { _ = try await store.retry(jobID: "nope") }
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func cancelQueuedAndRunningJobs(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            let queued = try await store.enqueue(makeSpec(branch: "q")).job
            let cancelled = try await store.cancel(jobID: queued.id)
            #expect(cancelled.state == .cancelled)
            #expect(cancelled.finishedAt == env.clock.now)
            #expect(try await store.cancel(jobID: queued.id).state == .cancelled)  // idempotent

            let running = try await store.enqueue(makeSpec(branch: "r")).job
            _ = try #require(try await store.claimNext(workerID: "w", leaseDuration: .seconds(60), perConnectionLimit: 4))
            let requested = try await store.cancel(jobID: running.id)
            #expect(requested.state == .running)
            #expect(requested.cancelRequested)
            #expect(try await store.heartbeat(jobID: running.id, workerID: "w", leaseDuration: .seconds(60)).cancelRequested)
            // The worker stops; even a retryable error ends the job as cancelled.
            let stopped = try await store.fail(
                jobID: running.id, workerID: "w", error: JobError(code: "cancelled", message: "stopped", retryable: true),
                retryAt: nil)
            #expect(stopped.state == .cancelled)

            let again = try await store.retry(jobID: running.id)
            #expect(again.state == .queued)
            #expect(!again.cancelRequested)
            let claimed = try #require(try await store.claimNext(workerID: "w", leaseDuration: .seconds(60), perConnectionLimit: 4))
            let done = try await store.complete(
                jobID: claimed.id, workerID: "w",
                result: JobResult(repositoryUrl: "http://h/r", branch: "r", commit: "c1", changed: true))
            await expectCode("invalid_state") { _ = try await store.cancel(jobID: done.id) }
            await expectCode("not_found") { _ = try await store.cancel(jobID: "nope") }
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func completeStoresResultAndReleaseGivesTheJobBack(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            let job = try await store.enqueue(makeSpec()).job
            _ = try #require(try await store.claimNext(workerID: "w1", leaseDuration: .seconds(60), perConnectionLimit: 4))
            try await store.release(jobID: job.id, workerID: "w1")
            let released = try #require(try await store.job(id: job.id))
            #expect(released.state == .queued)
            #expect(released.attempts == 0)
            #expect(released.lease == nil)

            let other = try await env.openAnother()
            let claimed = try #require(try await other.claimNext(workerID: "w2", leaseDuration: .seconds(60), perConnectionLimit: 4))
            #expect(claimed.attempts == 1)
            let checkpoint = JobCheckpoint(
                repositoryUrl: "http://h/acme/billing", repositoryCreated: true, parentCommit: "p", builtCommit: "c",
                builtTree: "t", changed: true, pushedCommit: "c", pullRequestId: 7, pullRequestUrl: "http://h/pr/7",
                pullRequestCreated: true, extra: ["webhook": "queued"])
            try await other.saveCheckpoint(jobID: job.id, workerID: "w2", checkpoint)
            let result = JobResult(
                repositoryUrl: "http://h/acme/billing", branch: "pushbridge/a", commit: "c", changed: true,
                pullRequest: .init(id: 7, url: "http://h/pr/7", created: true),
                stats: JobStats(filesWritten: 3, objectsWritten: 5, objectsSent: 5, bytesSent: 1234, durationMs: 42))
            env.clock.advance(.seconds(3))
            let done = try await other.complete(jobID: job.id, workerID: "w2", result: result)
            #expect(done.state == .succeeded)
            #expect(done.result == result)
            #expect(done.checkpoint == checkpoint)
            #expect(done.finishedAt == env.clock.now)
            #expect(done.lease == nil)
            #expect(try await store.job(id: job.id) == done)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func listJobsPagesNewestFirstWithAStableCursor(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            _ = try await store.createConnection(makeConnection("other"), credentials: sampleCredentials)
            var created: [String] = []
            for i in 0..<23 {
                let connection = i % 3 == 0 ? "other" : "acme-cloud"
                created.append(try await store.enqueue(makeSpec(connection: connection, branch: "b\(i)")).job.id)
            }
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let page = try await store.listJobs(JobQuery(cursor: cursor, limit: 5))
                pages += 1
                seen += page.jobs.map(\.id)
                cursor = page.nextCursor
                if pages == 2 {
                    // Jobs enqueued mid-listing land on the first page, never shift later pages.
                    _ = try await store.enqueue(makeSpec(branch: "late"))
                }
                #expect(page.jobs.count == (cursor == nil ? 3 : 5))
            } while cursor != nil
            #expect(pages == 5)
            #expect(seen == created.reversed())

            let other = try await store.listJobs(JobQuery(connection: "other", limit: 100))
            #expect(other.jobs.map(\.id) == created.enumerated().filter { $0.offset % 3 == 0 }.map(\.element).reversed())
            #expect(other.nextCursor == nil)

            _ = try await store.cancel(jobID: created[4])
            _ = try await store.cancel(jobID: created[7])
            let cancelled = try await store.listJobs(JobQuery(state: .cancelled, connection: "acme-cloud", limit: 1))
            #expect(cancelled.jobs.map(\.id) == [created[7]])
            let rest = try await store.listJobs(
                JobQuery(state: .cancelled, connection: "acme-cloud", cursor: cancelled.nextCursor, limit: 1))
            #expect(rest.jobs.map(\.id) == [created[4]])
            #expect(rest.nextCursor == nil)
            await expectCode("invalid_cursor") { _ = try await store.listJobs(JobQuery(cursor: "garbage")) }
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func webhookOutboxIsDurableAndRetried(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            let body = Data(#"{"id":"j1","state":"succeeded"}"#.utf8) + Data([0, 255])
            let first = try await store.enqueueWebhook(jobID: "j1", body: body)
            env.clock.advance(.seconds(1))
            let second = try await store.enqueueWebhook(jobID: "j2", body: Data("{}".utf8))
            #expect(first.attempts == 0)
            #expect(first.deliveredAt == nil)

            // Another instance (another daemon) sees the same outbox.
            let other = try await env.openAnother()
            let due = try await other.dueWebhooks(limit: 10)
            #expect(due.map(\.id) == [first.id, second.id])
            #expect(due.first?.body == body)

            try await other.markWebhookAttempt(id: first.id, nextAttemptAt: env.clock.now.addingTimeInterval(30), error: "HTTP 502")
            #expect(try await store.dueWebhooks(limit: 10).map(\.id) == [second.id])
            try await store.markWebhookDelivered(id: second.id)
            #expect(try await store.dueWebhooks(limit: 10).isEmpty)
            env.clock.advance(.seconds(30))
            let retried = try await store.dueWebhooks(limit: 10)
            #expect(retried.map(\.id) == [first.id])
            #expect(retried.first?.attempts == 1)
            #expect(retried.first?.lastError == "HTTP 502")
            try await store.markWebhookDelivered(id: first.id)
            env.clock.advance(.seconds(3600))
            #expect(try await store.dueWebhooks(limit: 10).isEmpty)
            await expectCode("not_found") { try await store.markWebhookDelivered(id: 999_999) }
            await expectCode("not_found") { try await store.markWebhookAttempt(id: 999_999, nextAttemptAt: Date(), error: nil) }
        }
    }
}
