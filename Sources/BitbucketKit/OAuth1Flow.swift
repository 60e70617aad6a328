import Foundation
import NIOHTTP1

/// Temporary credentials from the request-token step.
public struct OAuth1RequestToken: Sendable, Hashable {
    /// `oauth_token`; the user is sent to the authorize URL with it.
    public var token: Secret
    /// `oauth_token_secret` (unused by RSA-SHA1, kept for completeness).
    public var tokenSecret: Secret?
    /// `oauth_callback_confirmed`.
    public var callbackConfirmed: Bool
}

/// Token credentials from the access-token step.
public struct OAuth1AccessToken: Sendable, Hashable {
    /// `oauth_token`: signs REST calls together with the consumer's private key.
    public var token: Secret
    /// `oauth_token_secret` (unused by RSA-SHA1).
    public var tokenSecret: Secret?
}

/// The OAuth 1.0a (RSA-SHA1) three-legged flow of a Bitbucket Server/DC application link:
/// `{base}/plugins/servlet/oauth/request-token`, `…/authorize`, `…/access-token`.
public struct OAuth1ApplicationLinkClient: Sendable {
    public let endpoints: DataCenterEndpoints
    /// Signer without a token, for the request-token step.
    public let consumer: OAuth1Signer
    private let executor: RequestExecutor

    public init(
        endpoints: DataCenterEndpoints,
        consumerKey: String,
        privateKey: OAuth1PrivateKey,
        transport: BitbucketHTTPTransport,
        options: BitbucketClientOptions = .init()
    ) {
        self.endpoints = endpoints
        self.consumer = OAuth1Signer(consumerKey: consumerKey, privateKey: privateKey)
        self.executor = options.executor(transport: transport, credentials: nil)
    }

    /// Obtains temporary credentials, signed with `oauth_callback` (RFC 5849 §2.1).
    public func requestToken(callback: URL) async throws -> OAuth1RequestToken {
        let fields = try await signedPost(
            "request-token",
            signer: consumer,
            extra: [("oauth_callback", callback.absoluteString)],
            secrets: []
        )
        guard let token = fields["oauth_token"], !token.isEmpty else {
            throw BitbucketError(code: .decoding, message: "request-token response has no oauth_token")
        }
        return OAuth1RequestToken(
            token: Secret(token),
            tokenSecret: fields["oauth_token_secret"].map(Secret.init),
            callbackConfirmed: fields["oauth_callback_confirmed"] == "true"
        )
    }

    /// The page the user approves the request on: `{base}/plugins/servlet/oauth/authorize?oauth_token=…`.
    ///
    /// RFC 5849 puts the (temporary, not yet authorized) request token in this URL; it is useless
    /// without the consumer's private key and the user's approval.
    public func authorizationURL(requestToken: Secret) throws -> URL {
        try URLBuilder.url(
            endpoints.baseURL,
            ["plugins", "servlet", "oauth", "authorize"],
            query: [("oauth_token", requestToken.reveal())]
        )
    }

    /// Exchanges the authorized request token and the callback's `oauth_verifier` for an access
    /// token (RFC 5849 §2.3).
    public func accessToken(requestToken: Secret, verifier: String) async throws -> OAuth1AccessToken {
        let fields = try await signedPost(
            "access-token",
            signer: consumer.with(token: requestToken),
            extra: [("oauth_verifier", verifier)],
            secrets: [requestToken, Secret(verifier)]
        )
        guard let token = fields["oauth_token"], !token.isEmpty else {
            throw BitbucketError(code: .decoding, message: "access-token response has no oauth_token")
        }
        return OAuth1AccessToken(token: Secret(token), tokenSecret: fields["oauth_token_secret"].map(Secret.init))
    }

    /// A signer for REST calls with `accessToken`; wrap it in ``Authorization/oauth1(_:)``.
    public func signer(accessToken: Secret) -> OAuth1Signer {
        consumer.with(token: accessToken)
    }

    private func signedPost(
        _ endpoint: String,
        signer: OAuth1Signer,
        extra: [(String, String)],
        secrets: [Secret]
    ) async throws -> [String: String] {
        let url = try URLBuilder.url(endpoints.baseURL, ["plugins", "servlet", "oauth", endpoint])
        let header = try signer.authorizationHeader(method: "POST", url: url, extraOAuthParameters: extra)
        var request = APIRequest(method: .POST, url: url, body: [])
        request.authenticated = false
        request.headers.add(name: "Authorization", value: header)
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/x-www-form-urlencoded, */*")
        request.bodySecrets = secrets + (signer.token.map { [$0] } ?? [])
        let response = try await executor.send(request)
        var fields: [String: String] = [:]
        for (name, value) in FormEncoding.decode(String(decoding: response.body, as: UTF8.self)) {
            fields[name] = value
        }
        return fields
    }
}
