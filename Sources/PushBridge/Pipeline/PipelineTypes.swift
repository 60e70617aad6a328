import BitbucketKit
import Foundation
import GitKit
import Logging

/// The steps of one push job, in order. After each one the pipeline persists a
/// ``JobCheckpoint`` and then calls the ``PushPipeline/StepObserver``.
public enum PipelineStep: String, Sendable, Hashable, CaseIterable, Codable {
    /// Valid REST and git credentials obtained from the ``TokenManager``.
    case credentials
    /// Repository looked up, or created when the job asks for it.
    case repository
    /// Branch and base fetched into the per-remote cache (and an empty repository's base branch seeded).
    case fetch
    /// Tree built and, when it differs from the parent's, a commit written; checkpointed *before* pushing.
    case commit
    /// Commit pushed to the job branch (fast-forward only).
    case push
    /// Pull request found, created or updated.
    case pullRequest
}

/// Why a job's pipeline failed: a stable `code`, a message free of secrets, and whether a later
/// attempt may succeed.
public struct PipelineError: CodedError, Hashable {
    public let code: String
    public let message: String
    /// Whether re-running the job later may succeed (network, 5xx, rate limit, remote moved).
    public let retryable: Bool

    public init(code: String, message: String, retryable: Bool) {
        self.code = code
        self.message = message
        self.retryable = retryable
    }

    /// `source.directory` does not resolve under a configured source root (after resolving symlinks).
    public static func sourceOutsideRoots(_ path: String) -> PipelineError {
        PipelineError(
            code: "source_not_allowed", message: "source directory \(path) is not under a configured source root",
            retryable: false)
    }

    /// The job branch moved on the remote between our fetch and our push on every one of
    /// ``PipelineConfiguration/maxPushAttempts`` rounds (fetch → rebuild on the new tip → push).
    ///
    /// Retryable: nothing was lost or overwritten (pushes are fast-forward only), and the usual
    /// cause — a human or CI pushing to the branch in bursts — passes, so the worker re-queues the
    /// job with backoff; after ``Job/maxAttempts`` the job fails with this code.
    public static func branchMoved(_ branch: String, attempts: Int) -> PipelineError {
        PipelineError(
            code: "branch_moved",
            message: "branch \(branch) moved on the remote before each of \(attempts) push attempts; will retry later",
            retryable: true)
    }

    /// The job's input is invalid (paths, sizes, branch names, …).
    public static func validation(_ message: String) -> PipelineError {
        PipelineError(code: "validation_error", message: message, retryable: false)
    }

    /// The error a job stores for this failure.
    public var jobError: JobError { JobError(code: code, message: message, retryable: retryable) }

    /// Classifies any error thrown inside a job into the form a job stores.
    ///
    /// Token, Bitbucket and git errors keep their own codes; only transport trouble, server
    /// errors, rate limits and a moved remote are retryable. Unknown errors are retryable
    /// `internal_error`s so a bug never silently drops work, but their text is not exposed
    /// beyond the type name (it might carry something sensitive from a lower layer).
    public static func classify(_ error: any Error) -> JobError {
        switch error {
        case let e as PipelineError:
            return e.jobError
        case let e as TokenError:
            return e.jobError
        case let e as JobError:
            return e
        case let e as BitbucketError:
            let transient: Bool
            switch e.code {
            case .network, .timeout, .serverError, .rateLimited: transient = true
            default: transient = e.retryable
            }
            return JobError(code: e.code.rawValue, message: e.message, retryable: transient)
        case let e as GitError:
            return JobError(code: e.code.rawValue, message: e.message, retryable: e.isRetryable)
        case let e as StoreError:
            return JobError(code: e.code, message: e.message, retryable: e.kind == .database)
        case let e as VaultError:
            return JobError(code: e.code, message: e.message, retryable: false)
        case is CancellationError:
            return JobError(code: "cancelled", message: "the job was cancelled", retryable: false)
        default:
            return JobError(
                code: "internal_error", message: "unexpected \(String(describing: type(of: error)))", retryable: true)
        }
    }
}

/// Settings of the ``PushPipeline``.
public struct PipelineConfiguration: Sendable {
    /// Directories `source.directory` may point into (`PUSHBRIDGE_SOURCE_ROOTS`). Empty: directory
    /// sources are refused.
    public var sourceRoots: [String]
    /// Where `POST /v1/archives` unpacks archives: an `{"archive": id}` source is the directory
    /// `<archiveDirectory>/<id>`. `nil`: archive sources are refused.
    public var archiveDirectory: String?
    /// Cloud addresses used when a connection leaves its URLs `nil`.
    public var cloudEndpoints: CloudEndpoints
    /// Data Center / Server base URL used when a connection leaves `apiURL` `nil`.
    public var dataCenterBaseURL: URL?
    /// Author when the job names none (also the committer of every commit).
    public var botName: String
    public var botEmail: String
    /// Rounds of fetch → rebuild → push when the remote branch moves under us.
    public var maxPushAttempts: Int
    /// Largest single file accepted.
    public var maxFileSize: Int
    /// REST client settings (timeouts, retry policy, logger).
    public var clientOptions: BitbucketClientOptions
    /// Git proxy (`PUSHBRIDGE_HTTPS_PROXY`).
    public var gitProxy: ProxySetting
    /// Clock for commit timestamps (tests inject one).
    public var now: @Sendable () -> Date

    public init(
        sourceRoots: [String] = [],
        archiveDirectory: String? = nil,
        cloudEndpoints: CloudEndpoints = .production,
        dataCenterBaseURL: URL? = nil,
        botName: String = "pushbridge",
        botEmail: String = "pushbridge@localhost",
        maxPushAttempts: Int = 3,
        maxFileSize: Int = 100 << 20,
        clientOptions: BitbucketClientOptions = .init(),
        gitProxy: ProxySetting = .none,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.sourceRoots = sourceRoots
        self.archiveDirectory = archiveDirectory
        self.cloudEndpoints = cloudEndpoints
        self.dataCenterBaseURL = dataCenterBaseURL
        self.botName = botName
        self.botEmail = botEmail
        self.maxPushAttempts = maxPushAttempts
        self.maxFileSize = maxFileSize
        self.clientOptions = clientOptions
        self.gitProxy = gitProxy
        self.now = now
    }
}
