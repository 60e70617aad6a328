import Foundation

/// Bitbucket Cloud REST 2.0 handlers.
extension EmulatorService {
    // MARK: Renderers

    private var api: String { endpoints.cloudAPI.absoluteString }
    private var site: String { endpoints.cloudSite.absoluteString }

    private func link(_ href: String) -> JSONValue { ["href": .string(href)] }

    func cloudUserJSON(_ u: EmulatorUser) -> JSONValue {
        [
            "type": "user", "uuid": .string(u.uuid), "account_id": .string(u.accountID), "nickname": .string(u.username),
            "username": .string(u.username), "display_name": .string(u.displayName), "account_status": "active",
            "has_2fa_enabled": false, "is_staff": false,
            "links": [
                "self": link("\(api)/users/\(FormCoding.percentEncode(u.uuid))"),
                "html": link("\(site)/\(u.username)/"),
                "avatar": link("\(site)/account/\(u.username)/avatar/"),
                "repositories": link("\(api)/repositories/\(u.username)"),
            ],
        ]
    }

    private func cloudAccountJSON(_ username: String) async -> JSONValue {
        if let u = await state.user(username) { return cloudUserJSON(u) }
        return ["type": "user", "nickname": .string(username), "display_name": .string(username)]
    }

    func cloudWorkspaceBaseJSON(_ ws: EmulatorWorkspace) -> JSONValue {
        [
            "type": "workspace_base", "uuid": .string(ws.uuid), "slug": .string(ws.slug),
            "links": [
                "self": link("\(api)/workspaces/\(ws.slug)"),
                "avatar": link("\(site)/workspaces/\(ws.slug)/avatar/"),
            ],
        ]
    }

    func cloudRepositoryJSON(_ r: EmulatorRepository, minimal: Bool = false) async -> JSONValue {
        guard case .cloud(let ws, let slug) = r.ref else { return .null }
        let full = "\(ws)/\(slug)"
        var links: [String: JSONValue] = [
            "self": link("\(api)/repositories/\(full)"),
            "html": link("\(site)/\(full)"),
            "avatar": link("\(site)/\(full)/avatar/32/"),
        ]
        var out: [String: JSONValue] = [
            "type": "repository", "full_name": .string(full), "name": .string(r.name), "uuid": .string(r.uuid),
        ]
        if minimal {
            out["links"] = .object(links)
            return .object(out)
        }
        links["pullrequests"] = link("\(api)/repositories/\(full)/pullrequests")
        links["commits"] = link("\(api)/repositories/\(full)/commits")
        links["clone"] = [
            ["name": "https", "href": .string(endpoints.cloudCloneURL(workspace: ws, slug: slug).absoluteString)]
        ]
        out["links"] = .object(links)
        out["slug"] = .string(slug)
        out["is_private"] = .bool(r.isPrivate)
        out["scm"] = "git"
        out["description"] = .string(r.description)
        out["created_on"] = .string(Self.iso8601(r.createdAt))
        out["updated_on"] = .string(Self.iso8601(r.createdAt))
        out["size"] = 0
        out["language"] = ""
        out["has_issues"] = false
        out["has_wiki"] = false
        out["fork_policy"] = "no_public_forks"
        out["mainbranch"] = ["type": "branch", "name": .string(r.defaultBranch)]
        if let ws = await state.workspace(ws) {
            out["workspace"] = [
                "type": "workspace", "uuid": .string(ws.uuid), "slug": .string(ws.slug), "name": .string(ws.name),
                "links": [
                    "self": link("\(api)/workspaces/\(ws.slug)"), "html": link("\(site)/\(ws.slug)/"),
                    "avatar": link("\(site)/workspaces/\(ws.slug)/avatar/"),
                ],
            ]
            out["owner"] = [
                "type": "team", "uuid": .string(ws.uuid), "username": .string(ws.slug),
                "display_name": .string(ws.name),
                "links": [
                    "self": link("\(api)/workspaces/\(ws.slug)"), "html": link("\(site)/\(ws.slug)/"),
                    "avatar": link("\(site)/workspaces/\(ws.slug)/avatar/"),
                ],
            ]
        }
        if let p = await state.cloudProject(workspace: ws, key: r.projectKey) {
            out["project"] = [
                "type": "project", "key": .string(p.key), "uuid": .string(p.uuid), "name": .string(p.name),
                "links": [
                    "html": link("\(site)/\(ws)/workspace/projects/\(p.key)"),
                    "avatar": link("\(site)/\(ws)/workspace/projects/\(p.key)/avatar/32"),
                ],
            ]
        }
        return .object(out)
    }

