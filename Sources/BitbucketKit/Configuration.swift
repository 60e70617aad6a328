import Foundation
import Logging
import Metrics

/// Per-client settings shared by the REST and OAuth clients.
public struct BitbucketClientOptions: Sendable {
    /// Timeout of one HTTP exchange (connect timeout is set on the transport).
    public var requestTimeout: Duration
    /// Retry behaviour for transient failures.
    public var retry: RetryPolicy
    /// Sent as `User-Agent`.
    public var userAgent: String
    /// Receives request/response/retry events; never credentials.
    public var logger: Logger
    /// Waits between retries (tests inject a recorder).
    public var sleeper: any RetrySleeper
    /// Where request metrics (`pushbridge_bitbucket_requests_total`) and the token manager's
    /// refresh metrics go; `nil` uses the process-wide `MetricsSystem.factory`. The daemon passes
    /// its Prometheus registry's factory so several daemons in one process (tests) stay apart.
    public var metricsFactory: (any MetricsFactory)?

    public init(
        requestTimeout: Duration = .seconds(30),
        retry: RetryPolicy = .default,
        userAgent: String = "pushbridge/\(BitbucketKitVersion.current)",
        logger: Logger = Logger(label: "pushbridge.bitbucket"),
        sleeper: any RetrySleeper = TaskSleeper(),
        metricsFactory: (any MetricsFactory)? = nil
    ) {
        self.requestTimeout = requestTimeout
        self.retry = retry
        self.userAgent = userAgent
        self.logger = logger
        self.sleeper = sleeper
        self.metricsFactory = metricsFactory
    }
}

/// Addresses of a Bitbucket Cloud installation (all configurable so tests and the demo can use a
/// local emulator).
public struct CloudEndpoints: Sendable, Hashable {
    /// REST 2.0 root, `https://api.bitbucket.org/2.0`.
    public var apiBaseURL: URL
    /// Site root for OAuth (`/site/oauth2/authorize`, `/site/oauth2/access_token`),
    /// `https://bitbucket.org`.
    public var siteURL: URL
    /// Git over HTTPS root, `https://bitbucket.org` (`{git}/{workspace}/{slug}.git`).
    public var gitBaseURL: URL

    public init(
        apiBaseURL: URL = URL(string: "https://api.bitbucket.org/2.0")!,
        siteURL: URL = URL(string: "https://bitbucket.org")!,
        gitBaseURL: URL = URL(string: "https://bitbucket.org")!
    ) {
        self.apiBaseURL = apiBaseURL
        self.siteURL = siteURL
        self.gitBaseURL = gitBaseURL
    }

    /// bitbucket.org.
    public static let production = CloudEndpoints()
}

/// Addresses of a Bitbucket Data Center / Server instance.
public struct DataCenterEndpoints: Sendable, Hashable {
    /// Instance root including any context path, e.g. `https://bitbucket.example.com/bitbucket`.
    /// REST (`/rest/api/1.0`), OAuth 2.0 (`/rest/oauth2/latest`) and OAuth 1.0a
    /// (`/plugins/servlet/oauth`) live below it.
    public var baseURL: URL
    /// Git over HTTP(S) root (`{git}/scm/{project}/{slug}.git`); defaults to `baseURL`.
    public var gitBaseURL: URL

    public init(baseURL: URL, gitBaseURL: URL? = nil) {
        self.baseURL = baseURL
        self.gitBaseURL = gitBaseURL ?? baseURL
    }
}

extension BitbucketClientOptions {
    func executor(transport: BitbucketHTTPTransport, credentials: (any CredentialProvider)?) -> RequestExecutor {
        RequestExecutor(
            transport: transport,
            credentials: credentials,
            retry: retry,
            sleeper: sleeper,
            requestTimeout: requestTimeout,
            userAgent: userAgent,
            logger: logger,
            metrics: RequestMetrics(factory: metricsFactory ?? MetricsSystem.factory)
        )
    }
}
