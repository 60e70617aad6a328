import AsyncHTTPClient
import BitbucketKit
import Crypto
import Foundation
import Logging
import NIOCore
import ServiceLifecycle

/// Where and how job-completion webhooks are delivered.
public struct WebhookConfiguration: Sendable {
    /// `PUSHBRIDGE_WEBHOOK_URL`.
    public var url: URL
    /// `PUSHBRIDGE_WEBHOOK_SECRET`: key of the `X-Pushbridge-Signature` HMAC.
    public var secret: Secret
    /// How often the outbox is polled for due deliveries (default 1 s).
    public var pollInterval: Duration
    /// Deliveries fetched per pass (default 50).
    public var batchSize: Int
    /// Backoff before retry `n` is uniform in `[cap/2, cap]`, cap = `initialBackoff · 2^(n−1)`
    /// bounded by `maxBackoff` (defaults 5 s, 10 min).
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// A delivery older than this is abandoned (default 24 h).
    public var maxAge: Duration
    /// Timeout of one POST (default 10 s).
    public var requestTimeout: Duration
    /// Clock; must agree with the store's (its `dueWebhooks` compares against its own clock).
    public var now: @Sendable () -> Date
    public var logger: Logger

    public init(
        url: URL,
        secret: Secret,
        pollInterval: Duration = .seconds(1),
        batchSize: Int = 50,
        initialBackoff: Duration = .seconds(5),
        maxBackoff: Duration = .seconds(600),
        maxAge: Duration = .seconds(86_400),
        requestTimeout: Duration = .seconds(10),
        now: @escaping @Sendable () -> Date = { Date() },
        logger: Logger = Logger(label: "pushbridge.webhooks")
    ) {
        self.url = url
        self.secret = secret
        self.pollInterval = pollInterval
        self.batchSize = batchSize
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxAge = maxAge
        self.requestTimeout = requestTimeout
        self.now = now
        self.logger = logger
    }
}

/// What one ``WebhookDispatcher/deliverDue()`` pass did.
public struct WebhookPassReport: Sendable, Hashable {
    public var delivered: Int = 0
    public var failed: Int = 0
    public var abandoned: Int = 0
    public init() {}
}

/// Delivers the store's webhook outbox (`Store.enqueueWebhook`) to `PUSHBRIDGE_WEBHOOK_URL`.
///
/// Each delivery is `POST`ed with the exact stored body and the headers
/// `Content-Type: application/json`, `X-Pushbridge-Event: job.<state>` (from the body's `state`),
/// `X-Pushbridge-Delivery: <outbox id>` (stable across retries: receivers de-duplicate on it) and
/// `X-Pushbridge-Signature: sha256=<hex HMAC-SHA256(secret, body)>`. A 2xx marks it delivered;
/// anything else is retried with exponential backoff and jitter until ``WebhookConfiguration/maxAge``.
/// The outbox lives in the store, so a restart (or another daemon) picks up where this one stopped.
/// Delivery is at-least-once: a crash between the POST and the store update repeats the POST.
public struct WebhookDispatcher: Service {
    private let store: any Store
    private let configuration: WebhookConfiguration
    private let httpClient: HTTPClient

    public init(store: any Store, configuration: WebhookConfiguration, httpClient: HTTPClient = .shared) {
        self.store = store
        self.configuration = configuration
        self.httpClient = httpClient
    }

