import BitbucketEmulator
import Foundation
import TestSupport
import Testing

@Suite("Emulator: Bitbucket Cloud REST 2.0")
struct EmulatorCloudTests {
    @Test func currentUserAndExpiredToken() async throws {
        try await EmulatorHarness.with { h in
            let tokens = try await h.emulator.issueTokens(product: .cloud, username: "alice")
            let me = try await h.send("GET", h.cloudAPI + "/user", bearer: tokens.accessToken)
            #expect(me.status == 200)
            #expect(me.json?["nickname"]?.stringValue == "alice")
            #expect(me.json?["type"]?.stringValue == "user")
            #expect(me.json?["display_name"]?.stringValue == "Alice Example")

            #expect(await h.emulator.expireAccessToken(tokens.accessToken))
            let expired = try await h.send("GET", h.cloudAPI + "/user", bearer: tokens.accessToken)
            #expect(expired.status == 401)
            #expect(expired.json?["type"]?.stringValue == "error")
            #expect(expired.json?["error"]?["message"]?.stringValue == "Access token expired.")

            let bogus = try await h.send("GET", h.cloudAPI + "/user", bearer: "not-a-token")
            #expect(bogus.status == 401)
            #expect(bogus.json?["error"]?["message"]?.stringValue != "Access token expired.")

            // A DC token is not a Cloud token.
            let dc = try await h.emulator.issueTokens(product: .dataCenter, username: "alice")
            #expect(try await h.send("GET", h.cloudAPI + "/user", bearer: dc.accessToken).status == 401)
        }
    }

    @Test func workspacePaginationFollowsNextLinks() async throws {
        try await EmulatorHarness.with { h in
            for i in 0..<24 {
                try await h.emulator.createWorkspace(String(format: "ws%02d", i), members: ["alice"])
            }
            let token = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
            var url: String? = h.cloudAPI + "/user/workspaces?pagelen=10"
            var slugs: [String] = []
            var pages: [Int] = []
            while let next = url {
                let page = try await h.send("GET", next, bearer: token)
                #expect(page.status == 200)
                #expect(page.json?["pagelen"]?.intValue == 10)
                #expect(page.json?["size"]?.intValue == 25)
                pages.append(page.json?["page"]?.intValue ?? -1)
                for v in page.json?["values"]?.arrayValue ?? [] {
                    #expect(v["type"]?.stringValue == "workspace_access")
                    slugs.append(v["workspace"]?["slug"]?.stringValue ?? "")
                }
                url = page.json?["next"]?.stringValue
            }
            #expect(pages == [1, 2, 3])
            #expect(slugs.count == 25)
            #expect(Set(slugs).count == 25)
            #expect(slugs.contains("acme"))

            let tooBig = try await h.send("GET", h.cloudAPI + "/user/workspaces?pagelen=101", bearer: token)
            #expect(tooBig.status == 400)
            #expect(tooBig.json?["type"]?.stringValue == "error")

            let mallory = try await h.emulator.issueTokens(product: .cloud, username: "mallory").accessToken
            let none = try await h.send("GET", h.cloudAPI + "/user/workspaces", bearer: mallory)
            #expect(none.json?["values"]?.arrayValue?.isEmpty == true)
        }
    }

    @Test func createRepositoryValidatesAndDescribesIt() async throws {
        try await EmulatorHarness.with { h in
            let token = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
            let body: JSONValue = ["scm": "git", "is_private": true, "project": ["key": "PROJ"]]
            let created = try await h.send("POST", h.cloudAPI + "/repositories/acme/billing-service", bearer: token, json: body)
            #expect(created.status == 200)
            let repo = try #require(created.json)
            #expect(repo["type"]?.stringValue == "repository")
            #expect(repo["slug"]?.stringValue == "billing-service")
            #expect(repo["full_name"]?.stringValue == "acme/billing-service")
            #expect(repo["is_private"]?.boolValue == true)
            #expect(repo["scm"]?.stringValue == "git")
            #expect(repo["mainbranch"]?["name"]?.stringValue == "main")
            #expect(repo["project"]?["key"]?.stringValue == "PROJ")
            #expect(repo["uuid"]?.stringValue?.hasPrefix("{") == true)
            let clone = repo["links"]?["clone"]?.arrayValue?.first { $0["name"]?.stringValue == "https" }
            #expect(clone?["href"]?.stringValue == h.emulator.endpoints.cloudCloneURL(workspace: "acme", slug: "billing-service").absoluteString)

            let again = try await h.send("POST", h.cloudAPI + "/repositories/acme/billing-service", bearer: token, json: body)
            #expect(again.status == 400)
            #expect(again.json?["error"]?["message"]?.stringValue?.contains("already exists") == true)

            let upper = try await h.send("POST", h.cloudAPI + "/repositories/acme/Billing", bearer: token, json: body)
            #expect(upper.status == 400)
            let badProject = try await h.send(
                "POST", h.cloudAPI + "/repositories/acme/other", bearer: token, json: ["project": ["key": "NOPE"]])
            #expect(badProject.status == 400)

            let got = try await h.send("GET", h.cloudAPI + "/repositories/acme/billing-service", bearer: token)
            #expect(got.status == 200)
            #expect(got.json?["uuid"] == repo["uuid"])
            #expect(try await h.send("GET", h.cloudAPI + "/repositories/acme/missing", bearer: token).status == 404)

            // A private repository is invisible to non-members.
            let mallory = try await h.emulator.issueTokens(product: .cloud, username: "mallory").accessToken
            #expect(try await h.send("GET", h.cloudAPI + "/repositories/acme/billing-service", bearer: mallory).status == 403)

            // Creating needs repository:admin.
            let weak = try await h.emulator.issueTokens(product: .cloud, username: "alice", scopes: ["repository"]).accessToken
            #expect(try await h.send("POST", h.cloudAPI + "/repositories/acme/weak", bearer: weak, json: body).status == 403)
        }
    }

