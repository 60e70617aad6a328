import Foundation

/// Error of the benchmark harness, with a stable string `code`.
struct BenchError: Error, CustomStringConvertible {
    /// Stable identifier: `command_failed`, `invalid_state`, `gitkit`, `server`.
    let code: String
    let message: String

    var description: String { "\(code): \(message)" }

    static func commandFailed(_ args: [String], status: Int32, stderr: String) -> BenchError {
        BenchError(code: "command_failed", message: "\(args.joined(separator: " ")) exited \(status): \(stderr.suffix(2_000))")
    }
}

/// Runs external programs (the `git` CLI, `cp`) without blocking a Swift concurrency thread.
///
/// Output goes to temporary files instead of pipes: a pipe nobody drains can deadlock a
/// child writing a large pack, and files cost the same for every command measured, so the
/// comparison stays fair.
struct Command: Sendable {
    let executable: String
    let environment: [String: String]
    let scratch: URL

    init(executable: String, environment: [String: String], scratch: URL) {
        self.executable = executable
        self.environment = environment
        self.scratch = scratch
    }

    struct Output: Sendable {
        let stdout: Data
        let stderr: String
    }

    /// Runs the command and throws `command_failed` on a non-zero exit.
    @discardableResult
    func run(_ arguments: [String], in directory: URL? = nil, stdin: URL? = nil, stdout: URL? = nil) async throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        if let directory { process.currentDirectoryURL = directory }
        let id = UUID().uuidString
        let outURL = stdout ?? scratch.appendingPathComponent("out-\(id)")
        let errURL = scratch.appendingPathComponent("err-\(id)")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            if stdout == nil { try? FileManager.default.removeItem(at: outURL) }
            try? FileManager.default.removeItem(at: errURL)
        }
        let outHandle = try FileHandle(forWritingTo: outURL)
        let errHandle = try FileHandle(forWritingTo: errURL)
        defer {
            try? outHandle.close()
            try? errHandle.close()
        }
        process.standardOutput = outHandle
        process.standardError = errHandle
        if let stdin {
            process.standardInput = try FileHandle(forReadingFrom: stdin)
        } else {
            process.standardInput = FileHandle.nullDevice
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
        let err = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw BenchError.commandFailed([executable] + arguments, status: status, stderr: err)
        }
        let out = stdout == nil ? ((try? Data(contentsOf: outURL)) ?? Data()) : Data()
        return Output(stdout: out, stderr: err)
    }

    /// Runs the command and returns its standard output as trimmed text.
    func text(_ arguments: [String], in directory: URL? = nil) async throws -> String {
        let out = try await run(arguments, in: directory)
        return String(decoding: out.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
