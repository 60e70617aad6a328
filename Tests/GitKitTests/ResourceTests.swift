import Foundation
import GitHTTPServer
import GitKit
import Testing
import TestSupport

extension GitKitTests {
    @Suite("Resources and maintenance")
    struct ResourceTests {
        static func openDescriptors() -> Int {
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        }

        static func residentBytes() -> Int {
            guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
            let fields = statm.split(separator: " ")
            return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
        }

        /// Set only in the environment of the child this test spawns.
        static let childVariable = "PUSHBRIDGE_RESOURCE_TEST_CHILD"

        /// Descriptor and RSS counts are process-wide, and the full suite runs every target in one
        /// process, in parallel: other tests' sockets, files and allocations would be measured too.
        /// So the test re-runs itself — the very test binary, filtered to this one test — in a child
        /// process where it is alone, and the parent checks the child's verdict and its figures.
        @Test("many operations in a loop: descriptors and RSS do not grow with the iteration count")
        func noLeaks() async throws {
            if ProcessInfo.processInfo.environment[Self.childVariable] == "1" {
                try await Self.leakLoop()
                return
            }
            let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            var environment = ProcessInfo.processInfo.environment
            environment[Self.childVariable] = "1"
            let child = try await ChildProcess.run(
                executable: executable,
                arguments: ["--testing-library", "swift-testing", "--filter", "ResourceTests/noLeaks"],
                environment: environment)
            let output = String(buffer: child.standardOutput)
            let figures = output.split(separator: "\n").filter { $0.contains("[resources]") }
            for line in figures { print(line.drop { $0 != "[" }) }
            #expect(child.succeeded, "child test failed (exit \(child.exitCode)):\n\(output.suffix(4000))")
            // The child really ran the loop (a filter that matched nothing would also exit 0).
            #expect(figures.count == 1, "no figures from the child:\n\(output.suffix(4000))")
        }

        /// The measured loop; runs only in the child process.
        static func leakLoop() async throws {
            // Few small packs, so the descriptors libgit2 keeps open per pack stay bounded too.
            try await withHarness(configuration: GitCacheConfiguration(maxSmallPacks: 3)) { harness in
                let (url, directory) = try await harness.repository("leaks")
                let cache = try harness.store.cache(for: url)
                // 256 KiB per iteration: a leaked blob buffer or mempack would show up as
                // ≥ 30 MiB over 120 iterations.
                func round(_ index: Int) async throws {
                    var bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 256 << 10)
                    bytes[0] = UInt8(truncatingIfNeeded: index >> 8)
                    let tree = try await cache.buildTree(
                        parent: nil, files: .entries([FileEntry(path: "big/\(index).bin", contents: bytes), .text("x", "\(index)")]))
                    _ = try await cache.commit(tree: tree.tree, parents: [], message: "loop \(index)", author: testAuthor)
                    await cache.discardPendingObjects()
                    if index % 10 == 0 {
                        _ = try await cache.publish(
                            PublishRequest(branch: "main", files: .entries([.text("n.txt", "\(index)")]), message: "n", author: testAuthor))
                        _ = try await cache.fetch(branches: ["main", "absent"])
                    }
                }
                for index in 0..<30 { try await round(index) }
                let descriptorsBefore = Self.openDescriptors()
                let residentBefore = Self.residentBytes()
                for index in 30..<150 { try await round(index) }
                let descriptorsAfter = Self.openDescriptors()
                let residentAfter = Self.residentBytes()
                print("[resources] 120 iterations: descriptors \(descriptorsBefore) → \(descriptorsAfter), RSS \(residentBefore >> 20) MiB → \(residentAfter >> 20) MiB")
                #expect(descriptorsAfter - descriptorsBefore < 6, "descriptors \(descriptorsBefore) → \(descriptorsAfter)")
                #expect(residentAfter - residentBefore < 24 << 20, "RSS \(residentBefore) → \(residentAfter)")
                #expect(try await serverGit(directory, ["show", "refs/heads/main:n.txt"]) == "140")
                #expect(try await cache.statistics().pendingObjects == 0)
            }
        }

        @Test("small packs are merged so lookups do not degrade with the number of jobs")
        func packConsolidation() async throws {
            try await withHarness(configuration: GitCacheConfiguration(maxSmallPacks: 4)) { harness in
                let (url, directory) = try await harness.repository("packs")
                let cache = try harness.store.cache(for: url)
                var last: PublishResult?
                for index in 0..<10 {
                    last = try await cache.publish(
                        PublishRequest(branch: "main", files: .entries([.text("f\(index).txt", "\(index)")]), message: "\(index)",
                                       author: testAuthor))
                    #expect(try await cache.statistics().packs < 4)
                }
                // Everything is still readable from the cache after the merges.
                let head = try #require(last?.commit)
                for index in 0..<10 {
                    #expect(try await cache.file(at: "f\(index).txt", in: head)?.contents == Array("\(index)".utf8))
                }
                #expect(try await serverTree(directory).count == 10)
                // And a re-fetch has nothing to download.
                #expect(try await cache.fetch(branches: ["main"]).objectsReceived == 0)
            }
        }
    }
}
