import BitbucketKit
import Foundation
import Testing

@Suite("Error parsing")
struct ErrorParsingTests {
    @Test func cloudErrorBody() {
        let body = #"{"type": "error", "error": {"message": "Access token expired.", "detail": "Refresh it"}}"#
        let error = BitbucketErrorParser.error(status: 401, body: Array(body.utf8))
        #expect(error.code == .tokenExpired)
        #expect(error.status == 401)
        #expect(error.message == "Access token expired.: Refresh it")
        #expect(!error.retryable)
    }

    @Test func cloudNotFound() {
        let body = #"{"type": "error", "error": {"message": "Repository acme/nope not found"}}"#
        let error = BitbucketErrorParser.error(status: 404, body: Array(body.utf8))
        #expect(error.code == .notFound)
        #expect(error.message == "Repository acme/nope not found")
    }

    @Test func dataCenterErrorsArray() {
        let body = #"""
            {"errors": [
              {"context": "name", "message": "This repository URL is already taken.", "exceptionName": "com.atlassian.bitbucket.repository.DuplicateRepositoryException"},
              {"context": null, "message": "Second problem", "exceptionName": null}
            ]}
            """#
        let error = BitbucketErrorParser.error(status: 409, body: Array(body.utf8))
        #expect(error.code == .conflict)
        #expect(error.message == "name: This repository URL is already taken.; Second problem")
        #expect(error.exceptionName == "com.atlassian.bitbucket.repository.DuplicateRepositoryException")
    }

    @Test func dataCenterUnauthorized() {
        let body = #"{"errors":[{"context":null,"message":"Authentication failed. Please check your credentials and try again.","exceptionName":"com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"}]}"#
        let error = BitbucketErrorParser.error(status: 401, body: Array(body.utf8))
        #expect(error.code == .unauthorized)
    }

    @Test func oauthTokenEndpointErrors() {
        let grant = BitbucketErrorParser.error(status: 400, body: Array(#"{"error": "invalid_grant", "error_description": "Invalid refresh_token"}"#.utf8))
        #expect(grant.code == .invalidGrant)
        #expect(grant.message == "invalid_grant: Invalid refresh_token")
        #expect(!grant.retryable)
        let client = BitbucketErrorParser.error(status: 401, body: Array(#"{"error": "invalid_client"}"#.utf8))
        #expect(client.code == .invalidClient)
        let other = BitbucketErrorParser.error(status: 400, body: Array(#"{"error": "unsupported_grant_type"}"#.utf8))
        #expect(other.code == .invalidRequest)
        #expect(other.message == "unsupported_grant_type")
    }

    @Test func oauth1Problem() {
        let error = BitbucketErrorParser.error(status: 401, body: Array("oauth_problem=token_rejected&oauth_problem_advice=gone".utf8))
        #expect(error.code == .invalidGrant)
        #expect(error.message == "oauth_problem=token_rejected: gone")
        let signature = BitbucketErrorParser.error(status: 401, body: Array("oauth_problem=signature_invalid".utf8))
        #expect(signature.code == .invalidClient)
    }

    @Test func cloudRateLimitTextBody() {
        let error = BitbucketErrorParser.error(status: 429, body: Array("Rate limit for this resource has been exceeded\n".utf8))
        #expect(error.code == .rateLimited)
        #expect(error.retryable)
        #expect(error.retryAfter == nil)
        #expect(error.message == "Rate limit for this resource has been exceeded")
    }

    @Test func retryAfterSecondsAndDate() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        let seconds = BitbucketErrorParser.error(status: 503, body: [], retryAfter: "7", now: now)
        #expect(seconds.code == .serverError)
        #expect(seconds.retryable)
        #expect(seconds.retryAfter == .seconds(7))
        #expect(seconds.message == "Service Unavailable")
        // 2023-11-14T22:13:20Z + 30 s
        let date = BitbucketErrorParser.error(status: 429, body: [], retryAfter: "Tue, 14 Nov 2023 22:13:50 GMT", now: now)
        #expect(date.retryAfter == .seconds(30))
        #expect(RetryAfter.parse("Tue, 14 Nov 2023 22:00:00 GMT", now: now) == .zero)
        #expect(RetryAfter.parse("soon", now: now) == nil)
        #expect(RetryAfter.parse("-3", now: now) == nil)
    }

    @Test(arguments: [
        (400, "invalid_request", false), (403, "forbidden", false), (404, "not_found", false), (409, "conflict", false),
        (410, "not_found", false), (500, "server_error", false), (502, "server_error", true), (503, "server_error", true),
        (504, "server_error", true), (429, "rate_limited", true), (418, "unexpected_status", false),
    ])
    func statusMapping(status: Int, code: String, retryable: Bool) {
        let error = BitbucketErrorParser.error(status: status, body: Array("<html><body>proxy</body></html>".utf8))
        #expect(error.code.rawValue == code)
        #expect(error.retryable == retryable)
        #expect(!error.message.contains("html"))
    }

    @Test func longBodiesAreTruncated() {
        let error = BitbucketErrorParser.error(status: 500, body: Array(String(repeating: "x", count: 5000).utf8))
        #expect(error.message.count <= 501)
    }
}

@Suite("OAuth 2.0 tokens and PKCE")
struct OAuth2TokenTests {
    /// RFC 7636 Appendix B.
    @Test func pkceS256AppendixB() throws {
        let pkce = try PKCE(verifier: Secret("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
        #expect(pkce.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        #expect(pkce.method == "S256")
    }

    @Test func generatedPKCEIsValidAndFresh() throws {
        let a = PKCE.generate()
        let b = PKCE.generate()
        #expect(a.verifier.reveal().count == 43)
        #expect(a.verifier != b.verifier)
        #expect(a.challenge == PKCE.challenge(for: a.verifier.reveal()))
        #expect(try PKCE(verifier: a.verifier) == a)
        #expect(throws: BitbucketError.self) { try PKCE(verifier: Secret("short")) }
        #expect(throws: BitbucketError.self) { try PKCE(verifier: Secret(String(repeating: "a", count: 42) + "+")) }
        #expect("\(a)".contains(a.verifier.reveal()) == false)
    }

    @Test func cloudStyleResponse() throws {
        let longToken = String(repeating: "A", count: 4096)
        let body = #"{"access_token": "\#(longToken)", "refresh_token": "r1", "expires_in": 7200, "token_type": "bearer", "scopes": "account repository:write pullrequest:write", "state": "x", "extra": {"nested": true}}"#
        let received = Date(timeIntervalSince1970: 1_000)
        let token = try OAuth2Token.decode(Array(body.utf8), receivedAt: received)
        #expect(token.accessToken.reveal() == longToken)
        #expect(token.refreshToken?.reveal() == "r1")
        #expect(token.expiresIn == 7200)
        #expect(token.expiresAt == Date(timeIntervalSince1970: 8_200))
        #expect(token.tokenType == "bearer")
        #expect(token.scopes == ["account", "repository:write", "pullrequest:write"])
        #expect(!token.description.contains(longToken))
        #expect(!token.description.contains("r1\""))
        #expect(!String(reflecting: token).contains(longToken))
    }

    @Test func dataCenterStyleResponseWithScopeAndNoExpiry() throws {
        let body = #"{"access_token":"a","scope":"REPO_ADMIN PROJECT_ADMIN","token_type":"Bearer"}"#
        let token = try OAuth2Token.decode(Array(body.utf8))
        #expect(token.scopes == ["REPO_ADMIN", "PROJECT_ADMIN"])
        #expect(token.expiresIn == nil)
        #expect(token.expiresAt == nil)
        #expect(token.refreshToken == nil)
    }

    @Test func expiresInAsStringAndScopesAsArray() throws {
        let token = try OAuth2Token.decode(Array(#"{"access_token":"a","expires_in":"3600","scope":["x","y"]}"#.utf8))
        #expect(token.expiresIn == 3600)
        #expect(token.scopes == ["x", "y"])
    }

    @Test func malformedResponsesDoNotQuoteTheBody() {
        do {
            _ = try OAuth2Token.decode(Array(#"{"refresh_token":"super-secret-refresh"}"#.utf8))
            Issue.record("expected a decoding error")
        } catch {
            #expect(error.code == .decoding)
            #expect(!error.description.contains("super-secret-refresh"))
        }
        #expect(throws: BitbucketError.self) { try OAuth2Token.decode(Array("not json".utf8)) }
    }

    @Test func secretRedaction() {
        let secret = Secret("hunter2-token")
        #expect("\(secret)" == "<redacted>")
        #expect(String(reflecting: secret) == "<redacted>")
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains("hunter2"))
        #expect(secret.reveal() == "hunter2-token")
        let authorization = Authorization.bearer(secret)
        var dumpedAuthorization = ""
        dump(authorization, to: &dumpedAuthorization)
        #expect(!dumpedAuthorization.contains("hunter2"))
    }
}
