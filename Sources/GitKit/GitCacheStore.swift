import CLibGit2
import Foundation
import Logging
import Synchronization

/// Hands out one ``RemoteCache`` per remote URL, rooted at `<dataDirectory>/git-cache`.
///
/// Caches live in `<dataDirectory>/git-cache/<key>` where `<key>` is the hex SHA-1 of the
/// remote URL with any userinfo removed (so `https://user@host/r.git` and
/// `https://host/r.git` share a cache). Each cache is a bare repository guarded by the
/// lock file `<key>.lock`.
///
/// Concurrency: within a process, one actor per remote serialises its operations and
/// different remotes run in parallel on separate dispatch queues. Across processes, the
/// per-cache `flock` serialises operations; running one daemon per data directory is
/// nonetheless the supported deployment (the lock only keeps a second process from
/// corrupting the cache, it does not coordinate jobs).
public final class GitCacheStore: Sendable {
    /// `<dataDirectory>/git-cache`.
    public let cacheDirectory: String
    private let configuration: GitCacheConfiguration
    private let logger: Logger

    private struct Entry {
        var cache: RemoteCache
        var lastUse: UInt64
    }

    private struct State {
        var caches: [String: Entry] = [:]
        var clock: UInt64 = 0
    }

    private let state = Mutex(State())

    public init(
        dataDirectory: String, configuration: GitCacheConfiguration = GitCacheConfiguration(),
        logger: Logger = Logger(label: "pushbridge.gitkit")
    ) {
        LibGit2.initialize()
        self.cacheDirectory = (dataDirectory as NSString).appendingPathComponent("git-cache")
        self.configuration = configuration
        self.logger = logger
    }

    /// The cache of `remoteURL` (`http`, `https` or `file`; a password in the URL is refused
    /// with `invalid_argument`). The directory is created on first use.
    public func cache(for remoteURL: String) throws(GitError) -> RemoteCache {
        try RemoteURL.validate(remoteURL)
        let key = Self.key(for: remoteURL)
        do {
            try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        } catch {
            throw GitError(code: .io, message: "cannot create \(cacheDirectory): \(error.localizedDescription)")
        }
        return state.withLock { state in
            state.clock += 1
            if var entry = state.caches[key] {
                entry.lastUse = state.clock
                state.caches[key] = entry
                return entry.cache
            }
            let cache = RemoteCache(
                remoteURL: remoteURL, directory: "\(cacheDirectory)/\(key)", lockPath: "\(cacheDirectory)/\(key).lock",
                configuration: configuration, logger: logger)
            state.caches[key] = Entry(cache: cache, lastUse: state.clock)
            if state.caches.count > max(1, configuration.maxOpenCaches),
                let oldest = state.caches.min(by: { $0.value.lastUse < $1.value.lastUse })?.key
            {
                // A job still holding the evicted actor keeps working; the file lock keeps a
                // newer actor for the same remote from interleaving with it.
                state.caches[oldest] = nil
            }
            return cache
        }
    }

    /// The directory name of the cache of `remoteURL`.
    public static func key(for remoteURL: String) -> String {
        LibGit2.initialize()
        let normalized = Array(SecretRedactor.stripURLUserinfo(remoteURL).utf8)
        var oid = git_oid()
        // libgit2's object hashing (SHA-1 over "blob <n>\0<url>") serves as a stable digest,
        // sparing GitKit a crypto dependency.
        _ = normalized.withUnsafeBytes { git_odb_hash(&oid, $0.baseAddress, $0.count, GIT_OBJECT_BLOB) }
        return ObjectID(oid).hex
    }
}
