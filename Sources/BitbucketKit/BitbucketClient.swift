import Foundation

/// The Bitbucket operations pushbridge needs, implemented by ``CloudClient`` (REST 2.0) and
/// ``DataCenterClient`` (REST 1.0, with a bearer token or an OAuth 1.0a signer).
///
/// All methods throw ``BitbucketError``. Idempotent calls are retried per the client's
/// ``RetryPolicy``; creating calls are retried only after a lookup proved the failed attempt did
/// not take effect; a `401` causes one forced credential refresh and one replay.
public protocol BitbucketClient: Sendable {
    /// The product this client speaks to.
    var product: BitbucketProduct { get }

    /// The authenticated account (also a cheap credential check).
    func currentUser() async throws -> BitbucketUser

    /// One page of the workspaces (Cloud, `/user/workspaces`) or projects (Data Center) visible to
    /// the user. Pass `nextCursor` back for the next page.
    func namespaces(cursor: PageCursor?, pageSize: Int?) async throws -> Page<BitbucketNamespace>

    /// One page of the repositories of a workspace or project.
    ///
    /// - Parameters:
    ///   - namespace: workspace slug (Cloud) or project key (Data Center).
    ///   - query: optional search text matched against repository names (Cloud `name ~ "…"`, Data
    ///     Center `name=…`).
    ///   - cursor: `nil` for the first page.
    ///   - pageSize: requested page size (Cloud caps at 100).
    func repositories(in namespace: String, query: String?, cursor: PageCursor?, pageSize: Int?) async throws
        -> Page<Repository>

    /// The repository, or `nil` when it does not exist.
    func repository(_ ref: RepositoryRef) async throws -> Repository?

    /// Creates a repository. When it already exists (Data Center 409, Cloud 400 "already
    /// exists", or an earlier attempt that failed in transit but took effect) the existing
    /// repository is returned with `created == false`.
    func createRepository(_ ref: RepositoryRef, options: RepositoryCreateOptions) async throws -> RepositoryOutcome

    /// The branch `name` (short name, no `refs/heads/`) with its tip, or `nil` when it does not
    /// exist (Cloud also answers `nil` when the repository does not exist).
    func branch(_ name: String, in ref: RepositoryRef) async throws -> Branch?

    /// The open pull request from `source` to `destination` within the repository, if any.
    func openPullRequest(from source: String, to destination: String, in ref: RepositoryRef) async throws
        -> PullRequest?

    /// Opens a pull request. When one is already open for the same branches (Data Center's
    /// `DuplicatePullRequestException`, Cloud's `200` instead of `201`) the existing pull request is
    /// returned with `created == false`.
    func createPullRequest(_ request: NewPullRequest, in ref: RepositoryRef) async throws -> PullRequestCreation

    /// Changes title and/or description. Data Center sends the current `version`; on a stale
    /// version (409) it re-reads and retries once.
    func updatePullRequest(_ id: Int, in ref: RepositoryRef, with update: PullRequestUpdate) async throws
        -> PullRequest

    /// Adds a comment (not retried: a comment cannot be looked up reliably).
    func commentOnPullRequest(_ id: Int, in ref: RepositoryRef, text: String) async throws -> PullRequestComment

    /// The git-over-HTTP(S) URL of the repository, built from the configured git base URL and free
    /// of credentials.
    func gitRemoteURL(for ref: RepositoryRef) throws -> URL
}

extension BitbucketClient {
    /// All workspaces or projects, following pagination to the end.
    public func allNamespaces() async throws -> [BitbucketNamespace] {
        try await Pagination.collect { cursor in try await namespaces(cursor: cursor, pageSize: 100) }
    }

    /// All repositories of a workspace or project matching `query`, following pagination to the end.
    public func allRepositories(in namespace: String, query: String? = nil) async throws -> [Repository] {
        try await Pagination.collect { cursor in
            try await repositories(in: namespace, query: query, cursor: cursor, pageSize: 100)
        }
    }

    /// Gets the repository, creating it when absent and `create` is given.
    ///
    /// - Throws: `not_found` when it does not exist and `create` is `nil`.
    public func ensureRepository(_ ref: RepositoryRef, create: RepositoryCreateOptions?) async throws
        -> RepositoryOutcome
    {
        if let existing = try await repository(ref) {
            return RepositoryOutcome(repository: existing, created: false)
        }
        guard let create else {
            throw BitbucketError(code: .notFound, status: 404, message: "repository \(ref) does not exist")
        }
        return try await createRepository(ref, options: create)
    }

