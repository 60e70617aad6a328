import Foundation

/// Bitbucket Data Center REST 1.0 handlers (plus HTTP access tokens and the application-link `whoami`).
extension EmulatorService {
    // MARK: Renderers

    private var dcRoot: String { endpoints.dataCenter.absoluteString }

    private func selfLinks(_ href: String) -> JSONValue { ["self": [["href": .string(href)]]] }

    func dcUserJSON(_ username: String) async -> JSONValue {
        guard let u = await state.user(username) else {
            return ["name": .string(username), "slug": .string(username), "displayName": .string(username)]
        }
        return [
            "name": .string(u.username), "emailAddress": .string(u.email), "id": .int(u.id),
            "displayName": .string(u.displayName), "active": true, "slug": .string(u.username), "type": "NORMAL",
            "links": selfLinks("\(dcRoot)/users/\(u.username)"),
        ]
    }

    func dcProjectJSON(_ p: EmulatorProject) -> JSONValue {
        [
            "key": .string(p.key), "id": .int(p.id), "name": .string(p.name), "description": "",
            "public": .bool(p.members.isEmpty), "type": "NORMAL", "links": selfLinks("\(dcRoot)/projects/\(p.key)"),
        ]
    }

    func dcRepositoryJSON(_ r: EmulatorRepository) async -> JSONValue {
        guard case .dataCenter(let key, let slug) = r.ref else { return .null }
        let project: JSONValue = await state.dcProject(key).map(dcProjectJSON) ?? ["key": .string(key)]
        return [
            "slug": .string(slug), "id": .int(r.id), "name": .string(r.name), "description": .string(r.description),
            "hierarchyId": .string(String(r.uuid.filter(\.isHexDigit).prefix(20))), "scmId": "git",
            "state": "AVAILABLE", "statusMessage": "Available", "forkable": true, "public": .bool(!r.isPrivate),
            "archived": false, "project": project,
            "links": [
                "clone": [
                    [
                        "href": .string(endpoints.dataCenterCloneURL(project: key, slug: slug).absoluteString),
                        "name": "http",
                    ]
                ],
                "self": [["href": .string("\(dcRoot)/projects/\(key)/repos/\(slug)/browse")]],
            ],
        ]
    }

    private func dcBranchJSON(name: String, commit: String, isDefault: Bool) -> JSONValue {
        [
            "id": .string("refs/heads/\(name)"), "displayId": .string(name), "type": "BRANCH",
            "latestCommit": .string(commit), "latestChangeset": .string(commit), "isDefault": .bool(isDefault),
        ]
    }

    func dcPullRequestJSON(_ pr: EmulatorPullRequest, repo: EmulatorRepository, tips: [String: String]) async
        -> JSONValue
    {
        guard case .dataCenter(let key, let slug) = repo.ref else { return .null }
        let repoJSON = await dcRepositoryJSON(repo)
        func ref(_ branch: String) -> JSONValue {
            var r: [String: JSONValue] = [
                "id": .string("refs/heads/\(branch)"), "displayId": .string(branch), "type": "BRANCH",
                "repository": repoJSON,
            ]
            if let tip = tips[branch] { r["latestCommit"] = .string(tip) }
            return .object(r)
        }
        func participant(_ username: String, role: String) async -> JSONValue {
            ["user": await dcUserJSON(username), "role": .string(role), "approved": false, "status": "UNAPPROVED"]
        }
        var reviewers: [JSONValue] = []
        for r in pr.reviewers { reviewers.append(await participant(r, role: "REVIEWER")) }
        var out: [String: JSONValue] = [
            "id": .int(pr.id), "version": .int(pr.version), "title": .string(pr.title),
            "state": .string(pr.state.rawValue), "open": .bool(pr.state == .open), "closed": .bool(pr.state != .open),
            "draft": .bool(pr.draft), "createdDate": .int(Self.millis(pr.createdAt)),
            "updatedDate": .int(Self.millis(pr.updatedAt)), "fromRef": ref(pr.sourceBranch),
            "toRef": ref(pr.destinationBranch), "locked": false,
            "author": await participant(pr.author, role: "AUTHOR"), "reviewers": .array(reviewers),
            "participants": [], "links": selfLinks("\(dcRoot)/projects/\(key)/repos/\(slug)/pull-requests/\(pr.id)"),
        ]
        // DC leaves `description` out when it is empty.
        if !pr.description.isEmpty { out["description"] = .string(pr.description) }
        return .object(out)
    }

