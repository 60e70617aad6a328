import BitbucketKit
import Crypto
import Foundation
import PushBridge

/// What a signed OAuth `state` value binds: the flow it was issued for.
///
/// Nothing in it is secret (the browser carries it through Bitbucket); it is only unforgeable.
public struct OAuthStateClaims: Sendable, Hashable {
    /// The route's provider; a callback on another provider's route refuses the state.
    public var provider: Provider
    /// The connection to create or re-authorize.
    public var connection: String
    /// Cloud workspace or DC/Server project key.
    public var workspace: String
    /// DC/Server base URL the flow talks to (token endpoint, application link); `nil` for Cloud.
    public var baseURL: URL?
    /// `true` when the connection existed at authorize time: the callback replaces its credentials.
    public var reauthorization: Bool
    /// Random, unique per flow: the single-use key, and the seed of the DC PKCE verifier.
    public var nonce: String
    /// After this instant the state is refused (whole seconds).
    public var expiresAt: Date

    public init(
        provider: Provider, connection: String, workspace: String, baseURL: URL?, reauthorization: Bool, nonce: String,
        expiresAt: Date
    ) {
        self.provider = provider
        self.connection = connection
        self.workspace = workspace
        self.baseURL = baseURL
        self.reauthorization = reauthorization
        self.nonce = nonce
        self.expiresAt = expiresAt
    }
}

/// Why a `state` value was refused. Every case answers `400 invalid_oauth_state`; the cases only
/// make the message (and tests) precise.
public enum OAuthStateRejection: String, Error, Sendable, Hashable {
    case malformed = "the state value is malformed"
    case badSignature = "the state signature does not verify"
    case expired = "the state has expired; start the authorization again"
    case wrongProvider = "the state was issued for another provider"
    case replayed = "the state was already used"
}

/// Issues and verifies OAuth `state` values and derives the Data Center PKCE verifier.
///
/// Format: `v1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "v1." + claims))>`.
/// The keys come from the master key through HKDF-SHA256 (distinct `info` per purpose), so there
/// is no extra secret to manage and every daemon sharing the database (and the master key) accepts
/// the states of the others. The PKCE verifier is `base64url(HMAC-SHA256(pkceKey, nonce))`: the
/// callback recomputes it from the state's nonce, so nothing secret is stored between the two legs,
/// and it never leaves pushbridge except towards the token endpoint.
public struct OAuthStateCodec: Sendable {
    private let stateKey: SymmetricKey
    private let pkceKey: SymmetricKey

    /// - Parameter masterKey: `PUSHBRIDGE_MASTER_KEY` (32 bytes).
    public init(masterKey: [UInt8]) {
        let material = SymmetricKey(data: masterKey)
        let salt = Data("pushbridge oauth".utf8)
        stateKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: material, salt: salt, info: Data("pushbridge oauth state v1".utf8), outputByteCount: 32)
        pkceKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: material, salt: salt, info: Data("pushbridge oauth pkce v1".utf8), outputByteCount: 32)
    }

    /// A fresh nonce: 16 random bytes, base64url.
    public static func makeNonce() -> String {
        var generator = SystemRandomNumberGenerator()
        return Base64URLText.encode((0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// The signed state for `claims`.
    public func issue(_ claims: OAuthStateClaims) -> String {
        let payload = Payload(
            p: claims.provider.rawValue, c: claims.connection, w: claims.workspace, b: claims.baseURL?.absoluteString,
            r: claims.reauthorization, n: claims.nonce, e: Int64(claims.expiresAt.timeIntervalSince1970.rounded(.down)))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a struct of strings, a bool and an integer cannot fail.
        let json = (try? encoder.encode(payload)) ?? Data()
        let signed = "v1." + Base64URLText.encode(Array(json))
        let mac = HMAC<SHA256>.authenticationCode(for: Data(signed.utf8), using: stateKey)
        return signed + "." + Base64URLText.encode(Array(mac))
    }

    /// Verifies the signature (constant time), then the provider and the expiry.
    ///
    /// - Throws: the ``OAuthStateRejection`` that applies.
    public func verify(_ state: String, provider: Provider, now: Date) throws(OAuthStateRejection) -> OAuthStateClaims {
        let parts = state.split(separator: ".", omittingEmptySubsequences: false)
        guard state.utf8.count <= 4096, parts.count == 3, parts[0] == "v1",
            let mac = Base64URLText.decode(String(parts[2])), let json = Base64URLText.decode(String(parts[1]))
        else { throw .malformed }
        let signed = Data("v1.\(parts[1])".utf8)
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: signed, using: stateKey) else {
            throw .badSignature
        }
        guard let payload = try? JSONDecoder().decode(Payload.self, from: Data(json)),
            let claimedProvider = Provider(rawValue: payload.p)
        else { throw .malformed }
        guard claimedProvider == provider else { throw .wrongProvider }
        let expiresAt = Date(timeIntervalSince1970: TimeInterval(payload.e))
        guard now < expiresAt else { throw .expired }
        return OAuthStateClaims(
            provider: claimedProvider, connection: payload.c, workspace: payload.w,
            baseURL: payload.b.flatMap(URL.init(string:)), reauthorization: payload.r, nonce: payload.n,
            expiresAt: expiresAt)
    }

    /// The PKCE pair of the flow whose state carries `nonce`.
    public func pkce(nonce: String) -> PKCE {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("pkce.\(nonce)".utf8), using: pkceKey)
        // 32 bytes of base64url are 43 unreserved characters: always a valid RFC 7636 verifier.
        return try! PKCE(verifier: Secret(Base64URLText.encode(Array(mac))))
    }

    /// Short keys keep the state (and so the authorize URL) small.
    private struct Payload: Codable {
        var p: String
        var c: String
        var w: String
        var b: String?
        var r: Bool
        var n: String
        var e: Int64
    }
}

/// Unpadded base64url (RFC 4648 §5).
enum Base64URLText {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: String) -> [UInt8]? {
        guard text.utf8.allSatisfy({ $0 != UInt8(ascii: "+") && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "=") })
        else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map(Array.init)
    }
}
