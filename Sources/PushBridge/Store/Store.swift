import Foundation
import Logging

/// Why a store operation was refused. `database_error` wraps failures of the backend
/// itself; every other code is a domain answer the caller can act on.
public struct StoreError: CodedError, Hashable {
    public enum Code: String, Sendable, Hashable {
        /// Job or webhook delivery does not exist.
        case notFound = "not_found"
        /// The connection id is unknown (also for jobs enqueued against it).
        case connectionNotFound = "connection_not_found"
        /// `createConnection` with an id already taken.
        case connectionExists = "connection_exists"
        /// Same idempotency key, different body (HTTP 409).
        case idempotencyConflict = "idempotency_conflict"
        /// The worker no longer owns the job's lease (it expired and another worker took it, or the job ended).
        case leaseLost = "lease_lost"
        /// Transition not allowed from the job's current state (e.g. retry a queued job).
        case invalidState = "invalid_state"
        /// `PUSHBRIDGE_DATABASE_URL` is not `sqlite:///…` or `postgres://…`.
        case invalidDatabaseURL = "invalid_database_url"
        /// A stored row could not be decoded.
        case corruptRecord = "corrupt_record"
        /// A `JobQuery.cursor` that no `JobPage` produced.
        case invalidCursor = "invalid_cursor"
        /// The database failed (I/O, connection, constraint, …).
        case database = "database_error"
    }

    public let kind: Code
    public let message: String
    public var code: String { kind.rawValue }

    public init(_ kind: Code, _ message: String) {
        self.kind = kind
        self.message = message
    }
}

/// Tuning and seams shared by both store implementations.
public struct StoreOptions: Sendable {
    /// Source of "now" for leases, `notBefore` and timestamps. Tests inject a manual clock;
    /// production uses the system clock (daemons sharing a PostgreSQL database must keep
    /// their clocks in sync, as lease expiry compares instants written by different hosts).
    public var now: @Sendable () -> Date
    /// Delay before retry number `attempt + 1` after a retryable failure of attempt `attempt` (1-based),
    /// used when ``Store/fail(jobID:workerID:error:retryAt:)`` gets no explicit `retryAt`.
    public var retryBackoff: @Sendable (_ attempt: Int) -> Duration
    /// SQLite only: how long a ``Store/withConnectionLock(connectionID:_:)`` lock row stays valid
    /// without renewal. The holder renews it while the body runs, so this only bounds how long a
    /// crashed process blocks others.
    public var connectionLockTTL: Duration
    /// SQLite only: how long a writer waits for another process's write transaction.
    public var busyTimeout: Duration
    /// PostgreSQL only: maximum pooled connections.
    public var maximumConnections: Int
    public var logger: Logger

    /// Defaults: system clock, backoff 5 s · 2^(attempt−1) capped at 10 min, lock TTL 120 s,
    /// busy timeout 30 s, 10 PostgreSQL connections, logger `pushbridge.store`.
    public init(
        now: @escaping @Sendable () -> Date = { Date() },
        retryBackoff: @escaping @Sendable (_ attempt: Int) -> Duration = StoreOptions.defaultBackoff,
        connectionLockTTL: Duration = .seconds(120),
        busyTimeout: Duration = .seconds(30),
        maximumConnections: Int = 10,
        logger: Logger = Logger(label: "pushbridge.store")
    ) {
        self.now = now
        self.retryBackoff = retryBackoff
        self.connectionLockTTL = connectionLockTTL
        self.busyTimeout = busyTimeout
        self.maximumConnections = maximumConnections
        self.logger = logger
    }

    /// 5 s, 10 s, 20 s, … capped at 10 minutes.
    public static let defaultBackoff: @Sendable (Int) -> Duration = { attempt in
        let exponent = min(max(attempt - 1, 0), 16)
        return .seconds(min(5 * (1 << exponent), 600))
    }
}