    private func dcCommentJSON(_ c: EmulatorComment) async -> JSONValue {
        [
            "id": .int(c.id), "version": 0, "text": .string(c.text), "author": await dcUserJSON(c.author),
            "createdDate": .int(Self.millis(c.createdAt)), "updatedDate": .int(Self.millis(c.createdAt)),
            "comments": [], "severity": "NORMAL", "state": "OPEN", "threadResolved": false,
        ]
    }

    // MARK: Access

    private static let authorisationException = "com.atlassian.bitbucket.AuthorisationException"
    private static let writeScopes = ["REPO_WRITE", "REPO_ADMIN", "PROJECT_ADMIN", "ADMIN", "SYSTEM_ADMIN"]
    private static let adminScopes = ["REPO_ADMIN", "PROJECT_ADMIN", "ADMIN", "SYSTEM_ADMIN"]

    private func dcProject(_ key: String, _ p: Principal) async throws(APIError) -> EmulatorProject {
        guard let project = await state.dcProject(key.uppercased()),
            await state.canSeeDCProject(project.key, username: p.username)
        else {
            throw .dc(404, "Project \(key) does not exist.", exception: "com.atlassian.bitbucket.project.NoSuchProjectException")
        }
        if case .httpAccessToken(let tokenProject, _, _) = p.via, tokenProject != project.key {
            throw .dc(401, "You are not permitted to access this resource", exception: Self.authorisationException)
        }
        return project
    }

    /// Resolves `{projectKey}/{repositorySlug}`; `write` requires REPO_WRITE from HTTP access tokens.
    private func dcRepository(_ req: EmulatorRequest, _ p: Principal, write: Bool) async throws(APIError)
        -> EmulatorRepository
    {
        let project = try await dcProject(req.param("projectKey"), p)
        let slug = req.param("repositorySlug")
        guard let repo = await state.repository(.dataCenter(project: project.key, slug: slug)) else {
            throw .dc(
                404, "Repository \(project.key)/\(slug) does not exist.",
                exception: "com.atlassian.bitbucket.repository.NoSuchRepositoryException")
        }
        switch p.via {
        case .oauth2, .control:
            // OAuth 2.0 scopes: REPO_READ / PUBLIC_REPOS read; writing needs REPO_WRITE or more.
            if write && !p.scopes.contains(where: Self.writeScopes.contains) {
                throw .dc(401, "You are not permitted to access this resource", exception: Self.authorisationException)
            }
        default:
            break
        }
        if case .httpAccessToken(_, let tokenRepo, let permissions) = p.via {
            if let tokenRepo, tokenRepo != slug {
                throw .dc(401, "You are not permitted to access this resource", exception: Self.authorisationException)
            }
            let writeGrants = ["REPO_WRITE", "REPO_ADMIN", "PROJECT_WRITE", "PROJECT_ADMIN"]
            if write && !permissions.contains(where: writeGrants.contains) {
                throw .dc(401, "You are not permitted to access this resource", exception: Self.authorisationException)
            }
        }
        return repo
    }

    private func tipsOf(_ repo: EmulatorRepository) async throws -> [String: String] {
        Dictionary(try await GitCLI.branches(repo.gitDirectory).map { ($0.name, $0.commit) }, uniquingKeysWith: { a, _ in a })
    }

    private static func branchName(_ refID: String) -> String {
        refID.hasPrefix("refs/heads/") ? String(refID.dropFirst("refs/heads/".count)) : refID
    }

    private static func validation(_ context: String, _ message: String) -> APIError {
        .dc(
            400, message, exception: "com.atlassian.bitbucket.validation.ArgumentValidationException",
            extra: ["context": .string(context)])
    }

    // MARK: Projects and repositories

    func dcListProjects(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        var values: [JSONValue] = []
        let name = req.query("name")?.lowercased()
        for project in await state.dcProjects() {
            guard await state.canSeeDCProject(project.key, username: p.username) else { continue }
            if case .httpAccessToken(let key, _, _) = p.via, key != project.key { continue }
            if let name, !project.name.lowercased().contains(name) { continue }
            values.append(dcProjectJSON(project))
        }
        return .json(200, dcPage(values, req))
    }

    func dcGetProject(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        return .json(200, dcProjectJSON(try await dcProject(req.param("projectKey"), p)))
    }

