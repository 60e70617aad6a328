import BitbucketKit
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import PushBridge

/// Pickers for platform UIs: where a repository can be created and which repository to connect.
///
/// Routes (all under `/v1`, bearer-token protected):
/// - `GET /v1/connections/{id}/workspaces` — Cloud connections only: the workspaces the
///   connection's token can see.
/// - `GET /v1/connections/{id}/projects` — Data Center / Server connections only: the projects.
/// - `GET /v1/connections/{id}/repositories?workspace=&q=&cursor=&limit=` — the repositories of a
///   workspace (Cloud) or project (Data Center / Server), by default the connection's own, filtered
///   by name on Bitbucket's side when `q` is given (Cloud BBQL `name ~ "q"`, Data Center `name=`).
///
/// Every answer is `{"items": [...], "next": "<cursor>" | null}`; `next` is opaque (see
/// ``PickerCursorSealer``) and is passed back as `cursor` with the same other parameters.
///
/// Errors: unknown connection 404 `connection_not_found`; the other product's namespace route
/// 422 `provider_mismatch`; bad `cursor` 400 `invalid_cursor`; bad `limit`/`workspace` 422
/// `invalid_field`; a connection whose refresh token was refused 409 `reauthorization_required`;
/// Bitbucket refusing or failing 502 `bitbucket_<code>` (e.g. `bitbucket_forbidden`), except a
/// workspace/project Bitbucket does not know, 404 `bitbucket_not_found`.
public struct PickerRoutes: APIRouteExtension {
    let store: any Store
    let bitbucket: BitbucketServices
    let sealer: PickerCursorSealer

    /// Default and largest page size (Bitbucket Cloud caps `pagelen` at 100).
    static let defaultLimit = 25
    static let maxLimit = 100

    /// Builds the routes over the daemon's store and shared Bitbucket services (token manager,
    /// client factory); cursors are sealed under a key derived from the master key.
    public init(context: DaemonContext) {
        self.store = context.store
        self.bitbucket = context.bitbucket
        self.sealer = PickerCursorSealer(masterKey: context.configuration.masterKey.value)
    }

    /// None: every picker needs a bearer token.
    public func addPublicRoutes(to router: Router<PushBridgeRequestContext>) {}

    /// Adds the three picker routes to the authenticated `/v1` group.
    public func addAuthenticatedRoutes(to group: RouterGroup<PushBridgeRequestContext>) {
        group.get("/connections/:id/workspaces") { request, context in
            try await namespaces(request, context: context, route: .workspaces)
        }
        group.get("/connections/:id/projects") { request, context in
            try await namespaces(request, context: context, route: .projects)
        }
        group.get("/connections/:id/repositories") { request, context in
            try await repositories(request, context: context)
        }
    }

    enum NamespaceRoute: String {
        case workspaces
        case projects

        func serves(_ provider: Provider) -> Bool {
            switch self {
            case .workspaces: provider == .bitbucketCloud
            case .projects: provider != .bitbucketCloud
            }
        }
    }

    // MARK: Handlers

    func namespaces(_ request: Request, context: PushBridgeRequestContext, route: NamespaceRoute) async throws
        -> PickerPageView<NamespaceItemView>
    {
        let connection = try await connection(context)
        guard route.serves(connection.provider) else {
            let other: NamespaceRoute = route == .workspaces ? .projects : .workspaces
            throw APIError(
                .unprocessableContent, code: "provider_mismatch",
                "connection \"\(connection.id)\" is \(connection.provider.rawValue): use /v1/connections/\(connection.id)/\(other.rawValue)")
        }
        let parameters = try PageParameters(request)
        let listing = PickerListing(connection: connection.id, route: route.rawValue, namespace: "", query: "")
        let cursor = try parameters.cursor.map { text throws(APIError) in try sealer.open(text, for: listing) }
        let page = try await call(connection, context: context) { client in
            try await client.namespaces(cursor: cursor, pageSize: parameters.limit)
        }
        return PickerPageView(items: page.values.map(NamespaceItemView.init), next: try sealer.seal(page.nextCursor, for: listing))
    }

