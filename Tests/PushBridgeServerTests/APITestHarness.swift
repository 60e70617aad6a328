import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Prometheus
import PushBridge
import Testing

@testable import PushBridgeServer

/// A real API over a real SQLite store and archive directory in a temp dir.
struct APITestHarness {
    static let tokens = ["first-token-0123456789", "second-token-0123456789"]

    let directory: URL
    let sourceRoot: URL
    let configuration: PushBridgeConfiguration
    let store: any Store
    let api: PushBridgeAPI

    static func make(environment extra: [String: String] = [:]) async throws -> APITestHarness {
        let directory = try TestPaths.makeTemporaryDirectory("api")
        let sourceRoot = directory.appendingPathComponent("builds")
        try FileManager.default.createDirectory(at: sourceRoot, withIntermediateDirectories: true)
        var environment = [
            "PUSHBRIDGE_API_TOKENS": tokens.joined(separator: ","),
            "PUSHBRIDGE_MASTER_KEY": MasterKey.generate().exportBase64(),
            "PUSHBRIDGE_DATA_DIR": directory.path,
            "PUSHBRIDGE_DATABASE_URL": "sqlite://\(directory.path)/pushbridge.sqlite",
            "PUSHBRIDGE_SOURCE_ROOTS": sourceRoot.path,
            "PUSHBRIDGE_MAX_REQUEST_BYTES": "64KiB",
            "PUSHBRIDGE_MAX_ARCHIVE_BYTES": "1MiB",
        ]
        environment.merge(extra) { $1 }
        let configuration = try await ConfigurationLoader.load(environment: environment, envFile: .none)
        let store = try await StoreFactory.open(
            databaseURL: "sqlite://\(directory.path)/pushbridge.sqlite",
            vault: Vault(current: try MasterKey(bytes: configuration.masterKey.value)))
        let archives = ArchiveStore(directory: configuration.archivesDirectory, limits: configuration.limits.archive)
        let api = PushBridgeAPI(
            configuration: configuration, store: store, archives: archives, registry: PrometheusCollectorRegistry())
        return APITestHarness(
            directory: directory, sourceRoot: sourceRoot, configuration: configuration, store: store, api: api)
    }

    /// Runs `body` against the router, then closes the store and removes the temp dir.
    func test(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let app = Application(router: api.buildRouter())
        do {
            try await app.test(.router, body)
        } catch {
            try? await store.close()
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
        try? await store.close()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Headers with the bearer token (first by default).
func auth(_ token: String = APITestHarness.tokens[0], _ extra: HTTPFields = [:]) -> HTTPFields {
    var headers = extra
    headers[.authorization] = "Bearer \(token)"
    return headers
}

func jsonBody(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

extension TestResponse {
    var text: String { String(buffer: body) }

    /// The response body as a JSON object.
    func json() throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(buffer: body))
        return try #require(object as? [String: Any], "not a JSON object: \(text)")
    }

    /// The body as a JSON object; empty (and an issue recorded) when it is not one.
    var object: [String: Any] {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] else {
            Issue.record("not a JSON object: \(text)")
            return [:]
        }
        return object
    }

    /// `error.code` of an error envelope.
    var errorCode: String? { (object["error"] as? [String: Any])?["code"] as? String }

    /// `error.message` of an error envelope ("" when absent).
    var errorMessage: String { ((object["error"] as? [String: Any])?["message"] as? String) ?? "" }
}

let oauthConnectionJSON = """
    {"id": "acme-cloud", "provider": "bitbucket-cloud", "workspace": "acme",
     "credentials": {"type": "oauth2", "accessToken": "AT-SECRET-abc123", "refreshToken": "RT-SECRET-def456",
                     "expiresAt": "2030-01-02T03:04:05Z"}}
    """

func jobJSON(
    source: String, branch: String = "pushbridge/billing", connection: String = "acme-cloud", extra: String = ""
) -> String {
    """
    {"connection": "\(connection)", "repository": {"slug": "billing-service", "create": true},
     "source": \(source), "branch": "\(branch)", "baseBranch": "main",
     "commit": {"message": "Generated build 123", "author": {"name": "Bot", "email": "bot@example.com"}},
     "pullRequest": {"title": "Build 123"}\(extra)}
    """
}