    private func dcRepositoryList(
        _ p: Principal, projectKey: String?, name: String?, projectName: String?, visibility: String?
    ) async -> [JSONValue] {
        let repos = await state.repositories { r in
            guard case .dataCenter(let key, _) = r.ref else { return false }
            return projectKey == nil || key == projectKey
        }
        var values: [JSONValue] = []
        for r in repos {
            guard case .dataCenter(let key, let slug) = r.ref,
                await state.canSeeDCProject(key, username: p.username)
            else { continue }
            if case .httpAccessToken(let tk, let tr, _) = p.via, tk != key || (tr != nil && tr != slug) { continue }
            if let name, !r.name.lowercased().contains(name.lowercased()) { continue }
            if let projectName, !((await state.dcProject(key))?.name.lowercased().contains(projectName.lowercased()) ?? false) {
                continue
            }
            if let visibility, (visibility.lowercased() == "public") == r.isPrivate { continue }
            values.append(await dcRepositoryJSON(r))
        }
        return values
    }

    func dcListRepositories(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        let project = try await dcProject(req.param("projectKey"), p)
        // `name` is not a documented parameter here (it is on `/repos`); accepted as a convenience filter.
        let values = await dcRepositoryList(
            p, projectKey: project.key, name: req.query("name"), projectName: nil, visibility: nil)
        return .json(200, dcPage(values, req))
    }

    func dcSearchRepositories(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        let values = await dcRepositoryList(
            p, projectKey: req.query("projectkey")?.uppercased(), name: req.query("name"),
            projectName: req.query("projectname"), visibility: req.query("visibility"))
        return .json(200, dcPage(values, req))
    }

    func dcCreateRepository(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        try await checkXSRF(req)
        let project = try await dcProject(req.param("projectKey"), p)
        if case .httpAccessToken(_, let repoSlug, let permissions) = p.via,
            repoSlug != nil || !permissions.contains("PROJECT_ADMIN")
        {
            throw APIError.dc(401, "You are not permitted to create repositories in \(project.key)", exception: Self.authorisationException)
        }
        switch p.via {
        case .oauth2, .control:
            if !p.scopes.contains(where: Self.adminScopes.contains) {
                throw APIError.dc(
                    401, "You are not permitted to create repositories in \(project.key)", exception: Self.authorisationException)
            }
        default:
            break
        }
        guard let body = req.json, case .object = body else { throw Self.validation("name", "A repository name is required.") }
        guard let name = body["name"]?.stringValue?.trimmingCharacters(in: .whitespaces), !name.isEmpty else {
            throw Self.validation("name", "A repository name is required.")
        }
        if let scm = body["scmId"]?.stringValue, scm != "git" { throw Self.validation("scmId", "Only git is supported.") }
        let slug = Self.dcSlug(name)
        guard let firstScalar = name.unicodeScalars.first, CharacterSet.alphanumerics.contains(firstScalar), !slug.isEmpty else {
            throw Self.validation(
                "name",
                "Repository names must begin with a letter or number and may contain spaces, hyphens, underscores and periods.")
        }
        let isPublic = body["public"]?.boolValue ?? false
        guard
            let repo = try await createRepository(
                .dataCenter(project: project.key, slug: slug), name: name,
                description: body["description"]?.stringValue ?? "", isPrivate: !isPublic, projectKey: project.key)
        else {
            throw APIError.dc(
                409, "This repository URL is already taken by '\(name)' in '\(project.name)'",
                exception: "com.atlassian.bitbucket.repository.DuplicateRepositoryNameException")
        }
        if let branch = body["defaultBranch"]?.stringValue, !branch.isEmpty {
            let short = Self.branchName(branch)
            await state.setDefaultBranch(repo.ref, short)
            _ = try await GitCLI.run(["symbolic-ref", "HEAD", "refs/heads/\(short)"], gitDir: repo.gitDirectory)
        }
        let stored = await state.repository(repo.ref) ?? repo
        return .json(201, await dcRepositoryJSON(stored))
    }

    /// DC derives the slug from the name: lower-case, runs of other characters become `-`.
    static func dcSlug(_ name: String) -> String {
        var out = ""
        for ch in name.lowercased() {
            if ch.isASCII && (ch.isLetter || ch.isNumber || ch == "." || ch == "_" || ch == "-") {
                out.append(ch)
            } else if !out.hasSuffix("-") {
                out.append("-")
            }
        }
        return out.trimmingCharacters(in: CharacterSet(charactersIn: "-"))
    }