    func repositories(_ request: Request, context: PushBridgeRequestContext) async throws
        -> PickerPageView<RepositoryItemView>
    {
        let connection = try await connection(context)
        let parameters = try PageParameters(request)
        let query = request.uri.queryParameters
        let namespace = query["workspace"].map(String.init) ?? connection.workspace
        guard !namespace.isEmpty, namespace.utf8.count <= 128, !namespace.contains("/") else {
            throw APIError.invalidField("workspace", "must be 1 to 128 characters without \"/\"")
        }
        let search = query["q"].map(String.init) ?? ""
        guard search.utf8.count <= 255 else { throw APIError.invalidField("q", "must be at most 255 bytes") }
        let listing = PickerListing(connection: connection.id, route: "repositories", namespace: namespace, query: search)
        let cursor = try parameters.cursor.map { text throws(APIError) in try sealer.open(text, for: listing) }
        let (page, items) = try await call(connection, context: context) { client in
            let page = try await client.repositories(
                in: namespace, query: search.isEmpty ? nil : search, cursor: cursor, pageSize: parameters.limit)
            return (page, page.values.map { RepositoryItemView($0, cloneURL: try? client.gitRemoteURL(for: $0.ref)) })
        }
        return PickerPageView(items: items, next: try sealer.seal(page.nextCursor, for: listing))
    }

    // MARK: Helpers

    private func connection(_ context: PushBridgeRequestContext) async throws -> Connection {
        let id = try context.parameters.require("id")
        guard let connection = try await store.connection(id: id) else {
            throw StoreError(.connectionNotFound, "connection \"\(id)\" does not exist")
        }
        return connection
    }

    /// Runs `body` with the connection's client, translating token and Bitbucket failures into API errors.
    private func call<T>(
        _ connection: Connection, context: PushBridgeRequestContext, _ body: (any BitbucketClient) async throws -> T
    ) async throws -> T {
        do {
            let client = try bitbucket.clients.client(
                for: connection, credentials: bitbucket.tokens.credentialProvider(connectionID: connection.id))
            return try await body(client)
        } catch {
            let mapped = Self.apiError(error)
            if mapped.status.code >= 500 {
                // Codes only: messages are already free of secrets, but the code is what operators act on.
                context.logger.warning(
                    "picker: Bitbucket call failed",
                    metadata: ["connection": "\(connection.id)", "code": "\(mapped.code)", "status": "\(mapped.status.code)"])
            }
            throw mapped
        }
    }

    /// The API error a token-manager or Bitbucket failure becomes (messages carry no secrets: both
    /// error types guarantee that).
    static func apiError(_ error: any Error) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case let error as TokenError:
            let status: HTTPResponse.Status =
                switch error.kind {
                case .reauthorizationRequired: .conflict
                case .connectionNotFound: .notFound
                case .configuration: .unprocessableContent
                case .persistFailed: .serviceUnavailable
                case .refreshFailed, .gitTokenFailed: .badGateway
                }
            return APIError(status, code: error.code, error.message)
        case let error as PipelineError:
            return APIError(.unprocessableContent, code: error.code, error.message)
        case let error as BitbucketError:
            switch error.code {
            case .invalidCursor:
                return APIError(.badRequest, code: "invalid_cursor", error.message)
            case .notFound:
                return APIError(.notFound, code: "bitbucket_not_found", "Bitbucket: \(error.message)")
            default:
                return APIError(.badGateway, code: "bitbucket_\(error.code.rawValue)", "Bitbucket: \(error.message)")
            }
        default:
            return APIError.from(error)
        }
    }
}

/// `limit` and `cursor` of a picker request.
struct PageParameters {
    var limit: Int
    var cursor: String?

    init(_ request: Request) throws(APIError) {
        let query = request.uri.queryParameters
        limit = PickerRoutes.defaultLimit
        if let text = query["limit"].map(String.init) {
            guard let value = Int(text), (1...PickerRoutes.maxLimit).contains(value) else {
                throw APIError.invalidField("limit", "must be an integer in 1...\(PickerRoutes.maxLimit)")
            }
            limit = value
        }
        cursor = query["cursor"].map(String.init)
        if cursor?.isEmpty == true { cursor = nil }
    }
}
