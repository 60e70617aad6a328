import BitbucketEmulator
import Foundation
import TestSupport
import Testing

@Suite("Emulator: Bitbucket Data Center REST 1.0")
struct EmulatorDataCenterTests {
    static let base = "/rest/api/1.0/projects/PRJ/repos"

    @Test func projectPaginationUsesStartAndLimit() async throws {
        try await EmulatorHarness.with { h in
            for i in 0..<6 { try await h.emulator.createDataCenterProject(key: "P\(i)", name: "Project \(i)") }
            try await h.emulator.createDataCenterProject(key: "SECRET", members: ["mallory"])
            let token = try await h.emulator.issueTokens(product: .dataCenter, username: "alice").accessToken
            var start: Int? = 0
            var keys: [String] = []
            var pages = 0
            while let s = start {
                let page = try await h.send("GET", "/rest/api/1.0/projects?limit=3&start=\(s)", bearer: token)
                #expect(page.status == 200)
                #expect(page.json?["limit"]?.intValue == 3)
                #expect(page.json?["start"]?.intValue == s)
                keys += page.json?["values"]?.arrayValue?.compactMap { $0["key"]?.stringValue } ?? []
                pages += 1
                start = page.json?["isLastPage"]?.boolValue == true ? nil : page.json?["nextPageStart"]?.intValue
            }
            // PRJ (alice is a member) + P0…P5 (open to all); SECRET is hidden from alice.
            #expect(keys == ["PRJ", "P0", "P1", "P2", "P3", "P4", "P5"])
            #expect(pages == 3)
            let latest = try await h.send("GET", "/rest/api/latest/projects?name=project%205", bearer: token)
            #expect(latest.json?["values"]?.arrayValue?.compactMap { $0["key"]?.stringValue } == ["P5"])
            #expect(try await h.send("GET", "/rest/api/1.0/projects").status == 401)
        }
    }

    @Test func createRepositoryConflictsAndDefaultBranch() async throws {
        try await EmulatorHarness.with { h in
            let token = try await h.emulator.issueTokens(product: .dataCenter, username: "alice").accessToken
            let created = try await h.send(
                "POST", Self.base, bearer: token, headers: [("X-Atlassian-Token", "no-check")],
                json: ["name": "Billing Service", "scmId": "git", "forkable": true])
            #expect(created.status == 201)
            let repo = try #require(created.json)
            #expect(repo["slug"]?.stringValue == "billing-service")
            #expect(repo["project"]?["key"]?.stringValue == "PRJ")
            #expect(repo["scmId"]?.stringValue == "git")
            let clone = repo["links"]?["clone"]?.arrayValue?.first { $0["name"]?.stringValue == "http" }
            #expect(clone?["href"]?.stringValue == h.emulator.endpoints.dataCenterCloneURL(project: "PRJ", slug: "billing-service").absoluteString)

            let again = try await h.send("POST", Self.base, bearer: token, json: ["name": "Billing Service"])
            #expect(again.status == 409)
            #expect(again.json?["errors"]?.arrayValue?.first?["message"]?.stringValue != nil)
            #expect(again.json?["errors"]?.arrayValue?.first?["exceptionName"]?.stringValue?.hasPrefix("com.atlassian.bitbucket") == true)

            let fetched = try await h.send("GET", Self.base + "/billing-service", bearer: token)
            #expect(fetched.json?["id"] == repo["id"])
            let missing = try await h.send("GET", Self.base + "/nope", bearer: token)
            #expect(missing.status == 404)
            #expect(missing.json?["errors"]?.arrayValue?.first?["exceptionName"]?.stringValue == "com.atlassian.bitbucket.repository.NoSuchRepositoryException")

            let defaultBranch = try await h.send("GET", Self.base + "/billing-service/default-branch", bearer: token)
            #expect(defaultBranch.json?["id"]?.stringValue == "refs/heads/main")
            // Empty repository: the older endpoint answers 204.
            #expect(try await h.send("GET", Self.base + "/billing-service/branches/default", bearer: token).status == 204)

            // A form body without the XSRF header is refused, like DC does.
            let xsrf = try await h.send("POST", Self.base, bearer: token, form: [("name", "x")])
            #expect(xsrf.status == 403)

            // Projects the user cannot see do not exist for them.
            let mallory = try await h.emulator.issueTokens(product: .dataCenter, username: "mallory").accessToken
            #expect(try await h.send("GET", Self.base + "/billing-service", bearer: mallory).status == 404)

            let list = try await h.send("GET", Self.base + "?limit=10", bearer: token)
            #expect(list.json?["values"]?.arrayValue?.count == 1)
            #expect(list.json?["isLastPage"]?.boolValue == true)
        }
    }

