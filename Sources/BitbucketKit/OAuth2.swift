import Crypto
import Foundation
import NIOHTTP1

/// Tokens returned by an OAuth 2.0 token endpoint.
///
/// `description` never shows token values (they are ``Secret``s).
public struct OAuth2Token: Sendable, Hashable, CustomStringConvertible {
    /// The access token (may be several kilobytes long on Cloud).
    public var accessToken: Secret
    /// The refresh token. After a refresh this is the *new* one when the server rotated it, else
    /// the one that was used.
    public var refreshToken: Secret?
    /// `token_type`, usually `bearer`.
    public var tokenType: String?
    /// `expires_in` in seconds; `nil` when absent.
    public var expiresIn: Int?
    /// `receivedAt + expiresIn`; `nil` when the lifetime is unknown.
    public var expiresAt: Date?
    /// Granted scopes (`scope` or `scopes`, space separated).
    public var scopes: [String]

    public init(
        accessToken: Secret,
        refreshToken: Secret? = nil,
        tokenType: String? = nil,
        expiresIn: Int? = nil,
        expiresAt: Date? = nil,
        scopes: [String] = []
    ) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.tokenType = tokenType
        self.expiresIn = expiresIn
        self.expiresAt = expiresAt
        self.scopes = scopes
    }

    public var description: String {
        "OAuth2Token(accessToken: <redacted>, refreshToken: \(refreshToken == nil ? "nil" : "<redacted>"), "
            + "tokenType: \(tokenType ?? "nil"), expiresIn: \(expiresIn.map(String.init) ?? "nil"), scopes: \(scopes))"
    }

    /// Decodes a token endpoint response body leniently: `scope` or `scopes` (string or array),
    /// `expires_in` as number or numeric string (missing → `nil`), tokens of any length, unknown
    /// fields ignored.
    ///
    /// - Throws: `decoding` when the body is not a JSON object with a string `access_token`. The
    ///   error never quotes the body.
    public static func decode(_ body: some Collection<UInt8>, receivedAt: Date = Date()) throws(BitbucketError) -> OAuth2Token {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw BitbucketError(code: .decoding, message: "token response is not a JSON object")
        }
        guard let access = object["access_token"] as? String, !access.isEmpty else {
            throw BitbucketError(code: .decoding, message: "token response has no access_token")
        }
        let refresh = (object["refresh_token"] as? String).flatMap { $0.isEmpty ? nil : Secret($0) }
        var expiresIn: Int?
        switch object["expires_in"] {
        case let number as NSNumber: expiresIn = number.intValue
        case let text as String: expiresIn = Int(text.trimmingCharacters(in: .whitespaces))
        default: expiresIn = nil
        }
        var scopes: [String] = []
        for key in ["scopes", "scope"] {
            if let text = object[key] as? String {
                scopes = text.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
                break
            }
            if let list = object[key] as? [String] {
                scopes = list
                break
            }
        }
        return OAuth2Token(
            accessToken: Secret(access),
            refreshToken: refresh,
            tokenType: object["token_type"] as? String,
            expiresIn: expiresIn,
            expiresAt: expiresIn.map { receivedAt.addingTimeInterval(TimeInterval($0)) },
            scopes: scopes
        )
    }

    /// Applies refresh-token rotation: the response's refresh token wins; the previous one is kept
    /// only when the response carries none.
    func keepingRefreshToken(_ previous: Secret) -> OAuth2Token {
        var copy = self
        if copy.refreshToken == nil {
            copy.refreshToken = previous
        }
        return copy
    }
}

/// A PKCE pair (RFC 7636) with the `S256` method.
public struct PKCE: Sendable, Hashable {
    /// `code_verifier`: 43–128 characters of `[A-Za-z0-9-._~]`. Keep it with the `state` until the
    /// callback; send it only to the token endpoint.
    public let verifier: Secret
    /// `code_challenge` = BASE64URL(SHA256(ASCII(verifier))) without padding.
    public let challenge: String
    /// Always `S256`.
    public var method: String { "S256" }

