import BitbucketEmulator
import Crypto
import Foundation
import Testing
import _CryptoExtras

@Suite("Emulator: OAuth 2.0 and OAuth 1.0a")
struct EmulatorOAuthTests {
    // MARK: Cloud OAuth 2.0

    private func cloudCode(_ h: EmulatorHarness, state: String = "xyz") async throws -> String {
        let r = try await h.send(
            "GET", "/site/oauth2/authorize?client_id=\(EmulatorHarness.cloudClient)&response_type=code&state=\(state)")
        #expect(r.status == 302)
        let location = try #require(r.header("Location"))
        #expect(location.hasPrefix(EmulatorHarness.callback))
        let q = EmulatorHarness.queryItems(location)
        #expect(q["state"] == state)
        return try #require(q["code"])
    }

    private func cloudToken(_ h: EmulatorHarness, _ form: [(String, String)], secret: String = EmulatorHarness.cloudSecret)
        async throws -> EmulatorHTTPResponse
    {
        try await h.send(
            "POST", "/site/oauth2/access_token", headers: [EmulatorHarness.basic(EmulatorHarness.cloudClient, secret)],
            form: form)
    }

    @Test func cloudAuthorizationCodeAndRefreshRotationWithGrace() async throws {
        try await EmulatorHarness.with { h in
            await h.emulator.setRefreshTokenGrace(60)
            let code = try await cloudCode(h)
            let exchanged = try await cloudToken(h, [("grant_type", "authorization_code"), ("code", code)])
            #expect(exchanged.status == 200)
            let first = try #require(exchanged.json)
            #expect(first["token_type"]?.stringValue == "bearer")
            #expect(first["expires_in"]?.intValue == 7200)
            #expect(first["scopes"]?.stringValue?.split(separator: " ").contains("pullrequest:write") == true)
            let access1 = try #require(first["access_token"]?.stringValue)
            let refresh1 = try #require(first["refresh_token"]?.stringValue)
            #expect(try await h.send("GET", h.cloudAPI + "/user", bearer: access1).json?["nickname"]?.stringValue == "alice")

            // The code is single-use.
            let reused = try await cloudToken(h, [("grant_type", "authorization_code"), ("code", code)])
            #expect(reused.status == 400)
            #expect(reused.json?["error"]?.stringValue == "invalid_grant")

            // Every refresh rotates the refresh token.
            let r2 = try await cloudToken(h, [("grant_type", "refresh_token"), ("refresh_token", refresh1)])
            #expect(r2.status == 200)
            let refresh2 = try #require(r2.json?["refresh_token"]?.stringValue)
            #expect(refresh2 != refresh1)
            #expect(r2.json?["access_token"]?.stringValue != access1)

            // Inside the grace period the old refresh token still works…
            await h.emulator.advanceClock(by: 30)
            let withinGrace = try await cloudToken(h, [("grant_type", "refresh_token"), ("refresh_token", refresh1)])
            #expect(withinGrace.status == 200)
            // …after it, reuse is invalid_grant, while the newest token keeps working.
            await h.emulator.advanceClock(by: 31)
            let afterGrace = try await cloudToken(h, [("grant_type", "refresh_token"), ("refresh_token", refresh1)])
            #expect(afterGrace.status == 400)
            #expect(afterGrace.json?["error"]?.stringValue == "invalid_grant")
            let latest = try #require(withinGrace.json?["refresh_token"]?.stringValue)
            #expect(try await cloudToken(h, [("grant_type", "refresh_token"), ("refresh_token", latest)]).status == 200)

            let counters = await h.emulator.counters()
            #expect(counters.refreshGrants[EmulatorHarness.cloudClient] == 3)
            #expect(counters.rejectedRefreshes[EmulatorHarness.cloudClient] == 1)

            // Access tokens expire after their lifetime.
            await h.emulator.advanceClock(by: 7200)
            let expired = try await h.send("GET", h.cloudAPI + "/user", bearer: access1)
            #expect(expired.status == 401)
            #expect(expired.json?["error"]?["message"]?.stringValue == "Access token expired.")
        }
    }

