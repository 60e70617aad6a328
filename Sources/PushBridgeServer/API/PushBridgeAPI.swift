import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import PushBridge

/// The HTTP API of DESIGN.md ("HTTP API"), as a Hummingbird router.
///
/// Every error is answered as `{"error": {"code", "message"}}`; every `/v1` route except the OAuth
/// callback (reached by a browser, protected by its signed `state`) and `/metrics` require a
/// bearer token from `PUSHBRIDGE_API_TOKENS`. Secrets sent in (credentials) are never echoed.
public struct PushBridgeAPI: Sendable {
    public let configuration: PushBridgeConfiguration
    public let store: any Store
    public let archives: ArchiveStore
    public let registry: PrometheusCollectorRegistry
    /// Extra `/v1` routes (OAuth flows, connection pickers) installed behind authentication.
    public let extensions: [any APIRouteExtension]

    /// Creates the API over a store and archive directory.
    public init(
        configuration: PushBridgeConfiguration, store: any Store, archives: ArchiveStore,
        registry: PrometheusCollectorRegistry, extensions: [any APIRouteExtension] = []
    ) {
        self.configuration = configuration
        self.store = store
        self.archives = archives
        self.registry = registry
        self.extensions = extensions
    }

    /// Builds the router with all routes and middleware.
    public func buildRouter() -> Router<PushBridgeRequestContext> {
        let router = Router(context: PushBridgeRequestContext.self)
        router.middlewares.add(PrometheusMiddleware(registry: registry))
        router.middlewares.add(ErrorMiddleware())

        router.get("/healthz") { _, _ in HealthView(status: "ok") }
        router.get("/readyz") { _, context in try await readiness(context: context) }
        router.get("/openapi.json") { _, _ in OpenAPIDocument.jsonResponse() }
        router.get("/openapi.yaml") { _, _ in OpenAPIDocument.yamlResponse() }
        for routeExtension in extensions { routeExtension.addPublicRoutes(to: router) }

        let auth = BearerAuthMiddleware(tokens: configuration.apiTokens.value)
        router.group("/metrics").add(middleware: auth).get { _, _ in metrics() }

        let v1 = router.group("/v1").add(middleware: auth)
        v1.post("/connections") { request, context in try await createConnection(request, context: context) }
        v1.get("/connections") { _, _ in try await listConnections() }
        v1.get("/connections/:id") { _, context in try await showConnection(context.parameters.require("id")) }
        v1.delete("/connections/:id") { _, context in try await deleteConnection(context.parameters.require("id")) }

        v1.post("/archives") { request, _ in try await uploadArchive(request) }

        v1.post("/jobs") { request, context in try await enqueue(request, context: context) }
        v1.get("/jobs") { request, _ in try await listJobs(request) }
        v1.get("/jobs/:id") { _, context in JobView(try await job(context.parameters.require("id"))) }
        v1.post("/jobs/:id/cancel") { _, context in
            JobView(try await store.cancel(jobID: try await job(context.parameters.require("id")).id))
        }
        v1.post("/jobs/:id/retry") { _, context in
            JobView(try await store.retry(jobID: try await job(context.parameters.require("id")).id))
        }
        for routeExtension in extensions { routeExtension.addAuthenticatedRoutes(to: v1) }
        return router
    }

    // MARK: Health

    private func readiness(context: PushBridgeRequestContext) async throws -> Response {
        // Config was validated at startup; a running API implies it is ok.
        var checks = ["config": "ok"]
        var ready = true
        do {
            try await store.ping()
            checks["store"] = "ok"
        } catch {
            ready = false
            checks["store"] = (error as? any CodedError)?.code ?? "unreachable"
            context.logger.warning("readiness: store unreachable", metadata: ["error": "\(error)"])
        }
        let view = HealthView(status: ready ? "ok" : "unavailable", checks: checks)
        return try jsonResponse(view, status: ready ? .ok : .serviceUnavailable)
    }

    private func metrics() -> Response {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
    }

    // MARK: Connections

    private func createConnection(_ request: Request, context: PushBridgeRequestContext) async throws -> EditedResponse<ConnectionView> {
        let body = try await decodeJSON(CreateConnectionRequest.self, from: request)
        guard Self.isValidConnectionID(body.id) else {
            throw APIError.invalidField("id", "must be 1 to 64 of a-z 0-9 . _ - starting with a letter or digit")
        }
        guard !body.workspace.isEmpty, body.workspace.count <= 128 else {
            throw APIError.invalidField("workspace", "must be 1 to 128 characters")
        }
        var apiURL = try Self.url(body.apiUrl, field: "apiUrl")
        var siteURL = try Self.url(body.siteUrl, field: "siteUrl")
        var gitURL = try Self.url(body.gitUrl, field: "gitUrl")
        if let base = try Self.url(body.baseUrl, field: "baseUrl") {
            apiURL = apiURL ?? base
            siteURL = siteURL ?? base
            // Both clients append their own path (`/{workspace}/{slug}.git`, `/scm/{key}/{slug}.git`)
            // to the git base, so the base URL is the git base for every provider.
            gitURL = gitURL ?? base
        } else if body.provider != .bitbucketCloud,
            (apiURL ?? configuration.dataCenter.apiURL) == nil
        {
            throw APIError.invalidField("baseUrl", "is required for \(body.provider.rawValue) (no PUSHBRIDGE_DC_API_URL default)")
        }
        try Self.validateCredentials(body.credentials, provider: body.provider)
        let connection = Connection(
            id: body.id, provider: body.provider, workspace: body.workspace, apiURL: apiURL, siteURL: siteURL,
            gitURL: gitURL, credentialsKind: body.credentials.kind)
        let created = try await store.createConnection(connection, credentials: body.credentials)
        context.logger.info("connection registered", metadata: ["connection": "\(created.id)"])
        return EditedResponse(status: .created, response: ConnectionView(created, credentials: body.credentials))
    }

