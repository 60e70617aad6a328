/// One `PUSHBRIDGE_*` setting the daemon reads.
///
/// The list in ``ConfigVariable/all`` is the single source of truth for names, defaults and
/// which values are secret: the loader reads only these, the redacted dump prints these, and a
/// test checks `Config/pushbridge.env.example` documents exactly this set.
public struct ConfigVariable: Sendable, Hashable, CustomStringConvertible {
    /// The environment variable name, e.g. `PUSHBRIDGE_LISTEN`.
    public let name: String
    /// The documented default as it would be written in an env file; `nil` when there is none
    /// (the setting is optional or required).
    public let defaultValue: String?
    /// Whether the value must never be printed or logged.
    public let isSecret: Bool
    /// The file name under `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`) that may carry
    /// the value instead of the environment, e.g. `master-key`.
    public let credentialName: String?

    init(_ name: String, default defaultValue: String? = nil, secret: Bool = false, credential: String? = nil) {
        self.name = name
        self.defaultValue = defaultValue
        self.isSecret = secret
        self.credentialName = credential
    }

    public var description: String { name }

    /// The `swift-configuration` key whose environment encoding is ``name``
    /// (`PUSHBRIDGE_API_TOKENS` ↔ `pushbridge.api.tokens`).
    var keyComponents: [String] {
        name.lowercased().split(separator: "_").map(String.init)
    }
}

