import CLibGit2
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tuning of the per-remote object caches.
public struct GitCacheConfiguration: Sendable, Hashable {
    /// Packs smaller than this count as "small" (the cache adds one small pack per push and
    /// per fetch that received objects).
    public var smallPackBytes: Int
    /// When this many small packs exist they are merged into one, so object lookups do not
    /// degrade with the number of jobs. Large packs (an initial clone) are never rewritten.
    public var maxSmallPacks: Int
    /// How many ``RemoteCache`` instances a ``GitCacheStore`` keeps; beyond that the least
    /// recently requested is dropped (and closed once no job uses it).
    public var maxOpenCaches: Int

    public init(smallPackBytes: Int = 8 << 20, maxSmallPacks: Int = 16, maxOpenCaches: Int = 256) {
        self.smallPackBytes = smallPackBytes
        self.maxSmallPacks = maxSmallPacks
        self.maxOpenCaches = maxOpenCaches
    }
}

/// Input of ``RemoteCache/publish(_:transport:)``.
public struct PublishRequest: Sendable {
    /// The branch to update (created when absent).
    public var branch: String
    /// When ``branch`` does not exist, the new commit's parent is this branch's tip.
    public var baseBranch: String?
    public var files: FileSource
    public var options: TreeBuildOptions
    public var message: String
    public var author: Signature
    /// Defaults to ``author``.
    public var committer: Signature?
    /// Attempts in total when the branch moves between fetch and push (each retry re-fetches
    /// and rebuilds on the new tip).
    public var maxAttempts: Int

    public init(
        branch: String, baseBranch: String? = nil, files: FileSource, options: TreeBuildOptions = TreeBuildOptions(),
        message: String, author: Signature, committer: Signature? = nil, maxAttempts: Int = 3
    ) {
        self.branch = branch
        self.baseBranch = baseBranch
        self.files = files
        self.options = options
        self.message = message
        self.author = author
        self.committer = committer
        self.maxAttempts = maxAttempts
    }
}

/// Outcome of ``RemoteCache/publish(_:transport:)``.
public struct PublishResult: Sendable {
    /// The branch tip after publishing: the new commit, or the unchanged parent
    /// (`nil` only when nothing exists and nothing changed).
    public var commit: ObjectID?
    /// `false`: the files produced the parent's tree; no commit, no push.
    public var changed: Bool
    /// The parent the tree was built on (branch tip, else base tip, else `nil`).
    public var parent: ObjectID?
    /// `true` when the push created ``PublishRequest/branch`` on the remote.
    public var createdBranch: Bool
    /// Fetch/build/push rounds used (more than one when the branch moved meanwhile).
    public var attempts: Int
    /// The remote tips the last round started from. When every tip was already cached they
    /// come from the push connection's advertisement: nothing is received and
    /// ``FetchResult/defaultBranch`` is `nil` (receive-pack does not advertise `HEAD`).
    public var fetch: FetchResult
    public var tree: TreeBuildResult
    /// `nil` when nothing was pushed.
    public var push: PushResult?
}

/// Numbers describing a cache on disk and in memory.
public struct CacheStatistics: Sendable, Hashable {
    /// Pack files in the cache.
    public var packs: Int
    /// Objects written since the last push that live only in memory.
    public var pendingObjects: Int
}

