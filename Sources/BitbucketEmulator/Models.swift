import Foundation

/// Which Bitbucket product a route, token, client or repository belongs to.
public enum BitbucketProduct: String, Sendable, Hashable, CaseIterable {
    /// Bitbucket Cloud (REST 2.0, `site/oauth2`, git at `/{workspace}/{slug}.git`).
    case cloud
    /// Bitbucket Data Center / Server (REST 1.0, `rest/oauth2/latest`, OAuth 1.0a, git at `/scm/{key}/{slug}.git`).
    case dataCenter
}

/// Identifies a repository in either product.
public enum EmulatorRepositoryRef: Sendable, Hashable, CustomStringConvertible {
    /// A Cloud repository `{workspace}/{slug}`.
    case cloud(workspace: String, slug: String)
    /// A Data Center repository `{projectKey}/{slug}` (project keys are upper-case, as in DC).
    case dataCenter(project: String, slug: String)

    /// The product the repository lives in.
    public var product: BitbucketProduct {
        switch self {
        case .cloud: return .cloud
        case .dataCenter: return .dataCenter
        }
    }

    /// `workspace/slug` or `KEY/slug`.
    public var description: String {
        switch self {
        case .cloud(let w, let s): return "\(w)/\(s)"
        case .dataCenter(let p, let s): return "\(p)/\(s)"
        }
    }
}

/// A user known to the emulator. Users are shared by both products.
public struct EmulatorUser: Sendable, Hashable {
    /// Numeric id (DC `id`).
    public let id: Int
    /// Login name / slug (DC `name`/`slug`, Cloud `nickname`).
    public let username: String
    /// Display name.
    public let displayName: String
    /// E-mail address (DC `emailAddress`).
    public let email: String
    /// Cloud `uuid`, braces included (`{…}`), as Bitbucket Cloud formats it.
    public let uuid: String
    /// Cloud Atlassian `account_id`.
    public let accountID: String
}

/// A registered OAuth 2.0 client (Cloud "OAuth consumer" or DC "incoming external application").
public struct OAuth2ClientRegistration: Sendable, Hashable {
    /// The product whose token endpoint accepts this client.
    public var product: BitbucketProduct
    /// Client id (Cloud: consumer key).
    public var clientID: String
    /// Client secret (Cloud: consumer secret).
    public var clientSecret: String
    /// Registered callback URL. Cloud accepts a `redirect_uri` that starts with it; DC requires equality.
    public var redirectURI: String
    /// Granted scopes (Cloud: the consumer's permissions; DC: the application link's permission).
    public var scopes: [String]
    /// User that `client_credentials` tokens act as (Cloud: the consumer's owner).
    public var ownerUsername: String?

    /// Creates a registration. Cloud default scopes cover everything pushbridge needs.
    public init(
        product: BitbucketProduct,
        clientID: String,
        clientSecret: String,
        redirectURI: String,
        scopes: [String]? = nil,
        ownerUsername: String? = nil
    ) {
        self.product = product
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.redirectURI = redirectURI
        self.scopes =
            scopes
            ?? (product == .cloud
                ? ["account", "repository:admin", "repository:write", "pullrequest:write", "project", "webhook"]
                : ["REPO_ADMIN"])
        self.ownerUsername = ownerUsername
    }
}

/// Access and refresh token as issued by an OAuth 2.0 grant or by ``BitbucketEmulator/issueTokens(product:username:clientID:scopes:)``.
public struct EmulatorIssuedTokens: Sendable, Hashable, CustomStringConvertible {
    /// The bearer access token.
    public let accessToken: String
    /// The refresh token, when the grant returns one.
    public let refreshToken: String?
    /// Seconds until the access token expires.
    public let expiresIn: Int
    /// Granted scopes.
    public let scopes: [String]

    /// Redacted: tokens are secrets and must never reach logs.
    public var description: String { "EmulatorIssuedTokens(<redacted>, expiresIn: \(expiresIn), scopes: \(scopes))" }
}

/// An OAuth 1.0a consumer registered through an application link.
public struct OAuth1ConsumerRegistration: Sendable, Hashable {
    /// Consumer key.
    public var consumerKey: String
    /// Consumer name shown in the link.
    public var name: String
    /// RSA public key, SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    public var publicKeyPEM: String

    /// Creates a registration.
    public init(consumerKey: String, name: String = "pushbridge", publicKeyPEM: String) {
        self.consumerKey = consumerKey
        self.name = name
        self.publicKeyPEM = publicKeyPEM
    }
}

/// State of a pull request, product-neutral (Cloud adds `SUPERSEDED`, unused here).
public enum EmulatorPullRequestState: String, Sendable, Hashable {
    case open = "OPEN"
    case merged = "MERGED"
    case declined = "DECLINED"
}

/// A comment on a pull request, as stored by the emulator.
public struct EmulatorComment: Sendable, Hashable {
    /// Comment id (unique per emulator).
    public let id: Int
    /// Raw text (Cloud `content.raw`, DC `text`).
    public let text: String
    /// Author's username.
    public let author: String
    /// Creation time.
    public let createdAt: Date
}

