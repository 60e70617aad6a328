import BitbucketEmulator
import Foundation
import OpenAPIKit30
import TestSupport
import Testing

/// Checks the emulator against Atlassian's published OpenAPI descriptions (`../shared/bitbucket-openapi/`).
@Suite(
    "Contract: emulator vs. official OpenAPI descriptions",
    .enabled(if: ContractDocuments.available, "../shared/bitbucket-openapi/ is absent; contract tests skipped"))
struct ContractTests {
    /// Fields real Bitbucket sends that the published schemas do not declare (checked against Atlassian's docs
    /// and live responses quoted in public client code). Anything else undeclared fails the test.
    static let cloudUndeclared: Set<String> = [
        "slug",  // repository: returned by the API, used in URLs; the schema only has full_name
        "workspace",  // repository: the owning workspace object
        "username",  // user: still returned by GET /user
        "description",  // pullrequest: the raw description next to `summary`
    ]
    static let dataCenterUndeclared: Set<String> = [
        "isDefault",  // branch: DC names the flag isDefault (the schema says `default`)
        "author",  // pull request: the author participant
        "existingPullRequest",  // 409 DuplicatePullRequestException payload
        "currentVersion", "expectedVersion", "pullRequest",  // 409 PullRequestOutOfDateException payload
        "permissions", "expiryDays", "user",  // raw access token details
    ]

