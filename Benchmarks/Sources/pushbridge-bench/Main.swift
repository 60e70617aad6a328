import ArgumentParser
import Foundation
import GitKit

/// `pushbridge-bench`: GitKit against the plain git CLI, side by side, in one run.
@main
struct PushbridgeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pushbridge-bench",
        abstract: "Side-by-side benchmark: GitKit vs the plain git CLI, against one local smart-HTTP server.",
        subcommands: [Run.self, ServeGit.self],
        defaultSubcommand: Run.self
    )
}

enum Scenario: String, ExpressibleByArgument, CaseIterable {
    case cold, incremental, all
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the benchmark (default).")

    @Option(help: "Measured runs per scenario and side (at least 3).")
    var runs: Int = 5

    @Option(help: "Measured runs of the cold scenario (overrides --runs).")
    var coldRuns: Int?

    @Option(help: "Measured runs of the incremental scenario (overrides --runs).")
    var incrementalRuns: Int?

    @Option(help: "Which scenarios to run: cold, incremental, all.")
    var scenario: Scenario = .all

    @Option(help: "Where to write the result lines as a JSON array.")
    var out: String = "Benchmarks/results/latest.json"

    @Option(help: "Working directory (default: a fresh .build/pushbridge-bench/run-<id>, removed at the end).")
    var workDir: String?

    @Flag(help: "Keep the working directory.")
    var keep = false

    @Option(help: "Seed of the generated content; the same seed generates the same bytes.")
    var seed: UInt64 = 20_260_101

    func validate() throws {
        for n in [runs, coldRuns ?? 3, incrementalRuns ?? 3] where n < 3 {
            throw ValidationError("at least 3 runs are needed for a median")
        }
    }

    func run() async throws {
        let fm = FileManager.default
        // Not under /tmp by default: on a shared machine /tmp's ext4 block groups see
        // constant creation and deletion by other processes, and ext4's inode allocator then
        // crawls past recently deleted inodes — a 20,000-file clone measured 12 s there
        // (9 s system time) against 3–4 s under .build/. That is noise, not git's cost.
        let work = URL(fileURLWithPath: workDir ?? ".build/pushbridge-bench/run-\(UUID().uuidString.prefix(8))").standardizedFileURL
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        defer { if !keep && workDir == nil { try? fm.removeItem(at: work) } }
        let scratch = work.appendingPathComponent("scratch")
        let serverRoot = work.appendingPathComponent("server")
        try fm.createDirectory(at: scratch, withIntermediateDirectories: true)
        try fm.createDirectory(at: serverRoot, withIntermediateDirectories: true)

        // A fresh random password per run; it goes to the server child and to both clients
        // through the environment or a callback only.
        var rng = SystemRandomNumberGenerator()
        let password = (0..<4).map { _ in String(rng.next() as UInt64, radix: 16) }.joined()
        let user = "bench"
        let server = try await GitServerProcess(
            executable: URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath(),
            root: serverRoot, user: user, password: password)
        let gitCLI = try GitCLIWay(home: work.appendingPathComponent("home"), scratch: scratch, user: user, password: password)
        let cliGit = gitCLI.git
        let context = BenchContext(
            work: work, serverRoot: serverRoot, scratch: scratch,
            gitCLI: gitCLI,
            gitKit: GitKitWay(user: user, password: password),
            server: server, seed: seed,
            environment: [
                ("git_version", .string(try await GitCLIWay.version(git: cliGit))),
                ("libgit2_version", .string(LibGit2.version.description)),
                ("cpus", .int(ProcessInfo.processInfo.activeProcessorCount)),
                ("load_avg_start", .double(loadAverage(), digits: 2)),
            ],
            sync: Command(executable: try GitCLIWay.which("sync"), environment: [:], scratch: scratch))
        context.log("work directory \(work.path), server \(server.baseURL.absoluteString)")

        var lines: [JSON] = []
        do {
            if scenario != .incremental {
                lines.append(try await ColdScenario(context: context, runs: coldRuns ?? runs).run())
                print(lines.last!.serialized)
            }
            if scenario != .cold {
                lines.append(try await IncrementalScenario(context: context, runs: incrementalRuns ?? runs).run())
                print(lines.last!.serialized)
            }
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
        let outURL = URL(fileURLWithPath: out)
        try fm.createDirectory(at: outURL.deletingLastPathComponent(), withIntermediateDirectories: true)
        let array = "[\n" + lines.map { "  " + $0.serialized }.joined(separator: ",\n") + "\n]\n"
        try Data(array.utf8).write(to: outURL)
        context.log("lifetime peak RSS \(Memory.lifetimePeakRSS() / 1_048_576) MiB; results written to \(outURL.path)")
    }
}

/// Child process: the git smart-HTTP server (see `GitServerProcess`).
struct ServeGit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve-git",
        abstract: "Internal: serve bare repositories over smart HTTP for the benchmark.",
        shouldDisplay: false
    )

    @Option(help: "Directory of bare repositories.")
    var root: String

    func run() async throws {
        try await GitServerProcess.serve(root: URL(fileURLWithPath: root))
    }
}
