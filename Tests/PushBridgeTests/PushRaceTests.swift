import BitbucketEmulator
import Foundation
@testable import PushBridge
import Synchronization
import Testing
import TestSupport

/// A human pushes to the job branch with the git CLI after the pipeline fetched and built its commit,
/// before it pushes (the `.commit` step observer runs exactly there).
@Suite("Pipeline: the remote branch moves between fetch and push", .serialized)
struct PushRaceTests {
    @Test("a human push between fetch and push: rejected, re-fetched, rebuilt on the human tip; one PR",
          arguments: [Provider.bitbucketCloud, .bitbucketDataCenter])
    func movesOnce(provider: Provider) async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", provider)
            let first = try await env.run(try env.spec("c", slug: "race", files: ["gen/a.txt": "1\n"])).result
            let ref = env.ref(provider, "race")
            let bare = try await env.gitDirectory(ref)
            let pushesBefore = await env.pushes(ref)
            let rounds = Mutex(0)
            let human = Mutex<String?>(nil)
            let observer: PushPipeline.StepObserver = { step, _ in
                guard step == .commit else { return }
                let round = rounds.withLock { r in r += 1; return r }
                if round == 1 {
                    let id = try await seedCommit(
                        in: bare, files: ["human.txt": Data("mine\n".utf8)], branch: first.branch, message: "human fix")
                    human.withLock { $0 = id }
                }
            }
            let second = try await env.run(
                try env.spec("c", slug: "race", files: ["gen/a.txt": "2\n"]), observer: observer
            ).result
            let humanCommit = try #require(human.withLock { $0 })
            // GitKit checks the advertised tip against the expected one before sending a pack, so a
            // rejected round never reaches receive-pack: the emulator counts landed pushes only.
            let landed = await env.pushes(ref) - pushesBefore
            let pushAttempts = rounds.withLock { $0 }
            let preserved = try await gitResult(
                ["merge-base", "--is-ancestor", humanCommit, "refs/heads/\(first.branch)"], in: bare
            ).succeeded
            print("[race \(provider.rawValue)] pushAttempts=\(pushAttempts) pushesLanded=\(landed) humanCommitPreserved=\(preserved)")
            #expect(pushAttempts == 2, "the rejected push, then one rebuild whose push landed")
            #expect(landed == 1)
            #expect(preserved)
            #expect(second.changed)
            #expect(try await env.git(ref, ["rev-parse", "refs/heads/\(first.branch)"]) == second.commit)
            #expect(try await env.git(ref, ["rev-parse", "\(second.commit)^"]) == humanCommit, "rebuilt on the human tip")
            #expect(try await env.fileAt(ref, first.branch, "human.txt") == "mine\n")
            #expect(try await env.fileAt(ref, first.branch, "gen/a.txt") == "2\n")
            #expect(try await env.commitCount(ref, first.branch) == 4, "initial, generation 1, human, generation 2")
            #expect(await env.emulator.pullRequests(in: ref).count == 1)
            #expect(await env.pullRequestsCreated(ref) == 1)
            #expect(second.pullRequest?.id == first.pullRequest?.id)
        }
    }

    @Test("the branch moves before every push: the job fails branch_moved (retryable) after maxPushAttempts; human commits kept")
    func movesEveryTime() async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", .bitbucketCloud)
            let first = try await env.run(try env.spec("c", slug: "busy", files: ["gen/a.txt": "1\n"])).result
            let ref = env.ref(.bitbucketCloud, "busy")
            let bare = try await env.gitDirectory(ref)
            let pushesBefore = await env.pushes(ref)
            let humans = Mutex<[String]>([])
            let observer: PushPipeline.StepObserver = { step, _ in
                guard step == .commit else { return }
                let n = humans.withLock { $0.count } + 1
                let id = try await seedCommit(
                    in: bare, files: ["human-\(n).txt": Data("\(n)\n".utf8)], branch: first.branch, message: "human \(n)")
                humans.withLock { $0.append(id) }
            }
            let bound = env.pipeline().configuration.maxPushAttempts
            var thrown: (any Error)?
            do {
                try await env.run(try env.spec("c", slug: "busy", files: ["gen/a.txt": "2\n"]), observer: observer)
            } catch {
                thrown = error
            }
            let error = try #require(thrown as? PipelineError, "expected a PipelineError, got \(String(describing: thrown))")
            let humanCommits = humans.withLock { $0 }
            let landed = await env.pushes(ref) - pushesBefore
            print("[race every-attempt] maxPushAttempts=\(bound) pushAttempts=\(humanCommits.count) pushesLanded=\(landed) code=\(error.code) retryable=\(error.retryable)")
            #expect(error.code == "branch_moved")
            #expect(error.retryable, "a busy branch calms down: the worker retries with backoff")
            #expect(PipelineError.classify(error) == JobError(code: "branch_moved", message: error.message, retryable: true))
            #expect(!error.message.contains("http"), "no URL in the message")
            #expect(humanCommits.count == bound, "one build + push attempt per round, each overtaken")
            #expect(landed == 0)
            #expect(try await env.git(ref, ["rev-parse", "refs/heads/\(first.branch)"]) == humanCommits.last)
            #expect(try await env.fileAt(ref, first.branch, "gen/a.txt") == "1\n", "nothing of the job landed")
            #expect(try await env.commitCount(ref, first.branch) == 2 + bound)
        }
    }
}