extension ConfigVariable {
    public static let listen = ConfigVariable("PUSHBRIDGE_LISTEN", default: "127.0.0.1:8080")
    public static let apiTokens = ConfigVariable("PUSHBRIDGE_API_TOKENS", secret: true, credential: "api-tokens")
    public static let databaseURL = ConfigVariable(
        "PUSHBRIDGE_DATABASE_URL", default: "sqlite:///var/lib/pushbridge/pushbridge.sqlite", secret: true,
        credential: "database-url")
    public static let dataDir = ConfigVariable("PUSHBRIDGE_DATA_DIR", default: "/var/lib/pushbridge")
    public static let sourceRoots = ConfigVariable("PUSHBRIDGE_SOURCE_ROOTS", default: "")
    public static let masterKey = ConfigVariable("PUSHBRIDGE_MASTER_KEY", secret: true, credential: "master-key")
    public static let previousMasterKeys = ConfigVariable(
        "PUSHBRIDGE_PREVIOUS_MASTER_KEYS", secret: true, credential: "previous-master-keys")
    public static let publicURL = ConfigVariable("PUSHBRIDGE_PUBLIC_URL")
    public static let cloudAPIURL = ConfigVariable("PUSHBRIDGE_CLOUD_API_URL", default: "https://api.bitbucket.org/2.0")
    public static let cloudSiteURL = ConfigVariable("PUSHBRIDGE_CLOUD_SITE_URL", default: "https://bitbucket.org")
    public static let cloudGitURL = ConfigVariable("PUSHBRIDGE_CLOUD_GIT_URL", default: "https://bitbucket.org")
    public static let cloudClientID = ConfigVariable("PUSHBRIDGE_CLOUD_CLIENT_ID")
    public static let cloudClientSecret = ConfigVariable(
        "PUSHBRIDGE_CLOUD_CLIENT_SECRET", secret: true, credential: "cloud-client-secret")
    public static let dcAPIURL = ConfigVariable("PUSHBRIDGE_DC_API_URL")
    public static let dcSiteURL = ConfigVariable("PUSHBRIDGE_DC_SITE_URL")
    public static let dcGitURL = ConfigVariable("PUSHBRIDGE_DC_GIT_URL")
    public static let dcClientID = ConfigVariable("PUSHBRIDGE_DC_CLIENT_ID")
    public static let dcClientSecret = ConfigVariable(
        "PUSHBRIDGE_DC_CLIENT_SECRET", secret: true, credential: "dc-client-secret")
    public static let oauth1ConsumerKey = ConfigVariable("PUSHBRIDGE_OAUTH1_CONSUMER_KEY")
    public static let oauth1PrivateKeyFile = ConfigVariable("PUSHBRIDGE_OAUTH1_PRIVATE_KEY_FILE")
    public static let webhookURL = ConfigVariable("PUSHBRIDGE_WEBHOOK_URL")
    public static let webhookSecret = ConfigVariable(
        "PUSHBRIDGE_WEBHOOK_SECRET", secret: true, credential: "webhook-secret")
    public static let webhookMaxAttempts = ConfigVariable("PUSHBRIDGE_WEBHOOK_MAX_ATTEMPTS", default: "8")
    public static let workers = ConfigVariable("PUSHBRIDGE_WORKERS", default: "4")
    public static let perConnectionJobs = ConfigVariable("PUSHBRIDGE_PER_CONNECTION_JOBS", default: "1")
    public static let jobMaxAttempts = ConfigVariable("PUSHBRIDGE_JOB_MAX_ATTEMPTS", default: "5")
    public static let jobLease = ConfigVariable("PUSHBRIDGE_JOB_LEASE", default: "60s")
    public static let shutdownGrace = ConfigVariable("PUSHBRIDGE_SHUTDOWN_GRACE", default: "30s")
    public static let refreshSkew = ConfigVariable("PUSHBRIDGE_REFRESH_SKEW", default: "5m")
    public static let oauthStateTTL = ConfigVariable("PUSHBRIDGE_OAUTH_STATE_TTL", default: "10m")
    public static let caBundle = ConfigVariable("PUSHBRIDGE_CA_BUNDLE")
    public static let httpsProxy = ConfigVariable("PUSHBRIDGE_HTTPS_PROXY", secret: true)
    public static let maxRequestBytes = ConfigVariable("PUSHBRIDGE_MAX_REQUEST_BYTES", default: "1MiB")
    public static let maxArchiveBytes = ConfigVariable("PUSHBRIDGE_MAX_ARCHIVE_BYTES", default: "256MiB")
    public static let maxArchiveEntries = ConfigVariable("PUSHBRIDGE_MAX_ARCHIVE_ENTRIES", default: "100000")
    public static let maxArchiveExpandedBytes = ConfigVariable("PUSHBRIDGE_MAX_ARCHIVE_EXPANDED_BYTES", default: "1GiB")
    public static let maxFileBytes = ConfigVariable("PUSHBRIDGE_MAX_FILE_BYTES", default: "100MiB")
    public static let archiveTTL = ConfigVariable("PUSHBRIDGE_ARCHIVE_TTL", default: "24h")
    public static let logLevel = ConfigVariable("PUSHBRIDGE_LOG_LEVEL", default: "info")

    /// Every variable the daemon reads, in the order of the example env file.
    public static let all: [ConfigVariable] = [
        listen, apiTokens, databaseURL, dataDir, sourceRoots, masterKey, previousMasterKeys, publicURL,
        cloudAPIURL, cloudSiteURL, cloudGitURL, cloudClientID, cloudClientSecret,
        dcAPIURL, dcSiteURL, dcGitURL, dcClientID, dcClientSecret,
        oauth1ConsumerKey, oauth1PrivateKeyFile,
        webhookURL, webhookSecret, webhookMaxAttempts,
        workers, perConnectionJobs, jobMaxAttempts, jobLease, shutdownGrace, refreshSkew, oauthStateTTL,
        caBundle, httpsProxy,
        maxRequestBytes, maxArchiveBytes, maxArchiveEntries, maxArchiveExpandedBytes, maxFileBytes, archiveTTL,
        logLevel,
    ]

    /// Read by the CLI only (commands that call a running daemon): the bearer token to send.
    /// Not part of ``all`` because `serve` never reads it.
    public static let cliAPIToken = ConfigVariable("PUSHBRIDGE_API_TOKEN", secret: true)
    /// Read by the CLI only: the daemon's base URL when `--url` is not given.
    public static let cliURL = ConfigVariable("PUSHBRIDGE_URL")
}