    @Test func cloudClientAuthenticationAndClientCredentials() async throws {
        var config = EmulatorConfiguration()
        config.longAccessTokens = true
        config.cloudAccessTokenLifetime = 600
        try await EmulatorHarness.with(configuration: config) { h in
            let wrong = try await cloudToken(h, [("grant_type", "client_credentials")], secret: "wrong")
            #expect(wrong.status == 401)
            #expect(wrong.json?["error"]?.stringValue == "invalid_client")
            // Client id/secret in the form body instead of HTTP Basic is not accepted by Cloud.
            let inBody = try await h.send(
                "POST", "/site/oauth2/access_token",
                form: [("grant_type", "client_credentials"), ("client_id", EmulatorHarness.cloudClient),
                    ("client_secret", EmulatorHarness.cloudSecret)])
            #expect(inBody.status == 401)

            let cc = try await cloudToken(h, [("grant_type", "client_credentials")])
            #expect(cc.status == 200)
            let access = try #require(cc.json?["access_token"]?.stringValue)
            #expect(access.count >= 2500)
            #expect(cc.json?["expires_in"]?.intValue == 600)
            #expect(try await h.send("GET", h.cloudAPI + "/user", bearer: access).json?["nickname"]?.stringValue == "alice")

            let unsupported = try await cloudToken(h, [("grant_type", "password")])
            #expect(unsupported.json?["error"]?.stringValue == "unsupported_grant_type")
        }
    }

    @Test func authorizationDeniedAndChosenUser() async throws {
        try await EmulatorHarness.with { h in
            await h.emulator.setAuthorizationDenied(true)
            let denied = try await h.send(
                "GET", "/site/oauth2/authorize?client_id=\(EmulatorHarness.cloudClient)&response_type=code&state=s1")
            #expect(EmulatorHarness.queryItems(denied.header("Location"))["error"] == "access_denied")
            #expect(EmulatorHarness.queryItems(denied.header("Location"))["state"] == "s1")
            await h.emulator.setAuthorizationDenied(false)

            await h.emulator.setAuthorizingUser("mallory", for: .cloud)
            let code = try await cloudCode(h)
            let tokens = try await cloudToken(h, [("grant_type", "authorization_code"), ("code", code)])
            let access = try #require(tokens.json?["access_token"]?.stringValue)
            #expect(try await h.send("GET", h.cloudAPI + "/user", bearer: access).json?["nickname"]?.stringValue == "mallory")

            let unknown = try await h.send("GET", "/site/oauth2/authorize?client_id=nope&response_type=code")
            #expect(unknown.status == 400)
        }
    }

    // MARK: DC OAuth 2.0 + PKCE

