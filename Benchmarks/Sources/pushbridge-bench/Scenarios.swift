import Foundation

/// Everything a scenario needs: where things live, the two ways, the server.
struct BenchContext: Sendable {
    let work: URL
    let serverRoot: URL
    let scratch: URL
    let gitCLI: GitCLIWay
    let gitKit: GitKitWay
    let server: GitServerProcess
    let seed: UInt64
    /// Machine and tool versions, appended to every result line.
    let environment: [(String, JSON)]
    /// `sync(1)`.
    let sync: Command

    /// `git` for server-side bookkeeping (repo creation, verification); not measured.
    var git: Command { gitCLI.git }

    func remoteURL(_ relativePath: String) -> String {
        baseURL.appendingPathComponent(relativePath).absoluteString
    }

    private var baseURL: URL { server.baseURL }

    func log(_ message: String) {
        FileHandle.standardError.write(Data("[bench] \(message)\n".utf8))
    }

    /// Flushes dirty pages to disk before a measured run, so no side pays for writing
    /// back what an earlier run (or the setup) left in the page cache: a 20,000-file clone
    /// leaves ~100 MB dirty, and the run after it would otherwise compete with that
    /// writeback for the disk and the journal.
    func settle() async throws {
        try await sync.run([])
    }

    /// Tree id of `refs/heads/<branch>` in a server repository.
    func serverTree(_ repo: String, branch: String) async throws -> String {
        try await git.text(["rev-parse", "refs/heads/\(branch)^{tree}"], in: serverRoot.appendingPathComponent(repo))
    }

    func serverTip(_ repo: String, branch: String) async throws -> String {
        try await git.text(["rev-parse", "refs/heads/\(branch)"], in: serverRoot.appendingPathComponent(repo))
    }
}

// Client work trees (thousands of files each) are kept until the whole run ends, on
// purpose: on ext4, creating files soon after deleting many others is slow — the inode
// allocator skips inodes deleted within the last 60–360 s (`recently_deleted`), and a
// clone right after removing the previous clone spent up to 15 s of system time in it.
// Deleting between runs would make every later git CLI run slower than the one before.

/// Per-run measurements of one side.
struct SideRun: Sendable {
    var seconds: Double
    var phases: [(String, Double)]
    /// Request-body bytes of the push as counted by the server.
    var serverReceiveBytes: Int
    var serverRequests: Int
}

/// Cold scenario: a 2,000-file generated app into an empty repository.
///
/// Each run, each side gets a fresh empty bare repository (created outside the measured
/// time) and pushes the same files; GitKit starts from an empty cache directory every
/// run. After each run both server repositories must hold the same tree id, which proves
/// both sides pushed exactly the same content.
struct ColdScenario {
    let context: BenchContext
    let runs: Int
    let fileCount = 2_000

    func run() async throws -> JSON {
        let c = context
        let app = SyntheticApp(seed: c.seed, fileCount: fileCount)
        let source = c.work.appendingPathComponent("src/cold")
        try app.write(to: source)
        c.log("cold: \(fileCount) files, \(app.totalBytes) bytes, \(runs) runs")

        var cli: [SideRun] = []
        var kit: [SideRun] = []
        var kitRuns: [GitKitWay.Result] = []
        var peakRSS: [Int] = []
        for r in 0..<runs {
            let cliRepo = "cold/gitcli-\(r).git"
            let kitRepo = "cold/gitkit-\(r).git"
            try await ServerRepos.createBare(c.serverRoot.appendingPathComponent(cliRepo), git: c.git)
            try await ServerRepos.createBare(c.serverRoot.appendingPathComponent(kitRepo), git: c.git)
            // Alternate which side goes first so drift (page cache, CPU frequency, other
            // tenants of the machine) does not systematically favour one side.
            for side in (r % 2 == 0 ? [0, 1] : [1, 0]) {
                try await c.settle()
                if side == 0 {
                    let workTree = c.work.appendingPathComponent("clients/cold-\(r)")
                    let before = try await c.server.counters()
                    let t = try await c.gitCLI.push(
                        source: source, remote: c.remoteURL(cliRepo), branch: "main",
                        workTree: workTree, message: "Generated app (cold \(r))")
                    let delta = try await c.server.counters() - before
                    cli.append(SideRun(seconds: t.total, phases: t.phases, serverReceiveBytes: delta.receivePackBytes, serverRequests: delta.requests))
                } else {
                    let before = try await c.server.counters()
                    Memory.resetHighWaterMark()
                    let result = try await c.gitKit.coldPush(
                        source: source, remote: c.remoteURL(kitRepo), branch: "main",
                        cacheDirectory: c.work.appendingPathComponent("gitkit/cold-\(r)"),
                        message: "Generated app (cold \(r))")
                    peakRSS.append(Memory.highWaterMark() ?? 0)
                    let delta = try await c.server.counters() - before
                    kit.append(SideRun(seconds: result.seconds, phases: result.phases, serverReceiveBytes: delta.receivePackBytes, serverRequests: delta.requests))
                    kitRuns.append(result)
                }
            }
            let cliTree = try await c.serverTree(cliRepo, branch: "main")
            let kitTree = try await c.serverTree(kitRepo, branch: "main")
            guard cliTree == kitTree else {
                throw BenchError(code: "invalid_state", message: "cold run \(r): git CLI pushed tree \(cliTree), GitKit \(kitTree)")
            }
            c.log(String(format: "cold run %d: gitcli %.3fs gitkit %.3fs (tree %@)", r, cli.last!.seconds, kit.last!.seconds, String(kitTree.prefix(12))))
        }
        return report(scenario: "cold", cli: cli, kit: kit, kitRuns: kitRuns, peakRSS: peakRSS, target: 1.5, extra: [
            ("files", .int(fileCount)),
            ("source_bytes", .int(app.totalBytes)),
        ], environment: c.environment)
    }
}

