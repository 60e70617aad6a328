import Foundation
import Logging
import PushBridge

/// The validated settings of one pushbridge process.
///
/// Build it with ``ConfigurationLoader/load(environment:envFile:accessReporter:)``; every field
/// has already been checked, so consumers never re-validate. Secrets are wrapped in ``Redacted``.
/// ``redactedDescription`` is the only sanctioned way to print it.
public struct PushBridgeConfiguration: Sendable {
    /// Bitbucket endpoints and OAuth 2.0 client of one product.
    public struct Provider: Sendable {
        /// REST base URL (Cloud: `…/2.0`; DC: `…/rest/api/1.0`'s root site when `nil`).
        public var apiURL: URL?
        /// Site / OAuth authorization base URL.
        public var siteURL: URL?
        /// Base URL that git remotes are built from.
        public var gitURL: URL?
        /// OAuth 2.0 client id.
        public var clientID: String?
        /// OAuth 2.0 client secret.
        public var clientSecret: Redacted<String>?

        /// Creates provider settings.
        public init(
            apiURL: URL? = nil, siteURL: URL? = nil, gitURL: URL? = nil, clientID: String? = nil,
            clientSecret: Redacted<String>? = nil
        ) {
            self.apiURL = apiURL
            self.siteURL = siteURL
            self.gitURL = gitURL
            self.clientID = clientID
            self.clientSecret = clientSecret
        }
    }

    /// Application-link (OAuth 1.0a RSA-SHA1) settings.
    public struct OAuth1: Sendable {
        /// The consumer key registered in the application link.
        public var consumerKey: String?
        /// Path of the PKCS#8 PEM private key (from `pushbridge oauth1-keygen`).
        public var privateKeyFile: String?
    }

    /// Job-completion webhook.
    public struct Webhook: Sendable {
        /// Where to POST finished jobs; `nil` disables webhooks.
        public var url: URL?
        /// HMAC-SHA256 key for `X-Pushbridge-Signature`.
        public var secret: Redacted<String>?
        /// Delivery attempts before giving up (≥ 1).
        public var maxAttempts: Int
    }

    /// Size limits on untrusted input.
    public struct Limits: Sendable {
        /// Largest JSON request body accepted (413 beyond).
        public var maxRequestBytes: Int
        /// Largest archive upload accepted, compressed size (413 beyond).
        public var maxArchiveBytes: Int
        /// Most entries an archive may hold (413 beyond).
        public var maxArchiveEntries: Int
        /// Largest sum of file sizes an archive may unpack to (413 beyond; guards against gzip bombs).
        public var maxArchiveExpandedBytes: Int
        /// Largest single file in an archive or source directory, uncompressed (413 beyond).
        public var maxFileBytes: Int

        /// Creates limits.
        public init(
            maxRequestBytes: Int, maxArchiveBytes: Int, maxArchiveEntries: Int, maxArchiveExpandedBytes: Int,
            maxFileBytes: Int
        ) {
            self.maxRequestBytes = maxRequestBytes
            self.maxArchiveBytes = maxArchiveBytes
            self.maxArchiveEntries = maxArchiveEntries
            self.maxArchiveExpandedBytes = maxArchiveExpandedBytes
            self.maxFileBytes = maxFileBytes
        }

        /// The archive part of these limits.
        public var archive: ArchiveLimits {
            ArchiveLimits(
                maxArchiveBytes: maxArchiveBytes, maxEntries: maxArchiveEntries, maxFileBytes: maxFileBytes,
                maxExpandedBytes: maxArchiveExpandedBytes)
        }
    }

