import Foundation
import GitHTTPServer
import Hummingbird
import Logging
import NIOCore

/// `HTTPField` is not re-exported by Hummingbird; reach it through `HTTPFields`.
typealias HeaderField = HTTPFields.Element

/// Thrown after a fault closed the connection; there is nothing left to answer.
struct DroppedConnection: Error {}

/// The request pipeline: route lookup, fault injection, authentication helpers, dispatch, counters, logging.
struct EmulatorService: Sendable {
    let state: EmulatorState
    let routes: [EmulatorRoute]
    let cloudPrefix: String
    let repositoriesDirectory: URL
    let logger: Logger
    let endpointsBox: EndpointsBox
    let git: GitHTTPBackend

    init(
        state: EmulatorState, routes: [EmulatorRoute], cloudPrefix: String, repositoriesDirectory: URL, logger: Logger,
        endpointsBox: EndpointsBox
    ) {
        self.state = state
        self.routes = routes
        self.cloudPrefix = cloudPrefix
        self.repositoriesDirectory = repositoriesDirectory
        self.logger = logger
        self.endpointsBox = endpointsBox
        self.git = GitHTTPBackend(projectRoot: repositoriesDirectory, logger: logger)
    }

    var endpoints: EmulatorEndpoints { endpointsBox.value }

    // MARK: Pipeline

    func handle(_ request: Request, context: EmulatorRequestContext) async throws -> Response {
        let started = ContinuousClock.now
        let method = request.method.rawValue
        let rawPath = request.uri.path
        let path = RouteTable.normalize(rawPath)

        var matched: (route: EmulatorRoute, params: [String: String])?
        var pathExists = false
        for route in routes {
            guard let params = RouteTable.match(route.template, path) else { continue }
            pathExists = true
            if route.method == method {
                matched = (route, params)
                break
            }
        }
        let routeID = matched?.route.id ?? "unmatched"
        let product = matched?.route.product ?? productGuess(path)
        let kind = matched?.route.kind ?? .rest

        func finish(_ status: Int) async {
            await state.record(method: method, route: routeID, status: status)
            let ms = (ContinuousClock.now - started).components
            let millis = Double(ms.seconds) * 1000 + Double(ms.attoseconds) / 1e15
            // Only method, path and route: query strings carry codes/state and headers carry credentials.
            logger.info(
                "request",
                metadata: [
                    "method": "\(method)", "path": "\(rawPath)", "route": "\(routeID)", "status": "\(status)",
                    "ms": "\(String(format: "%.1f", millis))",
                ])
        }

        if let action = await state.takeFault(method: method, path: rawPath) {
            switch action {
            case .latency(let duration):
                try await Task.sleep(for: duration)
            case .status(let code, let retryAfter):
                var r = faultResponse(code, product: product, kind: kind)
                if let retryAfter { r.headers.append(("Retry-After", String(retryAfter))) }
                await finish(code)
                return convert(r)
            case .dropConnection:
                await finish(0)
                context.channel.close(promise: nil)
                throw DroppedConnection()
            }
        }

        let response: Response
        if let matched, matched.route.kind == .git {
            response = await handleGit(request, route: matched.route, params: matched.params, context: context)
        } else if let matched {
            var emulatorResponse: EmulatorResponse
            do {
                let body = try await request.body.collect(upTo: await state.settings.maxRESTBodyBytes)
                var req = EmulatorRequest(
                    method: method, path: rawPath,
                    queryItems: FormCoding.decode(request.uri.query ?? ""), rawQuery: request.uri.query ?? "",
                    headers: request.headers, authority: request.head.authority, body: Data(body.readableBytesView))
                req.parameters = matched.params
                req.route = matched.route
                emulatorResponse = try await dispatch(matched.route.endpoint, req)
            } catch let error as APIError {
                emulatorResponse = error.response()
            } catch let error as EmulatorControlError {
                emulatorResponse = internalError(error.message, product: product)
            } catch let error as GitCLI.Failure {
                emulatorResponse = internalError("git failed: \(error.status)", product: product)
            } catch {
                emulatorResponse = EmulatorResponse.text(413, "Request body too large")
            }
            response = convert(emulatorResponse)
        } else {
            let status = pathExists ? 405 : 404
            let message = pathExists ? "Method \(method) is not allowed here" : "Resource not found"
            let error: APIError =
                product == .cloud
                ? .cloud(status, message)
                : .dc(status, message, exception: pathExists ? nil : "com.atlassian.bitbucket.rest.NotFoundException")
            response = convert(error.response())
        }
        await finish(Int(response.status.code))
        return response
    }

