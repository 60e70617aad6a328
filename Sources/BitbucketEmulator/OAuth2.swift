import Foundation

/// OAuth 2.0 authorization and token endpoints of both products.
///
/// Cloud: `GET /site/oauth2/authorize`, `POST /site/oauth2/access_token` (client authenticates with HTTP Basic;
/// grants `authorization_code`, `refresh_token`, `client_credentials`; no PKCE).
/// DC: `GET /rest/oauth2/latest/authorize` (PKCE S256), `POST /rest/oauth2/latest/token` (client id and secret in
/// the form body; grants `authorization_code`, `refresh_token`).
extension EmulatorService {
    private func approvingUser(_ product: BitbucketProduct) async -> String? {
        if let chosen = await state.authorizingUser[product] { return chosen }
        let all = await state.users
        return all.count == 1 ? all.keys.first : nil
    }

    static func appendQuery(_ url: String, _ pairs: [(String, String)]) -> String {
        let separator = url.contains("?") ? "&" : "?"
        return url + separator + FormCoding.encode(pairs)
    }

    func oauth2Authorize(_ req: EmulatorRequest, product: BitbucketProduct) async throws -> EmulatorResponse {
        // Errors before a trustworthy redirect URI is known are shown as a page, never redirected (RFC 6749 §4.1.2.1).
        guard let clientID = req.query("client_id"), let client = await state.oauth2Client(clientID, product: product)
        else {
            return .text(400, "Invalid client_id")
        }
        let redirect: String
        if let given = req.query("redirect_uri") {
            let ok = product == .cloud ? given.hasPrefix(client.redirectURI) : given == client.redirectURI
            guard ok else { return .text(400, "redirect_uri does not match the registered callback URL") }
            redirect = given
        } else {
            guard product == .cloud else { return .text(400, "redirect_uri is required") }
            redirect = client.redirectURI
        }
        let stateParam = req.query("state")
        func fail(_ code: String, _ description: String) -> EmulatorResponse {
            var pairs = [("error", code), ("error_description", description)]
            if let stateParam { pairs.append(("state", stateParam)) }
            return .redirect(Self.appendQuery(redirect, pairs))
        }
        guard req.query("response_type") == "code" else {
            return fail("unsupported_response_type", "Only response_type=code is supported")
        }
        var challenge: String?
        if product == .dataCenter {
            challenge = req.query("code_challenge")
            if let challenge {
                guard req.query("code_challenge_method") == "S256" else {
                    return fail("invalid_request", "code_challenge_method must be S256")
                }
                guard challenge.count >= 43, challenge.count <= 128 else {
                    return fail("invalid_request", "code_challenge has an invalid length")
                }
            } else if await state.settings.dataCenterRequiresPKCE {
                return fail("invalid_request", "code_challenge is required")
            }
        }
        if await state.denyAuthorization { return fail("access_denied", "The user denied the request") }
        guard let username = await approvingUser(product) else {
            return .text(400, "No user is set to approve authorizations (BitbucketEmulator.setAuthorizingUser)")
        }
        var scopes = client.scopes
        if product == .dataCenter, let requested = req.query("scope")?.split(separator: " ").map(String.init),
            !requested.isEmpty
        {
            scopes = requested
        }
        let lifetime = await state.settings.authorizationCodeLifetime
        let code = await state.storeAuthorizationCode(
            .init(
                product: product, clientID: clientID, username: username, redirectURI: req.query("redirect_uri"),
                scopes: scopes, codeChallenge: challenge, expiresAt: await state.now().addingTimeInterval(lifetime)))
        var pairs = [("code", code)]
        if let stateParam { pairs.append(("state", stateParam)) }
        return .redirect(Self.appendQuery(redirect, pairs))
    }

    func oauth2Token(_ req: EmulatorRequest, product: BitbucketProduct) async throws -> EmulatorResponse {
        guard req.isFormBody else {
            throw APIError.oauth2(400, "invalid_request", "The body must be application/x-www-form-urlencoded")
        }
        let clientID: String
        let clientSecret: String
        if product == .cloud {
            guard let basic = Self.basicCredentials(req.header("Authorization")) else {
                throw APIError.oauth2(401, "invalid_client", "Client credentials must be sent with HTTP Basic")
            }
            (clientID, clientSecret) = basic
        } else {
            guard let id = req.formValue("client_id"), let secret = req.formValue("client_secret") else {
                throw APIError.oauth2(401, "invalid_client", "client_id and client_secret are required")
            }
            (clientID, clientSecret) = (id, secret)
        }
        guard let client = await state.oauth2Client(clientID, product: product), client.clientSecret == clientSecret else {
            throw APIError.oauth2(401, "invalid_client", "Invalid client credentials")
        }
        let grant = req.formValue("grant_type") ?? ""
        let tokens: EmulatorIssuedTokens
        switch grant {
        case "authorization_code":
            guard let code = req.formValue("code") else { throw APIError.oauth2(400, "invalid_request", "code is required") }
            tokens = try await state.redeemCode(
                product: product, code: code, clientID: clientID, redirectURI: req.formValue("redirect_uri"),
                verifier: req.formValue("code_verifier"))
        case "refresh_token":
            guard let refresh = req.formValue("refresh_token") else {
                throw APIError.oauth2(400, "invalid_request", "refresh_token is required")
            }
            tokens = try await state.refresh(product: product, clientID: clientID, refreshToken: refresh)
        case "client_credentials" where product == .cloud:
            guard let owner = client.ownerUsername else {
                throw APIError.oauth2(400, "unauthorized_client", "This consumer has no owner for client_credentials")
            }
            tokens = await state.issueTokens(
                product: .cloud, username: owner, clientID: clientID, scopes: client.scopes, withRefresh: true,
                kind: "oauth2")
        default:
            throw APIError.oauth2(400, "unsupported_grant_type", "Unsupported grant_type")
        }
        var body: [String: JSONValue] = [
            "access_token": .string(tokens.accessToken), "token_type": "bearer", "expires_in": .int(tokens.expiresIn),
        ]
        if let r = tokens.refreshToken { body["refresh_token"] = .string(r) }
        let scopeText = JSONValue.string(tokens.scopes.joined(separator: " "))
        if product == .cloud {
            body["scopes"] = scopeText
            body["state"] = .string(grant)
        } else {
            body["scope"] = scopeText
        }
        return .json(200, .object(body), headers: [("Cache-Control", "no-store"), ("Pragma", "no-cache")])
    }
}
