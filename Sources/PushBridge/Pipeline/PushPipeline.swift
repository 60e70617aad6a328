import BitbucketKit
import Foundation
import GitKit
import Logging

/// Runs one push job: credentials → repository → fetch → tree + commit → push → pull request.
///
/// **Crash safety.** After every step the pipeline hands an updated ``JobCheckpoint`` to the
/// caller's `save` closure (the worker persists it with ``Store/saveCheckpoint(jobID:workerID:_:)``)
/// before going on. A resumed attempt re-checks the world at every step instead of trusting the
/// checkpoint blindly:
/// - the repository is looked up again (``BitbucketClient/ensureRepository(_:create:)`` adopts
///   what an earlier attempt created);
/// - the commit time is chosen once and checkpointed *before* pushing, so rebuilding on the same
///   parent yields the very same commit id (no twin commit);
/// - when the branch tip already is the checkpointed commit, or the job's files already match the
///   branch tip after an earlier push, nothing is pushed again;
/// - the pull request is looked up by source and destination before one is created.
///
/// So a job re-run after a crash at any point yields one commit, one push and one pull request.
///
/// **No change.** When the built tree equals the parent's tree there is no commit and no push
/// (`changed: false`). The pull request is still ensured when the branch exists, differs from
/// the base and is ahead of it — an earlier generation (or a crashed attempt) may have pushed the
/// commit without opening the pull request; a branch equal to its base gets none.
///
/// **Empty repository.** The base branch first receives an initial commit holding a `README.md`
/// (its timestamp is also checkpointed so a rerun pushes the same commit); the generated files then
/// go to the job branch and arrive through a pull request as usual.
public struct PushPipeline: Sendable {
    /// Called after each step's checkpoint was saved. Production passes none; tests throw from it
    /// to simulate a crash right after a step.
    public typealias StepObserver = @Sendable (PipelineStep, JobCheckpoint) async throws -> Void
    /// Persists a checkpoint; throwing aborts the job (e.g. `lease_lost`).
    public typealias CheckpointSink = @Sendable (JobCheckpoint) async throws -> Void

    public let configuration: PipelineConfiguration
    private let tokens: TokenManager
    private let caches: GitCacheStore
    private let clients: BitbucketClientFactory
    private let logger: Logger

