import Foundation
import GitHTTPServer
import GitKit
import Testing
import TestSupport

extension GitKitTests {
    @Suite("Fetch and push over smart HTTP")
    struct RemoteTests {
        static let user = "x-token-auth"
        static let password = "pw-Secret-0123456789abcdef"
        static let token = "bearer-Token-ZYXWVUT-987654"

        /// 60 files of 1 KiB of pseudo-random (incompressible) bytes in a few directories.
        static let baseFiles: [FileEntry] = (0..<60).map { index in
            var state = UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15
            let bytes = (0..<1024).map { _ -> UInt8 in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 56)
            }
            return FileEntry(path: "dir\(index % 3)/sub\(index % 2)/file\(index).txt", contents: bytes)
        }

        @Test("incremental push sends only the new objects: 1 blob, its trees, 1 commit")
        func incrementalPush() async throws {
            try await withHarness { harness in
                let (url, directory) = try await harness.repository("incremental")
                let cache = try harness.store.cache(for: url)
                let first = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries(Self.baseFiles), message: "base", author: testAuthor))
                let firstPush = try #require(first.push)
                // 60 blobs, 3 dirN + 6 subN trees, root tree, commit.
                #expect(firstPush.objectsSent == 60 + 9 + 1 + 1)
                let firstBytes = harness.statistics.requestBodyBytes(.receivePack)

