import Foundation
import PushBridge
import Testing

/// `consumeOAuthState`: the single-use guard of OAuth callbacks, on both backends.
@Suite struct StoreOAuthStateTests {
    @Test(arguments: StoreBackend.allCases)
    func firstUseWinsReplaysLose(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env async throws in
            let expiresAt = env.clock.now.addingTimeInterval(600)
            #expect(try await env.store.consumeOAuthState(nonce: "n-1", expiresAt: expiresAt))
            #expect(try await env.store.consumeOAuthState(nonce: "n-1", expiresAt: expiresAt) == false)
            #expect(try await env.store.consumeOAuthState(nonce: "n-2", expiresAt: expiresAt))

            // A second daemon on the same database sees the nonce as used.
            let other = try await env.openAnother()
            #expect(try await other.consumeOAuthState(nonce: "n-1", expiresAt: expiresAt) == false)
            #expect(try await other.consumeOAuthState(nonce: "n-3", expiresAt: expiresAt))
            #expect(try await env.store.consumeOAuthState(nonce: "n-3", expiresAt: expiresAt) == false)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func concurrentCallbacksConsumeOnce(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env async throws in
            let stores = [env.store, try await env.openAnother(), try await env.openAnother()]
            let expiresAt = env.clock.now.addingTimeInterval(600)
            let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<12 {
                    let store = stores[index % stores.count]
                    group.addTask { try await store.consumeOAuthState(nonce: "race", expiresAt: expiresAt) }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(wins == 1)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func expiredRowsArePurged(_ backend: StoreBackend) async throws {
        try await withStore(backend) { env async throws in
            let expiresAt = env.clock.now.addingTimeInterval(60)
            #expect(try await env.store.consumeOAuthState(nonce: "old", expiresAt: expiresAt))
            #expect(try await env.store.consumeOAuthState(nonce: "old", expiresAt: expiresAt) == false)
            // Past its expiry the row goes away with the next consume: the signed state is refused by
            // then, so the store no longer has to remember it (and the table does not grow forever).
            env.clock.advance(.seconds(61))
            #expect(try await env.store.consumeOAuthState(nonce: "fresh", expiresAt: env.clock.now.addingTimeInterval(60)))
            // "old" is accepted again only because its row was deleted.
            #expect(try await env.store.consumeOAuthState(nonce: "old", expiresAt: env.clock.now.addingTimeInterval(60)))
            #expect(try await env.store.consumeOAuthState(nonce: "fresh", expiresAt: env.clock.now.addingTimeInterval(60)) == false)
        }
    }
}
