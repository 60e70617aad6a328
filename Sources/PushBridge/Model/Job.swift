import Foundation

/// Lifecycle of a job. `succeeded`, `failed` and `cancelled` are final until an
/// explicit ``Store/retry(jobID:)`` (failed/cancelled only).
public enum JobState: String, Codable, Sendable, Hashable, CaseIterable {
    case queued
    case running
    case succeeded
    case failed
    case cancelled

    /// No worker will touch the job again on its own.
    public var isFinal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// Which worker holds a running job, and until when. A lease that is not renewed by
/// ``Store/heartbeat(jobID:workerID:leaseDuration:)`` before `expiresAt` lets another
/// worker reclaim the job.
public struct JobLease: Codable, Sendable, Hashable {
    public var owner: String
    public var expiresAt: Date
    public init(owner: String, expiresAt: Date) {
        self.owner = owner
        self.expiresAt = expiresAt
    }
}

/// Why a job (or one attempt of it) failed: `{"code", "message", "retryable"}` in the API.
public struct JobError: Codable, Sendable, Hashable, CodedError {
    public var code: String
    /// Human-readable; never contains secrets.
    public var message: String
    /// Whether running the job again may succeed (network, 5xx, rate limit, remote moved…).
    public var retryable: Bool

    public init(code: String, message: String, retryable: Bool) {
        self.code = code
        self.message = message
        self.retryable = retryable
    }
}

/// Outcome of a succeeded job.
public struct JobResult: Codable, Sendable, Hashable {
    /// Browser URL of the repository.
    public var repositoryUrl: String
    public var branch: String
    /// Tip of `branch` after the job (the new commit, or the existing tip when `changed` is false).
    public var commit: String
    /// `false`: the tree already matched, nothing was committed or pushed.
    public var changed: Bool
    public var pullRequest: PullRequestRef?
    public var stats: JobStats

    public init(
        repositoryUrl: String, branch: String, commit: String, changed: Bool,
        pullRequest: PullRequestRef? = nil, stats: JobStats = JobStats()
    ) {
        self.repositoryUrl = repositoryUrl
        self.branch = branch
        self.commit = commit
        self.changed = changed
        self.pullRequest = pullRequest
        self.stats = stats
    }

    public struct PullRequestRef: Codable, Sendable, Hashable {
        public var id: Int
        /// Browser URL of the pull request.
        public var url: String
        /// `true` when this job opened it, `false` when an open one was found (and maybe updated).
        public var created: Bool
        public init(id: Int, url: String, created: Bool) {
            self.id = id
            self.url = url
            self.created = created
        }
    }
}

/// Work a job did; grows with the size of the change, not of the repository.
public struct JobStats: Codable, Sendable, Hashable {
    /// Files whose blob was written (new or changed).
    public var filesWritten: Int
    /// Files removed (`sync` mode).
    public var filesDeleted: Int
    /// Files the job shipped whose content was already in the parent tree.
    public var filesUnchanged: Int
    /// Git objects (blobs, trees, commit) written to the object database.
    public var objectsWritten: Int
    /// Objects in the pushed pack.
    public var objectsSent: Int
    /// Bytes of the pushed pack.
    public var bytesSent: Int
    /// Bytes received while fetching branch and base.
    public var bytesFetched: Int
    /// Wall time of the attempt that succeeded, in milliseconds.
    public var durationMs: Int

    public init(
        filesWritten: Int = 0, filesDeleted: Int = 0, filesUnchanged: Int = 0, objectsWritten: Int = 0,
        objectsSent: Int = 0, bytesSent: Int = 0, bytesFetched: Int = 0, durationMs: Int = 0
    ) {
        self.filesWritten = filesWritten
        self.filesDeleted = filesDeleted
        self.filesUnchanged = filesUnchanged
        self.objectsWritten = objectsWritten
        self.objectsSent = objectsSent
        self.bytesSent = bytesSent
        self.bytesFetched = bytesFetched
        self.durationMs = durationMs
    }

    public init(from decoder: any Decoder) throws {
        // Lenient: stats recorded by an older version decode with zeros for new counters.
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func v(_ k: CodingKeys) throws -> Int { try c.decodeIfPresent(Int.self, forKey: k) ?? 0 }
        self.init(
            filesWritten: try v(.filesWritten), filesDeleted: try v(.filesDeleted),
            filesUnchanged: try v(.filesUnchanged), objectsWritten: try v(.objectsWritten),
            objectsSent: try v(.objectsSent), bytesSent: try v(.bytesSent),
            bytesFetched: try v(.bytesFetched), durationMs: try v(.durationMs))
    }
}

/// Progress the push pipeline persists between steps (``Store/saveCheckpoint(jobID:workerID:_:)``)
/// so that an attempt resumed after a crash or retry stays idempotent: it re-uses the
/// repository it created, the commit it built, and the pull request it opened, instead
/// of doing any of them twice. Every field is optional; `nil` = step not reached.
public struct JobCheckpoint: Codable, Sendable, Hashable {
    /// Browser URL of the repository once ensured.
    public var repositoryUrl: String?
    /// `true` if this job created the repository (vs. adopted an existing one).
    public var repositoryCreated: Bool?
    /// Commit the new commit was built on (branch tip, or base tip for a new branch).
    public var parentCommit: String?
    /// The commit this job built (its id is deterministic only with a fixed timestamp,
    /// so a resumed attempt must re-use it rather than rebuild).
    public var builtCommit: String?
    /// Tree of `builtCommit` (or of the parent when nothing changed).
    public var builtTree: String?
    /// Whether the built tree differs from the parent's.
    public var changed: Bool?
    /// Commit confirmed on the remote branch.
    public var pushedCommit: String?
    public var pullRequestId: Int?
    public var pullRequestUrl: String?
    public var pullRequestCreated: Bool?
    /// Open-ended progress markers for steps not modelled above.
    public var extra: [String: String]?

