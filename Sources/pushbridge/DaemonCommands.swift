import ArgumentParser
import BitbucketKit
import Foundation
import GitKit
import Logging
import Prometheus
import PushBridge
import PushBridgeServer

extension EnvFileOption {
    var location: EnvFileLocation { envFile.map(EnvFileLocation.explicit) ?? .default }

    /// Loads and validates the configuration, or exits with its one-line message.
    func loadConfiguration() async throws -> PushBridgeConfiguration {
        do {
            return try await ConfigurationLoader.load(envFile: location)
        } catch {
            throw CommandFailure("\(error)")
        }
    }
}

/// A failure reported as one line on stderr with exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the API and the job workers (systemd Type=notify).")
    @OptionGroup var options: EnvFileOption

    func run() async throws {
        let configuration = try await options.loadConfiguration()
        let registry = PrometheusCollectorRegistry()
        PushBridgeDaemon.bootstrapObservability(logLevel: configuration.logLevel, registry: registry)
        let logger = Logger(label: "pushbridge")
        logger.info("starting", metadata: ["listen": "\(configuration.listen)", "database": "\(configuration.database.redactedDescription)"])
        try await PushBridgeDaemon(
            configuration: configuration, registry: registry, logger: logger).run()
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending database migrations and exit.")
    @OptionGroup var options: EnvFileOption

    func run() async throws {
        let configuration = try await options.loadConfiguration()
        let store = try await StoreFactory.open(
            databaseURL: configuration.database.urlString, vault: try PushBridgeDaemon.vault(configuration), migrate: true)
        try await store.close()
        print("database is up to date (\(configuration.database.redactedDescription))")
    }
}

struct RotateKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-seal all stored credentials under PUSHBRIDGE_MASTER_KEY.",
        discussion: """
            Set the new key as PUSHBRIDGE_MASTER_KEY and the old one(s) in PUSHBRIDGE_PREVIOUS_MASTER_KEYS, \
            run this once, then remove the old keys.
            """)
    @OptionGroup var options: EnvFileOption

    func run() async throws {
        let configuration = try await options.loadConfiguration()
        let vault = try PushBridgeDaemon.vault(configuration)
        let store = try await StoreFactory.open(databaseURL: configuration.database.urlString, vault: vault)
        let count = try await store.rotateKey()
        try await store.close()
        print("re-sealed \(count) connection(s) under key \(vault.current?.kid ?? "?")")
    }
}

struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check configuration, storage, files, libgit2 and every connection's Bitbucket authentication; print the redacted configuration.")
    @OptionGroup var options: EnvFileOption

    func run() async throws {
        let configuration = try await options.loadConfiguration()
        print(configuration.redactedDescription)
        print("")
        var failures = 0
        func check(_ name: String, _ body: () async throws -> String) async {
            do {
                print("ok    \(name): \(try await body())")
            } catch {
                failures += 1
                print("FAIL  \(name): \(error)")
            }
        }
        await check("data directory") {
            let probe = configuration.dataDirectory + "/.doctor-\(getpid())"
            guard FileManager.default.createFile(atPath: probe, contents: Data()) else {
                throw CommandFailure("\(configuration.dataDirectory) is not writable")
            }
            try FileManager.default.removeItem(atPath: probe)
            return "\(configuration.dataDirectory) writable"
        }
        await check("database") {
            let store = try await StoreFactory.open(
                databaseURL: configuration.database.urlString, vault: try PushBridgeDaemon.vault(configuration),
                migrate: false)
            defer { Task { try? await store.close() } }
            try await store.ping()
            return "\(configuration.database.redactedDescription) reachable"
        }
        for root in configuration.sourceRoots {
            await check("source root") {
                guard FileManager.default.isReadableFile(atPath: root) else { throw CommandFailure("\(root) not readable") }
                return root
            }
        }
        if let file = configuration.oauth1.privateKeyFile {
            await check("OAuth 1.0a private key") {
                _ = try OAuth1PrivateKey(pemRepresentation: try String(contentsOfFile: file, encoding: .utf8))
                return file
            }
        }
        if let bundle = configuration.caBundle {
            await check("CA bundle") {
                let text = try String(contentsOfFile: bundle, encoding: .utf8)
                guard text.contains("BEGIN CERTIFICATE") else { throw CommandFailure("no PEM certificate in \(bundle)") }
                return bundle
            }
        }
        await check("libgit2") {
            let features = LibGit2.features
            let names = [(LibGit2.Features.https, "https"), (.threads, "threads"), (.ssh, "ssh")]
                .filter { features.contains($0.0) }.map(\.1)
            let text = "\(LibGit2.version) (\(names.isEmpty ? "no features" : names.joined(separator: ", ")))"
            // GitKit drives repositories from several threads, and Bitbucket speaks git over HTTPS only.
            guard features.contains(.https), features.contains(.threads) else {
                throw CommandFailure("\(text): pushbridge needs a libgit2 built with HTTPS and thread support")
            }
            return text
        }
        failures += await checkConnections(configuration)
        await check("systemd") {
            guard let notifier = SystemdNotifier() else { return "not under systemd (NOTIFY_SOCKET unset)" }
            return "notify socket \(notifier.socketPath), watchdog \(notifier.watchdogInterval.map { "\($0)" } ?? "off")"
        }
        if failures > 0 { throw ExitCode(1) }
    }

    /// One authenticated identity call per stored connection, through the daemon's own token
    /// manager (so an expired access token is refreshed, and a refused refresh token marks the
    /// connection `reauthorization-required` exactly as a job would). Prints a line per connection
    /// naming it, its provider and workspace, and either the Bitbucket user or the error code and
    /// message (both free of secrets by contract of `TokenError` and `BitbucketError`).
    ///
    /// - Returns: the number of connections that failed (an unopenable store counts as one).
    private func checkConnections(_ configuration: PushBridgeConfiguration) async -> Int {
        // Logs would interleave with the report on stdout: only errors, and to stderr.
        var logger = Logger(label: "pushbridge.doctor", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .error
        let store: any Store
        let services: BitbucketServices
        do {
            store = try await StoreFactory.open(
                databaseURL: configuration.database.urlString, vault: try PushBridgeDaemon.vault(configuration),
                migrate: false)
        } catch {
            print("FAIL  connections: cannot open the store: \(Self.describe(error))")
            return 1
        }
        do {
            services = try BitbucketServices(configuration: configuration, store: store, logger: logger)
        } catch {
            try? await store.close()
            print("FAIL  connections: cannot set up Bitbucket access: \(Self.describe(error))")
            return 1
        }
        // The transport's connection pool must be shut down on every path (AsyncHTTPClient traps otherwise).
        let failures = await checkEach(store: store, services: services)
        try? await services.shutdown()
        try? await store.close()
        return failures
    }

    private func checkEach(store: any Store, services: BitbucketServices) async -> Int {
        let connections: [Connection]
        do {
            connections = try await store.listConnections()
        } catch {
            print("FAIL  connections: cannot list them: \(Self.describe(error))")
            return 1
        }
        var failures = 0
        if connections.isEmpty { print("ok    connections: none registered") }
        for connection in connections {
            let name = "connection \(connection.id) (\(connection.provider.rawValue), \(connection.workspace))"
            do {
                let client = try services.clients.client(
                    for: connection, credentials: services.tokens.credentialProvider(connectionID: connection.id))
                let user = try await client.currentUser()
                print("ok    \(name): authenticated as \(user.username)")
            } catch {
                failures += 1
                print("FAIL  \(name): \(Self.describe(error))")
            }
        }
        return failures
    }

    /// `code: message` of a coded error; never the `description` of an unknown error type, which
    /// could carry anything.
    private static func describe(_ error: any Error) -> String {
        switch error {
        case let error as any CodedError: "\(error.code): \(error.message)"
        case let error as BitbucketError: "bitbucket_\(error.code.rawValue): \(error.message)"
        case let error as CommandFailure: error.description
        default: "internal_error: \(String(describing: type(of: error)))"
        }
    }
}

struct OAuth1Keygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oauth1-keygen",
        abstract: "Generate the RSA key pair of a Bitbucket Server/DC application link (OAuth 1.0a).")

    @Option(help: "Directory to write private.pem (PKCS#8, mode 0600) and public.pem (SubjectPublicKeyInfo) into.")
    var out: String
    @Option(help: "Consumer key to enter in the application link.")
    var consumerKey: String = "pushbridge"
    @Option(help: "RSA key size: 2048, 3072 or 4096.")
    var bits: Int = 2048

    func run() async throws {
        let key = try OAuth1PrivateKey.generate(bits: bits)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let privatePath = out + "/private.pem"
        let publicPath = out + "/public.pem"
        guard !FileManager.default.fileExists(atPath: privatePath) else {
            throw CommandFailure("\(privatePath) exists; refusing to overwrite a key in use")
        }
        // Created 0600 before any byte is written, so the key is never readable by others.
        guard FileManager.default.createFile(atPath: privatePath, contents: nil, attributes: [.posixPermissions: 0o600])
        else { throw CommandFailure("cannot create \(privatePath)") }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: privatePath))
        try handle.write(contentsOf: Data(key.pkcs8PEM.reveal().utf8))
        try handle.close()
        try Data(key.publicKeyPEM.utf8).write(to: URL(fileURLWithPath: publicPath))
        print("""
            Wrote \(privatePath) (PKCS#8, keep secret) and \(publicPath).

            In Bitbucket: Administration > Application links > Create link > Atlassian product / generic
            application, incoming authentication:
              Consumer key:  \(consumerKey)
              Consumer name: pushbridge
              Public key:
            \(key.publicKeyPEM)
            Then configure pushbridge:
              PUSHBRIDGE_OAUTH1_CONSUMER_KEY=\(consumerKey)
              PUSHBRIDGE_OAUTH1_PRIVATE_KEY_FILE=\(URL(fileURLWithPath: privatePath).standardizedFileURL.path)
            """)
    }
}

struct PrintOpenAPI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "openapi", abstract: "Print the API's OpenAPI document.")
    @Flag(help: "YAML instead of JSON.") var yaml = false
    func run() async throws {
        print(yaml ? OpenAPIDocument.yaml : OpenAPIDocument.jsonText, terminator: "")
    }
}
