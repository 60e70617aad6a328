import Foundation

/// Test controls: seed data, mint and expire tokens, move the clock, inject faults, read counters and state.
extension BitbucketEmulator {
    // MARK: Users, workspaces, projects, repositories

    /// Creates a user known to both products.
    @discardableResult
    public func createUser(_ username: String, displayName: String? = nil, email: String? = nil) async throws
        -> EmulatorUser
    {
        try await state.createUser(username: username, displayName: displayName, email: email)
    }

    /// Creates a Cloud workspace. Administrators are members too. No project is created until one is needed
    /// (a repository created without `project.key` lands in the first project, created as `PROJ` if none exists).
    @discardableResult
    public func createWorkspace(
        _ slug: String, name: String? = nil, members: [String] = [], administrators: [String] = []
    ) async throws -> EmulatorWorkspace {
        try await state.createWorkspace(slug: slug, name: name, members: members, administrators: administrators)
    }

    /// Adds a user to a Cloud workspace.
    public func addWorkspaceMember(_ workspace: String, username: String, administrator: Bool = false) async throws {
        try await state.addWorkspaceMember(workspace, username: username, administrator: administrator)
    }

    /// Creates a project inside a Cloud workspace.
    @discardableResult
    public func createCloudProject(workspace: String, key: String, name: String? = nil) async throws -> EmulatorProject {
        try await state.createProject(product: .cloud, workspace: workspace, key: key, name: name, members: [])
    }

    /// Creates a DC project. With `members` empty every user can see it; otherwise only those users.
    @discardableResult
    public func createDataCenterProject(key: String, name: String? = nil, members: [String] = []) async throws
        -> EmulatorProject
    {
        try await state.createProject(product: .dataCenter, workspace: nil, key: key, name: name, members: members)
    }

    /// Creates a repository (and its bare git repository) directly, as if through the product's UI.
    @discardableResult
    public func createRepository(
        _ ref: EmulatorRepositoryRef, name: String? = nil, isPrivate: Bool = true, projectKey: String? = nil
    ) async throws -> EmulatorRepository {
        let key: String
        switch ref {
        case .cloud(let ws, _):
            guard await state.workspace(ws) != nil else { throw EmulatorControlError("unknown_workspace", ws) }
            if let projectKey {
                key = projectKey
            } else if let first = await state.cloudProjects(workspace: ws).first {
                key = first.key
            } else {
                key = "PROJ"
                _ = try await state.createProject(
                    product: .cloud, workspace: ws, key: key, name: "Untitled project", members: [])
            }
        case .dataCenter(let project, _):
            guard await state.dcProject(project) != nil else { throw EmulatorControlError("unknown_project", project) }
            key = project
        }
        guard
            let repo = try await service.createRepository(
                ref, name: name ?? ref.description.split(separator: "/").last.map(String.init) ?? "", description: "",
                isPrivate: isPrivate, projectKey: key)
        else { throw EmulatorControlError("already_exists", "repository \(ref) exists") }
        return repo
    }

    /// The stored repository, if any.
    public func repository(_ ref: EmulatorRepositoryRef) async -> EmulatorRepository? {
        await state.repository(ref)
    }

    /// Tip commit of a branch, read from the bare repository; `nil` when the branch does not exist.
    public func branchTip(_ ref: EmulatorRepositoryRef, branch: String) async throws -> String? {
        guard let repo = await state.repository(ref) else { throw EmulatorControlError("unknown_repository", ref.description) }
        return try await GitCLI.tip(repo.gitDirectory, branch: branch)
    }

    // MARK: Clients, consumers, tokens

    /// Registers an OAuth 2.0 client (Cloud consumer or DC incoming application link).
    public func registerOAuth2Client(_ client: OAuth2ClientRegistration) async throws {
        try await state.registerOAuth2Client(client)
    }

    /// Registers an OAuth 1.0a consumer (application link) with its RSA public key.
    public func registerOAuth1Consumer(_ consumer: OAuth1ConsumerRegistration) async {
        await state.registerOAuth1Consumer(consumer)
    }

    /// Issues an access token directly, skipping the authorization flow. With `clientID`, the token belongs to that
    /// OAuth 2.0 client, gets its scopes (unless `scopes` is given) and comes with a refresh token.
    public func issueTokens(
        product: BitbucketProduct, username: String, clientID: String? = nil, scopes: [String]? = nil
    ) async throws -> EmulatorIssuedTokens {
        _ = try await state.requireUser(username)
        var granted = scopes
        if let clientID {
            guard let client = await state.oauth2Client(clientID, product: product) else {
                throw EmulatorControlError("unknown_client", clientID)
            }
            granted = granted ?? client.scopes
        }
        let defaults =
            product == .cloud
            ? ["account", "repository:admin", "repository:write", "pullrequest:write", "project", "webhook"]
            : ["REPO_ADMIN", "PROJECT_ADMIN"]
        return await state.issueTokens(
            product: product, username: username, clientID: clientID, scopes: granted ?? defaults,
            withRefresh: clientID != nil, kind: "control")
    }

