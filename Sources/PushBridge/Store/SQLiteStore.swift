import Foundation
import GRDB
import Logging

/// ``Store`` on an SQLite file (GRDB `DatabasePool`, WAL): the embedded default.
///
/// Several processes may open the same file: every write is an `IMMEDIATE` transaction
/// (GRDB's default for pool writes), so claims and state transitions serialize on
/// SQLite's write lock, and `busyTimeout` makes a writer wait for another process
/// instead of failing. Connection locks are rows in `connection_locks` (see
/// ``withConnectionLock(connectionID:_:)``) rather than a long write transaction,
/// because the lock is held across a network call and a held write transaction
/// would stall every writer in every process for that long.
public final class SQLiteStore: Store {
    public let vault: Vault
    /// Path of the database file.
    public let path: String
    let pool: DatabasePool
    let options: StoreOptions

    /// Opens (creating if needed, with parent directories) the database at `path`.
    /// Call ``migrate()`` before use.
    public init(path: String, vault: Vault, options: StoreOptions = StoreOptions()) throws {
        self.vault = vault
        self.path = path
        self.options = options
        var config = Configuration()
        config.label = "pushbridge"
        config.foreignKeysEnabled = true
        config.busyMode = .timeout(Double(Millis.of(options.busyTimeout)) / 1000)
        do {
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            self.pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw Self.mapError(error, "opening \(path)")
        }
    }