                let changed = FileEntry.text("dir1/sub0/file4.txt", "changed\n")
                let second = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries([changed]), message: "one file", author: testAuthor))
                let push = try #require(second.push)
                #expect(push.objectsSent == 5)  // blob, dir1/sub0, dir1, root, commit
                #expect(second.tree.statistics.blobsWritten == 1)
                #expect(second.tree.statistics.treesWritten == 3)
                #expect(second.fetch.objectsReceived == 0)  // the cache already had everything
                #expect(push.previous == first.commit)
                let secondBytes = harness.statistics.requestBodyBytes(.receivePack) - firstBytes
                #expect(push.bytesSent > 0)
                #expect(secondBytes < 2048)
                #expect(secondBytes * 10 < firstBytes)
                #expect(try await serverHead(directory) == second.commit?.hex)
                let tree = try await serverTree(directory)
                #expect(tree.count == 60)
                #expect(try await serverBlob(directory, tree["dir1/sub0/file4.txt"]!.id) == Array("changed\n".utf8))
                let parents = try await serverGit(directory, ["rev-parse", "refs/heads/main^"])
                #expect(parents.trimmingCharacters(in: .whitespacesAndNewlines) == first.commit?.hex)

                // Pushing what the remote already has (an answer lost on the way) is harmless.
                let repeated = try await cache.push(commit: try #require(second.commit), to: "main", expecting: first.commit)
                #expect(repeated.upToDate)
                #expect(repeated.objectsSent == 0)

                // Same files again: nothing to do, no push.
                let receivePacksBefore = harness.statistics.requestCount(.receivePack)
                let third = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries([changed]), message: "again", author: testAuthor))
                #expect(!third.changed)
                #expect(third.push == nil)
                #expect(third.commit == second.commit)
                #expect(harness.statistics.requestCount(.receivePack) == receivePacksBefore)
            }
        }

        @Test("non-fast-forward is refused when someone pushed with the git CLI meanwhile")
        func nonFastForward() async throws {
            try await withHarness { harness in
                let (url, directory) = try await harness.repository("nff")
                let cache = try harness.store.cache(for: url)
                _ = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries([.text("a.txt", "a")]), message: "base", author: testAuthor))
                let fetched = try await cache.fetch(branches: ["main"])
                let tip = try #require(fetched.tip("main"))
                let tree = try await cache.buildTree(parent: tip, files: .entries([.text("b.txt", "b")]))
                let commit = try await cache.commit(tree: tree.tree, parents: [tip], message: "mine", author: testAuthor)

                // Someone else pushes in between.
                let theirs = try await seedCommit(in: directory, files: ["theirs.txt": Data("t".utf8)], message: "theirs")

                let error = await expectGitError { _ = try await cache.push(commit: commit, to: "main", expecting: tip) }
                #expect(error?.code == .nonFastForward)
                #expect(error?.isRetryable == true)
                #expect(try await serverHead(directory) == theirs)

                // A commit that does not descend from the expected tip is refused before any network traffic.
                let unrelated = try await cache.commit(tree: tree.tree, parents: [], message: "orphan", author: testAuthor)
                let requests = harness.statistics.requestCount()
                let orphan = await expectGitError { _ = try await cache.push(commit: unrelated, to: "main", expecting: tip) }
                #expect(orphan?.code == .nonFastForward)
                #expect(harness.statistics.requestCount() == requests)

                // Creating a branch that already exists is refused too.
                let exists = await expectGitError { _ = try await cache.push(commit: commit, to: "main", expecting: nil) }
                #expect(exists?.code == .nonFastForward)
                #expect(try await serverHead(directory) == theirs)
            }
        }

        @Test("server-side refusals arrive through push_update_reference: hook → push_rejected, moved ref → non_fast_forward")
        func serverRefusals() async throws {
            try await withHarness { harness in
                let (url, directory) = try await harness.repository("hooks")
                let cache = try harness.store.cache(for: url)
                let base = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries([.text("a.txt", "a")]), message: "base", author: testAuthor))

                try installHook(directory, "pre-receive", "#!/bin/sh\necho 'policy says no' >&2\nexit 1\n")
                let declined = await expectGitError {
                    _ = try await cache.publish(
                        PublishRequest(branch: "main", files: .entries([.text("b.txt", "b")]), message: "x", author: testAuthor))
                }
                #expect(declined?.code == .pushRejected)
                #expect(declined?.message.contains("policy says no") == true)
                #expect(try await serverHead(directory) == base.commit?.hex)
                try FileManager.default.removeItem(at: directory.appendingPathComponent("hooks/pre-receive"))

                // The update hook moves main after libgit2 saw the advertisement: the server's
                // compare-and-swap fails, which only the callback status reports.
                let other = try await seedCommit(in: directory, files: ["other.txt": Data("o".utf8)], branch: "other")
                try installHook(directory, "update", "#!/bin/sh\ngit update-ref refs/heads/main \(other)\nexit 0\n")
                let fetched = try await cache.fetch(branches: ["main"])
                let tip = try #require(fetched.tip("main"))
                let tree = try await cache.buildTree(parent: tip, files: .entries([.text("c.txt", "c")]))
                let commit = try await cache.commit(tree: tree.tree, parents: [tip], message: "raced", author: testAuthor)
                let raced = await expectGitError { _ = try await cache.push(commit: commit, to: "main", expecting: tip) }
                #expect(raced?.code == .nonFastForward)
                #expect(try await serverHead(directory) == other)
            }
        }

        @Test("publish re-fetches and rebuilds when the branch moves during the push")
        func publishRetries() async throws {
            try await withHarness { harness in
                let (url, directory) = try await harness.repository("retry")
                let cache = try harness.store.cache(for: url)
                _ = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries([.text("a.txt", "a")]), message: "base", author: testAuthor))
                let other = try await seedCommit(in: directory, files: ["other.txt": Data("o".utf8)], branch: "other")
                try installHook(directory, "update", """
                    #!/bin/sh
                    [ -f moved-once ] && exit 0
                    touch moved-once
                    git update-ref refs/heads/main \(other)
                    exit 0

                    """)
                let result = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries([.text("mine.txt", "m")]), message: "mine", author: testAuthor))
                #expect(result.attempts == 2)
                #expect(result.parent?.hex == other)
                #expect(try await serverHead(directory) == result.commit?.hex)
                let tree = try await serverTree(directory)
                #expect(Set(tree.keys) == ["other.txt", "mine.txt"])
            }
        }

        @Test("wrong credentials: auth_failed, secret absent from description and message; right ones work")
        func basicAuth() async throws {
            try await withHarness(auth: .basic(username: Self.user, password: Self.password)) { harness in
                let (url, directory) = try await harness.repository("basic")
                let cache = try harness.store.cache(for: url)
                let wrongSecret = "wrong-Secret-4242424242"
                let wrong = TransportOptions(credentials: .userPassword(username: Self.user, password: wrongSecret))
                let error = await expectGitError { _ = try await cache.fetch(branches: ["main"], transport: wrong) }
                #expect(error?.code == .authFailed)
                #expect(error?.description.contains(wrongSecret) == false)
                #expect(error?.message.contains(wrongSecret) == false)
                // Attempts are capped: anonymous probe plus one try with the credentials.
                #expect(harness.statistics.requestCount(.infoRefs, status: 401) == 2)

                let none = await expectGitError { _ = try await cache.fetch(branches: ["main"]) }
                #expect(none?.code == .authFailed)

                let right = TransportOptions(credentials: .userPassword(username: Self.user, password: Self.password))
                let result = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries([.text("a", "a")]), message: "m", author: testAuthor),
                    transport: right)
                #expect(try await serverHead(directory) == result.commit?.hex)
                let wrongPush = await expectGitError {
                    _ = try await cache.publish(
                        PublishRequest(branch: "main", files: .entries([.text("b", "b")]), message: "m", author: testAuthor),
                        transport: wrong)
                }
                #expect(wrongPush?.code == .authFailed)
                #expect(wrongPush?.description.contains(wrongSecret) == false)
            }
        }

        @Test("Bearer token in a custom header: works without a 401 round trip; a wrong token is auth_failed and redacted")
        func bearer() async throws {
            try await withHarness(auth: .bearer(token: Self.token)) { harness in
                let (url, directory) = try await harness.repository("bearer")
                let cache = try harness.store.cache(for: url)
                let options = TransportOptions(credentials: .bearerToken(Self.token))
                let result = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries([.text("a", "a")]), message: "m", author: testAuthor),
                    transport: options)
                #expect(try await serverHead(directory) == result.commit?.hex)
                #expect(harness.statistics.requestCount(status: 401) == 0)

                let badToken = "bad-Token-1357913579"
                let error = await expectGitError {
                    _ = try await cache.fetch(branches: ["main"], transport: TransportOptions(credentials: .bearerToken(badToken)))
                }
                #expect(error?.code == .authFailed)
                #expect(error?.description.contains(badToken) == false)
            }
        }

        @Test("missing branch is reported absent; missing repository is not_found; dead proxy is a network error")
        func absentThings() async throws {
            try await withHarness { harness in
                let (url, _) = try await harness.repository("absent")
                let cache = try harness.store.cache(for: url)
                let empty = try await cache.fetch(branches: ["main", "feature/x"])
                #expect(empty.remoteIsEmpty)
                #expect(empty.tips == ["main": ObjectID?.none, "feature/x": ObjectID?.none])
                #expect(empty.tip("main") == nil)

                _ = try await cache.publish(
                    PublishRequest(branch: "main", files: .entries([.text("a", "a")]), message: "m", author: testAuthor))
                let fetched = try await cache.fetch(branches: ["main", "nope"])
                #expect(fetched.tip("main") != nil)
                #expect(fetched.tip("nope") == nil)
                #expect(fetched.defaultBranch == "main")
                #expect(try await cache.trackedTip(of: "main") == fetched.tip("main"))

                let missing = try harness.store.cache(for: harness.fixture.baseURL.absoluteString + "ws/does-not-exist.git")
                let notFound = await expectGitError { _ = try await missing.fetch(branches: ["main"]) }
                #expect(notFound?.code == .notFound)

                let badBranch = await expectGitError { _ = try await cache.fetch(branches: ["bad..name"]) }
                #expect(badBranch?.code == .invalidArgument)
            }
        }

        @Test("cache is reused across jobs: the second fetch receives only what others pushed")
        func cacheReuse() async throws {
            try await withHarness { harness in
                let (url, directory) = try await harness.repository("reuse")
                // Someone else populated the repository.
                var files: [String: Data] = [:]
                for entry in Self.baseFiles { files[entry.path] = Data(entry.contents) }
                _ = try await seedCommit(in: directory, files: files, message: "seed")

                let cache = try harness.store.cache(for: url)
                let first = try await cache.fetch(branches: ["main"])
                #expect(first.objectsReceived == 60 + 9 + 1 + 1)

                // A new store instance (daemon restart) finds the same cache on disk.
                let restarted = GitCacheStore(dataDirectory: harness.data.url.path)
                let again = try restarted.cache(for: url)
                #expect(again.directory == cache.directory)
                let second = try await again.fetch(branches: ["main"])
                #expect(second.objectsReceived == 0)

                _ = try await seedCommit(in: directory, files: ["dir0/sub0/file0.txt": Data("new".utf8)], message: "other")
                let third = try await again.fetch(branches: ["main"])
                #expect(third.objectsReceived == 5)  // commit, root, dir0, dir0/sub0, blob
                let result = try await again.publish(
                    PublishRequest(branch: "feature", baseBranch: "main", files: .entries([.text("f.txt", "f")]),
                                   message: "feature", author: testAuthor))
                #expect(result.createdBranch)
                #expect(result.parent == third.tip("main"))
                #expect(result.push?.objectsSent == 3)  // blob, root tree, commit
                #expect(try await serverHead(directory, "feature") == result.commit?.hex)
            }
        }

        @Test("concurrent jobs on two remotes (and two branches of one remote) all land")
        func concurrentJobs() async throws {
            try await withHarness { harness in
                let (urlA, dirA) = try await harness.repository("concurrent-a")
                let (urlB, dirB) = try await harness.repository("concurrent-b")
                let store = harness.store
                let results = try await withThrowingTaskGroup(of: (String, String, PublishResult).self) { group in
                    for (url, name) in [(urlA, "a"), (urlB, "b")] {
                        for branch in ["main", "side"] {
                            group.addTask {
                                let cache = try store.cache(for: url)
                                let files = (0..<40).map { FileEntry.text("\(name)/\(branch)/f\($0).txt", "\(name) \(branch) \($0)") }
                                let result = try await cache.publish(
                                    PublishRequest(branch: branch, files: .entries(files), message: branch, author: testAuthor))
                                return (name, branch, result)
                            }
                        }
                    }
                    var collected: [(String, String, PublishResult)] = []
                    for try await result in group { collected.append(result) }
                    return collected
                }
                #expect(results.count == 4)
                for (name, branch, result) in results {
                    let directory = name == "a" ? dirA : dirB
                    #expect(try await serverHead(directory, branch) == result.commit?.hex)
                    #expect(try await serverTree(directory, "refs/heads/\(branch)").count == 40)
                }
            }
        }

        @Test("a cancelled task fails with cancelled")
        func cancellation() async throws {
            try await withHarness { harness in
                let (url, _) = try await harness.repository("cancel")
                let cache = try harness.store.cache(for: url)
                let task = Task { () async throws -> FetchResult in
                    withUnsafeCurrentTask { $0?.cancel() }
                    return try await cache.fetch(branches: ["main"])
                }
                let error = await expectGitError { _ = try await task.value }
                #expect(error?.code == .cancelled)
            }
        }
    }
}