    private func cloudBranchJSON(_ r: EmulatorRepository, name: String, commit: GitCLI.CommitInfo) -> JSONValue {
        guard case .cloud(let ws, let slug) = r.ref else { return .null }
        let base = "\(api)/repositories/\(ws)/\(slug)"
        return [
            "type": "branch", "name": .string(name),
            "target": [
                "type": "commit", "hash": .string(commit.hash), "date": .string(commit.date),
                "message": .string(commit.message),
                "author": ["type": "author", "raw": .string(commit.author)],
                "parents": .array(commit.parents.map { ["type": "commit", "hash": .string($0)] }),
            ],
            "links": [
                "self": link("\(base)/refs/branches/\(name)"), "commits": link("\(base)/commits/\(name)"),
                "html": link("\(site)/\(ws)/\(slug)/branch/\(name)"),
            ],
            "merge_strategies": ["merge_commit", "squash", "fast_forward"],
            "default_merge_strategy": "merge_commit",
        ]
    }

    /// Cloud abbreviates commit hashes in pull request endpoints to 12 characters.
    private static func shortHash(_ h: String?) -> JSONValue? { h.map { .string(String($0.prefix(12))) } }

    func cloudPullRequestJSON(_ pr: EmulatorPullRequest, repo: EmulatorRepository, tips: [String: String]) async
        -> JSONValue
    {
        guard case .cloud(let ws, let slug) = repo.ref else { return .null }
        let base = "\(api)/repositories/\(ws)/\(slug)/pullrequests/\(pr.id)"
        let repoJSON = await cloudRepositoryJSON(repo, minimal: true)
        func endpoint(_ branch: String) -> JSONValue {
            var e: [String: JSONValue] = ["branch": ["name": .string(branch)], "repository": repoJSON]
            if let h = Self.shortHash(tips[branch]) { e["commit"] = ["hash": h] }
            return .object(e)
        }
        var reviewers: [JSONValue] = []
        for r in pr.reviewers { reviewers.append(await cloudAccountJSON(r)) }
        return [
            "type": "pullrequest", "id": .int(pr.id), "title": .string(pr.title),
            "description": .string(pr.description),
            "summary": ["raw": .string(pr.description), "markup": "markdown", "html": .string(pr.description)],
            "state": .string(pr.state.rawValue), "draft": .bool(pr.draft),
            "close_source_branch": .bool(pr.closeSourceBranch), "author": await cloudAccountJSON(pr.author),
            "source": endpoint(pr.sourceBranch), "destination": endpoint(pr.destinationBranch),
            "comment_count": .int(pr.comments.count), "task_count": 0,
            "created_on": .string(Self.iso8601(pr.createdAt)), "updated_on": .string(Self.iso8601(pr.updatedAt)),
            "reviewers": .array(reviewers), "participants": [], "reason": "",
            "links": [
                "self": link(base), "html": link("\(site)/\(ws)/\(slug)/pull-requests/\(pr.id)"),
                "comments": link("\(base)/comments"), "commits": link("\(base)/commits"),
                "diff": link("\(base)/diff"), "diffstat": link("\(base)/diffstat"),
                "activity": link("\(base)/activity"), "approve": link("\(base)/approve"),
                "merge": link("\(base)/merge"), "decline": link("\(base)/decline"),
            ],
        ]
    }

