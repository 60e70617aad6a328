import Foundation
import Logging

/// A value that must not appear in logs, error descriptions or API responses.
///
/// Its `description` and `debugDescription` are `<redacted>`, so string interpolation, `print`
/// and `Logger` metadata built from it cannot leak the value by accident; read ``value`` where the
/// secret is really needed.
public struct Redacted<Value: Sendable>: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The secret itself.
    public let value: Value

    /// Wraps `value`.
    public init(_ value: Value) { self.value = value }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}

extension Redacted: Equatable where Value: Equatable {}

/// `host:port` the HTTP API binds to. IPv6 hosts are written in brackets (`[::1]:8080`).
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// Host name or literal address, without brackets.
    public var host: String
    /// TCP port; `0` asks the kernel for a free one.
    public var port: Int

    /// Creates an address from its parts.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` / `[v6]:port`; `nil` when malformed or the port is outside 0...65535.
    public init?(parsing text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }  // bare IPv6 needs brackets
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
    }

    /// `host:port`, bracketing IPv6 literals.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Where the job store lives, parsed from `PUSHBRIDGE_DATABASE_URL`.
public enum DatabaseLocation: Sendable, Hashable {
    /// An SQLite file at an absolute path (`sqlite:///abs/path.sqlite`).
    case sqlite(path: String)
    /// A PostgreSQL server (`postgres://user:password@host:5432/db`); the URL may carry a password.
    case postgres(url: String)

    /// Parses the URL forms above; `nil` otherwise.
    public init?(parsing text: String) {
        if text.hasPrefix("sqlite://") {
            let path = String(text.dropFirst("sqlite://".count))
            guard path.hasPrefix("/"), path.count > 1, !path.hasSuffix("/") else { return nil }
            self = .sqlite(path: path)
        } else if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            guard let components = URLComponents(string: text), let host = components.host, !host.isEmpty else {
                return nil
            }
            self = .postgres(url: text)
        } else {
            return nil
        }
    }

    /// The URL with any password replaced by `<redacted>`, safe to print.
    public var redactedDescription: String {
        switch self {
        case .sqlite(let path):
            return "sqlite://\(path)"
        case .postgres(let url):
            return redactingUserInfo(url)
        }
    }
}

/// Replaces the password part of a URL's user info, leaving everything else readable.
func redactingUserInfo(_ url: String) -> String {
    guard var components = URLComponents(string: url), components.password != nil else { return url }
    components.password = "<redacted>"
    return components.string ?? "<redacted>"
}

/// Parsers for the textual forms used by `PUSHBRIDGE_*` variables.
enum ConfigParsing {
    /// `30`, `30s`, `500ms`, `5m`, `1h`, `2d` → a duration; plain numbers are seconds.
    static func duration(_ text: String) -> Duration? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, millis) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            // "ms" also ends in "s": only accept a suffix whose remainder is a plain number.
            guard let value = Int64(number), value >= 0 else { continue }
            return .milliseconds(value * millis)
        }
        guard let seconds = Int64(text), seconds >= 0 else { return nil }
        return .seconds(seconds)
    }

    /// `1048576`, `64KiB`/`64K`, `1MiB`/`1M`, `1GiB`/`1G` (binary), `1KB`/`1MB`/`1GB` (decimal).
    static func byteCount(_ text: String) -> Int? {
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
            ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000),
            ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30),
        ]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Int(text.dropLast(suffix.count)), value >= 0 else { return nil }
            let (product, overflow) = value.multipliedReportingOverflow(by: factor)
            return overflow ? nil : product
        }
        guard let value = Int(text), value >= 0 else { return nil }
        return value
    }

    /// An absolute `http`/`https` URL with a host, without query or fragment.
    static func httpURL(_ text: String) -> URL? {
        guard let components = URLComponents(string: text),
            let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = components.host, !host.isEmpty,
            components.query == nil, components.fragment == nil,
            let url = components.url
        else { return nil }
        return url
    }
}
