import Configuration
import Foundation
import Logging
import PushBridge
import SystemPackage

/// A configuration that cannot be used; ``code`` is always `invalid_config`.
///
/// The message names the offending variable (or `--env-file`) and never contains a secret value.
public struct ConfigurationError: CodedError {
    /// Stable machine-readable code: `invalid_config`.
    public let code: String = "invalid_config"
    /// The variable or option at fault, e.g. `PUSHBRIDGE_LISTEN`.
    public let variable: String
    /// Human-readable reason, starting with ``variable``.
    public let message: String

    init(_ variable: String, _ reason: String) {
        self.variable = variable
        self.message = "\(variable): \(reason)"
    }

    init(_ variable: ConfigVariable, _ reason: String) {
        self.init(variable.name, reason)
    }

    public var description: String { "invalid configuration: \(message)" }
}

/// Where the env file comes from.
public enum EnvFileLocation: Sendable, Hashable {
    /// `/etc/pushbridge/pushbridge.env`; a missing file is fine.
    case `default`
    /// A path given with `--env-file`; a missing file is an error.
    case explicit(String)
    /// Read no env file.
    case none

    /// The path of the default env file.
    public static let defaultPath = "/etc/pushbridge/pushbridge.env"
}

/// The raw sources of `PUSHBRIDGE_*` values, in precedence order: process environment, env file,
/// files in `$CREDENTIALS_DIRECTORY` (secrets only), then the documented defaults.
///
/// Built on swift-configuration's `EnvironmentVariablesProvider` (process env and env file) and
/// `DirectoryFilesProvider` (systemd `LoadCredential=`), so values marked secret are redacted in
/// its own access logs too.
public struct ConfigurationSources: Sendable {
    private let reader: ConfigReader
    private let credentials: ConfigReader?

