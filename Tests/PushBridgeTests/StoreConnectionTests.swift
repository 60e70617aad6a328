import Foundation
import PushBridge
import Testing

@Suite struct StoreConnectionTests {
    @Test(arguments: StoreBackend.allCases)
    func connectionCRUDWithSealedCredentials(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let store = env.store
            let created = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            #expect(created.id == "acme-cloud")
            #expect(created.credentialsKind == .oauth2)
            #expect(created.state == .active)
            #expect(created.createdAt == env.clock.now)
            #expect(created.apiURL == URL(string: "http://127.0.0.1:9/2.0"))
            #expect(try await store.connection(id: "acme-cloud") == created)
            #expect(try await store.credentials(connectionID: "acme-cloud") == sampleCredentials)

            await expectCode("connection_exists") {
                _ = try await store.createConnection(makeConnection(), credentials: sampleCredentials)
            }

            // No secret reaches the database in clear, and the blob is a v1 envelope under our kid.
            let raw = try await env.rawDatabaseText()
            #expect(!raw.contains("SECRET"))
            #expect(raw.contains("v1.\(testKey.kid)."))

            _ = try await store.createConnection(
                makeConnection("dc-1", provider: .bitbucketDataCenter),
                credentials: .accessToken(.init(token: "tok-SECRET")))
            #expect(try await store.listConnections().map(\.id) == ["acme-cloud", "dc-1"])

            env.clock.advance(.seconds(10))
            var changed = created
            changed.workspace = "acme-2"
            changed.gitURL = URL(string: "http://127.0.0.1:9/git")
            let updated = try await store.updateConnection(changed)
            #expect(updated.workspace == "acme-2")
            #expect(updated.gitURL == URL(string: "http://127.0.0.1:9/git"))
            #expect(updated.updatedAt == env.clock.now)
            #expect(updated.createdAt == created.createdAt)

            let oauth1 = Credentials.oauth1(.init(consumerKey: "pb", accessToken: "oa1-SECRET"))
            try await store.updateCredentials(connectionID: "acme-cloud", oauth1, state: .reauthorizationRequired)
            #expect(try await store.credentials(connectionID: "acme-cloud") == oauth1)
            let afterCredentials = try await store.connection(id: "acme-cloud")
            #expect(afterCredentials?.credentialsKind == .oauth1)
            #expect(afterCredentials?.state == .reauthorizationRequired)

            try await store.setConnectionState(connectionID: "acme-cloud", .active)
            #expect(try await store.connection(id: "acme-cloud")?.state == .active)
            try await store.updateCredentials(connectionID: "acme-cloud", sampleCredentials, state: nil)
            #expect(try await store.connection(id: "acme-cloud")?.state == .active)

            await expectCode("connection_not_found") { _ = try await store.credentials(connectionID: "nope") }
            await expectCode("connection_not_found") {
                try await store.updateCredentials(connectionID: "nope", sampleCredentials, state: nil)
            }
            await expectCode("connection_not_found") { try await store.setConnectionState(connectionID: "nope", .active) }
            await expectCode("connection_not_found") { _ = try await store.updateConnection(makeConnection("nope")) }

            #expect(try await store.deleteConnection(id: "dc-1"))
            #expect(try await store.deleteConnection(id: "dc-1") == false)
            #expect(try await store.connection(id: "dc-1") == nil)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func rotateKeyReSealsEveryRowInOneGo(_ backend: StoreBackend) async throws {
        let oldKey = MasterKey.generate()
        let newKey = MasterKey.generate()
        try await withStore(backend, vault: Vault(current: oldKey)) { env in
            for i in 0..<3 {
                _ = try await env.store.createConnection(
                    makeConnection("c\(i)"), credentials: .accessToken(.init(token: "tok-\(i)")))
            }
            let rotating = try await env.openAnother(vault: Vault(current: newKey, previous: [oldKey]))
            #expect(try await rotating.rotateKey() == 3)

            let newOnly = try await env.openAnother(vault: Vault(current: newKey))
            for i in 0..<3 {
                #expect(try await newOnly.credentials(connectionID: "c\(i)") == .accessToken(.init(token: "tok-\(i)")))
            }
            let oldOnly = try await env.openAnother(vault: Vault(current: oldKey))
            let error = await expectCode("master_key_mismatch") { _ = try await oldOnly.credentials(connectionID: "c0") }
            #expect(error?.message.contains(newKey.kid) == true)
            #expect(try await env.rawDatabaseText().contains("v1.\(newKey.kid).") == true)
            #expect(try await env.rawDatabaseText().contains("v1.\(oldKey.kid).") == false || backend == .sqlite)

            // A vault that cannot open one row rotates nothing (one transaction).
            let unrelated = try await env.openAnother(vault: Vault(current: MasterKey.generate()))
            await expectCode("master_key_mismatch") { _ = try await unrelated.rotateKey() }
            #expect(try await newOnly.credentials(connectionID: "c2") == .accessToken(.init(token: "tok-2")))
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func missingMasterKeyIsTyped(_ backend: StoreBackend) async throws {
        try await withStore(backend, vault: Vault(current: nil)) { env in
            await expectCode("master_key_missing") {
                _ = try await env.store.createConnection(makeConnection(), credentials: sampleCredentials)
            }
            let connections = try await env.store.listConnections()
            #expect(connections.isEmpty)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func connectionLockSerializesAcrossStoreInstances(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            _ = try await env.store.createConnection(makeConnection(), credentials: .accessToken(.init(token: "0")))
            let other = try await env.openAnother()
            let events = Recorder<[String]>([])
            let perTask = 5
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, store) in [env.store, other, env.store, other].enumerated() {
                    group.addTask {
                        for _ in 0..<perTask {
                            try await store.withConnectionLock(connectionID: "acme-cloud") { locked in
                                events.mutate { $0.append("enter \(index)") }
                                // Read-modify-write of the credentials: lost updates would show
                                // in the final counter if two bodies overlapped.
                                guard case .accessToken(let t) = try await locked.credentials(), let n = Int(t.token)
                                else { throw CancellationError() }
                                try await Task.sleep(for: .milliseconds(2))
                                try await locked.updateCredentials(.accessToken(.init(token: "\(n + 1)")), state: nil)
                                events.mutate { $0.append("exit \(index)") }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let log = events.snapshot
            #expect(log.count == 4 * perTask * 2)
            for pair in stride(from: 0, to: log.count, by: 2) {
                let enter = log[pair]
                let exit = log[pair + 1]
                #expect(enter.hasPrefix("enter "))
                #expect(exit == "exit " + enter.dropFirst("enter ".count), "overlap at \(pair): \(log)")
            }
            #expect(try await env.store.credentials(connectionID: "acme-cloud") == .accessToken(.init(token: "\(4 * perTask)")))
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func lockedWritesSurviveAThrowingBodyAndTheLockIsReleased(_ backend: StoreBackend) async throws {
        struct Boom: Error {}
        try await withStore(backend) { env in
            _ = try await env.store.createConnection(makeConnection(), credentials: sampleCredentials)
            let rotated = Credentials.oauth2(.init(accessToken: "new-at", refreshToken: "new-rt"))
            await #expect(throws: Boom.self) {
                try await env.store.withConnectionLock(connectionID: "acme-cloud") { locked in
                    #expect(try await locked.connection().id == "acme-cloud")
                    try await locked.updateCredentials(rotated, state: nil)
                    throw Boom()
                }
            }
            #expect(try await env.store.credentials(connectionID: "acme-cloud") == rotated)
            // Released: another instance gets the lock and sees the state change it makes.
            let other = try await env.openAnother()
            let state = try await other.withConnectionLock(connectionID: "acme-cloud") { locked in
                try await locked.setState(.reauthorizationRequired)
                return try await locked.connection().state
            }
            #expect(state == .reauthorizationRequired)
            await expectCode("connection_not_found") {
                try await env.store.withConnectionLock(connectionID: "nope") { _ in }
            }
        }
    }
}
