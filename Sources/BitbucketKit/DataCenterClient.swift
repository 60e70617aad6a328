import Foundation
import NIOHTTP1

/// Bitbucket Data Center / Server REST 1.0 client.
///
/// With an OAuth 2.0 access token (or HTTP access token) the credentials provider returns
/// ``Authorization/bearer(_:)``; for an application link (OAuth 1.0a) it returns
/// ``Authorization/oauth1(_:)`` and every request is signed. OAuth 1.0a tokens do not work for git:
/// mint an HTTP access token with ``createAccessToken(for:name:permissions:expiryDays:)``.
///
/// State-changing calls send `X-Atlassian-Token: no-check` (Bitbucket's XSRF check).
public struct DataCenterClient: BitbucketClient {
    public var product: BitbucketProduct { .dataCenter }
    public let endpoints: DataCenterEndpoints
    private let executor: RequestExecutor

    public init(
        endpoints: DataCenterEndpoints,
        credentials: any CredentialProvider,
        transport: BitbucketHTTPTransport,
        options: BitbucketClientOptions = .init()
    ) {
        self.endpoints = endpoints
        self.executor = options.executor(transport: transport, credentials: credentials)
    }

    private func api(_ segments: [String], query: [(String, String)] = []) throws -> URL {
        try URLBuilder.url(endpoints.baseURL, ["rest", "api", "1.0"] + segments, query: query)
    }

    private func repoPath(_ ref: RepositoryRef) -> [String] {
        ["projects", ref.namespace, "repos", ref.slug]
    }

    private func mutating<Body: Encodable>(_ method: HTTPMethod, _ url: URL, body: Body) throws -> APIRequest {
        var request = try APIRequest.json(method, url, body: body)
        request.headers.add(name: "X-Atlassian-Token", value: "no-check")
        return request
    }

    private static func limit(_ pageSize: Int?) -> Int {
        min(max(pageSize ?? 50, 1), 1000)
    }

    private func page<DTO: Decodable & Sendable, T: Sendable>(
        _ segments: [String],
        query: [(String, String)],
        cursor: PageCursor?,
        pageSize: Int?,
        as: DTO.Type,
        map: (DTO) -> T?
    ) async throws -> Page<T> {
        let start = try Pagination.dataCenterStart(cursor)
        let url = try api(segments, query: query + [("start", String(start)), ("limit", String(Self.limit(pageSize)))])
        let body = try await executor.sendJSON(APIRequest(method: .GET, url: url), as: DCPage<DTO>.self)
        let isLast = body.isLastPage ?? true
        let next = isLast ? nil : (body.nextPageStart ?? (start + body.values.count))
        return Page(values: body.values.compactMap(map), nextCursor: Pagination.dataCenterCursor(nextStart: next))
    }

    /// Resolves the user through `/plugins/servlet/applinks/whoami` (works for OAuth 1.0a and
    /// bearer tokens), then reads `/rest/api/1.0/users/{slug}`.
    public func currentUser() async throws -> BitbucketUser {
        var request = APIRequest(
            method: .GET,
            url: try URLBuilder.url(endpoints.baseURL, ["plugins", "servlet", "applinks", "whoami"])
        )
        request.headers.add(name: "Accept", value: "text/plain, */*")
        let response = try await executor.send(request)
        let username = (response.headers.first(name: "X-AUSERNAME")
            ?? String(decoding: response.body, as: UTF8.self)).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !username.isEmpty, username.count < 256, !username.contains("<") else {
            throw BitbucketError(code: .unauthorized, status: response.status, message: "Bitbucket did not identify the user")
        }
        let userRequest = APIRequest(method: .GET, url: try api(["users", username]))
        let userResponse = try await executor.send(userRequest, accept: [200, 404])
        guard userResponse.status == 200 else {
            return BitbucketUser(id: username, username: username, displayName: username)
        }
        let user = try RequestExecutor.decode(DCUserDTO.self, from: userResponse.body)
        return BitbucketUser(
            id: user.id.map(String.init) ?? username,
            username: user.slug ?? user.name ?? username,
            displayName: user.displayName ?? user.name ?? username,
            emailAddress: user.emailAddress
        )
    }

