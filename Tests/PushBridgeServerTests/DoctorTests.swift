import BitbucketEmulator
import Foundation
import Logging
import PushBridge
import Testing

@testable import PushBridgeServer

@Suite("pushbridge doctor", .enabled(if: executableExists, "pushbridge executable not built (swift build --build-tests)"))
struct DoctorTests {
    /// Runs `pushbridge doctor` (off the cooperative pool, so the in-process emulator keeps
    /// answering it), under `timeout` so a hung child cannot hang the suite.
    private static func doctor(environment: [String: String], envFile: URL) async throws -> ProcessOutput {
        try await ProcessRunner.run(
            "timeout", ["120", executable.path, "doctor", "--env-file", envFile.path], environment: environment)
    }

    @Test("libgit2 line and one authenticated identity call per connection; a revoked refresh token is FAIL reauthorization_required, exit 1")
    func connections() async throws {
        let dir = try TestPaths.makeTemporaryDirectory("doctor")
        defer { try? FileManager.default.removeItem(at: dir) }
        let emulator = try await BitbucketEmulator.start(
            logger: Logger(label: "emulator", factory: { _ in SwiftLogNoOpLogHandler() }))
        do {
            try await run(emulator, dir)
        } catch {
            try? await emulator.stop()
            throw error
        }
        try await emulator.stop()
    }

    private func run(_ emulator: BitbucketEmulator, _ dir: URL) async throws {
        let clientID = "doctor-client"
        let clientSecret = "DOCTOR-CLIENT-SECRET-5c1d"
        try await emulator.createUser("alice")
        try await emulator.createWorkspace("acme", administrators: ["alice"])
        try await emulator.registerOAuth2Client(
            OAuth2ClientRegistration(
                product: .cloud, clientID: clientID, clientSecret: clientSecret, redirectURI: "http://127.0.0.1:1/cb",
                ownerUsername: "alice"))
        let good = try await emulator.issueTokens(product: .cloud, username: "alice", clientID: clientID)
        let bad = try await emulator.issueTokens(product: .cloud, username: "alice", clientID: clientID)

        let masterKey = MasterKey.generate()
        let database = "sqlite://\(dir.path)/pushbridge.sqlite"
        let store = try await StoreFactory.open(databaseURL: database, vault: Vault(current: masterKey))
        for (id, tokens) in [("good", good), ("revoked", bad)] {
            _ = try await store.createConnection(
                Connection(id: id, provider: .bitbucketCloud, workspace: "acme", credentialsKind: .oauth2),
                credentials: .oauth2(.init(
                    accessToken: tokens.accessToken, refreshToken: tokens.refreshToken,
                    expiresAt: Date().addingTimeInterval(3600))))
        }
        try await store.close()

        let endpoints = emulator.endpoints
        let environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "PUSHBRIDGE_API_TOKENS": "doctor-api-token-0123456789",
            "PUSHBRIDGE_MASTER_KEY": masterKey.exportBase64(),
            "PUSHBRIDGE_DATA_DIR": dir.path,
            "PUSHBRIDGE_DATABASE_URL": database,
            "PUSHBRIDGE_CLOUD_API_URL": endpoints.cloudAPI.absoluteString,
            "PUSHBRIDGE_CLOUD_SITE_URL": endpoints.cloudSite.absoluteString,
            "PUSHBRIDGE_CLOUD_GIT_URL": endpoints.cloudGit.absoluteString,
            "PUSHBRIDGE_CLOUD_CLIENT_ID": clientID, "PUSHBRIDGE_CLOUD_CLIENT_SECRET": clientSecret,
        ]
        let envFile = dir.appendingPathComponent("empty.env")
        try Data().write(to: envFile)
        let secrets = [good.accessToken, bad.accessToken, clientSecret, masterKey.exportBase64()]
            + [good.refreshToken, bad.refreshToken].compactMap { $0 }

        // Both connections work: every check passes.
        let healthy = try await Self.doctor(environment: environment, envFile: envFile)
        #expect(healthy.status == 0, "\(healthy.stdout)\n\(healthy.stderr)")
        let lines = healthy.stdout.split(separator: "\n").map(String.init)
        let libgit2 = try #require(lines.first { $0.hasPrefix("ok    libgit2: ") }, "\(healthy.stdout)")
        #expect(libgit2.range(of: #"^ok    libgit2: \d+\.\d+\.\d+ \(https, threads"#, options: .regularExpression) != nil, "\(libgit2)")
        #expect(lines.contains("ok    connection good (bitbucket-cloud, acme): authenticated as alice"), "\(healthy.stdout)")
        #expect(lines.contains("ok    connection revoked (bitbucket-cloud, acme): authenticated as alice"), "\(healthy.stdout)")

        // Bitbucket revokes one grant and the access token expires: the refresh is refused.
        #expect(await emulator.revokeRefreshToken(try #require(bad.refreshToken)))
        #expect(await emulator.expireAccessToken(bad.accessToken))
        let broken = try await Self.doctor(environment: environment, envFile: envFile)
        #expect(broken.status == 1, "\(broken.stdout)\n\(broken.stderr)")
        let brokenLines = broken.stdout.split(separator: "\n").map(String.init)
        #expect(brokenLines.contains("ok    connection good (bitbucket-cloud, acme): authenticated as alice"), "\(broken.stdout)")
        let failure = try #require(
            brokenLines.first { $0.hasPrefix("FAIL  connection revoked (bitbucket-cloud, acme): ") }, "\(broken.stdout)")
        #expect(failure.contains("reauthorization_required"), "\(failure)")
        #expect(brokenLines.filter { $0.hasPrefix("FAIL") }.count == 1, "\(broken.stdout)")
        #expect(await emulator.counters().rejectedRefreshes[clientID] == 1)

        // The refusal is recorded, as a job would record it.
        let reopened = try await StoreFactory.open(databaseURL: database, vault: Vault(current: masterKey))
        #expect(try await reopened.connection(id: "revoked")?.state == .reauthorizationRequired)
        #expect(try await reopened.connection(id: "good")?.state == .active)
        try await reopened.close()

        for output in [healthy, broken] {
            for secret in secrets {
                #expect(!output.stdout.contains(secret) && !output.stderr.contains(secret), "a secret leaked into doctor's output")
            }
        }
    }
}
