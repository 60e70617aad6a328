import Logging
import Synchronization

/// Every log line (level, source, message and metadata) of the loggers a test hands out, so the
/// test can grep for secrets and read what happened. Message and metadata are rendered the way a
/// real handler would print them, so a secret in either is caught.
public final class LogCapture: Sendable {
    public let lines = Mutex<[String]>([])

    public init() {}

    /// All captured lines, newline-separated.
    public var all: String { lines.withLock { $0.joined(separator: "\n") } }

    /// A logger that records into this capture, at `level` (default: everything).
    public func logger(_ label: String, level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { _ in LogCaptureHandler(capture: self, logLevel: level) }
        logger.logLevel = level
        return logger
    }
}

struct LogCaptureHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level

    init(capture: LogCapture, logLevel: Logger.Level) {
        self.capture = capture
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        capture.lines.withLock { $0.append("\(event.level) [\(event.source)] \(event.message) \(all)") }
    }
}
