import Foundation

/// The deterministic history of the incremental scenario's repository: commit 0 adds every
/// file, each later commit rewrites a region of 1–40 files (new versions, see
/// `SyntheticApp.content(ofFile:version:)`). Committer dates are fixed, so the generated
/// repository has the same commit ids on every run and machine.
struct History: Sendable {
    let app: SyntheticApp
    /// Per commit, the files it changes (commit 0: all of them).
    let commits: [[Int]]
    /// Version of every file at the tip.
    let tipVersions: [Int]

    static let epoch = 1_700_000_000

    init(app: SyntheticApp, commitCount: Int) {
        var rng = SplitMix64(seed: app.seed, 4)
        var versions = [Int](repeating: 0, count: app.files.count)
        var commits: [[Int]] = [Array(app.files.indices)]
        for _ in 1..<commitCount {
            let k = 1 + rng.below(40)
            var changed = Set<Int>()
            while changed.count < k { changed.insert(rng.below(app.files.count)) }
            let sorted = changed.sorted()
            for f in sorted { versions[f] += 1 }
            commits.append(sorted)
        }
        self.app = app
        self.commits = commits
        self.tipVersions = versions
    }

    /// Writes the history as a `git fast-import` stream to `url`, on `refs/heads/<branch>`.
    func writeFastImportStream(to url: URL, branch: String) throws {
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        var buffer = Data()
        buffer.reserveCapacity(8 << 20)
        func flushIfLarge() throws {
            if buffer.count >= 4 << 20 {
                try handle.write(contentsOf: buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        func line(_ s: String) { buffer.append(contentsOf: Array(s.utf8)); buffer.append(10) }
        func data(_ bytes: [UInt8]) {
            line("data \(bytes.count)")
            buffer.append(contentsOf: bytes)
            buffer.append(10)
        }
        var versions = [Int](repeating: 0, count: app.files.count)
        for (n, changed) in commits.enumerated() {
            let when = "\(Self.epoch + n * 3_600) +0000"
            line("commit refs/heads/\(branch)")
            line("mark :\(n + 1)")
            line("author History Bot <history@example.com> \(when)")
            line("committer History Bot <history@example.com> \(when)")
            data(Array((n == 0 ? "Initial generated app" : "Regenerate \(changed.count) files (\(n))").utf8))
            if n > 0 { line("from :\(n)") }
            for f in changed {
                if n > 0 { versions[f] += 1 }
                line("M 100644 inline \(app.files[f].path)")
                data(app.content(ofFile: f, version: versions[f]))
                try flushIfLarge()
            }
            line("")
        }
        line("done")
        try handle.write(contentsOf: buffer)
    }
}

/// Bare repositories on the server side, created like a real host creates them.
enum ServerRepos {
    /// `git init --bare` with the default branch `main` and non-fast-forward pushes denied.
    static func createBare(_ url: URL, git: Command) async throws {
        try await git.run(["init", "--quiet", "--bare", "--initial-branch=main", url.path])
        try await git.run(["config", "receive.denyNonFastForwards", "true"], in: url)
    }

    /// Creates the incremental scenario's template repository from `history` and packs it
    /// the way a hosting service keeps repositories (one pack, bitmap index).
    static func createFromHistory(_ url: URL, history: History, git: Command, scratch: URL) async throws {
        try await createBare(url, git: git)
        let stream = scratch.appendingPathComponent("history.fi")
        try history.writeFastImportStream(to: stream, branch: "main")
        defer { try? FileManager.default.removeItem(at: stream) }
        try await git.run(["fast-import", "--quiet", "--done"], in: url, stdin: stream)
        try await git.run(["repack", "-a", "-d", "-q", "--write-bitmap-index"], in: url)
    }

    /// Bytes of a pack holding exactly the objects reachable from `new` and not from `old`,
    /// as `git pack-objects` (default settings, not thin) writes it — the reference size for
    /// what an incremental push has to send.
    static func packedSize(of repo: URL, old: String, new: String, git: Command, scratch: URL) async throws -> Int {
        let list = scratch.appendingPathComponent("objects-\(UUID().uuidString)")
        let pack = scratch.appendingPathComponent("pack-\(UUID().uuidString)")
        defer {
            try? FileManager.default.removeItem(at: list)
            try? FileManager.default.removeItem(at: pack)
        }
        try await git.run(["rev-list", "--objects", new, "^\(old)"], in: repo, stdout: list)
        try await git.run(["pack-objects", "--quiet", "--stdout"], in: repo, stdin: list, stdout: pack)
        let attributes = try FileManager.default.attributesOfItem(atPath: pack.path)
        return (attributes[.size] as? NSNumber)?.intValue ?? 0
    }
}
