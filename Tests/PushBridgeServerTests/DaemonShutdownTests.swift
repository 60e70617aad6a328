import BitbucketEmulator
import Foundation
import Logging
import PushBridge
import Testing
import TestSupport

@testable import PushBridgeServer

@Suite("Graceful shutdown of the daemon with a running job")
struct DaemonShutdownTests {
    @Test("a job held in its push is finished or released at shutdown, and a second daemon completes it once")
    func shutdownDuringPush() async throws {
        // A 1 s grace against a push the emulator holds for 4 s: the grace runs out mid-push, and
        // the push still ends before ServiceGroup's own escalation (grace + 5 s) would cancel everything.
        try await DaemonHarness.with(environment: ["PUSHBRIDGE_SHUTDOWN_GRACE": "1s"]) { h in
            try await h.registerConnection("acme", .bitbucketCloud)
            let ref = h.emulatorRef(.bitbucketCloud, "held")
            // An existing repository with a `main`: the branch push is the job's only receive-pack
            // (an empty repository would first get its base branch seeded by a push of its own).
            let repository = try await h.emulator.createRepository(ref, projectKey: "PROJ")
            let mainTip = try await seedCommit(in: repository.gitDirectory, files: ["README.md": Data("hello\n".utf8)])
            await h.emulator.injectFault(
                EmulatorFault(method: "POST", path: "/acme/held.git/git-receive-pack", action: .latency(.seconds(4)), count: 1))
            let source = try h.source(["app.txt": "generated\n"])
            let enqueued = try await h.request(
                .POST, "/v1/jobs",
                json: EndToEndTests.jobJSON(
                    connection: "acme", slug: "held", source: #"{"directory": "\#(source)"}"#, project: "PROJ"))
            #expect(enqueued.status == 202, "\(enqueued.text)")
            let id = try #require(enqueued.object["id"] as? String)

            // The pipeline logs each finished step; after `commit` comes the (held) push.
            try await withDeadline(.seconds(60), "the job to reach its push step") {
                while !Self.commitDone(h.logs, job: id) {
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            let took = try #require(try await h.stopDaemon(deadline: .seconds(60)))
            print("daemon stopped \(took) after graceful shutdown began (grace 1 s, push held 4 s)")

            // Read the job straight from the database: lease and attempts are not in the API view.
            let configuration = try await ConfigurationLoader.load(environment: h.environment, envFile: .none)
            let store = try await StoreFactory.open(
                databaseURL: configuration.database.urlString, vault: try PushBridgeDaemon.vault(configuration))
            let stored = try #require(try await store.job(id: id))
            try await store.close()
            #expect(stored.state == .queued || stored.state == .succeeded, "state \(stored.state)")
            #expect(stored.lease == nil)
            if stored.state == .queued {
                #expect(stored.attempts == 0, "a released job's attempt is not counted")
                #expect(h.logs.all.contains("job released at shutdown"))
            }
            print("job after shutdown: \(stored.state.rawValue), attempts \(stored.attempts)")

            // A second daemon on the same database finishes it: one commit, one pull request.
            try await h.startDaemon()
            let done = try await h.waitForJob(id).object
            #expect(done["state"] as? String == "succeeded", "\(done)")
            let result = try #require(done["result"] as? [String: Any])
            let commit = try #require(result["commit"] as? String)
            #expect(try await h.emulator.branchTip(ref, branch: "pushbridge/e2e") == commit)
            #expect(try await runGit(["rev-parse", "\(commit)^"], in: repository.gitDirectory)
                .trimmingCharacters(in: .whitespacesAndNewlines) == mainTip)
            let count = try await runGit(["rev-list", "--count", "main..pushbridge/e2e"], in: repository.gitDirectory)
            #expect(count.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            #expect(await h.emulator.pullRequests(in: ref).count == 1)
            #expect(await h.emulator.counters().pullRequestsCreated[DaemonHarness.counterKey(ref)] == 1)
            h.expectNoSecretsLeaked()
        }
    }

    /// Whether a `step done` line with `step: commit` was logged for `job`.
    static func commitDone(_ logs: DaemonLogCapture, job: String) -> Bool {
        logs.lines.withLock { lines in
            lines.contains { $0.contains("step done") && $0.contains(job) && $0.contains(#""step": commit"#) }
        }
    }
}