    /// Opens the sources.
    ///
    /// - Parameters:
    ///   - environment: The process environment (injectable for tests). `CREDENTIALS_DIRECTORY` is read from it.
    ///   - envFile: Which env file to read.
    ///   - accessReporter: Receives every lookup (tests use it to list the variables read).
    /// - Throws: ``ConfigurationError`` when an explicit env file or the credentials directory is missing.
    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        envFile: EnvFileLocation = .default,
        accessReporter: (any AccessReporter)? = nil
    ) async throws(ConfigurationError) {
        let secretNames = Set((ConfigVariable.all + [.cliAPIToken]).filter(\.isSecret).map(\.name))
        let secrets = SecretsSpecifier<String, String>.dynamic { name, _ in secretNames.contains(name.uppercased()) }
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: secrets)
        ]
        let envFilePath: String?
        let allowMissing: Bool
        switch envFile {
        case .default: (envFilePath, allowMissing) = (EnvFileLocation.defaultPath, true)
        case .explicit(let path): (envFilePath, allowMissing) = (path, false)
        case .none: (envFilePath, allowMissing) = (nil, true)
        }
        if let envFilePath {
            do {
                providers.append(
                    try await EnvironmentVariablesProvider(
                        environmentFilePath: FilePath(envFilePath), allowMissing: allowMissing,
                        secretsSpecifier: secrets))
            } catch {
                throw ConfigurationError("--env-file", "cannot read \(envFilePath): \(error)")
            }
        }
        self.reader = ConfigReader(providers: providers, accessReporter: accessReporter)
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            do {
                let files = try await DirectoryFilesProvider(directoryPath: FilePath(directory))
                self.credentials = ConfigReader(provider: files, accessReporter: accessReporter)
            } catch {
                throw ConfigurationError("CREDENTIALS_DIRECTORY", "cannot read \(directory): \(error)")
            }
        } else {
            self.credentials = nil
        }
    }

    /// The value of `variable` from the first source that sets it to a non-empty string, else its
    /// default; `nil` when unset and without default.
    public func value(_ variable: ConfigVariable) -> String? {
        if let value = reader.string(forKey: ConfigKey(variable.keyComponents), isSecret: variable.isSecret),
            !value.isEmpty
        {
            return value
        }
        if let credentials, let file = variable.credentialName,
            let value = credentials.string(forKey: ConfigKey([file]), isSecret: true), !value.isEmpty
        {
            return value
        }
        return variable.defaultValue.flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// Reads and validates a ``PushBridgeConfiguration``.
public enum ConfigurationLoader {
    /// Loads the configuration from the process environment, the env file and
    /// `$CREDENTIALS_DIRECTORY`, and validates every value.
    ///
    /// - Throws: ``ConfigurationError`` naming the first invalid or missing variable.
    public static func load(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        envFile: EnvFileLocation = .default,
        accessReporter: (any AccessReporter)? = nil
    ) async throws(ConfigurationError) -> PushBridgeConfiguration {
        let sources = try await ConfigurationSources(
            environment: environment, envFile: envFile, accessReporter: accessReporter)
        return try load(from: sources)
    }

    /// Validates the values found in `sources`.
    public static func load(from sources: ConfigurationSources) throws(ConfigurationError) -> PushBridgeConfiguration {
        var reader = Validator(sources: sources)
        return try reader.configuration()
    }
}

/// Turns raw strings into typed values, failing with the variable's name.
private struct Validator {
    let sources: ConfigurationSources

    func string(_ variable: ConfigVariable) -> String? { sources.value(variable) }

    func required(_ variable: ConfigVariable) throws(ConfigurationError) -> String {
        guard let value = string(variable) else { throw ConfigurationError(variable, "is required but not set") }
        return value
    }

    func integer(_ variable: ConfigVariable, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        let text = try required(variable)
        guard let value = Int(text), range.contains(value) else {
            throw ConfigurationError(variable, "expected an integer in \(range.lowerBound)...\(range.upperBound), got \(quoted(text))")
        }
        return value
    }

    func duration(_ variable: ConfigVariable) throws(ConfigurationError) -> Duration {
        let text = try required(variable)
        guard let value = ConfigParsing.duration(text) else {
            throw ConfigurationError(variable, "expected a duration such as 30s, 5m, 1h, got \(quoted(text))")
        }
        return value
    }

    func bytes(_ variable: ConfigVariable) throws(ConfigurationError) -> Int {
        let text = try required(variable)
        guard let value = ConfigParsing.byteCount(text), value > 0 else {
            throw ConfigurationError(variable, "expected a positive size such as 1048576, 64KiB, 256MiB, got \(quoted(text))")
        }
        return value
    }

    func url(_ variable: ConfigVariable) throws(ConfigurationError) -> URL? {
        guard let text = string(variable) else { return nil }
        guard let url = ConfigParsing.httpURL(text.hasSuffix("/") ? String(text.dropLast()) : text) else {
            // Never echo a value that may hold credentials.
            let shown = variable.isSecret ? "" : ", got \(quoted(text))"
            throw ConfigurationError(variable, "expected an absolute http(s) URL without query\(shown)")
        }
        return url
    }

    func absolutePath(_ variable: ConfigVariable, _ text: String) throws(ConfigurationError) -> String {
        guard text.hasPrefix("/") else {
            throw ConfigurationError(variable, "expected an absolute path, got \(quoted(text))")
        }
        return text.count > 1 && text.hasSuffix("/") ? String(text.dropLast()) : text
    }

    func quoted(_ text: String) -> String { "\"\(text)\"" }

    mutating func configuration() throws(ConfigurationError) -> PushBridgeConfiguration {
        let listenText = try required(.listen)
        guard let listen = ListenAddress(parsing: listenText) else {
            throw ConfigurationError(.listen, "expected host:port (IPv6 as [addr]:port), got \(quoted(listenText))")
        }

        let tokens = try required(.apiTokens).split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard !tokens.isEmpty, tokens.allSatisfy({ !$0.isEmpty }) else {
            throw ConfigurationError(.apiTokens, "expected a comma-separated list of non-empty tokens")
        }
        guard tokens.allSatisfy({ $0.utf8.count >= 16 }) else {
            throw ConfigurationError(.apiTokens, "every token must be at least 16 characters long")
        }
        guard tokens.allSatisfy({ $0.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F } }) else {
            throw ConfigurationError(.apiTokens, "tokens must be printable ASCII without spaces")
        }

        guard let database = DatabaseLocation(parsing: try required(.databaseURL)) else {
            throw ConfigurationError(
                .databaseURL, "expected sqlite:///absolute/path.sqlite or postgres://user@host[:port]/database")
        }

        let dataDirectory = try absolutePath(.dataDir, try required(.dataDir))

        var sourceRoots: [String] = []
        for root in (string(.sourceRoots) ?? "").split(separator: ":").map(String.init) where !root.isEmpty {
            let path = try absolutePath(.sourceRoots, root)
            guard let resolved = resolvingSymlinks(path) else {
                throw ConfigurationError(.sourceRoots, "directory \(quoted(path)) does not exist")
            }
            sourceRoots.append(resolved)
        }

        let keyText = try required(.masterKey)
        guard let key = Data(base64Encoded: keyText), key.count == 32 else {
            throw ConfigurationError(.masterKey, "expected the base64 encoding of exactly 32 bytes (e.g. `openssl rand -base64 32`)")
        }

        var previousKeys: [[UInt8]] = []
        for text in (string(.previousMasterKeys) ?? "").split(separator: ",") {
            guard let key = Data(base64Encoded: text.trimmingCharacters(in: .whitespaces)), key.count == 32 else {
                throw ConfigurationError(.previousMasterKeys, "expected comma-separated base64 encodings of 32 bytes each")
            }
            previousKeys.append(Array(key))
        }

        let publicURL = try url(.publicURL) ?? URL(string: "http://\(listen)")!

        let cloud = PushBridgeConfiguration.Provider(
            apiURL: try url(.cloudAPIURL), siteURL: try url(.cloudSiteURL), gitURL: try url(.cloudGitURL),
            clientID: string(.cloudClientID), clientSecret: string(.cloudClientSecret).map(Redacted.init))
        let dataCenter = PushBridgeConfiguration.Provider(
            apiURL: try url(.dcAPIURL), siteURL: try url(.dcSiteURL), gitURL: try url(.dcGitURL),
            clientID: string(.dcClientID), clientSecret: string(.dcClientSecret).map(Redacted.init))
        if cloud.clientID != nil && cloud.clientSecret == nil {
            throw ConfigurationError(.cloudClientSecret, "is required when PUSHBRIDGE_CLOUD_CLIENT_ID is set")
        }

        let privateKeyFile = try string(.oauth1PrivateKeyFile).map { (text) throws(ConfigurationError) in
            try absolutePath(.oauth1PrivateKeyFile, text)
        }
        let oauth1 = PushBridgeConfiguration.OAuth1(
            consumerKey: string(.oauth1ConsumerKey), privateKeyFile: privateKeyFile)

        let webhook = PushBridgeConfiguration.Webhook(
            url: try url(.webhookURL), secret: string(.webhookSecret).map(Redacted.init),
            maxAttempts: try integer(.webhookMaxAttempts, in: 1...100))
        if webhook.url != nil && webhook.secret == nil {
            throw ConfigurationError(.webhookSecret, "is required when PUSHBRIDGE_WEBHOOK_URL is set")
        }

        let caBundle = try string(.caBundle).map { (text) throws(ConfigurationError) in
            try absolutePath(.caBundle, text)
        }
        var proxy: Redacted<URL>?
        if let text = string(.httpsProxy) {
            guard let url = ConfigParsing.httpURL(text) else {
                throw ConfigurationError(.httpsProxy, "expected an http(s) proxy URL such as http://proxy:3128")
            }
            proxy = Redacted(url)
        }

        let limits = PushBridgeConfiguration.Limits(
            maxRequestBytes: try bytes(.maxRequestBytes), maxArchiveBytes: try bytes(.maxArchiveBytes),
            maxArchiveEntries: try integer(.maxArchiveEntries, in: 1...10_000_000),
            maxArchiveExpandedBytes: try bytes(.maxArchiveExpandedBytes),
            maxFileBytes: try bytes(.maxFileBytes))

        let levelText = try required(.logLevel)
        guard let logLevel = Logger.Level(rawValue: levelText.lowercased()) else {
            let names = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw ConfigurationError(.logLevel, "expected one of \(names), got \(quoted(levelText))")
        }

        return PushBridgeConfiguration(
            listen: listen,
            apiTokens: Redacted(tokens),
            database: database,
            dataDirectory: dataDirectory,
            sourceRoots: sourceRoots,
            masterKey: Redacted(Array(key)),
            previousMasterKeys: Redacted(previousKeys),
            publicURL: publicURL,
            cloud: cloud,
            dataCenter: dataCenter,
            oauth1: oauth1,
            webhook: webhook,
            workers: try integer(.workers, in: 1...256),
            perConnectionJobs: try integer(.perConnectionJobs, in: 1...64),
            jobMaxAttempts: try integer(.jobMaxAttempts, in: 1...100),
            jobLease: try duration(.jobLease),
            shutdownGrace: try duration(.shutdownGrace),
            refreshSkew: try duration(.refreshSkew),
            oauthStateTTL: try duration(.oauthStateTTL),
            caBundle: caBundle,
            httpsProxy: proxy,
            limits: limits,
            archiveTTL: try duration(.archiveTTL),
            logLevel: logLevel)
    }
}

/// `realpath(3)`: the canonical absolute path, or `nil` when it does not exist.
func resolvingSymlinks(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}
