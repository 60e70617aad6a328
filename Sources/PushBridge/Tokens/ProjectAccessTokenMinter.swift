import AsyncHTTPClient
import BitbucketKit
import Foundation
import NIOCore
import NIOHTTP1

/// Mints the Data Center HTTP access token an OAuth 1.0a connection uses for git.
///
/// The token is **project**-scoped (`PUT /rest/access-tokens/1.0/projects/{key}`): a connection is
/// one project, its sealed credentials hold one git token, and jobs may create repositories in the
/// project after the token was minted — a repository-scoped token could not serve them.
/// BitbucketKit's `DataCenterClient.createAccessToken(for:…)` only mints repository-scoped tokens,
/// which is why this one signed request is written here.
struct ProjectAccessTokenMinter: Sendable {
    let httpClient: HTTPClient
    let timeout: Duration

    struct Minted: Sendable {
        var token: Secret
        var expiresAt: Date?
    }

    /// - Throws: ``TokenError`` `git_token_failed` (retryable for network errors and 5xx/429).
    func mint(
        baseURL: URL, projectKey: String, signer: OAuth1Signer, name: String, expiryDays: Int, now: Date
    ) async throws -> Minted {
        let encodedKey = projectKey.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? projectKey
        let url = baseURL.appendingPathComponent("rest/access-tokens/1.0/projects").appendingPathComponent(encodedKey)
        let authorization: String
        do {
            authorization = try signer.authorizationHeader(method: "PUT", url: url)
        } catch {
            throw TokenError(.configuration, "cannot sign the access-token request: \(error.message)")
        }
        let body: [String: Any] = [
            "name": name, "permissions": ["PROJECT_READ", "REPO_WRITE"], "expiryDays": expiryDays,
        ]
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .PUT
        request.headers.add(name: "Authorization", value: authorization)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "X-Atlassian-Token", value: "no-check")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        let status: Int
        let bytes: ByteBuffer
        do {
            let response = try await httpClient.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
            status = Int(response.status.code)
            bytes = try await response.body.collect(upTo: 1 << 20)
        } catch {
            // The transport error never contains the Authorization header; it is still not quoted
            // in full, only its type, to keep foreign text out of job records.
            throw TokenError(.gitTokenFailed, "HTTP access token request to \(baseURL.host ?? "?") failed: \(type(of: error))", retryable: true)
        }
        guard (200..<300).contains(status) else {
            throw TokenError(
                .gitTokenFailed, "Bitbucket answered HTTP \(status) when minting the git access token for project \(projectKey)",
                retryable: status >= 500 || status == 429)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: bytes)) as? [String: Any],
              let token = object["token"] as? String, !token.isEmpty
        else {
            throw TokenError(.gitTokenFailed, "access token response for project \(projectKey) has no token")
        }
        var expiresAt: Date?
        if let millis = (object["expiryDate"] as? NSNumber)?.doubleValue {
            expiresAt = Date(timeIntervalSince1970: millis / 1000)
        } else {
            let days = (object["expiryDays"] as? NSNumber)?.intValue ?? expiryDays
            expiresAt = now.addingTimeInterval(TimeInterval(days) * 86_400)
        }
        return Minted(token: Secret(token), expiresAt: expiresAt)
    }
}
