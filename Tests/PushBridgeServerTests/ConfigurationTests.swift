import Configuration
import Foundation
import Synchronization
import Testing

@testable import PushBridgeServer

private let masterKey = Data(repeating: 7, count: 32).base64EncodedString()
private let token = "tok-0123456789abcdef"
private let minimal = ["PUSHBRIDGE_API_TOKENS": token, "PUSHBRIDGE_MASTER_KEY": masterKey]

private func load(_ environment: [String: String], envFile: EnvFileLocation = .none) async throws
    -> PushBridgeConfiguration
{
    try await ConfigurationLoader.load(environment: environment, envFile: envFile)
}

private func loadError(_ environment: [String: String], envFile: EnvFileLocation = .none) async -> ConfigurationError? {
    do {
        _ = try await ConfigurationLoader.load(environment: environment, envFile: envFile)
        return nil
    } catch {
        return error
    }
}

/// Records the environment names of every key the loader looks up.
private final class CollectingReporter: AccessReporter {
    let names = Mutex<Set<String>>([])
    func report(_ event: AccessEvent) {
        let name = event.metadata.key.components.joined(separator: "_").uppercased()
        names.withLock { _ = $0.insert(name) }
    }
}

/// `NAME=value` pairs documented in the example file (commented or not).
private func exampleFileVariables() throws -> [String: String] {
    let text = try String(
        contentsOf: TestPaths.packageRoot.appendingPathComponent("Config/pushbridge.env.example"), encoding: .utf8)
    var result: [String: String] = [:]
    for line in text.split(separator: "\n") {
        var body = Substring(line)
        if body.hasPrefix("#") { body = body.dropFirst() }
        guard body.hasPrefix("PUSHBRIDGE_"), let eq = body.firstIndex(of: "=") else { continue }
        result[String(body[..<eq])] = String(body[body.index(after: eq)...])
    }
    return result
}

@Suite("Configuration")
struct ConfigurationTests {
    @Test("defaults apply when only the required variables are set")
    func defaults() async throws {
        let config = try await load(minimal)
        #expect(config.listen == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(config.apiTokens.value == [token])
        #expect(config.database == .sqlite(path: "/var/lib/pushbridge/pushbridge.sqlite"))
        #expect(config.dataDirectory == "/var/lib/pushbridge")
        #expect(config.archivesDirectory == "/var/lib/pushbridge/archives")
        #expect(config.sourceRoots.isEmpty)
        #expect(config.masterKey.value == Array(repeating: 7, count: 32))
        #expect(config.publicURL.absoluteString == "http://127.0.0.1:8080")
        #expect(config.cloud.apiURL?.absoluteString == "https://api.bitbucket.org/2.0")
        #expect(config.cloud.siteURL?.absoluteString == "https://bitbucket.org")
        #expect(config.cloud.gitURL?.absoluteString == "https://bitbucket.org")
        #expect(config.dataCenter.apiURL == nil)
        #expect(config.workers == 4)
        #expect(config.perConnectionJobs == 1)
        #expect(config.jobMaxAttempts == 5)
        #expect(config.shutdownGrace == .seconds(30))
        #expect(config.refreshSkew == .seconds(300))
        #expect(config.archiveTTL == .seconds(86_400))
        #expect(config.limits.maxArchiveBytes == 256 << 20)
        #expect(config.limits.maxRequestBytes == 1 << 20)
        #expect(config.logLevel == .info)
    }

    @Test("process environment beats the env file, which beats credentials files, which beat defaults")
    func precedence() async throws {
        let dir = try TestPaths.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let envFile = dir.appendingPathComponent("pushbridge.env")
        try """
        # comment
        PUSHBRIDGE_LISTEN=0.0.0.0:9000
        PUSHBRIDGE_WORKERS=7
        PUSHBRIDGE_WEBHOOK_SECRET=from-env-file
        PUSHBRIDGE_LOG_LEVEL=
        """.write(to: envFile, atomically: true, encoding: .utf8)
        let credentials = dir.appendingPathComponent("creds")
        try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: true)
        try "\(masterKey)\n".write(to: credentials.appendingPathComponent("master-key"), atomically: true, encoding: .utf8)
        try "from-credentials".write(
            to: credentials.appendingPathComponent("webhook-secret"), atomically: true, encoding: .utf8)
        try "cloud-secret-from-file".write(
            to: credentials.appendingPathComponent("cloud-client-secret"), atomically: true, encoding: .utf8)