    static func pkce() -> (verifier: String, challenge: String) {
        var rng = SystemRandomNumberGenerator()
        let verifier = Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }).base64URL
        return (verifier, Data(SHA256.hash(data: Data(verifier.utf8))).base64URL)
    }

    private func dcCode(_ h: EmulatorHarness, challenge: String?, method: String = "S256") async throws -> EmulatorHTTPResponse {
        var q = [
            ("client_id", EmulatorHarness.dcClient), ("redirect_uri", EmulatorHarness.callback), ("response_type", "code"),
            ("scope", "REPO_WRITE"), ("state", "st"),
        ]
        if let challenge { q += [("code_challenge", challenge), ("code_challenge_method", method)] }
        return try await h.send("GET", "/rest/oauth2/latest/authorize?" + EmulatorHarness.formEncode(q))
    }

    private func dcToken(_ h: EmulatorHarness, _ form: [(String, String)]) async throws -> EmulatorHTTPResponse {
        try await h.send(
            "POST", "/rest/oauth2/latest/token",
            form: [("client_id", EmulatorHarness.dcClient), ("client_secret", EmulatorHarness.dcSecret)] + form)
    }

    @Test func dataCenterPKCEVerifierMustMatch() async throws {
        try await EmulatorHarness.with { h in
            let (verifier, challenge) = Self.pkce()
            let authorize = try await dcCode(h, challenge: challenge)
            #expect(authorize.status == 302)
            let code = try #require(EmulatorHarness.queryItems(authorize.header("Location"))["code"])
            let mismatch = try await dcToken(
                h,
                [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", EmulatorHarness.callback),
                    ("code_verifier", Self.pkce().verifier)])
            #expect(mismatch.status == 400)
            #expect(mismatch.json?["error"]?.stringValue == "invalid_grant")

            let authorize2 = try await dcCode(h, challenge: challenge)
            let code2 = try #require(EmulatorHarness.queryItems(authorize2.header("Location"))["code"])
            let missing = try await dcToken(
                h, [("grant_type", "authorization_code"), ("code", code2), ("redirect_uri", EmulatorHarness.callback)])
            #expect(missing.json?["error"]?.stringValue == "invalid_grant")

            let authorize3 = try await dcCode(h, challenge: challenge)
            let code3 = try #require(EmulatorHarness.queryItems(authorize3.header("Location"))["code"])
            let ok = try await dcToken(
                h,
                [("grant_type", "authorization_code"), ("code", code3), ("redirect_uri", EmulatorHarness.callback),
                    ("code_verifier", verifier)])
            #expect(ok.status == 200)
            #expect(ok.json?["scope"]?.stringValue == "REPO_WRITE")
            let access = try #require(ok.json?["access_token"]?.stringValue)
            #expect(try await h.send("GET", "/rest/api/1.0/projects", bearer: access).status == 200)
            let refresh = try #require(ok.json?["refresh_token"]?.stringValue)
            let refreshed = try await dcToken(h, [("grant_type", "refresh_token"), ("refresh_token", refresh)])
            #expect(refreshed.status == 200)
            #expect(refreshed.json?["refresh_token"]?.stringValue != refresh)

            // `plain` is refused; the error goes back to the client's callback.
            let plain = try await dcCode(h, challenge: challenge, method: "plain")
            #expect(EmulatorHarness.queryItems(plain.header("Location"))["error"] == "invalid_request")
            await h.emulator.updateConfiguration { $0.dataCenterRequiresPKCE = true }
            let noChallenge = try await dcCode(h, challenge: nil)
            #expect(EmulatorHarness.queryItems(noChallenge.header("Location"))["error"] == "invalid_request")
            // A redirect URI that differs from the registered one is never redirected to.
            let wrongRedirect = try await h.send(
                "GET", "/rest/oauth2/latest/authorize?client_id=\(EmulatorHarness.dcClient)&redirect_uri=http%3A%2F%2Fevil.example%2F&response_type=code")
            #expect(wrongRedirect.status == 400)
        }
    }

    // MARK: OAuth 1.0a

    @Test func oauth1ThreeLeggedFlowAndSignedRequests() async throws {
        try await EmulatorHarness.with { h in
            let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
            await h.emulator.registerOAuth1Consumer(
                OAuth1ConsumerRegistration(consumerKey: "pushbridge-link", publicKeyPEM: key.publicKey.pemRepresentation))
            let signer = OAuth1TestSigner(consumerKey: "pushbridge-link", key: key)
            let host = h.emulator.endpoints.root.host! + ":\(h.emulator.endpoints.root.port!)"

            func signed(_ method: String, _ path: String, query: [(String, String)] = [], token: String? = nil,
                extra: [(String, String)] = [], nonce: String = UUID().uuidString, timestamp: Int? = nil) throws -> (String, String) {
                let header = try signer.authorization(
                    method: method, url: "http://\(host)\(path)", query: query, token: token, extra: extra, nonce: nonce,
                    timestamp: timestamp ?? Int(Date().timeIntervalSince1970))
                return ("Authorization", header)
            }

            let rt = try await h.send(
                "POST", "/plugins/servlet/oauth/request-token",
                headers: [try signed("POST", "/plugins/servlet/oauth/request-token", extra: [("oauth_callback", "http://127.0.0.1:1/cb")])])
            #expect(rt.status == 200, "\(rt.text) \(rt.header("WWW-Authenticate") ?? "")")
            let rtFields = EmulatorHarness.queryItems("x:?" + rt.text)
            let requestToken = try #require(rtFields["oauth_token"])
            #expect(rtFields["oauth_callback_confirmed"] == "true")

            let authorize = try await h.send("GET", "/plugins/servlet/oauth/authorize?oauth_token=\(requestToken)")
            #expect(authorize.status == 302)
            let cb = EmulatorHarness.queryItems(authorize.header("Location"))
            #expect(cb["oauth_token"] == requestToken)
            let verifier = try #require(cb["oauth_verifier"])

            let badVerifier = try await h.send(
                "POST", "/plugins/servlet/oauth/access-token",
                headers: [try signed("POST", "/plugins/servlet/oauth/access-token", token: requestToken, extra: [("oauth_verifier", "wrong")])])
            #expect(badVerifier.status == 401)
            let at = try await h.send(
                "POST", "/plugins/servlet/oauth/access-token",
                headers: [try signed("POST", "/plugins/servlet/oauth/access-token", token: requestToken, extra: [("oauth_verifier", verifier)])])
            #expect(at.status == 200)
            let accessToken = try #require(EmulatorHarness.queryItems("x:?" + at.text)["oauth_token"])

            // Signed REST call, query parameters included in the signature.
            let path = "/rest/api/1.0/projects"
            let query = [("limit", "5"), ("name", "Plat form")]
            let q = EmulatorHarness.formEncode(query)
            let good = try await h.send("GET", "\(path)?\(q)", headers: [try signed("GET", path, query: query, token: accessToken, nonce: "n-1")])
            #expect(good.status == 200)
            #expect(good.json?["values"]?.arrayValue?.isEmpty == true)
            let whoami = try await h.send("GET", "/plugins/servlet/applinks/whoami", headers: [try signed("GET", "/plugins/servlet/applinks/whoami", token: accessToken)])
            #expect(whoami.text == "alice")
            #expect(whoami.header("X-AUSERNAME") == "alice")

            // Replaying the same nonce and timestamp is refused.
            let ts = Int(Date().timeIntervalSince1970)
            let once = try signed("GET", path, token: accessToken, nonce: "fixed", timestamp: ts)
            #expect(try await h.send("GET", path, headers: [once]).status == 200)
            let replay = try await h.send("GET", path, headers: [once])
            #expect(replay.status == 401)
            #expect(replay.header("WWW-Authenticate")?.contains("nonce_used") == true)

            // Tampering with a signed parameter breaks the signature.
            let tampered = try await h.send("GET", "\(path)?limit=6&name=Plat%20form", headers: [try signed("GET", path, query: query, token: accessToken)])
            #expect(tampered.status == 401)
            #expect(tampered.header("WWW-Authenticate")?.contains("signature_invalid") == true)

            // A stale timestamp is refused; so is a key the link does not know.
            let old = try await h.send("GET", path, headers: [try signed("GET", path, token: accessToken, timestamp: ts - 3600)])
            #expect(old.header("WWW-Authenticate")?.contains("timestamp_refused") == true)
            let otherKey = OAuth1TestSigner(consumerKey: "pushbridge-link", key: try _RSA.Signing.PrivateKey(keySize: .bits2048))
            let forged = try otherKey.authorization(
                method: "GET", url: "http://\(host)\(path)", query: [], token: accessToken, extra: [], nonce: "forged",
                timestamp: ts)
            #expect(try await h.send("GET", path, headers: [("Authorization", forged)]).status == 401)
            #expect(await h.emulator.counters().tokensIssued["oauth1"] == 1)
        }
    }
}

