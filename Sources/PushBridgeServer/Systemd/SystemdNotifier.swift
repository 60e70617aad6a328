#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import PushBridge

/// A state change reported to the service manager (`sd_notify(3)`).
public enum NotifyState: Sendable, Hashable {
    /// Startup finished: the API listens and workers run (`READY=1`).
    case ready
    /// Graceful shutdown began (`STOPPING=1`).
    case stopping
    /// Configuration reload began (`RELOADING=1`).
    case reloading
    /// Keep-alive ping for `WatchdogSec=` (`WATCHDOG=1`).
    case watchdog
    /// Free-form status line shown by `systemctl status` (`STATUS=…`; newlines are replaced).
    case status(String)
    /// Ask for more time to start or stop (`EXTEND_TIMEOUT_USEC=…`).
    case extendTimeout(Duration)

    /// The `KEY=value` line.
    var line: String {
        switch self {
        case .ready: "READY=1"
        case .stopping: "STOPPING=1"
        case .reloading: "RELOADING=1"
        case .watchdog: "WATCHDOG=1"
        case .status(let text): "STATUS=" + text.replacingOccurrences(of: "\n", with: " ")
        case .extendTimeout(let duration): "EXTEND_TIMEOUT_USEC=\(duration.microseconds)"
        }
    }
}

/// Sending a notification failed (`code` is `sd_notify_failed`).
public struct SystemdNotifyError: CodedError {
    public let code = "sd_notify_failed"
    public let message: String
}

/// Client of systemd's notification socket (`$NOTIFY_SOCKET`), for `Type=notify` units.
///
/// Written by hand because none of the packages pushbridge may use speaks the protocol, and it is
/// small: one AF_UNIX datagram of newline-separated `KEY=value` lines per call, to a filesystem path
/// or, when the name starts with `@`, to an abstract socket (leading NUL byte, no terminator).
/// Outside systemd (`NOTIFY_SOCKET` unset) ``init(environment:)`` returns `nil` and callers skip
/// notifications entirely.
public struct SystemdNotifier: Sendable {
    /// The socket name as given in `NOTIFY_SOCKET` (`/run/…` or `@abstract`).
    public let socketPath: String
    /// How often to send ``NotifyState/watchdog``: half of `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)`
    /// recommends. `nil` when the watchdog is off or meant for another process (`WATCHDOG_PID`).
    public let watchdogInterval: Duration?

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; `nil` without `NOTIFY_SOCKET`.
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], path.hasPrefix("/") || path.hasPrefix("@"), path.count > 1
        else { return nil }
        self.socketPath = path
        var interval: Duration?
        if let text = environment["WATCHDOG_USEC"], let usec = Int64(text), usec > 0 {
            let forUs = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
            if forUs { interval = .microseconds(usec / 2) }
        }
        self.watchdogInterval = interval
    }

    /// Sends `states` in one datagram.
    ///
    /// - Throws: ``SystemdNotifyError`` when the socket cannot be reached.
    public func notify(_ states: [NotifyState]) throws(SystemdNotifyError) {
        let message = states.map(\.line).joined(separator: "\n")
        try send(Array(message.utf8))
    }

    /// Sends one state.
    public func notify(_ state: NotifyState) throws(SystemdNotifyError) {
        try notify([state])
    }

    private func send(_ payload: [UInt8]) throws(SystemdNotifyError) {
        #if os(Linux)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_DGRAM, 0)
        #endif
        guard fd >= 0 else { throw SystemdNotifyError(message: "socket(): \(String(cString: strerror(errno)))") }
        defer { close(fd) }

        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var nameBytes = Array(socketPath.utf8)
        let abstract = nameBytes.first == UInt8(ascii: "@")
        if abstract { nameBytes[0] = 0 }  // abstract namespace: leading NUL instead of '@'
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard nameBytes.count < capacity else {
            throw SystemdNotifyError(message: "NOTIFY_SOCKET path is longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: nameBytes)
        }
        // Abstract names are exactly their bytes; path names include the terminating NUL.
        let length = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + nameBytes.count + (abstract ? 0 : 1)
        let sent = payload.withUnsafeBytes { buffer in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), $0, socklen_t(length))
                }
            }
        }
        guard sent == payload.count else {
            throw SystemdNotifyError(message: "sendto(\(socketPath)): \(String(cString: strerror(errno)))")
        }
    }
}

extension Duration {
    /// Whole microseconds (truncated).
    var microseconds: Int64 {
        components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000
    }
}
