import Foundation
import GitKit
import Testing
import TestSupport

extension GitKitTests {
    @Suite("Tree building")
    struct TreeBuildTests {
        @Test("libgit2 version and features are reported")
        func versionAndFeatures() {
            #expect(LibGit2.version.major == 1)
            #expect(LibGit2.version.minor >= 5)
            #expect(LibGit2.features.contains(.threads))
            #expect(LibGit2.features.contains(.https))
        }

        @Test("bytes, modes and nested trees round-trip exactly to the server")
        func roundTrip() async throws {
            try await withHarness { harness in
                let (url, directory) = try await harness.repository("roundtrip")
                let cache = try harness.store.cache(for: url)
                let binary = (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) } + Array(0...255)
                let entries = [
                    FileEntry(path: "bin/data.bin", contents: binary),
                    FileEntry(path: "bin/run.sh", mode: .executable, text: "#!/bin/sh\necho hi\n"),
                    FileEntry(path: "empty", contents: []),
                    FileEntry(path: "a/b/c/d/deep.txt", text: "deep\r\nwindows line\n"),
                    FileEntry(path: "unicodé/ñame.txt", text: "ü\n"),
                    .symlink(path: "a/link", target: "b/c/d/deep.txt"),
                    .symlink(path: "a/b/up", target: "../../bin/run.sh"),
                ]
                let result = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries(entries), message: "round trip", author: testAuthor))
                #expect(result.changed)
                #expect(result.createdBranch)
                #expect(try await serverHead(directory) == result.commit?.hex)

