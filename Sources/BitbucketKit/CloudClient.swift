import Foundation
import NIOHTTP1

/// Bitbucket Cloud REST 2.0 client.
public struct CloudClient: BitbucketClient {
    public var product: BitbucketProduct { .cloud }
    public let endpoints: CloudEndpoints
    private let executor: RequestExecutor

    /// - Parameters:
    ///   - endpoints: API, site and git base URLs.
    ///   - credentials: supplies `Authorization` (bearer OAuth token, access token, or API token).
    ///   - transport: the shared connection pool.
    ///   - options: timeouts, retry policy, user agent, logger.
    public init(
        endpoints: CloudEndpoints = .production,
        credentials: any CredentialProvider,
        transport: BitbucketHTTPTransport,
        options: BitbucketClientOptions = .init()
    ) {
        self.endpoints = endpoints
        self.executor = options.executor(transport: transport, credentials: credentials)
    }

    private func url(_ segments: [String], query: [(String, String)] = []) throws -> URL {
        try URLBuilder.url(endpoints.apiBaseURL, segments, query: query)
    }

    private static func pageLength(_ pageSize: Int?) -> Int {
        min(max(pageSize ?? 50, 1), 100)
    }

    /// Fetches a page of a paginated listing at `first` (first page) or at the cursor's URL.
    private func page<DTO: Decodable & Sendable, T: Sendable>(
        first: URL,
        cursor: PageCursor?,
        as: DTO.Type,
        map: (DTO) -> T?
    ) async throws -> Page<T> {
        let target = try cursor.map { try Pagination.cloudNextURL($0, expected: first) } ?? first
        let body = try await executor.sendJSON(APIRequest(method: .GET, url: target), as: CloudPage<DTO>.self)
        return Page(values: body.values.compactMap(map), nextCursor: Pagination.cloudCursor(next: body.next))
    }

    public func currentUser() async throws -> BitbucketUser {
        let user = try await executor.sendJSON(APIRequest(method: .GET, url: url(["user"])), as: CloudUserDTO.self)
        return BitbucketUser(
            id: user.uuid ?? user.account_id ?? "",
            username: user.nickname ?? user.username ?? user.display_name ?? "",
            displayName: user.display_name ?? user.nickname ?? "",
            accountID: user.account_id
        )
    }

    public func namespaces(cursor: PageCursor?, pageSize: Int?) async throws -> Page<BitbucketNamespace> {
        let first = try url(["user", "workspaces"], query: [("pagelen", String(Self.pageLength(pageSize)))])
        return try await page(first: first, cursor: cursor, as: CloudWorkspaceAccessDTO.self) { access in
            guard let workspace = access.workspace, let slug = workspace.slug else { return nil }
            return BitbucketNamespace(
                kind: .workspace,
                key: slug,
                name: workspace.name ?? slug,
                id: workspace.uuid,
                isAdministrator: access.administrator
            )
        }
    }

    public func repositories(in namespace: String, query: String?, cursor: PageCursor?, pageSize: Int?) async throws
        -> Page<Repository>
    {
        var parameters = [("pagelen", String(Self.pageLength(pageSize)))]
        if let query, !query.isEmpty {
            parameters.append(("q", "name ~ \(Self.bbql(query))"))
        }
        let first = try url(["repositories", namespace], query: parameters)
        return try await page(first: first, cursor: cursor, as: CloudRepositoryDTO.self) { $0.model(namespace: namespace) }
    }

    public func repository(_ ref: RepositoryRef) async throws -> Repository? {
        let request = APIRequest(method: .GET, url: try url(["repositories", ref.namespace, ref.slug]))
        let response = try await executor.send(request, accept: [200, 404])
        guard response.status == 200 else { return nil }
        guard let repository = try RequestExecutor.decode(CloudRepositoryDTO.self, from: response.body).model(namespace: ref.namespace) else {
            throw BitbucketError(code: .decoding, message: "repository response lacks a slug")
        }
        return repository
    }

    public func createRepository(_ ref: RepositoryRef, options: RepositoryCreateOptions) async throws
        -> RepositoryOutcome
    {
        // Cloud slugs are lower case; creating "Foo" would yield slug "foo" anyway.
        let target = RepositoryRef(namespace: ref.namespace, slug: ref.slug.lowercased())
        let body = CloudCreateRepositoryBody(
            scm: "git",
            is_private: options.isPrivate,
            project: options.projectKey.map { .init(key: $0) },
            name: options.name,
            description: options.description
        )
        let request = try APIRequest.json(.POST, url(["repositories", target.namespace, target.slug]), body: body)
        return try await executor.createWithLookup(
            what: "repository \(target)",
            create: {
                let response = try await executor.send(request, accept: [200, 201, 400])
                if response.status == 400 {
                    // Cloud answers 400 (not 409) when the slug is taken: adopt it if it is there.
                    if let existing = try await repository(target) {
                        return RepositoryOutcome(repository: existing, created: false)
                    }
                    throw response.error()
                }
                guard
                    let repository = try RequestExecutor.decode(CloudRepositoryDTO.self, from: response.body)
                        .model(namespace: target.namespace)
                else {
                    throw BitbucketError(code: .decoding, message: "repository response lacks a slug")
                }
                return RepositoryOutcome(repository: repository, created: true)
            },
            lookup: {
                try await repository(target).map { RepositoryOutcome(repository: $0, created: false) }
            }
        )
    }