    private func listConnections() async throws -> ConnectionListView {
        var views: [ConnectionView] = []
        for connection in try await store.listConnections() {
            views.append(ConnectionView(connection, credentials: try? await store.credentials(connectionID: connection.id)))
        }
        return ConnectionListView(connections: views)
    }

    private func showConnection(_ id: String) async throws -> ConnectionView {
        guard let connection = try await store.connection(id: id) else {
            throw StoreError(.connectionNotFound, "connection \"\(id)\" does not exist")
        }
        return ConnectionView(connection, credentials: try? await store.credentials(connectionID: id))
    }

    private func deleteConnection(_ id: String) async throws -> Response {
        guard try await store.deleteConnection(id: id) else {
            throw StoreError(.connectionNotFound, "connection \"\(id)\" does not exist")
        }
        return Response(status: .noContent)
    }

    static func isValidConnectionID(_ id: String) -> Bool {
        guard let first = id.utf8.first, id.utf8.count <= 64 else { return false }
        let alnum: (UInt8) -> Bool = { (48...57).contains($0) || (97...122).contains($0) }
        return alnum(first) && id.utf8.allSatisfy { alnum($0) || $0 == 45 || $0 == 46 || $0 == 95 }
    }

    static func url(_ text: String?, field: String) throws(APIError) -> URL? {
        guard let text else { return nil }
        let trimmed = text.hasSuffix("/") ? String(text.dropLast()) : text
        guard let url = ConfigParsing.httpURL(trimmed) else {
            throw APIError.invalidField(field, "must be an absolute http(s) URL")
        }
        return url
    }

    static func validateCredentials(_ credentials: Credentials, provider: Provider) throws(APIError) {
        switch credentials {
        case .oauth2(let oauth):
            if oauth.accessToken.isEmpty { throw .invalidField("credentials.accessToken", "must not be empty") }
            if oauth.refreshToken?.isEmpty == true {
                throw .invalidField("credentials.refreshToken", "must not be empty when given")
            }
            if provider == .bitbucketServer {
                throw .invalidField("credentials.type", "bitbucket-server connections use oauth1 or access-token")
            }
        case .oauth1(let oauth):
            if oauth.consumerKey.isEmpty { throw .invalidField("credentials.consumerKey", "must not be empty") }
            if oauth.accessToken.isEmpty { throw .invalidField("credentials.accessToken", "must not be empty") }
            if provider == .bitbucketCloud {
                throw .invalidField("credentials.type", "bitbucket-cloud does not support oauth1")
            }
        case .accessToken(let token):
            if token.token.isEmpty { throw .invalidField("credentials.token", "must not be empty") }
        }
    }

    // MARK: Archives

    private func uploadArchive(_ request: Request) async throws -> EditedResponse<ArchiveView> {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > archives.limits.maxArchiveBytes {
            throw ArchiveError(.archiveTooLarge, "archive is larger than the limit of \(archives.limits.maxArchiveBytes) bytes")
        }
        let info = try await archives.ingest(request.body)
        return EditedResponse(
            status: .created, response: ArchiveView(id: info.id, sha256: info.sha256, files: info.files, bytes: info.bytes))
    }

    // MARK: Jobs