/// Read and write access to one connection while holding its lock
/// (``Store/withConnectionLock(connectionID:_:)``). Every write is committed
/// immediately, so a rotated refresh token is durable the moment it is written,
/// even if the body later throws or the process dies.
public protocol LockedConnection: Sendable {
    var connectionID: String { get }
    /// The connection as stored now (re-read inside the lock: another process may just have refreshed).
    func connection() async throws -> Connection
    /// The connection's credentials, unsealed.
    func credentials() async throws -> Credentials
    /// Replaces the credentials (sealed under the current key); optionally also sets the state.
    func updateCredentials(_ credentials: Credentials, state: ConnectionState?) async throws
    func setState(_ state: ConnectionState) async throws
}

/// Durable state of pushbridge: connections (with sealed credentials), the job queue with
/// leases, and the webhook outbox. ``SQLiteStore`` and ``PostgresStore`` implement it with
/// identical semantics; the same test suite runs against both.
///
/// Worker protocol: ``claimNext(workerID:leaseDuration:perConnectionLimit:)`` → periodic
/// ``heartbeat(jobID:workerID:leaseDuration:)`` (watch ``Job/cancelRequested``) and
/// ``saveCheckpoint(jobID:workerID:_:)`` → exactly one of ``complete(jobID:workerID:result:)``,
/// ``fail(jobID:workerID:error:retryAt:)`` or (on shutdown) ``release(jobID:workerID:)``.
/// Every worker call after claiming throws `lease_lost` once another worker has taken the job.
public protocol Store: Sendable {
    /// Seals and opens credentials.
    var vault: Vault { get }

    /// Applies pending schema migrations (idempotent; safe to run from several processes).
    func migrate() async throws
    /// Cheap round-trip for readiness checks.
    func ping() async throws
    /// Releases database resources. The store must not be used afterwards.
    func close() async throws

    // MARK: Connections

    /// Inserts a connection and seals its credentials. `createdAt`/`updatedAt`/`credentialsKind`
    /// are set by the store. Throws `connection_exists`.
    func createConnection(_ connection: Connection, credentials: Credentials) async throws -> Connection
    func connection(id: String) async throws -> Connection?
    /// All connections ordered by id.
    func listConnections() async throws -> [Connection]
    /// Unsealed credentials. Throws `connection_not_found`, or a ``VaultError``.
    func credentials(connectionID: String) async throws -> Credentials
    /// Updates provider, workspace, URLs and state (not id, not credentials). Throws `connection_not_found`.
    func updateConnection(_ connection: Connection) async throws -> Connection
    /// Replaces the credentials atomically (and the state, when given). Throws `connection_not_found`.
    func updateCredentials(connectionID: String, _ credentials: Credentials, state: ConnectionState?) async throws
    func setConnectionState(connectionID: String, _ state: ConnectionState) async throws
    /// Deletes the connection; `false` if it did not exist. Its jobs stay (history).
    func deleteConnection(id: String) async throws -> Bool
    /// Runs `body` while holding an exclusive, cross-process lock on the connection, so at most one
    /// token refresh per connection is in flight across every daemon sharing the database.
    /// Throws `connection_not_found` before running `body` if the connection does not exist.
    func withConnectionLock<T: Sendable>(
        connectionID: String,
        _ body: (any LockedConnection) async throws -> T
    ) async throws -> T
    /// Re-seals every connection's credentials under ``Vault/current`` in one transaction
    /// (`pushbridge rotate-key`). Returns the number of rows re-sealed.
    func rotateKey() async throws -> Int

    // MARK: OAuth state

    /// Marks the `state` nonce of an OAuth authorization as used, so a callback is honoured once
    /// across every daemon sharing the database. Returns `true` the first time a nonce is seen and
    /// `false` on a replay. Rows whose `expiresAt` has passed (by ``StoreOptions/now``) are purged
    /// on the way: once expired, the signed state itself is refused, so the row is no longer needed.
    func consumeOAuthState(nonce: String, expiresAt: Date) async throws -> Bool