    public func namespaces(cursor: PageCursor?, pageSize: Int?) async throws -> Page<BitbucketNamespace> {
        try await page(["projects"], query: [], cursor: cursor, pageSize: pageSize, as: DCProjectDTO.self) { project in
            guard let key = project.key else { return nil }
            return BitbucketNamespace(kind: .project, key: key, name: project.name ?? key, id: project.id.map(String.init))
        }
    }

    /// Without `query`: `/projects/{key}/repos`; with it: `/repos?projectkey={key}&name={query}`.
    public func repositories(in namespace: String, query: String?, cursor: PageCursor?, pageSize: Int?) async throws
        -> Page<Repository>
    {
        if let query, !query.isEmpty {
            return try await page(
                ["repos"],
                query: [("projectkey", namespace), ("name", query)],
                cursor: cursor,
                pageSize: pageSize,
                as: DCRepositoryDTO.self
            ) { $0.model(defaultBranch: nil) }
        }
        return try await page(
            ["projects", namespace, "repos"],
            query: [],
            cursor: cursor,
            pageSize: pageSize,
            as: DCRepositoryDTO.self
        ) { $0.model(defaultBranch: nil) }
    }

    public func repository(_ ref: RepositoryRef) async throws -> Repository? {
        let response = try await executor.send(APIRequest(method: .GET, url: try api(repoPath(ref))), accept: [200, 404])
        guard response.status == 200 else { return nil }
        let dto = try RequestExecutor.decode(DCRepositoryDTO.self, from: response.body)
        var defaultBranch = dto.defaultBranch.map(Self.shortBranchName)
        if defaultBranch == nil {
            defaultBranch = try await configuredDefaultBranch(ref)
        }
        guard let repository = dto.model(defaultBranch: defaultBranch) else {
            throw BitbucketError(code: .decoding, message: "repository response lacks slug or project")
        }
        return repository
    }

    /// `GET …/default-branch`; `nil` when none is configured or it does not exist yet.
    private func configuredDefaultBranch(_ ref: RepositoryRef) async throws -> String? {
        let request = APIRequest(method: .GET, url: try api(repoPath(ref) + ["default-branch"]))
        let response = try await executor.send(request, accept: [200, 204, 404])
        guard response.status == 200, !response.body.isEmpty else { return nil }
        let ref = try RequestExecutor.decode(DCMinimalRefDTO.self, from: response.body)
        return ref.displayId ?? ref.id.map(Self.shortBranchName)
    }

    public func createRepository(_ ref: RepositoryRef, options: RepositoryCreateOptions) async throws
        -> RepositoryOutcome
    {
        let body = DCCreateRepositoryBody(
            name: options.name ?? ref.slug,
            scmId: "git",
            public: !options.isPrivate,
            description: options.description,
            defaultBranch: options.defaultBranch
        )
        let request = try mutating(.POST, api(["projects", ref.namespace, "repos"]), body: body)
        let existing: () async throws -> RepositoryOutcome? = {
            try await repository(ref).map { RepositoryOutcome(repository: $0, created: false) }
        }
        return try await executor.createWithLookup(
            what: "repository \(ref)",
            create: {
                let response = try await executor.send(request, accept: [200, 201, 409])
                if response.status == 409 {
                    if let found = try await existing() { return found }
                    throw response.error()
                }
                let dto = try RequestExecutor.decode(DCRepositoryDTO.self, from: response.body)
                guard let created = dto.model(defaultBranch: dto.defaultBranch.map(Self.shortBranchName) ?? options.defaultBranch)
                else {
                    throw BitbucketError(code: .decoding, message: "repository response lacks slug or project")
                }
                return RepositoryOutcome(repository: created, created: true)
            },
            lookup: existing
        )
    }

