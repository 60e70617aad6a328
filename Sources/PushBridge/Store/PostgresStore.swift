import Foundation
import Logging
import PostgresNIO

/// ``Store`` on PostgreSQL, for several daemons on several machines sharing one queue.
///
/// The store owns a `PostgresClient` and runs its `run()` in a task it cancels on
/// ``close()``. Schema versions live in `schema_migrations`; ``migrate()`` holds a
/// transaction-scoped advisory lock so concurrent daemons never migrate twice.
///
/// Claims lock the candidate row with `FOR UPDATE SKIP LOCKED`, so a claim never waits
/// for rows other transactions are updating. The claim rules also look at *other* rows
/// (is this repository+branch busy? how many jobs does this connection run?), which row
/// locks cannot make atomic under READ COMMITTED: two claimers could each see a branch
/// idle and each take a different job for it. A transaction-scoped advisory lock therefore
/// serializes the claim decision (a few milliseconds); every later statement in the claim
/// transaction sees all previously committed claims.
public final class PostgresStore: Store {
    public let vault: Vault
    let client: PostgresClient
    let options: StoreOptions
    let logger: Logger
    private let runTask: Task<Void, Never>

    /// Advisory-lock namespace (first key of the two-key form); the second key picks the lock.
    static let lockNamespace: Int32 = 0x7062_7267  // "pbrg"
    static let migrationLock: Int32 = 1
    static let claimLock: Int32 = 2
    /// Namespace of per-connection locks; second key = `hashtext(connection id)`.
    static let connectionLockNamespace: Int32 = 0x7062_6c6b  // "pblk"

    /// Connects with a `postgres://user:password@host:port/database?sslmode=disable|prefer|require`
    /// URL (`postgresql://` also accepted; default port 5432, default sslmode `prefer`).
    /// - Throws: `invalid_database_url`.
    public convenience init(url: String, vault: Vault, options: StoreOptions = StoreOptions()) throws {
        try self.init(configuration: Self.configuration(from: url), vault: vault, options: options)
    }

    /// Uses an explicit client configuration (its `maximumConnections` is taken from `options`).
    public init(configuration: PostgresClient.Configuration, vault: Vault, options: StoreOptions = StoreOptions()) {
        var configuration = configuration
        configuration.options.maximumConnections = max(options.maximumConnections, 2)
        self.vault = vault
        self.options = options
        self.logger = options.logger
        let client = PostgresClient(configuration: configuration, backgroundLogger: options.logger)
        self.client = client
        self.runTask = Task { await client.run() }
    }

