import Foundation
import Logging
import Metrics
import NIOHTTP1

/// Version string used in the default `User-Agent`.
public enum BitbucketKitVersion {
    /// pushbridge's version as sent in `User-Agent: pushbridge/<version>`.
    public static let current = "0.1.0"
}

/// A request before authorization is applied.
struct APIRequest: Sendable {
    var method: HTTPMethod
    var url: URL
    var headers: HTTPHeaders = [:]
    var body: [UInt8]?
    /// Form parameters of an `application/x-www-form-urlencoded` body (included in OAuth 1.0a
    /// signatures, RFC 5849 §3.4.1.3.1).
    var formParameters: [(String, String)] = []
    /// Secrets carried in the body (refresh tokens, client secrets, codes), for scrubbing.
    var bodySecrets: [Secret] = []
    /// Send the connection's authorization.
    var authenticated = true

    var isIdempotent: Bool {
        switch method {
        case .GET, .HEAD, .PUT, .DELETE, .OPTIONS: return true
        default: return false
        }
    }

    static func json<Body: Encodable>(_ method: HTTPMethod, _ url: URL, body: Body) throws -> APIRequest {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do {
            data = try encoder.encode(body)
        } catch {
            throw BitbucketError(code: .invalidRequest, message: "cannot encode request body")
        }
        var request = APIRequest(method: method, url: url, body: Array(data))
        request.headers.add(name: "Content-Type", value: "application/json")
        return request
    }

    static func form(_ method: HTTPMethod, _ url: URL, parameters: [(String, String)], secrets: [Secret]) -> APIRequest {
        var request = APIRequest(method: method, url: url, body: Array(FormEncoding.encode(parameters).utf8))
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.formParameters = parameters
        request.bodySecrets = secrets
        return request
    }
}

/// Sends requests with authorization, retries and the 401 refresh-and-replay rule.
struct RequestExecutor: Sendable {
    let transport: BitbucketHTTPTransport
    let credentials: (any CredentialProvider)?
    let retry: RetryPolicy
    let sleeper: any RetrySleeper
    let requestTimeout: Duration
    let userAgent: String
    let logger: Logger
    let metrics: RequestMetrics

    /// Sends `request` and returns the response when its status is in `accept`.
    ///
    /// Non-accepted statuses become a ``BitbucketError``. Idempotent requests are retried per the
    /// ``RetryPolicy``; a `401` triggers one forced credential refresh and one replay.
    func send(_ request: APIRequest, accept: Set<Int> = Set(200..<300)) async throws -> RawResponse {
        var authorization: Authorization = .none
        if request.authenticated, let credentials {
            authorization = try await credentials.authorization(forceRefresh: false)
        }
        var replayedAfter401 = false
        var budget = RetryBudget(policy: retry)
        while true {
            budget.recordAttempt()
            let secrets = authorization.secrets + request.bodySecrets
            let error: BitbucketError
            do {
                let prepared = try prepare(request, authorization: authorization)
                var response: RawResponse
                do {
                    response = try await transport.execute(prepared, timeout: requestTimeout, logger: logger)
                } catch {
                    metrics.record(request, status: nil)
                    throw error
                }
                metrics.record(request, status: response.status)
                response.secrets = secrets
                logger.debug(
                    "bitbucket response",
                    metadata: [
                        "method": "\(request.method.rawValue)", "path": "\(request.url.path)",
                        "status": "\(response.status)", "attempt": "\(budget.attempts)",
                    ]
                )
                if accept.contains(response.status) {
                    return response
                }
                if response.status == 401, request.authenticated, let credentials, !replayedAfter401 {
                    replayedAfter401 = true
                    // A 401 does not consume the retry budget: the request never ran.
                    budget.forgetAttempt()
                    logger.info(
                        "bitbucket rejected the credentials; refreshing once and replaying",
                        metadata: ["method": "\(request.method.rawValue)", "path": "\(request.url.path)"]
                    )
                    authorization = try await credentials.authorization(forceRefresh: true)
                    continue
                }
                error = response.error()
            } catch let failure as BitbucketError {
                error = failure.scrubbed(secrets)
            }
            guard request.isIdempotent, let delay = budget.delayBeforeRetry(after: error) else {
                throw error
            }
            logger.notice(
                "bitbucket request failed; retrying",
                metadata: [
                    "method": "\(request.method.rawValue)", "path": "\(request.url.path)",
                    "code": "\(error.code)", "status": "\(error.status.map(String.init) ?? "-")",
                    "attempt": "\(budget.attempts)", "delay_ms": "\(delay.milliseconds)",
                ]
            )
            try await sleeper.sleep(for: delay)
        }
    }

