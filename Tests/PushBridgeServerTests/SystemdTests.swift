#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import TestSupport

@testable import PushBridgeServer

/// A bound AF_UNIX datagram socket standing in for systemd's notification socket.
///
/// `@unchecked Sendable`: the only state is the immutable descriptor; `recv` on it is thread-safe.
final class NotifySocketListener: @unchecked Sendable {
    let fd: Int32
    let name: String

    /// Binds `name`: a filesystem path, or `@abstract`.
    init(name: String) throws {
        self.name = name
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + bytes.count + (abstract ? 0 : 1)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
        }
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        // Never block the test forever if a datagram does not arrive. A deadline, not a timing
        // assertion: with every suite starting at once on 2 cores, even trivial tests were seen to
        // take over a second, and a 5 s bound here made the watchdog test fail in the full run.
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram, waited for on a thread of its own: a blocking `recv` on the cooperative
    /// pool (2 threads on a 2-core CI machine) can starve the very task that should send it.
    func next() async -> String? {
        await offCooperativePool { self.receive() }
    }

    /// The next datagram's text, or `nil` on timeout. Blocks: only for datagrams already sent
    /// synchronously by the caller; otherwise use ``next()``.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        // With SO_RCVTIMEO set, recv returns EINTR on any signal even under SA_RESTART (signal(7)),
        // and the full suite's child processes deliver SIGCHLD all the time: retry on EINTR.
        var count: Int
        repeat {
            count = recv(fd, &buffer, buffer.count, 0)
        } while count < 0 && errno == EINTR
        return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
    }

    deinit {
        close(fd)
        if !name.hasPrefix("@") { unlink(name) }
    }
}

@Suite("systemd")
struct SystemdTests {
    @Test("sd_notify messages arrive on a filesystem datagram socket")
    func notifyPathSocket() throws {
        let dir = try TestPaths.makeTemporaryDirectory("notify")
        defer { try? FileManager.default.removeItem(at: dir) }
        let listener = try NotifySocketListener(name: dir.appendingPathComponent("notify.sock").path)
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": listener.name]))
        try notifier.notify([.ready, .status("listening on 127.0.0.1:8080\nworkers 4")])
        #expect(listener.receive() == "READY=1\nSTATUS=listening on 127.0.0.1:8080 workers 4")
        try notifier.notify(.watchdog)
        #expect(listener.receive() == "WATCHDOG=1")
        try notifier.notify([.stopping, .extendTimeout(.seconds(40))])
        #expect(listener.receive() == "STOPPING=1\nEXTEND_TIMEOUT_USEC=40000000")
    }

    @Test("sd_notify supports abstract socket names")
    func notifyAbstractSocket() throws {
        let listener = try NotifySocketListener(name: "@pushbridge-test-\(UUID().uuidString)")
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": listener.name]))
        try notifier.notify(.ready)
        #expect(listener.receive() == "READY=1")
    }

    @Test("sending to a socket nobody listens on fails with a coded error")
    func notifyFailure() throws {
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify.sock"]))
        #expect(throws: SystemdNotifyError.self) { try notifier.notify(.ready) }
    }

    @Test("watchdog interval is half of WATCHDOG_USEC and only for this process")
    func watchdogInterval() {
        #expect(SystemdNotifier(environment: [:]) == nil)
        let mine = SystemdNotifier(environment: ["NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000"])
        #expect(mine?.watchdogInterval == .seconds(15))
        let pid = ["NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(getpid())"]
        #expect(SystemdNotifier(environment: pid)?.watchdogInterval == .seconds(15))
        let other = ["NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(getpid() + 1)"]
        #expect(SystemdNotifier(environment: other)?.watchdogInterval == nil)
    }