    private func cloudCommentJSON(_ c: EmulatorComment, pr: EmulatorPullRequest, repo: EmulatorRepository) async
        -> JSONValue
    {
        guard case .cloud(let ws, let slug) = repo.ref else { return .null }
        let prBase = "\(api)/repositories/\(ws)/\(slug)/pullrequests/\(pr.id)"
        return [
            "type": "pullrequest_comment", "id": .int(c.id),
            "content": ["raw": .string(c.text), "markup": "markdown", "html": .string(c.text)],
            "user": await cloudAccountJSON(c.author), "created_on": .string(Self.iso8601(c.createdAt)),
            "updated_on": .string(Self.iso8601(c.createdAt)), "deleted": false, "pending": false,
            "pullrequest": [
                "type": "pullrequest", "id": .int(pr.id), "title": .string(pr.title),
                "links": ["self": link(prBase), "html": link("\(site)/\(ws)/\(slug)/pull-requests/\(pr.id)")],
            ],
            "links": [
                "self": link("\(prBase)/comments/\(c.id)"),
                "html": link("\(site)/\(ws)/\(slug)/pull-requests/\(pr.id)/_/diff#comment-\(c.id)"),
            ],
        ]
    }

    // MARK: Access

    /// Resolves `{workspace}/{repo_slug}` and checks the principal may read (or write) it.
    private func cloudRepository(_ req: EmulatorRequest, _ p: Principal, write: Bool) async throws(APIError)
        -> EmulatorRepository
    {
        let ws = req.param("workspace")
        let slug = req.param("repo_slug")
        guard let repo = await state.repository(.cloud(workspace: ws, slug: slug)) else {
            throw .cloud(404, "Repository \(ws)/\(slug) not found")
        }
        let member = await state.workspace(ws)?.members.contains(p.username) ?? false
        if (repo.isPrivate || write) && !member {
            throw .cloud(403, "You don't have access to this repository.")
        }
        return repo
    }

    private func tips(_ repo: EmulatorRepository) async throws -> [String: String] {
        Dictionary(try await GitCLI.branches(repo.gitDirectory).map { ($0.name, $0.commit) }, uniquingKeysWith: { a, _ in a })
    }

    private func bbql(_ req: EmulatorRequest) throws(APIError) -> BBQLQuery? {
        guard let q = req.query("q"), !q.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
        do {
            return try BBQLQuery(q)
        } catch {
            throw .cloud(400, "Invalid query: \(error.message)")
        }
    }

    private func sortValues(_ values: [JSONValue], _ sort: String?) -> [JSONValue] {
        guard let sort, !sort.isEmpty else { return values }
        let descending = sort.hasPrefix("-")
        let path = (descending ? String(sort.dropFirst()) : sort).split(separator: ".").map(String.init)
        func key(_ v: JSONValue) -> String {
            var cur: JSONValue? = v
            for k in path { cur = cur?[k] }
            switch cur {
            case .string(let s): return s
            case .number(let d): return String(format: "%020.3f", d)
            default: return ""
            }
        }
        return values.sorted { descending ? key($0) > key($1) : key($0) < key($1) }
    }

    // MARK: Handlers

