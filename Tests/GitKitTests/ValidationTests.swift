import Foundation
import GitKit
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

extension GitKitTests {
    @Suite("Input validation")
    struct ValidationTests {
        struct BadInput: Sendable, CustomTestStringConvertible {
            var entries: [FileEntry]
            var code: GitError.Code
            var path: String
            var root: String = ""
            var testDescription: String { "\(code): \(path.debugDescription)" }
        }

        static let badInputs: [BadInput] = [
            BadInput(entries: [.text("/etc/passwd", "x")], code: .invalidPath, path: "/etc/passwd"),
            BadInput(entries: [.text("../escape", "x")], code: .invalidPath, path: "../escape"),
            BadInput(entries: [.text("a/../../b", "x")], code: .invalidPath, path: "a/../../b"),
            BadInput(entries: [.text("a/./b", "x")], code: .invalidPath, path: "a/./b"),
            BadInput(entries: [.text("a//b", "x")], code: .invalidPath, path: "a//b"),
            BadInput(entries: [.text("a/", "x")], code: .invalidPath, path: "a/"),
            BadInput(entries: [.text("", "x")], code: .invalidPath, path: ""),
            BadInput(entries: [.text(".git/config", "x")], code: .invalidPath, path: ".git/config"),
            BadInput(entries: [.text("src/.GIT/hooks/post-checkout", "x")], code: .invalidPath, path: "src/.GIT/hooks/post-checkout"),
            BadInput(entries: [.text("x/.Git", "x")], code: .invalidPath, path: "x/.Git"),
            BadInput(entries: [.text(".git./x", "x")], code: .invalidPath, path: ".git./x"),
            BadInput(entries: [.text("GIT~1/x", "x")], code: .invalidPath, path: "GIT~1/x"),
            BadInput(entries: [.text(".g\u{200C}it/x", "x")], code: .invalidPath, path: ".g\u{200C}it/x"),
            BadInput(entries: [.text("a\u{0}b", "x")], code: .invalidPath, path: "a\\0b"),
            BadInput(entries: [.text("win\\path", "x")], code: .invalidPath, path: "win\\path"),
            BadInput(entries: [.symlink(path: "l", target: "../outside")], code: .invalidPath, path: "l"),
            BadInput(entries: [.symlink(path: "a/b/l", target: "../../../x")], code: .invalidPath, path: "a/b/l"),
            BadInput(entries: [.symlink(path: "l", target: "/etc/passwd")], code: .invalidPath, path: "l"),
            BadInput(entries: [.symlink(path: "l", target: "")], code: .invalidPath, path: "l"),
            // `up -> .` is fine alone, but following it `via -> up/..` leaves the root.
            BadInput(
                entries: [.symlink(path: "up", target: "."), .symlink(path: "d/via", target: "../up/../x")],
                code: .invalidPath, path: "d/via"),
            BadInput(entries: [.text("dup", "1"), .text("dup", "2")], code: .invalidPath, path: "dup"),
            BadInput(entries: [.text("a/b", "1"), .text("a", "2")], code: .invalidPath, path: "a"),
            BadInput(entries: [.text("a", "1"), .text("a/b", "2")], code: .invalidPath, path: "a/b"),
            BadInput(entries: [FileEntry(path: "big.bin", contents: Array(repeating: 1, count: 1025))], code: .fileTooLarge, path: "big.bin"),
            BadInput(entries: [.text("ok.txt", "x")], code: .invalidPath, path: "../up", root: "../up"),
            BadInput(entries: [.text("ok.txt", "x")], code: .invalidPath, path: "a/.git", root: "a/.git"),
        ]

        @Test("bad input paths are rejected with the right code, naming the path", arguments: badInputs)
        func rejectsBadInput(_ input: BadInput) async throws {
            try await withOfflineCache { cache in
                let error = await expectGitError {
                    _ = try await cache.buildTree(
                        parent: nil, files: .entries(input.entries), options: TreeBuildOptions(root: input.root, maxFileSize: 1024))
                }
                #expect(error?.code == input.code)
                #expect(error?.path == input.path)
                // Nothing was written for a rejected input.
                let pending = try await cache.statistics().pendingObjects
                #expect(pending == 0)
            }
        }

        @Test("symlinks inside the root (also via other links) are accepted")
        func acceptsInternalSymlinks() async throws {
            try await withOfflineCache { cache in
                let result = try await cache.buildTree(
                    parent: nil,
                    files: .entries([
                        .symlink(path: "a/b/l", target: "../../c"), .symlink(path: "dir", target: "a/b"),
                        .symlink(path: "x/y", target: "../dir/l"), .symlink(path: "self", target: "."),
                        .text("c", "target"),
                    ]))
                #expect(result.changed)
            }
        }

