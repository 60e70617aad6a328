import BitbucketKit
import Foundation
import GitKit
import Logging
import Metrics
import PushBridge
import ServiceLifecycle

/// The Bitbucket side of a running daemon, built once from the validated configuration and shared
/// by the job worker, the OAuth connect flows and the pickers: one HTTP connection pool, one
/// ``TokenManager`` (so refreshes stay single-flight across all of them) and one client factory.
public struct BitbucketServices: Sendable {
    public let transport: BitbucketHTTPTransport
    /// Cloud addresses for connections that leave their URLs `nil` (configured or production).
    public let cloudEndpoints: CloudEndpoints
    public let clientOptions: BitbucketClientOptions
    public let tokens: TokenManager
    public let clients: BitbucketClientFactory
    /// The application-link signing key (`PUSHBRIDGE_OAUTH1_PRIVATE_KEY_FILE`), when configured.
    public let oauth1PrivateKey: OAuth1PrivateKey?

    /// Builds the transport (CA bundle, proxy), token manager and client factory.
    ///
    /// - Parameter metricsFactory: Receives Bitbucket request, token refresh and worker metrics
    ///   (`nil`: the process-wide `MetricsSystem.factory`).
    ///
    /// - Throws: `BitbucketError` for a bad CA bundle or proxy, or when the OAuth 1.0a key file is
    ///   unreadable or not a PKCS#8 RSA key.
    public init(
        configuration: PushBridgeConfiguration, store: any Store, logger: Logger,
        metricsFactory: (any MetricsFactory)? = nil
    ) throws {
        var proxy: ProxyConfiguration?
        if let url = configuration.httpsProxy?.value.absoluteString {
            proxy = try ProxyConfiguration(url: url)
        }
        let transport = try BitbucketHTTPTransport(
            configuration: HTTPTransportConfiguration(caBundlePath: configuration.caBundle, proxy: proxy))
        let clientOptions = BitbucketClientOptions(logger: logger, metricsFactory: metricsFactory)
        let defaults = CloudEndpoints.production
        let cloud = CloudEndpoints(
            apiBaseURL: configuration.cloud.apiURL ?? defaults.apiBaseURL,
            siteURL: configuration.cloud.siteURL ?? defaults.siteURL,
            gitBaseURL: configuration.cloud.gitURL ?? defaults.gitBaseURL)
        var oauth1Key: OAuth1PrivateKey?
        if let file = configuration.oauth1.privateKeyFile {
            oauth1Key = try OAuth1PrivateKey(pemRepresentation: try String(contentsOfFile: file, encoding: .utf8))
        }
        self.transport = transport
        self.cloudEndpoints = cloud
        self.clientOptions = clientOptions
        self.oauth1PrivateKey = oauth1Key
        self.tokens = TokenManager(
            store: store, transport: transport,
            configuration: TokenManagerConfiguration(
                refreshSkew: configuration.refreshSkew, cloudEndpoints: cloud,
                cloudClientID: configuration.cloud.clientID,
                cloudClientSecret: configuration.cloud.clientSecret.map { Secret($0.value) },
                dataCenterClientID: configuration.dataCenter.clientID,
                dataCenterClientSecret: configuration.dataCenter.clientSecret.map { Secret($0.value) },
                dataCenterRedirectURI: configuration.publicURL.appendingPathComponent(
                    "v1/oauth/\(Provider.bitbucketDataCenter.rawValue)/callback"),
                dataCenterBaseURL: configuration.dataCenter.apiURL,
                oauth1ConsumerKey: configuration.oauth1.consumerKey, oauth1PrivateKey: oauth1Key,
                clientOptions: clientOptions, logger: logger))
        self.clients = BitbucketClientFactory(
            transport: transport, cloudEndpoints: cloud, dataCenterBaseURL: configuration.dataCenter.apiURL,
            options: clientOptions)
    }

    /// Closes the HTTP connection pool.
    public func shutdown() async throws {
        try await transport.shutdown()
    }
}

/// Everything a running daemon's parts are built from, once the store is open.
public struct DaemonContext: Sendable {
    public let configuration: PushBridgeConfiguration
    public let store: any Store
    public let archives: ArchiveStore
    public let bitbucket: BitbucketServices
    public let logger: Logger
}

extension PushBridgeDaemon {
    /// The production job services: the worker (token manager → push pipeline) and, when
    /// `PUSHBRIDGE_WEBHOOK_URL` is set, the webhook sender.
    public static let productionWorkers: WorkerFactory = { context in
        let configuration = context.configuration
        let bitbucket = context.bitbucket
        let pipeline = PushPipeline(
            tokens: bitbucket.tokens,
            caches: GitCacheStore(dataDirectory: configuration.dataDirectory, logger: context.logger),
            transport: bitbucket.transport,
            configuration: PipelineConfiguration(
                sourceRoots: configuration.sourceRoots, archiveDirectory: configuration.archivesDirectory,
                cloudEndpoints: bitbucket.cloudEndpoints, dataCenterBaseURL: configuration.dataCenter.apiURL,
                maxFileSize: configuration.limits.maxFileBytes, clientOptions: bitbucket.clientOptions,
                gitProxy: configuration.httpsProxy.map { .url($0.value.absoluteString) } ?? .none),
            logger: context.logger)
        var services: [any Service] = [
            Worker(
                store: context.store, pipeline: pipeline,
                configuration: WorkerConfiguration(
                    slots: configuration.workers, leaseDuration: configuration.jobLease,
                    perConnectionLimit: configuration.perConnectionJobs, shutdownGrace: configuration.shutdownGrace,
                    metricsFactory: bitbucket.clientOptions.metricsFactory),
                logger: context.logger)
        ]
        if let url = configuration.webhook.url, let secret = configuration.webhook.secret {
            services.append(
                WebhookDispatcher(
                    store: context.store, configuration: WebhookConfiguration(
                        url: url, secret: Secret(secret.value),
                        logger: context.logger)))
        }
        return services
    }

    /// The production `/v1` route extensions (OAuth connect flows, pickers).
    public static let productionRoutes: RouteFactory = { context in
        [OAuthConnectRoutes(context: context), PickerRoutes(context: context)]
    }
}