    /// Searches `…/branches?filterText=` (substring match) page by page for the exact name.
    public func branch(_ name: String, in ref: RepositoryRef) async throws -> Branch? {
        var cursor: PageCursor?
        for _ in 0..<Pagination.maxPages {
            let page = try await page(
                repoPath(ref) + ["branches"],
                query: [("filterText", name)],
                cursor: cursor,
                pageSize: 100,
                as: DCBranchDTO.self
            ) { $0 }
            if let match = page.values.first(where: { $0.id == "refs/heads/\(name)" || ($0.id == nil && $0.displayId == name) }),
                let commit = match.latestCommit ?? match.latestChangeset
            {
                return Branch(name: name, tipCommit: commit)
            }
            guard let next = page.nextCursor else { return nil }
            cursor = next
        }
        return nil
    }

    public func openPullRequest(from source: String, to destination: String, in ref: RepositoryRef) async throws
        -> PullRequest?
    {
        var cursor: PageCursor?
        for _ in 0..<Pagination.maxPages {
            let page = try await page(
                repoPath(ref) + ["pull-requests"],
                query: [("at", "refs/heads/\(source)"), ("direction", "OUTGOING"), ("state", "OPEN")],
                cursor: cursor,
                pageSize: 50,
                as: DCPullRequestDTO.self
            ) { $0 }
            // Filter again: only same-repository PRs between exactly these branches qualify.
            if let match = page.values.first(where: { $0.matches(source: source, destination: destination, in: ref) }),
                let model = match.model()
            {
                return model
            }
            guard let next = page.nextCursor else { return nil }
            cursor = next
        }
        return nil
    }

    public func createPullRequest(_ request: NewPullRequest, in ref: RepositoryRef) async throws -> PullRequestCreation {
        let repository = DCRefBody.Repository(slug: ref.slug, project: .init(key: ref.namespace))
        let body = DCCreatePullRequestBody(
            title: request.title,
            description: request.description,
            fromRef: .init(id: "refs/heads/\(request.sourceBranch)", repository: repository),
            toRef: .init(id: "refs/heads/\(request.destinationBranch)", repository: repository),
            reviewers: request.reviewers.map { .init(user: .init(name: $0)) },
            draft: request.draft ? true : nil
        )
        let post = try mutating(.POST, api(repoPath(ref) + ["pull-requests"]), body: body)
        return try await executor.createWithLookup(
            what: "pull request \(request.sourceBranch) → \(request.destinationBranch) in \(ref)",
            create: {
                let response = try await executor.send(post, accept: [200, 201, 409])
                if response.status == 409 {
                    let errors = try? JSONDecoder().decode(DCErrorsDTO.self, from: Data(response.body))
                    if let duplicate = errors?.errors.first(where: { $0.existingPullRequest != nil })?.existingPullRequest,
                        let existing = duplicate.model()
                    {
                        return PullRequestCreation(pullRequest: existing, created: false)
                    }
                    throw response.error()
                }
                guard let created = try RequestExecutor.decode(DCPullRequestDTO.self, from: response.body).model() else {
                    throw BitbucketError(code: .decoding, message: "pull request response lacks refs")
                }
                return PullRequestCreation(pullRequest: created, created: true)
            },
            lookup: {
                try await openPullRequest(from: request.sourceBranch, to: request.destinationBranch, in: ref)
                    .map { PullRequestCreation(pullRequest: $0, created: false) }
            }
        )
    }

    public func updatePullRequest(_ id: Int, in ref: RepositoryRef, with update: PullRequestUpdate) async throws
        -> PullRequest
    {
        let prURL = try api(repoPath(ref) + ["pull-requests", String(id)])
        var attempt = 0
        while true {
            attempt += 1
            let current = try await executor.sendJSON(APIRequest(method: .GET, url: prURL), as: DCPullRequestDTO.self)
            guard let version = current.version else {
                throw BitbucketError(code: .decoding, message: "pull request \(id) has no version")
            }
            let body = DCUpdatePullRequestBody(
                version: version,
                title: update.title ?? current.title ?? "",
                description: update.description ?? current.description ?? "",
                // Sent back unchanged so the update does not drop reviewers.
                reviewers: (current.reviewers ?? []).compactMap { $0.user?.name }.map { .init(user: .init(name: $0)) }
            )
            let response = try await executor.send(try mutating(.PUT, prURL, body: body), accept: [200, 409])
            if response.status == 409 {
                let error = response.error()
                // Stale version: someone else changed the PR between our read and write. Re-read once.
                if attempt < 2 { continue }
                throw error
            }
            guard let pr = try RequestExecutor.decode(DCPullRequestDTO.self, from: response.body).model() else {
                throw BitbucketError(code: .decoding, message: "pull request response lacks refs")
            }
            return pr
        }
    }