    /// Mints a DC HTTP access token for a repository (or a whole project when `repository` is nil).
    /// Permissions: `REPO_READ`, `REPO_WRITE`, `REPO_ADMIN` (project tokens also `PROJECT_*`).
    public func issueHTTPAccessToken(
        username: String, project: String, repository: String? = nil, permissions: [String] = ["REPO_WRITE"],
        expiryDays: Int? = nil
    ) async throws -> String {
        _ = try await state.requireUser(username)
        return await state.issueHTTPAccessToken(
            username: username, projectKey: project, repositorySlug: repository, permissions: permissions,
            expiryDays: expiryDays)
    }

    /// Issues an OAuth 1.0a access token for a registered consumer, skipping the three-legged flow.
    public func issueOAuth1AccessToken(consumerKey: String, username: String) async throws -> (token: String, secret: String) {
        _ = try await state.requireUser(username)
        guard await state.oauth1Consumer(consumerKey) != nil else { throw EmulatorControlError("unknown_consumer", consumerKey) }
        return await state.issueOAuth1AccessToken(consumerKey: consumerKey, username: username)
    }

    /// Makes an access token expired now. Returns false for an unknown token.
    @discardableResult
    public func expireAccessToken(_ token: String) async -> Bool { await state.expireAccessToken(token) }

    /// Expires every OAuth 2.0 / control-issued access token (of one product, or all). HTTP access tokens are kept.
    public func expireAllAccessTokens(product: BitbucketProduct? = nil) async {
        await state.expireAllAccessTokens(product: product)
    }

    /// Revokes a refresh token: its next use fails with `invalid_grant`.
    @discardableResult
    public func revokeRefreshToken(_ token: String) async -> Bool { await state.revokeRefreshToken(token) }

    /// Changes settings at run time (token lifetimes, rotation grace, long tokens, PKCE requirement, XSRF, …).
    /// Host, port, prefix and directory changes have no effect after start.
    public func updateConfiguration(_ change: @escaping @Sendable (inout EmulatorConfiguration) -> Void) async {
        await state.update(change)
    }

    /// Sets the access-token lifetime (seconds) of newly issued tokens of `product`.
    public func setAccessTokenLifetime(_ seconds: TimeInterval, for product: BitbucketProduct) async {
        await state.update { product == .cloud ? ($0.cloudAccessTokenLifetime = seconds) : ($0.dataCenterAccessTokenLifetime = seconds) }
    }

    /// Sets how long a rotated-out refresh token stays usable.
    public func setRefreshTokenGrace(_ seconds: TimeInterval) async {
        await state.update { $0.refreshTokenGrace = seconds }
    }

    /// Moves the emulator's clock forward (expiry, grace, authorization codes, OAuth 1.0a timestamps).
    public func advanceClock(by seconds: TimeInterval) async { await state.advanceClock(by: seconds) }

    /// The emulator's current time (wall clock plus ``advanceClock(by:)``).
    public func now() async -> Date { await state.now() }

    /// Chooses the user that approves authorization requests of `product` (`nil`: the only user, if there is one).
    public func setAuthorizingUser(_ username: String?, for product: BitbucketProduct) async {
        await state.setAuthorizingUser(username, for: product)
    }

    /// When true, authorization requests are denied (`error=access_denied` / `oauth_problem=permission_denied`).
    public func setAuthorizationDenied(_ denied: Bool) async { await state.setDenyAuthorization(denied) }

    // MARK: Faults and counters

    /// Adds a fault rule; rules are tried in the order added, the first match applies.
    public func injectFault(_ fault: EmulatorFault) async { await state.addFault(fault) }

    /// Removes all fault rules.
    public func clearFaults() async { await state.clearFaults() }

    /// A snapshot of all counters.
    public func counters() async -> EmulatorCounters { await state.counters }

    /// Sets all counters to zero.
    public func resetCounters() async { await state.resetCounters() }

    // MARK: Pull requests

    /// Pull requests of a repository, oldest first, with their comments.
    public func pullRequests(in ref: EmulatorRepositoryRef) async -> [EmulatorPullRequest] {
        await state.pullRequests(ref)
    }

    /// One pull request.
    public func pullRequest(in ref: EmulatorRepositoryRef, id: Int) async -> EmulatorPullRequest? {
        await state.pullRequest(ref, id: id)
    }

    /// Merges or declines a pull request as a person would in the UI (bumps the DC version).
    @discardableResult
    public func setPullRequestState(in ref: EmulatorRepositoryRef, id: Int, _ newState: EmulatorPullRequestState) async
        -> Bool
    {
        await state.setPullRequestState(ref, id: id, newState)
    }
}

extension EmulatorState {
    func setAuthorizingUser(_ username: String?, for product: BitbucketProduct) {
        authorizingUser[product] = username
    }

    func setDenyAuthorization(_ denied: Bool) { denyAuthorization = denied }
}
