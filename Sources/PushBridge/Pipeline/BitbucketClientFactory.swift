import BitbucketKit
import Foundation

/// Makes the REST client of a connection: its product, its own URLs or the configured defaults.
///
/// Shared by the push pipeline and the API's pickers so both talk to a connection the same way.
public struct BitbucketClientFactory: Sendable {
    public let transport: BitbucketHTTPTransport
    /// Cloud addresses used when a connection leaves its URLs `nil`.
    public let cloudEndpoints: CloudEndpoints
    /// Data Center / Server base URL used when a connection leaves `apiURL` `nil`.
    public let dataCenterBaseURL: URL?
    public let options: BitbucketClientOptions

    public init(
        transport: BitbucketHTTPTransport, cloudEndpoints: CloudEndpoints = .production, dataCenterBaseURL: URL? = nil,
        options: BitbucketClientOptions = .init()
    ) {
        self.transport = transport
        self.cloudEndpoints = cloudEndpoints
        self.dataCenterBaseURL = dataCenterBaseURL
        self.options = options
    }

    /// The client for `connection`, authenticating with `credentials`
    /// (usually ``TokenManager/credentialProvider(connectionID:)``).
    ///
    /// - Throws: ``PipelineError`` `configuration_error` when a Data Center / Server connection has
    ///   no base URL and none is configured.
    public func client(for connection: Connection, credentials: any CredentialProvider) throws(PipelineError)
        -> any BitbucketClient
    {
        switch connection.provider {
        case .bitbucketCloud:
            let endpoints = CloudEndpoints(
                apiBaseURL: connection.apiURL ?? cloudEndpoints.apiBaseURL,
                siteURL: connection.siteURL ?? cloudEndpoints.siteURL,
                gitBaseURL: connection.gitURL ?? cloudEndpoints.gitBaseURL)
            return CloudClient(endpoints: endpoints, credentials: credentials, transport: transport, options: options)
        case .bitbucketDataCenter, .bitbucketServer:
            guard let base = connection.apiURL ?? dataCenterBaseURL else {
                throw PipelineError(
                    code: "configuration_error", message: "connection \(connection.id) has no Bitbucket base URL",
                    retryable: false)
            }
            return DataCenterClient(
                endpoints: DataCenterEndpoints(baseURL: base, gitBaseURL: connection.gitURL), credentials: credentials,
                transport: transport, options: options)
        }
    }
}