    public init(
        repositoryUrl: String? = nil, repositoryCreated: Bool? = nil, parentCommit: String? = nil,
        builtCommit: String? = nil, builtTree: String? = nil, changed: Bool? = nil,
        pushedCommit: String? = nil, pullRequestId: Int? = nil, pullRequestUrl: String? = nil,
        pullRequestCreated: Bool? = nil, extra: [String: String]? = nil
    ) {
        self.repositoryUrl = repositoryUrl
        self.repositoryCreated = repositoryCreated
        self.parentCommit = parentCommit
        self.builtCommit = builtCommit
        self.builtTree = builtTree
        self.changed = changed
        self.pushedCommit = pushedCommit
        self.pullRequestId = pullRequestId
        self.pullRequestUrl = pullRequestUrl
        self.pullRequestCreated = pullRequestCreated
        self.extra = extra
    }
}

/// A push job as stored.
public struct Job: Codable, Sendable, Hashable, Identifiable {
    /// Lowercase UUID assigned by the store.
    public var id: String
    public var spec: JobSpec
    public var state: JobState
    /// Attempts started so far (incremented by every claim, including reclaims after lease expiry;
    /// not by ``Store/release(jobID:workerID:)``).
    public var attempts: Int
    public var maxAttempts: Int
    /// The job is not claimed before this instant (retry backoff).
    public var notBefore: Date
    /// Present while `running`.
    public var lease: JobLease?
    /// How many times a worker's lease ran out and the job was reclaimed.
    public var leaseExpiries: Int
    /// `POST /v1/jobs/{id}/cancel` on a running job: the worker sees it on heartbeat and stops.
    public var cancelRequested: Bool
    public var idempotencyKey: String?
    /// ``JobSpec/canonicalHash()`` of the spec.
    public var bodyHash: String
    public var result: JobResult?
    /// Last error (kept while a retry is queued, so status shows why).
    public var error: JobError?
    public var checkpoint: JobCheckpoint
    public var createdAt: Date
    public var updatedAt: Date
    /// Set when the job reaches a final state.
    public var finishedAt: Date?

    public init(
        id: String, spec: JobSpec, state: JobState, attempts: Int, maxAttempts: Int, notBefore: Date,
        lease: JobLease?, leaseExpiries: Int, cancelRequested: Bool, idempotencyKey: String?,
        bodyHash: String, result: JobResult?, error: JobError?, checkpoint: JobCheckpoint,
        createdAt: Date, updatedAt: Date, finishedAt: Date?
    ) {
        self.id = id
        self.spec = spec
        self.state = state
        self.attempts = attempts
        self.maxAttempts = maxAttempts
        self.notBefore = notBefore
        self.lease = lease
        self.leaseExpiries = leaseExpiries
        self.cancelRequested = cancelRequested
        self.idempotencyKey = idempotencyKey
        self.bodyHash = bodyHash
        self.result = result
        self.error = error
        self.checkpoint = checkpoint
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.finishedAt = finishedAt
    }
}

/// Answer of ``Store/enqueue(_:idempotencyKey:maxAttempts:)``.
public struct EnqueueResult: Sendable, Hashable {
    public var job: Job
    /// `false` when an earlier request with the same idempotency key and body created `job`.
    public var created: Bool
    public init(job: Job, created: Bool) {
        self.job = job
        self.created = created
    }
}

/// Filter and page of ``Store/listJobs(_:)``. Results are newest first.
public struct JobQuery: Sendable, Hashable {
    public var state: JobState?
    public var connection: String?
    /// Opaque ``JobPage/nextCursor`` of the previous page.
    public var cursor: String?
    /// Clamped to 1…500.
    public var limit: Int

    public init(state: JobState? = nil, connection: String? = nil, cursor: String? = nil, limit: Int = 50) {
        self.state = state
        self.connection = connection
        self.cursor = cursor
        self.limit = limit
    }
}

/// One page of jobs. Keyset-paginated: jobs inserted while paging never shift pages.
public struct JobPage: Sendable, Hashable {
    public var jobs: [Job]
    /// `nil` on the last page.
    public var nextCursor: String?
    public init(jobs: [Job], nextCursor: String?) {
        self.jobs = jobs
        self.nextCursor = nextCursor
    }
}

/// A durable webhook delivery (transactional outbox): written when a job ends,
/// delivered and retried by the webhook sender.
public struct WebhookDelivery: Codable, Sendable, Hashable, Identifiable {
    public var id: Int64
    public var jobID: String
    /// Exact bytes to POST (the signature is computed over them).
    public var body: Data
    /// Delivery attempts made so far.
    public var attempts: Int
    public var nextAttemptAt: Date
    public var lastError: String?
    public var createdAt: Date
    public var deliveredAt: Date?

    public init(
        id: Int64, jobID: String, body: Data, attempts: Int, nextAttemptAt: Date, lastError: String?,
        createdAt: Date, deliveredAt: Date?
    ) {
        self.id = id
        self.jobID = jobID
        self.body = body
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.lastError = lastError
        self.createdAt = createdAt
        self.deliveredAt = deliveredAt
    }
}
