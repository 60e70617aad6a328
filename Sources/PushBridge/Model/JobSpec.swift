import Crypto
import Foundation

/// What a platform service asks pushbridge to do: exactly the JSON body of
/// `POST /v1/jobs` (see DESIGN.md, "HTTP API").
///
/// Decoding applies the documented defaults (`root: ""`, `mode: overlay`,
/// `preserve: []`), so two bodies that differ only by spelling out a default are the
/// same spec and hash the same (``canonicalHash``), which is what idempotency compares.
public struct JobSpec: Codable, Sendable, Hashable {
    /// Id of a registered ``Connection``.
    public var connection: String
    public var repository: Repository
    public var source: Source
    /// Directory inside the repository that the job's files land under; `""` = repository root.
    public var root: String
    public var mode: Mode
    /// Globs (relative to `root`) that `sync` mode keeps even when the job does not ship them.
    public var preserve: [String]
    /// Branch the commit is pushed to (fast-forward only).
    public var branch: String
    /// Destination of the pull request and parent when `branch` does not exist yet;
    /// `nil` = the repository's default branch.
    public var baseBranch: String?
    public var commit: Commit
    /// `nil`: push to `branch` only, no pull request.
    public var pullRequest: PullRequest?

    /// Target repository, and whether to create it when missing.
    public struct Repository: Codable, Sendable, Hashable {
        public var slug: String
        /// Create the repository when it does not exist (an existing one is adopted).
        public var create: Bool
        /// Visibility when creating.
        public var `private`: Bool
        /// Cloud project key / Data Center project key to create in; `nil` = connection workspace default.
        public var project: String?

        public init(slug: String, create: Bool = false, private: Bool = true, project: String? = nil) {
            self.slug = slug
            self.create = create
            self.private = `private`
            self.project = project
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.slug = try c.decode(String.self, forKey: .slug)
            self.create = try c.decodeIfPresent(Bool.self, forKey: .create) ?? false
            self.private = try c.decodeIfPresent(Bool.self, forKey: .private) ?? true
            self.project = try c.decodeIfPresent(String.self, forKey: .project)
        }
    }

    /// Where the generated files come from: `{"directory": path}` or `{"archive": id}`.
    public enum Source: Codable, Sendable, Hashable {
        /// A directory that must lie under a configured source root.
        case directory(String)
        /// The id returned by `POST /v1/archives`.
        case archive(String)

        private enum CodingKeys: String, CodingKey { case directory, archive }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let directory = try c.decodeIfPresent(String.self, forKey: .directory)
            let archive = try c.decodeIfPresent(String.self, forKey: .archive)
            switch (directory, archive) {
            case (let d?, nil): self = .directory(d)
            case (nil, let a?): self = .archive(a)
            default:
                throw DecodingError.dataCorrupted(.init(
                    codingPath: decoder.codingPath,
                    debugDescription: "source must have exactly one of 'directory' or 'archive'"))
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            switch self {
            case .directory(let d): try c.encode(d, forKey: .directory)
            case .archive(let a): try c.encode(a, forKey: .archive)
            }
        }
    }

    /// How the job's files combine with the parent tree.
    public enum Mode: String, Codable, Sendable, Hashable, CaseIterable {
        /// Write the job's files over the parent tree; nothing is deleted.
        case overlay
        /// Make the subtree under `root` exactly the job's files, except `preserve` matches.
        case sync
    }

    public struct Commit: Codable, Sendable, Hashable {
        public var message: String
        /// `nil` = the configured bot identity.
        public var author: Author?

        public init(message: String, author: Author? = nil) {
            self.message = message
            self.author = author
        }
    }

    public struct Author: Codable, Sendable, Hashable {
        public var name: String
        public var email: String
        public init(name: String, email: String) {
            self.name = name
            self.email = email
        }
    }

    public struct PullRequest: Codable, Sendable, Hashable {
        public var title: String
        public var description: String?
        public var draft: Bool
        /// Usernames (DC/Server) or account UUIDs (Cloud).
        public var reviewers: [String]?
        public var closeSourceBranch: Bool?

        public init(
            title: String, description: String? = nil, draft: Bool = false,
            reviewers: [String]? = nil, closeSourceBranch: Bool? = nil
        ) {
            self.title = title
            self.description = description
            self.draft = draft
            self.reviewers = reviewers
            self.closeSourceBranch = closeSourceBranch
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.title = try c.decode(String.self, forKey: .title)
            self.description = try c.decodeIfPresent(String.self, forKey: .description)
            self.draft = try c.decodeIfPresent(Bool.self, forKey: .draft) ?? false
            self.reviewers = try c.decodeIfPresent([String].self, forKey: .reviewers)
            self.closeSourceBranch = try c.decodeIfPresent(Bool.self, forKey: .closeSourceBranch)
        }
    }

    public init(
        connection: String,
        repository: Repository,
        source: Source,
        root: String = "",
        mode: Mode = .overlay,
        preserve: [String] = [],
        branch: String,
        baseBranch: String? = nil,
        commit: Commit,
        pullRequest: PullRequest? = nil
    ) {
        self.connection = connection
        self.repository = repository
        self.source = source
        self.root = root
        self.mode = mode
        self.preserve = preserve
        self.branch = branch
        self.baseBranch = baseBranch
        self.commit = commit
        self.pullRequest = pullRequest
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.connection = try c.decode(String.self, forKey: .connection)
        self.repository = try c.decode(Repository.self, forKey: .repository)
        self.source = try c.decode(Source.self, forKey: .source)
        self.root = try c.decodeIfPresent(String.self, forKey: .root) ?? ""
        self.mode = try c.decodeIfPresent(Mode.self, forKey: .mode) ?? .overlay
        self.preserve = try c.decodeIfPresent([String].self, forKey: .preserve) ?? []
        self.branch = try c.decode(String.self, forKey: .branch)
        self.baseBranch = try c.decodeIfPresent(String.self, forKey: .baseBranch)
        self.commit = try c.decode(Commit.self, forKey: .commit)
        self.pullRequest = try c.decodeIfPresent(PullRequest.self, forKey: .pullRequest)
    }

    /// Canonical JSON (sorted keys, defaults filled in): the form stored in the
    /// database and hashed for idempotency.
    public func canonicalJSON() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// Lowercase hex SHA-256 of ``canonicalJSON()``: equal for semantically equal bodies.
    public func canonicalHash() throws -> String {
        SHA256.hash(data: try canonicalJSON()).map { String(format: "%02x", $0) }.joined()
    }
}
