import AsyncHTTPClient
import BitbucketEmulator
import Foundation
import Testing

@Suite("Emulator: fault injection and counters")
struct EmulatorFaultTests {
    @Test func rateLimitThenRecover() async throws {
        try await EmulatorHarness.with { h in
            let token = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
            await h.emulator.injectFault(EmulatorFault(method: "GET", path: "/2.0/user", action: .status(429), count: 2))
            let first = try await h.send("GET", h.cloudAPI + "/user", bearer: token)
            let second = try await h.send("GET", h.cloudAPI + "/user", bearer: token)
            let third = try await h.send("GET", h.cloudAPI + "/user", bearer: token)
            let statuses: [Int] = [first.status, second.status, third.status]
            #expect(statuses == [429, 429, 200])
            #expect(first.header("Content-Type")?.hasPrefix("text/plain") == true)
            #expect(first.header("Retry-After") == nil)
            #expect(!first.text.isEmpty)
            // A POST is not matched by a GET-only rule.
            await h.emulator.injectFault(EmulatorFault(method: "POST", path: "/2.0/user", action: .status(503), count: nil))
            #expect(try await h.send("GET", h.cloudAPI + "/user", bearer: token).status == 200)
            await h.emulator.clearFaults()

            let c = await h.emulator.counters()
            #expect(c.requestCount(method: "GET", route: "/2.0/user", status: 429) == 2)
            #expect(c.requestCount(method: "GET", route: "/2.0/user", status: 200) == 2)
        }
    }

    @Test func serverErrorsUseTheProductsErrorFormat() async throws {
        try await EmulatorHarness.with { h in
            let token = try await h.emulator.issueTokens(product: .dataCenter, username: "alice").accessToken
            await h.emulator.injectFault(
                EmulatorFault(path: "/rest/api/1.0/projects/*/repos", action: .status(503, retryAfter: 7), count: 3))
            var statuses: [Int] = []
            for _ in 0..<4 {
                statuses.append(try await h.send("GET", "/rest/api/1.0/projects/PRJ/repos", bearer: token).status)
            }
            #expect(statuses == [503, 503, 503, 200])
            await h.emulator.injectFault(EmulatorFault(path: "/rest/**", action: .status(502), count: 1))
            let r = try await h.send("GET", "/rest/api/1.0/projects/PRJ/repos", bearer: token)
            #expect(r.status == 502)
            #expect(r.json?["errors"]?.arrayValue?.first?["message"]?.stringValue != nil)
            await h.emulator.injectFault(
                EmulatorFault(path: "/rest/api/1.0/projects/*/repos", action: .status(503, retryAfter: 7), count: 1))
            #expect(try await h.send("GET", "/rest/api/1.0/projects/PRJ/repos", bearer: token).header("Retry-After") == "7")
        }
    }

    @Test func droppedConnectionAndLatency() async throws {
        try await EmulatorHarness.with { h in
            let token = try await h.emulator.issueTokens(product: .cloud, username: "alice").accessToken
            await h.emulator.injectFault(EmulatorFault(path: "/2.0/user", action: .dropConnection, count: 1))
            await #expect(throws: (any Error).self) {
                _ = try await h.send("GET", h.cloudAPI + "/user", bearer: token)
            }
            await h.emulator.injectFault(EmulatorFault(path: "/2.0/**", action: .latency(.milliseconds(50)), count: 1))
            #expect(try await h.send("GET", h.cloudAPI + "/user", bearer: token).status == 200)
            let c = await h.emulator.counters()
            #expect(c.requestCount(route: "/2.0/user", status: 0) == 1)
            #expect(c.requestCount(route: "/2.0/user", status: 200) == 1)
        }
    }

    @Test func unknownRoutesAnswerInTheProductsFormat() async throws {
        try await EmulatorHarness.with { h in
            let cloud = try await h.send("GET", h.cloudAPI + "/nothing/here")
            #expect(cloud.status == 404)
            #expect(cloud.json?["type"]?.stringValue == "error")
            let dc = try await h.send("GET", "/rest/api/1.0/nothing")
            #expect(dc.status == 404)
            #expect(dc.json?["errors"] != nil)
            let method = try await h.send("DELETE", h.cloudAPI + "/user")
            #expect(method.status == 405)
            #expect(await h.emulator.counters().requestCount(route: "unmatched") == 3)
        }
    }
}
