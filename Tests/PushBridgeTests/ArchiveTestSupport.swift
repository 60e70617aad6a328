import Foundation
import NIOCore
import TestSupport

@testable import PushBridge

/// Helpers for the archive tests: real `tar`, real Python `tarfile`, temp dirs, chunked bodies.
enum ArchiveFixture {
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("pb-archive-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.resolvingSymlinksInPath()
    }

    /// Runs a tool to completion, waiting on a thread of its own (never block the cooperative pool).
    @discardableResult
    static func run(_ arguments: [String], in directory: URL? = nil, input: String? = nil) async throws -> String {
        try await offCooperativePool { try runBlocking(arguments, in: directory, input: input) }
    }

    private static func runBlocking(_ arguments: [String], in directory: URL?, input: String?) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw NSError(domain: "ArchiveFixture", code: Int(process.terminationStatus),
                          userInfo: [NSLocalizedDescriptionKey: "\(arguments.joined(separator: " ")): \(text)"])
        }
        return text
    }

    /// Builds an archive with Python's `tarfile`; `body` is Python code using `tf` (open TarFile),
    /// `add(name, data=b"", **attrs)` for members, and `tarfile`.
    static func python(_ body: String, to path: URL, mode: String = "w") async throws {
        let script = """
            import io, sys, tarfile
            tf = tarfile.open(sys.argv[1], "\(mode)", format=tarfile.PAX_FORMAT)
            def add(name, data=b"", **attrs):
                info = tarfile.TarInfo(name)
                for k, v in attrs.items():
                    setattr(info, k, v)
                if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
                else:
                    tf.addfile(info)
            \(body.split(separator: "\n").joined(separator: "\n"))
            tf.close()
            """
        try await run(["python3", "-c", script, path.path])
    }

    /// The file's bytes as an async sequence of odd-sized chunks, so that headers and gzip
    /// members straddle chunk boundaries.
    static func body(of file: URL, chunkSize: Int = 7_001) throws -> AsyncStream<ByteBuffer> {
        let data = try Data(contentsOf: file)
        return AsyncStream { continuation in
            var offset = 0
            while offset < data.count {
                let end = min(offset + chunkSize, data.count)
                continuation.yield(ByteBuffer(bytes: data[offset..<end]))
                offset = end
            }
            continuation.finish()
        }
    }

    static let generous = ArchiveLimits(
        maxArchiveBytes: 64 << 20, maxEntries: 10_000, maxFileBytes: 32 << 20, maxExpandedBytes: 256 << 20)
}
