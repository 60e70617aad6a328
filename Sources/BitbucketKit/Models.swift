import Foundation

/// Which Bitbucket product a client talks to.
public enum BitbucketProduct: String, Sendable, Hashable, Codable {
    case cloud = "bitbucket-cloud"
    case dataCenter = "bitbucket-datacenter"
}

/// The authenticated account.
public struct BitbucketUser: Sendable, Hashable, Codable {
    /// Cloud: `uuid`; Data Center: numeric user id as a string.
    public var id: String
    /// Cloud: `nickname` (or `username`); Data Center: `slug`.
    public var username: String
    public var displayName: String
    /// Cloud `account_id`; `nil` on Data Center.
    public var accountID: String?
    /// Data Center e-mail address when visible.
    public var emailAddress: String?

    public init(id: String, username: String, displayName: String, accountID: String? = nil, emailAddress: String? = nil) {
        self.id = id
        self.username = username
        self.displayName = displayName
        self.accountID = accountID
        self.emailAddress = emailAddress
    }
}

/// Where repositories live: a Cloud workspace or a Data Center project.
public struct BitbucketNamespace: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        case workspace
        case project
    }

    public var kind: Kind
    /// Workspace slug (Cloud) or project key (Data Center); the `namespace` of a ``RepositoryRef``.
    public var key: String
    public var name: String
    /// Cloud workspace `uuid` or Data Center project id.
    public var id: String?
    /// Cloud: whether the user administers the workspace.
    public var isAdministrator: Bool?

    public init(kind: Kind, key: String, name: String, id: String? = nil, isAdministrator: Bool? = nil) {
        self.kind = kind
        self.key = key
        self.name = name
        self.id = id
        self.isAdministrator = isAdministrator
    }
}

/// Identifies a repository: workspace slug or project key, plus repository slug.
public struct RepositoryRef: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Cloud workspace slug or Data Center project key.
    public var namespace: String
    public var slug: String

    public init(namespace: String, slug: String) {
        self.namespace = namespace
        self.slug = slug
    }

    public var description: String { "\(namespace)/\(slug)" }
}

/// A repository as pushbridge needs it.
public struct Repository: Sendable, Hashable, Codable {
    public var ref: RepositoryRef
    public var name: String
    /// Cloud `uuid` or Data Center numeric id.
    public var id: String
    public var isPrivate: Bool
    /// Cloud: the project key within the workspace; Data Center: the project key (= namespace).
    public var projectKey: String?
    /// The HTTP(S) clone URL reported by Bitbucket (Cloud may embed a user name in it; pushbridge
    /// never embeds credentials).
    public var httpCloneURL: URL?
    /// Main/default branch name (`nil` for an empty repository without one).
    public var defaultBranch: String?
    /// Browser URL.
    public var webURL: URL?

    public init(
        ref: RepositoryRef,
        name: String,
        id: String,
        isPrivate: Bool,
        projectKey: String?,
        httpCloneURL: URL?,
        defaultBranch: String?,
        webURL: URL?
    ) {
        self.ref = ref
        self.name = name
        self.id = id
        self.isPrivate = isPrivate
        self.projectKey = projectKey
        self.httpCloneURL = httpCloneURL
        self.defaultBranch = defaultBranch
        self.webURL = webURL
    }
}

/// Options for creating a repository.
public struct RepositoryCreateOptions: Sendable, Hashable {
    public var isPrivate: Bool
    /// Cloud: project key inside the workspace (Cloud puts the repository into the oldest project
    /// when absent). Ignored on Data Center, where the namespace is the project.
    public var projectKey: String?
    public var description: String?
    /// Display name; defaults to the slug.
    public var name: String?
    /// Data Center: default branch to configure. Ignored on Cloud.
    public var defaultBranch: String?

    public init(
        isPrivate: Bool = true,
        projectKey: String? = nil,
        description: String? = nil,
        name: String? = nil,
        defaultBranch: String? = nil
    ) {
        self.isPrivate = isPrivate
        self.projectKey = projectKey
        self.description = description
        self.name = name
        self.defaultBranch = defaultBranch
    }
}

/// A branch and its tip.
public struct Branch: Sendable, Hashable, Codable {
    /// Short name, without `refs/heads/`.
    public var name: String
    /// Tip commit id (40 hex characters).
    public var tipCommit: String

    public init(name: String, tipCommit: String) {
        self.name = name
        self.tipCommit = tipCommit
    }
}

/// A pull request.
public struct PullRequest: Sendable, Hashable, Codable {
    public var id: Int
    public var title: String
    public var description: String
    /// `OPEN`, `MERGED`, `DECLINED` (Cloud also `SUPERSEDED`).
    public var state: String
    /// Source branch short name.
    public var sourceBranch: String
    /// Destination branch short name.
    public var destinationBranch: String
    /// Browser URL.
    public var webURL: URL?
    /// Data Center optimistic-locking version (`nil` on Cloud).
    public var version: Int?
    public var isDraft: Bool