extension Data {
    var base64URL: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// A minimal RFC 5849 RSA-SHA1 signer for the tests (independent of the emulator's verifier).
struct OAuth1TestSigner: Sendable {
    let consumerKey: String
    let key: _RSA.Signing.PrivateKey

    static func enc(_ s: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed)!
    }

    func authorization(
        method: String, url: String, query: [(String, String)], token: String?, extra: [(String, String)], nonce: String,
        timestamp: Int
    ) throws -> String {
        var oauth: [(String, String)] = [
            ("oauth_consumer_key", consumerKey), ("oauth_nonce", nonce), ("oauth_signature_method", "RSA-SHA1"),
            ("oauth_timestamp", String(timestamp)), ("oauth_version", "1.0"),
        ]
        if let token { oauth.append(("oauth_token", token)) }
        oauth += extra
        var params: [(name: String, value: String)] = []
        for (name, value) in oauth + query { params.append((Self.enc(name), Self.enc(value))) }
        params.sort { a, b in a.name == b.name ? a.value < b.value : a.name < b.name }
        let normalized = params.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        let base = "\(method)&\(Self.enc(url))&\(Self.enc(normalized))"
        let signature = try key.signature(for: Insecure.SHA1.hash(data: Data(base.utf8)), padding: .insecurePKCS1v1_5)
        oauth.append(("oauth_signature", signature.rawRepresentation.base64EncodedString()))
        return "OAuth realm=\"\", " + oauth.map { "\(Self.enc($0.0))=\"\(Self.enc($0.1))\"" }.joined(separator: ", ")
    }
}