    /// `sha256=` + lowercase hex of HMAC-SHA256 of `body` keyed with `secret`.
    public static func signature(body: some DataProtocol, secret: Secret) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.reveal().utf8)))
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    /// Polls the outbox until graceful shutdown (or cancellation). A POST in progress when shutdown
    /// begins is cancelled; its delivery stays in the outbox and is sent again after the restart.
    public func run() async throws {
        // Graceful shutdown cancels the poll sleep; that is the normal end, not a failure (a
        // thrown CancellationError would make ServiceGroup, and so `pushbridge serve`, fail on SIGTERM).
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await deliverDue()
                try? await Task.sleep(for: configuration.pollInterval)
            }
        }
    }

    /// One pass: sends every due delivery once, in order, and records the outcome.
    @discardableResult
    public func deliverDue() async -> WebhookPassReport {
        var report = WebhookPassReport()
        let due: [WebhookDelivery]
        do {
            due = try await store.dueWebhooks(limit: configuration.batchSize)
        } catch {
            configuration.logger.error("reading the webhook outbox failed", metadata: ["error": "\(error)"])
            return report
        }
        for delivery in due {
            if Task.isCancelled { break }
            await deliver(delivery, report: &report)
        }
        return report
    }

    private func deliver(_ delivery: WebhookDelivery, report: inout WebhookPassReport) async {
        let logger = configuration.logger
        let meta: Logger.Metadata = ["delivery": "\(delivery.id)", "job": "\(delivery.jobID)"]
        let now = configuration.now()
        if now.timeIntervalSince(delivery.createdAt) > configuration.maxAge.seconds {
            // The outbox has no "abandoned" state: parking the row in the far future keeps it out of
            // `dueWebhooks` for good while its `last_error` records why.
            try? await store.markWebhookAttempt(
                id: delivery.id, nextAttemptAt: .distantFuture, error: "abandoned: older than the maximum age")
            logger.error("webhook delivery abandoned after maximum age", metadata: meta.merging(["attempts": "\(delivery.attempts)"]) { a, _ in a })
            report.abandoned += 1
            return
        }
        let outcome = await post(delivery)
        do {
            switch outcome {
            case .success:
                try await store.markWebhookDelivered(id: delivery.id)
                logger.info("webhook delivered", metadata: meta.merging(["attempts": "\(delivery.attempts + 1)"]) { a, _ in a })
                report.delivered += 1
            case .failure(let reason):
                let delay = backoff(afterAttempt: delivery.attempts + 1)
                try await store.markWebhookAttempt(
                    id: delivery.id, nextAttemptAt: now.addingTimeInterval(delay.seconds), error: reason)
                logger.warning("webhook delivery failed; will retry", metadata: meta.merging(["error": "\(reason)", "retryIn": "\(delay)"]) { a, _ in a })
                report.failed += 1
            }
        } catch {
            logger.error("recording a webhook attempt failed", metadata: meta.merging(["error": "\(error)"]) { a, _ in a })
        }
    }

    enum Outcome { case success, failure(String) }

    private func post(_ delivery: WebhookDelivery) async -> Outcome {
        var request = HTTPClientRequest(url: configuration.url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "pushbridge-webhooks")
        request.headers.add(name: "X-Pushbridge-Event", value: Self.event(of: delivery.body))
        request.headers.add(name: "X-Pushbridge-Delivery", value: String(delivery.id))
        request.headers.add(name: "X-Pushbridge-Signature", value: Self.signature(body: delivery.body, secret: configuration.secret))
        request.body = .bytes(ByteBuffer(bytes: delivery.body))
        do {
            let c = configuration.requestTimeout.components
            let response = try await httpClient.execute(
                request, timeout: .nanoseconds(c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000))
            // Drain (bounded) so the connection can be reused; the content is not needed.
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let status = Int(response.status.code)
            return (200..<300).contains(status) ? .success : .failure("HTTP \(status)")
        } catch {
            return .failure("transport error: \(type(of: error))")
        }
    }

    /// `job.<state>` from the body's top-level `state`, else `job.finished`.
    static func event(of body: Data) -> String {
        if let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
           let state = object["state"] as? String, !state.isEmpty
        {
            return "job.\(state)"
        }
        return "job.finished"
    }

    /// Full-ish jitter: uniform in `[cap/2, cap]`, so retries of many deliveries spread out but never
    /// collapse to zero.
    func backoff(afterAttempt attempt: Int) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let cap = min(configuration.initialBackoff.seconds * pow(2, Double(exponent)), configuration.maxBackoff.seconds)
        return .milliseconds(Int64(Double.random(in: (cap / 2)...max(cap, cap / 2)) * 1000))
    }
}