    /// Builds the pair for an existing verifier.
    ///
    /// - Throws: `invalid_request` when the verifier violates RFC 7636 §4.1.
    public init(verifier: Secret) throws(BitbucketError) {
        let value = verifier.reveal()
        let allowed = value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                UInt8(ascii: "_"), UInt8(ascii: "~"):
                return true
            default:
                return false
            }
        }
        guard (43...128).contains(value.utf8.count), allowed else {
            throw BitbucketError(code: .invalidRequest, message: "PKCE verifier must be 43-128 unreserved characters")
        }
        self.verifier = verifier
        self.challenge = Self.challenge(for: value)
    }

    /// A new pair with a verifier made of 32 random bytes (43 base64url characters).
    public static func generate() -> PKCE {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        // 32 random bytes always give a valid 43-character verifier.
        return try! PKCE(verifier: Secret(Base64URL.encode(bytes)))
    }

    /// `BASE64URL(SHA256(ASCII(verifier)))` without padding (RFC 7636 §4.2).
    public static func challenge(for verifier: String) -> String {
        Base64URL.encode(Array(SHA256.hash(data: Data(verifier.utf8))))
    }
}

enum Base64URL {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: String) -> [UInt8]? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map(Array.init)
    }
}

/// OAuth 2.0 for Bitbucket Cloud consumers: authorization code (no PKCE), refresh with rotation,
/// client credentials. The client authenticates with HTTP Basic (`client_id:client_secret`).
public struct CloudOAuth2Client: Sendable {
    public let endpoints: CloudEndpoints
    public let clientID: String
    private let clientSecret: Secret
    private let executor: RequestExecutor

    public init(
        endpoints: CloudEndpoints = .production,
        clientID: String,
        clientSecret: Secret,
        transport: BitbucketHTTPTransport,
        options: BitbucketClientOptions = .init()
    ) {
        self.endpoints = endpoints
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.executor = options.executor(
            transport: transport,
            credentials: StaticCredentialProvider(.basic(username: clientID, password: clientSecret))
        )
    }

    /// `{site}/site/oauth2/authorize?client_id=…&response_type=code&state=…` (plus `redirect_uri`
    /// and `scope` when given; Cloud otherwise uses the consumer's configured values).
    public func authorizationURL(state: String, redirectURI: URL? = nil, scopes: [String] = []) throws(BitbucketError) -> URL {
        var query = [("client_id", clientID), ("response_type", "code"), ("state", state)]
        if let redirectURI { query.append(("redirect_uri", redirectURI.absoluteString)) }
        if !scopes.isEmpty { query.append(("scope", scopes.joined(separator: " "))) }
        do {
            return try URLBuilder.url(endpoints.siteURL, ["site", "oauth2", "authorize"], query: query)
        } catch let error as BitbucketError {
            throw error
        } catch {
            throw .configuration("cannot build authorize URL")
        }
    }

    /// Exchanges an authorization code (`grant_type=authorization_code`).
    public func exchange(code: String, redirectURI: URL? = nil) async throws -> OAuth2Token {
        var form = [("grant_type", "authorization_code"), ("code", code)]
        if let redirectURI { form.append(("redirect_uri", redirectURI.absoluteString)) }
        return try await tokenRequest(form, secrets: [Secret(code)])
    }

    /// Refreshes (`grant_type=refresh_token`). Cloud rotates refresh tokens: the result carries the
    /// new refresh token, which the caller must persist before using the access token; the old one
    /// is kept only if the response has none.
    public func refresh(_ refreshToken: Secret) async throws -> OAuth2Token {
        let token = try await tokenRequest(
            [("grant_type", "refresh_token"), ("refresh_token", refreshToken.reveal())],
            secrets: [refreshToken]
        )
        return token.keepingRefreshToken(refreshToken)
    }

