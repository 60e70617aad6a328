import Crypto
import Foundation

/// Who a request acts as, after authentication.
struct Principal: Sendable {
    enum Via: Sendable, Hashable {
        case oauth2(clientID: String)
        case httpAccessToken(projectKey: String, repositorySlug: String?, permissions: [String])
        case oauth1(consumerKey: String)
        case control
    }
    let username: String
    let product: BitbucketProduct
    let scopes: [String]
    let via: Via
}

enum AuthOutcome: Sendable {
    case ok(Principal)
    case expired
    case invalid
}

/// All mutable state of one emulator. An actor so that check-then-act sequences (duplicate PRs, refresh
/// rotation, nonce replay) are atomic under concurrent requests.
actor EmulatorState {
    // MARK: Settings and clock
    var settings: EmulatorConfiguration
    /// Added to the wall clock; lets tests move past expiries and grace periods without sleeping.
    private var clockOffset: TimeInterval = 0
    var authorizingUser: [BitbucketProduct: String] = [:]
    var denyAuthorization = false

    init(settings: EmulatorConfiguration) {
        self.settings = settings
    }

    func now() -> Date { Date().addingTimeInterval(clockOffset) }
    func advanceClock(by seconds: TimeInterval) { clockOffset += seconds }
    func update(_ body: @Sendable (inout EmulatorConfiguration) -> Void) { body(&settings) }

    // MARK: Identity
    private(set) var users: [String: EmulatorUser] = [:]
    private var nextNumericID = 1

    private func numericID() -> Int {
        defer { nextNumericID += 1 }
        return nextNumericID
    }

    func createUser(username: String, displayName: String?, email: String?) throws -> EmulatorUser {
        guard users[username] == nil else { throw EmulatorControlError("already_exists", "user \(username) exists") }
        let user = EmulatorUser(
            id: numericID(), username: username, displayName: displayName ?? username,
            email: email ?? "\(username)@example.com", uuid: Self.braceUUID(),
            accountID: "5b\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(22))")
        users[username] = user
        return user
    }

    func user(_ username: String) -> EmulatorUser? { users[username] }

    func requireUser(_ username: String) throws -> EmulatorUser {
        guard let u = users[username] else { throw EmulatorControlError("unknown_user", "no user \(username)") }
        return u
    }

    static func braceUUID() -> String { "{\(UUID().uuidString.lowercased())}" }

    // MARK: Cloud workspaces and projects, DC projects
    private(set) var workspaces: [String: EmulatorWorkspace] = [:]
    private(set) var workspaceOrder: [String] = []
    private(set) var projects: [String: EmulatorProject] = [:]  // key: "cloud:ws:KEY" / "dc:KEY"
    private(set) var dcProjectOrder: [String] = []

    func createWorkspace(slug: String, name: String?, members: [String], administrators: [String]) throws
        -> EmulatorWorkspace
    {
        guard workspaces[slug] == nil else { throw EmulatorControlError("already_exists", "workspace \(slug) exists") }
        for u in members + administrators { _ = try requireUser(u) }
        let ws = EmulatorWorkspace(
            slug: slug, name: name ?? slug, uuid: Self.braceUUID(),
            members: Array(Set(members + administrators)).sorted(), administrators: administrators)
        workspaces[slug] = ws
        workspaceOrder.append(slug)
        return ws
    }

    func addWorkspaceMember(_ slug: String, username: String, administrator: Bool) throws {
        _ = try requireUser(username)
        guard var ws = workspaces[slug] else { throw EmulatorControlError("unknown_workspace", slug) }
        if !ws.members.contains(username) { ws.members.append(username) }
        if administrator && !ws.administrators.contains(username) { ws.administrators.append(username) }
        workspaces[slug] = ws
    }

    func createProject(product: BitbucketProduct, workspace: String?, key: String, name: String?, members: [String])
        throws -> EmulatorProject
    {
        let mapKey = product == .cloud ? "cloud:\(workspace ?? ""):\(key)" : "dc:\(key)"
        guard projects[mapKey] == nil else { throw EmulatorControlError("already_exists", "project \(key) exists") }
        if product == .cloud {
            guard let workspace, workspaces[workspace] != nil else {
                throw EmulatorControlError("unknown_workspace", workspace ?? "<nil>")
            }
        }
        for u in members { _ = try requireUser(u) }
        let p = EmulatorProject(
            product: product, workspace: workspace, key: key, name: name ?? key, id: numericID(),
            uuid: Self.braceUUID(), members: members)
        projects[mapKey] = p
        if product == .dataCenter { dcProjectOrder.append(key) }
        return p
    }

    func cloudProject(workspace: String, key: String) -> EmulatorProject? { projects["cloud:\(workspace):\(key)"] }
    func cloudProjects(workspace: String) -> [EmulatorProject] {
        projects.values.filter { $0.product == .cloud && $0.workspace == workspace }.sorted { $0.id < $1.id }
    }
    func dcProject(_ key: String) -> EmulatorProject? { projects["dc:\(key)"] }
    func dcProjects() -> [EmulatorProject] { dcProjectOrder.compactMap { projects["dc:\($0)"] } }

    func workspace(_ slug: String) -> EmulatorWorkspace? { workspaces[slug] }
    func workspaces(forUser username: String) -> [EmulatorWorkspace] {
        workspaceOrder.compactMap { workspaces[$0] }.filter { $0.members.contains(username) }
    }

    func canSeeDCProject(_ key: String, username: String) -> Bool {
        guard let p = dcProject(key) else { return false }
        return p.members.isEmpty || p.members.contains(username)
    }

    // MARK: Repositories
    private(set) var repositories: [EmulatorRepositoryRef: EmulatorRepository] = [:]
    private(set) var repositoryOrder: [EmulatorRepositoryRef] = []

    /// Reserves a repository record; the caller initialises the bare repository on disk afterwards.
    func insertRepository(
        ref: EmulatorRepositoryRef, name: String, description: String, isPrivate: Bool, projectKey: String,
        gitDirectory: URL
    ) -> EmulatorRepository? {
        guard repositories[ref] == nil else { return nil }
        let repo = EmulatorRepository(
            ref: ref, id: numericID(), uuid: Self.braceUUID(), name: name, description: description,
            isPrivate: isPrivate, projectKey: projectKey, defaultBranch: settings.defaultBranch,
            gitDirectory: gitDirectory, createdAt: now())
        repositories[ref] = repo
        repositoryOrder.append(ref)
        return repo
    }

    func removeRepository(_ ref: EmulatorRepositoryRef) {
        repositories[ref] = nil
        repositoryOrder.removeAll { $0 == ref }
    }

    func repository(_ ref: EmulatorRepositoryRef) -> EmulatorRepository? { repositories[ref] }

    func repositories(where predicate: @Sendable (EmulatorRepository) -> Bool) -> [EmulatorRepository] {
        repositoryOrder.compactMap { repositories[$0] }.filter(predicate)
    }

    func setDefaultBranch(_ ref: EmulatorRepositoryRef, _ branch: String) {
        repositories[ref]?.defaultBranch = branch
    }

    // MARK: Pull requests
    private var pullRequestsByRepo: [EmulatorRepositoryRef: [EmulatorPullRequest]] = [:]
    private var nextCommentID = 1

    func pullRequests(_ ref: EmulatorRepositoryRef) -> [EmulatorPullRequest] { pullRequestsByRepo[ref] ?? [] }

    func pullRequest(_ ref: EmulatorRepositoryRef, id: Int) -> EmulatorPullRequest? {
        pullRequestsByRepo[ref]?.first { $0.id == id }
    }

    func openPullRequest(_ ref: EmulatorRepositoryRef, source: String, destination: String) -> EmulatorPullRequest? {
        pullRequestsByRepo[ref]?.first {
            $0.state == .open && $0.sourceBranch == source && $0.destinationBranch == destination
        }
    }

    enum CreatePullRequestOutcome: Sendable {
        case created(EmulatorPullRequest)
        case duplicate(EmulatorPullRequest)
    }

    func createPullRequest(
        _ ref: EmulatorRepositoryRef, title: String, description: String, source: String, destination: String,
        draft: Bool, closeSourceBranch: Bool, reviewers: [String], author: String
    ) -> CreatePullRequestOutcome {
        if let existing = openPullRequest(ref, source: source, destination: destination) {
            return .duplicate(existing)
        }
        let t = now()
        let pr = EmulatorPullRequest(
            repository: ref, id: (pullRequestsByRepo[ref]?.count ?? 0) + 1, title: title, description: description,
            sourceBranch: source, destinationBranch: destination, state: .open, draft: draft,
            closeSourceBranch: closeSourceBranch, reviewers: reviewers, author: author, version: 0, createdAt: t,
            updatedAt: t, comments: [])
        pullRequestsByRepo[ref, default: []].append(pr)
        counters.pullRequestsCreated[ref.description, default: 0] += 1
        return .created(pr)
    }

    enum UpdatePullRequestOutcome: Sendable {
        case updated(EmulatorPullRequest)
        case notFound
        case stale(current: EmulatorPullRequest)
        case notOpen(current: EmulatorPullRequest)
    }

    /// Applies `change` to an open pull request, bumping `version` and `updatedAt`. With `expectedVersion`
    /// (DC optimistic locking) the update only happens when it equals the stored version.
    func updatePullRequest(
        _ ref: EmulatorRepositoryRef, id: Int, expectedVersion: Int? = nil,
        _ change: @Sendable (inout EmulatorPullRequest) -> Void
    ) -> UpdatePullRequestOutcome {
        guard let idx = pullRequestsByRepo[ref]?.firstIndex(where: { $0.id == id }) else { return .notFound }
        var pr = pullRequestsByRepo[ref]![idx]
        if let expectedVersion, expectedVersion != pr.version { return .stale(current: pr) }
        guard pr.state == .open else { return .notOpen(current: pr) }
        change(&pr)
        pr.version += 1
        pr.updatedAt = now()
        pullRequestsByRepo[ref]![idx] = pr
        return .updated(pr)
    }

    /// Control-API state change (merge/decline) without version checks.
    func setPullRequestState(_ ref: EmulatorRepositoryRef, id: Int, _ newState: EmulatorPullRequestState) -> Bool {
        guard let idx = pullRequestsByRepo[ref]?.firstIndex(where: { $0.id == id }) else { return false }
        pullRequestsByRepo[ref]![idx].state = newState
        pullRequestsByRepo[ref]![idx].version += 1
        pullRequestsByRepo[ref]![idx].updatedAt = now()
        return true
    }

    func addComment(_ ref: EmulatorRepositoryRef, pullRequest id: Int, text: String, author: String) -> EmulatorComment? {
        guard let idx = pullRequestsByRepo[ref]?.firstIndex(where: { $0.id == id }) else { return nil }
        let c = EmulatorComment(id: nextCommentID, text: text, author: author, createdAt: now())
        nextCommentID += 1
        pullRequestsByRepo[ref]![idx].comments.append(c)
        return c
    }

    // MARK: OAuth 2.0
    private(set) var oauth2Clients: [String: OAuth2ClientRegistration] = [:]

    struct AccessTokenRecord: Sendable {
        let product: BitbucketProduct
        let username: String
        let scopes: [String]
        let via: Principal.Via
        var expiresAt: Date?
    }

    struct RefreshTokenRecord: Sendable {
        let product: BitbucketProduct
        let clientID: String
        let username: String
        let scopes: [String]
        let issuedAt: Date
        var supersededAt: Date?
        var revoked = false
    }

    struct AuthorizationCode: Sendable {
        let product: BitbucketProduct
        let clientID: String
        let username: String
        let redirectURI: String?
        let scopes: [String]
        let codeChallenge: String?
        let expiresAt: Date
        var used = false
    }

    private var accessTokens: [String: AccessTokenRecord] = [:]
    private var refreshTokens: [String: RefreshTokenRecord] = [:]
    private var authorizationCodes: [String: AuthorizationCode] = [:]

    func registerOAuth2Client(_ client: OAuth2ClientRegistration) throws {
        if let owner = client.ownerUsername { _ = try requireUser(owner) }
        oauth2Clients[client.clientID] = client
    }

    func oauth2Client(_ id: String, product: BitbucketProduct) -> OAuth2ClientRegistration? {
        guard let c = oauth2Clients[id], c.product == product else { return nil }
        return c
    }

    static func randomToken(bytes: Int) -> String {
        var rng = SystemRandomNumberGenerator()
        let data = Data((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &rng) })
        return data.base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    private func newAccessTokenString() -> String {
        // Cloud's JWT-style tokens can exceed 2,500 characters; the long form catches fixed-size buffers/columns.
        settings.longAccessTokens ? Self.randomToken(bytes: 1950) : Self.randomToken(bytes: 48)
    }

    func lifetime(_ product: BitbucketProduct) -> TimeInterval {
        product == .cloud ? settings.cloudAccessTokenLifetime : settings.dataCenterAccessTokenLifetime
    }

    /// Issues an access token (and a refresh token when `clientID` is given and `withRefresh`).
    func issueTokens(
        product: BitbucketProduct, username: String, clientID: String?, scopes: [String], withRefresh: Bool,
        kind: String
    ) -> EmulatorIssuedTokens {
        let lifetime = lifetime(product)
        let access = newAccessTokenString()
        let via: Principal.Via = clientID.map { .oauth2(clientID: $0) } ?? .control
        accessTokens[access] = AccessTokenRecord(
            product: product, username: username, scopes: scopes, via: via, expiresAt: now().addingTimeInterval(lifetime))
        var refresh: String?
        if withRefresh, let clientID {
            let r = Self.randomToken(bytes: 32)
            refreshTokens[r] = RefreshTokenRecord(
                product: product, clientID: clientID, username: username, scopes: scopes, issuedAt: now())
            refresh = r
        }
        counters.tokensIssued[kind, default: 0] += 1
        return EmulatorIssuedTokens(accessToken: access, refreshToken: refresh, expiresIn: Int(lifetime), scopes: scopes)
    }

    func issueHTTPAccessToken(
        username: String, projectKey: String, repositorySlug: String?, permissions: [String], expiryDays: Int?
    ) -> String {
        // DC HTTP access tokens are 44 characters of base64; the exact shape does not matter to clients.
        let token = Self.randomToken(bytes: 33)
        accessTokens[token] = AccessTokenRecord(
            product: .dataCenter, username: username, scopes: permissions,
            via: .httpAccessToken(projectKey: projectKey, repositorySlug: repositorySlug, permissions: permissions),
            expiresAt: expiryDays.map { now().addingTimeInterval(TimeInterval($0) * 86400) })
        counters.tokensIssued["http-access-token", default: 0] += 1
        return token
    }

    func authenticate(bearer token: String, product: BitbucketProduct) -> AuthOutcome {
        guard let rec = accessTokens[token], rec.product == product else { return .invalid }
        if let exp = rec.expiresAt, exp <= now() { return .expired }
        return .ok(Principal(username: rec.username, product: rec.product, scopes: rec.scopes, via: rec.via))
    }

    func expireAccessToken(_ token: String) -> Bool {
        guard accessTokens[token] != nil else { return false }
        accessTokens[token]!.expiresAt = now().addingTimeInterval(-1)
        return true
    }

    func expireAllAccessTokens(product: BitbucketProduct?) {
        let past = now().addingTimeInterval(-1)
        for (k, v) in accessTokens where product == nil || v.product == product {
            if case .httpAccessToken = v.via { continue }
            accessTokens[k]!.expiresAt = past
        }
    }

    func revokeRefreshToken(_ token: String) -> Bool {
        guard refreshTokens[token] != nil else { return false }
        refreshTokens[token]!.revoked = true
        return true
    }

    func storeAuthorizationCode(_ code: AuthorizationCode) -> String {
        let c = Self.randomToken(bytes: 18)
        authorizationCodes[c] = code
        return c
    }

    /// Exchanges an authorization code (single use; PKCE S256 checked when a challenge was stored).
    func redeemCode(
        product: BitbucketProduct, code: String, clientID: String, redirectURI: String?, verifier: String?
    ) throws(APIError) -> EmulatorIssuedTokens {
        guard var rec = authorizationCodes[code], rec.product == product else {
            throw .oauth2(400, "invalid_grant", "Invalid authorization code")
        }
        guard !rec.used else { throw .oauth2(400, "invalid_grant", "Authorization code has already been used") }
        rec.used = true
        authorizationCodes[code] = rec
        guard rec.clientID == clientID else { throw .oauth2(400, "invalid_grant", "Authorization code was issued to another client") }
        guard rec.expiresAt > now() else { throw .oauth2(400, "invalid_grant", "Authorization code expired") }
        if let stored = rec.redirectURI, let given = redirectURI, stored != given {
            throw .oauth2(400, "invalid_grant", "redirect_uri does not match the authorization request")
        }
        if product == .dataCenter, rec.redirectURI != nil, redirectURI == nil {
            throw .oauth2(400, "invalid_request", "redirect_uri is required")
        }
        if let challenge = rec.codeChallenge {
            guard let verifier, !verifier.isEmpty else {
                throw .oauth2(400, "invalid_grant", "code_verifier is required")
            }
            let digest = SHA256.hash(data: Data(verifier.utf8))
            let computed = Data(digest).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            guard computed == challenge else { throw .oauth2(400, "invalid_grant", "PKCE verification failed") }
        }
        return issueTokens(
            product: product, username: rec.username, clientID: clientID, scopes: rec.scopes, withRefresh: true,
            kind: "oauth2")
    }

    /// Refresh grant with rotation: every success issues a new refresh token; the presented one stays usable
    /// for `refreshTokenGrace` seconds after it was first rotated, then fails with `invalid_grant`.
    func refresh(product: BitbucketProduct, clientID: String, refreshToken: String) throws(APIError) -> EmulatorIssuedTokens {
        let t = now()
        func reject(_ why: String) -> APIError {
            counters.rejectedRefreshes[clientID, default: 0] += 1
            return .oauth2(400, "invalid_grant", why)
        }
        guard var rec = refreshTokens[refreshToken], rec.product == product, !rec.revoked else {
            throw reject("Invalid refresh_token")
        }
        guard rec.clientID == clientID else { throw reject("refresh_token was issued to another client") }
        if rec.issuedAt.addingTimeInterval(settings.refreshTokenLifetime) <= t { throw reject("refresh_token expired") }
        if let superseded = rec.supersededAt, superseded.addingTimeInterval(settings.refreshTokenGrace) <= t {
            throw reject("Invalid refresh_token")
        }
        if rec.supersededAt == nil {
            rec.supersededAt = t
            refreshTokens[refreshToken] = rec
        }
        counters.refreshGrants[clientID, default: 0] += 1
        return issueTokens(
            product: product, username: rec.username, clientID: clientID, scopes: rec.scopes, withRefresh: true,
            kind: "oauth2")
    }

    // MARK: OAuth 1.0a
    private(set) var oauth1Consumers: [String: OAuth1ConsumerRegistration] = [:]

    struct OAuth1Token: Sendable {
        let consumerKey: String
        let secret: String
        var isAccess: Bool
        var callback: String?
        var verifier: String?
        var username: String?
        let createdAt: Date
    }

    private var oauth1Tokens: [String: OAuth1Token] = [:]
    private var seenNonces: [String: Date] = [:]

    func registerOAuth1Consumer(_ c: OAuth1ConsumerRegistration) { oauth1Consumers[c.consumerKey] = c }
    func oauth1Consumer(_ key: String) -> OAuth1ConsumerRegistration? { oauth1Consumers[key] }
    func oauth1Token(_ token: String) -> OAuth1Token? { oauth1Tokens[token] }

    func createOAuth1RequestToken(consumerKey: String, callback: String) -> (token: String, secret: String) {
        let token = Self.randomToken(bytes: 24)
        let secret = Self.randomToken(bytes: 24)
        oauth1Tokens[token] = OAuth1Token(
            consumerKey: consumerKey, secret: secret, isAccess: false, callback: callback, verifier: nil, username: nil,
            createdAt: now())
        return (token, secret)
    }

    func authorizeOAuth1RequestToken(_ token: String, username: String) -> (callback: String?, verifier: String)? {
        guard var rec = oauth1Tokens[token], !rec.isAccess else { return nil }
        let verifier = Self.randomToken(bytes: 12)
        rec.verifier = verifier
        rec.username = username
        oauth1Tokens[token] = rec
        return (rec.callback, verifier)
    }

    func exchangeOAuth1RequestToken(_ token: String, consumerKey: String, verifier: String?) throws(APIError)
        -> (token: String, secret: String)
    {
        guard let rec = oauth1Tokens[token], !rec.isAccess, rec.consumerKey == consumerKey else {
            throw .oauth1("token_rejected", "The request token is unknown")
        }
        guard let username = rec.username, let expected = rec.verifier else {
            throw .oauth1("permission_unknown", "The request token has not been authorized")
        }
        guard verifier == expected else { throw .oauth1("permission_denied", "The verifier does not match") }
        oauth1Tokens[token] = nil
        return issueOAuth1AccessToken(consumerKey: consumerKey, username: username)
    }

    func issueOAuth1AccessToken(consumerKey: String, username: String) -> (token: String, secret: String) {
        let access = Self.randomToken(bytes: 24)
        let secret = Self.randomToken(bytes: 24)
        oauth1Tokens[access] = OAuth1Token(
            consumerKey: consumerKey, secret: secret, isAccess: true, callback: nil, verifier: nil, username: username,
            createdAt: now())
        counters.tokensIssued["oauth1", default: 0] += 1
        return (access, secret)
    }

    /// Records a nonce; false when the same (consumer, token, timestamp, nonce) was seen inside the window.
    func recordNonce(consumerKey: String, token: String?, timestamp: Int, nonce: String) -> Bool {
        let t = now()
        let window = settings.oauth1TimestampWindow
        // Entries older than twice the window can never be replayed successfully (timestamp check fails first).
        seenNonces = seenNonces.filter { $0.value.addingTimeInterval(2 * window) > t }
        let key = "\(consumerKey)\u{0}\(token ?? "")\u{0}\(timestamp)\u{0}\(nonce)"
        if seenNonces[key] != nil { return false }
        seenNonces[key] = t
        return true
    }

    // MARK: Faults
    private var faults: [EmulatorFault] = []

    func addFault(_ f: EmulatorFault) { faults.append(f) }
    func clearFaults() { faults.removeAll() }

    func takeFault(method: String, path: String) -> EmulatorFault.Action? {
        for (i, f) in faults.enumerated() {
            if let m = f.method, m != method { continue }
            guard PathGlob.matches(f.pathPattern, path) else { continue }
            if let c = f.count {
                if c <= 1 { faults.remove(at: i) } else { faults[i].count = c - 1 }
            }
            return f.action
        }
        return nil
    }

    // MARK: Counters
    private(set) var counters = EmulatorCounters()

    func record(method: String, route: String, status: Int) {
        counters.requests[EmulatorRequestKey(method: method, route: route, status: status), default: 0] += 1
    }

    func recordPush(_ ref: EmulatorRepositoryRef) { counters.gitPushes[ref.description, default: 0] += 1 }

    func resetCounters() { counters = EmulatorCounters() }
}