    func cloudUser(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "account")
        guard let u = await state.user(p.username) else { throw APIError.cloud(404, "User not found") }
        return .json(200, cloudUserJSON(u))
    }

    func cloudUserWorkspaces(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        var list = await state.workspaces(forUser: p.username)
        if let admin = req.query("administrator") {
            let wantAdmin = admin.lowercased() == "true"
            list = list.filter { $0.administrators.contains(p.username) == wantAdmin }
        }
        let values: [JSONValue] = list.map { ws in
            [
                "type": "workspace_access", "administrator": .bool(ws.administrators.contains(p.username)),
                "workspace": cloudWorkspaceBaseJSON(ws),
            ]
        }
        return .json(200, try cloudPage(values, req))
    }

    func cloudListRepositories(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "repository")
        let slug = req.param("workspace")
        guard let ws = await state.workspace(slug) else { throw APIError.cloud(404, "Workspace \(slug) not found") }
        let member = ws.members.contains(p.username)
        let repos = await state.repositories { r in
            if case .cloud(let w, _) = r.ref, w == slug { return member || !r.isPrivate }
            return false
        }
        let query = try bbql(req)
        var values: [JSONValue] = []
        for r in repos {
            let json = await cloudRepositoryJSON(r)
            if query?.matches(json) ?? true { values.append(json) }
        }
        return .json(200, try cloudPage(sortValues(values, req.query("sort")), req))
    }

    func cloudGetRepository(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "repository")
        let repo = try await cloudRepository(req, p, write: false)
        return .json(200, await cloudRepositoryJSON(repo))
    }

    func cloudCreateRepository(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "repository:admin")
        let wsSlug = req.param("workspace")
        let slug = req.param("repo_slug")
        guard let ws = await state.workspace(wsSlug) else { throw APIError.cloud(404, "Workspace \(wsSlug) not found") }
        guard ws.members.contains(p.username) else {
            throw APIError.cloud(400, "You do not have permission to create repositories in workspace \(wsSlug)")
        }
        guard Self.isValidCloudSlug(slug) else {
            throw APIError.cloud(
                400, "Invalid slug: \"\(slug)\". A slug may contain lower-case letters, digits, '-', '_' and '.'")
        }
        let body = req.json ?? .object([:])
        guard case .object = body else { throw APIError.cloud(400, "The request body must be a JSON object") }
        if let scm = body["scm"]?.stringValue, scm != "git" {
            throw APIError.cloud(400, "scm: Only git repositories are supported")
        }
        let isPrivate = body["is_private"]?.boolValue ?? true
        var projectKey: String
        if let key = body["project"]?["key"]?.stringValue {
            guard await state.cloudProject(workspace: wsSlug, key: key) != nil else {
                throw APIError.cloud(400, "project: Project with key \(key) does not exist in workspace \(wsSlug)")
            }
            projectKey = key
        } else if let first = await state.cloudProjects(workspace: wsSlug).first {
            projectKey = first.key
        } else {
            // Every Cloud workspace has at least one project; create the default one on first use.
            projectKey = "PROJ"
            _ = try? await state.createProject(
                product: .cloud, workspace: wsSlug, key: projectKey, name: "Untitled project", members: [])
        }
        guard
            let repo = try await createRepository(
                .cloud(workspace: wsSlug, slug: slug), name: body["name"]?.stringValue ?? slug,
                description: body["description"]?.stringValue ?? "", isPrivate: isPrivate, projectKey: projectKey)
        else {
            throw APIError.cloud(400, "Repository with this Slug and Owner already exists.")
        }
        return .json(200, await cloudRepositoryJSON(repo))
    }

    static func isValidCloudSlug(_ s: String) -> Bool {
        guard !s.isEmpty, s.count <= 62, let first = s.unicodeScalars.first else { return false }
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyz0123456789-_.")
        guard s.unicodeScalars.allSatisfy(allowed.contains) else { return false }
        return CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyz0123456789").contains(first)
    }

    func cloudListBranches(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "repository")
        let repo = try await cloudRepository(req, p, write: false)
        let query = try bbql(req)
        var values: [JSONValue] = []
        for b in try await GitCLI.branches(repo.gitDirectory).sorted(by: { $0.name < $1.name }) {
            guard let commit = try await GitCLI.commit(repo.gitDirectory, b.commit) else { continue }
            let json = cloudBranchJSON(repo, name: b.name, commit: commit)
            if query?.matches(json) ?? true { values.append(json) }
        }
        return .json(200, try cloudPage(values, req))
    }

    func cloudGetBranch(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "repository")
        let repo = try await cloudRepository(req, p, write: false)
        let name = req.param("name")
        guard let tip = try await GitCLI.tip(repo.gitDirectory, branch: name),
            let commit = try await GitCLI.commit(repo.gitDirectory, tip)
        else { throw APIError.cloud(404, "Branch \"\(name)\" not found") }
        return .json(200, cloudBranchJSON(repo, name: name, commit: commit))
    }

    func cloudListPullRequests(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "pullrequest")
        let repo = try await cloudRepository(req, p, write: false)
        let query = try bbql(req)
        var states = Set(req.queryAll("state").map { $0.uppercased() })
        // Without `state`, Cloud lists open pull requests only — unless the query itself constrains state.
        if states.isEmpty && !(query?.mentions("state") ?? false) { states = ["OPEN"] }
        let tips = try await tips(repo)
        var values: [JSONValue] = []
        for pr in await state.pullRequests(repo.ref).reversed() {
            if !states.isEmpty && !states.contains(pr.state.rawValue) { continue }
            let json = await cloudPullRequestJSON(pr, repo: repo, tips: tips)
            if query?.matches(json) ?? true { values.append(json) }
        }
        return .json(200, try cloudPage(values, req))
    }

    private func cloudReviewers(_ body: JSONValue) async throws(APIError) -> [String]? {
        guard let list = body["reviewers"]?.arrayValue else { return nil }
        var out: [String] = []
        for entry in list {
            let uuid = entry["uuid"]?.stringValue
            let accountID = entry["account_id"]?.stringValue
            let nickname = entry["nickname"]?.stringValue ?? entry["username"]?.stringValue
            var found: String?
            for u in await state.users.values
            where u.uuid == uuid || u.accountID == accountID || (nickname != nil && u.username == nickname) {
                found = u.username
            }
            guard let found else { throw .cloud(400, "reviewers: Malformed reviewers list or unknown user") }
            out.append(found)
        }
        return out
    }

    func cloudCreatePullRequest(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "pullrequest:write")
        let repo = try await cloudRepository(req, p, write: true)
        guard let body = req.json, case .object = body else {
            throw APIError.cloud(400, "The request body must be a JSON object")
        }
        guard let title = body["title"]?.stringValue, !title.isEmpty else {
            throw APIError.cloud(400, "title: This field is required.")
        }
        guard let source = body["source"]?["branch"]?["name"]?.stringValue, !source.isEmpty else {
            throw APIError.cloud(400, "source: This field is required.")
        }
        let destination = body["destination"]?["branch"]?["name"]?.stringValue ?? repo.defaultBranch
        guard let sourceTip = try await GitCLI.tip(repo.gitDirectory, branch: source) else {
            throw APIError.cloud(400, "source: Branch not found: \(source)")
        }
        guard let destinationTip = try await GitCLI.tip(repo.gitDirectory, branch: destination) else {
            throw APIError.cloud(400, "destination: Branch not found: \(destination)")
        }
        guard source != destination else {
            throw APIError.cloud(400, "source and destination branches must be different")
        }
        if try await GitCLI.isAncestor(repo.gitDirectory, sourceTip, of: destinationTip) {
            throw APIError.cloud(400, "There are no changes to be pulled")
        }
        let reviewers = try await cloudReviewers(body) ?? []
        let outcome = await state.createPullRequest(
            repo.ref, title: title, description: body["description"]?.stringValue ?? "", source: source,
            destination: destination, draft: body["draft"]?.boolValue ?? false,
            closeSourceBranch: body["close_source_branch"]?.boolValue ?? false, reviewers: reviewers,
            author: p.username)
        let tips = try await tips(repo)
        switch outcome {
        case .created(let pr):
            let json = await cloudPullRequestJSON(pr, repo: repo, tips: tips)
            return .json(201, json, headers: [("Location", json["links"]?["self"]?["href"]?.stringValue ?? "")])
        case .duplicate(let pr):
            // Cloud answers a second create for the same source/destination with the open pull request.
            return .json(200, await cloudPullRequestJSON(pr, repo: repo, tips: tips))
        }
    }

    private func cloudPullRequestID(_ req: EmulatorRequest) throws(APIError) -> Int {
        guard let id = Int(req.param("pull_request_id")) else { throw .cloud(404, "Pull request not found") }
        return id
    }

    func cloudGetPullRequest(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "pullrequest")
        let repo = try await cloudRepository(req, p, write: false)
        guard let pr = await state.pullRequest(repo.ref, id: try cloudPullRequestID(req)) else {
            throw APIError.cloud(404, "Pull request not found")
        }
        return .json(200, await cloudPullRequestJSON(pr, repo: repo, tips: try await tips(repo)))
    }

    func cloudUpdatePullRequest(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "pullrequest:write")
        let repo = try await cloudRepository(req, p, write: true)
        let id = try cloudPullRequestID(req)
        guard let existing = await state.pullRequest(repo.ref, id: id) else {
            throw APIError.cloud(404, "Pull request not found")
        }
        guard existing.state == .open else { throw APIError.cloud(400, "Only open pull requests can be updated") }
        guard let body = req.json, case .object = body else {
            throw APIError.cloud(400, "The request body must be a JSON object")
        }
        if let t = body["title"], t.stringValue?.isEmpty ?? true {
            throw APIError.cloud(400, "title: This field may not be blank.")
        }
        let destination = body["destination"]?["branch"]?["name"]?.stringValue
        if let destination, try await GitCLI.tip(repo.gitDirectory, branch: destination) == nil {
            throw APIError.cloud(400, "destination: Branch not found: \(destination)")
        }
        let reviewers = try await cloudReviewers(body)
        let title = body["title"]?.stringValue
        let description = body["description"]?.stringValue
        let draft = body["draft"]?.boolValue
        let close = body["close_source_branch"]?.boolValue
        let outcome = await state.updatePullRequest(
            repo.ref, id: id,
            { pr in
                if let title { pr.title = title }
                if let description { pr.description = description }
                if let destination { pr.destinationBranch = destination }
                if let reviewers { pr.reviewers = reviewers }
                if let draft { pr.draft = draft }
                if let close { pr.closeSourceBranch = close }
            })
        let pr: EmulatorPullRequest
        switch outcome {
        case .updated(let updated): pr = updated
        case .notFound: throw APIError.cloud(404, "Pull request not found")
        case .stale, .notOpen: throw APIError.cloud(400, "Only open pull requests can be updated")
        }
        return .json(200, await cloudPullRequestJSON(pr, repo: repo, tips: try await tips(repo)))
    }

    func cloudListComments(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "pullrequest")
        let repo = try await cloudRepository(req, p, write: false)
        guard let pr = await state.pullRequest(repo.ref, id: try cloudPullRequestID(req)) else {
            throw APIError.cloud(404, "Pull request not found")
        }
        var values: [JSONValue] = []
        for c in pr.comments { values.append(await cloudCommentJSON(c, pr: pr, repo: repo)) }
        return .json(200, try cloudPage(values, req))
    }

    func cloudCreateComment(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await cloudPrincipal(req)
        try requireCloudScope(p, "pullrequest")
        let repo = try await cloudRepository(req, p, write: false)
        let id = try cloudPullRequestID(req)
        guard let raw = req.json?["content"]?["raw"]?.stringValue, !raw.isEmpty else {
            throw APIError.cloud(400, "content.raw: This field is required.")
        }
        guard let c = await state.addComment(repo.ref, pullRequest: id, text: raw, author: p.username),
            let pr = await state.pullRequest(repo.ref, id: id)
        else { throw APIError.cloud(404, "Pull request not found") }
        let json = await cloudCommentJSON(c, pr: pr, repo: repo)
        return .json(201, json, headers: [("Location", json["links"]?["self"]?["href"]?.stringValue ?? "")])
    }
}
