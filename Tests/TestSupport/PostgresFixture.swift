import Foundation
import Synchronization

/// A database created for one test on the shared test PostgreSQL server.
public struct PostgresTestDatabase: Sendable {
    /// `postgres://user[:password]@host:port/<name>?sslmode=disable`, ready for `PostgresStore(url:)`.
    public let url: String
    /// `t_<random>`.
    public let name: String
    let server: PostgresFixture.Server

    /// Runs `sql` in this database with psql and returns its unaligned, tuples-only output
    /// (lets tests inspect raw rows, e.g. that no plaintext secret was stored).
    public func query(_ sql: String) async throws -> String {
        let (server, name) = (server, name)
        return try await offCooperativePool { try PostgresFixture.psql(server, sql, database: name) }
    }

    /// Drops the database (best effort: tests call it at the end; a throwaway cluster is
    /// deleted at exit anyway).
    public func drop() async {
        let (server, name) = (server, name)
        _ = try? await offCooperativePool { try PostgresFixture.psql(server, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
    }
}

/// Why the PostgreSQL fixture cannot provide a database.
public struct PostgresFixtureError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// PostgreSQL for tests.
///
/// With `PUSHBRIDGE_TEST_POSTGRES_URL` set (what `scripts/postgres-setup.sh` prints), that
/// server is used; its role needs `CREATEDB`. Otherwise the first call starts a throwaway
/// cluster for this test process: `initdb` into a fresh temporary directory (owned by the
/// `postgres` user when running as root, since PostgreSQL refuses to run as root), `pg_ctl start`
/// on a free loopback port with trust authentication, stopped and deleted at process exit.
/// Each ``makeDatabase()`` creates a fresh database, so tests never see each other's rows.
public actor PostgresFixture {
    public static let shared = PostgresFixture()

    struct Server: Sendable {
        var host: String
        var port: Int
        var user: String
        var password: String?
        var sslmode: String
        var psql: String
    }

    private var starting: Task<Server, any Error>?

    /// `nil` when PostgreSQL can be used; otherwise the reason (for skip messages).
    public nonisolated static var unavailableReason: String? {
        if let url = ProcessInfo.processInfo.environment["PUSHBRIDGE_TEST_POSTGRES_URL"], !url.isEmpty {
            return findPSQL() == nil ? "PUSHBRIDGE_TEST_POSTGRES_URL is set but no psql client was found" : nil
        }
        return findBinDir() == nil
            ? "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin and PUSHBRIDGE_TEST_POSTGRES_URL unset "
                + "(run scripts/postgres-setup.sh)"
            : nil
    }

    /// Creates `t_<random>` on the test server and returns its URL.
    public func makeDatabase() async throws -> PostgresTestDatabase {
        let server = try await startIfNeeded()
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        // psql is waited for with waitpid: off the cooperative pool (see `offCooperativePool`).
        _ = try await offCooperativePool { try Self.psql(server, "CREATE DATABASE \(name)") }
        var url = "postgres://\(Self.percent(server.user))"
        if let password = server.password { url += ":\(Self.percent(password))" }
        url += "@\(server.host):\(server.port)/\(name)?sslmode=\(server.sslmode)"
        return PostgresTestDatabase(url: url, name: String(name), server: server)
    }

    /// The first caller starts the server; callers arriving while it starts (the actor is
    /// re-entered at the `await`) share the same task instead of starting a second cluster.
    private func startIfNeeded() async throws -> Server {
        let task = starting ?? Task {
            do {
                return try await offCooperativePool { try Self.start() }
            } catch let error as PostgresFixtureError {
                throw error
            } catch {
                throw PostgresFixtureError(description: "\(error)")
            }
        }
        starting = task
        return try await task.value
    }

    private static func start() throws -> Server {
        if let raw = ProcessInfo.processInfo.environment["PUSHBRIDGE_TEST_POSTGRES_URL"], !raw.isEmpty {
            guard let c = URLComponents(string: raw), let host = c.host, let user = c.user else {
                throw PostgresFixtureError(description: "PUSHBRIDGE_TEST_POSTGRES_URL is not a postgres:// URL")
            }
            guard let psql = findPSQL() else { throw PostgresFixtureError(description: "psql not found") }
            let sslmode = c.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "disable"
            return Server(
                host: host, port: c.port ?? 5432, user: user.removingPercentEncoding ?? user,
                password: c.password.map { $0.removingPercentEncoding ?? $0 }, sslmode: sslmode, psql: psql)
        }
        guard let bin = findBinDir() else {
            throw PostgresFixtureError(description: unavailableReason ?? "PostgreSQL unavailable")
        }
        let asRoot = geteuid() == 0
        removeStaleClusters(bin: bin, asRoot: asRoot)
        let root = FileManager.default.temporaryDirectory
            .appendingPathComponent("pushbridge-pg-\(getpid())-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        if asRoot { try run("/usr/bin/chown", ["postgres:postgres", root]) }
        try run("/bin/chmod", ["700", root])
        let data = root + "/data"
        try runAsPostgres(asRoot, bin + "/initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        // Free port: bind to port 0 and give it back; the short race with other processes
        // is acceptable for a test cluster (pg_ctl would fail loudly).
        let port = try freeLoopbackPort()
        let options = "-c listen_addresses=127.0.0.1 -p \(port) -c unix_socket_directories=\(root) "
            + "-c fsync=off -c max_connections=200"
        do {
            try runAsPostgres(
                asRoot, bin + "/pg_ctl", ["-D", data, "-l", root + "/server.log", "-w", "-t", "60", "-o", options, "start"])
        } catch {
            let log = (try? String(contentsOfFile: root + "/server.log", encoding: .utf8)) ?? ""
            throw PostgresFixtureError(description: "pg_ctl start failed: \(error)\n\(log.suffix(2000))")
        }
        registerStopAtExit(ClusterToStop(pgctl: bin + "/pg_ctl", data: data, root: root, asRoot: asRoot))
        return Server(host: "127.0.0.1", port: port, user: "postgres", password: nil, sslmode: "disable", psql: bin + "/psql")
    }

    /// A test process killed by a signal never runs its exit handler: stop and delete the
    /// clusters of test processes that no longer exist, so they do not pile up.
    private static func removeStaleClusters(bin: String, asRoot: Bool) {
        let tmp = FileManager.default.temporaryDirectory
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tmp.path)) ?? []
        where name.hasPrefix("pushbridge-pg-") {
            let fields = name.split(separator: "-")
            guard fields.count >= 4, let pid = pid_t(fields[2]), pid != getpid(),
                  kill(pid, 0) == -1, errno == ESRCH
            else { continue }
            let root = tmp.appendingPathComponent(name).path
            _ = try? runAsPostgres(asRoot, bin + "/pg_ctl", ["-D", root + "/data", "-m", "immediate", "-w", "stop"])
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    // MARK: Process helpers

    @discardableResult
    static func psql(_ server: Server, _ sql: String, database: String = "postgres") throws -> String {
        var env = ProcessInfo.processInfo.environment
        // The password goes through the environment, never the argument list.
        if let password = server.password { env["PGPASSWORD"] = password }
        env["PGSSLMODE"] = server.sslmode
        return try run(
            server.psql,
            ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", server.host, "-p", String(server.port), "-U", server.user,
             "-d", database, "-tA", "-c", sql],
            environment: env)
    }

    private static func runAsPostgres(_ asRoot: Bool, _ tool: String, _ arguments: [String]) throws {
        if asRoot { try run("/usr/sbin/runuser", ["-u", "postgres", "--", tool] + arguments) } else { try run(tool, arguments) }
    }

    /// Runs a tool to completion with `posix_spawn` + `waitpid`, output to a temporary file.
    ///
    /// Not Foundation's `Process`: on Linux its `waitUntilExit()` was seen to hang forever
    /// after `pg_ctl start` (whose server outlives it) although the child had exited, and a
    /// pipe for output would be inherited and held open by that server.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("pb-fixture-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let argv: [UnsafeMutablePointer<CChar>?] = ([tool] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, tool, &actions, nil, argv, envp)
        guard spawned == 0 else {
            throw PostgresFixtureError(description: "cannot run \(tool): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // WIFEXITED && WEXITSTATUS == 0, spelled out (the C macros are not imported).
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw PostgresFixtureError(
                description: "\(URL(fileURLWithPath: tool).lastPathComponent) failed (status \(status)): \(text)")
        }
        return text
    }

    nonisolated static func findBinDir() -> String? {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [])
            .compactMap(Int.init).sorted()
        return versions.reversed().map { "\(base)/\($0)/bin" }.first {
            FileManager.default.isExecutableFile(atPath: $0 + "/initdb")
        }
    }

    nonisolated static func findPSQL() -> String? {
        if let bin = findBinDir(), FileManager.default.isExecutableFile(atPath: bin + "/psql") { return bin + "/psql" }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let candidate = "\(dir)/psql"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    private static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw PostgresFixtureError(description: "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw PostgresFixtureError(description: "bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func percent(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? s
    }
}

// MARK: Stop at exit

struct ClusterToStop: Sendable {
    var pgctl: String
    var data: String
    var root: String
    var asRoot: Bool
}

private let clusterToStop = Mutex<ClusterToStop?>(nil)

private func registerStopAtExit(_ cluster: ClusterToStop) {
    clusterToStop.withLock { $0 = cluster }
    atexit {
        guard let cluster = clusterToStop.withLock({ $0.take() }) else { return }
        let arguments = ["-D", cluster.data, "-m", "immediate", "-w", "stop"]
        if cluster.asRoot {
            _ = try? PostgresFixture.run("/usr/sbin/runuser", ["-u", "postgres", "--", cluster.pgctl] + arguments)
        } else {
            _ = try? PostgresFixture.run(cluster.pgctl, arguments)
        }
        try? FileManager.default.removeItem(atPath: cluster.root)
    }
}
