import AsyncHTTPClient
import BitbucketEmulator
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

/// A plain HTTP answer, as the emulator tests inspect it.
struct EmulatorHTTPResponse: Sendable {
    let status: Int
    let headers: [(String, String)]
    let body: Data

    var json: JSONValue? { JSONValue(data: body) }
    var text: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}

/// Starts an emulator with a standard fixture and a redirect-free HTTP client; stops both afterwards.
///
/// Fixture: users `alice` (member/admin everywhere) and `mallory` (member of nothing); Cloud workspace `acme`
/// with project `PROJ`; DC project `PRJ`; Cloud OAuth consumer `cloud-client`/`cloud-secret` owned by alice;
/// DC OAuth client `dc-client`/`dc-secret`. Alice approves authorizations for both products.
struct EmulatorHarness: Sendable {
    let emulator: BitbucketEmulator
    let http: HTTPClient

    static let cloudClient = "cloud-client"
    static let cloudSecret = "cloud-secret-value-123"
    static let dcClient = "dc-client"
    static let dcSecret = "dc-secret-value-456"
    static let callback = "http://127.0.0.1:1/callback"

    static func with<T: Sendable>(
        configuration: EmulatorConfiguration = EmulatorConfiguration(),
        logger: Logger = Logger(label: "emulator-test", factory: { _ in SwiftLogNoOpLogHandler() }),
        _ body: (EmulatorHarness) async throws -> T
    ) async throws -> T {
        let emulator = try await BitbucketEmulator.start(configuration: configuration, logger: logger)
        let http = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10), read: .seconds(60))))
        let harness = EmulatorHarness(emulator: emulator, http: http)
        do {
            try await harness.seed()
            let result = try await body(harness)
            try await http.shutdown()
            try await emulator.stop()
            return result
        } catch {
            try? await http.shutdown()
            try? await emulator.stop()
            throw error
        }
    }

    private func seed() async throws {
        try await emulator.createUser("alice", displayName: "Alice Example")
        try await emulator.createUser("mallory")
        try await emulator.createWorkspace("acme", name: "Acme Inc", administrators: ["alice"])
        try await emulator.createCloudProject(workspace: "acme", key: "PROJ", name: "Project")
        try await emulator.createDataCenterProject(key: "PRJ", name: "Platform", members: ["alice"])
        try await emulator.registerOAuth2Client(
            OAuth2ClientRegistration(
                product: .cloud, clientID: Self.cloudClient, clientSecret: Self.cloudSecret, redirectURI: Self.callback,
                ownerUsername: "alice"))
        try await emulator.registerOAuth2Client(
            OAuth2ClientRegistration(
                product: .dataCenter, clientID: Self.dcClient, clientSecret: Self.dcSecret, redirectURI: Self.callback))
        await emulator.setAuthorizingUser("alice", for: .cloud)
        await emulator.setAuthorizingUser("alice", for: .dataCenter)
    }

    var cloudAPI: String { emulator.endpoints.cloudAPI.absoluteString }
    var root: String { emulator.endpoints.root.absoluteString }

    /// Sends one request; `url` may be absolute or a path relative to the server root.
    func send(
        _ method: String, _ url: String, bearer: String? = nil, headers: [(String, String)] = [],
        json: JSONValue? = nil, form: [(String, String)]? = nil, body: Data? = nil
    ) async throws -> EmulatorHTTPResponse {
        let absolute = url.hasPrefix("http") ? url : root + url
        var request = HTTPClientRequest(url: absolute)
        request.method = .init(rawValue: method)
        if let bearer { request.headers.add(name: "Authorization", value: "Bearer \(bearer)") }
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: json.encoded()))
        } else if let form {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: Self.formEncode(form)))
        } else if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await http.execute(request, timeout: .seconds(60))
        let buffer = try await response.body.collect(upTo: 32 << 20)
        return EmulatorHTTPResponse(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: Data(buffer.readableBytesView))
    }

    static func formEncode(_ pairs: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return pairs.map {
            "\($0.0.addingPercentEncoding(withAllowedCharacters: allowed)!)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed)!)"
        }.joined(separator: "&")
    }

    static func basic(_ user: String, _ password: String) -> (String, String) {
        ("Authorization", "Basic \(Data("\(user):\(password)".utf8).base64EncodedString())")
    }

    /// Query items of a redirect `Location`.
    static func queryItems(_ location: String?) -> [String: String] {
        guard let location, let comps = URLComponents(string: location) else { return [:] }
        var out: [String: String] = [:]
        for item in comps.queryItems ?? [] { out[item.name] = item.value ?? "" }
        return out
    }
}

/// Collects every log line (message and metadata) so tests can assert no secret was logged.
final class LogStore: Sendable {
    let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
}

struct RecordingLogHandler: LogHandler {
    let store: LogStore
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        let line = "\(event.level) \(event.message) \(all)"
        store.lines.withLock { $0.append(line) }
    }
}
