import AsyncHTTPClient
import BitbucketKit
import Crypto
import Foundation
import Hummingbird
import Logging
import PushBridge
import Synchronization
import Testing

/// A Hummingbird receiver that verifies the signature and answers 500 for the first `failFirst` requests.
final class WebhookReceiver: Sendable {
    struct Received: Sendable { var delivery: String; var event: String; var signatureValid: Bool; var status: Int }
    let secret: String
    let failFirst: Int
    let received = Mutex<[Received]>([])

    init(secret: String, failFirst: Int) {
        self.secret = secret
        self.failFirst = failFirst
    }

    func with(_ body: (URL) async throws -> Void) async throws {
        let router = Router()
        router.post("/hook") { request, _ -> Response in
            let bytes = try await request.body.collect(upTo: 1 << 20)
            let body = Data(buffer: bytes)
            let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(self.secret.utf8)))
            let expected = "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
            let valid = request.headers[.init("X-Pushbridge-Signature")!] == expected
            let status = self.received.withLock { list -> Int in
                let status = list.count < self.failFirst ? 500 : (valid ? 200 : 401)
                list.append(Received(
                    delivery: request.headers[.init("X-Pushbridge-Delivery")!] ?? "",
                    event: request.headers[.init("X-Pushbridge-Event")!] ?? "", signatureValid: valid, status: status))
                return status
            }
            return Response(status: .init(code: status))
        }
        let port = Mutex<Int?>(nil)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } },
            logger: Logger(label: "receiver") { _ in SwiftLogNoOpLogHandler() })
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            var bound: Int?
            for _ in 0..<500 where bound == nil {
                bound = port.withLock { $0 }
                if bound == nil { try await Task.sleep(for: .milliseconds(10)) }
            }
            guard let bound else { throw CancellationError() }
            do { try await body(URL(string: "http://127.0.0.1:\(bound)/hook")!) } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
    }
}

@Suite("WebhookDispatcher")
struct WebhookDispatcherTests {
    static let secret = "whsec-test-secret-0123456789"
    static let body = Data(#"{"id":"job-1","state":"succeeded","result":{"changed":true}}"#.utf8)

    func configuration(_ url: URL, _ env: StoreEnvironment, logger: Logger) -> WebhookConfiguration {
        WebhookConfiguration(
            url: url, secret: Secret(Self.secret), pollInterval: .milliseconds(20), initialBackoff: .seconds(5),
            requestTimeout: .seconds(5), now: { env.clock.now }, logger: logger)
    }

    @Test("failures then success → delivered once, with retries; restart mid-way on a new store instance", arguments: StoreBackend.allCases)
    func retriesAcrossRestart(backend: StoreBackend) async throws {
        try await withStore(backend) { env in
            let receiver = WebhookReceiver(secret: Self.secret, failFirst: 2)
            let logs = TokenLogCapture()
            try await receiver.with { url in
                let delivery = try await env.store.enqueueWebhook(jobID: "job-1", body: Self.body)

                let first = WebhookDispatcher(store: env.store, configuration: configuration(url, env, logger: logs.logger("wh")))
                #expect(await first.deliverDue().failed == 1)
                // Not due again until the backoff has passed.
                #expect(await first.deliverDue() == WebhookPassReport())

                // "Restart": another store instance and dispatcher.
                let restartedStore = try await env.openAnother()
                let second = WebhookDispatcher(store: restartedStore, configuration: configuration(url, env, logger: logs.logger("wh")))
                env.clock.advance(.seconds(6))
                #expect(await second.deliverDue().failed == 1)
                env.clock.advance(.seconds(11))
                #expect(await second.deliverDue().delivered == 1)
                env.clock.advance(.seconds(3600))
                #expect(await second.deliverDue() == WebhookPassReport())
                #expect(try await restartedStore.dueWebhooks(limit: 10).isEmpty)

                let got = receiver.received.withLock { $0 }
                print("[figures] \(backend): webhook attempts = \(got.count), statuses = \(got.map(\.status))")
                #expect(got.map(\.status) == [500, 500, 200])
                #expect(got.allSatisfy { $0.signatureValid && $0.delivery == String(delivery.id) && $0.event == "job.succeeded" })
                logs.expectFree(of: [Self.secret])
            }
        }
    }

    @Test("run() as a Service delivers from the outbox and stops on cancellation")
    func runsAsService() async throws {
        try await withStore(.sqlite) { env in
            let receiver = WebhookReceiver(secret: Self.secret, failFirst: 0)
            try await receiver.with { url in
                _ = try await env.store.enqueueWebhook(jobID: "job-2", body: Self.body)
                let dispatcher = WebhookDispatcher(
                    store: env.store, configuration: configuration(url, env, logger: Logger(label: "wh")))
                let task = Task { try await dispatcher.run() }
                var delivered = false
                for _ in 0..<500 where !delivered {  // deadline: 500 × 10 ms
                    delivered = receiver.received.withLock { !$0.isEmpty }
                    if !delivered { try await Task.sleep(for: .milliseconds(10)) }
                }
                task.cancel()
                _ = await task.result
                #expect(delivered)
                #expect(try await env.store.dueWebhooks(limit: 10).isEmpty)
            }
        }
    }

    @Test("signature is HMAC-SHA256 of the exact body")
    func signatureFormat() {
        let signature = WebhookDispatcher.signature(body: Data("hello".utf8), secret: Secret("key"))
        // RFC 4231-style reference value computed with `openssl dgst -sha256 -hmac key`.
        #expect(signature == "sha256=9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b")
    }
}