    public init(
        id: Int,
        title: String,
        description: String,
        state: String,
        sourceBranch: String,
        destinationBranch: String,
        webURL: URL?,
        version: Int?,
        isDraft: Bool
    ) {
        self.id = id
        self.title = title
        self.description = description
        self.state = state
        self.sourceBranch = sourceBranch
        self.destinationBranch = destinationBranch
        self.webURL = webURL
        self.version = version
        self.isDraft = isDraft
    }
}

/// What to open.
public struct NewPullRequest: Sendable, Hashable {
    public var title: String
    public var description: String
    public var sourceBranch: String
    public var destinationBranch: String
    /// Cloud: account UUIDs (`{…}`) or account ids; Data Center: user names.
    public var reviewers: [String]
    /// Open as draft (Cloud; Data Center 8.18+ — sent to Data Center only when `true`).
    public var draft: Bool
    /// Cloud: delete the source branch on merge. Data Center has no such field (it is a
    /// repository setting) and ignores it.
    public var closeSourceBranch: Bool

    public init(
        title: String,
        description: String = "",
        sourceBranch: String,
        destinationBranch: String,
        reviewers: [String] = [],
        draft: Bool = false,
        closeSourceBranch: Bool = false
    ) {
        self.title = title
        self.description = description
        self.sourceBranch = sourceBranch
        self.destinationBranch = destinationBranch
        self.reviewers = reviewers
        self.draft = draft
        self.closeSourceBranch = closeSourceBranch
    }
}

/// Fields to change on an open pull request; `nil` leaves a field as it is.
public struct PullRequestUpdate: Sendable, Hashable {
    public var title: String?
    public var description: String?

    public init(title: String? = nil, description: String? = nil) {
        self.title = title
        self.description = description
    }
}

/// Result of ``BitbucketClient/createPullRequest(_:in:)``.
public struct PullRequestCreation: Sendable, Hashable {
    public var pullRequest: PullRequest
    /// `false` when Bitbucket reported an identical open pull request (Data Center
    /// `DuplicatePullRequestException`) or a retried create had already taken effect.
    public var created: Bool

    public init(pullRequest: PullRequest, created: Bool) {
        self.pullRequest = pullRequest
        self.created = created
    }
}

/// Result of ``BitbucketClient/findOrCreatePullRequest(_:in:)``.
public struct PullRequestOutcome: Sendable, Hashable {
    public var pullRequest: PullRequest
    public var created: Bool
    /// The existing pull request's title or description was changed.
    public var updated: Bool

    public init(pullRequest: PullRequest, created: Bool, updated: Bool) {
        self.pullRequest = pullRequest
        self.created = created
        self.updated = updated
    }
}

/// Result of ``BitbucketClient/ensureRepository(_:create:)``.
public struct RepositoryOutcome: Sendable, Hashable {
    public var repository: Repository
    public var created: Bool

    public init(repository: Repository, created: Bool) {
        self.repository = repository
        self.created = created
    }
}

/// A pull request comment.
public struct PullRequestComment: Sendable, Hashable, Codable {
    public var id: Int
    public var text: String

    public init(id: Int, text: String) {
        self.id = id
        self.text = text
    }
}

/// A Data Center HTTP access token (for git when the connection uses OAuth 1.0a).
public struct HTTPAccessToken: Sendable, Hashable {
    public var id: String
    public var name: String
    /// Shown once by Bitbucket; use as `Authorization: Bearer` for git.
    public var token: Secret
    /// Derived from `expiryDays` (or the response's `expiryDate`), `nil` when it does not expire.
    public var expiresAt: Date?

    public init(id: String, name: String, token: Secret, expiresAt: Date?) {
        self.id = id
        self.name = name
        self.token = token
        self.expiresAt = expiresAt
    }
}

/// Permissions of a Data Center HTTP access token.
public enum AccessTokenPermission: String, Sendable, Hashable, Codable, CaseIterable {
    case repoRead = "REPO_READ"
    case repoWrite = "REPO_WRITE"
    case repoAdmin = "REPO_ADMIN"
    case projectRead = "PROJECT_READ"
    case projectWrite = "PROJECT_WRITE"
    case projectAdmin = "PROJECT_ADMIN"
}

/// One page of a listing plus an opaque cursor for the next one.
public struct Page<Element: Sendable>: Sendable {
    public var values: [Element]
    /// Pass to the same listing call for the next page; `nil` on the last page.
    public var nextCursor: PageCursor?

    public init(values: [Element], nextCursor: PageCursor?) {
        self.values = values
        self.nextCursor = nextCursor
    }
}

extension Page: Equatable where Element: Equatable {}

/// An opaque pagination cursor. Safe to hand to a browser and accept back: a client only accepts
/// cursors that point at its own API origin and listing.
public struct PageCursor: Sendable, Hashable, Codable, RawRepresentable, CustomStringConvertible {
    public let rawValue: String

    public init(rawValue: String) {
        self.rawValue = rawValue
    }

    public var description: String { rawValue }
}