    @Test func pullRequestsDuplicateAndStaleVersion() async throws {
        try await EmulatorHarness.with { h in
            let ref = EmulatorRepositoryRef.dataCenter(project: "PRJ", slug: "app")
            try await h.emulator.createRepository(ref)
            let token = try await h.emulator.issueTokens(product: .dataCenter, username: "alice").accessToken
            let tips = try await EmulatorGit.pushTwoBranches(
                to: h.emulator.endpoints.dataCenterCloneURL(project: "PRJ", slug: "app"), auth: .bearerAuth(token: token),
                feature: "feature/gen")

            let default1 = try await h.send("GET", Self.base + "/app/branches/default", bearer: token)
            #expect(default1.json?["latestCommit"]?.stringValue == tips.main)
            let branches = try await h.send("GET", Self.base + "/app/branches?filterText=gen", bearer: token)
            #expect(branches.json?["values"]?.arrayValue?.compactMap { $0["displayId"]?.stringValue } == ["feature/gen"])
            #expect(branches.json?["values"]?.arrayValue?.first?["latestCommit"]?.stringValue == tips.feature)

            let repoRef: JSONValue = ["slug": "app", "project": ["key": "PRJ"]]
            let body: JSONValue = [
                "title": "Generated", "description": "Build 7",
                "fromRef": ["id": "refs/heads/feature/gen", "repository": repoRef],
                "toRef": ["id": "refs/heads/main", "repository": repoRef],
            ]
            let created = try await h.send("POST", Self.base + "/app/pull-requests", bearer: token, json: body)
            #expect(created.status == 201)
            let pr = try #require(created.json)
            let id = try #require(pr["id"]?.intValue)
            #expect(pr["version"]?.intValue == 0)
            #expect(pr["fromRef"]?["latestCommit"]?.stringValue == tips.feature)
            #expect(pr["toRef"]?["latestCommit"]?.stringValue == tips.main)
            #expect(pr["author"]?["user"]?["name"]?.stringValue == "alice")

            let duplicate = try await h.send("POST", Self.base + "/app/pull-requests", bearer: token, json: body)
            #expect(duplicate.status == 409)
            let error = duplicate.json?["errors"]?.arrayValue?.first
            #expect(error?["exceptionName"]?.stringValue == "com.atlassian.bitbucket.pull.DuplicatePullRequestException")
            #expect(error?["existingPullRequest"]?["id"]?.intValue == id)

            let found = try await h.send(
                "GET", Self.base + "/app/pull-requests?at=refs/heads/feature/gen&direction=OUTGOING&state=OPEN", bearer: token)
            #expect(found.json?["values"]?.arrayValue?.compactMap { $0["id"]?.intValue } == [id])
            let incoming = try await h.send(
                "GET", Self.base + "/app/pull-requests?at=refs/heads/feature/gen&direction=INCOMING", bearer: token)
            #expect(incoming.json?["values"]?.arrayValue?.isEmpty == true)

            let updated = try await h.send(
                "PUT", Self.base + "/app/pull-requests/\(id)", bearer: token, json: ["version": 0, "title": "Generated v2"])
            #expect(updated.status == 200)
            #expect(updated.json?["version"]?.intValue == 1)
            let stale = try await h.send(
                "PUT", Self.base + "/app/pull-requests/\(id)", bearer: token, json: ["version": 0, "title": "lost update"])
            #expect(stale.status == 409)
            let staleError = stale.json?["errors"]?.arrayValue?.first
            #expect(staleError?["exceptionName"]?.stringValue == "com.atlassian.bitbucket.pull.PullRequestOutOfDateException")
            #expect(staleError?["currentVersion"]?.intValue == 1)
            #expect(try await h.send("PUT", Self.base + "/app/pull-requests/\(id)", bearer: token, json: ["title": "x"]).status == 400)

            let comment = try await h.send(
                "POST", Self.base + "/app/pull-requests/\(id)/comments", bearer: token, json: ["text": "Generated by pushbridge"])
            #expect(comment.status == 201)
            #expect(comment.json?["text"]?.stringValue == "Generated by pushbridge")

            let stored = try #require(await h.emulator.pullRequest(in: ref, id: id))
            #expect(stored.title == "Generated v2")
            #expect(stored.version == 1)
            #expect(stored.comments.map(\.text) == ["Generated by pushbridge"])

            // OAuth 2.0 scopes: REPO_READ can read but neither write nor create repositories.
            let reader = try await h.emulator.issueTokens(product: .dataCenter, username: "alice", scopes: ["REPO_READ"]).accessToken
            #expect(try await h.send("GET", Self.base + "/app/pull-requests/\(id)", bearer: reader).status == 200)
            #expect(try await h.send("POST", Self.base + "/app/pull-requests/\(id)/comments", bearer: reader, json: ["text": "x"]).status == 201)
            #expect(try await h.send("PUT", Self.base + "/app/pull-requests/\(id)", bearer: reader, json: ["version": 1, "title": "y"]).status == 401)
            #expect(try await h.send("POST", Self.base, bearer: reader, json: ["name": "nope"]).status == 401)

            // Declined elsewhere: the next create makes a second pull request.
            #expect(await h.emulator.setPullRequestState(in: ref, id: id, .declined))
            #expect(try await h.send("POST", Self.base + "/app/pull-requests", bearer: token, json: body).status == 201)
            #expect(await h.emulator.counters().pullRequestsCreated["PRJ/app"] == 2)
        }
    }