    public func branch(_ name: String, in ref: RepositoryRef) async throws -> Branch? {
        let request = APIRequest(
            method: .GET,
            // Slashes in branch names stay path separators: Cloud matches the rest of the path as the name.
            url: try url(["repositories", ref.namespace, ref.slug, "refs", "branches"] + name.split(separator: "/", omittingEmptySubsequences: false).map(String.init))
        )
        let response = try await executor.send(request, accept: [200, 404])
        guard response.status == 200 else { return nil }
        let branch = try RequestExecutor.decode(CloudBranchDTO.self, from: response.body)
        guard let hash = branch.target?.hash else {
            throw BitbucketError(code: .decoding, message: "branch \(name) has no target commit")
        }
        return Branch(name: branch.name ?? name, tipCommit: hash)
    }

    public func openPullRequest(from source: String, to destination: String, in ref: RepositoryRef) async throws
        -> PullRequest?
    {
        let query = "source.branch.name = \(Self.bbql(source)) AND destination.branch.name = \(Self.bbql(destination)) AND state = \"OPEN\""
        let first = try url(
            ["repositories", ref.namespace, ref.slug, "pullrequests"],
            query: [("q", query), ("pagelen", "50")]
        )
        var cursor: PageCursor?
        for _ in 0..<Pagination.maxPages {
            let page = try await page(first: first, cursor: cursor, as: CloudPullRequestDTO.self) { $0.model() }
            // Filter again: a server that ignores `q` must not make us adopt someone else's PR.
            if let match = page.values.first(where: {
                $0.state == "OPEN" && $0.sourceBranch == source && $0.destinationBranch == destination
            }) {
                return match
            }
            guard let next = page.nextCursor else { return nil }
            cursor = next
        }
        return nil
    }

    public func createPullRequest(_ request: NewPullRequest, in ref: RepositoryRef) async throws -> PullRequestCreation {
        let body = CloudCreatePullRequestBody(
            title: request.title,
            description: request.description,
            source: .init(branch: .init(name: request.sourceBranch)),
            destination: .init(branch: .init(name: request.destinationBranch)),
            close_source_branch: request.closeSourceBranch,
            reviewers: request.reviewers.map { id in
                id.hasPrefix("{") ? CloudReviewer(uuid: id, account_id: nil) : CloudReviewer(uuid: nil, account_id: id)
            },
            draft: request.draft
        )
        let post = try APIRequest.json(.POST, url(["repositories", ref.namespace, ref.slug, "pullrequests"]), body: body)
        let lookup: () async throws -> PullRequestCreation? = {
            try await openPullRequest(from: request.sourceBranch, to: request.destinationBranch, in: ref)
                .map { PullRequestCreation(pullRequest: $0, created: false) }
        }
        return try await executor.createWithLookup(
            what: "pull request \(request.sourceBranch) → \(request.destinationBranch) in \(ref)",
            create: {
                let response = try await executor.send(post, accept: [200, 201, 400, 409])
                if response.status == 400 || response.status == 409 {
                    if let existing = try await lookup() { return existing }
                    throw response.error()
                }
                guard let pr = try RequestExecutor.decode(CloudPullRequestDTO.self, from: response.body).model() else {
                    throw BitbucketError(code: .decoding, message: "pull request response lacks branches")
                }
                // Cloud answers a create for a source/destination that already has an open pull request
                // with that pull request and 200 instead of 201.
                return PullRequestCreation(pullRequest: pr, created: response.status == 201)
            },
            lookup: lookup
        )
    }

    public func updatePullRequest(_ id: Int, in ref: RepositoryRef, with update: PullRequestUpdate) async throws
        -> PullRequest
    {
        let prURL = try url(["repositories", ref.namespace, ref.slug, "pullrequests", String(id)])
        var title = update.title
        var description = update.description
        if title == nil || description == nil {
            // PUT replaces the fields it names; fill the unchanged ones from the current state.
            let current = try await executor.sendJSON(APIRequest(method: .GET, url: prURL), as: CloudPullRequestDTO.self)
            title = title ?? current.title ?? ""
            description = description ?? current.description ?? ""
        }
        let request = try APIRequest.json(
            .PUT,
            prURL,
            body: CloudUpdatePullRequestBody(title: title ?? "", description: description ?? "")
        )
        guard let pr = try await executor.sendJSON(request, as: CloudPullRequestDTO.self).model() else {
            throw BitbucketError(code: .decoding, message: "pull request response lacks branches")
        }
        return pr
    }

