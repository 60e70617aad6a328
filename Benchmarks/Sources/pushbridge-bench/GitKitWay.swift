import Foundation
import GitKit

/// The pushbridge way, with GitKit: a per-remote object cache, a tree built straight from
/// the files on top of the fetched tip (no checkout, no index), a commit, a fast-forward
/// push — the same steps `RemoteCache.publish` performs, called one by one here so each
/// step can be timed.
///
/// Credentials are user/password handed to libgit2's credentials callback, so like the
/// git CLI it pays one `401` round trip per connection and the password is never in a URL.
/// libgit2 runs with its defaults (no `GIT_OPT_ENABLE_FSYNC_GITDIR`, pack-builder threads
/// = CPUs).
struct GitKitWay: Sendable {
    /// Wall-clock of one push and what it sent.
    struct Result: Sendable {
        var seconds: Double
        /// `open` (cache store + actor), `fetch`, `build`, `commit`, `push`.
        var phases: [(String, Double)]
        /// Pack bytes the push sent, as libgit2 reports them.
        var bytesSent: Int
        var objectsSent: Int
        var objectsReceived: Int
        var blobsWritten: Int
        var treesWritten: Int
    }

    let user: String
    let password: String

    init(user: String, password: String) {
        self.user = user
        self.password = password
    }

    private var transport: TransportOptions {
        TransportOptions(credentials: .userPassword(username: user, password: password))
    }

    /// Cold: a cache that does not exist yet (`cacheDirectory` must be new), the files of
    /// `source` as the whole tree.
    func coldPush(source: URL, remote: String, branch: String, cacheDirectory: URL, message: String) async throws -> Result {
        try await push(files: source, remote: remote, branch: branch, cacheDirectory: cacheDirectory, message: message)
    }

    /// Brings `branch` into the cache at `cacheDirectory` (the daemon's steady state);
    /// returns the seconds it took.
    func prime(remote: String, branch: String, cacheDirectory: URL) async throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        let cache = try GitCacheStore(dataDirectory: cacheDirectory.path).cache(for: remote)
        let fetched = try await cache.fetch(branches: [branch], transport: transport)
        guard fetched.tip(branch) != nil else {
            throw BenchError(code: "invalid_state", message: "priming fetch found no \(branch)")
        }
        return (clock.now - start).seconds
    }

    /// Incremental: the warm cache at `cacheDirectory`; the files under `overlay` are
    /// written over the fetched tip's tree.
    func incrementalPush(overlay: URL, remote: String, branch: String, cacheDirectory: URL, message: String) async throws -> Result {
        try await push(files: overlay, remote: remote, branch: branch, cacheDirectory: cacheDirectory, message: message)
    }

    private func push(files: URL, remote: String, branch: String, cacheDirectory: URL, message: String) async throws -> Result {
        let clock = ContinuousClock()
        let start = clock.now
        var mark = start
        var phases: [(String, Double)] = []
        func lap(_ name: String) {
            let now = clock.now
            phases.append((name, (now - mark).seconds))
            mark = now
        }
        // A store per call mirrors a daemon whose store outlives jobs: opening an existing
        // cache directory is cheap, and for the cold case nothing exists yet anyway.
        let cache = try GitCacheStore(dataDirectory: cacheDirectory.path).cache(for: remote)
        lap("open")
        let fetched = try await cache.fetch(branches: [branch], transport: transport)
        let tip = fetched.tip(branch)
        lap("fetch")
        let tree = try await cache.buildTree(parent: tip, files: .directory(files.path), options: TreeBuildOptions(mode: .overlay))
        guard tree.changed else {
            throw BenchError(code: "invalid_state", message: "GitKit built an unchanged tree; the benchmark input must change something")
        }
        lap("build")
        let author = Signature(name: "Bench Bot", email: "bench@example.com")
        let commit = try await cache.commit(tree: tree.tree, parents: tip.map { [$0] } ?? [], message: message, author: author)
        lap("commit")
        let pushed = try await cache.push(commit: commit, to: branch, expecting: tip, transport: transport)
        lap("push")
        return Result(
            seconds: (clock.now - start).seconds, phases: phases,
            bytesSent: pushed.bytesSent, objectsSent: pushed.objectsSent,
            objectsReceived: fetched.objectsReceived,
            blobsWritten: tree.statistics.blobsWritten, treesWritten: tree.statistics.treesWritten)
    }
}
