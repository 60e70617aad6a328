import Crypto
import Foundation
import _CryptoExtras

/// RFC 5849 signature base string (§3.4.1), written independently of the client library's so that two
/// implementations have to agree.
enum OAuth1BaseString {
    /// `METHOD&enc(base-URI)&enc(normalized-parameters)`.
    ///
    /// - Parameters:
    ///   - method: HTTP method (upper-cased here).
    ///   - scheme: `http` or `https`.
    ///   - host: `Host` header value, possibly with a port.
    ///   - path: Request path as sent (already percent-encoded).
    ///   - parameters: Decoded query, form-body and `oauth_*` parameters; `oauth_signature` and `realm` are dropped.
    static func make(method: String, scheme: String, host: String, path: String, parameters: [(String, String)]) -> String {
        let s = scheme.lowercased()
        var authority = host.lowercased()
        // §3.4.1.2: the default port of the scheme is left out.
        if (s == "http" && authority.hasSuffix(":80")) || (s == "https" && authority.hasSuffix(":443")) {
            authority = String(authority[..<authority.lastIndex(of: ":")!])
        }
        let baseURI = "\(s)://\(authority)\(path.isEmpty ? "/" : path)"
        var encoded: [(name: String, value: String)] = []
        for (name, value) in parameters where name != "oauth_signature" && name != "realm" {
            encoded.append((FormCoding.percentEncode(name), FormCoding.percentEncode(value)))
        }
        // §3.4.1.3.2: sort by encoded name, then by encoded value (byte order).
        encoded.sort { a, b in a.name == b.name ? a.value < b.value : a.name < b.name }
        let normalized = encoded.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        return [method.uppercased(), FormCoding.percentEncode(baseURI), FormCoding.percentEncode(normalized)]
            .joined(separator: "&")
    }

    /// Parses `Authorization: OAuth k="v", …` into decoded pairs (`realm` included).
    static func parseAuthorizationHeader(_ header: String) -> [(String, String)]? {
        guard header.hasPrefix("OAuth ") else { return nil }
        var out: [(String, String)] = []
        for piece in header.dropFirst(6).split(separator: ",") {
            let trimmed = piece.trimmingCharacters(in: .whitespaces)
            guard let eq = trimmed.firstIndex(of: "=") else { return nil }
            let key = String(trimmed[..<eq])
            var value = String(trimmed[trimmed.index(after: eq)...])
            if value.hasPrefix("\"") && value.hasSuffix("\"") && value.count >= 2 {
                value = String(value.dropFirst().dropLast())
            }
            out.append((FormCoding.percentDecode(key, plusIsSpace: false), FormCoding.percentDecode(value, plusIsSpace: false)))
        }
        return out
    }
}

/// OAuth 1.0a (application link) endpoints and request verification.
extension EmulatorService {
    enum OAuth1TokenExpectation {
        case none, request, access
    }

    /// Verifies an RSA-SHA1 signed request: consumer, signature method, version, timestamp window, token, signature,
    /// then nonce replay. Returns the principal for access-token requests.
    @discardableResult
    func verifyOAuth1(_ req: EmulatorRequest, expectToken: OAuth1TokenExpectation) async throws(APIError) -> Principal {
        guard let header = req.header("Authorization"),
            let oauthParams = OAuth1BaseString.parseAuthorizationHeader(header)
        else { throw .oauth1("parameter_absent", "An OAuth Authorization header is required") }
        func value(_ k: String) -> String? { oauthParams.first { $0.0 == k }?.1 }

        guard let consumerKey = value("oauth_consumer_key"), let consumer = await state.oauth1Consumer(consumerKey) else {
            throw .oauth1("consumer_key_unknown", "Unknown consumer")
        }
        guard value("oauth_signature_method") == "RSA-SHA1" else {
            throw .oauth1("signature_method_rejected", "Only RSA-SHA1 is accepted")
        }
        if let v = value("oauth_version"), v != "1.0" { throw .oauth1("version_rejected", "oauth_version must be 1.0") }
        guard let tsText = value("oauth_timestamp"), let ts = Int(tsText) else {
            throw .oauth1("parameter_absent", "oauth_timestamp is required")
        }
        let now = await state.now().timeIntervalSince1970
        let window = await state.settings.oauth1TimestampWindow
        guard abs(Double(ts) - now) <= window else { throw .oauth1("timestamp_refused", "oauth_timestamp is outside the window") }
        guard let nonce = value("oauth_nonce"), !nonce.isEmpty else {
            throw .oauth1("parameter_absent", "oauth_nonce is required")
        }
        guard let signatureB64 = value("oauth_signature"), let signature = Data(base64Encoded: signatureB64) else {
            throw .oauth1("signature_invalid", "oauth_signature is missing or not base64")
        }

        let token = value("oauth_token")
        var username: String?
        switch expectToken {
        case .none:
            break
        case .request, .access:
            guard let token, let rec = await state.oauth1Token(token), rec.consumerKey == consumerKey,
                rec.isAccess == (expectToken == .access)
            else { throw .oauth1("token_rejected", "The token is unknown or not valid here") }
            username = rec.username
        }

        var params = oauthParams.filter { $0.0.hasPrefix("oauth_") }
        params += FormCoding.decode(req.rawQuery)
        if req.isFormBody { params += req.form }
        let base = OAuth1BaseString.make(
            method: req.method, scheme: "http", host: req.authority ?? req.header("Host") ?? "", path: req.path,
            parameters: params)
        guard Self.verifyRSASHA1(signature: signature, base: base, publicKeyPEM: consumer.publicKeyPEM) else {
            throw .oauth1("signature_invalid", "The signature does not match")
        }
        guard await state.recordNonce(consumerKey: consumerKey, token: token, timestamp: ts, nonce: nonce) else {
            throw .oauth1("nonce_used", "The nonce was already used")
        }
        return Principal(
            username: username ?? "", product: .dataCenter, scopes: [], via: .oauth1(consumerKey: consumerKey))
    }

