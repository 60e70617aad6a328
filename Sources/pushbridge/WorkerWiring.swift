import BitbucketKit
import Foundation
import GitKit
import Logging
import PushBridge
import PushBridgeServer
import ServiceLifecycle

/// Builds the production worker services from the validated configuration: the job worker
/// (token manager → push pipeline) and, when `PUSHBRIDGE_WEBHOOK_URL` is set, the webhook sender.
enum WorkerSlot {
    static let factory: PushBridgeDaemon.WorkerFactory = { context in
        let configuration = context.configuration
        let logger = context.logger
        var proxy: ProxyConfiguration?
        if let url = configuration.httpsProxy?.value.absoluteString {
            proxy = try ProxyConfiguration(url: url)
        }
        let transport = try BitbucketHTTPTransport(
            configuration: HTTPTransportConfiguration(caBundlePath: configuration.caBundle, proxy: proxy))
        let clientOptions = BitbucketClientOptions(logger: logger)
        let defaults = CloudEndpoints.production
        let cloud = CloudEndpoints(
            apiBaseURL: configuration.cloud.apiURL ?? defaults.apiBaseURL,
            siteURL: configuration.cloud.siteURL ?? defaults.siteURL,
            gitBaseURL: configuration.cloud.gitURL ?? defaults.gitBaseURL)
        var oauth1Key: OAuth1PrivateKey?
        if let file = configuration.oauth1.privateKeyFile {
            oauth1Key = try OAuth1PrivateKey(pemRepresentation: try String(contentsOfFile: file, encoding: .utf8))
        }
        let tokens = TokenManager(
            store: context.store, transport: transport,
            configuration: TokenManagerConfiguration(
                refreshSkew: configuration.refreshSkew, cloudEndpoints: cloud,
                cloudClientID: configuration.cloud.clientID,
                cloudClientSecret: configuration.cloud.clientSecret.map { Secret($0.value) },
                dataCenterClientID: configuration.dataCenter.clientID,
                dataCenterClientSecret: configuration.dataCenter.clientSecret.map { Secret($0.value) },
                dataCenterRedirectURI: configuration.publicURL.appendingPathComponent("v1/oauth/bitbucket-datacenter/callback"),
                oauth1ConsumerKey: configuration.oauth1.consumerKey, oauth1PrivateKey: oauth1Key,
                clientOptions: clientOptions, logger: logger))
        let pipeline = PushPipeline(
            tokens: tokens, caches: GitCacheStore(dataDirectory: configuration.dataDirectory, logger: logger),
            transport: transport,
            configuration: PipelineConfiguration(
                sourceRoots: configuration.sourceRoots, archiveDirectory: configuration.archivesDirectory,
                cloudEndpoints: cloud, dataCenterBaseURL: configuration.dataCenter.apiURL,
                maxFileSize: configuration.limits.maxFileBytes, clientOptions: clientOptions,
                gitProxy: configuration.httpsProxy.map { .url($0.value.absoluteString) } ?? .none),
            logger: logger)
        var services: [any Service] = [
            Worker(
                store: context.store, pipeline: pipeline,
                configuration: WorkerConfiguration(
                    slots: configuration.workers, leaseDuration: configuration.jobLease,
                    perConnectionLimit: configuration.perConnectionJobs, shutdownGrace: configuration.shutdownGrace),
                logger: logger)
        ]
        if let url = configuration.webhook.url, let secret = configuration.webhook.secret {
            services.append(
                WebhookDispatcher(store: context.store, configuration: WebhookConfiguration(url: url, secret: Secret(secret.value))))
        }
        return services
    }
}
