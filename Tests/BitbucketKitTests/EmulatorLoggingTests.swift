import BitbucketEmulator
import Foundation
import Logging
import TestSupport
import Testing

@Suite("Emulator: request logging carries no secrets")
struct EmulatorLoggingTests {
    @Test func tokensCodesAndSecretsNeverReachTheLog() async throws {
        let store = LogStore()
        let logger = Logger(label: "emulator-log-test", factory: { _ in RecordingLogHandler(store: store) })
        var secrets: [String] = [EmulatorHarness.cloudSecret, EmulatorHarness.dcSecret]
        try await EmulatorHarness.with(logger: logger) { h in
            // Authorization code flow: the code travels in a query string and a form body.
            let authorize = try await h.send(
                "GET", "/site/oauth2/authorize?client_id=\(EmulatorHarness.cloudClient)&response_type=code&state=s")
            let code = try #require(EmulatorHarness.queryItems(authorize.header("Location"))["code"])
            let tokens = try await h.send(
                "POST", "/site/oauth2/access_token",
                headers: [EmulatorHarness.basic(EmulatorHarness.cloudClient, EmulatorHarness.cloudSecret)],
                form: [("grant_type", "authorization_code"), ("code", code)])
            let access = try #require(tokens.json?["access_token"]?.stringValue)
            let refresh = try #require(tokens.json?["refresh_token"]?.stringValue)
            secrets += [code, access, refresh]
            _ = try await h.send("GET", h.cloudAPI + "/user", bearer: access)
            _ = try await h.send("GET", h.cloudAPI + "/user", bearer: "bogus-\(access)")

            // git with the token as Basic password.
            try await h.emulator.createRepository(.cloud(workspace: "acme", slug: "logged"))
            _ = try await EmulatorGit.pushTwoBranches(
                to: h.emulator.endpoints.cloudCloneURL(workspace: "acme", slug: "logged"),
                auth: .basicAuth(username: "x-token-auth", password: access), feature: "f")

            // DC HTTP access token minted over REST.
            let dc = try await h.emulator.issueTokens(product: .dataCenter, username: "alice").accessToken
            try await h.emulator.createRepository(.dataCenter(project: "PRJ", slug: "r"))
            let minted = try await h.send(
                "PUT", "/rest/access-tokens/1.0/projects/PRJ/repos/r", bearer: dc,
                json: ["name": "t", "permissions": ["REPO_WRITE"]])
            secrets += [dc, try #require(minted.json?["token"]?.stringValue)]
        }
        let lines = store.all
        #expect(lines.contains { $0.contains("/2.0/user") && $0.contains("401") })
        #expect(lines.count >= 10)
        for secret in secrets {
            #expect(!lines.contains { $0.contains(secret) }, "a secret appeared in the emulator's log")
        }
    }
}
