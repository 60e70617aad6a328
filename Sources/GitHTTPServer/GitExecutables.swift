import Foundation
import Synchronization

/// Locations of the `git` programs this module runs.
public struct GitExecutables: Sendable, Equatable {
    /// The `git` command itself.
    public var git: URL
    /// `git-http-backend`, found under `git --exec-path`.
    public var httpBackend: URL

    /// Creates a pair of explicit locations (no checks are made).
    public init(git: URL, httpBackend: URL) {
        self.git = git
        self.httpBackend = httpBackend
    }

    private static let cached = Mutex<GitExecutables?>(nil)

    /// Finds `git` on `PATH` and asks it for its exec path. The answer is cached
    /// for the life of the process.
    ///
    /// - Throws: ``GitHTTPServerError/gitNotFound(_:)``.
    public static func locate() async throws -> GitExecutables {
        if let known = cached.withLock({ $0 }) { return known }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        let candidates = path.split(separator: ":").map { URL(fileURLWithPath: String($0)).appendingPathComponent("git") }
        guard let git = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw GitHTTPServerError.gitNotFound("no executable named git on PATH")
        }
        let result = try await ChildProcess.run(
            executable: git,
            arguments: ["--exec-path"],
            environment: ["PATH": path]
        )
        let execPath = result.standardOutputString.trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.succeeded, !execPath.isEmpty else {
            throw GitHTTPServerError.gitNotFound("`git --exec-path` failed: \(result.standardErrorString)")
        }
        let backend = URL(fileURLWithPath: execPath).appendingPathComponent("git-http-backend")
        guard FileManager.default.isExecutableFile(atPath: backend.path) else {
            throw GitHTTPServerError.gitNotFound("\(backend.path) is missing or not executable")
        }
        let found = GitExecutables(git: git, httpBackend: backend)
        cached.withLock { $0 = found }
        return found
    }
}
