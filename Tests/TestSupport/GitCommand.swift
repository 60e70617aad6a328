import Foundation
import GitHTTPServer
import NIOCore

/// A `git` CLI invocation that exited unsuccessfully.
public struct GitCommandError: Error, CustomStringConvertible, Sendable {
    /// Stable error code.
    public let code = "git-command-failed"
    /// The arguments passed to git.
    public let arguments: [String]
    /// Exit status (or signal number).
    public let exitCode: Int32
    /// What git printed on standard output.
    public let standardOutput: String
    /// What git printed on standard error.
    public let standardError: String

    public var description: String {
        "[\(code)] git \(arguments.joined(separator: " ")) exited with \(exitCode): \(standardError)"
    }
}

/// Environment for the test-side `git` CLI: configuration entries passed as
/// `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` (never as arguments,
/// so secrets stay out of process listings) plus plain variables.
public struct GitClientEnvironment: Sendable {
    /// `git config` entries, in order.
    public var config: [(key: String, value: String)]
    /// Other environment variables.
    public var variables: [String: String]

    /// Creates an environment.
    public init(config: [(key: String, value: String)] = [], variables: [String: String] = [:]) {
        self.config = config
        self.variables = variables
    }

    /// HTTP Basic credentials supplied by an inline credential helper that reads
    /// them from the environment.
    public static func basicAuth(username: String, password: String) -> GitClientEnvironment {
        GitClientEnvironment(
            config: [
                (
                    "credential.helper",
                    #"!f() { test "$1" = get || exit 0; echo "username=$PB_TEST_GIT_USERNAME"; echo "password=$PB_TEST_GIT_PASSWORD"; }; f"#
                )
            ],
            variables: ["PB_TEST_GIT_USERNAME": username, "PB_TEST_GIT_PASSWORD": password]
        )
    }

    /// `Authorization: Bearer <token>` on every request (`http.extraHeader`).
    public static func bearerAuth(token: String) -> GitClientEnvironment {
        GitClientEnvironment(config: [("http.extraHeader", "Authorization: Bearer \(token)")])
    }

    /// `self` followed by `other`'s config; `other`'s variables win.
    public func merging(_ other: GitClientEnvironment) -> GitClientEnvironment {
        GitClientEnvironment(
            config: config + other.config,
            variables: variables.merging(other.variables) { _, new in new }
        )
    }

    /// The variables to pass to a process.
    public var environment: [String: String] {
        var env = variables
        env["GIT_CONFIG_COUNT"] = String(config.count)
        for (index, entry) in config.enumerated() {
            env["GIT_CONFIG_KEY_\(index)"] = entry.key
            env["GIT_CONFIG_VALUE_\(index)"] = entry.value
        }
        return env
    }
}

/// Runs the `git` CLI and returns its standard output.
///
/// The environment is the test process's minus every `GIT_*` variable, made
/// hermetic (no system/global config, no prompts, a fixed author and committer),
/// then overlaid with `env`.
///
/// - Parameter input: Written to git's standard input (e.g. a `fast-import` stream).
/// - Throws: ``GitCommandError`` when git exits non-zero.
@discardableResult
public func runGit(
    _ args: [String],
    in directory: URL,
    env: [String: String] = [:],
    input: String? = nil
) async throws -> String {
    let result = try await gitResult(args, in: directory, env: env, input: input)
    guard result.succeeded else {
        throw GitCommandError(
            arguments: args,
            exitCode: result.exitCode,
            standardOutput: result.standardOutputString,
            standardError: result.standardErrorString
        )
    }
    return result.standardOutputString
}

/// Like ``runGit(_:in:env:)`` but returns the result whatever the exit status.
public func gitResult(
    _ args: [String],
    in directory: URL,
    env: [String: String] = [:],
    input: String? = nil
) async throws -> ChildProcessResult {
    let executables = try await GitExecutables.locate()
    return try await ChildProcess.run(
        executable: executables.git,
        arguments: args,
        environment: gitEnvironment(overrides: env),
        currentDirectory: directory,
        standardInput: input.map { ByteBuffer(string: $0) }
    )
}

/// The base environment ``runGit(_:in:env:)`` uses, with `overrides` applied.
public func gitEnvironment(overrides: [String: String] = [:]) -> [String: String] {
    var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("GIT_") }
    let defaults = [
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_COMMITTER_NAME": "Test Committer",
        "GIT_COMMITTER_EMAIL": "committer@example.com",
        "LC_ALL": "C",
    ]
    env.merge(defaults) { _, new in new }
    env.removeValue(forKey: "SSH_ASKPASS")
    env.merge(overrides) { _, new in new }
    return env
}

/// Commits `files` on top of `branch` of a bare repository on disk (starting the
/// branch with a root commit when it does not exist yet) and returns the new
/// commit id. Works through a local clone, so it needs no server and does not
/// touch any request counters.
///
/// - Parameters:
///   - bareRepository: The repository directory, e.g. ``GitServerFixture/repositoryDirectory(_:)``.
///   - files: Repository-relative paths and their contents; other files of the branch are kept.
@discardableResult
public func seedCommit(
    in bareRepository: URL,
    files: [String: Data],
    branch: String = "main",
    message: String = "seed"
) async throws -> String {
    let scratch = try TemporaryDirectory(prefix: "pushbridge-seed")
    let clone = scratch.appending("clone")
    try await runGit(["clone", "--quiet", "--no-checkout", bareRepository.path, clone.path], in: scratch.url)
    let exists = try await gitResult(["rev-parse", "--verify", "--quiet", "refs/remotes/origin/\(branch)"], in: clone).succeeded
    if exists {
        try await runGit(["checkout", "--quiet", "-B", branch, "origin/\(branch)"], in: clone)
    } else {
        try await runGit(["checkout", "--quiet", "--orphan", branch], in: clone)
        // `--orphan` starts from the current checkout; empty index and work tree.
        try await runGit(["rm", "-r", "-f", "--quiet", "--ignore-unmatch", "."], in: clone)
    }
    for (path, data) in files {
        let file = clone.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: file)
    }
    try await runGit(["add", "-A"], in: clone)
    try await runGit(["commit", "--quiet", "--allow-empty", "-m", message], in: clone)
    try await runGit(["push", "--quiet", "origin", "HEAD:refs/heads/\(branch)"], in: clone)
    return try await runGit(["rev-parse", "HEAD"], in: clone).trimmingCharacters(in: .whitespacesAndNewlines)
}
