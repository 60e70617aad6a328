import Foundation

/// Reads and creates the bare repositories behind emulated Bitbucket repositories with the `git` CLI.
///
/// The emulator asks git itself for branch tips rather than caching them, so REST answers always agree with
/// what a push just wrote.
enum GitCLI {
    struct Failure: Error, CustomStringConvertible {
        let arguments: [String]
        let status: Int32
        let stderr: String
        var description: String { "git \(arguments.joined(separator: " ")) exited \(status): \(stderr)" }
    }

    /// Runs git off the cooperative pool (Process and pipe reads block) and returns stdout.
    static func run(_ arguments: [String], gitDir: URL? = nil, allowFailure: Bool = false) async throws -> (
        status: Int32, stdout: String
    ) {
        try await withCheckedThrowingContinuation { cont in
            DispatchQueue.global().async {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                var args = ["git"]
                if let gitDir { args += ["--git-dir", gitDir.path] }
                p.arguments = args + arguments
                var env = ProcessInfo.processInfo.environment
                // Isolate from the user's and system git configuration.
                env["GIT_CONFIG_NOSYSTEM"] = "1"
                env["GIT_CONFIG_GLOBAL"] = "/dev/null"
                env["GIT_TERMINAL_PROMPT"] = "0"
                p.environment = env
                let out = Pipe()
                let err = Pipe()
                p.standardOutput = out
                p.standardError = err
                p.standardInput = FileHandle.nullDevice
                do {
                    try p.run()
                } catch {
                    cont.resume(throwing: error)
                    return
                }
                // Read both pipes before waiting so a large output cannot fill a pipe and deadlock.
                let group = DispatchGroup()
                let errBox = DataBox()
                group.enter()
                DispatchQueue.global().async {
                    errBox.data = err.fileHandleForReading.readDataToEndOfFile()
                    group.leave()
                }
                let outData = out.fileHandleForReading.readDataToEndOfFile()
                group.wait()
                p.waitUntilExit()
                let status = p.terminationStatus
                if status != 0 && !allowFailure {
                    cont.resume(
                        throwing: Failure(
                            arguments: arguments, status: status, stderr: String(decoding: errBox.data, as: UTF8.self)))
                } else {
                    cont.resume(returning: (status, String(decoding: outData, as: UTF8.self)))
                }
            }
        }
    }

    /// `git init --bare` with the settings of a real host: non-fast-forward pushes refused, default branch set.
    static func initBare(at dir: URL, defaultBranch: String) async throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        _ = try await run(["init", "--bare", "--quiet", "--initial-branch=\(defaultBranch)", dir.path])
        _ = try await run(["config", "receive.denyNonFastForwards", "true"], gitDir: dir)
        _ = try await run(["config", "receive.denyDeletes", "false"], gitDir: dir)
        _ = try await run(["config", "http.receivepack", "true"], gitDir: dir)
    }

    /// Branch name → tip commit id.
    static func branches(_ gitDir: URL) async throws -> [(name: String, commit: String)] {
        let out = try await run(["for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/heads/"], gitDir: gitDir)
        return out.stdout.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            guard parts.count >= 2 else { return nil }
            return (parts.dropLast().joined(separator: " "), String(parts[parts.count - 1]))
        }
    }

    static func tip(_ gitDir: URL, branch: String) async throws -> String? {
        let r = try await run(["rev-parse", "--verify", "--quiet", "refs/heads/\(branch)^{commit}"], gitDir: gitDir, allowFailure: true)
        guard r.status == 0 else { return nil }
        let s = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return s.isEmpty ? nil : s
    }

    struct CommitInfo: Sendable {
        let hash: String
        let author: String
        let date: String
        let message: String
        let parents: [String]
    }

    static func commit(_ gitDir: URL, _ rev: String) async throws -> CommitInfo? {
        let r = try await run(["log", "-1", "--format=%H%x00%an <%ae>%x00%aI%x00%P%x00%B", rev, "--"], gitDir: gitDir, allowFailure: true)
        guard r.status == 0 else { return nil }
        let parts = r.stdout.split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 5 else { return nil }
        return CommitInfo(
            hash: parts[0], author: parts[1], date: parts[2], message: parts[4...].joined(separator: "\u{0}"),
            parents: parts[3].split(separator: " ").map(String.init))
    }

    /// True when `ancestor` is reachable from `descendant` (so a PR from `ancestor` into `descendant` is empty).
    static func isAncestor(_ gitDir: URL, _ ancestor: String, of descendant: String) async throws -> Bool {
        let r = try await run(["merge-base", "--is-ancestor", ancestor, descendant], gitDir: gitDir, allowFailure: true)
        return r.status == 0
    }
}

/// Written by one reader thread, read after `DispatchGroup.wait()`, which orders the accesses.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}