        @Test("directory sources: .git, fifo, escaping symlink, oversize file are errors, not skipped")
        func directorySourceRejections() async throws {
            try await withOfflineCache { cache in
                func attempt(_ setup: (URL) throws -> Void) async throws -> GitError? {
                    let source = try TemporaryDirectory(prefix: "gitkit-bad-src")
                    try Data("fine".utf8).write(to: source.appending("fine.txt"))
                    try setup(source.url)
                    return await expectGitError {
                        _ = try await cache.buildTree(
                            parent: nil, files: .directory(source.url.path), options: TreeBuildOptions(maxFileSize: 1024))
                    }
                }
                let fm = FileManager.default
                let dotGit = try await attempt { root in
                    try fm.createDirectory(at: root.appendingPathComponent("sub/.git"), withIntermediateDirectories: true)
                    try Data("[core]".utf8).write(to: root.appendingPathComponent("sub/.git/config"))
                }
                #expect(dotGit?.code == .invalidPath)
                #expect(dotGit?.path == "sub/.git")

                let fifo = try await attempt { root in
                    #expect(mkfifo(root.appendingPathComponent("pipe").path, 0o644) == 0)
                }
                #expect(fifo?.code == .unsupportedFileType)
                #expect(fifo?.path == "pipe")

                let escape = try await attempt { root in
                    try fm.createSymbolicLink(atPath: root.appendingPathComponent("etc").path, withDestinationPath: "../../etc")
                }
                #expect(escape?.code == .invalidPath)
                #expect(escape?.path == "etc")

                let absolute = try await attempt { root in
                    try fm.createSymbolicLink(atPath: root.appendingPathComponent("abs").path, withDestinationPath: "/etc/passwd")
                }
                #expect(absolute?.code == .invalidPath)

                let big = try await attempt { root in
                    try Data(repeating: 7, count: 2048).write(to: root.appendingPathComponent("big.bin"))
                }
                #expect(big?.code == .fileTooLarge)
                #expect(big?.path == "big.bin")

                let missing = await expectGitError {
                    _ = try await cache.buildTree(parent: nil, files: .directory("/nonexistent/gitkit/source"))
                }
                #expect(missing?.code == .notFound)
            }
        }

        @Test("preserve patterns: documented glob semantics")
        func preservePatterns() throws {
            let patterns = try PreservePatterns(["README.md", "/top.txt", "docs/**/*.png", "keep/", "build/**", "*.lock", "a/*/c"])
            #expect(patterns.matches("README.md", isDirectory: false))
            #expect(patterns.matches("deep/er/README.md", isDirectory: false))
            #expect(!patterns.matches("README.md.bak", isDirectory: false))
            #expect(patterns.matches("top.txt", isDirectory: false))
            #expect(!patterns.matches("sub/top.txt", isDirectory: false))
            #expect(patterns.matches("docs/x.png", isDirectory: false))
            #expect(patterns.matches("docs/a/b/x.png", isDirectory: false))
            #expect(!patterns.matches("other/docs/x.png", isDirectory: false))
            #expect(patterns.matches("keep", isDirectory: true))
            #expect(!patterns.matches("keep", isDirectory: false))
            #expect(patterns.preserves("x/keep/file", isDirectory: false))
            #expect(patterns.matches("build/out/x", isDirectory: false))
            #expect(!patterns.matches("build", isDirectory: false))
            #expect(patterns.matches(".hidden.lock", isDirectory: false))
            #expect(patterns.matches("a/b/c", isDirectory: false))
            #expect(!patterns.matches("a/b/d/c", isDirectory: false))

            for bad in ["", "!negated", "a//b", "../x", "./x"] {
                #expect(throws: GitError.self, "\(bad)") { _ = try PreservePatterns([bad]) }
            }
        }

        @Test("trust anchors: a bad bundle is a certificate error; a PEM bundle loads")
        func trustAnchors() throws {
            let scratch = try TemporaryDirectory()
            let garbage = scratch.appending("garbage.pem")
            try Data("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".utf8).write(to: garbage)
            let bad = #expect(throws: GitError.self) { try LibGit2.setTrustedCertificates(file: garbage.path, directory: nil) }
            #expect(bad?.code == .certificate)
            let missing = #expect(throws: GitError.self) {
                try LibGit2.setTrustedCertificates(file: scratch.appending("absent.pem").path, directory: nil)
            }
            #expect(missing?.code == .certificate)
            let neither = #expect(throws: GitError.self) { try LibGit2.setTrustedCertificates(file: nil, directory: nil) }
            #expect(neither?.code == .invalidArgument)
            let system = "/etc/ssl/certs/ca-certificates.crt"
            if FileManager.default.fileExists(atPath: system) {
                try LibGit2.setTrustedCertificates(file: system, directory: nil)
            }
        }

        @Test("secrets are redacted from errors, URL passwords refused")
        func redaction() throws {
            let data = try TemporaryDirectory()
            let store = GitCacheStore(dataDirectory: data.url.path)
            let secretURL = "https://user:hunter2-secret@example.com/r.git"
            let error = #expect(throws: GitError.self) { _ = try store.cache(for: secretURL) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.description.contains("hunter2") == false)

            SecretRedactor.shared.register("registered-secret-123")
            defer { SecretRedactor.shared.unregister("registered-secret-123") }
            let message = GitError(code: .network, message: "failed: registered-secret-123 at https://u:pw@host/x").description
            #expect(!message.contains("registered-secret-123"))
            #expect(!message.contains("u:pw"))
            #expect(message.contains("https://host/x"))

            #expect(GitCacheStore.key(for: "https://a@h/r.git") == GitCacheStore.key(for: "https://h/r.git"))
            #expect(GitCacheStore.key(for: "https://h/r.git") != GitCacheStore.key(for: "https://h/s.git"))
            #expect(throws: GitError.self) { _ = try store.cache(for: "ssh://h/r.git") }
        }
    }
}
