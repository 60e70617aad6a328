import Foundation

/// The demo's named checks, printed as one `ok`/`FAIL` line each after the report; the demo exits
/// non-zero when any failed.
final class DemoChecks {
    private(set) var passed = 0
    private(set) var failed: [String] = []
    private var lines: [String] = []

    /// Records `name` as passed when `condition` holds, else as failed with `detail`.
    func expect(_ name: String, _ condition: Bool, _ detail: @autoclosure () -> String = "") {
        if condition {
            passed += 1
            lines.append("  ok    \(name)")
        } else {
            failed.append(name)
            let text = detail()
            lines.append("  FAIL  \(name)\(text.isEmpty ? "" : ": \(text)")")
        }
    }

    /// Prints every recorded check in order.
    func printAll() {
        for line in lines { print(line) }
    }
}

/// Output of one `git` CLI run.
struct GitOutput: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the `git` CLI (or another tool) on a dispatch queue, so its blocking waits stay off the
/// cooperative pool.
enum GitCLI {
    static func run(
        tool: String = "git", _ arguments: [String], environment extra: [String: String] = [:]
    ) async throws -> GitOutput {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try runBlocking(tool, arguments, environment: extra) })
            }
        }
    }

    /// Trimmed stdout of a run that must succeed.
    static func output(_ arguments: [String], environment: [String: String] = [:]) async throws -> String {
        let result = try await run(arguments, environment: environment)
        guard result.status == 0 else {
            throw DemoFailure(
                "git \(arguments.first(where: { !$0.hasPrefix("-") && $0 != "-C" }) ?? "")",
                "exit \(result.status): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func runBlocking(_ tool: String, _ arguments: [String], environment extra: [String: String]) throws
        -> GitOutput
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        process.environment = ProcessInfo.processInfo.environment
            .merging(["GIT_TERMINAL_PROMPT": "0"]) { _, new in new }
            .merging(extra) { _, new in new }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Both pipes are drained concurrently so a chatty git cannot block on a full pipe.
        let errData = LockedData()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errData.set(err.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return GitOutput(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData.get(), as: UTF8.self))
    }
}

private final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ value: Data) { lock.withLock { data = value } }
    func get() -> Data { lock.withLock { data } }
}

/// What a fresh `git clone` of the demo repository shows, checked against what the demo sent.
struct CloneReport {
    var log: [String] = []
    var changedGeneration1: [String] = []
    var changedGeneration2: [String] = []
}

extension DemoRun {
    /// Clones the repository over smart HTTP with the git CLI and checks branch shape, commits,
    /// file bytes and modes independently of the daemon.
    ///
    /// - Parameters:
    ///   - token: An access token minted by the emulator for the verifier, sent as a header through
    ///     the environment (never in the URL or the arguments).
    ///   - commits: The commits jobs 1 and 2 reported, oldest first.
    func verifyClone(url: URL, token: String, commits: [String], checks: DemoChecks) async throws -> CloneReport {
        let dir = (stateDirectory as NSString).appendingPathComponent("verify-clone")
        let basic = Data("x-token-auth:\(token)".utf8).base64EncodedString()
        let auth = [
            "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": "Authorization: Basic \(basic)",
        ]
        _ = try await GitCLI.output(["clone", "--quiet", "--branch", Self.branch, url.absoluteString, dir], environment: auth)
        let inClone = ["-C", dir]
        let base = "origin/\(Self.baseBranch)"

        let onTop = try await GitCLI.output(inClone + ["rev-list", "--reverse", "\(base)..HEAD"])
            .split(separator: "\n").map(String.init)
        let total = try await GitCLI.output(inClone + ["rev-list", "--count", "HEAD"])
        let ancestor = try await GitCLI.run(inClone + ["merge-base", "--is-ancestor", base, "HEAD"]).status == 0
        checks.expect(
            "clone: \(Self.branch) is \(Self.baseBranch) plus exactly the 2 generated commits",
            onTop.count == 2 && total == "3" && ancestor,
            "\(onTop.count) commits over \(Self.baseBranch), \(total) in total, base is ancestor: \(ancestor)")
        checks.expect(
            "clone: those commits are the ones jobs 1 and 2 reported", onTop == commits,
            "clone has \(onTop.map { $0.prefix(8) }), jobs reported \(commits.map { $0.prefix(8) })")
        let subjects = try await GitCLI.output(inClone + ["log", "--reverse", "--format=%s", "\(base)..HEAD"])
            .split(separator: "\n").map(String.init)
        checks.expect(
            "clone: commit messages are the jobs' messages", subjects == [1, 2].map(Self.commitMessage),
            "\(subjects)")

        var expected: [String: SampleFile] = [:]
        let readme = SampleApp.initialReadme(slug: Self.slug)
        expected[readme.path] = readme
        for file in SampleApp.generation2 { expected[file.path] = file }
        var modes: [String: String] = [:]
        for line in try await GitCLI.output(inClone + ["ls-tree", "-r", "HEAD"]).split(separator: "\n") {
            let parts = line.split(separator: "\t", maxSplits: 1)
            guard parts.count == 2 else { continue }
            modes[String(parts[1])] = String(parts[0].split(separator: " ").first ?? "")
        }
        checks.expect(
            "clone: tree holds exactly README.md + the generation-2 files", Set(modes.keys) == Set(expected.keys),
            "got \(modes.keys.sorted())")
        var wrong: [String] = []
        for (path, file) in expected.sorted(by: { $0.key < $1.key }) {
            let bytes = FileManager.default.contents(atPath: (dir as NSString).appendingPathComponent(path))
            if modes[path] != file.mode { wrong.append("\(path) mode \(modes[path] ?? "missing") ≠ \(file.mode)") }
            if bytes.map({ [UInt8]($0) }) != file.contents { wrong.append("\(path) bytes differ") }
        }
        checks.expect("clone: \(expected.count) files match bytes and modes", wrong.isEmpty, wrong.joined(separator: "; "))

        let mainFiles = try await GitCLI.output(inClone + ["ls-tree", "-r", "--name-only", base])
        let mainReadme = try await GitCLI.output(inClone + ["show", "\(base):README.md"])
        checks.expect(
            "clone: \(Self.baseBranch) holds only the initial commit's README.md",
            mainFiles == "README.md" && mainReadme + "\n" == String(decoding: readme.contents, as: UTF8.self),
            "files: \(mainFiles)")

        var report = CloneReport()
        report.log = try await GitCLI.output(inClone + ["log", "--oneline", "HEAD"]).split(separator: "\n").map(String.init)
        report.changedGeneration1 = try await GitCLI.output(inClone + ["diff", "--name-status", "HEAD~2", "HEAD~1"])
            .split(separator: "\n").map(String.init)
        report.changedGeneration2 = try await GitCLI.output(inClone + ["diff", "--name-status", "HEAD~1", "HEAD"])
            .split(separator: "\n").map(String.init)
        let added1 = Set(SampleApp.generation1.map { "A\t\($0.path)" })
        checks.expect(
            "clone: generation 1 added the 5 sample files", Set(report.changedGeneration1) == added1,
            "\(report.changedGeneration1)")
        let changed2: Set<String> = ["M\tdocs/OVERVIEW.md", "M\tsrc/app/main.py", "A\tsrc/app/config.json"]
        checks.expect(
            "clone: generation 2 changed 2 files and added 1", Set(report.changedGeneration2) == changed2,
            "\(report.changedGeneration2)")
        return report
    }
}