/// The object cache of one remote: a bare repository under
/// `<dataDir>/git-cache/<hash of URL>` reused by every job on that remote.
///
/// All work on one remote is serialised: the actor runs on its own serial queue (libgit2
/// calls block; see ``GitCacheStore``), every operation is synchronous inside the actor (no
/// suspension points, so operations never interleave), and each operation holds an
/// exclusive `flock` on `<hash>.lock` so another process sharing the data directory waits
/// too. Different remotes proceed in parallel.
///
/// New objects are kept in memory (`git_mempack`) until a push succeeds; then exactly the
/// objects written since the last push are stored as one pack and the private tracking
/// reference `refs/remotes/origin/<branch>` is moved to the pushed commit, so the next job
/// needs to download nothing. History is never walked: the remote tips come from the
/// reference advertisement, and only subtrees on the changed paths are read.
public actor RemoteCache {
    /// The remote URL as given (never contains a password).
    public nonisolated let remoteURL: String
    /// The cache's bare repository.
    public nonisolated let directory: String

    private nonisolated let executor: QueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private let lock: FileLock
    private let configuration: GitCacheConfiguration
    private let logger: Logger
    private var repository: Repository?
    /// Ids written since the last persisted pack (deduplicated when persisting).
    private var pending: [ObjectID] = []

    static let trackingPrefix = "refs/remotes/origin/"
    static let outgoingPrefix = "refs/pushbridge/outgoing/"

    init(remoteURL: String, directory: String, lockPath: String, configuration: GitCacheConfiguration, logger: Logger) {
        self.remoteURL = remoteURL
        self.directory = directory
        self.lock = FileLock(path: lockPath)
        self.configuration = configuration
        self.logger = logger
        self.executor = QueueExecutor(label: "pushbridge.gitkit.cache")
    }

    private var displayURL: String { SecretRedactor.stripURLUserinfo(remoteURL) }

    // MARK: - Fetch

    /// Fetches `branches` from the remote into the cache.
    ///
    /// Only branches whose advertised tip is not already cached are downloaded, and the
    /// negotiation tells the server what the cache has, so the pack received follows the
    /// size of what changed remotely. A branch absent on the remote is reported with a `nil`
    /// tip (not an error) and its tracking reference is removed.
    ///
    /// - Returns: the remote tips (use them as `expecting:` for ``push(commit:to:expecting:transport:)``)
    ///   and the objects/bytes received.
    public func fetch(branches: [String], transport: TransportOptions = TransportOptions()) throws(GitError) -> FetchResult {
        try lock.withLock { () throws(GitError) in try fetchLocked(branches: branches, transport: transport) }
    }

    private func fetchLocked(branches: [String], transport: TransportOptions) throws(GitError) -> FetchResult {
        try checkCancellation()
        var unique: [String] = []
        for branch in branches where !unique.contains(branch) {
            try Self.validateBranch(branch)
            unique.append(branch)
        }
        let repo = try openRepository()
        let session = try TransportSession(options: transport)
        let result = try fetch(unique, into: repo, session: session)
        // The C callbacks reach the session's state through a raw pointer only.
        withExtendedLifetime(session) {}
        return result
    }

    private func fetch(_ unique: [String], into repo: Repository, session: TransportSession) throws(GitError) -> FetchResult {
        let remote = try Remote(repository: repo, url: remoteURL)
        try remote.connect(GIT_DIRECTION_FETCH, session: session, context: "connect to \(displayURL)")
        let advertised = try remote.advertisement(session: session)
        var tips: [String: ObjectID?] = [:]
        var missing: [String] = []
        for branch in unique {
            if let tip = advertised.references["refs/heads/" + branch] {
                tips[branch] = tip
                if !repo.objectExists(tip) { missing.append(branch) }
            } else {
                tips[branch] = .some(nil)
            }
        }
        var stats = git_indexer_progress()
        if !missing.isEmpty {
            let refspecs = CStringArray(missing.map { "+refs/heads/\($0):\(Self.trackingPrefix)\($0)" })
            var specs = refspecs.strarray
            var options = session.fetchOptions
            let rc = withExtendedLifetime(refspecs) { git_remote_download(remote.pointer, &specs, &options) }
            if rc < 0 { throw session.failure(rc, "fetch from \(displayURL)") }
            if let received = git_remote_stats(remote.pointer) { stats = received.pointee }
        }
        git_remote_disconnect(remote.pointer)
        for (branch, tip) in tips {
            if let tip {
                try repo.setReference(Self.trackingPrefix + branch, to: tip)
            } else {
                try repo.deleteReference(Self.trackingPrefix + branch)
            }
        }
        let result = FetchResult(
            tips: tips, defaultBranch: advertised.defaultBranch,
            remoteIsEmpty: advertised.references.isEmpty,
            objectsReceived: Int(stats.received_objects), bytesReceived: stats.received_bytes,
            localObjects: Int(stats.local_objects))
        logger.debug(
            "fetched", metadata: [
                "remote": "\(displayURL)", "branches": "\(unique)", "objects": "\(result.objectsReceived)",
                "bytes": "\(result.bytesReceived)",
            ])
        return result
    }

    /// The cached tip of `branch` (as of the last fetch or push), without network access.
    public func trackedTip(of branch: String) throws(GitError) -> ObjectID? {
        try Self.validateBranch(branch)
        return try lock.withLock { () throws(GitError) in
            try openRepository().referenceTarget(Self.trackingPrefix + branch)
        }
    }

    // MARK: - Trees and commits

    /// Builds a tree from `files` on top of `parent` without a checkout.
    ///
    /// - Parameters:
    ///   - parent: a commit or tree id in the cache, or `nil` to start from nothing.
    ///   - files: the file set; it is validated completely (paths, sizes, symlink targets,
    ///     file types) before any object is written.
    ///   - options: root prefix, `overlay`/`sync` mode with preserve patterns, size limit.
    /// - Returns: the new tree; ``TreeBuildResult/changed`` is `false` when it equals the
    ///   parent's tree (with no parent every result counts as changed).
    public func buildTree(parent: ObjectID?, files: FileSource, options: TreeBuildOptions = TreeBuildOptions()) throws(GitError) -> TreeBuildResult {
        try lock.withLock { () throws(GitError) in try buildTreeLocked(parent: parent, files: files, options: options) }
    }

    private func buildTreeLocked(parent: ObjectID?, files: FileSource, options: TreeBuildOptions) throws(GitError) -> TreeBuildResult {
        try checkCancellation()
        let repo = try openRepository()
        let fileSet = try FileSet.collect(files, maxFileSize: options.maxFileSize)
        var merger = try TreeMerger(repository: repo, files: fileSet, options: options)
        let parentTreeID = try parent.map { id throws(GitError) in try repo.treeID(of: id) }
        let parentTree = try parentTreeID.map { id throws(GitError) in try repo.lookupTree(id) }
        let tree = try merger.build(parent: parentTree)
        pending.append(contentsOf: merger.written)
        return TreeBuildResult(
            tree: tree, parentTree: parentTreeID, changed: parentTreeID != tree, statistics: merger.statistics)
    }

    /// Writes a commit object. No reference is updated: the commit becomes reachable in the
    /// cache when it is pushed (see ``push(commit:to:expecting:transport:)``).
    ///
    /// - Parameters:
    ///   - message: stored as given, plus a final newline when missing (like git).
    ///   - committer: defaults to `author`.
    public func commit(
        tree: ObjectID, parents: [ObjectID], message: String, author: Signature, committer: Signature? = nil
    ) throws(GitError) -> ObjectID {
        try lock.withLock { () throws(GitError) in
            try commitLocked(tree: tree, parents: parents, message: message, author: author, committer: committer)
        }
    }

    private func commitLocked(
        tree: ObjectID, parents: [ObjectID], message: String, author: Signature, committer: Signature?
    ) throws(GitError) -> ObjectID {
        let repo = try openRepository()
        let treeObject = try repo.lookupTree(tree)
        let parentCommits = try parents.map { id throws(GitError) in try repo.lookupCommit(id) }
        let authorSignature = try GitSignature(author)
        let committerSignature = try GitSignature(committer ?? author)
        guard !message.utf8.contains(0) else {
            throw GitError(code: .invalidArgument, message: "commit message contains a NUL byte")
        }
        let text = message.hasSuffix("\n") ? message : message + "\n"
        var oid = git_oid()
        var parentPointers: [OpaquePointer?] = parentCommits.map { $0.pointer }
        let rc = parentPointers.withUnsafeMutableBufferPointer { buffer in
            git_commit_create(
                &oid, repo.pointer, nil, authorSignature.pointer, committerSignature.pointer, nil, text,
                treeObject.pointer, buffer.count, buffer.baseAddress)
        }
        try check(rc, "create commit")
        let id = ObjectID(oid)
        pending.append(id)
        return id
    }

    /// A file of a commit or tree in the cache, or `nil` when the path does not exist or is a directory.
    public func file(at path: String, in commitOrTree: ObjectID) throws(GitError) -> FileEntry? {
        _ = try PathRules.components(of: path)
        return try lock.withLock { () throws(GitError) -> FileEntry? in
            let repo = try openRepository()
            let tree = try repo.lookupTree(try repo.treeID(of: commitOrTree))
            var entry: OpaquePointer?
            let rc = git_tree_entry_bypath(&entry, tree.pointer, path)
            if rc == GIT_ENOTFOUND.rawValue {
                git_error_clear()
                return nil
            }
            try check(rc, "look up \(path)", path: path)
            defer { git_tree_entry_free(entry) }
            guard let mode = FileMode(rawValue: git_tree_entry_filemode(entry).rawValue) else { return nil }
            var blob: OpaquePointer?
            try check(git_blob_lookup(&blob, repo.pointer, git_tree_entry_id(entry)), "read \(path)", path: path)
            defer { git_blob_free(blob) }
            let size = Int(git_blob_rawsize(blob))
            let bytes = size == 0 ? [] : Array(UnsafeRawBufferPointer(start: git_blob_rawcontent(blob), count: size))
            return FileEntry(path: path, mode: mode, contents: bytes)
        }
    }

    /// The root tree of a commit (or the id itself for a tree).
    public func treeID(of commitOrTree: ObjectID) throws(GitError) -> ObjectID {
        try lock.withLock { () throws(GitError) in try openRepository().treeID(of: commitOrTree) }
    }

    // MARK: - Push

    /// Pushes `commit` to `refs/heads/<branch>`, fast-forward only.
    ///
    /// The push goes ahead only if the remote branch is exactly at `expected` (`nil`: the
    /// branch must not exist) and `commit` descends from it; otherwise — and when the server
    /// refuses the update because the branch moved in the meantime — it fails with
    /// `non_fast_forward` and nothing changes. Other server refusals (hooks, permissions) are
    /// `push_rejected`. The refspec never has a `+`.
    ///
    /// On success the objects written since the last push are stored in the cache as one
    /// pack and the tracking reference moves to `commit`.
    public func push(
        commit: ObjectID, to branch: String, expecting expected: ObjectID?, transport: TransportOptions = TransportOptions()
    ) throws(GitError) -> PushResult {
        try lock.withLock { () throws(GitError) in
            try pushLocked(commit: commit, branch: branch, expected: expected, transport: transport)
        }
    }

    private func pushLocked(
        commit: ObjectID, branch: String, expected: ObjectID?, transport: TransportOptions,
        connection reused: PushConnection? = nil
    ) throws(GitError) -> PushResult {
        try checkCancellation()
        try Self.validateBranch(branch)
        let repo = try openRepository()
        _ = try repo.lookupCommit(commit)
        if let expected {
            if expected == commit {
                return PushResult(branch: branch, commit: commit, previous: expected, upToDate: true, objectsSent: 0, bytesSent: 0)
            }
            guard repo.objectExists(expected) else {
                throw GitError(
                    code: .nonFastForward, message: "expected tip \(expected) of \(branch) is not in the cache; fetch first")
            }
            var oid = commit.oid
            var base = expected.oid
            let descends = git_graph_descendant_of(repo.pointer, &oid, &base)
            try check(descends, "compare \(commit) with \(expected)")
            if descends != 1 {
                throw GitError(
                    code: .nonFastForward, message: "\(commit) does not descend from \(expected), the tip of \(branch)")
            }
        }
        let connection: PushConnection
        if let reused {
            connection = reused
        } else {
            connection = try openPushConnection(repo, transport: transport)
        }
        let current = connection.advertisement.references["refs/heads/" + branch]
        let result: PushResult
        if current == commit {
            // Already there (an earlier attempt whose answer was lost): nothing to send.
            result = PushResult(branch: branch, commit: commit, previous: expected, upToDate: true, objectsSent: 0, bytesSent: 0)
        } else {
            guard current == expected else {
                throw GitError(
                    code: .nonFastForward,
                    message: "remote branch \(branch) is at \(current?.hex ?? "nothing"), expected \(expected?.hex ?? "nothing")")
            }
            result = try upload(commit: commit, branch: branch, expected: expected, repo: repo, connection: connection)
        }
        // The remote has the commit. Keep its objects locally before the tracking reference
        // names them: a reference must never point at objects that live only in memory.
        do {
            _ = try persistPendingLocked(repo)
            try repo.setReference(Self.trackingPrefix + branch, to: commit)
        } catch {
            logger.warning("pushed, but could not store the pushed objects in the cache: \(error)")
            try? repo.deleteReference(Self.trackingPrefix + branch)
        }
        logger.debug(
            "pushed", metadata: [
                "remote": "\(displayURL)", "branch": "\(branch)", "commit": "\(commit)",
                "objects": "\(result.objectsSent)", "bytes": "\(result.bytesSent)",
            ])
        return result
    }

    /// Connects for pushing and reads the remote's references (one HTTP request).
    private func openPushConnection(_ repo: Repository, transport: TransportOptions) throws(GitError) -> PushConnection {
        let session = try TransportSession(options: transport)
        let remote = try Remote(repository: repo, url: remoteURL)
        try remote.connect(GIT_DIRECTION_PUSH, session: session, context: "connect to \(displayURL)")
        let advertisement = try remote.advertisement(session: session)
        return PushConnection(session: session, remote: remote, advertisement: advertisement)
    }

    private func upload(
        commit: ObjectID, branch: String, expected: ObjectID?, repo: Repository, connection: PushConnection
    ) throws(GitError) -> PushResult {
        let session = connection.session
        // libgit2 pushes from a local reference; it lives only for this call.
        let outgoing = Self.outgoingPrefix + branch
        try repo.setReference(outgoing, to: commit)
        defer { try? repo.deleteReference(outgoing) }
        let refspecs = CStringArray(["\(outgoing):refs/heads/\(branch)"])
        var specs = refspecs.strarray
        var options = session.pushOptions
        let rc = withExtendedLifetime(refspecs) { git_remote_upload(connection.remote.pointer, &specs, &options) }
        if rc < 0 { throw session.failure(rc, "push to \(displayURL)") }
        if let rejection = session.state.rejections.first {
            throw Self.rejectionError(branch: branch, status: rejection.status, session: session)
        }
        return PushResult(
            branch: branch, commit: commit, previous: expected, upToDate: false,
            objectsSent: session.state.pushObjects, bytesSent: session.state.pushBytes)
    }

    private static func rejectionError(branch: String, status: String, session: TransportSession) -> GitError {
        let remote = session.state.remoteMessages.trimmingCharacters(in: .whitespacesAndNewlines)
        // git reports a lost compare-and-swap as "failed to update ref" and explains it on the
        // side band ("cannot lock ref …: is at X but expected Y").
        let evidence = (status + "\n" + remote).lowercased()
        let movedMarkers = ["non-fast-forward", "fetch first", "stale info", "but expected", "cannot lock ref", "failed to lock"]
        let code: GitError.Code = movedMarkers.contains { evidence.contains($0) } ? .nonFastForward : .pushRejected
        var message = "the remote refused to update \(branch): \(status)"
        if !remote.isEmpty { message += " (remote said: \(remote))" }
        return GitError(code: code, message: message).redacted(with: session.redactor)
    }

    // MARK: - Publish

    /// Fetch, build, commit and push in one serialised step, retrying on a moved branch.
    ///
    /// The parent is the tip of ``PublishRequest/branch`` when it exists, else the tip of
    /// ``PublishRequest/baseBranch``, else none. When the built tree equals the parent's tree,
    /// nothing is committed or pushed (``PublishResult/changed`` is `false`). When the remote
    /// branch moves between fetch and push, the round is repeated on the new tip, up to
    /// ``PublishRequest/maxAttempts`` times; after that `non_fast_forward` is thrown.
    public func publish(_ request: PublishRequest, transport: TransportOptions = TransportOptions()) throws(GitError) -> PublishResult {
        try lock.withLock { () throws(GitError) in try publishLocked(request, transport: transport) }
    }

    private func publishLocked(_ request: PublishRequest, transport: TransportOptions) throws(GitError) -> PublishResult {
        var branches = [request.branch]
        if let base = request.baseBranch, base != request.branch { branches.append(base) }
        for branch in branches { try Self.validateBranch(branch) }
        var attempt = 0
        while true {
            attempt += 1
            try checkCancellation()
            let repo = try openRepository()
            // One connection serves both as "fetch" (its advertisement has the tips) and for the
            // push, saving a round trip, as long as the cache already has the tips' objects.
            var connection: PushConnection? = try openPushConnection(repo, transport: transport)
            let advertised = connection!.advertisement
            let fetched: FetchResult
            let tips = branches.map { advertised.references["refs/heads/" + $0] }
            if tips.allSatisfy({ $0.map(repo.objectExists) ?? true }) {
                var table: [String: ObjectID?] = [:]
                for (branch, tip) in zip(branches, tips) {
                    table[branch] = .some(tip)
                    if let tip {
                        try repo.setReference(Self.trackingPrefix + branch, to: tip)
                    } else {
                        try repo.deleteReference(Self.trackingPrefix + branch)
                    }
                }
                fetched = FetchResult(
                    tips: table, defaultBranch: advertised.defaultBranch, remoteIsEmpty: advertised.references.isEmpty,
                    objectsReceived: 0, bytesReceived: 0, localObjects: 0)
            } else {
                // The tips may move while downloading; push over a fresh connection later.
                connection = nil
                fetched = try fetchLocked(branches: branches, transport: transport)
            }
            let branchTip = fetched.tip(request.branch)
            let parent = branchTip ?? request.baseBranch.flatMap { fetched.tip($0) }
            let tree = try buildTreeLocked(parent: parent, files: request.files, options: request.options)
            if !tree.changed {
                return PublishResult(
                    commit: parent, changed: false, parent: parent, createdBranch: false, attempts: attempt,
                    fetch: fetched, tree: tree, push: nil)
            }
            let commit = try commitLocked(
                tree: tree.tree, parents: parent.map { [$0] } ?? [], message: request.message, author: request.author,
                committer: request.committer)
            do {
                let pushed: PushResult
                do {
                    pushed = try pushLocked(
                        commit: commit, branch: request.branch, expected: branchTip, transport: transport, connection: connection)
                } catch where error.code == .network && connection != nil {
                    // The reused connection may have gone stale while the tree was built.
                    logger.info("push over the reused connection failed; retrying on a new one", metadata: ["error": "\(error)"])
                    connection = nil
                    pushed = try pushLocked(commit: commit, branch: request.branch, expected: branchTip, transport: transport)
                }
                return PublishResult(
                    commit: commit, changed: true, parent: parent, createdBranch: branchTip == nil, attempts: attempt,
                    fetch: fetched, tree: tree, push: pushed)
            } catch where error.code == .nonFastForward && attempt < max(1, request.maxAttempts) {
                logger.info("branch moved during publish; rebuilding on the new tip", metadata: ["branch": "\(request.branch)"])
            }
        }
    }

    // MARK: - Pending objects and maintenance

    /// Stores the objects written since the last push as a pack now (normally done by a
    /// successful push). Returns how many objects were stored.
    @discardableResult
    public func persistPendingObjects() throws(GitError) -> Int {
        try lock.withLock { () throws(GitError) in try persistPendingLocked(try openRepository()) }
    }

    /// Drops every object written since the last push — of *all* unfinished jobs on this remote.
    public func discardPendingObjects() {
        repository?.resetPending()
        pending.removeAll()
    }

    /// Pack count and pending objects.
    public func statistics() throws(GitError) -> CacheStatistics {
        try lock.withLock { () throws(GitError) in
            let repo = try openRepository()
            let pendingCount = Set(pending).filter { repo.isPending($0) }.count
            return CacheStatistics(packs: try packFiles().count, pendingObjects: pendingCount)
        }
    }

    private func persistPendingLocked(_ repo: Repository) throws(GitError) -> Int {
        var seen = Set<ObjectID>()
        let ids = pending.filter { seen.insert($0).inserted && repo.isPending($0) }
        guard !ids.isEmpty else {
            repo.resetPending()
            pending.removeAll()
            return 0
        }
        var builder: OpaquePointer?
        try check(git_packbuilder_new(&builder, repo.pointer), "pack builder")
        defer { git_packbuilder_free(builder) }
        git_packbuilder_set_threads(builder, 0)
        for id in ids {
            var oid = id.oid
            try check(git_packbuilder_insert(builder, &oid, nil), "pack \(id)")
        }
        try check(git_packbuilder_write(builder, directory + "/objects/pack", 0, nil, nil), "write pack")
        try check(git_odb_refresh(repo.odb), "refresh object database")
        repo.resetPending()
        pending.removeAll()
        try consolidatePacksIfNeeded()
        return ids.count
    }

    private struct PackFile {
        var name: String
        var size: Int
        var kept: Bool
    }

    private func packFiles() throws(GitError) -> [PackFile] {
        let packDirectory = directory + "/objects/pack"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: packDirectory) else { return [] }
        let nameSet = Set(names)
        return names.filter { $0.hasSuffix(".pack") }.sorted().map { name in
            var info = stat()
            let size = stat(packDirectory + "/" + name, &info) == 0 ? Int(info.st_size) : 0
            let base = String(name.dropLast(".pack".count))
            return PackFile(name: base, size: size, kept: nameSet.contains(base + ".keep"))
        }
    }

    /// Merges small packs into one when there are too many. Cost follows the size of the
    /// small packs (recent jobs), never the whole repository.
    private func consolidatePacksIfNeeded() throws(GitError) {
        let small = try packFiles().filter { !$0.kept && $0.size < configuration.smallPackBytes }
        guard small.count >= max(2, configuration.maxSmallPacks), let repo = repository else { return }
        let packDirectory = directory + "/objects/pack"
        var odb: OpaquePointer?
        try check(git_odb_new(&odb), "object database")
        defer { git_odb_free(odb) }
        for pack in small {
            var backend: UnsafeMutablePointer<git_odb_backend>?
            try check(git_odb_backend_one_pack(&backend, "\(packDirectory)/\(pack.name).idx"), "open \(pack.name)")
            try check(git_odb_add_backend(odb, backend, 1), "open \(pack.name)")
        }
        var ids: [git_oid] = []
        let listed = withUnsafeMutablePointer(to: &ids) { pointer in
            git_odb_foreach(
                odb, { oid, payload in
                    guard let oid, let payload else { return -1 }
                    payload.assumingMemoryBound(to: [git_oid].self).pointee.append(oid.pointee)
                    return 0
                }, pointer)
        }
        try check(listed, "list small packs")
        var builder: OpaquePointer?
        try check(git_packbuilder_new(&builder, repo.pointer), "pack builder")
        defer { git_packbuilder_free(builder) }
        git_packbuilder_set_threads(builder, 0)
        for var oid in ids {
            try check(git_packbuilder_insert(builder, &oid, nil), "repack")
        }
        try check(git_packbuilder_write(builder, packDirectory, 0, nil, nil), "write merged pack")
        let merged = git_packbuilder_name(builder).map { "pack-" + String(cString: $0) }
        for pack in small where pack.name != merged {
            for suffix in [".pack", ".idx", ".rev"] { unlink("\(packDirectory)/\(pack.name)\(suffix)") }
        }
        // The open handle may hold descriptors of deleted packs; reopen so lookups see one pack.
        repository = nil
        _ = try openRepository()
        logger.debug("merged small packs", metadata: ["remote": "\(displayURL)", "packs": "\(small.count)", "objects": "\(ids.count)"])
    }

    // MARK: - Helpers

    private func openRepository() throws(GitError) -> Repository {
        if let repository { return repository }
        let repo = try Repository.openOrCreate(at: directory)
        try removeOutgoingReferences(repo)
        let description = directory + "/description"
        try? Data("pushbridge object cache for \(displayURL)\n".utf8).write(to: URL(fileURLWithPath: description))
        repository = repo
        return repo
    }

    /// Push references left behind by a process that died mid-push may name objects that only
    /// existed in its memory; drop them so nothing walks into missing objects.
    private func removeOutgoingReferences(_ repo: Repository) throws(GitError) {
        final class Names { var values: [String] = [] }
        let names = Names()
        let rc = git_reference_foreach_glob(
            repo.pointer, Self.outgoingPrefix + "*", { name, payload in
                guard let name, let payload else { return 0 }
                Unmanaged<Names>.fromOpaque(payload).takeUnretainedValue().values.append(String(cString: name))
                return 0
            }, Unmanaged.passUnretained(names).toOpaque())
        try check(rc, "list push references")
        for name in names.values { try repo.deleteReference(name) }
    }

    private func checkCancellation() throws(GitError) {
        if Task.isCancelled { throw GitError(code: .cancelled, message: "operation cancelled") }
    }

    static func validateBranch(_ branch: String) throws(GitError) {
        LibGit2.initialize()
        var valid: Int32 = 0
        let rc = git_reference_name_is_valid(&valid, "refs/heads/" + branch)
        guard rc == 0, valid == 1, !branch.isEmpty, !branch.hasPrefix("-") else {
            git_error_clear()
            throw GitError(code: .invalidArgument, message: "invalid branch name: \(branch)")
        }
    }
}

/// An owned `git_signature`.
final class GitSignature {
    let pointer: UnsafeMutablePointer<git_signature>

    init(_ signature: Signature) throws(GitError) {
        var created: UnsafeMutablePointer<git_signature>?
        let seconds = git_time_t(signature.date.timeIntervalSince1970.rounded(.down))
        let rc = git_signature_new(
            &created, signature.name, signature.email, seconds, Int32(signature.timeZoneOffsetMinutes))
        if rc < 0 {
            let failure = LibGit2Failure.current(rc)
            throw GitError(code: .invalidArgument, message: "invalid signature: \(failure.message)", libgit2: failure)
        }
        pointer = created!
    }

    deinit { git_signature_free(pointer) }
}

/// A connection opened for pushing, with the references the remote advertised on it.
final class PushConnection {
    let session: TransportSession
    let remote: Remote
    let advertisement: Remote.Advertisement

    init(session: TransportSession, remote: Remote, advertisement: Remote.Advertisement) {
        self.session = session
        self.remote = remote
        self.advertisement = advertisement
    }

    deinit {
        // Close the transport while the session (the callbacks' payload) is certainly alive.
        git_remote_disconnect(remote.pointer)
    }
}
