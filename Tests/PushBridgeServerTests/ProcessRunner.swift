import Foundation
import TestSupport

/// Runs a real command-line tool and captures its output.
struct ProcessOutput: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum ProcessRunner {
    /// Runs `executable` (searched in PATH when not absolute) with `arguments`; waits on a thread of
    /// its own, never on the cooperative pool (see `offCooperativePool`).
    static func run(
        _ executable: String, _ arguments: [String], currentDirectory: URL? = nil, environment: [String: String]? = nil,
        input: Data? = nil
    ) async throws -> ProcessOutput {
        try await offCooperativePool {
            try runBlocking(
                executable, arguments, currentDirectory: currentDirectory, environment: environment, input: input)
        }
    }

    private static func runBlocking(
        _ executable: String, _ arguments: [String], currentDirectory: URL? = nil, environment: [String: String]? = nil,
        input: Data? = nil
    ) throws -> ProcessOutput {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let inPipe = Pipe()
        process.standardInput = inPipe
        try process.run()
        if let input { inPipe.fileHandleForWriting.write(input) }
        try inPipe.fileHandleForWriting.close()
        // Read both pipes before waiting so a chatty process cannot fill a pipe and block.
        let errData = Mutable<Data>()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errData.value = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return ProcessOutput(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData.value, as: UTF8.self))
    }

    /// Whether `tool` is on PATH (evaluated by test traits, synchronously; a PATH scan, no process).
    static func available(_ tool: String) -> Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)")
        }
    }
}

/// A box written by one thread and read after a `DispatchGroup.wait()` by another.
final class Mutable<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

extension Mutable where Value == Data {
    convenience init() { self.init(Data()) }
}

/// `process.waitUntilExit()` on a thread of its own (it blocks; see `offCooperativePool`).
func waitForExit(_ process: Process) async {
    await offCooperativePool { process.waitUntilExit() }
}
