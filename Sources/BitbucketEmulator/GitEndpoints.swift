import Foundation
import GitHTTPServer
import Hummingbird

/// git smart HTTP for both products, with each product's authentication rules, in front of `git http-backend`.
///
/// Cloud: `/{workspace}/{slug}.git/…`, `Basic x-token-auth:<access token>` (or `Bearer`).
/// DC: `/scm/{project}/{slug}.git/…`, `Bearer <token>` or Basic with the token as password (username ignored);
/// OAuth 2.0 access tokens and HTTP access tokens both work. Pushes need write permission.
extension EmulatorService {
    private static let writeScopesCloud = ["repository:write", "repository:admin", "pullrequest:write"]
    private static let readScopesCloud = ["repository"] + writeScopesCloud + ["pullrequest"]
    private static let writeGrantsDC = ["REPO_WRITE", "REPO_ADMIN", "PROJECT_WRITE", "PROJECT_ADMIN", "ADMIN", "SYSTEM_ADMIN"]

    private func gitText(_ status: Int, _ text: String, challenge: Bool = false) -> Response {
        var r = EmulatorResponse.text(status, text + "\n")
        if challenge { r.headers.append(("WWW-Authenticate", "Basic realm=\"Bitbucket\"")) }
        return convert(r)
    }

    func handleGit(
        _ request: Request, route: EmulatorRoute, params: [String: String], context: EmulatorRequestContext
    ) async -> Response {
        let product = route.product
        let ref: EmulatorRepositoryRef
        let diskPrefix: String
        switch route.endpoint {
        case .cloudGit:
            let ws = params["workspace"] ?? ""
            let slug = params["repo_slug"] ?? ""
            ref = .cloud(workspace: ws, slug: slug)
            diskPrefix = "/cloud/\(ws)/\(slug).git"
        default:
            // DC prints clone URLs with a lower-case project key; keys are case-insensitive.
            let key = (params["projectKey"] ?? "").uppercased()
            let slug = params["repositorySlug"] ?? ""
            ref = .dataCenter(project: key, slug: slug)
            diskPrefix = "/dc/\(key)/\(slug).git"
        }
        let path = request.uri.path
        guard let range = path.range(of: ".git/") else { return gitText(404, "Repository not found") }
        let tail = String(path[path.index(before: range.upperBound)...])
        let query = FormCoding.decode(request.uri.query ?? "")
        let isPush =
            tail == "/git-receive-pack" || (tail == "/info/refs" && query.contains { $0 == ("service", "git-receive-pack") })

        guard let repo = await state.repository(ref) else { return gitText(404, "Repository not found") }

        let header = request.headers[.authorization]
        var token = Self.bearer(header)
        if token == nil, let basic = Self.basicCredentials(header) {
            // Cloud takes OAuth tokens only with the `x-token-auth` user; DC ignores the user name.
            if product == .dataCenter || basic.user == "x-token-auth" { token = basic.password }
        }
        var username: String?
        if let token {
            switch await state.authenticate(bearer: token, product: product) {
            case .ok(let p):
                guard await mayAccess(p, repo: repo, push: isPush) else {
                    return gitText(403, "You do not have permission to \(isPush ? "push to" : "read") this repository")
                }
                username = p.username
            case .expired, .invalid:
                return gitText(401, "Authentication failed", challenge: true)
            }
        } else if isPush || repo.isPrivate {
            return gitText(401, "Authentication required", challenge: true)
        }

        let response = await git.respond(
            to: request, pathInfo: diskPrefix + tail, remoteUser: username, context: context)
        if tail == "/git-receive-pack" && response.status.code == 200 {
            await state.recordPush(ref)
        }
        return response
    }

    private func mayAccess(_ p: Principal, repo: EmulatorRepository, push: Bool) async -> Bool {
        switch repo.ref {
        case .cloud(let ws, _):
            let member = await state.workspace(ws)?.members.contains(p.username) ?? false
            if (push || repo.isPrivate) && !member { return false }
            return p.scopes.contains(where: (push ? Self.writeScopesCloud : Self.readScopesCloud).contains)
        case .dataCenter(let key, let slug):
            guard await state.canSeeDCProject(key, username: p.username) else { return false }
            switch p.via {
            case .httpAccessToken(let tk, let tr, let permissions):
                if tk != key || (tr != nil && tr != slug) { return false }
                return !push || permissions.contains(where: Self.writeGrantsDC.contains)
            default:
                return !push || p.scopes.contains(where: Self.writeGrantsDC.contains)
            }
        }
    }
}