    public func commentOnPullRequest(_ id: Int, in ref: RepositoryRef, text: String) async throws -> PullRequestComment {
        let request = try APIRequest.json(
            .POST,
            url(["repositories", ref.namespace, ref.slug, "pullrequests", String(id), "comments"]),
            body: CloudCommentBody(content: .init(raw: text))
        )
        let comment = try await executor.sendJSON(request, as: CloudCommentDTO.self)
        return PullRequestComment(id: comment.id, text: comment.content?.raw ?? text)
    }

    public func gitRemoteURL(for ref: RepositoryRef) throws -> URL {
        try URLBuilder.url(endpoints.gitBaseURL, [ref.namespace, ref.slug.lowercased() + ".git"])
    }

    /// A BBQL string literal.
    static func bbql(_ value: String) -> String {
        "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

// MARK: - Wire types (field names as in cloud-2.0.json)

struct CloudPage<Value: Decodable & Sendable>: Decodable, Sendable {
    var values: [Value]
    var next: String?
}

struct CloudLink: Decodable, Sendable {
    var href: String?
    var name: String?
}

struct CloudUserDTO: Decodable, Sendable {
    var uuid: String?
    var account_id: String?
    var nickname: String?
    var username: String?
    var display_name: String?
}

struct CloudWorkspaceAccessDTO: Decodable, Sendable {
    struct Workspace: Decodable, Sendable {
        var slug: String?
        var name: String?
        var uuid: String?
    }

    var administrator: Bool?
    var workspace: Workspace?
}

struct CloudRepositoryDTO: Decodable, Sendable {
    struct Links: Decodable, Sendable {
        var clone: [CloudLink]?
        var html: CloudLink?
    }

    struct Project: Decodable, Sendable {
        var key: String?
    }

    struct MainBranch: Decodable, Sendable {
        var name: String?
    }

    var uuid: String?
    var name: String?
    var slug: String?
    var full_name: String?
    var is_private: Bool?
    var project: Project?
    var mainbranch: MainBranch?
    var links: Links?

    func model(namespace: String) -> Repository? {
        let slug = self.slug ?? full_name?.split(separator: "/").last.map(String.init) ?? name?.lowercased()
        guard let slug else { return nil }
        let workspace = full_name?.split(separator: "/").first.map(String.init) ?? namespace
        let https = links?.clone?.first(where: { $0.name == "https" })?.href
        return Repository(
            ref: RepositoryRef(namespace: workspace, slug: slug),
            name: name ?? slug,
            id: uuid ?? full_name ?? slug,
            isPrivate: is_private ?? true,
            projectKey: project?.key,
            httpCloneURL: https.flatMap(URL.init(string:)),
            defaultBranch: mainbranch?.name,
            webURL: links?.html?.href.flatMap(URL.init(string:))
        )
    }
}

struct CloudBranchDTO: Decodable, Sendable {
    struct Target: Decodable, Sendable {
        var hash: String?
    }

    var name: String?
    var target: Target?
}

struct CloudPullRequestDTO: Decodable, Sendable {
    struct Endpoint: Decodable, Sendable {
        struct BranchName: Decodable, Sendable {
            var name: String?
        }

        var branch: BranchName?
    }

    struct Links: Decodable, Sendable {
        var html: CloudLink?
    }

    var id: Int
    var title: String?
    var description: String?
    var state: String?
    var source: Endpoint?
    var destination: Endpoint?
    var links: Links?
    var draft: Bool?

    func model() -> PullRequest? {
        guard let source = source?.branch?.name, let destination = destination?.branch?.name else { return nil }
        return PullRequest(
            id: id,
            title: title ?? "",
            description: description ?? "",
            state: state ?? "OPEN",
            sourceBranch: source,
            destinationBranch: destination,
            webURL: links?.html?.href.flatMap(URL.init(string:)),
            version: nil,
            isDraft: draft ?? false
        )
    }
}

struct CloudCommentDTO: Decodable, Sendable {
    struct Content: Decodable, Sendable {
        var raw: String?
    }

    var id: Int
    var content: Content?
}

struct CloudCreateRepositoryBody: Encodable, Sendable {
    struct Project: Encodable, Sendable {
        var key: String
    }

    var scm: String
    var is_private: Bool
    var project: Project?
    var name: String?
    var description: String?
}

struct CloudBranchRef: Encodable, Sendable {
    struct Name: Encodable, Sendable {
        var name: String
    }

    var branch: Name
}

struct CloudReviewer: Encodable, Sendable {
    var uuid: String?
    var account_id: String?
}

struct CloudCreatePullRequestBody: Encodable, Sendable {
    var title: String
    var description: String
    var source: CloudBranchRef
    var destination: CloudBranchRef
    var close_source_branch: Bool
    var reviewers: [CloudReviewer]
    var draft: Bool
}

struct CloudUpdatePullRequestBody: Encodable, Sendable {
    var title: String
    var description: String
}

struct CloudCommentBody: Encodable, Sendable {
    struct Content: Encodable, Sendable {
        var raw: String
    }

    var content: Content
}