    @Test("without a watchdog the service idles instead of ending (ServiceGroup would treat that as a failure)")
    func watchdogServiceIdle() async throws {
        let service = SystemdWatchdogService(notifier: nil, logger: .init(label: "test"))
        let task = Task { try await service.run() }
        try await Task.sleep(for: .milliseconds(50))
        #expect(!task.isCancelled)
        task.cancel()
        try await task.value
    }

    @Test("the watchdog service pings until graceful shutdown")
    func watchdogService() async throws {
        let listener = try NotifySocketListener(name: "@pushbridge-wd-\(UUID().uuidString)")
        let notifier = try #require(
            SystemdNotifier(environment: ["NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": "20000"]))
        let service = SystemdWatchdogService(notifier: notifier, logger: .init(label: "test"))
        let task = Task { try await service.run() }
        #expect(await listener.next() == "WATCHDOG=1")
        #expect(await listener.next() == "WATCHDOG=1")
        task.cancel()
        try await task.value
    }

    /// The unit with `ExecStart` pointing at an existing copy of a binary, as verify requires.
    private func installableUnit(in dir: URL, execStart: String? = nil) throws -> URL {
        let unit = try String(
            contentsOf: TestPaths.packageRoot.appendingPathComponent("systemd/pushbridge.service"), encoding: .utf8)
        let binary = dir.appendingPathComponent("bin/pushbridge")
        try FileManager.default.createDirectory(at: binary.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: binary.path)
        #expect(unit.contains("ExecStart=/usr/local/bin/pushbridge serve"))
        let rewritten = unit.replacingOccurrences(of: "/usr/local/bin/pushbridge", with: execStart ?? binary.path)
        let url = dir.appendingPathComponent("pushbridge.service")
        try rewritten.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    @Test(
        "systemd-analyze verifies the unit and rates its exposure at most 2.0",
        .enabled(if: ProcessRunner.available("systemd-analyze"), "systemd-analyze is not installed"))
    func unitVerifies() async throws {
        let dir = try TestPaths.makeTemporaryDirectory("unit")
        defer { try? FileManager.default.removeItem(at: dir) }
        let unit = try installableUnit(in: dir)
        let verify = try await ProcessRunner.run("systemd-analyze", ["verify", unit.path])
        #expect(verify.status == 0, "verify: \(verify.stderr)")
        #expect(verify.stderr.isEmpty, "verify warnings: \(verify.stderr)")

        let security = try await ProcessRunner.run("systemd-analyze", ["security", "--offline=yes", unit.path])
        let line = try #require(security.stdout.split(separator: "\n").first { $0.contains("Overall exposure level") })
        let number = try #require(line.split(separator: ":").last?.split(separator: " ").first)
        let exposure = try #require(Double(number))
        print("systemd-analyze security exposure: \(exposure)")
        #expect(exposure <= 2.0)

        let text = try String(contentsOf: unit, encoding: .utf8)
        for directive in [
            "Type=notify", "WatchdogSec=30", "DynamicUser=yes", "StateDirectory=pushbridge",
            "EnvironmentFile=-/etc/pushbridge/pushbridge.env", "LoadCredential=master-key:/etc/pushbridge/master-key",
            "MemoryDenyWriteExecute=yes", "SystemCallFilter=@system-service", "UMask=0077",
        ] {
            #expect(text.contains("\n\(directive)\n"), "\(directive) missing")
        }
        #expect(!text.contains("\nIPAddressDeny="))
    }

    @Test(
        "systemd-analyze verify rejects the unit when its binary is missing",
        .enabled(if: ProcessRunner.available("systemd-analyze"), "systemd-analyze is not installed"))
    func unitVerifyCanFail() async throws {
        let dir = try TestPaths.makeTemporaryDirectory("unit")
        defer { try? FileManager.default.removeItem(at: dir) }
        let unit = try installableUnit(in: dir, execStart: dir.appendingPathComponent("missing/pushbridge").path)
        #expect(try await ProcessRunner.run("systemd-analyze", ["verify", unit.path]).status != 0)
    }
}
