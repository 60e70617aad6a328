import Foundation

// Shared by both backends: the column layout, the row → model conversion and the
// job-transition decisions, so SQLite and PostgreSQL cannot drift apart semantically.

/// Instants are stored as integer milliseconds since 1970 in both databases: exact,
/// comparable in SQL, and free of each driver's date conventions.
enum Millis {
    static func from(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
    static func date(_ ms: Int64) -> Date { Date(timeIntervalSince1970: Double(ms) / 1000) }
    static func of(_ duration: Duration) -> Int64 {
        let c = duration.components
        return c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000
    }
}

enum StoreJSON {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String, what: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(text.utf8)) } catch {
            throw StoreError(.corruptRecord, "stored \(what) is not valid: \(error)")
        }
    }
}

/// The jobs columns every SELECT returns, in this order.
let jobColumns = """
    seq, id, spec, state, attempts, max_attempts, not_before, lease_owner, lease_expires_at, \
    lease_expiries, cancel_requested, idempotency_key, body_hash, result, error, checkpoint, \
    created_at, updated_at, finished_at
    """

let connectionColumns = """
    id, provider, workspace, api_url, site_url, git_url, credentials_kind, state, created_at, updated_at
    """

/// A jobs row as plain column values.
struct JobRow: Sendable {
    var seq: Int64
    var id: String
    var spec: String
    var state: String
    var attempts: Int
    var maxAttempts: Int
    var notBefore: Int64
    var leaseOwner: String?
    var leaseExpiresAt: Int64?
    var leaseExpiries: Int
    var cancelRequested: Bool
    var idempotencyKey: String?
    var bodyHash: String
    var result: String?
    var error: String?
    var checkpoint: String
    var createdAt: Int64
    var updatedAt: Int64
    var finishedAt: Int64?

    func job() throws -> Job {
        guard let state = JobState(rawValue: state) else {
            throw StoreError(.corruptRecord, "job \(id) has unknown state '\(self.state)'")
        }
        var lease: JobLease?
        if let leaseOwner, let leaseExpiresAt {
            lease = JobLease(owner: leaseOwner, expiresAt: Millis.date(leaseExpiresAt))
        }
        return Job(
            id: id,
            spec: try StoreJSON.decode(JobSpec.self, spec, what: "spec of job \(id)"),
            state: state,
            attempts: attempts,
            maxAttempts: maxAttempts,
            notBefore: Millis.date(notBefore),
            lease: lease,
            leaseExpiries: leaseExpiries,
            cancelRequested: cancelRequested,
            idempotencyKey: idempotencyKey,
            bodyHash: bodyHash,
            result: try result.map { try StoreJSON.decode(JobResult.self, $0, what: "result of job \(id)") },
            error: try error.map { try StoreJSON.decode(JobError.self, $0, what: "error of job \(id)") },
            checkpoint: try StoreJSON.decode(JobCheckpoint.self, checkpoint, what: "checkpoint of job \(id)"),
            createdAt: Millis.date(createdAt),
            updatedAt: Millis.date(updatedAt),
            finishedAt: finishedAt.map(Millis.date))
    }
}

/// A connections row as plain column values (without the sealed credentials).
struct ConnectionRow: Sendable {
    var id: String
    var provider: String
    var workspace: String
    var apiURL: String?
    var siteURL: String?
    var gitURL: String?
    var credentialsKind: String
    var state: String
    var createdAt: Int64
    var updatedAt: Int64

    func connection() throws -> Connection {
        guard let provider = Provider(rawValue: provider),
              let kind = CredentialsKind(rawValue: credentialsKind),
              let state = ConnectionState(rawValue: state)
        else { throw StoreError(.corruptRecord, "connection \(id) has an unknown provider, credentials kind or state") }
        return Connection(
            id: id, provider: provider, workspace: workspace,
            apiURL: apiURL.flatMap(URL.init(string:)), siteURL: siteURL.flatMap(URL.init(string:)),
            gitURL: gitURL.flatMap(URL.init(string:)), credentialsKind: kind, state: state,
            createdAt: Millis.date(createdAt), updatedAt: Millis.date(updatedAt))
    }
}

/// What ``Store/fail(jobID:workerID:error:retryAt:)`` does with a failed attempt.
enum FailOutcome: Equatable {
    case requeue(notBefore: Int64)
    case failed
    case cancelled

    var state: JobState {
        switch self {
        case .requeue: .queued
        case .failed: .failed
        case .cancelled: .cancelled
        }
    }

    static func decide(
        attempts: Int, maxAttempts: Int, cancelRequested: Bool, error: JobError, retryAt: Date?,
        now: Int64, backoff: (Int) -> Duration
    ) -> FailOutcome {
        if cancelRequested { return .cancelled }
        guard error.retryable, attempts < maxAttempts else { return .failed }
        let at = retryAt.map(Millis.from) ?? (now + Millis.of(backoff(attempts)))
        return .requeue(notBefore: at)
    }
}

/// Error recorded when a reclaimable job has no attempts left.
let leaseExpiredError = JobError(
    code: "lease_expired",
    message: "the worker's lease expired on the last allowed attempt (worker crashed or stalled)",
    retryable: false)

/// Keyset cursor of ``JobQuery``: the `seq` of the last job of the previous page.
/// Opaque to clients: "c" + decimal, so a future format can be told apart.
enum JobCursor {
    static func encode(_ seq: Int64) -> String { "c\(seq)" }
    static func decode(_ cursor: String) throws -> Int64 {
        guard cursor.hasPrefix("c"), let seq = Int64(cursor.dropFirst()), seq >= 0 else {
            throw StoreError(.invalidCursor, "cursor '\(cursor)' was not produced by this server")
        }
        return seq
    }
}

func clampLimit(_ limit: Int) -> Int { min(max(limit, 1), 500) }

func newJobID() -> String { UUID().uuidString.lowercased() }

func leaseLostOrMissing(_ jobID: String, exists: Bool) -> StoreError {
    exists
        ? StoreError(.leaseLost, "worker no longer holds the lease of job \(jobID)")
        : StoreError(.notFound, "job \(jobID) does not exist")
}
