import AsyncHTTPClient
import BitbucketEmulator
import Foundation
import NIOHTTP1
import PushBridge
import PushBridgeServer

/// The secrets one demo run generates; they reach the daemon through its env file only.
struct DemoSecrets {
    let apiToken: String
    let masterKey: String
    let clientSecret: String

    var all: [(name: String, value: String)] {
        [("API token", apiToken), ("master key", masterKey), ("Cloud client secret", clientSecret)]
    }
}

/// What the browser saw of the OAuth connect flow.
struct DemoConnectOutcome {
    /// `connection` of the callback's `200` answer.
    var connection: [String: Any]
    /// Status and error code the daemon answered when the same callback URL was replayed.
    var replayStatus: UInt
    var replayCode: String?
}

extension DemoRun {
    static func randomHex(_ bytes: Int) -> String {
        // SystemRandomNumberGenerator is a CSPRNG (getrandom(2) on Linux).
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    /// GETs `url` like a browser: no bearer token, no redirect following.
    func browse(_ browser: HTTPClient, _ url: String) async throws -> (status: UInt, location: String?, body: Data) {
        let response = try await browser.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        let body = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        return (response.status.code, response.headers.first(name: "Location"), body)
    }

    /// Connects the Cloud workspace through the daemon's OAuth routes, playing the user's browser:
    /// `authorize` (bearer token, JSON) → the emulator's consent page (auto-approved, redirect read
    /// from `Location`, not followed) → the daemon's public callback. Then replays the callback once,
    /// which the single-use `state` must refuse.
    func connect(api: APIClient, browser: HTTPClient, callback: String, emulator: BitbucketEmulator) async throws
        -> DemoConnectOutcome
    {
        let authorize = try await api.object(
            .GET, "/v1/oauth/\(Self.provider)/authorize?connection=\(Self.connectionID)&workspace=\(Self.workspace)")
        guard let url = authorize["url"] as? String else {
            throw DemoFailure("oauth authorize", "daemon answered without a url: \(authorize.keys.sorted())")
        }
        guard url.hasPrefix(emulator.endpoints.cloudSite.absoluteString) else {
            throw DemoFailure("oauth authorize", "authorize URL does not point at the emulator's site")
        }
        print("oauth:    daemon → \(Self.redactingQuery(url)) (expires \(authorize["expiresAt"] ?? "?"))")

        // The emulator approves as the configured user and redirects to the daemon's callback.
        let approval = try await browse(browser, url)
        guard (300..<400).contains(approval.status), let location = approval.location else {
            throw DemoFailure("oauth authorize", "emulator answered \(approval.status) without a redirect")
        }
        guard location.hasPrefix(callback + "?") else {
            throw DemoFailure("oauth authorize", "emulator redirected to \(Self.redactingQuery(location)), expected \(callback)")
        }
        print("oauth:    emulator approved → \(Self.redactingQuery(location))")

        let landing = try await browse(browser, location)
        guard landing.status == 200 else {
            let error = ((try? JSONSerialization.jsonObject(with: landing.body)) as? [String: Any])?["error"] as? [String: Any]
            throw DemoFailure(
                "oauth callback",
                "daemon answered \(landing.status) \(error?["code"] ?? ""): \(error?["message"] ?? String(decoding: landing.body.prefix(200), as: UTF8.self))")
        }
        let answer = (try? JSONSerialization.jsonObject(with: landing.body)) as? [String: Any]
        guard let connection = answer?["connection"] as? [String: Any], connection["id"] as? String == Self.connectionID else {
            throw DemoFailure("oauth callback", "answer does not carry connection \(Self.connectionID)")
        }
        print("oauth:    daemon callback → 200, connection \(Self.connectionID) \(connection["state"] ?? "?")")
        let replay = try await browse(browser, location)
        let replayError = ((try? JSONSerialization.jsonObject(with: replay.body)) as? [String: Any])?["error"] as? [String: Any]
        return DemoConnectOutcome(connection: connection, replayStatus: replay.status, replayCode: replayError?["code"] as? String)
    }

    /// `url` with its query values elided: `code` and `state` are one-time secrets.
    static func redactingQuery(_ url: String) -> String {
        guard let mark = url.firstIndex(of: "?") else { return url }
        let pairs = url[url.index(after: mark)...].split(separator: "&").map { pair -> String in
            let name = pair.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            return ["code", "state"].contains(name) ? "\(name)=…" : String(pair)
        }
        return url[..<mark] + "?" + pairs.joined(separator: "&")
    }

    /// Enqueues one generation and polls it to a final state, printing each state change.
    func runJob(generation: Int, source: [String: String], api: APIClient, label: String) async throws -> JobResult {
        let spec: [String: Any] = [
            "connection": Self.connectionID,
            "repository": ["slug": Self.slug, "create": true, "private": true, "project": "DEMO"],
            "source": source,
            "branch": Self.branch,
            "baseBranch": Self.baseBranch,
            "commit": [
                "message": Self.commitMessage(generation),
                "author": ["name": "pushbridge demo", "email": "demo@pushbridge.invalid"],
            ],
            "pullRequest": [
                "title": Self.pullRequestTitle(generation),
                "description": "Generated by `pushbridge demo`, generation \(generation).",
            ],
        ]
        let queued = try await api.object(
            .POST, "/v1/jobs", json: try JSONSerialization.data(withJSONObject: spec),
            headers: [("Idempotency-Key", "demo-\(Self.randomHex(8))-gen\(generation)")])
        guard let id = queued["id"] as? String else { throw DemoFailure("job \(generation)", "enqueue answered without an id") }
        print("gen \(generation):    \(label)")
        print("          job \(id): \(queued["state"] ?? "?")", terminator: "")
        var last = queued["state"] as? String ?? ""
        let deadline = ContinuousClock.now + .seconds(120)
        let decoder = JSONDecoder()
        while true {
            let job = try decoder.decode(DemoJob.self, from: try await api.send(.GET, "/v1/jobs/\(id)"))
            if job.state != last {
                print(" → \(job.state)\(job.attempts > 1 ? " (attempt \(job.attempts))" : "")", terminator: "")
                last = job.state
            }
            if job.isTerminal {
                print("")
                guard job.state == "succeeded", let result = job.result else {
                    throw DemoFailure(
                        "job \(generation)",
                        "\(job.state): \(job.error.map { "[\($0.code)] \($0.message)" } ?? "no result")")
                }
                print("          commit \(result.commit.prefix(8)) \(result.changed ? "pushed" : "unchanged"), "
                    + "PR #\(result.pullRequest.map { "\($0.id) \($0.created ? "opened" : "updated")" } ?? "none")")
                return result
            }
            guard ContinuousClock.now < deadline else {
                print("")
                throw DemoFailure("job \(generation)", "still \(job.state) after 120 s")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