    /// - Parameters:
    ///   - tokens: hands out credentials per connection.
    ///   - caches: the per-remote git object caches (`<data dir>/git-cache`).
    ///   - transport: shared BitbucketKit connection pool for the REST clients.
    public init(
        tokens: TokenManager, caches: GitCacheStore, transport: BitbucketHTTPTransport,
        configuration: PipelineConfiguration, logger: Logger = Logger(label: "pushbridge.pipeline")
    ) {
        self.tokens = tokens
        self.caches = caches
        self.clients = BitbucketClientFactory(
            transport: transport, cloudEndpoints: configuration.cloudEndpoints,
            dataCenterBaseURL: configuration.dataCenterBaseURL, options: configuration.clientOptions)
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs `spec`, resuming from `checkpoint`.
    ///
    /// - Parameters:
    ///   - jobID: used for logs only.
    ///   - checkpoint: progress of earlier attempts (empty for a fresh job).
    ///   - save: persists the checkpoint after each step.
    ///   - stepObserver: test hook, called after each step once its checkpoint is saved.
    /// - Returns: the job result; ``JobResult/stats`` counts this attempt's work.
    /// - Throws: ``PipelineError``, ``TokenError``, `BitbucketError`, `GitError`, or whatever
    ///   `save`/`stepObserver` throw. ``PipelineError/classify(_:)`` maps any of them.
    public func run(
        jobID: String, spec: JobSpec, checkpoint initial: JobCheckpoint = JobCheckpoint(),
        save: @escaping CheckpointSink, stepObserver: StepObserver? = nil
    ) async throws -> JobResult {
        let started = ContinuousClock.now
        var log = logger
        log[metadataKey: "job"] = "\(jobID)"
        log[metadataKey: "connection"] = "\(spec.connection)"
        var checkpoint = initial
        var stats = JobStats()
        let progress = Progress(save: save, observer: stepObserver, logger: log)

        // Validate the local input before touching the network: a bad job must not create a repository.
        let sourceDirectory = try resolveSource(spec.source)
        try Self.validateBranch(spec.branch)
        if let base = spec.baseBranch { try Self.validateBranch(base) }
        let author = spec.commit.author.map { Signature(name: $0.name, email: $0.email) }
        let treeOptions = TreeBuildOptions(
            root: spec.root,
            mode: spec.mode == .sync ? .sync(preserve: spec.preserve) : .overlay,
            maxFileSize: configuration.maxFileSize)

        // 1. Credentials.
        let credentials = try await tokens.credentials(connectionID: spec.connection)
        let connection = credentials.connection
        let client = try makeClient(connection, credentials: credentials.rest)
        try await progress.done(checkpoint, .credentials)

        // 2. Repository.
        let slug = connection.provider == .bitbucketCloud ? spec.repository.slug.lowercased() : spec.repository.slug
        let requestedRef = RepositoryRef(namespace: connection.workspace, slug: slug)
        let createOptions =
            spec.repository.create
            ? RepositoryCreateOptions(
                isPrivate: spec.repository.private, projectKey: spec.repository.project, name: spec.repository.slug)
            : nil
        let outcome: RepositoryOutcome
        do {
            outcome = try await client.ensureRepository(requestedRef, create: createOptions)
        } catch let error as BitbucketError where error.code == .notFound {
            throw PipelineError(
                code: "not_found",
                message: "repository \(requestedRef) does not exist and the job does not ask to create it (repository.create)",
                retryable: false)
        }
        let repository = outcome.repository
        // Bitbucket may normalise the slug (Data Center derives it from the name): use what it answered.
        let ref = repository.ref
        let remoteURL = try client.gitRemoteURL(for: ref).absoluteString
        let repositoryURL = repository.webURL?.absoluteString ?? remoteURL
        checkpoint.repositoryUrl = repositoryURL
        checkpoint.repositoryCreated = (checkpoint.repositoryCreated ?? false) || outcome.created
        try await progress.done(checkpoint, .repository)

        // 3. Fetch (+ seed an empty repository).
        let cache = try caches.cache(for: remoteURL)
        let git = TransportOptions(credentials: credentials.git, proxy: configuration.gitProxy)
        let requestedBase = spec.baseBranch ?? checkpoint.extra?["baseBranch"] ?? repository.defaultBranch
        var fetched = try await cache.fetch(branches: [spec.branch] + (requestedBase.map { [$0] } ?? []), transport: git)
        stats.bytesFetched += fetched.bytesReceived
        let base = requestedBase ?? fetched.defaultBranch ?? "main"
        if requestedBase == nil {
            fetched = try await cache.fetch(branches: [spec.branch, base], transport: git)
            stats.bytesFetched += fetched.bytesReceived
        }
        checkpoint.extra = (checkpoint.extra ?? [:]).merging(["baseBranch": base]) { _, new in new }
        if fetched.remoteIsEmpty {
            try await seedEmptyRepository(
                cache: cache, base: base, slug: slug, transport: git, checkpoint: &checkpoint, save: save, stats: &stats)
            fetched = try await cache.fetch(branches: [spec.branch, base], transport: git)
        } else if fetched.tip(spec.branch) == nil && fetched.tip(base) == nil {
            throw PipelineError(
                code: "base_branch_not_found",
                message: "neither branch \(spec.branch) nor base branch \(base) exists in \(ref)", retryable: false)
        }
        try await progress.done(checkpoint, .fetch)

        // 4 + 5. Build, commit, push — repeated on the new tip when the remote moved.
        var attempt = 0
        var landed: ObjectID? = nil
        var changed = false
        while landed == nil {
            attempt += 1
            let branchTip = fetched.tip(spec.branch)
            guard let parent = branchTip ?? fetched.tip(base) else {
                throw PipelineError(code: "base_branch_not_found", message: "base branch \(base) vanished", retryable: true)
            }
            // Resumed after a push that landed: the tip is our commit.
            if let built = checkpoint.builtCommit.flatMap(ObjectID.init(hex:)), built == branchTip {
                landed = built
                changed = true
                continue
            }
            let source: FileSource = .directory(sourceDirectory)
            let tree: TreeBuildResult
            do {
                tree = try await cache.buildTree(parent: parent, files: source, options: treeOptions)
            } catch {
                switch error.code {
                case .invalidPath, .fileTooLarge, .unsupportedFileType, .invalidArgument:
                    throw PipelineError(code: error.code.rawValue, message: error.message, retryable: false)
                default:
                    throw error
                }
            }
            stats.filesWritten = tree.statistics.blobsWritten
            stats.filesDeleted = tree.statistics.entriesRemoved
            stats.filesUnchanged = tree.statistics.blobsUnchanged + tree.statistics.blobsExisting
            stats.objectsWritten = tree.statistics.blobsWritten + tree.statistics.treesWritten
            if !tree.changed {
                // An earlier attempt of this job already pushed (someone may have stacked on it since):
                // the files are there, report that commit as the job's, do not push a twin.
                if let pushed = checkpoint.pushedCommit ?? checkpoint.builtCommit, checkpoint.changed == true,
                    let id = ObjectID(hex: pushed), checkpoint.parentCommit != parent.hex
                {
                    landed = id
                    changed = true
                } else {
                    landed = parent
                    changed = false
                    checkpoint.parentCommit = parent.hex
                    checkpoint.builtTree = tree.tree.hex
                    checkpoint.changed = false
                }
                try await progress.done(checkpoint, .commit)
                continue
            }
            // Fix the commit time once per parent so a rerun on the same parent rebuilds the same id.
            let time: Date
            if checkpoint.parentCommit == parent.hex, let stored = checkpoint.extra?["commitTime"].flatMap(Double.init) {
                time = Date(timeIntervalSince1970: stored)
            } else {
                time = Date(timeIntervalSince1970: configuration.now().timeIntervalSince1970.rounded(.down))
            }
            let committer = Signature(name: configuration.botName, email: configuration.botEmail, date: time)
            var signature = author ?? committer
            signature.date = time
            let commit = try await cache.commit(
                tree: tree.tree, parents: [parent], message: spec.commit.message, author: signature, committer: committer)
            stats.objectsWritten += 1
            checkpoint.parentCommit = parent.hex
            checkpoint.builtCommit = commit.hex
            checkpoint.builtTree = tree.tree.hex
            checkpoint.changed = true
            checkpoint.extra?["commitTime"] = String(Int64(time.timeIntervalSince1970))
            try await progress.done(checkpoint, .commit)
            let pushed: PushResult
            do {
                pushed = try await cache.push(commit: commit, to: spec.branch, expecting: branchTip, transport: git)
            } catch {
                guard error.code == .nonFastForward else { throw error }
                let bound = max(1, configuration.maxPushAttempts)
                guard attempt < bound else { throw PipelineError.branchMoved(spec.branch, attempts: bound) }
                log.info("branch moved during the job; rebuilding on the new tip", metadata: ["branch": "\(spec.branch)"])
                fetched = try await cache.fetch(branches: [spec.branch, base], transport: git)
                stats.bytesFetched += fetched.bytesReceived
                continue
            }
            stats.objectsSent += pushed.objectsSent
            stats.bytesSent += pushed.bytesSent
            landed = commit
            changed = true
        }
        let landedCommit = landed!
        if changed {
            checkpoint.pushedCommit = landedCommit.hex
            try await progress.done(checkpoint, .push)
        }

        // 6. Pull request.
        var pullRequest: JobResult.PullRequestRef?
        if let pr = spec.pullRequest, spec.branch != base {
            let branchExists = changed || fetched.tip(spec.branch) != nil
            let ahead = changed || (fetched.tip(spec.branch) != fetched.tip(base))
            if branchExists && ahead {
                let request = NewPullRequest(
                    title: pr.title, description: pr.description ?? "", sourceBranch: spec.branch,
                    destinationBranch: base, reviewers: pr.reviewers ?? [], draft: pr.draft,
                    closeSourceBranch: pr.closeSourceBranch ?? false)
                let result = try await client.findOrCreatePullRequest(request, in: ref)
                let created =
                    result.created || (checkpoint.pullRequestId == result.pullRequest.id && checkpoint.pullRequestCreated == true)
                pullRequest = JobResult.PullRequestRef(
                    id: result.pullRequest.id, url: result.pullRequest.webURL?.absoluteString ?? "", created: created)
                checkpoint.pullRequestId = result.pullRequest.id
                checkpoint.pullRequestUrl = pullRequest?.url
                checkpoint.pullRequestCreated = created
                try await progress.done(checkpoint, .pullRequest)
            }
        }

        let elapsed = (ContinuousClock.now - started).components
        stats.durationMs = Int(elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000)
        log.info(
            "job pipeline finished",
            metadata: ["changed": "\(changed)", "commit": "\(landedCommit.hex)", "branch": "\(spec.branch)"])
        return JobResult(
            repositoryUrl: repositoryURL, branch: spec.branch, commit: landedCommit.hex, changed: changed,
            pullRequest: pullRequest, stats: stats)
    }

    /// Saves the checkpoint, then tells the observer (a separate value so `run` captures nothing mutable).
    private struct Progress: Sendable {
        let save: CheckpointSink
        let observer: StepObserver?
        let logger: Logger

        /// Also the pipeline's cancellation point. Task cancellation (``Job/cancelRequested`` seen by
        /// the worker's heartbeat, or the end of the shutdown grace) is checked here, after the
        /// finished step's checkpoint is durable and before the next step starts: a cancel seen
        /// before the push (or pull request) step begins means that step never runs. A cancel that
        /// lands during a step may also end it early where the lower layer honours task
        /// cancellation; a request already sent may still take effect on Bitbucket, which the next
        /// attempt's lookups (branch tip, open pull request) absorb.
        func done(_ checkpoint: JobCheckpoint, _ step: PipelineStep) async throws {
            try await save(checkpoint)
            logger.debug("step done", metadata: ["step": "\(step.rawValue)"])
            try await observer?(step, checkpoint)
            try Task.checkCancellation()
        }
    }

    // MARK: - Steps

    private func seedEmptyRepository(
        cache: RemoteCache, base: String, slug: String, transport: TransportOptions, checkpoint: inout JobCheckpoint,
        save: @escaping CheckpointSink, stats: inout JobStats
    ) async throws {
        let time: Date
        if let stored = checkpoint.extra?["initialCommitTime"].flatMap(Double.init) {
            time = Date(timeIntervalSince1970: stored)
        } else {
            time = Date(timeIntervalSince1970: configuration.now().timeIntervalSince1970.rounded(.down))
            checkpoint.extra?["initialCommitTime"] = String(Int64(time.timeIntervalSince1970))
            try await save(checkpoint)
        }
        let bot = Signature(name: configuration.botName, email: configuration.botEmail, date: time)
        let readme = FileEntry(path: "README.md", text: "# \(slug)\n")
        let tree = try await cache.buildTree(parent: nil, files: .entries([readme]))
        let commit = try await cache.commit(tree: tree.tree, parents: [], message: "Initial commit", author: bot)
        do {
            let pushed = try await cache.push(commit: commit, to: base, expecting: nil, transport: transport)
            stats.objectsSent += pushed.objectsSent
            stats.bytesSent += pushed.bytesSent
        } catch {
            // Someone (a human, or our own earlier attempt) initialised the base meanwhile: use theirs.
            guard error.code == .nonFastForward else { throw error }
            logger.info("base branch appeared while seeding the empty repository", metadata: ["branch": "\(base)"])
        }
        checkpoint.extra?["initialCommit"] = commit.hex
        try await save(checkpoint)
    }

    /// The directory of the job's files, checked to lie under a source root once symlinks are resolved.
    func resolveSource(_ source: JobSpec.Source) throws(PipelineError) -> String {
        switch source {
        case .directory(let path):
            guard path.hasPrefix("/") else { throw .validation("source.directory must be an absolute path") }
            let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path
            let allowed = configuration.sourceRoots.contains { root in
                let r = URL(fileURLWithPath: root).resolvingSymlinksInPath().standardizedFileURL.path
                return resolved == r || resolved.hasPrefix(r.hasSuffix("/") ? r : r + "/")
            }
            guard allowed else { throw .sourceOutsideRoots(path) }
            try Self.requireDirectory(resolved, name: path)
            return resolved
        case .archive(let id):
            guard let archives = configuration.archiveDirectory else {
                throw .validation("archive sources are not configured")
            }
            let safe = !id.isEmpty && id.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F
            }
            guard safe else { throw .validation("archive id \(id) is malformed") }
            let path = (archives as NSString).appendingPathComponent(id)
            guard FileManager.default.fileExists(atPath: path) else {
                throw PipelineError(code: "archive_not_found", message: "archive \(id) does not exist", retryable: false)
            }
            try Self.requireDirectory(path, name: "archive \(id)")
            return path
        }
    }

    private static func requireDirectory(_ path: String, name: String) throws(PipelineError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw PipelineError(code: "source_not_found", message: "\(name) is not a directory", retryable: false)
        }
    }

    static func validateBranch(_ name: String) throws(PipelineError) {
        let bad =
            name.isEmpty || name.hasPrefix("/") || name.hasSuffix("/") || name.hasSuffix(".lock") || name.contains("..")
            || name.hasPrefix("-") || name.contains("//") || name.contains("@{")
            || name.unicodeScalars.contains { $0.value < 0x21 || $0 == "~" || $0 == "^" || $0 == ":" || $0 == "?" || $0 == "*" || $0 == "[" || $0 == "\\" || $0.value == 0x7F }
        if bad { throw .validation("invalid branch name '\(name)'") }
    }

    /// The REST client for a connection, with the connection's URLs or the configured defaults.
    func makeClient(_ connection: Connection, credentials: any CredentialProvider) throws -> any BitbucketClient {
        try clients.client(for: connection, credentials: credentials)
    }
}