    /// Finds the open pull request for the request's source and destination; creates one when there
    /// is none, otherwise updates its title/description when they differ.
    public func findOrCreatePullRequest(_ request: NewPullRequest, in ref: RepositoryRef) async throws
        -> PullRequestOutcome
    {
        if let existing = try await openPullRequest(from: request.sourceBranch, to: request.destinationBranch, in: ref) {
            return try await updateIfChanged(existing, to: request, in: ref)
        }
        let creation = try await createPullRequest(request, in: ref)
        if creation.created {
            return PullRequestOutcome(pullRequest: creation.pullRequest, created: true, updated: false)
        }
        return try await updateIfChanged(creation.pullRequest, to: request, in: ref)
    }

    private func updateIfChanged(_ existing: PullRequest, to request: NewPullRequest, in ref: RepositoryRef)
        async throws -> PullRequestOutcome
    {
        guard existing.title != request.title || existing.description != request.description else {
            return PullRequestOutcome(pullRequest: existing, created: false, updated: false)
        }
        let updated = try await updatePullRequest(
            existing.id,
            in: ref,
            with: PullRequestUpdate(title: request.title, description: request.description)
        )
        return PullRequestOutcome(pullRequest: updated, created: false, updated: true)
    }
}

enum Pagination {
    /// Upper bound on pages followed by `collect`, against servers that never say "last page".
    static let maxPages = 10_000

    static func collect<Element: Sendable>(
        _ fetch: (PageCursor?) async throws -> Page<Element>
    ) async throws -> [Element] {
        var result: [Element] = []
        var cursor: PageCursor?
        var seen: Set<PageCursor> = []
        for _ in 0..<maxPages {
            let page = try await fetch(cursor)
            result += page.values
            guard let next = page.nextCursor else { return result }
            guard seen.insert(next).inserted else {
                throw BitbucketError(code: .invalidCursor, message: "server pagination repeats a page")
            }
            cursor = next
        }
        throw BitbucketError(code: .invalidCursor, message: "pagination exceeded \(maxPages) pages")
    }

    /// Cloud cursor: the `next` URL, base64url-encoded.
    static func cloudCursor(next: String?) -> PageCursor? {
        guard let next, !next.isEmpty else { return nil }
        return PageCursor(rawValue: "c." + Base64URL.encode(Array(next.utf8)))
    }

    /// Decodes a Cloud cursor, accepting it only when it points at `expected` (same scheme, host,
    /// port and path): a forged cursor must not make the client send its token elsewhere.
    static func cloudNextURL(_ cursor: PageCursor, expected: URL) throws -> URL {
        guard cursor.rawValue.hasPrefix("c."), let bytes = Base64URL.decode(String(cursor.rawValue.dropFirst(2))),
            let url = URL(string: String(decoding: bytes, as: UTF8.self)),
            let actual = URLComponents(url: url, resolvingAgainstBaseURL: false),
            let wanted = URLComponents(url: expected, resolvingAgainstBaseURL: false),
            actual.scheme?.lowercased() == wanted.scheme?.lowercased(),
            actual.host?.lowercased() == wanted.host?.lowercased(),
            (actual.port ?? defaultPort(actual.scheme)) == (wanted.port ?? defaultPort(wanted.scheme)),
            actual.percentEncodedPath.trimmingSuffix("/") == wanted.percentEncodedPath.trimmingSuffix("/")
        else {
            throw BitbucketError(code: .invalidCursor, message: "pagination cursor does not belong to this listing")
        }
        return url
    }

    /// Data Center cursor: the next `start`.
    static func dataCenterCursor(nextStart: Int?) -> PageCursor? {
        nextStart.map { PageCursor(rawValue: "d.\($0)") }
    }

    static func dataCenterStart(_ cursor: PageCursor?) throws -> Int {
        guard let cursor else { return 0 }
        guard cursor.rawValue.hasPrefix("d."), let start = Int(cursor.rawValue.dropFirst(2)), start >= 0 else {
            throw BitbucketError(code: .invalidCursor, message: "pagination cursor does not belong to this listing")
        }
        return start
    }

    private static func defaultPort(_ scheme: String?) -> Int? {
        switch scheme?.lowercased() {
        case "http": return 80
        case "https": return 443
        default: return nil
        }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        var copy = self
        while copy.hasSuffix(suffix) { copy.removeLast(suffix.count) }
        return copy
    }
}
