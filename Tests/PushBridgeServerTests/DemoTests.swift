#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@Suite(
    "pushbridge demo",
    .enabled(
        if: FileManager.default.isExecutableFile(atPath: executable.path),
        "pushbridge executable not built (swift build --build-tests)"))
struct DemoTests {
    @Test("demo: emulator + daemon child, OAuth connect, two generations as one PR, every check passes, exit 0")
    func demoRunsEndToEnd() async throws {
        let tmp = try TestPaths.makeTemporaryDirectory("demo")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let run = try await DemoProcess.run(
            executable, ["demo"],
            // Only what the demo needs: its state directory lands in our TMPDIR, and nothing
            // (PUSHBRIDGE_* or otherwise) leaks in from the test process.
            environment: [
                "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": tmp.path,
                "TMPDIR": tmp.path,
            ],
            in: tmp, killAfter: .seconds(150))
        let out = run.stdout
        #expect(run.status == 0, "stdout:\n\(out)\nstderr:\n\(run.stderr)")
        #expect(out.contains("Pull request #1: Generated app: demo-app (generation 2)"), "\(out)")
        #expect(out.contains("  branch: pushbridge/demo-app → main  state: OPEN"), "\(out)")
        #expect(out.contains("  url:    http://127.0.0.1:"), "\(out)")
        // The commits of a fresh clone, newest first: generation 2, generation 1, the initial commit.
        let commits = out.split(separator: "\n").drop { !$0.hasPrefix("Commits on pushbridge/demo-app") }.dropFirst()
            .prefix { $0.hasPrefix("  ") }.map { $0.dropFirst(2).split(separator: " ", maxSplits: 1).last.map(String.init) ?? "" }
        #expect(commits == ["Generate demo-app (generation 2)", "Generate demo-app (generation 1)", "Initial commit"], "\(out)")
        #expect(out.contains("  M\tsrc/app/main.py\n"), "\(out)")
        #expect(out.contains("  A\tsrc/app/config.json\n"), "\(out)")
        #expect(out.contains("ok    job 2: changed: true, pullRequest.created: false, same pull request"), "\(out)")
        #expect(out.contains("ok    daemon: SIGTERM → graceful shutdown, exit status 0"), "\(out)")
        #expect(out.contains("ok    oauth: the daemon's callback created connection acme-cloud"), "\(out)")
        #expect(out.contains("ok    oauth: replaying the callback is refused (400 invalid_oauth_state)"), "\(out)")
        #expect(!out.contains("FAIL"), "\(out)")
        #expect(out.contains("demo OK:"), "\(out)")
        // The state directory was removed after a successful run.
        let left = try FileManager.default.contentsOfDirectory(atPath: tmp.path).filter { $0.hasPrefix("pushbridge-demo-") }
        #expect(left.isEmpty, "left behind: \(left)")
    }
}

/// Runs a child process with its output in files (no pipe can fill up) and waits for it without
/// blocking the cooperative pool; SIGKILLs it after `killAfter` so a hang fails instead of stalling.
enum DemoProcess {
    struct Output: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(
        _ executable: URL, _ arguments: [String], environment: [String: String], in directory: URL, killAfter: Duration
    ) async throws -> Output {
        let outURL = directory.appendingPathComponent("demo.stdout")
        let errURL = directory.appendingPathComponent("demo.stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        process.currentDirectoryURL = directory
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        let watchdog = Task {
            // Cancelled (and so never killing) once the process exited.
            try await Task.sleep(for: killAfter)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        watchdog.cancel()
        try? out.close()
        try? err.close()
        return Output(
            status: status, stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }
}