    public func commentOnPullRequest(_ id: Int, in ref: RepositoryRef, text: String) async throws -> PullRequestComment {
        let request = try mutating(
            .POST,
            api(repoPath(ref) + ["pull-requests", String(id), "comments"]),
            body: DCCommentBody(text: text)
        )
        let comment = try await executor.sendJSON(request, as: DCCommentDTO.self)
        return PullRequestComment(id: comment.id, text: comment.text ?? text)
    }

    /// Mints a repository-scoped HTTP access token
    /// (`PUT /rest/access-tokens/1.0/projects/{key}/repos/{slug}`), for git when REST uses OAuth 1.0a.
    ///
    /// - Parameters:
    ///   - ref: the repository.
    ///   - name: token name shown in Bitbucket's UI.
    ///   - permissions: e.g. `[.repoWrite]`.
    ///   - expiryDays: lifetime in days; `nil` for the instance default.
    public func createAccessToken(
        for ref: RepositoryRef,
        name: String,
        permissions: [AccessTokenPermission],
        expiryDays: Int?
    ) async throws -> HTTPAccessToken {
        let url = try URLBuilder.url(
            endpoints.baseURL,
            ["rest", "access-tokens", "1.0", "projects", ref.namespace, "repos", ref.slug]
        )
        let request = try mutating(
            .PUT,
            url,
            body: DCAccessTokenBody(name: name, permissions: permissions.map(\.rawValue), expiryDays: expiryDays)
        )
        let requestedAt = Date()
        let token = try await executor.sendJSON(request, as: DCRawAccessTokenDTO.self)
        guard let value = token.token, !value.isEmpty else {
            throw BitbucketError(code: .decoding, message: "access token response has no token")
        }
        var expiresAt: Date?
        if let expiryDate = token.expiryDate {
            expiresAt = Date(timeIntervalSince1970: TimeInterval(expiryDate) / 1000)
        } else if let days = token.expiryDays ?? expiryDays {
            expiresAt = requestedAt.addingTimeInterval(TimeInterval(days) * 86_400)
        }
        return HTTPAccessToken(id: token.id ?? "", name: token.name ?? name, token: Secret(value), expiresAt: expiresAt)
    }

    public func gitRemoteURL(for ref: RepositoryRef) throws -> URL {
        try URLBuilder.url(endpoints.gitBaseURL, ["scm", ref.namespace.lowercased(), ref.slug + ".git"])
    }

    static func shortBranchName(_ id: String) -> String {
        id.hasPrefix("refs/heads/") ? String(id.dropFirst("refs/heads/".count)) : id
    }
}

// MARK: - Wire types (field names as in datacenter-9.2.json)

struct DCPage<Value: Decodable & Sendable>: Decodable, Sendable {
    var values: [Value]
    var isLastPage: Bool?
    var nextPageStart: Int?
}

struct DCLink: Decodable, Sendable {
    var href: String?
    var name: String?
}

struct DCUserDTO: Decodable, Sendable {
    var id: Int?
    var name: String?
    var slug: String?
    var displayName: String?
    var emailAddress: String?
}

struct DCProjectDTO: Decodable, Sendable {
    var id: Int?
    var key: String?
    var name: String?
}

struct DCRepositoryDTO: Decodable, Sendable {
    struct Links: Decodable, Sendable {
        var clone: [DCLink]?
        var `self`: [DCLink]?
    }

    var id: Int?
    var slug: String?
    var name: String?
    var `public`: Bool?
    var project: DCProjectDTO?
    var defaultBranch: String?
    var links: Links?

