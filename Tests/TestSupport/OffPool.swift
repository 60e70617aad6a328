import Foundation

/// Runs blocking `body` (a `waitpid`, `waitUntilExit`, blocking `read`/`recv`, …) on a thread of its
/// own and suspends until it returns.
///
/// Why: Swift's cooperative pool has one thread per core (two on CI). The full suite runs every
/// test target in one process, in parallel, so a test that blocks a pool thread in a synchronous
/// wait starves unrelated tests' tasks — servers, heartbeats, watchdog services — for as long as the
/// wait lasts. A dedicated `Thread` costs a little memory and leaves the pool alone.
public func offCooperativePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = "pushbridge-test-blocking"
        thread.start()
    }
}

/// Non-throwing ``offCooperativePool(_:)``.
public func offCooperativePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.name = "pushbridge-test-blocking"
        thread.start()
    }
}
