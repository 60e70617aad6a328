import Foundation

/// How failed requests are retried.
///
/// Retries apply to `429`, `502`, `503`, `504`, connection failures and timeouts. The delay before
/// retry *n* (1-based) is the server's `Retry-After` when present, otherwise "full jitter"
/// exponential backoff: a uniformly random duration in `0...min(maxBackoff, initialBackoff·2ⁿ⁻¹)`.
/// Retrying stops after `maxAttempts` attempts or when the next delay would end past
/// `maxTotalTime` measured from the first attempt, whichever comes first; the last error is thrown
/// (still marked `retryable`, so a job-level retry can try again later).
///
/// Only idempotent requests (GET, HEAD, PUT, DELETE) are retried by the transport. Creating
/// operations (`POST`) are retried by the clients only after a lookup proved the first attempt did
/// not take effect.
public struct RetryPolicy: Sendable, Hashable {
    /// Total attempts including the first one; `1` disables retries.
    public var maxAttempts: Int
    /// Cap of the first backoff interval.
    public var initialBackoff: Duration
    /// Upper bound of any single backoff interval (not applied to `Retry-After`, which is honoured
    /// as long as it fits in `maxTotalTime`).
    public var maxBackoff: Duration
    /// Upper bound of the time spent on one operation including its retries.
    public var maxTotalTime: Duration

    public init(
        maxAttempts: Int = 4,
        initialBackoff: Duration = .milliseconds(500),
        maxBackoff: Duration = .seconds(20),
        maxTotalTime: Duration = .seconds(90)
    ) {
        precondition(maxAttempts >= 1, "maxAttempts must be at least 1")
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxTotalTime = maxTotalTime
    }

    /// Four attempts, 0.5 s initial backoff, 20 s cap, 90 s total.
    public static let `default` = RetryPolicy()

    /// A single attempt.
    public static let none = RetryPolicy(maxAttempts: 1)

    /// The upper bound of the jittered backoff before retry number `retry` (1-based).
    public func backoffCap(forRetry retry: Int) -> Duration {
        let exponent = min(max(retry - 1, 0), 30)
        let scaled = initialBackoff * (1 << exponent)
        return min(scaled, maxBackoff)
    }

    /// A full-jitter backoff for retry number `retry` (1-based): uniform in `0...backoffCap`.
    public func jitteredBackoff(forRetry retry: Int) -> Duration {
        let cap = backoffCap(forRetry: retry)
        let capNanos = cap.components.seconds * 1_000_000_000 + cap.components.attoseconds / 1_000_000_000
        guard capNanos > 0 else { return .zero }
        return .nanoseconds(Int64.random(in: 0...capNanos))
    }
}

/// Waits between retries. Production code uses ``TaskSleeper``; tests inject one that records the
/// requested delays and returns at once, so they can assert on `Retry-After` handling without
/// timing anything.
public protocol RetrySleeper: Sendable {
    /// Suspends for `duration` (or less, for test doubles). Throws `CancellationError` when the task
    /// is cancelled.
    func sleep(for duration: Duration) async throws
}

/// ``RetrySleeper`` that suspends the current task with `Task.sleep`.
public struct TaskSleeper: RetrySleeper {
    public init() {}
    public func sleep(for duration: Duration) async throws {
        try await Task.sleep(for: duration)
    }
}

/// Book-keeping for one operation's retries.
struct RetryBudget: Sendable {
    let policy: RetryPolicy
    let started: ContinuousClock.Instant
    private(set) var attempts = 0

    init(policy: RetryPolicy) {
        self.policy = policy
        self.started = .now
    }

    mutating func recordAttempt() {
        attempts += 1
    }

    mutating func forgetAttempt() {
        attempts -= 1
    }

    /// The delay before the next attempt, or `nil` when `error` must be thrown.
    func delayBeforeRetry(after error: BitbucketError) -> Duration? {
        guard error.retryable, attempts < policy.maxAttempts else { return nil }
        let delay = error.retryAfter ?? policy.jitteredBackoff(forRetry: attempts)
        let deadline = started + policy.maxTotalTime
        guard ContinuousClock.now + delay <= deadline else { return nil }
        return delay
    }
}