    // MARK: Lifecycle

    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-initial") { db in
            try db.execute(sql: """
                CREATE TABLE connections (
                    id TEXT PRIMARY KEY NOT NULL,
                    provider TEXT NOT NULL,
                    workspace TEXT NOT NULL,
                    api_url TEXT, site_url TEXT, git_url TEXT,
                    credentials_kind TEXT NOT NULL,
                    credentials_sealed TEXT NOT NULL,
                    state TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL
                );
                CREATE TABLE jobs (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    connection_id TEXT NOT NULL,
                    repo_slug TEXT NOT NULL,
                    branch TEXT NOT NULL,
                    spec TEXT NOT NULL,
                    state TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    max_attempts INTEGER NOT NULL,
                    not_before INTEGER NOT NULL,
                    lease_owner TEXT,
                    lease_expires_at INTEGER,
                    lease_expiries INTEGER NOT NULL DEFAULT 0,
                    cancel_requested INTEGER NOT NULL DEFAULT 0,
                    idempotency_key TEXT UNIQUE,
                    body_hash TEXT NOT NULL,
                    result TEXT,
                    error TEXT,
                    checkpoint TEXT NOT NULL DEFAULT '{}',
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    finished_at INTEGER
                );
                CREATE INDEX jobs_due ON jobs(state, not_before, seq);
                CREATE INDEX jobs_repo_branch ON jobs(connection_id, repo_slug, branch, state);
                CREATE INDEX jobs_connection ON jobs(connection_id, state, seq);
                CREATE TABLE webhook_outbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    job_id TEXT NOT NULL,
                    body BLOB NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at INTEGER NOT NULL,
                    last_error TEXT,
                    created_at INTEGER NOT NULL,
                    delivered_at INTEGER
                );
                CREATE INDEX webhook_outbox_due ON webhook_outbox(delivered_at, next_attempt_at, id);
                CREATE TABLE connection_locks (
                    connection_id TEXT PRIMARY KEY NOT NULL,
                    owner TEXT NOT NULL,
                    expires_at INTEGER NOT NULL
                );
                """)
        }
        migrator.registerMigration("v2-oauth-states") { db in
            // Nonces of consumed OAuth `state` values (single use across processes).
            try db.execute(sql: """
                CREATE TABLE oauth_states (
                    nonce TEXT PRIMARY KEY NOT NULL,
                    expires_at INTEGER NOT NULL
                );
                CREATE INDEX oauth_states_expiry ON oauth_states(expires_at);
                """)
        }
        return migrator
    }()

    public func migrate() async throws {
        do { try Self.migrator.migrate(pool) } catch { throw Self.mapError(error, "migrating") }
    }

    /// Names of the migrations applied to the file, in order.
    public func appliedMigrations() async throws -> [String] {
        try await read { db in try Self.migrator.appliedMigrations(db) }
    }

    public func ping() async throws {
        _ = try await read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    public func close() async throws {
        do { try pool.close() } catch { throw Self.mapError(error, "closing") }
    }

    // MARK: OAuth state

    public func consumeOAuthState(nonce: String, expiresAt: Date) async throws -> Bool {
        let now = Millis.from(options.now())
        return try await write { db in
            try db.execute(sql: "DELETE FROM oauth_states WHERE expires_at <= ?", arguments: [now])
            try db.execute(
                sql: "INSERT OR IGNORE INTO oauth_states (nonce, expires_at) VALUES (?, ?)",
                arguments: [nonce, Millis.from(expiresAt)])
            return db.changesCount > 0
        }
    }

    // MARK: Connections

    public func createConnection(_ connection: Connection, credentials: Credentials) async throws -> Connection {
        let sealed = try vault.seal(credentials, connectionID: connection.id)
        let now = Millis.from(options.now())
        return try await write { db in
            if try Self.connectionExists(db, connection.id) {
                throw StoreError(.connectionExists, "connection '\(connection.id)' already exists")
            }
            try db.execute(
                sql: """
                    INSERT INTO connections (id, provider, workspace, api_url, site_url, git_url,
                        credentials_kind, credentials_sealed, state, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    connection.id, connection.provider.rawValue, connection.workspace,
                    connection.apiURL?.absoluteString, connection.siteURL?.absoluteString,
                    connection.gitURL?.absoluteString, credentials.kind.rawValue, sealed,
                    connection.state.rawValue, now, now,
                ])
            return try Self.fetchConnection(db, connection.id)!
        }
    }

    public func connection(id: String) async throws -> Connection? {
        try await read { db in try Self.fetchConnection(db, id) }
    }

    public func listConnections() async throws -> [Connection] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT \(connectionColumns) FROM connections ORDER BY id")
                .map { try Self.connectionRow($0).connection() }
        }
    }

    public func credentials(connectionID: String) async throws -> Credentials {
        let sealed = try await read { db in
            try String.fetchOne(
                db, sql: "SELECT credentials_sealed FROM connections WHERE id = ?", arguments: [connectionID])
        }
        guard let sealed else { throw Self.noConnection(connectionID) }
        return try vault.openCredentials(sealed, connectionID: connectionID)
    }

    public func updateConnection(_ connection: Connection) async throws -> Connection {
        let now = Millis.from(options.now())
        return try await write { db in
            try db.execute(
                sql: """
                    UPDATE connections SET provider = ?, workspace = ?, api_url = ?, site_url = ?, git_url = ?,
                        state = ?, updated_at = ? WHERE id = ?
                    """,
                arguments: [
                    connection.provider.rawValue, connection.workspace, connection.apiURL?.absoluteString,
                    connection.siteURL?.absoluteString, connection.gitURL?.absoluteString,
                    connection.state.rawValue, now, connection.id,
                ])
            guard db.changesCount > 0, let updated = try Self.fetchConnection(db, connection.id) else {
                throw Self.noConnection(connection.id)
            }
            return updated
        }
    }

    public func updateCredentials(
        connectionID: String, _ credentials: Credentials, state: ConnectionState?
    ) async throws {
        let sealed = try vault.seal(credentials, connectionID: connectionID)
        let now = Millis.from(options.now())
        try await write { db in
            try db.execute(
                sql: """
                    UPDATE connections SET credentials_sealed = ?, credentials_kind = ?,
                        state = COALESCE(?, state), updated_at = ? WHERE id = ?
                    """,
                arguments: [sealed, credentials.kind.rawValue, state?.rawValue, now, connectionID])
            guard db.changesCount > 0 else { throw Self.noConnection(connectionID) }
        }
    }

    public func setConnectionState(connectionID: String, _ state: ConnectionState) async throws {
        let now = Millis.from(options.now())
        try await write { db in
            try db.execute(
                sql: "UPDATE connections SET state = ?, updated_at = ? WHERE id = ?",
                arguments: [state.rawValue, now, connectionID])
            guard db.changesCount > 0 else { throw Self.noConnection(connectionID) }
        }
    }

    public func deleteConnection(id: String) async throws -> Bool {
        try await write { db in
            try db.execute(sql: "DELETE FROM connections WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }

    public func withConnectionLock<T: Sendable>(
        connectionID: String,
        _ body: (any LockedConnection) async throws -> T
    ) async throws -> T {
        guard try await connection(id: connectionID) != nil else { throw Self.noConnection(connectionID) }
        let owner = UUID().uuidString
        let ttl = Millis.of(options.connectionLockTTL)
        var pause: Duration = .milliseconds(5)
        while true {
            let now = Millis.from(options.now())
            let acquired = try await write { db in
                // A row past its expiry belongs to a holder that died without releasing.
                try db.execute(
                    sql: "DELETE FROM connection_locks WHERE connection_id = ? AND expires_at <= ?",
                    arguments: [connectionID, now])
                try db.execute(
                    sql: "INSERT OR IGNORE INTO connection_locks (connection_id, owner, expires_at) VALUES (?, ?, ?)",
                    arguments: [connectionID, owner, now + ttl])
                return db.changesCount > 0
            }
            if acquired { break }
            // Another holder is mid-refresh (usually one HTTP round trip): poll with a
            // short, growing pause; SQLite offers no cross-process wait primitive.
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(100))
        }

        // Renew while the body runs so a slow token endpoint never lets a second holder in.
        let renewal = Task { [pool, options] in
            let interval = max(options.connectionLockTTL / 3, .milliseconds(10))
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { break }
                let expires = Millis.from(options.now()) + ttl
                _ = try? await pool.write { db in
                    try db.execute(
                        sql: "UPDATE connection_locks SET expires_at = ? WHERE connection_id = ? AND owner = ?",
                        arguments: [expires, connectionID, owner])
                }
            }
        }

        let outcome: Result<T, any Error>
        do {
            outcome = .success(try await body(SQLiteLockedConnection(store: self, connectionID: connectionID)))
        } catch {
            outcome = .failure(error)
        }
        renewal.cancel()
        _ = await renewal.result
        try await write { db in
            try db.execute(
                sql: "DELETE FROM connection_locks WHERE connection_id = ? AND owner = ?",
                arguments: [connectionID, owner])
        }
        return try outcome.get()
    }

    public func rotateKey() async throws -> Int {
        let vault = self.vault
        let now = Millis.from(options.now())
        return try await write { db in
            let rows = try Row.fetchAll(db, sql: "SELECT id, credentials_sealed FROM connections ORDER BY id")
            for row in rows {
                let id: String = row["id"]
                let sealed: String = row["credentials_sealed"]
                let plaintext = try vault.open(sealed, connectionID: id)
                let resealed = try vault.seal(plaintext, connectionID: id)
                try db.execute(
                    sql: "UPDATE connections SET credentials_sealed = ?, updated_at = ? WHERE id = ?",
                    arguments: [resealed, now, id])
            }
            return rows.count
        }
    }

    // MARK: Jobs

    public func enqueue(_ spec: JobSpec, idempotencyKey: String?, maxAttempts: Int) async throws -> EnqueueResult {
        let specJSON = String(decoding: try spec.canonicalJSON(), as: UTF8.self)
        let hash = try spec.canonicalHash()
        let now = Millis.from(options.now())
        let id = newJobID()
        let checkpoint = try StoreJSON.encode(JobCheckpoint())
        return try await write { db in
            if let idempotencyKey,
               let row = try Row.fetchOne(
                   db, sql: "SELECT \(jobColumns) FROM jobs WHERE idempotency_key = ?", arguments: [idempotencyKey])
            {
                let existing = Self.jobRow(row)
                guard existing.bodyHash == hash else {
                    throw StoreError(
                        .idempotencyConflict,
                        "idempotency key was already used for job \(existing.id) with a different body")
                }
                return EnqueueResult(job: try existing.job(), created: false)
            }
            guard try Self.connectionExists(db, spec.connection) else { throw Self.noConnection(spec.connection) }
            try db.execute(
                sql: """
                    INSERT INTO jobs (id, connection_id, repo_slug, branch, spec, state, attempts, max_attempts,
                        not_before, idempotency_key, body_hash, checkpoint, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    id, spec.connection, spec.repository.slug, spec.branch, specJSON, max(maxAttempts, 1), now,
                    idempotencyKey, hash, checkpoint, now, now,
                ])
            return EnqueueResult(job: try Self.fetchJob(db, id)!, created: true)
        }
    }

    public func job(id: String) async throws -> Job? {
        try await read { db in try Self.fetchJob(db, id) }
    }

    public func listJobs(_ query: JobQuery) async throws -> JobPage {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let state = query.state {
            conditions.append("state = ?")
            arguments += [state.rawValue]
        }
        if let connection = query.connection {
            conditions.append("connection_id = ?")
            arguments += [connection]
        }
        if let cursor = query.cursor {
            conditions.append("seq < ?")
            arguments += [try JobCursor.decode(cursor)]
        }
        let limit = clampLimit(query.limit)
        arguments += [limit + 1]
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let sql = "SELECT \(jobColumns) FROM jobs \(whereClause) ORDER BY seq DESC LIMIT ?"
        let rows = try await read { [arguments] db in try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.jobRow) }
        let page = Array(rows.prefix(limit))
        return JobPage(
            jobs: try page.map { try $0.job() },
            nextCursor: rows.count > limit ? page.last.map { JobCursor.encode($0.seq) } : nil)
    }

    public func cancel(jobID: String) async throws -> Job {
        let now = Millis.from(options.now())
        return try await write { db in
            guard let job = try Self.fetchJob(db, jobID) else { throw Self.noJob(jobID) }
            switch job.state {
            case .queued:
                try db.execute(
                    sql: """
                        UPDATE jobs SET state = 'cancelled', finished_at = ?, updated_at = ? WHERE id = ?
                        """,
                    arguments: [now, now, jobID])
            case .running:
                try db.execute(
                    sql: "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
                    arguments: [now, jobID])
            case .cancelled:
                return job
            case .succeeded, .failed:
                throw StoreError(.invalidState, "job \(jobID) is \(job.state.rawValue) and cannot be cancelled")
            }
            return try Self.fetchJob(db, jobID)!
        }
    }

    public func retry(jobID: String) async throws -> Job {
        let now = Millis.from(options.now())
        return try await write { db in
            guard let job = try Self.fetchJob(db, jobID) else { throw Self.noJob(jobID) }
            guard job.state == .failed || job.state == .cancelled else {
                throw StoreError(.invalidState, "job \(jobID) is \(job.state.rawValue); only failed or cancelled jobs can be retried")
            }
            try db.execute(
                sql: """
                    UPDATE jobs SET state = 'queued', attempts = 0, not_before = ?, lease_owner = NULL,
                        lease_expires_at = NULL, cancel_requested = 0, result = NULL, error = NULL,
                        finished_at = NULL, updated_at = ? WHERE id = ?
                    """,
                arguments: [now, now, jobID])
            return try Self.fetchJob(db, jobID)!
        }
    }

    public func claimNext(workerID: String, leaseDuration: Duration, perConnectionLimit: Int) async throws -> Job? {
        let now = Millis.from(options.now())
        let expires = now + Millis.of(leaseDuration)
        let expiredError = try StoreJSON.encode(leaseExpiredError)
        return try await write { db in
            // Dead leases on jobs that may not run again end here rather than being reclaimed.
            try db.execute(
                sql: """
                    UPDATE jobs SET
                        state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'failed' END,
                        error = CASE WHEN cancel_requested = 1 THEN error ELSE ? END,
                        lease_expiries = lease_expiries + 1,
                        lease_owner = NULL, lease_expires_at = NULL, finished_at = ?, updated_at = ?
                    WHERE state = 'running' AND lease_expires_at <= ?
                        AND (attempts >= max_attempts OR cancel_requested = 1)
                    """,
                arguments: [expiredError, now, now, now])
            let candidate = try Row.fetchOne(
                db,
                sql: """
                    SELECT seq, state FROM jobs AS j
                    WHERE ((j.state = 'queued' AND j.not_before <= :now)
                           OR (j.state = 'running' AND j.lease_expires_at <= :now))
                      AND NOT EXISTS (
                          SELECT 1 FROM jobs AS r
                          WHERE r.state = 'running' AND r.lease_expires_at > :now
                            AND r.connection_id = j.connection_id AND r.repo_slug = j.repo_slug
                            AND r.branch = j.branch)
                      AND (SELECT COUNT(*) FROM jobs AS r
                           WHERE r.state = 'running' AND r.lease_expires_at > :now
                             AND r.connection_id = j.connection_id) < :limit
                    ORDER BY j.seq
                    LIMIT 1
                    """,
                arguments: ["now": now, "limit": perConnectionLimit])
            guard let candidate else { return nil }
            let seq: Int64 = candidate["seq"]
            let reclaimed = (candidate["state"] as String) == JobState.running.rawValue
            try db.execute(
                sql: """
                    UPDATE jobs SET state = 'running', lease_owner = ?, lease_expires_at = ?,
                        attempts = attempts + 1, lease_expiries = lease_expiries + ?, updated_at = ?
                    WHERE seq = ?
                    """,
                arguments: [workerID, expires, reclaimed ? 1 : 0, now, seq])
            guard let row = try Row.fetchOne(db, sql: "SELECT \(jobColumns) FROM jobs WHERE seq = ?", arguments: [seq])
            else { return nil }
            return try Self.jobRow(row).job()
        }
    }

    public func heartbeat(jobID: String, workerID: String, leaseDuration: Duration) async throws -> Job {
        let now = Millis.from(options.now())
        let expires = now + Millis.of(leaseDuration)
        return try await write { db in
            try db.execute(
                sql: """
                    UPDATE jobs SET lease_expires_at = ?, updated_at = ?
                    WHERE id = ? AND state = 'running' AND lease_owner = ?
                    """,
                arguments: [expires, now, jobID, workerID])
            return try Self.ownedJobAfterUpdate(db, jobID)
        }
    }

    public func saveCheckpoint(jobID: String, workerID: String, _ checkpoint: JobCheckpoint) async throws {
        let now = Millis.from(options.now())
        let json = try StoreJSON.encode(checkpoint)
        try await write { db in
            try db.execute(
                sql: """
                    UPDATE jobs SET checkpoint = ?, updated_at = ?
                    WHERE id = ? AND state = 'running' AND lease_owner = ?
                    """,
                arguments: [json, now, jobID, workerID])
            _ = try Self.ownedJobAfterUpdate(db, jobID)
        }
    }

    public func complete(jobID: String, workerID: String, result: JobResult) async throws -> Job {
        let now = Millis.from(options.now())
        let json = try StoreJSON.encode(result)
        return try await write { db in
            try db.execute(
                sql: """
                    UPDATE jobs SET state = 'succeeded', result = ?, error = NULL, lease_owner = NULL,
                        lease_expires_at = NULL, finished_at = ?, updated_at = ?
                    WHERE id = ? AND state = 'running' AND lease_owner = ?
                    """,
                arguments: [json, now, now, jobID, workerID])
            return try Self.ownedJobAfterUpdate(db, jobID)
        }
    }

    public func fail(jobID: String, workerID: String, error: JobError, retryAt: Date?) async throws -> Job {
        let now = Millis.from(options.now())
        let errorJSON = try StoreJSON.encode(error)
        let backoff = options.retryBackoff
        return try await write { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT \(jobColumns) FROM jobs WHERE id = ?", arguments: [jobID])
            else { throw Self.noJob(jobID) }
            let job = Self.jobRow(row)
            guard job.state == JobState.running.rawValue, job.leaseOwner == workerID else {
                throw leaseLostOrMissing(jobID, exists: true)
            }
            let outcome = FailOutcome.decide(
                attempts: job.attempts, maxAttempts: job.maxAttempts, cancelRequested: job.cancelRequested,
                error: error, retryAt: retryAt, now: now, backoff: backoff)
            let notBefore: Int64
            let finishedAt: Int64?
            switch outcome {
            case .requeue(let at): (notBefore, finishedAt) = (at, nil)
            case .failed, .cancelled: (notBefore, finishedAt) = (job.notBefore, now)
            }
            try db.execute(
                sql: """
                    UPDATE jobs SET state = ?, error = ?, not_before = ?, lease_owner = NULL,
                        lease_expires_at = NULL, finished_at = ?, updated_at = ?
                    WHERE id = ?
                    """,
                arguments: [outcome.state.rawValue, errorJSON, notBefore, finishedAt, now, jobID])
            return try Self.fetchJob(db, jobID)!
        }
    }

    public func release(jobID: String, workerID: String) async throws {
        let now = Millis.from(options.now())
        try await write { db in
            try db.execute(
                sql: """
                    UPDATE jobs SET
                        state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END,
                        finished_at = CASE WHEN cancel_requested = 1 THEN ? ELSE NULL END,
                        attempts = MAX(attempts - 1, 0), not_before = ?, lease_owner = NULL,
                        lease_expires_at = NULL, updated_at = ?
                    WHERE id = ? AND state = 'running' AND lease_owner = ?
                    """,
                arguments: [now, now, now, jobID, workerID])
            if db.changesCount == 0 {
                throw leaseLostOrMissing(jobID, exists: try Self.fetchJob(db, jobID) != nil)
            }
        }
    }

    // MARK: Webhook outbox

    public func enqueueWebhook(jobID: String, body: Data) async throws -> WebhookDelivery {
        let now = Millis.from(options.now())
        return try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO webhook_outbox (job_id, body, attempts, next_attempt_at, created_at)
                    VALUES (?, ?, 0, ?, ?)
                    """,
                arguments: [jobID, body, now, now])
            let id = db.lastInsertedRowID
            return try Self.webhook(Row.fetchOne(db, sql: "SELECT * FROM webhook_outbox WHERE id = ?", arguments: [id])!)
        }
    }

    public func dueWebhooks(limit: Int) async throws -> [WebhookDelivery] {
        let now = Millis.from(options.now())
        return try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM webhook_outbox WHERE delivered_at IS NULL AND next_attempt_at <= ?
                    ORDER BY next_attempt_at, id LIMIT ?
                    """,
                arguments: [now, clampLimit(limit)]
            ).map(Self.webhook)
        }
    }

    public func markWebhookDelivered(id: Int64) async throws {
        let now = Millis.from(options.now())
        try await write { db in
            try db.execute(
                sql: "UPDATE webhook_outbox SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?",
                arguments: [now, id])
            guard db.changesCount > 0 else { throw StoreError(.notFound, "webhook delivery \(id) does not exist") }
        }
    }

    public func markWebhookAttempt(id: Int64, nextAttemptAt: Date, error: String?) async throws {
        try await write { db in
            try db.execute(
                sql: """
                    UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
                    WHERE id = ?
                    """,
                arguments: [Millis.from(nextAttemptAt), error, id])
            guard db.changesCount > 0 else { throw StoreError(.notFound, "webhook delivery \(id) does not exist") }
        }
    }

    // MARK: Helpers

    private func read<T: Sendable>(_ block: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await pool.read(block) } catch { throw Self.mapError(error, "reading") }
    }

    @discardableResult
    private func write<T: Sendable>(_ block: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await pool.write(block) } catch { throw Self.mapError(error, "writing") }
    }

    /// Domain errors pass through; GRDB errors become `database_error` with SQLite's code and
    /// message only (not the SQL or its arguments, which may hold sealed blobs).
    static func mapError(_ error: any Error, _ doing: String) -> any Error {
        switch error {
        case is StoreError, is VaultError, is CancellationError: return error
        case let error as DatabaseError:
            return StoreError(.database, "SQLite error \(error.resultCode) while \(doing): \(error.message ?? "")")
        default:
            return StoreError(.database, "SQLite failure while \(doing): \(error)")
        }
    }

    static func noConnection(_ id: String) -> StoreError {
        StoreError(.connectionNotFound, "connection '\(id)' does not exist")
    }

    static func noJob(_ id: String) -> StoreError { StoreError(.notFound, "job \(id) does not exist") }

    static func connectionExists(_ db: Database, _ id: String) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM connections WHERE id = ?", arguments: [id]) ?? false
    }

    static func fetchConnection(_ db: Database, _ id: String) throws -> Connection? {
        try Row.fetchOne(db, sql: "SELECT \(connectionColumns) FROM connections WHERE id = ?", arguments: [id])
            .map { try connectionRow($0).connection() }
    }

    static func fetchJob(_ db: Database, _ id: String) throws -> Job? {
        try Row.fetchOne(db, sql: "SELECT \(jobColumns) FROM jobs WHERE id = ?", arguments: [id])
            .map { try jobRow($0).job() }
    }

    /// After an UPDATE guarded by `lease_owner = ?`: the job if it matched, else `lease_lost`/`not_found`.
    static func ownedJobAfterUpdate(_ db: Database, _ jobID: String) throws -> Job {
        let changed = db.changesCount > 0
        guard let job = try fetchJob(db, jobID) else { throw noJob(jobID) }
        guard changed else { throw leaseLostOrMissing(jobID, exists: true) }
        return job
    }

    static func connectionRow(_ row: Row) -> ConnectionRow {
        ConnectionRow(
            id: row["id"], provider: row["provider"], workspace: row["workspace"], apiURL: row["api_url"],
            siteURL: row["site_url"], gitURL: row["git_url"], credentialsKind: row["credentials_kind"],
            state: row["state"], createdAt: row["created_at"], updatedAt: row["updated_at"])
    }

    static func jobRow(_ row: Row) -> JobRow {
        JobRow(
            seq: row["seq"], id: row["id"], spec: row["spec"], state: row["state"], attempts: row["attempts"],
            maxAttempts: row["max_attempts"], notBefore: row["not_before"], leaseOwner: row["lease_owner"],
            leaseExpiresAt: row["lease_expires_at"], leaseExpiries: row["lease_expiries"],
            cancelRequested: row["cancel_requested"], idempotencyKey: row["idempotency_key"],
            bodyHash: row["body_hash"], result: row["result"], error: row["error"], checkpoint: row["checkpoint"],
            createdAt: row["created_at"], updatedAt: row["updated_at"], finishedAt: row["finished_at"])
    }

    static func webhook(_ row: Row) -> WebhookDelivery {
        WebhookDelivery(
            id: row["id"], jobID: row["job_id"], body: row["body"], attempts: row["attempts"],
            nextAttemptAt: Millis.date(row["next_attempt_at"]), lastError: row["last_error"],
            createdAt: Millis.date(row["created_at"]),
            deliveredAt: (row["delivered_at"] as Int64?).map(Millis.date))
    }
}

/// SQLite's ``LockedConnection``: the lock is the `connection_locks` row, so reads and
/// writes go through the store's ordinary (immediately committed) transactions.
struct SQLiteLockedConnection: LockedConnection {
    let store: SQLiteStore
    let connectionID: String

    func connection() async throws -> Connection {
        guard let c = try await store.connection(id: connectionID) else {
            throw SQLiteStore.noConnection(connectionID)
        }
        return c
    }

    func credentials() async throws -> Credentials { try await store.credentials(connectionID: connectionID) }

    func updateCredentials(_ credentials: Credentials, state: ConnectionState?) async throws {
        try await store.updateCredentials(connectionID: connectionID, credentials, state: state)
    }

    func setState(_ state: ConnectionState) async throws {
        try await store.setConnectionState(connectionID: connectionID, state)
    }
}