    private func enqueue(_ request: Request, context: PushBridgeRequestContext) async throws -> EditedResponse<EnqueuedView> {
        let key = request.headers[.idempotencyKey]
        if let key, key.isEmpty || key.utf8.count > 255 || !key.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            throw APIError(.badRequest, code: "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable ASCII characters")
        }
        let spec = try await decodeJSON(JobSpec.self, from: request)
        try JobSpecValidator(sourceRoots: configuration.sourceRoots).validate(spec)
        guard try await store.connection(id: spec.connection) != nil else {
            throw StoreError(.connectionNotFound, "connection \"\(spec.connection)\" does not exist")
        }
        if case .archive(let id) = spec.source {
            guard try archives.info(id: id) != nil else {
                throw ArchiveError(.notFound, "archive \"\(id)\" does not exist (upload it with POST /v1/archives)")
            }
            archives.touch(id: id)
        }
        let result = try await store.enqueue(spec, idempotencyKey: key, maxAttempts: configuration.jobMaxAttempts)
        if result.created {
            context.logger.info("job queued", metadata: ["job": "\(result.job.id)", "connection": "\(spec.connection)"])
        }
        var headers: HTTPFields = [.location: "/v1/jobs/\(result.job.id)"]
        if !result.created { headers[.idempotentReplayed] = "true" }
        return EditedResponse(
            status: .accepted, headers: headers, response: EnqueuedView(id: result.job.id, state: result.job.state.rawValue))
    }

    private func listJobs(_ request: Request) async throws -> JobListView {
        let query = request.uri.queryParameters
        var jobQuery = JobQuery()
        if let state = query["state"].map(String.init) {
            guard let parsed = JobState(rawValue: state) else {
                let states = JobState.allCases.map(\.rawValue).joined(separator: ", ")
                throw APIError.invalidField("state", "must be one of \(states)")
            }
            jobQuery.state = parsed
        }
        jobQuery.connection = query["connection"].map(String.init)
        jobQuery.cursor = query["cursor"].map(String.init)
        if let limit = query["limit"].map(String.init) {
            guard let value = Int(limit), (1...500).contains(value) else {
                throw APIError.invalidField("limit", "must be an integer in 1...500")
            }
            jobQuery.limit = value
        }
        let page = try await store.listJobs(jobQuery)
        return JobListView(jobs: page.jobs.map(JobView.init), nextCursor: page.nextCursor)
    }

    private func job(_ id: String) async throws -> Job {
        guard let job = try await store.job(id: id) else {
            throw StoreError(.notFound, "job \"\(ArchivePath.printable(id))\" does not exist")
        }
        return job
    }

    // MARK: JSON

    /// Collects at most `PUSHBRIDGE_MAX_REQUEST_BYTES` and decodes it, telling malformed JSON (400)
    /// from well-formed JSON with a wrong or missing field (422, field named).
    func decodeJSON<T: Decodable>(_ type: T.Type, from request: Request) async throws -> T {
        let limit = configuration.limits.maxRequestBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(.contentTooLarge, code: "request_too_large", "request body exceeds \(limit) bytes")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch {
            throw APIError(.contentTooLarge, code: "request_too_large", "request body exceeds \(limit) bytes")
        }
        let data = Data(buffer.readableBytesView)
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw APIError.malformedJSON(data.isEmpty ? "empty body" : "syntax error")
        }
        do {
            return try Self.decoder.decode(T.self, from: data)
        } catch let error as DecodingError {
            throw Self.describe(error)
        }
    }

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            let plain = ISO8601DateFormatter()
            let fractional = ISO8601DateFormatter()
            fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            guard let date = plain.date(from: text) ?? fractional.date(from: text) else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "expected an ISO 8601 date-time such as 2026-01-31T12:00:00Z")
            }
            return date
        }
        return decoder
    }()

    /// A 422 naming the field path of a decoding failure (never the value: it may be a secret).
    static func describe(_ error: DecodingError) -> APIError {
        func path(_ codingPath: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            let keys = codingPath + (last.map { [$0] } ?? [])
            let text = keys.reduce("") { partial, key in
                if let index = key.intValue { return partial + "[\(index)]" }
                return partial.isEmpty ? key.stringValue : partial + "." + key.stringValue
            }
            return text.isEmpty ? "body" : text
        }
        switch error {
        case .keyNotFound(let key, let context):
            return .invalidField(path(context.codingPath, key), "is required")
        case .typeMismatch(let type, let context):
            return .invalidField(path(context.codingPath), "expected \(Self.typeName(type))")
        case .valueNotFound(let type, let context):
            return .invalidField(path(context.codingPath), "expected \(Self.typeName(type)), got null")
        case .dataCorrupted(let context):
            return .invalidField(path(context.codingPath), context.debugDescription)
        @unknown default:
            return .invalidField("body", "does not match the expected shape")
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is Int.Type, is Double.Type: "a number"
        case is [Any].Type: "an array"
        default: "an object"
        }
    }
}

/// Routes contributed by other parts of the daemon (OAuth flows, pickers) once their modules exist.
public protocol APIRouteExtension: Sendable {
    /// Routes reachable without a bearer token (e.g. the OAuth callback hit by a browser).
    func addPublicRoutes(to router: Router<PushBridgeRequestContext>)
    /// Routes under `/v1` behind the bearer-token middleware.
    func addAuthenticatedRoutes(to group: RouterGroup<PushBridgeRequestContext>)
}

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
    static let idempotentReplayed = Self("Idempotent-Replayed")!
}

/// `value` as a JSON response with `status`.
func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status) throws -> Response {
    let encoder = JSONEncoder()
    encoder.dateEncodingStrategy = .iso8601
    return Response(
        status: status, headers: [.contentType: "application/json; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}