/// A pull request, as stored by the emulator (read through ``BitbucketEmulator/pullRequests(in:)``).
public struct EmulatorPullRequest: Sendable, Hashable {
    /// Repository the pull request targets.
    public let repository: EmulatorRepositoryRef
    /// Id, unique per repository, starting at 1.
    public internal(set) var id: Int
    /// Title.
    public internal(set) var title: String
    /// Description (may be empty).
    public internal(set) var description: String
    /// Source branch name (without `refs/heads/`).
    public internal(set) var sourceBranch: String
    /// Destination branch name (without `refs/heads/`).
    public internal(set) var destinationBranch: String
    /// State.
    public internal(set) var state: EmulatorPullRequestState
    /// Draft flag.
    public internal(set) var draft: Bool
    /// Cloud `close_source_branch`.
    public internal(set) var closeSourceBranch: Bool
    /// Reviewer usernames.
    public internal(set) var reviewers: [String]
    /// Author's username.
    public internal(set) var author: String
    /// DC optimistic-locking version; starts at 0 and grows by one per update.
    public internal(set) var version: Int
    /// Creation time.
    public internal(set) var createdAt: Date
    /// Last update time.
    public internal(set) var updatedAt: Date
    /// Comments, oldest first.
    public internal(set) var comments: [EmulatorComment]
}

/// A fault to inject into matching requests (see ``BitbucketEmulator/injectFault(_:)``).
public struct EmulatorFault: Sendable, Hashable {
    /// What happens to a matching request.
    public enum Action: Sendable, Hashable {
        /// Answer with this status instead of handling the request. 429 gets a text body (like Cloud);
        /// other statuses get the product's JSON error body. `retryAfter` sets a `Retry-After` header.
        case status(Int, retryAfter: Int? = nil)
        /// Sleep this long, then handle the request normally.
        case latency(Duration)
        /// Close the connection without an answer.
        case dropConnection
    }

    /// HTTP method to match (`nil` = any), upper-case.
    public var method: String?
    /// Path glob over the request path (query excluded): `*` matches within one segment, `**` any number of
    /// segments. Example: `/2.0/repositories/*/*/pullrequests`, `/rest/**`, `/acme/*.git/**`.
    public var pathPattern: String
    /// The fault.
    public var action: Action
    /// How many matching requests get the fault (`nil` = every one until cleared).
    public var count: Int?

    /// Creates a fault rule.
    public init(method: String? = nil, path pathPattern: String, action: Action, count: Int? = 1) {
        self.method = method?.uppercased()
        self.pathPattern = pathPattern
        self.action = action
        self.count = count
    }
}

/// A counter key: one served request, by route template.
public struct EmulatorRequestKey: Sendable, Hashable, CustomStringConvertible {
    /// HTTP method, upper-case.
    public let method: String
    /// The matched route's id (see ``EmulatorRoute/id``), or `unmatched`.
    public let route: String
    /// Status code sent (0 when the connection was dropped).
    public let status: Int

    public var description: String { "\(method) \(route) → \(status)" }
}

/// A snapshot of the emulator's counters.
public struct EmulatorCounters: Sendable, Hashable {
    /// Requests by method, route and status.
    public var requests: [EmulatorRequestKey: Int] = [:]
    /// Successful `refresh_token` grants per client id (OAuth 2.0, both products).
    public var refreshGrants: [String: Int] = [:]
    /// Rejected refresh attempts (`invalid_grant`) per client id.
    public var rejectedRefreshes: [String: Int] = [:]
    /// Access tokens issued, by kind: `oauth2`, `http-access-token`, `oauth1`, `control`.
    public var tokensIssued: [String: Int] = [:]
    /// Pull requests created per repository (`workspace/slug` or `KEY/slug`).
    public var pullRequestsCreated: [String: Int] = [:]
    /// Git pushes (receive-pack POSTs answered 200) per repository.
    public var gitPushes: [String: Int] = [:]

    /// Sum of requests matching the given filters.
    public func requestCount(method: String? = nil, route: String? = nil, status: Int? = nil) -> Int {
        requests.reduce(0) { acc, kv in
            if let method, kv.key.method != method.uppercased() { return acc }
            if let route, kv.key.route != route { return acc }
            if let status, kv.key.status != status { return acc }
            return acc + kv.value
        }
    }
}

/// A repository as stored by the emulator.
public struct EmulatorRepository: Sendable, Hashable {
    /// Where it lives.
    public let ref: EmulatorRepositoryRef
    /// Numeric id (DC `id`).
    public let id: Int
    /// Cloud `uuid` with braces.
    public let uuid: String
    /// Display name.
    public internal(set) var name: String
    /// Slug (lower-case).
    public var slug: String {
        switch ref {
        case .cloud(_, let s), .dataCenter(_, let s): return s
        }
    }
    /// Description.
    public internal(set) var description: String
    /// Private repository (Cloud `is_private`; DC `public` is the negation).
    public internal(set) var isPrivate: Bool
    /// Project key (Cloud: the workspace project; DC: the project).
    public let projectKey: String
    /// Branch reported as main/default branch.
    public internal(set) var defaultBranch: String
    /// The bare repository on disk (inspect it with `git --git-dir`).
    public let gitDirectory: URL
    /// Creation time.
    public let createdAt: Date
}

/// A Cloud workspace.
public struct EmulatorWorkspace: Sendable, Hashable {
    /// Slug (lower-case), used in URLs.
    public let slug: String
    /// Display name.
    public let name: String
    /// `uuid` with braces.
    public let uuid: String
    /// Usernames of members; administrators are also members.
    public internal(set) var members: [String]
    /// Usernames of administrators.
    public internal(set) var administrators: [String]
}

/// A project: a Cloud workspace project or a DC project.
public struct EmulatorProject: Sendable, Hashable {
    /// Product.
    public let product: BitbucketProduct
    /// Workspace slug for Cloud projects, `nil` for DC.
    public let workspace: String?
    /// Project key (upper-case).
    public let key: String
    /// Display name.
    public let name: String
    /// Numeric id (DC).
    public let id: Int
    /// `uuid` with braces (Cloud).
    public let uuid: String
    /// DC: usernames that may see the project; empty = everyone (public to all users).
    public internal(set) var members: [String]
}
