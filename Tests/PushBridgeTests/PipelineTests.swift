import BitbucketEmulator
import BitbucketKit
import Foundation
@testable import PushBridge
import Testing
import TestSupport

extension Provider: CustomTestStringConvertible {
    public var testDescription: String { rawValue }
}

@Suite("Push pipeline against the emulator", .serialized)
struct PipelineTests {
    static let providers: [Provider] = [.bitbucketCloud, .bitbucketDataCenter, .bitbucketServer]

    @Test("new repository: created, initial commit on base, generated code on the branch with a PR", arguments: providers)
    func newRepository(provider: Provider) async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", provider)
            let spec = try env.spec("c", slug: "Billing-Service", files: ["src/app.txt": "v1\n", "bin/run": "#!/bin/sh\n"])
            let (_, result) = try await env.run(spec)
            let ref = env.ref(provider, "Billing-Service")
            #expect(result.changed)
            #expect(result.branch == "pushbridge/billing-service")
            #expect(try await env.git(ref, ["rev-parse", "refs/heads/\(result.branch)"]) == result.commit)
            // Base got an initial commit; the branch has it as parent.
            let baseTip = try await env.git(ref, ["rev-parse", "refs/heads/main"])
            #expect(try await env.git(ref, ["rev-parse", "\(result.commit)^"]) == baseTip)
            #expect(try await env.fileAt(ref, "main", "src/app.txt") == nil)
            #expect(try await env.fileAt(ref, result.branch, "src/app.txt") == "v1\n")
            let pr = try #require(result.pullRequest)
            #expect(pr.created)
            let prs = await env.emulator.pullRequests(in: ref)
            #expect(prs.count == 1)
            #expect(prs.first?.sourceBranch == result.branch && prs.first?.destinationBranch == "main")
            #expect(await env.pushes(ref) == 2)
            if provider == .bitbucketCloud {
                #expect(await env.emulator.repository(.cloud(workspace: "acme", slug: "billing-service")) != nil)
            }
            env.expectNoSecretsLogged()
        }
    }

    @Test("existing repository is adopted; missing one without create is not_found", arguments: providers)
    func adoptExisting(provider: Provider) async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", provider)
            let ref = env.ref(provider, "existing")
            try await env.emulator.createRepository(ref)
            let seeded = try await seedCommit(in: try await env.gitDirectory(ref), files: ["README.md": Data("hi\n".utf8)])
            let (_, result) = try await env.run(try env.spec("c", slug: "existing", files: ["gen.txt": "x\n"], create: false))
            #expect(result.changed)
            #expect(try await env.git(ref, ["rev-parse", "\(result.commit)^"]) == seeded)
            #expect(try await env.fileAt(ref, result.branch, "README.md") == "hi\n")
            #expect(await env.pushes(ref) == 1)

            await #expect(throws: PipelineError.self) {
                try await env.run(try env.spec("c", slug: "missing", files: ["a": "b"], create: false))
            }
            do {
                try await env.run(try env.spec("c", slug: "missing2", files: ["a": "b"], create: false))
            } catch let error as PipelineError {
                #expect(error.code == "not_found")
                #expect(!error.retryable)
            }
        }
    }

    @Test("second generation stacks on the branch; PR updated, not duplicated; human commit preserved", arguments: providers)
    func secondGenerationAndHumanCommit(provider: Provider) async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", provider)
            let first = try await env.run(try env.spec("c", slug: "stack", files: ["a.txt": "1\n"], title: "Build 1")).result
            let ref = env.ref(provider, "stack")
            // A human pushes to the job branch with the git CLI.
            let human = try await seedCommit(
                in: try await env.gitDirectory(ref), files: ["human.txt": Data("mine\n".utf8)], branch: first.branch,
                message: "human fix")
            let second = try await env.run(try env.spec("c", slug: "stack", files: ["a.txt": "2\n"], title: "Build 2")).result
            #expect(second.changed)
            #expect(try await env.git(ref, ["rev-parse", "\(second.commit)^"]) == human)
            let base = try await gitResult(["merge-base", "--is-ancestor", first.commit, second.commit], in: try await env.gitDirectory(ref))
            #expect(base.succeeded)
            #expect(try await env.fileAt(ref, second.branch, "human.txt") == "mine\n")
            #expect(try await env.fileAt(ref, second.branch, "a.txt") == "2\n")
            #expect(second.pullRequest?.id == first.pullRequest?.id)
            #expect(second.pullRequest?.created == false)
            let prs = await env.emulator.pullRequests(in: ref)
            #expect(prs.count == 1)
            #expect(prs.first?.title == "Build 2")
            #expect(await env.pullRequestsCreated(ref) == 1)
        }
    }

    @Test("no change: changed=false, no commit, no push", arguments: [Provider.bitbucketCloud, .bitbucketDataCenter])
    func noChange(provider: Provider) async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", provider)
            let first = try await env.run(try env.spec("c", slug: "same", files: ["a.txt": "1\n"])).result
            let ref = env.ref(provider, "same")
            let pushesBefore = await env.pushes(ref)
            let second = try await env.run(try env.spec("c", slug: "same", files: ["a.txt": "1\n"])).result
            #expect(!second.changed)
            #expect(second.commit == first.commit)
            #expect(await env.pushes(ref) == pushesBefore)
            #expect(try await env.commitCount(ref, first.branch) == 2)
            #expect(second.pullRequest?.id == first.pullRequest?.id)
        }
    }

    @Test("sync mode deletes stale files but keeps preserve matches")
    func syncMode() async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", .bitbucketCloud)
            _ = try await env.run(try env.spec(
                "c", slug: "sync", files: ["gen/a.txt": "a\n", "gen/stale.txt": "old\n", "keep.md": "k\n"]))
            let result = try await env.run(try env.spec(
                "c", slug: "sync", files: ["gen/a.txt": "a2\n"], mode: .sync, preserve: ["keep.md", "README.md"])).result
            let ref = env.ref(.bitbucketCloud, "sync")
            #expect(try await env.fileAt(ref, result.branch, "gen/stale.txt") == nil)
            #expect(try await env.fileAt(ref, result.branch, "gen/a.txt") == "a2\n")
            #expect(try await env.fileAt(ref, result.branch, "keep.md") == "k\n")
            #expect(try await env.fileAt(ref, result.branch, "README.md") != nil)
            #expect(result.stats.filesDeleted >= 1)
        }
    }

    @Test("429 and 5xx on Bitbucket routes are retried and the job succeeds", arguments: [Provider.bitbucketCloud, .bitbucketDataCenter])
    func faults(provider: Provider) async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", provider)
            let pattern = provider == .bitbucketCloud ? "/2.0/repositories/**" : "/rest/api/1.0/**"
            await env.emulator.injectFault(EmulatorFault(path: pattern, action: .status(429, retryAfter: 0), count: 2))
            await env.emulator.injectFault(EmulatorFault(method: "POST", path: pattern, action: .status(503), count: 1))
            let result = try await env.run(try env.spec("c", slug: "faulty", files: ["a.txt": "1\n"])).result
            #expect(result.changed)
            #expect(result.pullRequest != nil)
            let counters = await env.emulator.counters()
            #expect(counters.requestCount(status: 429) == 2)
            #expect(counters.requestCount(status: 503) == 1)
            #expect(await env.emulator.pullRequests(in: env.ref(provider, "faulty")).count == 1)
        }
    }

    @Test("source outside the source roots (also via symlink) is rejected before any request")
    func sourceRoots() async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", .bitbucketCloud)
            let outside = env.directory.appending("outside")
            try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
            let link = env.sourcesRoot.appendingPathComponent("sneaky")
            try FileManager.default.createSymbolicLink(at: link, withDestinationURL: outside)
            for path in [outside.path, link.path, env.sourcesRoot.path + "/../outside"] {
                var spec = try env.spec("c", slug: "nope", files: [:])
                spec.source = .directory(path)
                do {
                    try await env.run(spec)
                    Issue.record("accepted \(path)")
                } catch let error as PipelineError {
                    #expect(error.code == "source_not_allowed")
                }
            }
            #expect(await env.emulator.repository(.cloud(workspace: "acme", slug: "nope")) == nil)
        }
    }

    /// Crash right after each step, resume with a fresh token manager and an empty git cache (a new
    /// process), and check the world: one commit on the branch, one push of it, one pull request.
    @Test("resume after a simulated crash after each step yields one commit, one push, one PR", arguments: providers)
    func crashResume(provider: Provider) async throws {
        try await PipelineEnvironment.with { env in
            try await env.addConnection("c", provider)
            var figures: [String] = []
            for (index, step) in PipelineStep.allCases.enumerated() {
                let slug = "crash-\(index)"
                let spec = try env.spec("c", slug: slug, files: ["a.txt": "generated \(index)\n"])
                let crashing = env.pipeline(dataDirectory: "data-\(index)-a")
                let observer: PushPipeline.StepObserver = { reached, _ in if reached == step { throw SimulatedCrash() } }
                let job = try await env.store.enqueue(spec).job
                _ = try #require(try await env.store.claimNext(workerID: "test", leaseDuration: .seconds(300), perConnectionLimit: 10))
                await #expect(throws: SimulatedCrash.self) {
                    _ = try await env.resume(job.id, pipeline: crashing, observer: observer)
                }
                let result = try await env.resume(job.id, pipeline: env.pipeline(dataDirectory: "data-\(index)-b"))
                // And a third run is a no-op on the world.
                let again = try await env.resume(job.id, pipeline: env.pipeline(dataDirectory: "data-\(index)-c"))
                let ref = env.ref(provider, slug)
                let commits = try await env.commitCount(ref, spec.branch)
                let pushes = await env.pushes(ref)
                let prs = await env.emulator.pullRequests(in: ref).count
                figures.append("\(step.rawValue): commits=\(commits) pushes=\(pushes) prs=\(prs)")
                #expect(commits == 2, "initial + one generated commit after crash at \(step)")
                #expect(pushes == 2, "initial commit + one push of the job branch after crash at \(step)")
                #expect(prs == 1)
                #expect(result.commit == again.commit)
                #expect(result.changed && again.changed)
                #expect(try await env.git(ref, ["rev-parse", "refs/heads/\(spec.branch)"]) == result.commit)
                #expect(result.pullRequest?.created == true)
            }
            print("[pipeline crash-resume \(provider.rawValue)] " + figures.joined(separator: "; "))
            env.expectNoSecretsLogged()
        }
    }
}