    private func productGuess(_ path: String) -> BitbucketProduct {
        if path.hasPrefix("/rest/") || path.hasPrefix("/plugins/") || path.hasPrefix("/scm/") { return .dataCenter }
        return .cloud
    }

    private func faultResponse(_ code: Int, product: BitbucketProduct, kind: EmulatorRoute.Kind) -> EmulatorResponse {
        if code == 429 || kind == .git {
            // Cloud answers 429 with a plain-text body and usually no Retry-After.
            return .text(code, code == 429 ? "Rate limit for this resource has been exceeded" : "Injected fault \(code)")
        }
        if kind == .oauth {
            return APIError.oauth2(code, code >= 500 ? "server_error" : "invalid_request", "Injected fault \(code)")
                .response()
        }
        let message = code >= 500 ? "Something went wrong (injected fault \(code))" : "Injected fault \(code)"
        return product == .cloud ? APIError.cloud(code, message).response() : APIError.dc(code, message).response()
    }

    private func internalError(_ message: String, product: BitbucketProduct) -> EmulatorResponse {
        (product == .cloud ? APIError.cloud(500, message) : APIError.dc(500, message)).response()
    }

    func convert(_ r: EmulatorResponse) -> Response {
        var fields = HTTPFields()
        for (name, value) in r.headers {
            if let n = HeaderField.Name(name) { fields.append(HeaderField(name: n, value: value)) }
        }
        return Response(
            status: HTTPResponse.Status(code: r.status), headers: fields,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: r.body)))
    }

    private func dispatch(_ endpoint: Endpoint, _ req: EmulatorRequest) async throws -> EmulatorResponse {
        switch endpoint {
        case .cloudUser: return try await cloudUser(req)
        case .cloudUserWorkspaces: return try await cloudUserWorkspaces(req)
        case .cloudListRepositories: return try await cloudListRepositories(req)
        case .cloudGetRepository: return try await cloudGetRepository(req)
        case .cloudCreateRepository: return try await cloudCreateRepository(req)
        case .cloudListBranches: return try await cloudListBranches(req)
        case .cloudGetBranch: return try await cloudGetBranch(req)
        case .cloudListPullRequests: return try await cloudListPullRequests(req)
        case .cloudCreatePullRequest: return try await cloudCreatePullRequest(req)
        case .cloudGetPullRequest: return try await cloudGetPullRequest(req)
        case .cloudUpdatePullRequest: return try await cloudUpdatePullRequest(req)
        case .cloudListComments: return try await cloudListComments(req)
        case .cloudCreateComment: return try await cloudCreateComment(req)
        case .cloudAuthorize: return try await oauth2Authorize(req, product: .cloud)
        case .cloudAccessToken: return try await oauth2Token(req, product: .cloud)
        case .dcListProjects: return try await dcListProjects(req)
        case .dcGetProject: return try await dcGetProject(req)
        case .dcListRepositories: return try await dcListRepositories(req)
        case .dcCreateRepository: return try await dcCreateRepository(req)
        case .dcSearchRepositories: return try await dcSearchRepositories(req)
        case .dcGetRepository: return try await dcGetRepository(req)
        case .dcDefaultBranch: return try await dcDefaultBranch(req)
        case .dcBranchesDefault: return try await dcBranchesDefault(req)
        case .dcListBranches: return try await dcListBranches(req)
        case .dcListPullRequests: return try await dcListPullRequests(req)
        case .dcCreatePullRequest: return try await dcCreatePullRequest(req)
        case .dcGetPullRequest: return try await dcGetPullRequest(req)
        case .dcUpdatePullRequest: return try await dcUpdatePullRequest(req)
        case .dcListComments: return try await dcListComments(req)
        case .dcCreateComment: return try await dcCreateComment(req)
        case .dcCreateRepositoryAccessToken: return try await dcCreateAccessToken(req, repositoryScoped: true)
        case .dcCreateProjectAccessToken: return try await dcCreateAccessToken(req, repositoryScoped: false)
        case .dcWhoami: return try await dcWhoami(req)
        case .dcOAuth2Authorize: return try await oauth2Authorize(req, product: .dataCenter)
        case .dcOAuth2Token: return try await oauth2Token(req, product: .dataCenter)
        case .oauth1RequestToken: return try await oauth1RequestToken(req)
        case .oauth1Authorize: return try await oauth1Authorize(req)
        case .oauth1AccessToken: return try await oauth1AccessToken(req)
        case .cloudGit, .dcGit:
            return .text(500, "git routes are not dispatched here")
        }
    }

    // MARK: Authentication

    /// Splits `Authorization: Basic …` into user and password.
    static func basicCredentials(_ header: String?) -> (user: String, password: String)? {
        guard let header, header.lowercased().hasPrefix("basic ") else { return nil }
        guard let data = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let s = String(data: data, encoding: .utf8), let colon = s.firstIndex(of: ":")
        else { return nil }
        return (String(s[..<colon]), String(s[s.index(after: colon)...]))
    }

    static func bearer(_ header: String?) -> String? {
        guard let header, header.lowercased().hasPrefix("bearer ") else { return nil }
        let t = header.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return t.isEmpty ? nil : t
    }

    /// Cloud REST authentication: `Bearer <access token>` (also `Basic x-token-auth:<token>`).
    func cloudPrincipal(_ req: EmulatorRequest) async throws(APIError) -> Principal {
        let header = req.header("Authorization")
        var token = Self.bearer(header)
        if token == nil, let basic = Self.basicCredentials(header), basic.user == "x-token-auth" {
            token = basic.password
        }
        guard let token else { throw .cloud(401, "Authentication required.") }
        switch await state.authenticate(bearer: token, product: .cloud) {
        case .ok(let p): return p
        case .expired: throw .cloud(401, "Access token expired.")
        case .invalid: throw .cloud(401, "Token is invalid or not supported for this endpoint.")
        }
    }

    /// Checks a Cloud scope, honouring Bitbucket's implications (`pullrequest:write` ⇒ `repository:write` …).
    func requireCloudScope(_ p: Principal, _ scope: String) throws(APIError) {
        let implied: [String: [String]] = [
            "repository": ["repository:write", "repository:admin", "pullrequest", "pullrequest:write", "repository:delete"],
            "repository:write": ["pullrequest:write"],
            "pullrequest": ["pullrequest:write"],
            "account": ["account:write"],
            "project": ["project:write", "project:admin"],
        ]
        let accepted = [scope] + (implied[scope] ?? [])
        guard p.scopes.contains(where: accepted.contains) else {
            throw .cloud(
                403, "Your credentials lack one or more required privilege scopes.",
                detail: "required: \(scope); granted: \(p.scopes.joined(separator: " "))")
        }
    }

    /// DC REST authentication: `Bearer` (OAuth 2.0 or HTTP access token) or an OAuth 1.0a RSA-SHA1 signature.
    func dcPrincipal(_ req: EmulatorRequest) async throws(APIError) -> Principal {
        let header = req.header("Authorization")
        if let header, header.hasPrefix("OAuth ") {
            return try await verifyOAuth1(req, expectToken: .access)
        }
        guard let token = Self.bearer(header) else {
            throw .dc(
                401, "Authentication failed. Please check your credentials and try again.",
                exception: "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException")
        }
        switch await state.authenticate(bearer: token, product: .dataCenter) {
        case .ok(let p): return p
        case .expired, .invalid:
            throw .dc(
                401, "Authentication failed. Please check your credentials and try again.",
                exception: "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException")
        }
    }

    /// DC's XSRF rule: state-changing calls with a non-JSON body need `X-Atlassian-Token: no-check`.
    func checkXSRF(_ req: EmulatorRequest) async throws(APIError) {
        let strict = await state.settings.requireXSRFHeaderOnAllDataCenterWrites
        guard strict || (!req.isJSONBody && !req.body.isEmpty) else { return }
        if req.header("X-Atlassian-Token")?.lowercased() != "no-check" {
            throw .dc(403, "XSRF check failed", exception: "com.atlassian.bitbucket.AuthorisationException")
        }
    }

    // MARK: Pagination

    /// Cloud pagination: `page` (≥1) and `pagelen` (1…100, default 10) → `values/next/pagelen/page/size`.
    func cloudPage(_ values: [JSONValue], _ req: EmulatorRequest) throws(APIError) -> JSONValue {
        let pagelen = Int(req.query("pagelen") ?? "10") ?? -1
        guard (1...100).contains(pagelen) else { throw .cloud(400, "Invalid pagelen: must be between 1 and 100") }
        let page = Int(req.query("page") ?? "1") ?? 0
        guard page >= 1 else { throw .cloud(400, "Invalid page") }
        let start = (page - 1) * pagelen
        let slice = start < values.count ? Array(values[start..<min(values.count, start + pagelen)]) : []
        var out: [String: JSONValue] = [
            "values": .array(slice), "pagelen": .int(pagelen), "page": .int(page), "size": .int(values.count),
        ]
        if start + pagelen < values.count {
            out["next"] = .string(pageURL(req, replacing: "page", with: String(page + 1)))
        }
        if page > 1 {
            out["previous"] = .string(pageURL(req, replacing: "page", with: String(page - 1)))
        }
        return .object(out)
    }

    private func pageURL(_ req: EmulatorRequest, replacing key: String, with value: String) -> String {
        var items = req.queryItems.filter { $0.0 != key }
        items.append((key, value))
        return endpoints.root.absoluteString + req.path + "?" + FormCoding.encode(items)
    }

    /// DC pagination: `start`, `limit` (default 25, clamped to 1…1000) → `values/size/limit/start/isLastPage/nextPageStart`.
    func dcPage(_ values: [JSONValue], _ req: EmulatorRequest) -> JSONValue {
        let start = max(0, Int(req.query("start") ?? "0") ?? 0)
        let limit = min(1000, max(1, Int(req.query("limit") ?? "25") ?? 25))
        let slice = start < values.count ? Array(values[start..<min(values.count, start + limit)]) : []
        let isLast = start + limit >= values.count
        var out: [String: JSONValue] = [
            "values": .array(slice), "size": .int(slice.count), "limit": .int(limit), "start": .int(start),
            "isLastPage": .bool(isLast),
        ]
        if !isLast { out["nextPageStart"] = .int(start + limit) }
        return .object(out)
    }

    // MARK: Shared

    static func iso8601(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }

    static func millis(_ d: Date) -> Int { Int((d.timeIntervalSince1970 * 1000).rounded()) }

    func repositoryDirectory(_ ref: EmulatorRepositoryRef) -> URL {
        switch ref {
        case .cloud(let w, let s):
            return repositoriesDirectory.appendingPathComponent("cloud").appendingPathComponent(w)
                .appendingPathComponent("\(s).git")
        case .dataCenter(let p, let s):
            return repositoriesDirectory.appendingPathComponent("dc").appendingPathComponent(p)
                .appendingPathComponent("\(s).git")
        }
    }

    /// Creates the record and the bare repository; nil when it already exists.
    func createRepository(
        _ ref: EmulatorRepositoryRef, name: String, description: String, isPrivate: Bool, projectKey: String
    ) async throws -> EmulatorRepository? {
        let dir = repositoryDirectory(ref)
        guard
            let repo = await state.insertRepository(
                ref: ref, name: name, description: description, isPrivate: isPrivate, projectKey: projectKey,
                gitDirectory: dir)
        else { return nil }
        do {
            try await GitCLI.initBare(at: dir, defaultBranch: repo.defaultBranch)
        } catch {
            await state.removeRepository(ref)
            throw error
        }
        return repo
    }
}