/// Incremental scenario: a 20,000-file repository with 300 commits; each run changes 10
/// files.
///
/// The repository is generated once (`git fast-import`, then repacked with a bitmap like a
/// hosting service keeps it) and copied byte-for-byte into one repository per side, so
/// both start from identical commit ids and packs and each pushes to its own `main`. Run
/// r changes the same 10 files to the same new bytes on both sides (files of different
/// runs are disjoint, so every run is a real change), and the server trees must match
/// after every run.
struct IncrementalScenario {
    let context: BenchContext
    let runs: Int
    let fileCount = 20_000
    let historyCommits = 300
    let changedPerRun = 10

    func run() async throws -> JSON {
        let c = context
        let clock = ContinuousClock()
        let setupStart = clock.now
        let app = SyntheticApp(seed: c.seed ^ 0x1_0000, fileCount: fileCount)
        let history = History(app: app, commitCount: historyCommits)
        let template = c.serverRoot.appendingPathComponent("incremental/template.git")
        try await ServerRepos.createFromHistory(template, history: history, git: c.git, scratch: c.scratch)
        let cp = c.gitCLI.cp
        for side in ["gitcli", "gitkit"] {
            try await cp.run(["-a", template.path, c.serverRoot.appendingPathComponent("incremental/\(side).git").path])
        }
        // Run r changes files order[r*10 ..< r*10+10], each to its next version.
        var order = Array(app.files.indices)
        var shuffle = SplitMix64(seed: c.seed, 5)
        order.shuffle(using: &shuffle)
        var changes: [URL] = []
        for r in 0..<runs {
            let dir = c.work.appendingPathComponent("src/incremental-\(r)")
            let files = order[(r * changedPerRun)..<((r + 1) * changedPerRun)]
            try app.write(files.map { ($0, history.tipVersions[$0] + 1) }, to: dir)
            changes.append(dir)
        }
        let packSize = try FileManager.default.contentsOfDirectory(
            at: template.appendingPathComponent("objects/pack"), includingPropertiesForKeys: [.fileSizeKey]
        ).filter { $0.pathExtension == "pack" }.reduce(0) { $0 + ((try? $1.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0) }
        let setupSeconds = (clock.now - setupStart).seconds
        c.log(String(format: "incremental: repo of %d files, %d commits, pack %d bytes, set up in %.1fs", fileCount, historyCommits, packSize, setupSeconds))

        // The daemon's steady state: the cache already holds the repository.
        let kitRepo = "incremental/gitkit.git"
        let cliRepo = "incremental/gitcli.git"
        let kitCache = c.work.appendingPathComponent("gitkit/incremental")
        let primeSeconds = try await c.gitKit.prime(remote: c.remoteURL(kitRepo), branch: "main", cacheDirectory: kitCache)
        c.log(String(format: "incremental: GitKit cache primed in %.2fs", primeSeconds))

        var cli: [SideRun] = []
        var kit: [SideRun] = []
        var kitRuns: [GitKitWay.Result] = []
        var peakRSS: [Int] = []
        var packed: [Int] = []
        for r in 0..<runs {
            let message = "Regenerate \(changedPerRun) files (run \(r))"
            for side in (r % 2 == 0 ? [0, 1] : [1, 0]) {
                try await c.settle()
                if side == 0 {
                    let workTree = c.work.appendingPathComponent("clients/incremental-\(r)")
                    let before = try await c.server.counters()
                    let t = try await c.gitCLI.push(
                        source: changes[r], remote: c.remoteURL(cliRepo), branch: "main",
                        workTree: workTree, message: message)
                    let delta = try await c.server.counters() - before
                    cli.append(SideRun(seconds: t.total, phases: t.phases, serverReceiveBytes: delta.receivePackBytes, serverRequests: delta.requests))
                } else {
                    let oldTip = try await c.serverTip(kitRepo, branch: "main")
                    let before = try await c.server.counters()
                    Memory.resetHighWaterMark()
                    let result = try await c.gitKit.incrementalPush(
                        overlay: changes[r], remote: c.remoteURL(kitRepo), branch: "main",
                        cacheDirectory: kitCache, message: message)
                    peakRSS.append(Memory.highWaterMark() ?? 0)
                    let delta = try await c.server.counters() - before
                    kit.append(SideRun(seconds: result.seconds, phases: result.phases, serverReceiveBytes: delta.receivePackBytes, serverRequests: delta.requests))
                    kitRuns.append(result)
                    let newTip = try await c.serverTip(kitRepo, branch: "main")
                    guard newTip != oldTip else {
                        throw BenchError(code: "invalid_state", message: "incremental run \(r): GitKit push did not move main")
                    }
                    packed.append(try await ServerRepos.packedSize(of: c.serverRoot.appendingPathComponent(kitRepo), old: oldTip, new: newTip, git: c.git, scratch: c.scratch))
                }
            }
            let cliTree = try await c.serverTree(cliRepo, branch: "main")
            let kitTree = try await c.serverTree(kitRepo, branch: "main")
            guard cliTree == kitTree else {
                throw BenchError(code: "invalid_state", message: "incremental run \(r): git CLI pushed tree \(cliTree), GitKit \(kitTree)")
            }
            c.log(String(format: "incremental run %d: gitcli %.3fs gitkit %.4fs, GitKit sent %d bytes, new objects pack %d bytes", r, cli.last!.seconds, kit.last!.seconds, kitRuns.last!.bytesSent, packed.last!))
        }
        let byteRatios = zip(kitRuns, packed).map { Double($0.bytesSent) / Double(max(1, $1)) }
        return report(scenario: "incremental", cli: cli, kit: kit, kitRuns: kitRuns, peakRSS: peakRSS, target: 20, extra: [
            ("new_objects_packed_bytes", .double(Stats.median(packed), digits: 0)),
            ("bytes_ratio", .ratio(Stats.median(byteRatios))),
            ("bytes_ratio_max", .ratio(byteRatios.max() ?? 0)),
            ("bytes_target", .ratio(1.2)),
            ("meets_bytes_target", .bool((byteRatios.max() ?? .infinity) <= 1.2)),
            ("files", .int(fileCount)),
            ("history_commits", .int(historyCommits)),
            ("changed_files", .int(changedPerRun)),
            ("repo_pack_bytes", .int(packSize)),
            ("setup_s", .seconds(setupSeconds)),
            ("gitkit_prime_s", .seconds(primeSeconds)),
        ], environment: c.environment)
    }
}

/// One JSON line for a scenario: medians first, then per-run values and phase medians.
func report(scenario: String, cli: [SideRun], kit: [SideRun], kitRuns: [GitKitWay.Result], peakRSS: [Int], target: Double, extra: [(String, JSON)], environment: [(String, JSON)]) -> JSON {
    let kitSeconds = Stats.median(kit.map(\.seconds))
    let cliSeconds = Stats.median(cli.map(\.seconds))
    let ratio = cliSeconds / kitSeconds
    func phases(_ runs: [SideRun]) -> JSON {
        guard let names = runs.first?.phases.map(\.0) else { return .object([]) }
        return .object(names.enumerated().map { i, name in (name, .seconds(Stats.median(runs.map { $0.phases[i].1 }))) })
    }
    var fields: [(String, JSON)] = [
        ("scenario", .string(scenario)),
        ("gitkit_s", .seconds(kitSeconds)),
        ("gitcli_s", .seconds(cliSeconds)),
        ("ratio", .ratio(ratio)),
        ("bytes_sent", .double(Stats.median(kitRuns.map(\.bytesSent)), digits: 0)),
        ("runs", .int(kit.count)),
        ("target_ratio", .ratio(target)),
        ("meets_target", .bool(ratio >= target)),
        ("gitcli_bytes_sent", .double(Stats.median(cli.map(\.serverReceiveBytes)), digits: 0)),
        ("gitkit_server_bytes", .double(Stats.median(kit.map(\.serverReceiveBytes)), digits: 0)),
        ("gitkit_objects_sent", .double(Stats.median(kitRuns.map(\.objectsSent)), digits: 0)),
    ]
    fields += extra
    fields += [
        ("gitkit_peak_rss_mb", .double(Double(peakRSS.max() ?? 0) / 1_048_576, digits: 1)),
        ("process_peak_rss_mb", .double(Double(Memory.lifetimePeakRSS()) / 1_048_576, digits: 1)),
        ("gitkit_runs_s", .array(kit.map { .seconds($0.seconds) })),
        ("gitcli_runs_s", .array(cli.map { .seconds($0.seconds) })),
        ("gitkit_phases_s", phases(kit)),
        ("gitcli_phases_s", phases(cli)),
        ("gitcli_requests", .double(Stats.median(cli.map(\.serverRequests)), digits: 0)),
        ("gitkit_requests", .double(Stats.median(kit.map(\.serverRequests)), digits: 0)),
        ("load_avg_end", .double(loadAverage(), digits: 2)),
    ]
    fields += environment
    return .object(fields)
}

/// The 1-minute load average: other work on the machine shows up as noise in the runs.
func loadAverage() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return 0 }
    return text.split(separator: " ").first.flatMap { Double($0) } ?? 0
}
