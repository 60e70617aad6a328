import Crypto
import Foundation
import _CryptoExtras

/// OAuth 1.0a (RFC 5849) primitives: percent-encoding, the signature base string, and the
/// `Authorization` header codec. Public so that the emulator's verifier and tests share them.
///
/// Hand-written because none of the declared packages implements OAuth 1.0a.
public enum OAuth1 {
    /// Percent-encodes per RFC 5849 §3.6: the UTF-8 bytes of `string`, every byte outside
    /// `A-Z a-z 0-9 - . _ ~` as `%XX` with uppercase hex.
    public static func percentEncode(_ string: String) -> String {
        var result = ""
        result.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                UInt8(ascii: "_"), UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                result.unicodeScalars.append("%")
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0x0F)]))
            }
        }
        return result
    }

    /// The base string URI (RFC 5849 §3.4.1.2): lower-case scheme and host, the port only when it is
    /// not the scheme's default, the path as sent (`/` when empty), no query or fragment.
    public static func baseStringURI(_ url: URL) throws(BitbucketError) -> String {
        guard let components = URLComponents(url: url, resolvingAgainstBaseURL: false),
            let scheme = components.scheme?.lowercased(), let host = components.host?.lowercased()
        else {
            throw .configuration("OAuth 1.0a: URL has no scheme or host")
        }
        var result = "\(scheme)://\(host)"
        if let port = components.port, !((scheme == "http" && port == 80) || (scheme == "https" && port == 443)) {
            result += ":\(port)"
        }
        let path = components.percentEncodedPath
        result += path.isEmpty ? "/" : path
        return result
    }

    /// The normalized request parameters (RFC 5849 §3.4.1.3.2): each name and value
    /// percent-encoded, sorted by name then value (byte order of the encoded strings), joined as
    /// `name=value` with `&`.
    public static func normalizedParameters(_ parameters: [(String, String)]) -> String {
        parameters
            .map { (percentEncode($0.0), percentEncode($0.1)) }
            .sorted { $0.0 == $1.0 ? Array($0.1.utf8).lexicographicallyPrecedes($1.1.utf8) : Array($0.0.utf8).lexicographicallyPrecedes($1.0.utf8) }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// The query parameters of `url`, decoded as `application/x-www-form-urlencoded`.
    public static func queryParameters(of url: URL) -> [(String, String)] {
        guard let query = URLComponents(url: url, resolvingAgainstBaseURL: false)?.percentEncodedQuery else { return [] }
        return FormEncoding.decode(query)
    }

    /// The signature base string (RFC 5849 §3.4.1.1).
    ///
    /// - Parameters:
    ///   - method: HTTP method; upper-cased.
    ///   - url: the request URL; its query parameters are included.
    ///   - parameters: form-body parameters (only for `application/x-www-form-urlencoded` bodies)
    ///     and the `oauth_*` protocol parameters. `oauth_signature` and `realm` are ignored if
    ///     present.
    public static func signatureBaseString(
        method: String,
        url: URL,
        parameters: [(String, String)]
    ) throws(BitbucketError) -> String {
        let all = queryParameters(of: url) + parameters.filter { $0.0 != "oauth_signature" && $0.0 != "realm" }
        return [
            percentEncode(method.uppercased()),
            percentEncode(try baseStringURI(url)),
            percentEncode(normalizedParameters(all)),
        ].joined(separator: "&")
    }

    /// Formats an `Authorization: OAuth …` header value: `realm` first (when given), then the
    /// parameters in the given order, values percent-encoded and quoted (RFC 5849 §3.5.1).
    public static func authorizationHeader(realm: String?, parameters: [(String, String)]) -> String {
        var items: [String] = []
        if let realm {
            items.append("realm=\"\(realm)\"")
        }
        items += parameters.map { "\(percentEncode($0.0))=\"\(percentEncode($0.1))\"" }
        return "OAuth " + items.joined(separator: ", ")
    }

    /// Parses an `Authorization: OAuth …` header value into its parameters (decoded), `realm`
    /// excluded. Returns `nil` when the value is not an OAuth header.
    public static func parseAuthorizationHeader(_ value: String) -> [(String, String)]? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        guard trimmed.lowercased().hasPrefix("oauth ") else { return nil }
        var result: [(String, String)] = []
        for item in trimmed.dropFirst(6).split(separator: ",") {
            let pair = item.trimmingCharacters(in: .whitespaces)
            guard let equals = pair.firstIndex(of: "=") else { return nil }
            let name = String(pair[..<equals]).trimmingCharacters(in: .whitespaces)
            var raw = String(pair[pair.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            if raw.hasPrefix("\""), raw.hasSuffix("\""), raw.count >= 2 {
                raw = String(raw.dropFirst().dropLast())
            }
            guard let decodedName = name.removingPercentEncoding, let decodedValue = raw.removingPercentEncoding else { return nil }
            if decodedName == "realm" { continue }
            result.append((decodedName, decodedValue))
        }
        return result
    }
}

/// An RSA key pair for an OAuth 1.0a application link.
///
/// Bitbucket's application link takes the public key as a SubjectPublicKeyInfo PEM
/// (`-----BEGIN PUBLIC KEY-----`); pushbridge keeps the private key as PKCS#8
/// (`-----BEGIN PRIVATE KEY-----`).
public struct OAuth1PrivateKey: Sendable {
    /// The swift-crypto key.
    public let key: _RSA.Signing.PrivateKey

    /// Wraps an existing key.
    public init(_ key: _RSA.Signing.PrivateKey) {
        self.key = key
    }

    /// Loads a PEM private key (PKCS#8 `PRIVATE KEY`; PKCS#1 `RSA PRIVATE KEY` is accepted too).
    ///
    /// - Throws: `configuration` when the PEM is not an RSA private key of at least 2048 bits.
    public init(pemRepresentation pem: String) throws(BitbucketError) {
        do {
            self.key = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
        } catch {
            throw .configuration("OAuth 1.0a private key is not a valid RSA private key (2048 bits or more) in PEM form")
        }
    }

    /// Generates a new key pair. `bits` must be 2048, 3072 or 4096.
    public static func generate(bits: Int = 2048) throws(BitbucketError) -> OAuth1PrivateKey {
        let size: _RSA.Signing.KeySize
        switch bits {
        case 2048: size = .bits2048
        case 3072: size = .bits3072
        case 4096: size = .bits4096
        default: throw .configuration("RSA key size must be 2048, 3072 or 4096 bits")
        }
        do {
            return OAuth1PrivateKey(try _RSA.Signing.PrivateKey(keySize: size))
        } catch {
            throw .configuration("RSA key generation failed")
        }
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    public var pkcs8PEM: Secret { Secret(key.pkcs8PEMRepresentation) }

    /// The public key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), the form an
    /// application link asks for.
    public var publicKeyPEM: String { key.publicKey.pemRepresentation }

    /// RSASSA-PKCS1-v1_5 over SHA-1 of the UTF-8 bytes of `baseString` (RFC 5849 §3.4.3).
    public func sign(baseString: String) throws(BitbucketError) -> Data {
        let digest = Insecure.SHA1.hash(data: Data(baseString.utf8))
        do {
            let signature = try key.signature(for: digest, padding: .insecurePKCS1v1_5)
            return signature.rawRepresentation
        } catch {
            throw BitbucketError(code: .configuration, message: "RSA-SHA1 signing failed")
        }
    }
}

/// Signs requests with OAuth 1.0a `RSA-SHA1` for one consumer and (optionally) one token.
public struct OAuth1Signer: Sendable {
    /// The application link's consumer key.
    public let consumerKey: String
    /// The consumer's private key.
    public let privateKey: OAuth1PrivateKey
    /// The access token (or request token during the handshake); `nil` for the request-token call.
    public let token: Secret?
    /// The `realm` header parameter; Atlassian ignores it, `""` by convention.
    public var realm: String?

    public init(consumerKey: String, privateKey: OAuth1PrivateKey, token: Secret? = nil, realm: String? = "") {
        self.consumerKey = consumerKey
        self.privateKey = privateKey
        self.token = token
        self.realm = realm
    }

    /// Returns a copy that signs with `token`.
    public func with(token: Secret?) -> OAuth1Signer {
        OAuth1Signer(consumerKey: consumerKey, privateKey: privateKey, token: token, realm: realm)
    }

    /// A fresh random nonce (32 hex characters).
    public static func makeNonce() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// The protocol parameters including `oauth_signature`, in the order they are put into the
    /// header: `oauth_nonce`, `oauth_timestamp`, `oauth_version`, `oauth_signature_method`,
    /// `oauth_consumer_key`, `oauth_token` (when set), `extraOAuthParameters`, `oauth_signature`.
    ///
    /// - Parameters:
    ///   - method: HTTP method.
    ///   - url: request URL (its query is signed).
    ///   - formParameters: the parameters of an `application/x-www-form-urlencoded` body, if any.
    ///   - extraOAuthParameters: `oauth_callback` or `oauth_verifier` during the handshake.
    ///   - nonce: fixed nonce (tests); random when `nil`.
    ///   - timestamp: fixed timestamp (tests); now when `nil`.
    public func signedParameters(
        method: String,
        url: URL,
        formParameters: [(String, String)] = [],
        extraOAuthParameters: [(String, String)] = [],
        nonce: String? = nil,
        timestamp: Int? = nil
    ) throws(BitbucketError) -> [(String, String)] {
        var oauth: [(String, String)] = [
            ("oauth_nonce", nonce ?? Self.makeNonce()),
            ("oauth_timestamp", String(timestamp ?? Int(Date().timeIntervalSince1970))),
            ("oauth_version", "1.0"),
            ("oauth_signature_method", "RSA-SHA1"),
            ("oauth_consumer_key", consumerKey),
        ]
        if let token {
            oauth.append(("oauth_token", token.reveal()))
        }
        oauth += extraOAuthParameters
        let baseString = try OAuth1.signatureBaseString(method: method, url: url, parameters: formParameters + oauth)
        let signature = try privateKey.sign(baseString: baseString).base64EncodedString()
        oauth.append(("oauth_signature", signature))
        return oauth
    }

    /// The `Authorization` header value for a request (see ``signedParameters(method:url:formParameters:extraOAuthParameters:nonce:timestamp:)``).
    public func authorizationHeader(
        method: String,
        url: URL,
        formParameters: [(String, String)] = [],
        extraOAuthParameters: [(String, String)] = [],
        nonce: String? = nil,
        timestamp: Int? = nil
    ) throws(BitbucketError) -> String {
        let parameters = try signedParameters(
            method: method,
            url: url,
            formParameters: formParameters,
            extraOAuthParameters: extraOAuthParameters,
            nonce: nonce,
            timestamp: timestamp
        )
        return OAuth1.authorizationHeader(realm: realm, parameters: parameters)
    }
}
