/// Errors thrown by the GitHTTPServer module.
///
/// Every case has a stable ``code`` that callers and tests may match on; the
/// human-readable ``description`` may change. No case ever carries a credential.
public enum GitHTTPServerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `git` executable (or `git-http-backend` under `git --exec-path`) could not be found.
    case gitNotFound(String)
    /// A child process could not be started.
    case launchFailed(executable: String, reason: String)
    /// A child process exited unsuccessfully. `standardError` is the tail of what it wrote.
    case commandFailed(command: String, exitCode: Int32, standardError: String)
    /// `git http-backend` wrote something that is not a CGI response.
    case malformedCGIResponse(String)
    /// A repository path was absolute, contained `..`, or was otherwise unusable.
    case invalidRepositoryPath(String)
    /// ``GitSmartHTTPServer/start()`` was called on a server that is already running.
    case alreadyStarted
    /// The server is not running (never started, or already stopped).
    case notRunning
    /// The server could not bind or failed while starting.
    case startFailed(String)

    /// A stable, machine-readable identifier of the error kind.
    public var code: String {
        switch self {
        case .gitNotFound: "git-not-found"
        case .launchFailed: "process-launch-failed"
        case .commandFailed: "command-failed"
        case .malformedCGIResponse: "malformed-cgi-response"
        case .invalidRepositoryPath: "invalid-repository-path"
        case .alreadyStarted: "server-already-started"
        case .notRunning: "server-not-running"
        case .startFailed: "server-start-failed"
        }
    }

    public var description: String {
        switch self {
        case .gitNotFound(let detail):
            "[\(code)] \(detail)"
        case .launchFailed(let executable, let reason):
            "[\(code)] could not launch \(executable): \(reason)"
        case .commandFailed(let command, let exitCode, let standardError):
            "[\(code)] \(command) exited with \(exitCode): \(standardError)"
        case .malformedCGIResponse(let detail):
            "[\(code)] \(detail)"
        case .invalidRepositoryPath(let path):
            "[\(code)] invalid repository path \(path.debugDescription)"
        case .alreadyStarted:
            "[\(code)] server is already running"
        case .notRunning:
            "[\(code)] server is not running"
        case .startFailed(let detail):
            "[\(code)] \(detail)"
        }
    }
}