                let tree = try await serverTree(directory)
                #expect(Set(tree.keys) == Set(entries.map(\.path)))
                for entry in entries {
                    let line = try #require(tree[entry.path])
                    #expect(line.mode == String(entry.mode.rawValue, radix: 8), "mode of \(entry.path)")
                    #expect(line.type == "blob")
                    #expect(try await serverBlob(directory, line.id) == entry.contents, "bytes of \(entry.path)")
                }
                let log = try await serverGit(directory, ["log", "-1", "--format=%an|%ae|%at|%ai|%B", "refs/heads/main"])
                #expect(log.hasPrefix("Push Bridge|bot@example.com|1700000000|2023-11-14 23:13:20 +0100|round trip"))
                // The server's own consistency check.
                try await serverGit(directory, ["fsck", "--strict", "--no-dangling"])
            }
        }

        @Test("directory source: executable bit, symlinks, nested directories")
        func directorySource() async throws {
            try await withHarness { harness in
                let (url, directory) = try await harness.repository("dirsource")
                let cache = try harness.store.cache(for: url)
                let source = try TemporaryDirectory(prefix: "gitkit-src")
                let fm = FileManager.default
                try fm.createDirectory(at: source.appending("src/lib"), withIntermediateDirectories: true)
                try Data("lib\n".utf8).write(to: source.appending("src/lib/lib.swift"))
                try Data([0, 1, 2, 255]).write(to: source.appending("blob.bin"))
                try Data("#!/bin/sh\n".utf8).write(to: source.appending("tool"))
                try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: source.appending("tool").path)
                try fm.createSymbolicLink(atPath: source.appending("src/current").path, withDestinationPath: "lib")
                try fm.createDirectory(at: source.appending("empty-dir"), withIntermediateDirectories: true)

                let result = try await cache.publish(
                    PublishRequest(branch: "main", files: .directory(source.url.path), message: "dir", author: testAuthor))
                #expect(result.tree.statistics.files == 4)
                let tree = try await serverTree(directory)
                #expect(tree.mapValues(\.mode) == [
                    "src/lib/lib.swift": "100644", "blob.bin": "100644", "tool": "100755", "src/current": "120000",
                ])
                #expect(try await serverBlob(directory, tree["src/current"]!.id) == Array("lib".utf8))
                #expect(try await serverBlob(directory, tree["blob.bin"]!.id) == [0, 1, 2, 255])
            }
        }

        @Test("overlay writes over the parent and keeps everything else")
        func overlay() async throws {
            try await withOfflineCache { cache in
                let base = try await commit(cache, parent: nil, [
                    .text("keep.txt", "keep"), .text("src/a.txt", "a1"), .text("src/b.txt", "b1"), .text("x", "file"),
                ])
                let result = try await cache.buildTree(
                    parent: base,
                    files: .entries([.text("src/a.txt", "a2"), .text("new/n.txt", "n"), .text("x/inside", "dir replaces file")]))
                #expect(result.changed)
                let files = try await listing(cache, result.tree, ["keep.txt", "src/a.txt", "src/b.txt", "new/n.txt", "x/inside", "x"])
                #expect(files == [
                    "keep.txt": "keep", "src/a.txt": "a2", "src/b.txt": "b1", "new/n.txt": "n", "x/inside": "dir replaces file",
                ])
                #expect(result.statistics.blobsWritten == 3)
                // root, src, new, x
                #expect(result.statistics.treesWritten == 4)
            }
        }

        @Test("sync makes the root subtree exactly the file set, except preserved paths")
        func syncWithPreserve() async throws {
            try await withOfflineCache { cache in
                let base = try await commit(cache, parent: nil, [
                    .text("README.md", "readme"), .text("docs/README.md", "docs readme"), .text("old.txt", "old"),
                    .text("gen/old.swift", "old"), .text("keep/deep/x.bin", "kept dir"), .text("notes/a.lock", "lock"),
                    .text("same.txt", "same"),
                ])
                let result = try await cache.buildTree(
                    parent: base,
                    files: .entries([.text("gen/new.swift", "new"), .text("same.txt", "same"), .text("README.md", "input wins")]),
                    options: TreeBuildOptions(mode: .sync(preserve: ["README.md", "keep/", "*.lock"])))
                let files = try await listing(cache, result.tree, [
                    "README.md", "docs/README.md", "old.txt", "gen/old.swift", "gen/new.swift", "keep/deep/x.bin",
                    "notes/a.lock", "same.txt",
                ])
                #expect(files == [
                    "README.md": "input wins", "docs/README.md": "docs readme", "gen/new.swift": "new",
                    "keep/deep/x.bin": "kept dir", "notes/a.lock": "lock", "same.txt": "same",
                ])
                #expect(result.statistics.entriesRemoved == 2)  // old.txt, gen/old.swift
                #expect(result.statistics.blobsUnchanged == 1)  // same.txt

                // Without preserve patterns everything not in the input goes.
                let plain = try await cache.buildTree(
                    parent: base, files: .entries([.text("only.txt", "only")]), options: TreeBuildOptions(mode: .sync(preserve: [])))
                #expect(try await listing(cache, plain.tree, ["README.md", "only.txt", "keep/deep/x.bin"]) == ["only.txt": "only"])
            }
        }

        @Test("root prefix: files land under root; sync and overlay leave the outside alone")
        func rootPrefix() async throws {
            try await withOfflineCache { cache in
                let base = try await commit(cache, parent: nil, [
                    .text("outside.txt", "o"), .text("services/api/old.txt", "old"), .text("services/other/x.txt", "x"),
                ])
                let synced = try await cache.buildTree(
                    parent: base, files: .entries([.text("main.swift", "m")]),
                    options: TreeBuildOptions(root: "services/api", mode: .sync(preserve: [])))
                #expect(try await listing(cache, synced.tree, [
                    "outside.txt", "services/api/old.txt", "services/api/main.swift", "services/other/x.txt", "main.swift",
                ]) == ["outside.txt": "o", "services/api/main.swift": "m", "services/other/x.txt": "x"])

                let overlaid = try await cache.buildTree(
                    parent: base, files: .entries([.text("main.swift", "m")]), options: TreeBuildOptions(root: "services/api"))
                #expect(try await listing(cache, overlaid.tree, ["services/api/old.txt", "services/api/main.swift"]) == [
                    "services/api/old.txt": "old", "services/api/main.swift": "m",
                ])

                // Syncing an empty file set removes the root directory entirely.
                let emptied = try await cache.buildTree(
                    parent: base, files: .entries([]), options: TreeBuildOptions(root: "services/api", mode: .sync(preserve: [])))
                #expect(try await listing(cache, emptied.tree, ["outside.txt", "services/api/old.txt", "services/other/x.txt"]) == [
                    "outside.txt": "o", "services/other/x.txt": "x",
                ])
                #expect(try await cache.file(at: "services/api", in: emptied.tree) == nil)
            }
        }

        @Test("identical result: no change, and the parent's tree id comes back")
        func noChange() async throws {
            try await withOfflineCache { cache in
                let files: [FileEntry] = [.text("a/b.txt", "b"), .text("c.txt", "c"), .symlink(path: "l", target: "c.txt")]
                let base = try await commit(cache, parent: nil, files)
                let baseTree = try await cache.treeID(of: base)
                for mode in [TreeUpdateMode.overlay, .sync(preserve: [])] {
                    let again = try await cache.buildTree(parent: base, files: .entries(files), options: TreeBuildOptions(mode: mode))
                    #expect(!again.changed)
                    #expect(again.tree == baseTree)
                    #expect(again.parentTree == baseTree)
                    #expect(again.statistics.blobsWritten == 0)
                    #expect(again.statistics.treesWritten == 0)
                    #expect(again.statistics.blobsUnchanged == 3)
                }
                // A mode change alone is a change.
                let chmod = try await cache.buildTree(parent: base, files: .entries([.text("c.txt", "c", mode: .executable)]))
                #expect(chmod.changed)
                #expect(chmod.statistics.blobsWritten == 0)
            }
        }

        // MARK: helpers

        func commit(_ cache: RemoteCache, parent: ObjectID?, _ files: [FileEntry]) async throws -> ObjectID {
            let tree = try await cache.buildTree(parent: parent, files: .entries(files))
            return try await cache.commit(tree: tree.tree, parents: parent.map { [$0] } ?? [], message: "c", author: testAuthor)
        }

        /// Text of each listed path that exists as a file in `tree`.
        func listing(_ cache: RemoteCache, _ tree: ObjectID, _ paths: [String]) async throws -> [String: String] {
            var result: [String: String] = [:]
            for path in paths {
                if let file = try await cache.file(at: path, in: tree) {
                    result[path] = String(decoding: file.contents, as: UTF8.self)
                }
            }
            return result
        }
    }
}