    func dcGetRepository(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        return .json(200, await dcRepositoryJSON(try await dcRepository(req, p, write: false)))
    }

    func dcDefaultBranch(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        let repo = try await dcRepository(req, p, write: false)
        return .json(
            200,
            [
                "id": .string("refs/heads/\(repo.defaultBranch)"), "displayId": .string(repo.defaultBranch),
                "type": "BRANCH",
            ])
    }

    func dcBranchesDefault(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        let repo = try await dcRepository(req, p, write: false)
        guard let tip = try await GitCLI.tip(repo.gitDirectory, branch: repo.defaultBranch) else {
            // The repository is empty (or the default branch was never pushed).
            return .empty(204)
        }
        return .json(200, dcBranchJSON(name: repo.defaultBranch, commit: tip, isDefault: true))
    }

    func dcListBranches(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        let repo = try await dcRepository(req, p, write: false)
        let filter = req.query("filterText")?.lowercased()
        var branches = try await GitCLI.branches(repo.gitDirectory).sorted { $0.name < $1.name }
        if let filter, !filter.isEmpty {
            branches = branches.filter { $0.name.lowercased().contains(filter) }
            if req.query("boostMatches") == "true" {
                branches.sort { a, _ in a.name.lowercased() == filter }
            }
        } else if let idx = branches.firstIndex(where: { $0.name == repo.defaultBranch }) {
            branches.insert(branches.remove(at: idx), at: 0)
        }
        let values = branches.map {
            dcBranchJSON(name: $0.name, commit: $0.commit, isDefault: $0.name == repo.defaultBranch)
        }
        return .json(200, dcPage(values, req))
    }

    // MARK: Pull requests

    private func dcPullRequestID(_ req: EmulatorRequest, _ repo: EmulatorRepository) throws(APIError) -> Int {
        guard let id = Int(req.param("pullRequestId")) else { throw noSuchPullRequest(req.param("pullRequestId"), repo) }
        return id
    }

    private func noSuchPullRequest(_ id: String, _ repo: EmulatorRepository) -> APIError {
        .dc(
            404, "Pull request \(id) does not exist in \(repo.ref.description).",
            exception: "com.atlassian.bitbucket.pull.NoSuchPullRequestException")
    }

    func dcListPullRequests(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        let repo = try await dcRepository(req, p, write: false)
        let state = (req.query("state") ?? "OPEN").uppercased()
        let outgoing = (req.query("direction") ?? "INCOMING").uppercased() == "OUTGOING"
        let at = req.query("at").map(Self.branchName)
        let filter = req.query("filterText")?.lowercased()
        let draft = req.query("draft").map { $0.lowercased() == "true" }
        var prs = await self.state.pullRequests(repo.ref)
        prs = prs.filter { pr in
            if state != "ALL" && pr.state.rawValue != state { return false }
            if let at, (outgoing ? pr.sourceBranch : pr.destinationBranch) != at { return false }
            if let filter, !(pr.title.lowercased().contains(filter) || pr.description.lowercased().contains(filter)) {
                return false
            }
            if let draft, pr.draft != draft { return false }
            return true
        }
        if (req.query("order") ?? "NEWEST").uppercased() != "OLDEST" { prs.reverse() }
        let tips = try await tipsOf(repo)
        var values: [JSONValue] = []
        for pr in prs { values.append(await dcPullRequestJSON(pr, repo: repo, tips: tips)) }
        return .json(200, dcPage(values, req))
    }

    private func dcReviewers(_ body: JSONValue) async throws(APIError) -> [String]? {
        guard let list = body["reviewers"]?.arrayValue else { return nil }
        var out: [String] = []
        for entry in list {
            guard let name = entry["user"]?["name"]?.stringValue ?? entry["user"]?["slug"]?.stringValue,
                await state.user(name) != nil
            else {
                throw .dc(
                    409, "Errors encountered while adding some reviewers to this pull request.",
                    exception: "com.atlassian.bitbucket.pull.InvalidPullRequestReviewersException")
            }
            out.append(name)
        }
        return out
    }