    // MARK: Jobs

    /// Queues a job. With an idempotency key: the same key and the same body (by
    /// ``JobSpec/canonicalHash()``) returns the existing job with `created: false`; the same key
    /// and another body throws `idempotency_conflict`. Throws `connection_not_found`.
    func enqueue(_ spec: JobSpec, idempotencyKey: String?, maxAttempts: Int) async throws -> EnqueueResult
    func job(id: String) async throws -> Job?
    /// Newest first, keyset-paginated.
    func listJobs(_ query: JobQuery) async throws -> JobPage
    /// queued → cancelled (final). running → sets ``Job/cancelRequested`` (the worker stops and
    /// calls `fail`, which ends the job as cancelled). Final states: `invalid_state`.
    func cancel(jobID: String) async throws -> Job
    /// failed/cancelled → queued, attempts reset to 0, error/result/finishedAt cleared, checkpoint kept
    /// (so a retried job resumes idempotently). Other states: `invalid_state`.
    func retry(jobID: String) async throws -> Job

    /// Atomically claims the oldest due job for `workerID`: a queued job whose `notBefore` has passed,
    /// or a running job whose lease expired (its ``Job/leaseExpiries`` is incremented). Skips jobs whose
    /// connection + repository slug + branch has another running job with a live lease, and jobs whose
    /// connection already has `perConnectionLimit` running jobs with live leases. The claimed job is
    /// running, leased until now + `leaseDuration`, with `attempts` incremented. Expired leases on jobs
    /// out of attempts end as failed (`lease_expired`). Returns `nil` when nothing is claimable.
    func claimNext(workerID: String, leaseDuration: Duration, perConnectionLimit: Int) async throws -> Job?
    /// Extends the lease to now + `leaseDuration` if `workerID` still owns it; returns the job so the
    /// worker can see ``Job/cancelRequested``. Otherwise throws `lease_lost`.
    func heartbeat(jobID: String, workerID: String, leaseDuration: Duration) async throws -> Job
    /// Persists pipeline progress. Throws `lease_lost` if `workerID` does not own the job.
    func saveCheckpoint(jobID: String, workerID: String, _ checkpoint: JobCheckpoint) async throws
    /// running → succeeded with `result`. Throws `lease_lost`.
    func complete(jobID: String, workerID: String, result: JobResult) async throws -> Job
    /// Records a failed attempt. Retryable and attempts < maxAttempts (and no cancel requested) →
    /// queued with `notBefore = retryAt ?? now + retryBackoff(attempts)`; cancel requested → cancelled;
    /// otherwise → failed. Throws `lease_lost`.
    func fail(jobID: String, workerID: String, error: JobError, retryAt: Date?) async throws -> Job
    /// Gives the job back (graceful shutdown): running → queued, due now, without counting the attempt.
    /// Throws `lease_lost`.
    func release(jobID: String, workerID: String) async throws

    // MARK: Webhook outbox

    /// Records a delivery to make, due now.
    func enqueueWebhook(jobID: String, body: Data) async throws -> WebhookDelivery
    /// Undelivered deliveries whose `nextAttemptAt` has passed, oldest first.
    func dueWebhooks(limit: Int) async throws -> [WebhookDelivery]
    /// Marks delivered; later `dueWebhooks` never returns it. Throws `not_found`.
    func markWebhookDelivered(id: Int64) async throws
    /// Records a failed attempt (attempts + 1) and when to try next. Throws `not_found`.
    func markWebhookAttempt(id: Int64, nextAttemptAt: Date, error: String?) async throws
}

extension Store {
    /// ``enqueue(_:idempotencyKey:maxAttempts:)`` with 5 attempts.
    public func enqueue(_ spec: JobSpec, idempotencyKey: String? = nil) async throws -> EnqueueResult {
        try await enqueue(spec, idempotencyKey: idempotencyKey, maxAttempts: 5)
    }
}