    /// Parses a `postgres://` URL. Credentials in it are percent-decoded.
    public static func configuration(from url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url),
              let scheme = components.scheme, scheme == "postgres" || scheme == "postgresql",
              let user = components.user, !user.isEmpty
        else {
            // The URL may contain a password: the message must not echo it.
            throw StoreError(.invalidDatabaseURL, "database URL must look like postgres://user[:password]@host[:port]/database")
        }
        let host = components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "localhost"
        let database = String(components.path.drop(while: { $0 == "/" }))
        let sslmode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch sslmode {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        default:
            throw StoreError(.invalidDatabaseURL, "unsupported sslmode '\(sslmode)' (use disable, prefer or require)")
        }
        return PostgresClient.Configuration(
            host: host, port: components.port ?? 5432,
            username: user.removingPercentEncoding ?? user,
            password: components.password.map { $0.removingPercentEncoding ?? $0 },
            database: database.isEmpty ? nil : database.removingPercentEncoding ?? database,
            tls: tls)
    }

    // MARK: Lifecycle

    /// Ordered schema versions. Append only; never edit a shipped entry.
    static let migrations: [(version: Int, name: String, statements: [PostgresQuery])] = [
        (1, "initial", [
            """
            CREATE TABLE connections (
                id TEXT PRIMARY KEY,
                provider TEXT NOT NULL,
                workspace TEXT NOT NULL,
                api_url TEXT, site_url TEXT, git_url TEXT,
                credentials_kind TEXT NOT NULL,
                credentials_sealed TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE jobs (
                seq BIGSERIAL PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                connection_id TEXT NOT NULL,
                repo_slug TEXT NOT NULL,
                branch TEXT NOT NULL,
                spec TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL,
                not_before BIGINT NOT NULL,
                lease_owner TEXT,
                lease_expires_at BIGINT,
                lease_expiries INTEGER NOT NULL DEFAULT 0,
                cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
                idempotency_key TEXT UNIQUE,
                body_hash TEXT NOT NULL,
                result TEXT,
                error TEXT,
                checkpoint TEXT NOT NULL DEFAULT '{}',
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                finished_at BIGINT
            )
            """,
            "CREATE INDEX jobs_due ON jobs (state, not_before, seq)",
            "CREATE INDEX jobs_repo_branch ON jobs (connection_id, repo_slug, branch, state)",
            "CREATE INDEX jobs_connection ON jobs (connection_id, state, seq)",
            """
            CREATE TABLE webhook_outbox (
                id BIGSERIAL PRIMARY KEY,
                job_id TEXT NOT NULL,
                body BYTEA NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL,
                last_error TEXT,
                created_at BIGINT NOT NULL,
                delivered_at BIGINT
            )
            """,
            "CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at, id) WHERE delivered_at IS NULL",
        ]),
        (2, "oauth-states", [
            // Nonces of consumed OAuth `state` values (single use across daemons).
            "CREATE TABLE oauth_states (nonce TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)",
            "CREATE INDEX oauth_states_expiry ON oauth_states (expires_at)",
        ]),
    ]

    public func migrate() async throws {
        try await transaction("migrating") { conn in
            try await self.exec("SELECT pg_advisory_xact_lock(\(Self.lockNamespace), \(Self.migrationLock))", on: conn)
            try await self.exec(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)
                """, on: conn)
            let applied = Set(try await self.rows("SELECT version FROM schema_migrations", on: conn)
                .map { try $0.decode(Int.self) })
            for migration in Self.migrations where !applied.contains(migration.version) {
                for statement in migration.statements { try await self.exec(statement, on: conn) }
                let now = Millis.from(self.options.now())
                try await self.exec(
                    """
                    INSERT INTO schema_migrations (version, name, applied_at)
                    VALUES (\(migration.version), \(migration.name), \(now))
                    """, on: conn)
                self.logger.info("applied migration", metadata: ["version": "\(migration.version)"])
            }
        }
    }

    /// Versions recorded in `schema_migrations`, ascending.
    public func appliedMigrations() async throws -> [Int] {
        try await operation("reading migrations") {
            try await self.rows("SELECT version FROM schema_migrations ORDER BY version").map { try $0.decode(Int.self) }
        }
    }

    public func ping() async throws {
        try await operation("pinging") { try await self.exec("SELECT 1") }
    }

    public func close() async throws {
        runTask.cancel()
        await runTask.value
    }

    // MARK: OAuth state

    public func consumeOAuthState(nonce: String, expiresAt: Date) async throws -> Bool {
        let now = Millis.from(options.now())
        return try await operation("consuming OAuth state") {
            try await self.exec("DELETE FROM oauth_states WHERE expires_at <= \(now)")
            // The primary key decides between concurrent callbacks: exactly one INSERT returns a row.
            let rows = try await self.rows(
                """
                INSERT INTO oauth_states (nonce, expires_at) VALUES (\(nonce), \(Millis.from(expiresAt)))
                ON CONFLICT (nonce) DO NOTHING RETURNING nonce
                """)
            return !rows.isEmpty
        }
    }

    // MARK: Connections

    public func createConnection(_ connection: Connection, credentials: Credentials) async throws -> Connection {
        let sealed = try vault.seal(credentials, connectionID: connection.id)
        let now = Millis.from(options.now())
        return try await operation("creating connection") {
            let rows = try await self.rows(
                """
                INSERT INTO connections (id, provider, workspace, api_url, site_url, git_url,
                    credentials_kind, credentials_sealed, state, created_at, updated_at)
                VALUES (\(connection.id), \(connection.provider.rawValue), \(connection.workspace),
                    \(connection.apiURL?.absoluteString), \(connection.siteURL?.absoluteString),
                    \(connection.gitURL?.absoluteString), \(credentials.kind.rawValue), \(sealed),
                    \(connection.state.rawValue), \(now), \(now))
                ON CONFLICT (id) DO NOTHING
                RETURNING \(unescaped: connectionColumns)
                """)
            guard let row = rows.first else {
                throw StoreError(.connectionExists, "connection '\(connection.id)' already exists")
            }
            return try Self.connectionRow(row).connection()
        }
    }

    public func connection(id: String) async throws -> Connection? {
        try await operation("reading connection") { try await self.fetchConnection(id, on: nil) }
    }

    public func listConnections() async throws -> [Connection] {
        try await operation("listing connections") {
            try await self.rows("SELECT \(unescaped: connectionColumns) FROM connections ORDER BY id")
                .map { try Self.connectionRow($0).connection() }
        }
    }

    public func credentials(connectionID: String) async throws -> Credentials {
        try await operation("reading credentials") { try await self.fetchCredentials(connectionID, on: nil) }
    }

    public func updateConnection(_ connection: Connection) async throws -> Connection {
        let now = Millis.from(options.now())
        return try await operation("updating connection") {
            let rows = try await self.rows(
                """
                UPDATE connections SET provider = \(connection.provider.rawValue), workspace = \(connection.workspace),
                    api_url = \(connection.apiURL?.absoluteString), site_url = \(connection.siteURL?.absoluteString),
                    git_url = \(connection.gitURL?.absoluteString), state = \(connection.state.rawValue),
                    updated_at = \(now)
                WHERE id = \(connection.id)
                RETURNING \(unescaped: connectionColumns)
                """)
            guard let row = rows.first else { throw Self.noConnection(connection.id) }
            return try Self.connectionRow(row).connection()
        }
    }

    public func updateCredentials(connectionID: String, _ credentials: Credentials, state: ConnectionState?) async throws {
        try await operation("updating credentials") {
            try await self.storeCredentials(connectionID, credentials, state: state, on: nil)
        }
    }

    public func setConnectionState(connectionID: String, _ state: ConnectionState) async throws {
        try await operation("setting connection state") {
            try await self.storeState(connectionID, state, on: nil)
        }
    }

    public func deleteConnection(id: String) async throws -> Bool {
        try await operation("deleting connection") {
            try await !self.rows("DELETE FROM connections WHERE id = \(id) RETURNING id").isEmpty
        }
    }

    public func withConnectionLock<T: Sendable>(
        connectionID: String,
        _ body: (any LockedConnection) async throws -> T
    ) async throws -> T {
        // Only the database work is mapped to `database_error`; whatever the body throws
        // reaches the caller unchanged.
        let outcome: Result<T, any Error> = try await operation("locking connection") {
            guard try await self.fetchConnection(connectionID, on: nil) != nil else {
                throw Self.noConnection(connectionID)
            }
            // A session-level advisory lock on one leased connection rather than
            // pg_advisory_xact_lock in a transaction: writes made inside the body then
            // autocommit, so a refresh token that Bitbucket just rotated is durable at once
            // instead of at the end of the body (and is kept if the body throws later).
            // If the process dies, the server drops the session and with it the lock.
            return try await self.client.withConnection { conn in
                try await self.exec(
                    "SELECT pg_advisory_lock(\(Self.connectionLockNamespace), hashtext(\(connectionID)))", on: conn)
                let outcome: Result<T, any Error>
                do {
                    outcome = .success(try await body(
                        PostgresLockedConnection(store: self, session: conn, connectionID: connectionID)))
                } catch {
                    outcome = .failure(error)
                }
                try await self.exec(
                    "SELECT pg_advisory_unlock(\(Self.connectionLockNamespace), hashtext(\(connectionID)))", on: conn)
                return outcome
            }
        }
        return try outcome.get()
    }

    public func rotateKey() async throws -> Int {
        let now = Millis.from(options.now())
        return try await transaction("rotating key") { conn in
            let rows = try await self.rows(
                "SELECT id, credentials_sealed FROM connections ORDER BY id FOR UPDATE", on: conn)
            for row in rows {
                let (id, sealed) = try row.decode((String, String).self)
                let plaintext = try self.vault.open(sealed, connectionID: id)
                let resealed = try self.vault.seal(plaintext, connectionID: id)
                try await self.exec(
                    "UPDATE connections SET credentials_sealed = \(resealed), updated_at = \(now) WHERE id = \(id)",
                    on: conn)
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
        return try await transaction("enqueueing") { conn in
            func existing() async throws -> EnqueueResult? {
                guard let idempotencyKey,
                      let row = try await self.rows(
                          "SELECT \(unescaped: jobColumns) FROM jobs WHERE idempotency_key = \(idempotencyKey)", on: conn
                      ).first
                else { return nil }
                let job = try Self.jobRow(row)
                guard job.bodyHash == hash else {
                    throw StoreError(
                        .idempotencyConflict, "idempotency key was already used for job \(job.id) with a different body")
                }
                return EnqueueResult(job: try job.job(), created: false)
            }
            if let found = try await existing() { return found }
            guard try await self.fetchConnection(spec.connection, on: conn) != nil else {
                throw Self.noConnection(spec.connection)
            }
            let inserted = try await self.rows(
                """
                INSERT INTO jobs (id, connection_id, repo_slug, branch, spec, state, attempts, max_attempts,
                    not_before, idempotency_key, body_hash, checkpoint, created_at, updated_at)
                VALUES (\(id), \(spec.connection), \(spec.repository.slug), \(spec.branch), \(specJSON), 'queued', 0,
                    \(max(maxAttempts, 1)), \(now), \(idempotencyKey), \(hash), \(checkpoint), \(now), \(now))
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING \(unescaped: jobColumns)
                """, on: conn)
            if let row = inserted.first { return EnqueueResult(job: try Self.jobRow(row).job(), created: true) }
            // A concurrent request with the same key committed between our check and insert.
            guard let found = try await existing() else {
                throw StoreError(.database, "job insert conflicted but no job holds the idempotency key")
            }
            return found
        }
    }

    public func job(id: String) async throws -> Job? {
        try await operation("reading job") { try await self.fetchJob(id, on: nil) }
    }

    public func listJobs(_ query: JobQuery) async throws -> JobPage {
        let limit = clampLimit(query.limit)
        let cursor = try query.cursor.map(JobCursor.decode) ?? Int64.max
        // NULL parameters switch filters off, keeping one fully parameterized statement.
        let rows = try await operation("listing jobs") {
            try await self.rows(
                """
                SELECT \(unescaped: jobColumns) FROM jobs
                WHERE (\(query.state?.rawValue)::text IS NULL OR state = \(query.state?.rawValue))
                  AND (\(query.connection)::text IS NULL OR connection_id = \(query.connection))
                  AND seq < \(cursor)
                ORDER BY seq DESC
                LIMIT \(limit + 1)
                """
            ).map(Self.jobRow)
        }
        let page = Array(rows.prefix(limit))
        return JobPage(
            jobs: try page.map { try $0.job() },
            nextCursor: rows.count > limit ? page.last.map { JobCursor.encode($0.seq) } : nil)
    }

    public func cancel(jobID: String) async throws -> Job {
        let now = Millis.from(options.now())
        return try await transaction("cancelling") { conn in
            guard let job = try await self.fetchJob(jobID, forUpdate: true, on: conn) else { throw Self.noJob(jobID) }
            switch job.state {
            case .queued:
                try await self.exec(
                    "UPDATE jobs SET state = 'cancelled', finished_at = \(now), updated_at = \(now) WHERE id = \(jobID)",
                    on: conn)
            case .running:
                try await self.exec(
                    "UPDATE jobs SET cancel_requested = TRUE, updated_at = \(now) WHERE id = \(jobID)", on: conn)
            case .cancelled:
                return job
            case .succeeded, .failed:
                throw StoreError(.invalidState, "job \(jobID) is \(job.state.rawValue) and cannot be cancelled")
            }
            return try await self.fetchJob(jobID, on: conn)!
        }
    }

    public func retry(jobID: String) async throws -> Job {
        let now = Millis.from(options.now())
        return try await transaction("retrying") { conn in
            guard let job = try await self.fetchJob(jobID, forUpdate: true, on: conn) else { throw Self.noJob(jobID) }
            guard job.state == .failed || job.state == .cancelled else {
                throw StoreError(
                    .invalidState, "job \(jobID) is \(job.state.rawValue); only failed or cancelled jobs can be retried")
            }
            let rows = try await self.rows(
                """
                UPDATE jobs SET state = 'queued', attempts = 0, not_before = \(now), lease_owner = NULL,
                    lease_expires_at = NULL, cancel_requested = FALSE, result = NULL, error = NULL,
                    finished_at = NULL, updated_at = \(now)
                WHERE id = \(jobID)
                RETURNING \(unescaped: jobColumns)
                """, on: conn)
            return try Self.jobRow(rows[0]).job()
        }
    }

    public func claimNext(workerID: String, leaseDuration: Duration, perConnectionLimit: Int) async throws -> Job? {
        let now = Millis.from(options.now())
        let expires = now + Millis.of(leaseDuration)
        let expiredError = try StoreJSON.encode(leaseExpiredError)
        return try await transaction("claiming") { conn in
            try await self.exec("SELECT pg_advisory_xact_lock(\(Self.lockNamespace), \(Self.claimLock))", on: conn)
            // Dead leases on jobs that may not run again end here rather than being reclaimed.
            try await self.exec(
                """
                UPDATE jobs SET
                    state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
                    error = CASE WHEN cancel_requested THEN error ELSE \(expiredError) END,
                    lease_expiries = lease_expiries + 1,
                    lease_owner = NULL, lease_expires_at = NULL, finished_at = \(now), updated_at = \(now)
                WHERE state = 'running' AND lease_expires_at <= \(now)
                    AND (attempts >= max_attempts OR cancel_requested)
                """, on: conn)
            let candidates = try await self.rows(
                """
                SELECT j.seq, j.state FROM jobs AS j
                WHERE ((j.state = 'queued' AND j.not_before <= \(now))
                       OR (j.state = 'running' AND j.lease_expires_at <= \(now)))
                  AND NOT EXISTS (
                      SELECT 1 FROM jobs AS r
                      WHERE r.state = 'running' AND r.lease_expires_at > \(now)
                        AND r.connection_id = j.connection_id AND r.repo_slug = j.repo_slug
                        AND r.branch = j.branch)
                  AND (SELECT COUNT(*) FROM jobs AS r
                       WHERE r.state = 'running' AND r.lease_expires_at > \(now)
                         AND r.connection_id = j.connection_id) < \(perConnectionLimit)
                ORDER BY j.seq
                LIMIT 1
                FOR UPDATE OF j SKIP LOCKED
                """, on: conn)
            guard let candidate = candidates.first else { return nil }
            let (seq, state) = try candidate.decode((Int64, String).self)
            let reclaimed = state == JobState.running.rawValue ? 1 : 0
            let rows = try await self.rows(
                """
                UPDATE jobs SET state = 'running', lease_owner = \(workerID), lease_expires_at = \(expires),
                    attempts = attempts + 1, lease_expiries = lease_expiries + \(reclaimed), updated_at = \(now)
                WHERE seq = \(seq)
                RETURNING \(unescaped: jobColumns)
                """, on: conn)
            return try rows.first.map { try Self.jobRow($0).job() }
        }
    }

    public func heartbeat(jobID: String, workerID: String, leaseDuration: Duration) async throws -> Job {
        let now = Millis.from(options.now())
        let expires = now + Millis.of(leaseDuration)
        return try await ownedUpdate(jobID, "heartbeat") {
            """
            UPDATE jobs SET lease_expires_at = \(expires), updated_at = \(now)
            WHERE id = \(jobID) AND state = 'running' AND lease_owner = \(workerID)
            RETURNING \(unescaped: jobColumns)
            """
        }
    }

    public func saveCheckpoint(jobID: String, workerID: String, _ checkpoint: JobCheckpoint) async throws {
        let now = Millis.from(options.now())
        let json = try StoreJSON.encode(checkpoint)
        _ = try await ownedUpdate(jobID, "saving checkpoint") {
            """
            UPDATE jobs SET checkpoint = \(json), updated_at = \(now)
            WHERE id = \(jobID) AND state = 'running' AND lease_owner = \(workerID)
            RETURNING \(unescaped: jobColumns)
            """
        }
    }

    public func complete(jobID: String, workerID: String, result: JobResult) async throws -> Job {
        let now = Millis.from(options.now())
        let json = try StoreJSON.encode(result)
        return try await ownedUpdate(jobID, "completing") {
            """
            UPDATE jobs SET state = 'succeeded', result = \(json), error = NULL, lease_owner = NULL,
                lease_expires_at = NULL, finished_at = \(now), updated_at = \(now)
            WHERE id = \(jobID) AND state = 'running' AND lease_owner = \(workerID)
            RETURNING \(unescaped: jobColumns)
            """
        }
    }

    public func fail(jobID: String, workerID: String, error: JobError, retryAt: Date?) async throws -> Job {
        let now = Millis.from(options.now())
        let errorJSON = try StoreJSON.encode(error)
        return try await transaction("failing") { conn in
            guard let row = try await self.rows(
                "SELECT \(unescaped: jobColumns) FROM jobs WHERE id = \(jobID) FOR UPDATE", on: conn
            ).first else { throw Self.noJob(jobID) }
            let job = try Self.jobRow(row)
            guard job.state == JobState.running.rawValue, job.leaseOwner == workerID else {
                throw leaseLostOrMissing(jobID, exists: true)
            }
            let outcome = FailOutcome.decide(
                attempts: job.attempts, maxAttempts: job.maxAttempts, cancelRequested: job.cancelRequested,
                error: error, retryAt: retryAt, now: now, backoff: self.options.retryBackoff)
            let notBefore: Int64
            let finishedAt: Int64?
            switch outcome {
            case .requeue(let at): (notBefore, finishedAt) = (at, nil)
            case .failed, .cancelled: (notBefore, finishedAt) = (job.notBefore, now)
            }
            let rows = try await self.rows(
                """
                UPDATE jobs SET state = \(outcome.state.rawValue), error = \(errorJSON), not_before = \(notBefore),
                    lease_owner = NULL, lease_expires_at = NULL, finished_at = \(finishedAt), updated_at = \(now)
                WHERE id = \(jobID)
                RETURNING \(unescaped: jobColumns)
                """, on: conn)
            return try Self.jobRow(rows[0]).job()
        }
    }

    public func release(jobID: String, workerID: String) async throws {
        let now = Millis.from(options.now())
        _ = try await ownedUpdate(jobID, "releasing") {
            """
            UPDATE jobs SET
                state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
                finished_at = CASE WHEN cancel_requested THEN \(now) ELSE NULL END,
                attempts = GREATEST(attempts - 1, 0), not_before = \(now), lease_owner = NULL,
                lease_expires_at = NULL, updated_at = \(now)
            WHERE id = \(jobID) AND state = 'running' AND lease_owner = \(workerID)
            RETURNING \(unescaped: jobColumns)
            """
        }
    }

    // MARK: Webhook outbox

    static let webhookColumns = "id, job_id, body, attempts, next_attempt_at, last_error, created_at, delivered_at"

    public func enqueueWebhook(jobID: String, body: Data) async throws -> WebhookDelivery {
        let now = Millis.from(options.now())
        return try await operation("enqueueing webhook") {
            let rows = try await self.rows(
                """
                INSERT INTO webhook_outbox (job_id, body, attempts, next_attempt_at, created_at)
                VALUES (\(jobID), \(body), 0, \(now), \(now))
                RETURNING \(unescaped: Self.webhookColumns)
                """)
            return try Self.webhook(rows[0])
        }
    }

    public func dueWebhooks(limit: Int) async throws -> [WebhookDelivery] {
        let now = Millis.from(options.now())
        return try await operation("reading webhooks") {
            try await self.rows(
                """
                SELECT \(unescaped: Self.webhookColumns) FROM webhook_outbox
                WHERE delivered_at IS NULL AND next_attempt_at <= \(now)
                ORDER BY next_attempt_at, id LIMIT \(clampLimit(limit))
                """
            ).map(Self.webhook)
        }
    }

    public func markWebhookDelivered(id: Int64) async throws {
        let now = Millis.from(options.now())
        try await operation("marking webhook delivered") {
            let rows = try await self.rows(
                "UPDATE webhook_outbox SET delivered_at = \(now), attempts = attempts + 1 WHERE id = \(id) RETURNING id")
            guard !rows.isEmpty else { throw StoreError(.notFound, "webhook delivery \(id) does not exist") }
        }
    }

    public func markWebhookAttempt(id: Int64, nextAttemptAt: Date, error: String?) async throws {
        try await operation("recording webhook attempt") {
            let rows = try await self.rows(
                """
                UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = \(Millis.from(nextAttemptAt)),
                    last_error = \(error)
                WHERE id = \(id) RETURNING id
                """)
            guard !rows.isEmpty else { throw StoreError(.notFound, "webhook delivery \(id) does not exist") }
        }
    }

    // MARK: Shared statements (pool or a given connection)

    func fetchConnection(_ id: String, on conn: PostgresConnection?) async throws -> Connection? {
        try await rows("SELECT \(unescaped: connectionColumns) FROM connections WHERE id = \(id)", on: conn)
            .first.map { try Self.connectionRow($0).connection() }
    }

    func fetchCredentials(_ id: String, on conn: PostgresConnection?) async throws -> Credentials {
        guard let row = try await rows("SELECT credentials_sealed FROM connections WHERE id = \(id)", on: conn).first
        else { throw Self.noConnection(id) }
        return try vault.openCredentials(try row.decode(String.self), connectionID: id)
    }

    func storeCredentials(
        _ id: String, _ credentials: Credentials, state: ConnectionState?, on conn: PostgresConnection?
    ) async throws {
        let sealed = try vault.seal(credentials, connectionID: id)
        let now = Millis.from(options.now())
        let rows = try await rows(
            """
            UPDATE connections SET credentials_sealed = \(sealed), credentials_kind = \(credentials.kind.rawValue),
                state = COALESCE(\(state?.rawValue), state), updated_at = \(now)
            WHERE id = \(id) RETURNING id
            """, on: conn)
        guard !rows.isEmpty else { throw Self.noConnection(id) }
    }

    func storeState(_ id: String, _ state: ConnectionState, on conn: PostgresConnection?) async throws {
        let now = Millis.from(options.now())
        let rows = try await rows(
            "UPDATE connections SET state = \(state.rawValue), updated_at = \(now) WHERE id = \(id) RETURNING id",
            on: conn)
        guard !rows.isEmpty else { throw Self.noConnection(id) }
    }

    func fetchJob(_ id: String, forUpdate: Bool = false, on conn: PostgresConnection?) async throws -> Job? {
        let query: PostgresQuery = forUpdate
            ? "SELECT \(unescaped: jobColumns) FROM jobs WHERE id = \(id) FOR UPDATE"
            : "SELECT \(unescaped: jobColumns) FROM jobs WHERE id = \(id)"
        return try await rows(query, on: conn).first.map { try Self.jobRow($0).job() }
    }

    /// Runs an UPDATE … RETURNING guarded by lease ownership; no row → `lease_lost` or `not_found`.
    private func ownedUpdate(_ jobID: String, _ what: String, _ query: () -> PostgresQuery) async throws -> Job {
        let statement = query()
        return try await operation(what) {
            if let row = try await self.rows(statement).first { return try Self.jobRow(row).job() }
            let exists = try await !self.rows("SELECT 1 FROM jobs WHERE id = \(jobID)").isEmpty
            throw leaseLostOrMissing(jobID, exists: exists)
        }
    }

    // MARK: Plumbing

    func rows(_ query: PostgresQuery, on conn: PostgresConnection? = nil) async throws -> [PostgresRow] {
        if let conn { return try await conn.query(query, logger: logger).collect() }
        return try await client.query(query, logger: logger).collect()
    }

    func exec(_ query: PostgresQuery, on conn: PostgresConnection? = nil) async throws {
        _ = try await rows(query, on: conn)
    }

    /// BEGIN … COMMIT on one pooled connection. Hand-rolled rather than postgres-nio's
    /// `withTransaction` because that wraps the body's error in `PostgresTransactionError`,
    /// which would hide our typed `StoreError`/`VaultError` from callers.
    private func transaction<T: Sendable>(
        _ what: String, _ body: @escaping (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await operation(what) {
            try await self.client.withConnection { conn in
                try await self.exec("BEGIN", on: conn)
                do {
                    let value = try await body(conn)
                    try await self.exec("COMMIT", on: conn)
                    return value
                } catch {
                    try? await self.exec("ROLLBACK", on: conn)
                    throw error
                }
            }
        }
    }

    /// Domain errors pass through; PostgreSQL errors become `database_error` carrying the
    /// SQLSTATE and server message only (never the statement's bind values).
    private func operation<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as StoreError {
            throw error
        } catch let error as VaultError {
            throw error
        } catch let error as PSQLError {
            let state = error.serverInfo?[.sqlState] ?? "-"
            let message = error.serverInfo?[.message] ?? "\(error.code)"
            throw StoreError(.database, "PostgreSQL error \(state) while \(what): \(message)")
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw StoreError(.database, "PostgreSQL failure while \(what): \(type(of: error))")
        }
    }

    static func noConnection(_ id: String) -> StoreError {
        StoreError(.connectionNotFound, "connection '\(id)' does not exist")
    }

    static func noJob(_ id: String) -> StoreError { StoreError(.notFound, "job \(id) does not exist") }

    static func connectionRow(_ row: PostgresRow) throws -> ConnectionRow {
        let r = row.makeRandomAccess()
        return ConnectionRow(
            id: try r["id"].decode(String.self), provider: try r["provider"].decode(String.self),
            workspace: try r["workspace"].decode(String.self), apiURL: try r["api_url"].decode(String?.self),
            siteURL: try r["site_url"].decode(String?.self), gitURL: try r["git_url"].decode(String?.self),
            credentialsKind: try r["credentials_kind"].decode(String.self), state: try r["state"].decode(String.self),
            createdAt: try r["created_at"].decode(Int64.self), updatedAt: try r["updated_at"].decode(Int64.self))
    }

    static func jobRow(_ row: PostgresRow) throws -> JobRow {
        let r = row.makeRandomAccess()
        return JobRow(
            seq: try r["seq"].decode(Int64.self), id: try r["id"].decode(String.self),
            spec: try r["spec"].decode(String.self), state: try r["state"].decode(String.self),
            attempts: try r["attempts"].decode(Int.self), maxAttempts: try r["max_attempts"].decode(Int.self),
            notBefore: try r["not_before"].decode(Int64.self), leaseOwner: try r["lease_owner"].decode(String?.self),
            leaseExpiresAt: try r["lease_expires_at"].decode(Int64?.self),
            leaseExpiries: try r["lease_expiries"].decode(Int.self),
            cancelRequested: try r["cancel_requested"].decode(Bool.self),
            idempotencyKey: try r["idempotency_key"].decode(String?.self),
            bodyHash: try r["body_hash"].decode(String.self), result: try r["result"].decode(String?.self),
            error: try r["error"].decode(String?.self), checkpoint: try r["checkpoint"].decode(String.self),
            createdAt: try r["created_at"].decode(Int64.self), updatedAt: try r["updated_at"].decode(Int64.self),
            finishedAt: try r["finished_at"].decode(Int64?.self))
    }

    static func webhook(_ row: PostgresRow) throws -> WebhookDelivery {
        let r = row.makeRandomAccess()
        return WebhookDelivery(
            id: try r["id"].decode(Int64.self), jobID: try r["job_id"].decode(String.self),
            body: try r["body"].decode(Data.self), attempts: try r["attempts"].decode(Int.self),
            nextAttemptAt: Millis.date(try r["next_attempt_at"].decode(Int64.self)),
            lastError: try r["last_error"].decode(String?.self),
            createdAt: Millis.date(try r["created_at"].decode(Int64.self)),
            deliveredAt: try r["delivered_at"].decode(Int64?.self).map(Millis.date))
    }
}

/// PostgreSQL's ``LockedConnection``: runs on the very database session that holds the
/// advisory lock, so the body needs no second pooled connection (a pool exhausted by
/// lock waiters cannot starve the holder).
struct PostgresLockedConnection: LockedConnection {
    let store: PostgresStore
    let session: PostgresConnection
    let connectionID: String

    func connection() async throws -> Connection {
        guard let c = try await store.fetchConnection(connectionID, on: session) else {
            throw PostgresStore.noConnection(connectionID)
        }
        return c
    }

    func credentials() async throws -> Credentials {
        try await store.fetchCredentials(connectionID, on: session)
    }

    func updateCredentials(_ credentials: Credentials, state: ConnectionState?) async throws {
        try await store.storeCredentials(connectionID, credentials, state: state, on: session)
    }

    func setState(_ state: ConnectionState) async throws {
        try await store.storeState(connectionID, state, on: session)
    }
}