    func model(defaultBranch: String?) -> Repository? {
        guard let slug, let key = project?.key else { return nil }
        let http = links?.clone?.first(where: { $0.name == "http" || $0.name == "https" })?.href
        return Repository(
            ref: RepositoryRef(namespace: key, slug: slug),
            name: name ?? slug,
            id: id.map(String.init) ?? "\(key)/\(slug)",
            isPrivate: !(self.public ?? false),
            projectKey: key,
            httpCloneURL: http.flatMap(URL.init(string:)),
            defaultBranch: defaultBranch,
            webURL: links?.`self`?.first?.href.flatMap(URL.init(string:))
        )
    }
}

struct DCMinimalRefDTO: Decodable, Sendable {
    var id: String?
    var displayId: String?
}

struct DCBranchDTO: Decodable, Sendable {
    var id: String?
    var displayId: String?
    var latestCommit: String?
    var latestChangeset: String?
}

struct DCPullRequestDTO: Decodable, Sendable {
    struct Ref: Decodable, Sendable {
        struct Repo: Decodable, Sendable {
            struct Project: Decodable, Sendable {
                var key: String?
            }

            var slug: String?
            var project: Project?
        }

        var id: String?
        var displayId: String?
        var repository: Repo?
    }

    struct Participant: Decodable, Sendable {
        struct User: Decodable, Sendable {
            var name: String?
        }

        var user: User?
    }

    struct Links: Decodable, Sendable {
        var `self`: [DCLink]?
    }

    var id: Int
    var version: Int?
    var title: String?
    var description: String?
    var state: String?
    var draft: Bool?
    var fromRef: Ref?
    var toRef: Ref?
    var reviewers: [Participant]?
    var links: Links?

    func matches(source: String, destination: String, in ref: RepositoryRef) -> Bool {
        guard state == nil || state == "OPEN", fromRef?.id == "refs/heads/\(source)",
            toRef?.id == "refs/heads/\(destination)"
        else { return false }
        if let repo = fromRef?.repository, let slug = repo.slug,
            slug != ref.slug || repo.project?.key?.uppercased() != ref.namespace.uppercased()
        {
            return false
        }
        return true
    }

    func model() -> PullRequest? {
        guard let from = fromRef?.id, let to = toRef?.id else { return nil }
        return PullRequest(
            id: id,
            title: title ?? "",
            description: description ?? "",
            state: state ?? "OPEN",
            sourceBranch: DataCenterClient.shortBranchName(from),
            destinationBranch: DataCenterClient.shortBranchName(to),
            webURL: links?.`self`?.first?.href.flatMap(URL.init(string:)),
            version: version,
            isDraft: draft ?? false
        )
    }
}

struct DCErrorsDTO: Decodable, Sendable {
    struct Entry: Decodable, Sendable {
        var message: String?
        var exceptionName: String?
        var existingPullRequest: DCPullRequestDTO?
    }

    var errors: [Entry]
}

struct DCCommentDTO: Decodable, Sendable {
    var id: Int
    var text: String?
}

struct DCRawAccessTokenDTO: Decodable, Sendable {
    var id: String?
    var name: String?
    var token: String?
    var expiryDays: Int?
    var expiryDate: Int64?
}

struct DCCreateRepositoryBody: Encodable, Sendable {
    var name: String
    var scmId: String
    var `public`: Bool
    var description: String?
    var defaultBranch: String?
}

struct DCRefBody: Encodable, Sendable {
    struct Repository: Encodable, Sendable {
        struct Project: Encodable, Sendable {
            var key: String
        }

        var slug: String
        var project: Project
    }

    var id: String
    var repository: Repository
}

struct DCReviewerBody: Encodable, Sendable {
    struct User: Encodable, Sendable {
        var name: String
    }

    var user: User
}

struct DCCreatePullRequestBody: Encodable, Sendable {
    var title: String
    var description: String
    var fromRef: DCRefBody
    var toRef: DCRefBody
    var reviewers: [DCReviewerBody]
    var draft: Bool?
}

struct DCUpdatePullRequestBody: Encodable, Sendable {
    var version: Int
    var title: String
    var description: String
    var reviewers: [DCReviewerBody]
}

struct DCCommentBody: Encodable, Sendable {
    var text: String
}

struct DCAccessTokenBody: Encodable, Sendable {
    var name: String
    var permissions: [String]
    var expiryDays: Int?
}
