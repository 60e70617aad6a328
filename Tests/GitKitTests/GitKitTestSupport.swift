import Foundation
import GitHTTPServer
import GitKit
import NIOCore
import Testing
import TestSupport

/// Every GitKit suite nests in this one so they run one after another: the resource test
/// measures process-wide RSS and descriptors, and the machine has two cores.
@Suite("GitKit", .serialized)
struct GitKitTests {}

/// A git server, a data directory and a cache store for one test.
struct Harness {
    let fixture: GitServerFixture
    let data: TemporaryDirectory
    let store: GitCacheStore

    /// Creates `ws/<name>.git` on the server; returns its URL string and directory.
    func repository(_ name: String) async throws -> (url: String, directory: URL) {
        let url = try await fixture.makeRepository("ws/\(name).git")
        return (url.absoluteString, fixture.repositoryDirectory("ws/\(name).git"))
    }

    var statistics: GitHTTPStatistics { fixture.server.statistics }
}

func withHarness<T>(
    auth: GitHTTPAuthPolicy = .none, configuration: GitCacheConfiguration = GitCacheConfiguration(),
    _ body: (Harness) async throws -> T
) async throws -> T {
    try await withGitServer(auth: auth) { fixture in
        let data = try TemporaryDirectory(prefix: "gitkit-data")
        let store = GitCacheStore(dataDirectory: data.url.path, configuration: configuration)
        return try await body(Harness(fixture: fixture, data: data, store: store))
    }
}

/// A store whose remote is never contacted (for local-only operations).
func withOfflineCache<T>(_ body: (RemoteCache) async throws -> T) async throws -> T {
    let data = try TemporaryDirectory(prefix: "gitkit-offline")
    let store = GitCacheStore(dataDirectory: data.url.path)
    let cache = try store.cache(for: "https://git.invalid/ws/offline.git")
    let result = try await body(cache)
    withExtendedLifetime(data) {}
    return result
}

let testAuthor = Signature(
    name: "Push Bridge", email: "bot@example.com", date: Date(timeIntervalSince1970: 1_700_000_000), timeZoneOffsetMinutes: 60)

/// `git --git-dir=<bare> <args>` on the server side.
@discardableResult
func serverGit(_ directory: URL, _ args: [String]) async throws -> String {
    try await runGit(["--git-dir=\(directory.path)"] + args, in: directory)
}

struct TreeLine: Equatable {
    var mode: String
    var type: String
    var id: String
}

/// `git ls-tree -r` of `revision` on the server: path → (mode, type, id).
func serverTree(_ directory: URL, _ revision: String = "refs/heads/main") async throws -> [String: TreeLine] {
    let output = try await serverGit(directory, ["ls-tree", "-r", "--full-tree", "-z", revision])
    var result: [String: TreeLine] = [:]
    for record in output.split(separator: "\0") where !record.isEmpty {
        let parts = record.split(separator: "\t", maxSplits: 1)
        let meta = parts[0].split(separator: " ")
        result[String(parts[1])] = TreeLine(mode: String(meta[0]), type: String(meta[1]), id: String(meta[2]))
    }
    return result
}

/// The exact bytes of a blob on the server.
func serverBlob(_ directory: URL, _ id: String) async throws -> [UInt8] {
    let result = try await gitResult(["--git-dir=\(directory.path)", "cat-file", "blob", id], in: directory)
    #expect(result.succeeded)
    return Array(result.standardOutput.readableBytesView)
}

func serverHead(_ directory: URL, _ branch: String = "main") async throws -> String? {
    let result = try await gitResult(
        ["--git-dir=\(directory.path)", "rev-parse", "--verify", "--quiet", "refs/heads/\(branch)"], in: directory)
    return result.succeeded ? result.standardOutputString.trimmingCharacters(in: .whitespacesAndNewlines) : nil
}

/// Installs an executable hook script in a bare repository on the server.
func installHook(_ directory: URL, _ name: String, _ script: String) throws {
    let hooks = directory.appendingPathComponent("hooks")
    try FileManager.default.createDirectory(at: hooks, withIntermediateDirectories: true)
    let path = hooks.appendingPathComponent(name)
    try script.write(to: path, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path.path)
}

/// Runs `body` expecting a ``GitError`` and returns it.
func expectGitError(
    _ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation
) async -> GitError? {
    do {
        try await body()
        Issue.record("expected a GitError, got success", sourceLocation: sourceLocation)
        return nil
    } catch let error as GitError {
        return error
    } catch {
        Issue.record("expected a GitError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

extension FileEntry {
    static func text(_ path: String, _ text: String, mode: FileMode = .regular) -> FileEntry {
        FileEntry(path: path, mode: mode, text: text)
    }
}
