import Foundation

/// The stateless-bot way, with the plain `git` CLI: fresh clone, copy files in,
/// `git add -A`, `git commit`, `git push`.
///
/// Configuration is git's defaults: system and global config are ignored
/// (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`, private `HOME`), and only
/// identity, the default branch name and a credential helper are set, all through
/// `GIT_CONFIG_*` environment variables. The helper reads the password from an environment
/// variable, so it never appears in a URL or in any process's arguments.
struct GitCLIWay: Sendable {
    let git: Command
    let cp: Command

    /// Wall-clock time of each step of one push, in seconds.
    struct Timing: Sendable {
        var clone = 0.0
        var copy = 0.0
        var add = 0.0
        var commit = 0.0
        var push = 0.0
        var total = 0.0

        var phases: [(String, Double)] {
            [("clone", clone), ("copy", copy), ("add", add), ("commit", commit), ("push", push)]
        }
    }

    init(home: URL, scratch: URL, user: String, password: String) throws {
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let inherited = ProcessInfo.processInfo.environment
        let helper = #"!f() { test "$1" = get && printf 'username=%s\npassword=%s\n' "$BENCH_GIT_USER" "$BENCH_GIT_PASSWORD"; }; f"#
        let config: [(String, String)] = [
            ("credential.helper", helper),
            ("user.name", "Bench Bot"),
            ("user.email", "bench@example.com"),
            ("init.defaultBranch", "main"),
        ]
        var env: [String: String] = [
            "PATH": inherited["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
            "HOME": home.path,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "LANG": "C",
            "BENCH_GIT_USER": user,
            "BENCH_GIT_PASSWORD": password,
            "GIT_CONFIG_COUNT": String(config.count),
        ]
        for (i, (key, value)) in config.enumerated() {
            env["GIT_CONFIG_KEY_\(i)"] = key
            env["GIT_CONFIG_VALUE_\(i)"] = value
        }
        self.git = Command(executable: try Self.which("git"), environment: env, scratch: scratch)
        self.cp = Command(executable: try Self.which("cp"), environment: env, scratch: scratch)
    }

    /// One push of the files under `source` to `refs/heads/<branch>` of `remote`, from a
    /// fresh clone in `workTree` (which must not exist yet; the caller removes it after,
    /// outside the measured time).
    func push(source: URL, remote: String, branch: String, workTree: URL, message: String) async throws -> Timing {
        let clock = ContinuousClock()
        var t = Timing()
        let start = clock.now
        var mark = start
        func lap() -> Double {
            let now = clock.now
            defer { mark = now }
            return (now - mark).seconds
        }
        try await git.run(["clone", "--quiet", remote, workTree.path])
        t.clone = lap()
        try await cp.run(["-R", source.path + "/.", workTree.path + "/"])
        t.copy = lap()
        try await git.run(["add", "-A"], in: workTree)
        t.add = lap()
        try await git.run(["commit", "--quiet", "-m", message], in: workTree)
        t.commit = lap()
        try await git.run(["push", "--quiet", "origin", "HEAD:refs/heads/\(branch)"], in: workTree)
        t.push = lap()
        t.total = (clock.now - start).seconds
        return t
    }

    /// `git --version` without the "git version " prefix.
    static func version(git: Command) async throws -> String {
        let text = try await git.text(["--version"])
        return text.hasPrefix("git version ") ? String(text.dropFirst("git version ".count)) : text
    }

    static func which(_ name: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw BenchError(code: "invalid_state", message: "\(name) not found in PATH")
    }
}

extension Duration {
    /// The duration in seconds as a `Double`.
    var seconds: Double {
        let (s, attos) = components
        return Double(s) + Double(attos) * 1e-18
    }
}