    static func verifyRSASHA1(signature: Data, base: String, publicKeyPEM: String) -> Bool {
        guard let key = try? _RSA.Signing.PublicKey(pemRepresentation: publicKeyPEM) else { return false }
        let digest = Insecure.SHA1.hash(data: Data(base.utf8))
        return key.isValidSignature(
            _RSA.Signing.RSASignature(rawRepresentation: signature), for: digest, padding: .insecurePKCS1v1_5)
    }

    private static func formResponse(_ pairs: [(String, String)]) -> EmulatorResponse {
        .text(200, FormCoding.encode(pairs), contentType: "application/x-www-form-urlencoded")
    }

    func oauth1RequestToken(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        let principal = try await verifyOAuth1(req, expectToken: .none)
        guard case .oauth1(let consumerKey) = principal.via else { throw APIError.oauth1("token_rejected", "bad state") }
        let header = OAuth1BaseString.parseAuthorizationHeader(req.header("Authorization") ?? "") ?? []
        let callback = header.first { $0.0 == "oauth_callback" }?.1 ?? req.query("oauth_callback") ?? req.formValue("oauth_callback")
        guard let callback, !callback.isEmpty else { throw APIError.oauth1("parameter_absent", "oauth_callback is required") }
        let (token, secret) = await state.createOAuth1RequestToken(consumerKey: consumerKey, callback: callback)
        return Self.formResponse([
            ("oauth_token", token), ("oauth_token_secret", secret), ("oauth_callback_confirmed", "true"),
        ])
    }

    func oauth1Authorize(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        guard let token = req.query("oauth_token"), let rec = await state.oauth1Token(token), !rec.isAccess else {
            return .text(400, "Unknown or expired request token")
        }
        if await state.denyAuthorization {
            guard let cb = rec.callback, cb != "oob" else { return .text(200, "Access denied") }
            return .redirect(Self.appendQuery(cb, [("oauth_token", token), ("oauth_problem", "permission_denied")]))
        }
        let chosen = await state.authorizingUser[.dataCenter]
        let users = await state.users
        guard let username = chosen ?? (users.count == 1 ? users.keys.first : nil) else {
            return .text(400, "No user is set to approve authorizations (BitbucketEmulator.setAuthorizingUser)")
        }
        guard let (callback, verifier) = await state.authorizeOAuth1RequestToken(token, username: username) else {
            return .text(400, "Unknown or expired request token")
        }
        guard let callback, callback != "oob" else {
            return .text(200, "oauth_verifier=\(verifier)")
        }
        return .redirect(Self.appendQuery(callback, [("oauth_token", token), ("oauth_verifier", verifier)]))
    }

    func oauth1AccessToken(_ req: EmulatorRequest) async throws -> EmulatorResponse {
        try await verifyOAuth1(req, expectToken: .request)
        let header = OAuth1BaseString.parseAuthorizationHeader(req.header("Authorization") ?? "") ?? []
        func value(_ k: String) -> String? { header.first { $0.0 == k }?.1 }
        guard let consumerKey = value("oauth_consumer_key"), let requestToken = value("oauth_token") else {
            throw APIError.oauth1("parameter_absent", "oauth_token is required")
        }
        let verifier = value("oauth_verifier") ?? req.formValue("oauth_verifier") ?? req.query("oauth_verifier")
        let (token, secret) = try await state.exchangeOAuth1RequestToken(
            requestToken, consumerKey: consumerKey, verifier: verifier)
        return Self.formResponse([
            ("oauth_token", token), ("oauth_token_secret", secret), ("oauth_expires_in", "157680000"),
            ("oauth_session_handle", EmulatorState.randomToken(bytes: 12)),
            ("oauth_authorization_expires_in", "157680000"),
        ])
    }
}