    @Test func repositoryListFiltersWithQueryAndPaginates() async throws {
        try await EmulatorHarness.with { h in
            for name in ["alpha-api", "alpha-web", "beta-api", "gamma"] {
                try await h.emulator.createRepository(.cloud(workspace: "acme", slug: name))
            }
            let token = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
            let q = "name ~ \"api\"".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let filtered = try await h.send("GET", h.cloudAPI + "/repositories/acme?q=\(q)&sort=name", bearer: token)
            #expect(filtered.status == 200)
            let names = filtered.json?["values"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
            #expect(names == ["alpha-api", "beta-api"])

            let page2 = try await h.send("GET", h.cloudAPI + "/repositories/acme?pagelen=3&page=2&sort=name", bearer: token)
            #expect(page2.json?["values"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["gamma"])
            #expect(page2.json?["next"] == nil)
            #expect(page2.json?["previous"]?.stringValue != nil)

            let bad = try await h.send("GET", h.cloudAPI + "/repositories/acme?q=name%20%3D%3D", bearer: token)
            #expect(bad.status == 400)
        }
    }

    @Test func pullRequestLifecycleReadsBranchTipsFromGit() async throws {
        try await EmulatorHarness.with { h in
            let ref = EmulatorRepositoryRef.cloud(workspace: "acme", slug: "app")
            try await h.emulator.createRepository(ref)
            let token = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
            let tips = try await EmulatorGit.pushTwoBranches(
                to: h.emulator.endpoints.cloudCloneURL(workspace: "acme", slug: "app"),
                auth: .basicAuth(username: "x-token-auth", password: token), feature: "pushbridge/app")

            let branch = try await h.send("GET", h.cloudAPI + "/repositories/acme/app/refs/branches/pushbridge/app", bearer: token)
            #expect(branch.status == 200)
            #expect(branch.json?["target"]?["hash"]?.stringValue == tips.feature)
            #expect(branch.json?["name"]?.stringValue == "pushbridge/app")
            #expect(try await h.send("GET", h.cloudAPI + "/repositories/acme/app/refs/branches/nope", bearer: token).status == 404)

            let create: JSONValue = [
                "title": "Build 1", "description": "Generated", "source": ["branch": ["name": "pushbridge/app"]],
                "destination": ["branch": ["name": "main"]], "close_source_branch": true,
            ]
            let created = try await h.send("POST", h.cloudAPI + "/repositories/acme/app/pullrequests", bearer: token, json: create)
            #expect(created.status == 201)
            let pr = try #require(created.json)
            let id = try #require(pr["id"]?.intValue)
            #expect(pr["state"]?.stringValue == "OPEN")
            #expect(pr["source"]?["branch"]?["name"]?.stringValue == "pushbridge/app")
            #expect(tips.feature.hasPrefix(pr["source"]?["commit"]?["hash"]?.stringValue ?? "x"))
            #expect(tips.main.hasPrefix(pr["destination"]?["commit"]?["hash"]?.stringValue ?? "x"))
            #expect(created.header("Location") == pr["links"]?["self"]?["href"]?.stringValue)

            let q = #"source.branch.name="pushbridge/app" AND destination.branch.name="main" AND state="OPEN""#
            let found = try await h.send(
                "GET",
                h.cloudAPI + "/repositories/acme/app/pullrequests?q=\(q.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)",
                bearer: token)
            #expect(found.json?["values"]?.arrayValue?.compactMap { $0["id"]?.intValue } == [id])
            let other = #"source.branch.name="other" AND state="OPEN""#
            let notFound = try await h.send(
                "GET",
                h.cloudAPI + "/repositories/acme/app/pullrequests?q=\(other.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)",
                bearer: token)
            #expect(notFound.json?["values"]?.arrayValue?.isEmpty == true)

            let updated = try await h.send(
                "PUT", h.cloudAPI + "/repositories/acme/app/pullrequests/\(id)", bearer: token,
                json: ["title": "Build 2", "description": "Regenerated"])
            #expect(updated.status == 200)
            #expect(updated.json?["title"]?.stringValue == "Build 2")

            let comment = try await h.send(
                "POST", h.cloudAPI + "/repositories/acme/app/pullrequests/\(id)/comments", bearer: token,
                json: ["content": ["raw": "Looks generated."]])
            #expect(comment.status == 201)
            #expect(comment.json?["content"]?["raw"]?.stringValue == "Looks generated.")

            let stored = try #require(await h.emulator.pullRequest(in: ref, id: id))
            #expect(stored.title == "Build 2")
            #expect(stored.description == "Regenerated")
            #expect(stored.closeSourceBranch)
            #expect(stored.comments.map(\.text) == ["Looks generated."])
            #expect(stored.author == "alice")
            #expect(await h.emulator.counters().pullRequestsCreated["acme/app"] == 1)

            // Same source and destination again: the open pull request comes back, no second one.
            let duplicate = try await h.send("POST", h.cloudAPI + "/repositories/acme/app/pullrequests", bearer: token, json: create)
            #expect(duplicate.json?["id"]?.intValue == id)
            #expect(await h.emulator.pullRequests(in: ref).count == 1)

            // Creating a pull request needs pullrequest:write; a missing title is a 400.
            let readOnly = try await h.emulator.issueTokens(product: .cloud, username: "alice", scopes: ["repository"]).accessToken
            #expect(try await h.send("POST", h.cloudAPI + "/repositories/acme/app/pullrequests", bearer: readOnly, json: create).status == 403)
            let noTitle = try await h.send(
                "POST", h.cloudAPI + "/repositories/acme/app/pullrequests", bearer: token,
                json: ["source": ["branch": ["name": "pushbridge/app"]]])
            #expect(noTitle.status == 400)
            // Nothing to merge: main into main's ancestor.
            let empty = try await h.send(
                "POST", h.cloudAPI + "/repositories/acme/app/pullrequests", bearer: token,
                json: ["title": "t", "source": ["branch": ["name": "main"]], "destination": ["branch": ["name": "pushbridge/app"]]])
            #expect(empty.status == 400)
        }
    }
}

/// git CLI helpers for the emulator tests. Credentials travel in the environment, never in URLs or arguments.
enum EmulatorGit {
    struct Tips: Sendable {
        let main: String
        let feature: String
    }

