import Foundation
import GitHTTPServer
import Logging

/// The smart-HTTP server both ways push to: a `GitSmartHTTPServer` with HTTP Basic auth,
/// run in a child process (`pushbridge-bench serve-git`).
///
/// A separate process, like a real Bitbucket, for two reasons: the server's CPU work and
/// buffering must not land in the benchmark process, whose peak RSS is recorded for the
/// GitKit runs, and the server's request handlers must not compete with GitKit's calls
/// for the same Swift concurrency threads (2 on this machine), which would penalise only
/// the GitKit side. Both ways reach the server over loopback exactly alike.
///
/// Protocol on the child's stdio: it prints one JSON line `{"url": …}` once listening; for
/// each `counters` line on stdin it prints one JSON line of ``Counters``; at end of stdin
/// it stops the server and exits. The password travels in the environment, never in
/// arguments.
final class GitServerProcess: Sendable {
    /// Server-side counters of what clients sent.
    struct Counters: Codable, Sendable {
        /// Request-body bytes of `git-receive-pack` POSTs (push commands + pack).
        var receivePackBytes: Int
        /// Request-body bytes of `git-upload-pack` POSTs (fetch negotiation).
        var uploadPackBytes: Int
        /// Requests answered, any kind and status.
        var requests: Int
        /// Requests answered `401` (credential round trips).
        var unauthorized: Int

        static func - (a: Counters, b: Counters) -> Counters {
            Counters(
                receivePackBytes: a.receivePackBytes - b.receivePackBytes,
                uploadPackBytes: a.uploadPackBytes - b.uploadPackBytes,
                requests: a.requests - b.requests,
                unauthorized: a.unauthorized - b.unauthorized
            )
        }
    }

    static let userVariable = "PUSHBRIDGE_BENCH_GIT_USER"
    static let passwordVariable = "PUSHBRIDGE_BENCH_GIT_PASSWORD"

    let baseURL: URL
    private let process: Process
    private let input: FileHandle
    private let output: LineReader

    /// Starts the child serving the bare repositories under `root`.
    init(executable: URL, root: URL, user: String, password: String) async throws {
        let process = Process()
        process.executableURL = executable
        process.arguments = ["serve-git", "--root", root.path]
        var env = ProcessInfo.processInfo.environment
        env[Self.userVariable] = user
        env[Self.passwordVariable] = password
        process.environment = env
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        self.process = process
        self.input = stdin.fileHandleForWriting
        self.output = LineReader(stdout.fileHandleForReading)
        guard let line = await output.next(),
            let hello = try? JSONDecoder().decode([String: String].self, from: Data(line.utf8)),
            let url = hello["url"].flatMap(URL.init(string:))
        else {
            process.terminate()
            throw BenchError(code: "server", message: "git server child did not report its URL")
        }
        self.baseURL = url
    }

    /// Current counters (cumulative since the server started).
    func counters() async throws -> Counters {
        try input.write(contentsOf: Data("counters\n".utf8))
        guard let line = await output.next() else {
            throw BenchError(code: "server", message: "git server child exited")
        }
        return try JSONDecoder().decode(Counters.self, from: Data(line.utf8))
    }

    /// Closes the child's stdin and waits for it to exit.
    func stop() async {
        try? input.close()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                self.process.waitUntilExit()
                continuation.resume()
            }
        }
    }

    /// Body of the `serve-git` child: serves until stdin closes.
    static func serve(root: URL) async throws {
        let env = ProcessInfo.processInfo.environment
        guard let user = env[userVariable], let password = env[passwordVariable] else {
            throw BenchError(code: "server", message: "\(userVariable)/\(passwordVariable) not set")
        }
        var logger = Logger(label: "bench-git-server")
        logger.logLevel = .warning
        let server = GitSmartHTTPServer(root: root, auth: .basic(username: user, password: password), logger: logger)
        let url = try await server.start()
        emit(["url": url.absoluteString])
        let commands = LineReader(FileHandle.standardInput)
        while let command = await commands.next() {
            guard command == "counters" else { continue }
            let s = server.statistics.snapshot
            let counters = Counters(
                receivePackBytes: s.requestBodyBytes[.receivePack] ?? 0,
                uploadPackBytes: s.requestBodyBytes[.uploadPack] ?? 0,
                requests: s.requestCount(),
                unauthorized: s.requestCount(status: 401)
            )
            emit(counters)
        }
        await server.stop()
    }

    private static func emit<T: Encodable>(_ value: T) {
        guard let data = try? JSONEncoder().encode(value) else { return }
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

/// Reads newline-terminated lines from a file handle without blocking a Swift
/// concurrency thread (the blocking `read` runs on a Dispatch thread).
final class LineReader: @unchecked Sendable {
    // Only touched from `next()`, which callers use sequentially.
    private let handle: FileHandle
    private var buffer = Data()
    private let queue = DispatchQueue(label: "bench.line-reader")

    init(_ handle: FileHandle) {
        self.handle = handle
    }

    /// The next line without its terminator, or nil at end of file.
    func next() async -> String? {
        await withCheckedContinuation { continuation in
            queue.async {
                while true {
                    if let newline = self.buffer.firstIndex(of: 10) {
                        let line = self.buffer[self.buffer.startIndex..<newline]
                        self.buffer.removeSubrange(self.buffer.startIndex...newline)
                        continuation.resume(returning: String(decoding: line, as: UTF8.self))
                        return
                    }
                    let chunk = self.handle.availableData
                    if chunk.isEmpty {
                        continuation.resume(returning: nil)
                        return
                    }
                    self.buffer.append(chunk)
                }
            }
        }
    }
}
