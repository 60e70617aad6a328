import Crypto
import Foundation
import NIOCore
import Testing

@testable import PushBridge

@Suite("Archives")
struct ArchiveTests {
    let work: URL
    let store: ArchiveStore

    init() throws {
        work = try ArchiveFixture.temporaryDirectory()
        store = ArchiveStore(directory: work.appendingPathComponent("archives").path, limits: ArchiveFixture.generous)
    }

    /// A source tree with an executable, a symlink, binary bytes, nested directories and a long path.
    private func makeTree() throws -> URL {
        let tree = work.appendingPathComponent("tree")
        let fm = FileManager.default
        let longDir = (0..<6).map { "directory-with-a-long-name-\($0)" }.joined(separator: "/")
        try fm.createDirectory(at: tree.appendingPathComponent("src/lib"), withIntermediateDirectories: true)
        try fm.createDirectory(at: tree.appendingPathComponent(longDir), withIntermediateDirectories: true)
        try Data("hello\n".utf8).write(to: tree.appendingPathComponent("README.md"))
        try Data("#!/bin/sh\necho hi\n".utf8).write(to: tree.appendingPathComponent("src/run.sh"))
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: tree.appendingPathComponent("src/run.sh").path)
        try Data((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(
            to: tree.appendingPathComponent("src/lib/blob.bin"))
        try Data("deep".utf8).write(to: tree.appendingPathComponent(longDir + "/file-with-a-long-name.txt"))
        try fm.createSymbolicLink(atPath: tree.appendingPathComponent("src/link").path, withDestinationPath: "lib/blob.bin")
        try fm.createSymbolicLink(atPath: tree.appendingPathComponent("top").path, withDestinationPath: "src/../README.md")
        return tree
    }

    private func expectSameTree(_ expected: URL, _ actual: String) throws {
        let fm = FileManager.default
        let want = try fm.subpathsOfDirectory(atPath: expected.path).sorted()
        let got = try fm.subpathsOfDirectory(atPath: actual).sorted()
        #expect(want == got)
        for path in want {
            let a = expected.appendingPathComponent(path).path
            let b = actual + "/" + path
            let attrsA = try fm.attributesOfItem(atPath: a)
            let attrsB = try fm.attributesOfItem(atPath: b)
            #expect(attrsA[.type] as? FileAttributeType == attrsB[.type] as? FileAttributeType, "\(path)")
            switch attrsA[.type] as? FileAttributeType {
            case .typeSymbolicLink?:
                #expect(try fm.destinationOfSymbolicLink(atPath: a) == fm.destinationOfSymbolicLink(atPath: b))
            case .typeRegular?:
                #expect(fm.contents(atPath: a) == fm.contents(atPath: b), "\(path) bytes")
                let execA = ((attrsA[.posixPermissions] as? Int) ?? 0) & 0o100 != 0
                let execB = ((attrsB[.posixPermissions] as? Int) ?? 0) & 0o100 != 0
                #expect(execA == execB, "\(path) executable bit")
            default: break
            }
        }
    }

    private func ingest(_ file: URL, store: ArchiveStore? = nil) async throws -> ArchiveInfo {
        try await (store ?? self.store).ingest(ArchiveFixture.body(of: file))
    }

    private func ingestError(_ file: URL, store: ArchiveStore? = nil) async -> ArchiveError? {
        do {
            _ = try await ingest(file, store: store)
            return nil
        } catch let error as ArchiveError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test("tar.gz from the tar CLI (GNU format, long names) unpacks byte- and mode-exact")
    func gnuTarGz() async throws {
        defer { try? FileManager.default.removeItem(at: work) }
        let tree = try makeTree()
        let archive = work.appendingPathComponent("a.tar.gz")
        try await ArchiveFixture.run(["tar", "--format=gnu", "-czf", archive.path, "-C", tree.path, "."])
        let info = try await ingest(archive)
        let expectedSHA = try await ArchiveFixture.run(["sha256sum", archive.path]).prefix(64)
        #expect(info.sha256 == String(expectedSHA))
        #expect(info.id == info.sha256)
        #expect(info.files == 6)
        #expect(info.bytes == (try Data(contentsOf: archive)).count)
        #expect(info.expandedBytes == 6 + 18 + 70_000 + 4)
        try expectSameTree(tree, try store.root(id: info.id))
        #expect(try store.info(id: info.id) == info)
    }

    @Test("plain tar in ustar (prefix field) and pax (long path) formats unpacks", arguments: ["ustar", "pax"])
    func plainTar(format: String) async throws {
        defer { try? FileManager.default.removeItem(at: work) }
        let tree = try makeTree()
        if format == "pax" {
            // Longer than ustar's 255-byte name+prefix: only a pax `path` record can carry it.
            let deep = (0..<12).map { "segment-number-\($0)-padding" }.joined(separator: "/")
            try FileManager.default.createDirectory(at: tree.appendingPathComponent(deep), withIntermediateDirectories: true)
            try Data("pax".utf8).write(to: tree.appendingPathComponent(deep + "/leaf.txt"))
        }
        let archive = work.appendingPathComponent("a.tar")
        try await ArchiveFixture.run(["tar", "--format=\(format)", "-cf", archive.path, "-C", tree.path, "."])
        let info = try await ingest(archive)
        try expectSameTree(tree, try store.root(id: info.id))
    }

    @Test("the same upload twice yields the same archive")
    func deduplicates() async throws {
        defer { try? FileManager.default.removeItem(at: work) }
        let tree = try makeTree()
        let archive = work.appendingPathComponent("a.tgz")
        try await ArchiveFixture.run(["tar", "-czf", archive.path, "-C", tree.path, "."])
        let first = try await ingest(archive)
        let second = try await ingest(archive)
        #expect(first == second)
        let entries = try FileManager.default.contentsOfDirectory(atPath: store.directory).filter { !$0.hasPrefix(".") }
        #expect(Set(entries) == [first.id, first.id + ".json"])
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: store.directory + "/.incoming")
        #expect(leftovers.isEmpty)
    }

    @Test(
        "hostile archives are refused with the entry named",
        arguments: [
            ("absolute", #"add("/etc/evil", b"x")"#, ArchiveError.Kind.invalidPath, "/etc/evil"),
            ("dotdot", #"add("a/../../evil", b"x")"#, .invalidPath, "a/../../evil"),
            ("dotgit", #"add("sub/.git/config", b"x")"#, .invalidPath, "sub/.git/config"),
            ("dotgit-case", #"add(".GiT/hooks/post-checkout", b"x")"#, .invalidPath, ".GiT/hooks/post-checkout"),
            // GitKit's `.git` rules (what git clients on NTFS/HFS+ treat as `.git`), shared with the pipeline.
            ("dotgit-upper", #"add("src/.GIT/config", b"x")"#, .invalidPath, "src/.GIT/config"),
            ("dotgit-trailing-dot", #"add(".git./hooks/pre-commit", b"x")"#, .invalidPath, ".git./hooks/pre-commit"),
            ("dotgit-trailing-space", #"add("a/.git /config", b"x")"#, .invalidPath, "a/.git /config"),
            ("dotgit-ntfs-short", #"add("GIT~1/config", b"x")"#, .invalidPath, "GIT~1/config"),
            ("dotgit-ntfs-stream", #"add(".git::$INDEX_ALLOCATION/config", b"x")"#, .invalidPath, ".git::$INDEX_ALLOCATION/config"),
            ("dotgit-hfs-ignorable", #"add(".g\u200cit/config", b"x")"#, .invalidPath, ".g\u{200C}it/config"),
            ("backslash", #"add("a\\b", b"x")"#, .invalidPath, #"a\b"#),
            ("symlink-git-short", #"add("l", type=tarfile.SYMTYPE, linkname="x/../git~1/config")"#, .symlinkEscapes, "l"),
            ("empty-segment", #"add("a//b", b"x")"#, .invalidPath, "a//b"),
            ("nul", #"add("a", b"x", pax_headers={"path": "a\x00b"})"#, .invalidPath, #"a\u{0}b"#),
            ("symlink-absolute", #"add("l", type=tarfile.SYMTYPE, linkname="/etc/passwd")"#, .symlinkEscapes, "l"),
            ("symlink-up", #"add("d/l", type=tarfile.SYMTYPE, linkname="../../x")"#, .symlinkEscapes, "d/l"),
            ("symlink-git", #"add("l", type=tarfile.SYMTYPE, linkname=".git/config")"#, .symlinkEscapes, "l"),
            (
                "symlink-chain",
                #"add("a/b/c/d", type=tarfile.SYMTYPE, linkname="../../..")"# + "\n"
                    + #"add("a/b/c/l", type=tarfile.SYMTYPE, linkname="d/../..")"#, .symlinkEscapes, "a/b/c/l"
            ),
            (
                "through-symlink",
                #"add("sub/x", b"1")"# + "\n" + #"add("s", type=tarfile.SYMTYPE, linkname="sub")"# + "\n"
                    + #"add("s/y", b"2")"#, .conflictingEntry, "s/y"
            ),
            ("duplicate", #"add("f", b"1")"# + "\n" + #"add("f", b"2")"#, .conflictingEntry, "f"),
            ("hardlink", #"add("f", b"1")"# + "\n" + #"add("h", type=tarfile.LNKTYPE, linkname="f")"#, .unsupportedEntry, "h"),
            ("chardev", #"add("dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)"#, .unsupportedEntry, "dev"),
            ("fifo", #"add("pipe", type=tarfile.FIFOTYPE)"#, .unsupportedEntry, "pipe"),
        ])
    func hostile(name: String, python: String, kind: ArchiveError.Kind, path: String) async throws {
        defer { try? FileManager.default.removeItem(at: work) }
        let archive = work.appendingPathComponent("\(name).tar.gz")
        try await ArchiveFixture.python(python, to: archive, mode: "w:gz")
        let error = try #require(await ingestError(archive))
        #expect(error.kind == kind)
        #expect(error.path == path)
        #expect(error.message.contains(path))
        // Nothing of a refused archive stays behind.
        let entries = try FileManager.default.contentsOfDirectory(atPath: store.directory).filter { $0 != ".incoming" }
        #expect(entries.isEmpty)
    }

    @Test("size, count and expansion limits are enforced")
    func limits() async throws {
        defer { try? FileManager.default.removeItem(at: work) }
        let archive = work.appendingPathComponent("many.tar.gz")
        // 3 files, one of 2 MiB of zeros (compresses to a few KiB: a small bomb).
        try await ArchiveFixture.python(
            #"add("a", b"1")"# + "\n" + #"add("b", b"2")"# + "\n" + #"add("zeros", bytes(2 * 1024 * 1024))"#,
            to: archive, mode: "w:gz")
        let size = try Data(contentsOf: archive).count
        func limited(_ limits: ArchiveLimits) -> ArchiveStore {
            ArchiveStore(directory: store.directory, limits: limits)
        }
        var l = ArchiveFixture.generous
        l.maxArchiveBytes = size - 1
        #expect(await ingestError(archive, store: limited(l))?.kind == .archiveTooLarge)
        l = ArchiveFixture.generous
        l.maxEntries = 2
        #expect(await ingestError(archive, store: limited(l))?.kind == .tooManyEntries)
        l = ArchiveFixture.generous
        l.maxFileBytes = 1 << 20
        let fileError = await ingestError(archive, store: limited(l))
        #expect(fileError?.kind == .fileTooLarge)
        #expect(fileError?.path == "zeros")
        l = ArchiveFixture.generous
        l.maxExpandedBytes = 1 << 20
        #expect(await ingestError(archive, store: limited(l))?.kind == .expandedTooLarge)
        // Exactly at the limits it is accepted.
        l = ArchiveFixture.generous
        l.maxArchiveBytes = size
        l.maxEntries = 3
        l.maxFileBytes = 2 << 20
        let info = try await ingest(archive, store: limited(l))
        #expect(info.files == 3)
        #expect(FileManager.default.contents(atPath: try store.root(id: info.id) + "/zeros")?.count == 2 << 20)
    }

    @Test("garbage, empty and truncated uploads are invalid archives")
    func malformed() async throws {
        defer { try? FileManager.default.removeItem(at: work) }
        let garbage = work.appendingPathComponent("garbage")
        try Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }).write(to: garbage)
        #expect(await ingestError(garbage)?.kind == .invalidArchive)

        let empty = work.appendingPathComponent("empty")
        try Data().write(to: empty)
        #expect(await ingestError(empty)?.kind == .invalidArchive)

        let tree = try makeTree()
        let whole = work.appendingPathComponent("whole.tar")
        try await ArchiveFixture.run(["tar", "-cf", whole.path, "-C", tree.path, "."])
        let data = try Data(contentsOf: whole)
        // Cut on a 512-byte boundary after the first member: well-formed prefix, no end marker.
        let cut = work.appendingPathComponent("cut.tar")
        try data.prefix(2048).write(to: cut)
        #expect(await ingestError(cut)?.kind == .invalidArchive)

        let gz = work.appendingPathComponent("whole.tar.gz")
        try await ArchiveFixture.run(["gzip", "-k", whole.path])
        let gzData = try Data(contentsOf: gz)
        let cutGz = work.appendingPathComponent("cut.tar.gz")
        try gzData.prefix(gzData.count / 2).write(to: cutGz)
        #expect(await ingestError(cutGz)?.kind == .invalidArchive)
    }

    @Test("concatenated gzip members unpack as one archive")
    func multiMemberGzip() async throws {
        defer { try? FileManager.default.removeItem(at: work) }
        let tree = try makeTree()
        let tar = work.appendingPathComponent("t.tar")
        try await ArchiveFixture.run(["tar", "-cf", tar.path, "-C", tree.path, "."])
        let data = try Data(contentsOf: tar)
        let half = (data.count / 2 / 512) * 512
        let partA = work.appendingPathComponent("a")
        let partB = work.appendingPathComponent("b")
        try data.prefix(half).write(to: partA)
        try data.dropFirst(half).write(to: partB)
        try await ArchiveFixture.run(["gzip", partA.path, partB.path])
        let joined = work.appendingPathComponent("joined.tar.gz")
        try (Data(contentsOf: work.appendingPathComponent("a.gz")) + Data(contentsOf: work.appendingPathComponent("b.gz")))
            .write(to: joined)
        let info = try await ingest(joined)
        try expectSameTree(tree, try store.root(id: info.id))
    }

    @Test("garbage collection removes old unreferenced archives only")
    func garbageCollection() async throws {
        defer { try? FileManager.default.removeItem(at: work) }
        var ids: [String] = []
        for content in ["one", "two", "three"] {
            let archive = work.appendingPathComponent("\(content).tar")
            try await ArchiveFixture.python(#"add("f", b"\#(content)")"#, to: archive)
            ids.append(try await ingest(archive).id)
        }
        let later = Date().addingTimeInterval(7200)
        // "three" was used recently relative to `later`; the others are older than the TTL.
        let recent = later.addingTimeInterval(-60)
        try FileManager.default.setAttributes(
            [.modificationDate: recent], ofItemAtPath: store.directory + "/\(ids[2]).json")
        let removed = try store.collectGarbage(ttl: .seconds(3600), keep: [ids[1]], now: later)
        #expect(removed == [ids[0]])
        #expect(try store.info(id: ids[0]) == nil)
        #expect(!FileManager.default.fileExists(atPath: store.directory + "/\(ids[0])"))
        #expect(try store.info(id: ids[1]) != nil)
        #expect(try store.info(id: ids[2]) != nil)
        #expect(throws: ArchiveError.self) { try store.root(id: ids[0]) }
        #expect(throws: ArchiveError.self) { try store.root(id: "../../etc") }
    }
}