    /// Clones `url` (empty repository), commits on `main`, pushes it, then a second commit on `feature`.
    static func pushTwoBranches(to url: URL, auth: GitClientEnvironment, feature: String) async throws -> Tips {
        try await withTemporaryDirectory { dir in
            let env = auth.environment
            try await runGit(["clone", "--quiet", url.absoluteString, "work"], in: dir, env: env)
            let work = dir.appendingPathComponent("work")
            try await runGit(["checkout", "--quiet", "-b", "main"], in: work, env: env)
            try Data("hello\n".utf8).write(to: work.appendingPathComponent("README.md"))
            try await runGit(["add", "."], in: work, env: env)
            try await runGit(["commit", "--quiet", "-m", "initial"], in: work, env: env)
            try await runGit(["push", "--quiet", "origin", "main"], in: work, env: env)
            try await runGit(["checkout", "--quiet", "-b", feature], in: work, env: env)
            try Data("generated\n".utf8).write(to: work.appendingPathComponent("gen.txt"))
            try await runGit(["add", "."], in: work, env: env)
            try await runGit(["commit", "--quiet", "-m", "generated"], in: work, env: env)
            try await runGit(["push", "--quiet", "origin", feature], in: work, env: env)
            let main = try await runGit(["rev-parse", "main"], in: work).trimmingCharacters(in: .whitespacesAndNewlines)
            let tip = try await runGit(["rev-parse", feature], in: work).trimmingCharacters(in: .whitespacesAndNewlines)
            return Tips(main: main, feature: tip)
        }
    }
}