    /// Client credentials grant: a token acting as the consumer's owner.
    public func clientCredentials() async throws -> OAuth2Token {
        try await tokenRequest([("grant_type", "client_credentials")], secrets: [])
    }

    private func tokenRequest(_ form: [(String, String)], secrets: [Secret]) async throws -> OAuth2Token {
        let url = try URLBuilder.url(endpoints.siteURL, ["site", "oauth2", "access_token"])
        let request = APIRequest.form(.POST, url, parameters: form, secrets: secrets + [clientSecret])
        let response = try await executor.send(request)
        return try OAuth2Token.decode(response.body)
    }
}

/// OAuth 2.0 for a Data Center "external application" (incoming link): authorization code with
/// PKCE `S256`, refresh. Client id and secret travel in the form body.
public struct DataCenterOAuth2Client: Sendable {
    public let endpoints: DataCenterEndpoints
    public let clientID: String
    public let redirectURI: URL
    private let clientSecret: Secret
    private let executor: RequestExecutor

    public init(
        endpoints: DataCenterEndpoints,
        clientID: String,
        clientSecret: Secret,
        redirectURI: URL,
        transport: BitbucketHTTPTransport,
        options: BitbucketClientOptions = .init()
    ) {
        self.endpoints = endpoints
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.redirectURI = redirectURI
        self.executor = options.executor(transport: transport, credentials: nil)
    }

    /// `{base}/rest/oauth2/latest/authorize?client_id&redirect_uri&response_type=code&scope&state&code_challenge&code_challenge_method=S256`.
    ///
    /// - Parameters:
    ///   - state: the single-use state value.
    ///   - scopes: e.g. `["REPO_ADMIN"]`.
    ///   - pkce: a pair from ``PKCE/generate()``; keep its verifier for ``exchange(code:verifier:)``.
    public func authorizationURL(state: String, scopes: [String], pkce: PKCE) throws(BitbucketError) -> URL {
        var query = [
            ("client_id", clientID), ("redirect_uri", redirectURI.absoluteString), ("response_type", "code"),
        ]
        if !scopes.isEmpty { query.append(("scope", scopes.joined(separator: " "))) }
        query += [("state", state), ("code_challenge", pkce.challenge), ("code_challenge_method", pkce.method)]
        do {
            return try URLBuilder.url(endpoints.baseURL, ["rest", "oauth2", "latest", "authorize"], query: query)
        } catch let error as BitbucketError {
            throw error
        } catch {
            throw .configuration("cannot build authorize URL")
        }
    }

    /// Exchanges an authorization code with the PKCE verifier.
    public func exchange(code: String, verifier: Secret) async throws -> OAuth2Token {
        try await tokenRequest(
            [
                ("client_id", clientID), ("client_secret", clientSecret.reveal()), ("code", code),
                ("grant_type", "authorization_code"), ("redirect_uri", redirectURI.absoluteString),
                ("code_verifier", verifier.reveal()),
            ],
            secrets: [Secret(code), verifier]
        )
    }

    /// Refreshes an access token. A rotated refresh token in the response replaces the old one.
    public func refresh(_ refreshToken: Secret) async throws -> OAuth2Token {
        let token = try await tokenRequest(
            [
                ("client_id", clientID), ("client_secret", clientSecret.reveal()),
                ("refresh_token", refreshToken.reveal()), ("grant_type", "refresh_token"),
                ("redirect_uri", redirectURI.absoluteString),
            ],
            secrets: [refreshToken]
        )
        return token.keepingRefreshToken(refreshToken)
    }

    private func tokenRequest(_ form: [(String, String)], secrets: [Secret]) async throws -> OAuth2Token {
        let url = try URLBuilder.url(endpoints.baseURL, ["rest", "oauth2", "latest", "token"])
        var request = APIRequest.form(.POST, url, parameters: form, secrets: secrets + [clientSecret])
        request.authenticated = false
        let response = try await executor.send(request)
        return try OAuth2Token.decode(response.body)
    }
}
