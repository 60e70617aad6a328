import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// An HTTP(S) proxy for REST traffic (plain HTTP proxy; HTTPS targets are tunnelled with CONNECT).
public struct ProxyConfiguration: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: Secret?

    public init(host: String, port: Int, username: String? = nil, password: Secret? = nil) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
    }

    /// Parses `http://[user:password@]host[:port]` (the usual `HTTPS_PROXY` form). The port defaults
    /// to 80 for `http` and 443 for `https` schemes, 3128 when the scheme is absent.
    public init(url string: String) throws(BitbucketError) {
        let candidate = string.contains("://") ? string : "http://\(string)"
        guard let components = URLComponents(string: candidate), let host = components.host, !host.isEmpty else {
            throw .configuration("proxy URL is not a valid URL")
        }
        let scheme = components.scheme?.lowercased() ?? "http"
        guard scheme == "http" || scheme == "https" else {
            throw .configuration("proxy URL scheme must be http or https")
        }
        self.host = host
        self.port = components.port ?? (string.contains("://") ? (scheme == "https" ? 443 : 80) : 3128)
        self.username = components.user?.removingPercentEncoding
        self.password = components.password?.removingPercentEncoding.map(Secret.init)
    }
}

/// Settings of the shared HTTP connection pool used for REST and OAuth traffic.
public struct HTTPTransportConfiguration: Sendable {
    /// PEM file with extra trust anchors (a private CA for a Data Center instance). They are added
    /// to the system trust store, not substituted for it.
    public var caBundlePath: String?
    /// Proxy for all requests.
    public var proxy: ProxyConfiguration?
    /// Time allowed to establish a connection.
    public var connectTimeout: Duration
    /// Largest response body accepted; larger bodies fail with `decoding`.
    public var maxResponseBytes: Int

    public init(
        caBundlePath: String? = nil,
        proxy: ProxyConfiguration? = nil,
        connectTimeout: Duration = .seconds(10),
        maxResponseBytes: Int = 16 * 1024 * 1024
    ) {
        self.caBundlePath = caBundlePath
        self.proxy = proxy
        self.connectTimeout = connectTimeout
        self.maxResponseBytes = maxResponseBytes
    }
}

/// The HTTP connection pool behind every BitbucketKit client: one per process is enough, shared by
/// all connections' clients.
///
/// Redirects are never followed: a redirect to another host would carry the `Authorization`
/// header there.
public final class BitbucketHTTPTransport: Sendable {
    let client: HTTPClient
    private let ownsClient: Bool
    let maxResponseBytes: Int

    /// Creates a transport with its own `HTTPClient`. Call ``shutdown()`` when done.
    ///
    /// - Throws: `configuration` when the CA bundle cannot be read or holds no certificate.
    public init(configuration: HTTPTransportConfiguration = .init()) throws(BitbucketError) {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let path = configuration.caBundlePath {
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMFile(path)
            } catch {
                throw .configuration("cannot read CA bundle \(path): \(error)")
            }
            guard !certificates.isEmpty else {
                throw .configuration("CA bundle \(path) contains no certificate")
            }
            tls.additionalTrustRoots = [.certificates(certificates)]
        }
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.tlsConfiguration = tls
        httpConfiguration.redirectConfiguration = .disallow
        httpConfiguration.timeout = .init(connect: TimeAmount(configuration.connectTimeout), read: nil)
        httpConfiguration.decompression = .enabled(limit: .ratio(100))
        if let proxy = configuration.proxy {
            let authorization: HTTPClient.Authorization? = proxy.username.map { username in
                .basic(username: username, password: proxy.password?.reveal() ?? "")
            }
            httpConfiguration.proxy = .server(host: proxy.host, port: proxy.port, authorization: authorization)
        }
        self.client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: httpConfiguration)
        self.ownsClient = true
        self.maxResponseBytes = configuration.maxResponseBytes
    }

    /// Wraps an existing client, which the caller keeps owning (``shutdown()`` does nothing).
    /// Configure it with `redirectConfiguration = .disallow`.
    public init(borrowing client: HTTPClient, maxResponseBytes: Int = 16 * 1024 * 1024) {
        self.client = client
        self.ownsClient = false
        self.maxResponseBytes = maxResponseBytes
    }

    /// Shuts the owned `HTTPClient` down. Must be called once before the transport is released.
    public func shutdown() async throws {
        if ownsClient {
            try await client.shutdown()
        }
    }

    /// Performs one HTTP exchange, mapping transport failures to ``BitbucketError``.
    func execute(_ request: PreparedRequest, timeout: Duration, logger: Logger) async throws -> RawResponse {
        var outgoing = HTTPClientRequest(url: request.url.absoluteString)
        outgoing.method = request.method
        outgoing.headers = request.headers
        if let body = request.body {
            outgoing.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let response = try await client.execute(outgoing, timeout: TimeAmount(timeout), logger: logger)
            var buffer = try await response.body.collect(upTo: maxResponseBytes)
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            return RawResponse(status: Int(response.status.code), headers: response.headers, body: bytes)
        } catch let error as CancellationError {
            throw error
        } catch {
            throw Self.map(error)
        }
    }

    static func map(_ error: any Error) -> BitbucketError {
        if let error = error as? HTTPClientError {
            let timeouts: [HTTPClientError] = [
                .readTimeout, .writeTimeout, .connectTimeout, .deadlineExceeded, .tlsHandshakeTimeout,
                .httpProxyHandshakeTimeout, .socksHandshakeTimeout, .getConnectionFromPoolTimeout,
            ]
            if timeouts.contains(error) {
                return BitbucketError(code: .timeout, message: "request timed out (\(error))", retryable: true)
            }
            if error == .remoteConnectionClosed {
                return BitbucketError(code: .network, message: "connection closed by the server", retryable: true)
            }
            if error == .bodyLengthMismatch {
                return BitbucketError(code: .decoding, message: "response body truncated", retryable: true)
            }
            let configurationErrors: [HTTPClientError] = [.invalidURL, .emptyHost, .emptyScheme, .missingSocketPath, .invalidProxyResponse]
            if configurationErrors.contains(error) {
                return BitbucketError(code: .configuration, message: "invalid request or proxy: \(error)")
            }
            if error == .cancelled || error == .alreadyShutdown {
                return BitbucketError(code: .network, message: "request cancelled (\(error))")
            }
            return BitbucketError(code: .network, message: "HTTP client error: \(error)", retryable: true)
        }
        if error is NIOTooManyBytesError {
            return BitbucketError(code: .decoding, message: "response body too large")
        }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            // Certificate problems do not heal by retrying.
            return BitbucketError(code: .tls, message: "TLS failure: \(error)")
        }
        if let error = error as? IOError {
            return BitbucketError(code: .network, message: "I/O error: \(error.description)", retryable: true)
        }
        // NIOConnectionError (refused/unreachable, DNS) and channel errors: transient by nature.
        return BitbucketError(code: .network, message: "connection failed: \(error)", retryable: true)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// A request ready for the wire (authorization applied).
struct PreparedRequest: Sendable {
    var method: HTTPMethod
    var url: URL
    var headers: HTTPHeaders
    var body: [UInt8]?
}

/// A fully read response.
struct RawResponse: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]
    /// The credentials the request carried, so errors built from this response can be scrubbed.
    var secrets: [Secret] = []

    /// The ``BitbucketError`` for this response, scrubbed of the request's secrets.
    func error() -> BitbucketError {
        BitbucketErrorParser.error(
            status: status,
            body: body,
            retryAfter: headers.first(name: "Retry-After"),
            secrets: secrets
        ).scrubbed(secrets)
    }
}