    @Test func everyRESTRouteExistsInTheSpecAndOthersAreDocumentedExceptions() async throws {
        let emulator = try await BitbucketEmulator.start()
        let routes = emulator.routes
        try await emulator.stop()
        let cloud = try ContractDocuments.document(.cloud)
        let dc = try ContractDocuments.document(.dataCenter)
        var restCount = 0
        for route in routes {
            let doc = route.product == .cloud ? cloud : dc
            switch route.kind {
            case .rest:
                restCount += 1
                let specPath = try #require(route.specPath, "REST route \(route) has no spec path")
                #expect(
                    ContractDocuments.operation(doc, path: specPath, method: route.method) != nil,
                    "\(route.method) \(specPath) (\(route.product)) is not in the OpenAPI description")
            case .oauth, .git, .identity:
                // The documented non-spec routes: OAuth endpoints, git smart HTTP, application-link whoami.
                let candidate = route.template.hasPrefix("/rest") ? String(route.template.dropFirst(5)) : route.template
                #expect(
                    ContractDocuments.operation(doc, path: candidate, method: route.method) == nil,
                    "\(route) is in the spec; it should be a .rest route")
            }
        }
        #expect(restCount >= 30)
        // The table covers what the brief requires.
        let ids = Set(routes.map { "\($0.method) \($0.template)" })
        for required in [
            "GET /2.0/user/workspaces", "POST /2.0/repositories/{workspace}/{repo_slug}",
            "GET /2.0/repositories/{workspace}/{repo_slug}/pullrequests", "POST /site/oauth2/access_token",
            "PUT /rest/api/1.0/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}",
            "PUT /rest/access-tokens/1.0/projects/{projectKey}/repos/{repositorySlug}",
            "POST /plugins/servlet/oauth/access-token", "POST /scm/{projectKey}/{repositorySlug}.git/git-receive-pack",
        ] {
            #expect(ids.contains(required), "missing route \(required)")
        }
    }

    private struct Sample {
        let product: BitbucketProduct
        let specPath: String
        let method: String
        let response: EmulatorHTTPResponse
    }

    @Test func responsesValidateAgainstTheSpecSchemas() async throws {
        let cloudDoc = try ContractDocuments.document(.cloud)
        let dcDoc = try ContractDocuments.document(.dataCenter)
        let samples: [Sample] = try await EmulatorHarness.with { h in
            var out: [Sample] = []
            func take(_ product: BitbucketProduct, _ spec: String, _ method: String, _ r: EmulatorHTTPResponse) {
                out.append(Sample(product: product, specPath: spec, method: method, response: r))
            }
            let ct = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
            let api = h.cloudAPI
            let repo = "/repositories/{workspace}/{repo_slug}"
            take(.cloud, "/user", "GET", try await h.send("GET", api + "/user", bearer: ct))
            take(.cloud, "/user/workspaces", "GET", try await h.send("GET", api + "/user/workspaces", bearer: ct))
            take(.cloud, repo, "POST", try await h.send(
                "POST", api + "/repositories/acme/app", bearer: ct, json: ["scm": "git", "project": ["key": "PROJ"]]))
            take(.cloud, repo, "POST", try await h.send("POST", api + "/repositories/acme/app", bearer: ct, json: ["scm": "git"]))
            take(.cloud, repo, "GET", try await h.send("GET", api + "/repositories/acme/app", bearer: ct))
            take(.cloud, repo, "GET", try await h.send("GET", api + "/repositories/acme/none", bearer: ct))
            take(.cloud, "/repositories/{workspace}", "GET", try await h.send("GET", api + "/repositories/acme", bearer: ct))
            _ = try await EmulatorGit.pushTwoBranches(
                to: h.emulator.endpoints.cloudCloneURL(workspace: "acme", slug: "app"),
                auth: .basicAuth(username: "x-token-auth", password: ct), feature: "gen")
            take(.cloud, repo + "/refs/branches/{name}", "GET", try await h.send("GET", api + "/repositories/acme/app/refs/branches/gen", bearer: ct))
            take(.cloud, repo + "/refs/branches", "GET", try await h.send("GET", api + "/repositories/acme/app/refs/branches", bearer: ct))
            let prBody: JSONValue = ["title": "T", "source": ["branch": ["name": "gen"]], "destination": ["branch": ["name": "main"]]]
            let pr = try await h.send("POST", api + "/repositories/acme/app/pullrequests", bearer: ct, json: prBody)
            take(.cloud, repo + "/pullrequests", "POST", pr)
            let id = pr.json?["id"]?.intValue ?? 0
            take(.cloud, repo + "/pullrequests", "GET", try await h.send("GET", api + "/repositories/acme/app/pullrequests", bearer: ct))
            take(.cloud, repo + "/pullrequests/{pull_request_id}", "GET", try await h.send("GET", api + "/repositories/acme/app/pullrequests/\(id)", bearer: ct))
            take(.cloud, repo + "/pullrequests/{pull_request_id}", "PUT", try await h.send(
                "PUT", api + "/repositories/acme/app/pullrequests/\(id)", bearer: ct, json: ["title": "T2"]))
            take(.cloud, repo + "/pullrequests/{pull_request_id}/comments", "POST", try await h.send(
                "POST", api + "/repositories/acme/app/pullrequests/\(id)/comments", bearer: ct, json: ["content": ["raw": "hi"]]))
            take(.cloud, repo + "/pullrequests/{pull_request_id}/comments", "GET", try await h.send(
                "GET", api + "/repositories/acme/app/pullrequests/\(id)/comments", bearer: ct))

            let dt = try await h.emulator.issueTokens(product: .dataCenter, username: "alice").accessToken
            let base = "/rest/api/1.0/projects/PRJ/repos"
            let drepo = "/api/latest/projects/{projectKey}/repos/{repositorySlug}"
            take(.dataCenter, "/api/latest/projects", "GET", try await h.send("GET", "/rest/api/1.0/projects", bearer: dt))
            take(.dataCenter, "/api/latest/projects/{projectKey}", "GET", try await h.send("GET", "/rest/api/1.0/projects/PRJ", bearer: dt))
            take(.dataCenter, "/api/latest/projects/{projectKey}/repos", "POST", try await h.send("POST", base, bearer: dt, json: ["name": "svc"]))
            take(.dataCenter, "/api/latest/projects/{projectKey}/repos", "POST", try await h.send("POST", base, bearer: dt, json: ["name": "svc"]))
            take(.dataCenter, "/api/latest/projects/{projectKey}/repos", "GET", try await h.send("GET", base, bearer: dt))
            take(.dataCenter, "/api/latest/repos", "GET", try await h.send("GET", "/rest/api/1.0/repos?name=svc", bearer: dt))
            take(.dataCenter, drepo, "GET", try await h.send("GET", base + "/svc", bearer: dt))
            take(.dataCenter, drepo, "GET", try await h.send("GET", base + "/none", bearer: dt))
            take(.dataCenter, drepo + "/default-branch", "GET", try await h.send("GET", base + "/svc/default-branch", bearer: dt))
            _ = try await EmulatorGit.pushTwoBranches(
                to: h.emulator.endpoints.dataCenterCloneURL(project: "PRJ", slug: "svc"), auth: .bearerAuth(token: dt), feature: "gen")
            take(.dataCenter, drepo + "/branches/default", "GET", try await h.send("GET", base + "/svc/branches/default", bearer: dt))
            take(.dataCenter, drepo + "/branches", "GET", try await h.send("GET", base + "/svc/branches", bearer: dt))
            let dprBody: JSONValue = ["title": "T", "fromRef": ["id": "refs/heads/gen"], "toRef": ["id": "refs/heads/main"]]
            let dpr = try await h.send("POST", base + "/svc/pull-requests", bearer: dt, json: dprBody)
            take(.dataCenter, drepo + "/pull-requests", "POST", dpr)
            take(.dataCenter, drepo + "/pull-requests", "POST", try await h.send("POST", base + "/svc/pull-requests", bearer: dt, json: dprBody))
            let did = dpr.json?["id"]?.intValue ?? 0
            take(.dataCenter, drepo + "/pull-requests", "GET", try await h.send("GET", base + "/svc/pull-requests", bearer: dt))
            take(.dataCenter, drepo + "/pull-requests/{pullRequestId}", "GET", try await h.send("GET", base + "/svc/pull-requests/\(did)", bearer: dt))
            take(.dataCenter, drepo + "/pull-requests/{pullRequestId}", "PUT", try await h.send(
                "PUT", base + "/svc/pull-requests/\(did)", bearer: dt, json: ["version": 0, "title": "T2"]))
            take(.dataCenter, drepo + "/pull-requests/{pullRequestId}", "PUT", try await h.send(
                "PUT", base + "/svc/pull-requests/\(did)", bearer: dt, json: ["version": 0, "title": "T3"]))
            take(.dataCenter, drepo + "/pull-requests/{pullRequestId}/comments", "POST", try await h.send(
                "POST", base + "/svc/pull-requests/\(did)/comments", bearer: dt, json: ["text": "hi"]))
            take(.dataCenter, "/access-tokens/latest/projects/{projectKey}/repos/{repositorySlug}", "PUT", try await h.send(
                "PUT", "/rest/access-tokens/1.0/projects/PRJ/repos/svc", bearer: dt,
                json: ["name": "t", "permissions": ["REPO_WRITE"], "expiryDays": 5]))
            return out
        }

        var failures: [String] = []
        var statuses: Set<String> = []
        for s in samples {
            let doc = s.product == .cloud ? cloudDoc : dcDoc
            let label = "\(s.method) \(s.specPath) → \(s.response.status)"
            statuses.insert("\(s.product) \(s.response.status)")
            guard let schema = ContractDocuments.responseSchema(doc, path: s.specPath, method: s.method, status: s.response.status) else {
                failures.append("\(label): status not documented with a JSON schema")
                continue
            }
            guard let body = s.response.json else {
                failures.append("\(label): body is not JSON")
                continue
            }
            var validator = ContractSchemaValidator(components: doc.components)
            validator.allowedUndeclared = s.product == .cloud ? Self.cloudUndeclared : Self.dataCenterUndeclared
            validator.nullAllowedForOptional = s.product == .dataCenter
            for e in validator.validate(body, against: schema) { failures.append("\(label): \(e)") }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        // The samples did cover success, errors and conflicts in both products.
        #expect(statuses.isSuperset(of: ["cloud 200", "cloud 201", "cloud 400", "cloud 404", "dataCenter 200", "dataCenter 201", "dataCenter 404", "dataCenter 409"]))
    }

    @Test func validatorCatchesWrongNamesAndTypes() throws {
        let doc = try ContractDocuments.document(.cloud)
        var v = ContractSchemaValidator(components: doc.components)
        v.allowedUndeclared = Self.cloudUndeclared
        let schema = JSONSchema.reference(.component(named: "repository"))
        let good: JSONValue = [
            "type": "repository", "full_name": "a/b", "is_private": true,
            "links": ["clone": [["name": "https", "href": "http://h/a/b.git"]]],
        ]
        #expect(v.validate(good, against: schema).isEmpty)
        let wrongType: JSONValue = ["type": "repository", "is_private": "yes"]
        #expect(v.validate(wrongType, against: schema).contains { $0.contains("is_private") })
        let wrongName: JSONValue = ["type": "repository", "isPrivate": true]
        #expect(v.validate(wrongName, against: schema).contains { $0.contains("isPrivate") })
        let badLink: JSONValue = ["type": "repository", "links": ["clone": [["url": "x"]]]]
        #expect(!v.validate(badLink, against: schema).isEmpty)
        let missingType: JSONValue = ["full_name": "a/b"]
        #expect(v.validate(missingType, against: schema).contains { $0.contains("\"type\"") })
        let badEnum: JSONValue = ["type": "repository", "scm": "hg"]
        #expect(v.validate(badEnum, against: schema).contains { $0.contains("scm") })
        let error = JSONSchema.reference(.component(named: "error"))
        #expect(v.validate(["type": "error", "error": ["message": "m"]], against: error).isEmpty)
        #expect(!v.validate(["type": "error", "error": ["msg": "m"]], against: error).isEmpty)
    }
}