    @Test func httpAccessTokenIsShownOnceAndScoped() async throws {
        try await EmulatorHarness.with { h in
            try await h.emulator.createRepository(.dataCenter(project: "PRJ", slug: "app"))
            try await h.emulator.createRepository(.dataCenter(project: "PRJ", slug: "other"))
            let oauth = try await h.emulator.issueTokens(product: .dataCenter, username: "alice").accessToken
            let minted = try await h.send(
                "PUT", "/rest/access-tokens/1.0/projects/PRJ/repos/app", bearer: oauth,
                json: ["name": "pushbridge", "permissions": ["REPO_WRITE"], "expiryDays": 30])
            #expect(minted.status == 200)
            let token = try #require(minted.json?["token"]?.stringValue)
            #expect(minted.json?["name"]?.stringValue == "pushbridge")

            #expect(try await h.send("GET", Self.base + "/app", bearer: token).status == 200)
            #expect(try await h.send("GET", Self.base + "/other", bearer: token).status == 401)
            // A token cannot mint tokens.
            let nested = try await h.send(
                "PUT", "/rest/access-tokens/1.0/projects/PRJ/repos/app", bearer: token,
                json: ["name": "again", "permissions": ["REPO_READ"]])
            #expect(nested.status == 401)
            let bad = try await h.send(
                "PUT", "/rest/access-tokens/1.0/projects/PRJ/repos/app", bearer: oauth,
                json: ["name": "x", "permissions": ["PROJECT_ADMIN"]])
            #expect(bad.status == 400)
            #expect(await h.emulator.counters().tokensIssued["http-access-token"] == 1)
        }
    }
}
