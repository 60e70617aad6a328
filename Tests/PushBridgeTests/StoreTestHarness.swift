import Foundation
import Logging
import PushBridge
import Synchronization
import Testing
import TestSupport

/// The two store implementations; every shared store test runs once per backend.
enum StoreBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite
    case postgres
    var testDescription: String { rawValue }
}

/// A clock tests move by hand, so lease expiry and backoff are exercised without sleeping
/// and without timing thresholds.
final class ManualClock: Sendable {
    private let current: Mutex<Date>
    init(_ start: Date = Date(timeIntervalSince1970: 1_750_000_000)) { current = Mutex(start) }
    var now: Date { current.withLock { $0 } }
    func advance(_ duration: Duration) {
        let c = duration.components
        current.withLock { $0 += Double(c.seconds) + Double(c.attoseconds) / 1e18 }
    }
}

/// A backend's database for one test, and the stores opened on it.
final class StoreEnvironment: Sendable {
    let backend: StoreBackend
    let clock: ManualClock
    let store: any Store
    let sqlitePath: String?
    let postgres: PostgresTestDatabase?
    private let opened: Mutex<[any Store]>

    init(backend: StoreBackend, clock: ManualClock, store: any Store, sqlitePath: String?, postgres: PostgresTestDatabase?) {
        self.backend = backend
        self.clock = clock
        self.store = store
        self.sqlitePath = sqlitePath
        self.postgres = postgres
        self.opened = Mutex([store])
    }

    var options: StoreOptions { testStoreOptions(clock) }

    /// Another store instance on the same database (as a second daemon would have).
    func openAnother(vault: Vault? = nil, migrate: Bool = true) async throws -> any Store {
        let store = try Self.open(
            backend, sqlitePath: sqlitePath, postgresURL: postgres?.url, vault: vault ?? self.store.vault, options: options)
        opened.withLock { $0.append(store) }
        if migrate { try await store.migrate() }
        return store
    }

    static func open(
        _ backend: StoreBackend, sqlitePath: String?, postgresURL: String?, vault: Vault, options: StoreOptions
    ) throws -> any Store {
        switch backend {
        case .sqlite: try SQLiteStore(path: sqlitePath!, vault: vault, options: options)
        case .postgres: try PostgresStore(url: postgresURL!, vault: vault, options: options)
        }
    }

    /// What the database holds, read around the store: psql output for PostgreSQL, the raw
    /// bytes of the database files (main, WAL, SHM) for SQLite.
    func rawDatabaseText() async throws -> String {
        switch backend {
        case .postgres:
            return try await postgres!.query("SELECT id || ' ' || credentials_sealed FROM connections")
        case .sqlite:
            let dir = URL(fileURLWithPath: sqlitePath!).deletingLastPathComponent()
            var text = ""
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
                let data = try Data(contentsOf: dir.appendingPathComponent(name))
                text += String(decoding: data, as: UTF8.self)
            }
            return text
        }
    }

    func closeAll() async {
        for store in opened.withLock({ $0 }) { try? await store.close() }
        await postgres?.drop()
        if let sqlitePath {
            try? FileManager.default.removeItem(at: URL(fileURLWithPath: sqlitePath).deletingLastPathComponent())
        }
    }
}

/// Store options on the manual clock. Log level `error`: postgres-nio warns when the first
/// query races the client's `run()` task starting, which is expected and only noise here.
func testStoreOptions(_ clock: ManualClock) -> StoreOptions {
    var logger = Logger(label: "pushbridge.store.test")
    logger.logLevel = .error
    return StoreOptions(now: { clock.now }, logger: logger)
}

let testKey = try! MasterKey(base64: Data(repeating: 7, count: 32).base64EncodedString())
let testVault = Vault(current: testKey)

/// Runs `body` against a fresh, migrated database of `backend`; always cleans up.
/// PostgreSQL tests are cancelled (skipped) with the reason when no server is available.
func withStore(
    _ backend: StoreBackend, vault: Vault = testVault, _ body: (StoreEnvironment) async throws -> Void
) async throws {
    let clock = ManualClock()
    let options = testStoreOptions(clock)
    let env: StoreEnvironment
    switch backend {
    case .sqlite:
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pb-store-\(UUID().uuidString)")
        let path = dir.appendingPathComponent("pushbridge.sqlite").path
        let store = try SQLiteStore(path: path, vault: vault, options: options)
        env = StoreEnvironment(backend: backend, clock: clock, store: store, sqlitePath: path, postgres: nil)
    case .postgres:
        if let reason = PostgresFixture.unavailableReason { try Test.cancel("PostgreSQL unavailable: \(reason)") }
        let database = try await PostgresFixture.shared.makeDatabase()
        let store = try PostgresStore(url: database.url, vault: vault, options: options)
        env = StoreEnvironment(backend: backend, clock: clock, store: store, sqlitePath: nil, postgres: database)
    }
    do {
        try await env.store.migrate()
        try await body(env)
    } catch {
        await env.closeAll()
        throw error
    }
    await env.closeAll()
}

// MARK: Fixtures

func makeConnection(_ id: String = "acme-cloud", provider: Provider = .bitbucketCloud) -> Connection {
    Connection(
        id: id, provider: provider, workspace: "acme",
        apiURL: URL(string: "http://127.0.0.1:9/2.0"), siteURL: URL(string: "http://127.0.0.1:9"),
        gitURL: nil, credentialsKind: .oauth2)
}

let sampleCredentials = Credentials.oauth2(.init(
    accessToken: "at-SECRET-1111", refreshToken: "rt-SECRET-2222",
    expiresAt: Date(timeIntervalSince1970: 1_760_000_000), clientId: "client-1", clientSecret: "cs-SECRET-3333",
    scopes: ["repository:write", "pullrequest:write"]))

func makeSpec(
    connection: String = "acme-cloud", slug: String = "billing", branch: String = "pushbridge/a",
    message: String = "Generated"
) -> JobSpec {
    JobSpec(
        connection: connection,
        repository: .init(slug: slug, create: true, private: true, project: "PROJ"),
        source: .directory("/var/lib/pushbridge/builds/1"),
        branch: branch, baseBranch: "main",
        commit: .init(message: message, author: .init(name: "Bot", email: "bot@example.com")),
        pullRequest: .init(title: "Build", description: "desc"))
}

/// Expects `body` to throw a ``CodedError`` with `code`; returns it for further checks.
@discardableResult
func expectCode(
    _ code: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async -> (any CodedError)? {
    do {
        try await body()
        Issue.record("expected error \(code), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as any CodedError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected error \(code), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// A shareable, lock-protected value for recording what concurrent tasks did.
final class Recorder<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ initial: Value) { value = Mutex(initial) }
    func mutate<R: Sendable>(_ body: (inout Value) -> R) -> R { value.withLock { body(&$0) } }
    var snapshot: Value { value.withLock { $0 } }
}