    /// Address the HTTP API listens on.
    public var listen: ListenAddress
    /// Accepted bearer tokens (at least one).
    public var apiTokens: Redacted<[String]>
    /// The job store.
    public var database: DatabaseLocation
    /// Root of git caches and archives; absolute.
    public var dataDirectory: String
    /// Directories `source.directory` may point into; absolute, symlinks resolved.
    public var sourceRoots: [String]
    /// 32-byte key sealing stored secrets.
    public var masterKey: Redacted<[UInt8]>
    /// Keys sealed data may still be under while `pushbridge rotate-key` re-seals it (32 bytes each).
    public var previousMasterKeys: Redacted<[[UInt8]]>
    /// Externally visible base URL (OAuth callbacks are built from it); no trailing slash.
    public var publicURL: URL
    /// Bitbucket Cloud endpoints and OAuth consumer.
    public var cloud: Provider
    /// Bitbucket Data Center defaults (a connection's `baseUrl` wins).
    public var dataCenter: Provider
    /// Application-link OAuth 1.0a settings.
    public var oauth1: OAuth1
    /// Job-completion webhook.
    public var webhook: Webhook
    /// Jobs run concurrently by this process.
    public var workers: Int
    /// Jobs of one connection run concurrently (keeps refresh and pushes orderly).
    public var perConnectionJobs: Int
    /// Attempts of a retryable job before it fails for good.
    public var jobMaxAttempts: Int
    /// How long a worker's lease on a job lasts before another may take it.
    public var jobLease: Duration
    /// How long SIGTERM waits for running jobs.
    public var shutdownGrace: Duration
    /// Access tokens are refreshed this long before they expire.
    public var refreshSkew: Duration
    /// Lifetime of an OAuth `state` value.
    public var oauthStateTTL: Duration
    /// Extra PEM trust anchors for REST and git.
    public var caBundle: String?
    /// Proxy for REST and git traffic (may carry credentials).
    public var httpsProxy: Redacted<URL>?
    /// Input size limits.
    public var limits: Limits
    /// Archives unreferenced for this long are deleted.
    public var archiveTTL: Duration
    /// Minimum log level.
    public var logLevel: Logger.Level

    /// `<dataDir>/archives`.
    public var archivesDirectory: String { dataDirectory + "/archives" }

    /// One `NAME=value` line per variable; secrets print as `<redacted>` and URL passwords are masked.
    public var redactedDescription: String {
        func text(_ url: URL?) -> String { url?.absoluteString ?? "" }
        func secret(_ value: Redacted<some Sendable>?) -> String { value == nil ? "" : "<redacted>" }
        let values: [(ConfigVariable, String)] = [
            (.listen, listen.description),
            (.apiTokens, "<redacted>"),
            (.databaseURL, database.redactedDescription),
            (.dataDir, dataDirectory),
            (.sourceRoots, sourceRoots.joined(separator: ":")),
            (.masterKey, "<redacted>"),
            (.previousMasterKeys, previousMasterKeys.value.isEmpty ? "" : "<redacted>"),
            (.publicURL, publicURL.absoluteString),
            (.cloudAPIURL, text(cloud.apiURL)),
            (.cloudSiteURL, text(cloud.siteURL)),
            (.cloudGitURL, text(cloud.gitURL)),
            (.cloudClientID, cloud.clientID ?? ""),
            (.cloudClientSecret, secret(cloud.clientSecret)),
            (.dcAPIURL, text(dataCenter.apiURL)),
            (.dcSiteURL, text(dataCenter.siteURL)),
            (.dcGitURL, text(dataCenter.gitURL)),
            (.dcClientID, dataCenter.clientID ?? ""),
            (.dcClientSecret, secret(dataCenter.clientSecret)),
            (.oauth1ConsumerKey, oauth1.consumerKey ?? ""),
            (.oauth1PrivateKeyFile, oauth1.privateKeyFile ?? ""),
            (.webhookURL, text(webhook.url)),
            (.webhookSecret, secret(webhook.secret)),
            (.webhookMaxAttempts, String(webhook.maxAttempts)),
            (.workers, String(workers)),
            (.perConnectionJobs, String(perConnectionJobs)),
            (.jobMaxAttempts, String(jobMaxAttempts)),
            (.jobLease, jobLease.configText),
            (.shutdownGrace, shutdownGrace.configText),
            (.refreshSkew, refreshSkew.configText),
            (.oauthStateTTL, oauthStateTTL.configText),
            (.caBundle, caBundle ?? ""),
            (.httpsProxy, httpsProxy.map { redactingUserInfo($0.value.absoluteString) } ?? ""),
            (.maxRequestBytes, String(limits.maxRequestBytes)),
            (.maxArchiveBytes, String(limits.maxArchiveBytes)),
            (.maxArchiveEntries, String(limits.maxArchiveEntries)),
            (.maxArchiveExpandedBytes, String(limits.maxArchiveExpandedBytes)),
            (.maxFileBytes, String(limits.maxFileBytes)),
            (.archiveTTL, archiveTTL.configText),
            (.logLevel, logLevel.rawValue),
        ]
        return values.map { "\($0.0.name)=\($0.1)" }.joined(separator: "\n")
    }
}

extension Duration {
    /// Whole seconds as `Ns`, or milliseconds as `Nms` when not whole: the form the parser reads back.
    var configText: String {
        let millis = components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
        return millis % 1000 == 0 ? "\(millis / 1000)s" : "\(millis)ms"
    }
}