    func dcCreatePullRequest(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        try await checkXSRF(req)
        let repo = try await dcRepository(req, p, write: true)
        guard let body = req.json, case .object = body else { throw Self.validation("title", "A title is required.") }
        guard let title = body["title"]?.stringValue, !title.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw Self.validation("title", "A title is required.")
        }
        guard let fromID = body["fromRef"]?["id"]?.stringValue else {
            throw Self.validation("fromRef", "The pull request must have a source ref.")
        }
        guard let toID = body["toRef"]?["id"]?.stringValue else {
            throw Self.validation("toRef", "The pull request must have a target ref.")
        }
        guard case .dataCenter(let key, let slug) = repo.ref else { throw Self.validation("toRef", "Wrong product") }
        for side in ["fromRef", "toRef"] {
            if let r = body[side]?["repository"] {
                let rs = r["slug"]?.stringValue
                let rk = r["project"]?["key"]?.stringValue?.uppercased()
                if (rs != nil && rs != slug) || (rk != nil && rk != key) {
                    throw Self.validation(side, "Pull requests between different repositories are not supported here.")
                }
            }
        }
        let source = Self.branchName(fromID)
        let destination = Self.branchName(toID)
        guard let sourceTip = try await GitCLI.tip(repo.gitDirectory, branch: source) else {
            throw APIError.dc(
                404, "Repository ref '\(fromID)' does not exist.",
                exception: "com.atlassian.bitbucket.repository.NoSuchBranchException")
        }
        guard let destinationTip = try await GitCLI.tip(repo.gitDirectory, branch: destination) else {
            throw APIError.dc(
                404, "Repository ref '\(toID)' does not exist.",
                exception: "com.atlassian.bitbucket.repository.NoSuchBranchException")
        }
        guard source != destination else {
            throw APIError.dc(
                409, "The source and target branches of a pull request must be different.",
                exception: "com.atlassian.bitbucket.pull.InvalidPullRequestTargetException")
        }
        if try await GitCLI.isAncestor(repo.gitDirectory, sourceTip, of: destinationTip) {
            throw APIError.dc(
                409, "Branch \(destination) is already up-to-date with branch \(source) in repository \(slug).",
                exception: "com.atlassian.bitbucket.pull.EmptyPullRequestException")
        }
        let reviewers = try await dcReviewers(body) ?? []
        let outcome = await state.createPullRequest(
            repo.ref, title: title, description: body["description"]?.stringValue ?? "", source: source,
            destination: destination, draft: body["draft"]?.boolValue ?? false, closeSourceBranch: false,
            reviewers: reviewers, author: p.username)
        let tips = try await tipsOf(repo)
        switch outcome {
        case .created(let pr):
            return .json(201, await dcPullRequestJSON(pr, repo: repo, tips: tips))
        case .duplicate(let existing):
            throw APIError.dc(
                409, "Only one pull request may be open for a given source and target branch",
                exception: "com.atlassian.bitbucket.pull.DuplicatePullRequestException",
                extra: ["existingPullRequest": await dcPullRequestJSON(existing, repo: repo, tips: tips)])
        }
    }

    func dcGetPullRequest(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        let repo = try await dcRepository(req, p, write: false)
        let id = try dcPullRequestID(req, repo)
        guard let pr = await state.pullRequest(repo.ref, id: id) else { throw noSuchPullRequest(String(id), repo) }
        return .json(200, await dcPullRequestJSON(pr, repo: repo, tips: try await tipsOf(repo)))
    }

    func dcUpdatePullRequest(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        try await checkXSRF(req)
        let repo = try await dcRepository(req, p, write: true)
        let id = try dcPullRequestID(req, repo)
        guard let body = req.json, case .object = body else { throw Self.validation("version", "A version is required.") }
        guard let version = body["version"]?.intValue else {
            throw Self.validation("version", "You must specify the version of the pull request you are updating.")
        }
        if let t = body["title"], t.stringValue?.trimmingCharacters(in: .whitespaces).isEmpty ?? true {
            throw Self.validation("title", "A title is required.")
        }
        let destination = body["toRef"]?["id"]?.stringValue.map(Self.branchName)
        if let destination, try await GitCLI.tip(repo.gitDirectory, branch: destination) == nil {
            throw APIError.dc(
                404, "Repository ref 'refs/heads/\(destination)' does not exist.",
                exception: "com.atlassian.bitbucket.repository.NoSuchBranchException")
        }
        let reviewers = try await dcReviewers(body)
        let title = body["title"]?.stringValue
        let description = body["description"]?.stringValue
        let draft = body["draft"]?.boolValue
        let outcome = await state.updatePullRequest(
            repo.ref, id: id, expectedVersion: version,
            { pr in
                if let title { pr.title = title }
                if let description { pr.description = description }
                if let destination { pr.destinationBranch = destination }
                if let reviewers { pr.reviewers = reviewers }
                if let draft { pr.draft = draft }
            })
        let tips = try await tipsOf(repo)
        switch outcome {
        case .updated(let pr):
            return .json(200, await dcPullRequestJSON(pr, repo: repo, tips: tips))
        case .notFound:
            throw noSuchPullRequest(String(id), repo)
        case .stale(let current):
            throw APIError.dc(
                409,
                "You are attempting to modify a pull request based on out-of-date information.",
                exception: "com.atlassian.bitbucket.pull.PullRequestOutOfDateException",
                extra: [
                    "currentVersion": .int(current.version), "expectedVersion": .int(version),
                    "pullRequest": await dcPullRequestJSON(current, repo: repo, tips: tips),
                ])
        case .notOpen(let current):
            throw APIError.dc(
                409, "Pull request \(current.id) is \(current.state.rawValue.lowercased()) and cannot be updated.",
                exception: "com.atlassian.bitbucket.pull.IllegalPullRequestStateException")
        }
    }

    func dcListComments(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        let repo = try await dcRepository(req, p, write: false)
        let id = try dcPullRequestID(req, repo)
        guard let pr = await state.pullRequest(repo.ref, id: id) else { throw noSuchPullRequest(String(id), repo) }
        var values: [JSONValue] = []
        for c in pr.comments { values.append(await dcCommentJSON(c)) }
        return .json(200, dcPage(values, req))
    }

    func dcCreateComment(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        try await checkXSRF(req)
        let repo = try await dcRepository(req, p, write: false)
        let id = try dcPullRequestID(req, repo)
        guard let text = req.json?["text"]?.stringValue, !text.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw Self.validation("text", "A comment must have text.")
        }
        guard let c = await state.addComment(repo.ref, pullRequest: id, text: text, author: p.username) else {
            throw noSuchPullRequest(String(id), repo)
        }
        return .json(201, await dcCommentJSON(c))
    }

    // MARK: HTTP access tokens and identity

    func dcCreateAccessToken(_ req: EmulatorRequest, repositoryScoped: Bool) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        try await checkXSRF(req)
        if case .httpAccessToken = p.via {
            throw APIError.dc(
                401, "HTTP access tokens cannot be used to create other access tokens.",
                exception: Self.authorisationException)
        }
        let project = try await dcProject(req.param("projectKey"), p)
        var slug: String?
        if repositoryScoped {
            slug = try await dcRepository(req, p, write: false).slug
        }
        guard let body = req.json, case .object = body else { throw Self.validation("name", "A token name is required.") }
        guard let name = body["name"]?.stringValue, !name.isEmpty else {
            throw Self.validation("name", "A token name is required.")
        }
        let permissions = (body["permissions"]?.arrayValue ?? []).compactMap(\.stringValue)
        let allowed: Set<String> =
            repositoryScoped
            ? ["REPO_READ", "REPO_WRITE", "REPO_ADMIN"]
            : ["PROJECT_READ", "PROJECT_WRITE", "PROJECT_ADMIN", "REPO_READ", "REPO_WRITE", "REPO_ADMIN"]
        guard !permissions.isEmpty, permissions.allSatisfy(allowed.contains) else {
            throw Self.validation("permissions", "Permissions must be one or more of \(allowed.sorted().joined(separator: ", ")).")
        }
        let expiryDays = body["expiryDays"]?.intValue
        let token = await state.issueHTTPAccessToken(
            username: p.username, projectKey: project.key, repositorySlug: slug, permissions: permissions,
            expiryDays: expiryDays)
        var out: [String: JSONValue] = [
            "id": .string(String(Int.random(in: 100_000_000_000...999_999_999_999))), "name": .string(name),
            "createdDate": .string(Self.iso8601(await state.now())), "permissions": .array(permissions.map { .string($0) }),
            "user": await dcUserJSON(p.username), "token": .string(token),
        ]
        if let expiryDays { out["expiryDays"] = .int(expiryDays) }
        return .json(200, .object(out))
    }

    func dcWhoami(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let p = try await dcPrincipal(req)
        var r = EmulatorResponse.text(200, p.username)
        r.headers.append(("X-AUSERNAME", p.username))
        return r
    }
}
