import BitbucketKit
import Crypto
import Foundation
import Testing
import _CryptoExtras

@Suite("OAuth flows against a local HTTP server")
struct OAuthFlowTests {
    private func cloudOAuth(_ server: ScriptedServer, _ transport: BitbucketHTTPTransport) -> CloudOAuth2Client {
        CloudOAuth2Client(
            endpoints: CloudEndpoints(apiBaseURL: server.baseURL, siteURL: server.baseURL, gitBaseURL: server.baseURL),
            clientID: "consumer-key",
            clientSecret: Secret("consumer-secret"),
            transport: transport,
            options: testOptions()
        )
    }

    @Test func cloudAuthorizeURL() async throws {
        try await withTransport { transport in
            let client = CloudOAuth2Client(clientID: "key 1", clientSecret: Secret("s"), transport: transport)
            let url = try client.authorizationURL(state: "st/ate", redirectURI: URL(string: "https://pb.example/cb?x=1")!)
            #expect(url.absoluteString == "https://bitbucket.org/site/oauth2/authorize?client_id=key%201&response_type=code&state=st%2Fate&redirect_uri=https%3A%2F%2Fpb.example%2Fcb%3Fx%3D1")
        }
    }

    @Test func cloudCodeExchangeUsesBasicAuthAndForm() async throws {
        try await withScriptedServer({ _, _ in
            .json(200, #"{"access_token":"at1","refresh_token":"rt1","expires_in":7200,"token_type":"bearer","scopes":"account"}"#)
        }) { server in
            try await withTransport { transport in
                let token = try await cloudOAuth(server, transport).exchange(code: "c0de", redirectURI: URL(string: "https://pb.example/cb")!)
                #expect(token.accessToken.reveal() == "at1")
                #expect(token.refreshToken?.reveal() == "rt1")
                let request = try #require(server.requests.first)
                #expect(request.method == "POST")
                #expect(request.path == "/site/oauth2/access_token")
                #expect(request.headers["authorization"] == "Basic " + Data("consumer-key:consumer-secret".utf8).base64EncodedString())
                #expect(request.headers["content-type"] == "application/x-www-form-urlencoded")
                #expect(request.formItems == ["grant_type": "authorization_code", "code": "c0de", "redirect_uri": "https://pb.example/cb"])
                #expect(request.query == nil)
            }
        }
    }

    @Test func cloudRefreshRotation() async throws {
        try await withScriptedServer({ request, _ in
            request.formItems["refresh_token"] == "old-1"
                ? .json(200, #"{"access_token":"at2","refresh_token":"new-2","expires_in":7200}"#)
                : .json(200, #"{"access_token":"at3","expires_in":7200}"#)
        }) { server in
            try await withTransport { transport in
                let client = cloudOAuth(server, transport)
                let rotated = try await client.refresh(Secret("old-1"))
                #expect(rotated.accessToken.reveal() == "at2")
                #expect(rotated.refreshToken?.reveal() == "new-2")
                let notRotated = try await client.refresh(Secret("keep-me"))
                #expect(notRotated.accessToken.reveal() == "at3")
                #expect(notRotated.refreshToken?.reveal() == "keep-me")
                #expect(server.requests.map { $0.formItems["grant_type"] } == ["refresh_token", "refresh_token"])
            }
        }
    }

    @Test func cloudClientCredentials() async throws {
        try await withScriptedServer({ _, _ in .json(200, #"{"access_token":"cc","expires_in":7200}"#) }) { server in
            try await withTransport { transport in
                let token = try await cloudOAuth(server, transport).clientCredentials()
                #expect(token.accessToken.reveal() == "cc")
                #expect(server.requests.first?.formItems == ["grant_type": "client_credentials"])
            }
        }
    }

    @Test func invalidGrantIsTypedAndNotRetried() async throws {
        try await withScriptedServer({ _, _ in
            .json(400, #"{"error":"invalid_grant","error_description":"Invalid refresh_token"}"#)
        }) { server in
            try await withTransport { transport in
                let error = await #expect(throws: BitbucketError.self) { try await cloudOAuth(server, transport).refresh(Secret("gone")) }
                #expect(error?.code == .invalidGrant)
                #expect(error?.status == 400)
                #expect(error?.retryable == false)
                #expect(server.requests.count == 1)
            }
        }
    }

    @Test func dataCenterAuthorizeURLWithPKCE() async throws {
        try await withTransport { transport in
            let client = DataCenterOAuth2Client(
                endpoints: .init(baseURL: URL(string: "https://bb.example.com/ctx/")!),
                clientID: "dc-id",
                clientSecret: Secret("dc-secret"),
                redirectURI: URL(string: "https://pb.example/v1/oauth/bitbucket-datacenter/callback")!,
                transport: transport
            )
            let pkce = try PKCE(verifier: Secret("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
            let url = try client.authorizationURL(state: "s1", scopes: ["REPO_ADMIN", "PROJECT_ADMIN"], pkce: pkce)
            #expect(url.absoluteString == "https://bb.example.com/ctx/rest/oauth2/latest/authorize?client_id=dc-id&redirect_uri=https%3A%2F%2Fpb.example%2Fv1%2Foauth%2Fbitbucket-datacenter%2Fcallback&response_type=code&scope=REPO_ADMIN%20PROJECT_ADMIN&state=s1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")
            #expect(!url.absoluteString.contains("dc-secret"))
            #expect(!url.absoluteString.contains(pkce.verifier.reveal()))
        }
    }

    @Test func dataCenterExchangeAndRefreshSendClientCredentialsInBody() async throws {
        try await withScriptedServer({ request, _ in
            request.formItems["grant_type"] == "authorization_code"
                ? .json(200, #"{"access_token":"dat","refresh_token":"drt","expires_in":3600,"scope":"REPO_ADMIN"}"#)
                : .json(200, #"{"access_token":"dat2","refresh_token":"drt2","expires_in":3600}"#)
        }) { server in
            try await withTransport { transport in
                let client = DataCenterOAuth2Client(
                    endpoints: .init(baseURL: server.baseURL),
                    clientID: "dc-id",
                    clientSecret: Secret("dc-secret"),
                    redirectURI: URL(string: "https://pb.example/cb")!,
                    transport: transport,
                    options: testOptions()
                )
                let pkce = PKCE.generate()
                let token = try await client.exchange(code: "code-1", verifier: pkce.verifier)
                #expect(token.scopes == ["REPO_ADMIN"])
                let refreshed = try await client.refresh(try #require(token.refreshToken))
                #expect(refreshed.refreshToken?.reveal() == "drt2")
                let exchange = server.requests[0]
                #expect(exchange.path == "/rest/oauth2/latest/token")
                #expect(exchange.headers["authorization"] == nil)
                #expect(exchange.formItems == [
                    "client_id": "dc-id", "client_secret": "dc-secret", "code": "code-1", "grant_type": "authorization_code",
                    "redirect_uri": "https://pb.example/cb", "code_verifier": pkce.verifier.reveal(),
                ])
                #expect(server.requests[1].formItems == [
                    "client_id": "dc-id", "client_secret": "dc-secret", "refresh_token": "drt", "grant_type": "refresh_token",
                    "redirect_uri": "https://pb.example/cb",
                ])
            }
        }
    }

    /// The three-legged application-link flow; the server checks every signature with the public key.
    @Test func oauth1ApplicationLinkFlow() async throws {
        let key = try OAuth1PrivateKey.generate()
        let publicKey = key.key.publicKey
        @Sendable func verified(_ request: RecordedRequest, base: URL) -> [String: String]? {
            guard let header = request.headers["authorization"], let parameters = OAuth1.parseAuthorizationHeader(header),
                let url = URL(string: base.absoluteString + request.path + (request.query.map { "?\($0)" } ?? "")),
                let baseString = try? OAuth1.signatureBaseString(method: request.method, url: url, parameters: parameters),
                let signature = parameters.first(where: { $0.0 == "oauth_signature" }).flatMap({ Data(base64Encoded: $0.1) })
            else { return nil }
            let ok = publicKey.isValidSignature(
                .init(rawRepresentation: signature),
                for: Insecure.SHA1.hash(data: Data(baseString.utf8)),
                padding: .insecurePKCS1v1_5
            )
            return ok ? Dictionary(parameters, uniquingKeysWith: { a, _ in a }) : nil
        }
        let baseBox = RequestBoxURL()
        try await withScriptedServer({ request, _ in
            guard let base = baseBox.url, let oauth = verified(request, base: base) else {
                return .text(401, "oauth_problem=signature_invalid")
            }
            switch request.path {
            case "/plugins/servlet/oauth/request-token":
                guard oauth["oauth_callback"] == "https://pb.example/cb?c=1", oauth["oauth_token"] == nil else {
                    return .text(400, "oauth_problem=parameter_absent")
                }
                return .text(200, "oauth_token=req-tok&oauth_token_secret=s&oauth_callback_confirmed=true")
            case "/plugins/servlet/oauth/access-token":
                guard oauth["oauth_token"] == "req-tok", oauth["oauth_verifier"] == "ver-1" else {
                    return .text(401, "oauth_problem=token_rejected")
                }
                return .text(200, "oauth_token=acc-tok&oauth_token_secret=s2")
            case "/rest/api/1.0/projects":
                guard oauth["oauth_token"] == "acc-tok" else { return .text(401, "oauth_problem=token_rejected") }
                return .json(200, #"{"values":[{"key":"PRJ","name":"Platform","id":1}],"isLastPage":true,"start":0,"limit":25,"size":1}"#)
            default:
                return .text(404, "")
            }
        }) { server in
            baseBox.url = server.baseURL
            try await withTransport { transport in
                let flow = OAuth1ApplicationLinkClient(
                    endpoints: .init(baseURL: server.baseURL),
                    consumerKey: "pushbridge",
                    privateKey: key,
                    transport: transport,
                    options: testOptions()
                )
                let requestToken = try await flow.requestToken(callback: URL(string: "https://pb.example/cb?c=1")!)
                #expect(requestToken.token.reveal() == "req-tok")
                #expect(requestToken.callbackConfirmed)
                let authorize = try flow.authorizationURL(requestToken: requestToken.token)
                #expect(authorize.absoluteString == server.baseURL.absoluteString + "/plugins/servlet/oauth/authorize?oauth_token=req-tok")
                let access = try await flow.accessToken(requestToken: requestToken.token, verifier: "ver-1")
                #expect(access.token.reveal() == "acc-tok")

                let client = DataCenterClient(
                    endpoints: .init(baseURL: server.baseURL),
                    credentials: StaticCredentialProvider(.oauth1(flow.signer(accessToken: access.token))),
                    transport: transport,
                    options: testOptions()
                )
                let projects = try await client.allNamespaces()
                #expect(projects == [BitbucketNamespace(kind: .project, key: "PRJ", name: "Platform", id: "1")])
                // The REST call was signed with a query string (start/limit) included in the signature.
                #expect(server.requests.last?.query?.contains("start=0") == true)

                // A wrong verifier is a typed invalid_grant.
                let error = await #expect(throws: BitbucketError.self) {
                    try await flow.accessToken(requestToken: requestToken.token, verifier: "wrong")
                }
                #expect(error?.code == .invalidGrant)
                // A signature by another key is rejected by the server.
                let other = OAuth1ApplicationLinkClient(
                    endpoints: .init(baseURL: server.baseURL),
                    consumerKey: "pushbridge",
                    privateKey: try OAuth1PrivateKey.generate(),
                    transport: transport,
                    options: testOptions()
                )
                let forged = await #expect(throws: BitbucketError.self) {
                    try await other.requestToken(callback: URL(string: "https://pb.example/cb?c=1")!)
                }
                #expect(forged?.code == .invalidClient)
            }
        }
    }
}

/// Holds the server URL for handlers that need it (set once the server is up).
final class RequestBoxURL: Sendable {
    private let storage = Mutex<URL?>(nil)
    var url: URL? {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
}

import Synchronization
