import BitbucketEmulator
import BitbucketKit
import Foundation
import Logging
@testable import PushBridge
import Synchronization
import Testing
import TestSupport

/// Every log line (message + metadata) a test's loggers produced, to grep for secrets.
typealias TokenLogCapture = LogCapture

extension LogCapture {
    /// Fails the test for every secret found in the captured lines.
    func expectFree(of secrets: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let text = all
        for secret in secrets where secret.count >= 4 {
            #expect(!text.contains(secret), "a secret appeared in the logs", sourceLocation: sourceLocation)
        }
    }
}

/// A running emulator seeded with user `alice`, Cloud workspace `acme`, DC project `PRJ`, the Cloud
/// consumer `cloud-client` and the DC client `dc-client`; plus a BitbucketKit transport.
struct TokenEnvironment: Sendable {
    let emulator: BitbucketEmulator
    let transport: BitbucketHTTPTransport
    let logs = TokenLogCapture()

    static let cloudClient = "cloud-client"
    static let cloudSecret = "cloud-secret-value-123"
    static let dcClient = "dc-client"
    static let dcSecret = "dc-secret-value-456"
    static let callback = "http://127.0.0.1:1/callback"

    static func with(_ body: (TokenEnvironment) async throws -> Void) async throws {
        let quiet = Logger(label: "emulator") { _ in SwiftLogNoOpLogHandler() }
        let emulator = try await BitbucketEmulator.start(logger: quiet)
        let transport = try BitbucketHTTPTransport(configuration: .init(connectTimeout: .seconds(2)))
        let env = TokenEnvironment(emulator: emulator, transport: transport)
        do {
            try await emulator.createUser("alice", displayName: "Alice")
            try await emulator.createWorkspace("acme", name: "Acme", administrators: ["alice"])
            try await emulator.createDataCenterProject(key: "PRJ", name: "Platform", members: ["alice"])
            try await emulator.registerOAuth2Client(OAuth2ClientRegistration(
                product: .cloud, clientID: cloudClient, clientSecret: cloudSecret, redirectURI: callback,
                ownerUsername: "alice"))
            try await emulator.registerOAuth2Client(OAuth2ClientRegistration(
                product: .dataCenter, clientID: dcClient, clientSecret: dcSecret, redirectURI: callback))
            try await body(env)
        } catch {
            try? await transport.shutdown()
            try? await emulator.stop()
            throw error
        }
        try await transport.shutdown()
        try await emulator.stop()
    }

    var cloudEndpoints: CloudEndpoints {
        CloudEndpoints(
            apiBaseURL: emulator.endpoints.cloudAPI, siteURL: emulator.endpoints.cloudSite,
            gitBaseURL: emulator.endpoints.cloudGit)
    }

    func configuration(oauth1Key: OAuth1PrivateKey? = nil) -> TokenManagerConfiguration {
        TokenManagerConfiguration(
            cloudEndpoints: cloudEndpoints,
            cloudClientID: Self.cloudClient, cloudClientSecret: Secret(Self.cloudSecret),
            dataCenterClientID: Self.dcClient, dataCenterClientSecret: Secret(Self.dcSecret),
            dataCenterRedirectURI: URL(string: Self.callback)!,
            oauth1PrivateKey: oauth1Key,
            clientOptions: BitbucketClientOptions(retry: .none, logger: logs.logger("pushbridge.bitbucket")),
            logger: logs.logger("pushbridge.tokens"))
    }

    func manager(_ store: any Store, oauth1Key: OAuth1PrivateKey? = nil) -> TokenManager {
        TokenManager(store: store, transport: transport, configuration: configuration(oauth1Key: oauth1Key))
    }

    /// Registers a Cloud connection whose stored access token expired a minute ago (so the next
    /// `credentials` call must refresh). Returns the tokens the emulator issued.
    @discardableResult
    func addExpiredCloudConnection(_ id: String, store: any Store, expiresAt: Date = Date().addingTimeInterval(-60))
        async throws -> EmulatorIssuedTokens
    {
        let issued = try await emulator.issueTokens(product: .cloud, username: "alice", clientID: Self.cloudClient)
        _ = try await store.createConnection(
            Connection(
                id: id, provider: .bitbucketCloud, workspace: "acme", apiURL: emulator.endpoints.cloudAPI,
                siteURL: emulator.endpoints.cloudSite, gitURL: emulator.endpoints.cloudGit, credentialsKind: .oauth2),
            credentials: .oauth2(.init(
                accessToken: issued.accessToken, refreshToken: issued.refreshToken, expiresAt: expiresAt)))
        return issued
    }

    func refreshGrants() async -> Int {
        await emulator.counters().refreshGrants[Self.cloudClient] ?? 0
    }
}

func storedOAuth2(_ store: any Store, _ id: String) async throws -> Credentials.OAuth2 {
    guard case .oauth2(let o) = try await store.credentials(connectionID: id) else {
        Issue.record("connection \(id) does not hold OAuth 2.0 credentials")
        throw CancellationError()
    }
    return o
}
