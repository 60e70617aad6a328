import BitbucketEmulator
import Foundation
import TestSupport
import Testing

@Suite("Emulator: git smart HTTP with each product's auth rules")
struct EmulatorGitTests {
    @Test func cloudPushAndCloneWithXTokenAuth() async throws {
        try await EmulatorHarness.with { h in
            let ref = EmulatorRepositoryRef.cloud(workspace: "acme", slug: "site")
            try await h.emulator.createRepository(ref)
            let token = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
            let url = h.emulator.endpoints.cloudCloneURL(workspace: "acme", slug: "site")
            let tips = try await EmulatorGit.pushTwoBranches(
                to: url, auth: .basicAuth(username: "x-token-auth", password: token), feature: "feature")
            #expect(try await h.emulator.branchTip(ref, branch: "main") == tips.main)
            #expect(try await h.emulator.branchTip(ref, branch: "feature") == tips.feature)
            #expect(await h.emulator.counters().gitPushes["acme/site"] == 2)

            try await withTemporaryDirectory { dir in
                // Bearer in http.extraHeader works as well.
                try await runGit(["clone", "--quiet", url.absoluteString, "c"], in: dir, env: GitClientEnvironment.bearerAuth(token: token).environment)
                let head = try await runGit(["rev-parse", "origin/feature"], in: dir.appendingPathComponent("c"))
                #expect(head.trimmingCharacters(in: .whitespacesAndNewlines) == tips.feature)

                // Wrong token, wrong user name for an OAuth token, or none: 401 and the clone fails.
                let wrong = try await gitResult(
                    ["clone", "--quiet", url.absoluteString, "w"], in: dir,
                    env: GitClientEnvironment.basicAuth(username: "x-token-auth", password: "nope").environment)
                #expect(!wrong.succeeded)
                let wrongUser = try await gitResult(
                    ["clone", "--quiet", url.absoluteString, "u"], in: dir,
                    env: GitClientEnvironment.basicAuth(username: "alice", password: token).environment)
                #expect(!wrongUser.succeeded)
                let anonymous = try await gitResult(["clone", "--quiet", url.absoluteString, "a"], in: dir)
                #expect(!anonymous.succeeded)

                // A non-member's token cannot push.
                let mallory = try await h.emulator.issueTokens(product: .cloud, username: "mallory").accessToken
                let work = dir.appendingPathComponent("c")
                try Data("x".utf8).write(to: work.appendingPathComponent("x.txt"))
                try await runGit(["add", "."], in: work)
                try await runGit(["commit", "--quiet", "-m", "x"], in: work)
                let denied = try await gitResult(
                    ["push", "--quiet", "origin", "HEAD:refs/heads/mallory"], in: work,
                    env: GitClientEnvironment.basicAuth(username: "x-token-auth", password: mallory).environment)
                #expect(!denied.succeeded)
                #expect(try await h.emulator.branchTip(ref, branch: "mallory") == nil)

                // History rewrites are refused like on a real host.
                try await runGit(["commit", "--quiet", "--amend", "-m", "rewritten"], in: work)
                try await runGit(["push", "--quiet", "origin", "HEAD:refs/heads/feature2"], in: work, env: GitClientEnvironment.bearerAuth(token: token).environment)
                try await runGit(["reset", "--quiet", "--hard", "HEAD~1"], in: work)
                try Data("y".utf8).write(to: work.appendingPathComponent("y.txt"))
                try await runGit(["add", "."], in: work)
                try await runGit(["commit", "--quiet", "-m", "y"], in: work)
                let forced = try await gitResult(
                    ["push", "--quiet", "--force", "origin", "HEAD:refs/heads/feature2"], in: work,
                    env: GitClientEnvironment.bearerAuth(token: token).environment)
                #expect(!forced.succeeded)
            }
            let unauthorized = await h.emulator.counters().requestCount(route: "/{workspace}/{repo_slug}.git/info/refs", status: 401)
            #expect(unauthorized >= 3)
        }
    }

    @Test func dataCenterPushWithOAuthBearerAndHTTPAccessToken() async throws {
        try await EmulatorHarness.with { h in
            let ref = EmulatorRepositoryRef.dataCenter(project: "PRJ", slug: "svc")
            try await h.emulator.createRepository(ref)
            let url = h.emulator.endpoints.dataCenterCloneURL(project: "PRJ", slug: "svc")
            let oauth = try await h.emulator.issueTokens(product: .dataCenter, username: "alice").accessToken
            let tips = try await EmulatorGit.pushTwoBranches(to: url, auth: .bearerAuth(token: oauth), feature: "f")

            let writeToken = try await h.emulator.issueHTTPAccessToken(
                username: "alice", project: "PRJ", repository: "svc", permissions: ["REPO_WRITE"])
            let readToken = try await h.emulator.issueHTTPAccessToken(
                username: "alice", project: "PRJ", repository: "svc", permissions: ["REPO_READ"])
            try await withTemporaryDirectory { dir in
                // Basic with any user name and the HTTP access token as password.
                let basic = GitClientEnvironment.basicAuth(username: "whoever", password: writeToken).environment
                try await runGit(["clone", "--quiet", url.absoluteString, "c"], in: dir, env: basic)
                let work = dir.appendingPathComponent("c")
                #expect(try await runGit(["rev-parse", "origin/f"], in: work).trimmingCharacters(in: .whitespacesAndNewlines) == tips.feature)
                try await runGit(["checkout", "--quiet", "f"], in: work)
                try Data("more".utf8).write(to: work.appendingPathComponent("more.txt"))
                try await runGit(["add", "."], in: work)
                try await runGit(["commit", "--quiet", "-m", "more"], in: work)
                try await runGit(["push", "--quiet", "origin", "f"], in: work, env: basic)
                let newTip = try await runGit(["rev-parse", "HEAD"], in: work).trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(try await h.emulator.branchTip(ref, branch: "f") == newTip)

                // Read-only token: clone yes, push no.
                let read = GitClientEnvironment.bearerAuth(token: readToken).environment
                try await runGit(["clone", "--quiet", url.absoluteString, "r"], in: dir, env: read)
                let readWork = dir.appendingPathComponent("r")
                try await runGit(["checkout", "--quiet", "-b", "ro"], in: readWork)
                let push = try await gitResult(["push", "--quiet", "origin", "ro"], in: readWork, env: read)
                #expect(!push.succeeded)
                #expect(try await h.emulator.branchTip(ref, branch: "ro") == nil)

                // A Cloud token is no DC credential.
                let cloud = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
                #expect(!(try await gitResult(["clone", "--quiet", url.absoluteString, "x"], in: dir, env: GitClientEnvironment.bearerAuth(token: cloud).environment)).succeeded)
            }
            #expect(await h.emulator.counters().requestCount(route: "/scm/{projectKey}/{repositorySlug}.git/info/refs", status: 403) >= 1)
        }
    }
}