        let config = try await load(
            [
                "PUSHBRIDGE_API_TOKENS": token, "PUSHBRIDGE_WORKERS": "9",
                "PUSHBRIDGE_WEBHOOK_URL": "https://hooks.example.com/pb",
                "PUSHBRIDGE_CLOUD_CLIENT_ID": "consumer", "CREDENTIALS_DIRECTORY": credentials.path,
            ], envFile: .explicit(envFile.path))
        #expect(config.workers == 9)  // process env wins over the file
        #expect(config.listen.port == 9000)  // file wins over the default
        #expect(config.webhook.secret?.value == "from-env-file")  // file wins over credentials
        #expect(config.masterKey.value.count == 32)  // credentials file, trailing newline trimmed
        #expect(config.cloud.clientSecret?.value == "cloud-secret-from-file")
        #expect(config.logLevel == .info)  // empty value means default
    }

    @Test("an explicit env file that is missing is an error; the default one may be missing")
    func missingEnvFile() async throws {
        let error = await loadError(minimal, envFile: .explicit("/nonexistent/pushbridge.env"))
        #expect(error?.code == "invalid_config")
        #expect(error?.variable == "--env-file")
        #expect(error?.message.contains("/nonexistent/pushbridge.env") == true)
        if !FileManager.default.fileExists(atPath: EnvFileLocation.defaultPath) {
            _ = try await load(minimal, envFile: .default)
        }
    }

    @Test(
        "an invalid value names its variable",
        arguments: [
            ("PUSHBRIDGE_LISTEN", "8080"), ("PUSHBRIDGE_LISTEN", "host:99999"), ("PUSHBRIDGE_LISTEN", "::1:80"),
            ("PUSHBRIDGE_WORKERS", "0"), ("PUSHBRIDGE_WORKERS", "four"),
            ("PUSHBRIDGE_DATABASE_URL", "mysql://x"), ("PUSHBRIDGE_DATABASE_URL", "sqlite://relative.db"),
            ("PUSHBRIDGE_DATA_DIR", "relative/dir"), ("PUSHBRIDGE_SOURCE_ROOTS", "/nonexistent-root-dir"),
            ("PUSHBRIDGE_SHUTDOWN_GRACE", "soon"), ("PUSHBRIDGE_MAX_ARCHIVE_BYTES", "12XB"),
            ("PUSHBRIDGE_CLOUD_API_URL", "ftp://example.com"), ("PUSHBRIDGE_PUBLIC_URL", "not a url"),
            ("PUSHBRIDGE_LOG_LEVEL", "loud"), ("PUSHBRIDGE_API_TOKENS", "short"),
            ("PUSHBRIDGE_API_TOKENS", "\(token),"), ("PUSHBRIDGE_WEBHOOK_URL", "https://hooks.example.com"),
            ("PUSHBRIDGE_CLOUD_CLIENT_ID", "consumer"), ("PUSHBRIDGE_HTTPS_PROXY", "socks5://proxy:1080"),
        ])
    func invalidValue(name: String, value: String) async throws {
        var environment = minimal
        environment[name] = value
        let error = try #require(await loadError(environment))
        #expect(error.code == "invalid_config")
        let expected: Set = switch name {
        case "PUSHBRIDGE_WEBHOOK_URL": ["PUSHBRIDGE_WEBHOOK_SECRET"]
        case "PUSHBRIDGE_CLOUD_CLIENT_ID": ["PUSHBRIDGE_CLOUD_CLIENT_SECRET"]
        default: [name]
        }
        #expect(expected.contains(error.variable))
        #expect(error.message.hasPrefix(error.variable))
        #expect(String(describing: error).contains(error.variable))
    }

    @Test("missing required variables are named")
    func missingRequired() async throws {
        #expect(await loadError(["PUSHBRIDGE_MASTER_KEY": masterKey])?.variable == "PUSHBRIDGE_API_TOKENS")
        #expect(await loadError(["PUSHBRIDGE_API_TOKENS": token])?.variable == "PUSHBRIDGE_MASTER_KEY")
        let wrongLength = ["PUSHBRIDGE_API_TOKENS": token, "PUSHBRIDGE_MASTER_KEY": Data(count: 16).base64EncodedString()]
        #expect(await loadError(wrongLength)?.variable == "PUSHBRIDGE_MASTER_KEY")
    }

    @Test("secret values never appear in errors or in the printable form")
    func secretsRedacted() async throws {
        let proxyError = try #require(
            await loadError(minimal.merging(["PUSHBRIDGE_HTTPS_PROXY": "ftp://user:pr0xy-pass@p"]) { $1 }))
        #expect(!proxyError.message.contains("pr0xy-pass"))
        let keyError = try #require(
            await loadError(minimal.merging(["PUSHBRIDGE_MASTER_KEY": "sekrit-master-key"]) { $1 }))
        #expect(!keyError.message.contains("sekrit-master-key"))

        let config = try await load(
            minimal.merging([
                "PUSHBRIDGE_DATABASE_URL": "postgres://pb:db-pass-123@db.example.com:5432/pb",
                "PUSHBRIDGE_CLOUD_CLIENT_ID": "consumer", "PUSHBRIDGE_CLOUD_CLIENT_SECRET": "cloud-secret-xyz",
                "PUSHBRIDGE_WEBHOOK_URL": "https://hooks.example.com/x", "PUSHBRIDGE_WEBHOOK_SECRET": "hook-secret-xyz",
                "PUSHBRIDGE_HTTPS_PROXY": "http://proxyuser:proxy-pass-xyz@proxy:3128",
            ]) { $1 })
        let printed = config.redactedDescription
        for secret in [token, masterKey, "db-pass-123", "cloud-secret-xyz", "hook-secret-xyz", "proxy-pass-xyz"] {
            #expect(!printed.contains(secret), "\(secret.prefix(3))… leaked")
        }
        #expect(printed.contains("PUSHBRIDGE_API_TOKENS=<redacted>"))
        #expect(printed.contains("db.example.com"))
        #expect(printed.contains("PUSHBRIDGE_CLOUD_CLIENT_ID=consumer"))
        #expect("\(config.apiTokens)" == "<redacted>")
        // Every variable appears exactly once in the printable form.
        let names = printed.split(separator: "\n").map { String($0.prefix { $0 != "=" }) }
        #expect(names == ConfigVariable.all.map(\.name))
    }

    @Test("the example env file documents exactly the variables the code reads, with the same defaults")
    func exampleFileAgreesWithCode() async throws {
        let documented = try exampleFileVariables()
        let declared = ConfigVariable.all + [.cliAPIToken, .cliURL]
        #expect(Set(documented.keys) == Set(declared.map(\.name)))
        for variable in declared {
            #expect(documented[variable.name] == (variable.defaultValue ?? ""), "default of \(variable.name)")
        }

        // What the loader actually looks up must be declared (and so documented) too.
        let reporter = CollectingReporter()
        _ = try await ConfigurationLoader.load(
            environment: minimal.merging(["CREDENTIALS_DIRECTORY": ""]) { $1 }, envFile: .none,
            accessReporter: reporter)
        let read = reporter.names.withLock { $0 }
        #expect(read == Set(ConfigVariable.all.map(\.name)))
    }

    @Test("durations and sizes parse their documented forms")
    func parsers() {
        #expect(ConfigParsing.duration("30") == .seconds(30))
        #expect(ConfigParsing.duration("500ms") == .milliseconds(500))
        #expect(ConfigParsing.duration("5m") == .seconds(300))
        #expect(ConfigParsing.duration("2d") == .seconds(172_800))
        #expect(ConfigParsing.duration("-1s") == nil)
        #expect(ConfigParsing.byteCount("64KiB") == 65_536)
        #expect(ConfigParsing.byteCount("1MB") == 1_000_000)
        #expect(ConfigParsing.byteCount("1G") == 1 << 30)
        #expect(ConfigParsing.byteCount("9999999999999999999G") == nil)
        #expect(Duration.milliseconds(1500).configText == "1500ms")
        #expect(ListenAddress(parsing: "[::1]:8080") == ListenAddress(host: "::1", port: 8080))
        #expect(ListenAddress(host: "::1", port: 1).description == "[::1]:1")
    }
}