    /// Sends `request` and decodes the JSON body as `T`.
    func sendJSON<T: Decodable>(_ request: APIRequest, as type: T.Type, accept: Set<Int> = Set(200..<300)) async throws -> T {
        let response = try await send(request, accept: accept)
        return try Self.decode(type, from: response.body)
    }

    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8]) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(body))
        } catch {
            throw BitbucketError.decoding(String(describing: type), error)
        }
    }

    /// Runs a non-idempotent create under the retry policy, retrying only after `lookup` proved the
    /// failed attempt did not take effect.
    ///
    /// After a retryable failure of `create` the outcome is unknown (the server may have created the
    /// object before the connection dropped). The next round first runs `lookup`: when it finds the
    /// object, that is the result; only when it returns `nil` is `create` sent again. A retryable
    /// failure of `lookup` itself keeps the lookup pending for the next round.
    func createWithLookup<T: Sendable>(
        what: String,
        create: () async throws -> T,
        lookup: () async throws -> T?
    ) async throws -> T {
        var budget = RetryBudget(policy: retry)
        var mustLookUp = false
        while true {
            budget.recordAttempt()
            do {
                if mustLookUp {
                    if let existing = try await lookup() {
                        logger.info("create had taken effect before it failed; using the existing object", metadata: ["object": "\(what)"])
                        return existing
                    }
                    mustLookUp = false
                }
                return try await create()
            } catch let error as BitbucketError {
                guard let delay = budget.delayBeforeRetry(after: error) else { throw error }
                mustLookUp = true
                logger.notice(
                    "create failed; will look up before retrying",
                    metadata: ["object": "\(what)", "code": "\(error.code)", "attempt": "\(budget.attempts)"]
                )
                try await sleeper.sleep(for: delay)
            }
        }
    }

    private func prepare(_ request: APIRequest, authorization: Authorization) throws -> PreparedRequest {
        var headers = request.headers
        headers.replaceOrAdd(name: "User-Agent", value: userAgent)
        if !headers.contains(name: "Accept") {
            headers.add(name: "Accept", value: "application/json")
        }
        switch authorization {
        case .none:
            break
        case .bearer(let token):
            headers.replaceOrAdd(name: "Authorization", value: "Bearer \(token.reveal())")
        case .basic(let username, let password):
            let encoded = Data("\(username):\(password.reveal())".utf8).base64EncodedString()
            headers.replaceOrAdd(name: "Authorization", value: "Basic \(encoded)")
        case .oauth1(let signer):
            let header = try signer.authorizationHeader(
                method: request.method.rawValue,
                url: request.url,
                formParameters: request.formParameters
            )
            headers.replaceOrAdd(name: "Authorization", value: header)
        }
        return PreparedRequest(method: request.method, url: request.url, headers: headers, body: request.body)
    }
}

/// `pushbridge_bitbucket_requests_total{method, route, status}`: one count per HTTP exchange with
/// Bitbucket (every attempt, so retries and 401 replays show), `status="error"` when no response
/// arrived.
struct RequestMetrics: Sendable {
    static let label = "pushbridge_bitbucket_requests_total"
    let factory: any MetricsFactory

    func record(_ request: APIRequest, status: Int?) {
        Counter(
            label: Self.label,
            dimensions: [
                ("method", request.method.rawValue), ("route", RouteTemplate.template(of: request.url)),
                ("status", status.map(String.init) ?? "error"),
            ],
            factory: factory
        ).increment()
    }
}

/// Reduces a request URL to a low-cardinality route template for metric labels.
///
/// Call sites build URLs from base URLs and path segments, so the executor cannot know which
/// segment is a parameter. Instead, only segments from the fixed vocabulary of the Bitbucket REST,
/// OAuth and application-link paths pushbridge calls are kept; every other segment (workspace,
/// slug, project key, id, branch name, a deployment's context path) becomes `*`, and the query is
/// dropped. The label set is therefore bounded by the vocabulary and ``maxSegments`` whatever
/// names the repositories have, and never carries a token or user data.
enum RouteTemplate {
    static let maxSegments = 12
    static let vocabulary: Set<String> = [
        // Cloud REST 2.0 and OAuth
        "2.0", "repositories", "pullrequests", "refs", "branches", "user", "workspaces", "permissions",
        "projects", "comments", "site", "oauth2", "authorize", "access_token", "src", "commits",
        // Data Center REST 1.0, OAuth 2.0, access tokens, application links
        "rest", "api", "1.0", "latest", "repos", "pull-requests", "default-branch", "access-tokens", "token",
        "users", "plugins", "servlet", "oauth", "request-token", "access-token", "applinks", "whoami",
        "application-properties", "merge", "decline",
    ]

    static func template(of url: URL) -> String {
        let segments = url.path.split(separator: "/", omittingEmptySubsequences: true)
        var parts = segments.prefix(maxSegments).map { vocabulary.contains(String($0)) ? String($0) : "*" }
        // Drop leading wildcards before the first known segment: a DC context path (`/bitbucket`)
        // should not make the same route look different per installation.
        if let first = parts.firstIndex(where: { $0 != "*" }) { parts.removeFirst(first) }
        if segments.count > maxSegments { parts.append("…") }
        return "/" + parts.joined(separator: "/")
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// `application/x-www-form-urlencoded` with the strict RFC 3986 encoding (spaces as `%20`), which
/// every OAuth server accepts and which keeps OAuth 1.0a signatures unambiguous.
enum FormEncoding {
    static func encode(_ parameters: [(String, String)]) -> String {
        parameters.map { "\(OAuth1.percentEncode($0.0))=\(OAuth1.percentEncode($0.1))" }.joined(separator: "&")
    }

    /// Decodes a form body or query string (`+` is a space).
    static func decode(_ text: String) -> [(String, String)] {
        text.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decodeComponent(_ s: Substring) -> String {
                let plusAsSpace = s.replacingOccurrences(of: "+", with: " ")
                return plusAsSpace.removingPercentEncoding ?? plusAsSpace
            }
            return (decodeComponent(parts[0]), parts.count > 1 ? decodeComponent(parts[1]) : "")
        }
    }
}

/// Builds URLs from a base URL, raw path segments and query items, percent-encoding each part.
enum URLBuilder {
    static func url(_ base: URL, _ segments: [String], query: [(String, String)] = []) throws -> URL {
        var text = base.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        for segment in segments {
            text += "/" + OAuth1.percentEncode(segment)
        }
        if !query.isEmpty {
            text += "?" + FormEncoding.encode(query)
        }
        guard let url = URL(string: text) else {
            throw BitbucketError.configuration("cannot build a URL from base \(base.absoluteString)")
        }
        return url
    }
}
