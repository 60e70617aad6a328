#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import PushBridgeServer
import Synchronization

/// A failed step of `pushbridge demo`; `step` names what was being checked or attempted.
struct DemoFailure: Error, CustomStringConvertible {
    let step: String
    let detail: String
    init(_ step: String, _ detail: String) {
        self.step = step
        self.detail = detail
    }
    var description: String { "\(step): \(detail)" }
}

/// `pushbridge serve` run as a real child process of the demo, configured only through an env
/// file (mode 0600) so no secret is ever part of its arguments.
final class DemoDaemon: Sendable {
    /// `http://127.0.0.1:<port>`: where the API answers, also its `PUSHBRIDGE_PUBLIC_URL`.
    let baseURL: String
    let logPath: String
    let envFilePath: String
    let pid: pid_t
    private let termination: TerminationBox
    // Held so Foundation keeps monitoring the child until it is reaped.
    private let process: Process

    private init(baseURL: String, logPath: String, envFilePath: String, process: Process,
                 termination: TerminationBox) {
        self.baseURL = baseURL
        self.logPath = logPath
        self.envFilePath = envFilePath
        self.pid = process.processIdentifier
        self.process = process
        self.termination = termination
    }

    /// A loopback port that was free a moment ago.
    ///
    /// The daemon's public URL (the OAuth callback registered with the consumer) must be known
    /// before it starts, so `PUSHBRIDGE_LISTEN=127.0.0.1:0` is not an option; the small race with
    /// another process taking the port is handled by ``start(stateDirectory:settings:)`` retrying.
    static func freeLoopbackPort() throws -> Int {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw DemoFailure("daemon", "socket() failed (errno \(errno))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        guard bound else { throw DemoFailure("daemon", "cannot bind a loopback port (errno \(errno))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Writes the env file and starts `<this executable> serve --env-file <file>`, retrying on
    /// another port when the chosen one was taken meanwhile; returns once `/readyz` says ok.
    ///
    /// - Parameters:
    ///   - settings: `PUSHBRIDGE_*` values; `PUSHBRIDGE_LISTEN` and `PUSHBRIDGE_PUBLIC_URL` are added.
    ///   - apiToken: Used to build the client that polls readiness.
    static func start(
        stateDirectory: String, settings: [(String, String)], apiToken: String, readyWithin: Duration = .seconds(60)
    ) async throws -> DemoDaemon {
        var lastFailure: DemoFailure?
        for _ in 0..<3 {
            let port = try freeLoopbackPort()
            let daemon = try spawn(stateDirectory: stateDirectory, port: port, settings: settings)
            do {
                try await daemon.waitReady(api: APIClient(baseURL: daemon.baseURL, token: apiToken), within: readyWithin)
                return daemon
            } catch let failure as DemoFailure {
                _ = await daemon.stop(within: .seconds(5))
                lastFailure = failure
                guard daemon.logTail(lines: 200).contains("in use") else { throw failure }
            }
        }
        throw lastFailure ?? DemoFailure("daemon", "did not start")
    }

    private static func spawn(stateDirectory: String, port: Int, settings: [(String, String)]) throws -> DemoDaemon {
        let baseURL = "http://127.0.0.1:\(port)"
        let envFile = (stateDirectory as NSString).appendingPathComponent("pushbridge.env")
        var text = "# Written by `pushbridge demo`; holds secrets, mode 0600.\n"
        for (name, value) in [("PUSHBRIDGE_LISTEN", "127.0.0.1:\(port)"), ("PUSHBRIDGE_PUBLIC_URL", baseURL)] + settings {
            text += "\(name)=\(value)\n"
        }
        try? FileManager.default.removeItem(atPath: envFile)
        // Created 0600 before the first byte is written: the secrets are never readable by others.
        guard FileManager.default.createFile(atPath: envFile, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw DemoFailure("daemon", "cannot create \(envFile)")
        }
        let envHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: envFile))
        try envHandle.write(contentsOf: Data(text.utf8))
        try envHandle.close()

        let logPath = (stateDirectory as NSString).appendingPathComponent("daemon.log")
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try log.seekToEnd()

        let home = (stateDirectory as NSString).appendingPathComponent("home")
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0])
        process.arguments = ["serve", "--env-file", envFile]
        // Not inherited: a PUSHBRIDGE_* variable of the caller would override the env file
        // (environment wins), NOTIFY_SOCKET would make the child talk to the caller's systemd,
        // and HOME points at the state directory so no user git configuration leaks in.
        var environment = ["HOME": home, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        if let tmp = ProcessInfo.processInfo.environment["TMPDIR"] { environment["TMPDIR"] = tmp }
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        let termination = TerminationBox()
        process.terminationHandler = { finished in
            let value = (finished.terminationStatus, finished.terminationReason == .uncaughtSignal)
            termination.value.withLock { $0 = value }
        }
        try process.run()
        try? log.close()
        return DemoDaemon(
            baseURL: baseURL, logPath: logPath, envFilePath: envFile, process: process,
            termination: termination)
    }

    /// `nil` while running; the exit status (or signal) once it ended.
    var exitStatus: (status: Int32, signalled: Bool)? { termination.value.withLock { $0 } }

    /// Polls `/readyz` until it answers `ok`; fails when the process ends or the deadline passes.
    func waitReady(api: APIClient, within limit: Duration) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if let exit = exitStatus {
                throw DemoFailure("daemon", "exited before it was ready (\(exit.signalled ? "signal" : "status") \(exit.status))")
            }
            if let health = try? await api.object(.GET, "/readyz"), health["status"] as? String == "ok" { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DemoFailure("daemon", "/readyz not ok within \(limit)")
    }

    /// Sends SIGTERM and waits for the exit; SIGKILLs after `within`. Returns the exit status,
    /// `nil` when it had to be killed.
    func stop(within limit: Duration) async -> Int32? {
        if exitStatus == nil { kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if let exit = exitStatus { return exit.signalled ? 128 + exit.status : exit.status }
            try? await Task.sleep(for: .milliseconds(50))
        }
        kill(pid, SIGKILL)
        for _ in 0..<100 where exitStatus == nil { try? await Task.sleep(for: .milliseconds(50)) }
        return nil
    }

    /// The last `lines` lines of the daemon's log.
    func logTail(lines: Int = 40) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}

/// The child's exit, set by Foundation's termination handler on its own thread.
final class TerminationBox: Sendable {
    let value = Mutex<(status: Int32, signalled: Bool)?>(nil)
}
