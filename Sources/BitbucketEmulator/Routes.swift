import Foundation

/// One route the emulator serves. The table (``BitbucketEmulator/routes``) is machine-readable so a contract
/// test can check every REST route against the official OpenAPI descriptions.
public struct EmulatorRoute: Sendable, Hashable, CustomStringConvertible {
    /// What a route is, relative to the OpenAPI descriptions.
    public enum Kind: String, Sendable, Hashable {
        /// A REST API route that the product's OpenAPI file describes (``EmulatorRoute/specPath`` is set).
        case rest
        /// OAuth 2.0 / OAuth 1.0a endpoints (not in the OpenAPI files).
        case oauth
        /// git smart HTTP (not in the OpenAPI files).
        case git
        /// Application-link identity (`/plugins/servlet/applinks/whoami`, not in the OpenAPI file).
        case identity
    }

    /// HTTP method, upper-case.
    public let method: String
    /// Path template relative to the server root, with the configured Cloud prefix applied,
    /// e.g. `/2.0/repositories/{workspace}/{repo_slug}`. A `{name...}` parameter takes the rest of the path.
    public let template: String
    /// Product the route belongs to.
    public let product: BitbucketProduct
    /// Kind of route.
    public let kind: Kind
    /// For `.rest` routes: the path template exactly as it appears in the product's OpenAPI file
    /// (Cloud: relative to `/2.0`; DC: relative to `/rest`, with `latest` for the version).
    public let specPath: String?
    let endpoint: Endpoint

    /// Counter key for this route: `template`.
    public var id: String { template }

    public var description: String { "\(method) \(template)" }
}

/// Every endpoint handler the emulator implements.
enum Endpoint: Sendable, Hashable {
    case cloudUser, cloudUserWorkspaces, cloudListRepositories, cloudGetRepository, cloudCreateRepository
    case cloudListBranches, cloudGetBranch
    case cloudListPullRequests, cloudCreatePullRequest, cloudGetPullRequest, cloudUpdatePullRequest
    case cloudListComments, cloudCreateComment
    case cloudAuthorize, cloudAccessToken

    case dcListProjects, dcGetProject, dcListRepositories, dcCreateRepository, dcSearchRepositories
    case dcGetRepository, dcDefaultBranch, dcBranchesDefault, dcListBranches
    case dcListPullRequests, dcCreatePullRequest, dcGetPullRequest, dcUpdatePullRequest
    case dcListComments, dcCreateComment
    case dcCreateRepositoryAccessToken, dcCreateProjectAccessToken
    case dcWhoami
    case dcOAuth2Authorize, dcOAuth2Token
    case oauth1RequestToken, oauth1Authorize, oauth1AccessToken

    case cloudGit, dcGit
}

enum RouteTable {
    static func build(cloudPrefix: String) -> [EmulatorRoute] {
        var routes: [EmulatorRoute] = []
        func cloud(_ method: String, _ path: String, _ e: Endpoint, spec: String? = nil) {
            routes.append(
                EmulatorRoute(
                    method: method, template: cloudPrefix + path, product: .cloud, kind: .rest,
                    specPath: spec ?? path.replacingOccurrences(of: "...}", with: "}"), endpoint: e))
        }
        func dc(_ method: String, _ path: String, _ e: Endpoint) {
            // DC serves `/rest/api/1.0/...` and `/rest/api/latest/...`; its OpenAPI file names the latter.
            let spec = path.replacingOccurrences(of: "/1.0/", with: "/latest/")
            routes.append(
                EmulatorRoute(
                    method: method, template: "/rest" + path, product: .dataCenter, kind: .rest, specPath: spec,
                    endpoint: e))
        }
        func other(_ method: String, _ path: String, _ product: BitbucketProduct, _ kind: EmulatorRoute.Kind, _ e: Endpoint) {
            routes.append(EmulatorRoute(method: method, template: path, product: product, kind: kind, specPath: nil, endpoint: e))
        }

        let repo = "/repositories/{workspace}/{repo_slug}"
        cloud("GET", "/user", .cloudUser)
        cloud("GET", "/user/workspaces", .cloudUserWorkspaces)
        cloud("GET", "/repositories/{workspace}", .cloudListRepositories)
        cloud("GET", repo, .cloudGetRepository)
        cloud("POST", repo, .cloudCreateRepository)
        cloud("GET", repo + "/refs/branches", .cloudListBranches)
        cloud("GET", repo + "/refs/branches/{name...}", .cloudGetBranch)
        cloud("GET", repo + "/pullrequests", .cloudListPullRequests)
        cloud("POST", repo + "/pullrequests", .cloudCreatePullRequest)
        cloud("GET", repo + "/pullrequests/{pull_request_id}", .cloudGetPullRequest)
        cloud("PUT", repo + "/pullrequests/{pull_request_id}", .cloudUpdatePullRequest)
        cloud("GET", repo + "/pullrequests/{pull_request_id}/comments", .cloudListComments)
        cloud("POST", repo + "/pullrequests/{pull_request_id}/comments", .cloudCreateComment)
        other("GET", "/site/oauth2/authorize", .cloud, .oauth, .cloudAuthorize)
        other("POST", "/site/oauth2/access_token", .cloud, .oauth, .cloudAccessToken)

        let dcRepo = "/api/1.0/projects/{projectKey}/repos/{repositorySlug}"
        dc("GET", "/api/1.0/projects", .dcListProjects)
        dc("GET", "/api/1.0/projects/{projectKey}", .dcGetProject)
        dc("GET", "/api/1.0/projects/{projectKey}/repos", .dcListRepositories)
        dc("POST", "/api/1.0/projects/{projectKey}/repos", .dcCreateRepository)
        dc("GET", "/api/1.0/repos", .dcSearchRepositories)
        dc("GET", dcRepo, .dcGetRepository)
        dc("GET", dcRepo + "/default-branch", .dcDefaultBranch)
        dc("GET", dcRepo + "/branches/default", .dcBranchesDefault)
        dc("GET", dcRepo + "/branches", .dcListBranches)
        dc("GET", dcRepo + "/pull-requests", .dcListPullRequests)
        dc("POST", dcRepo + "/pull-requests", .dcCreatePullRequest)
        dc("GET", dcRepo + "/pull-requests/{pullRequestId}", .dcGetPullRequest)
        dc("PUT", dcRepo + "/pull-requests/{pullRequestId}", .dcUpdatePullRequest)
        dc("GET", dcRepo + "/pull-requests/{pullRequestId}/comments", .dcListComments)
        dc("POST", dcRepo + "/pull-requests/{pullRequestId}/comments", .dcCreateComment)
        dc("PUT", "/access-tokens/1.0/projects/{projectKey}/repos/{repositorySlug}", .dcCreateRepositoryAccessToken)
        dc("PUT", "/access-tokens/1.0/projects/{projectKey}", .dcCreateProjectAccessToken)
        other("GET", "/plugins/servlet/applinks/whoami", .dataCenter, .identity, .dcWhoami)
        other("GET", "/rest/oauth2/latest/authorize", .dataCenter, .oauth, .dcOAuth2Authorize)
        other("POST", "/rest/oauth2/latest/token", .dataCenter, .oauth, .dcOAuth2Token)
        other("POST", "/plugins/servlet/oauth/request-token", .dataCenter, .oauth, .oauth1RequestToken)
        other("GET", "/plugins/servlet/oauth/authorize", .dataCenter, .oauth, .oauth1Authorize)
        other("POST", "/plugins/servlet/oauth/access-token", .dataCenter, .oauth, .oauth1AccessToken)

        for (method, tail) in [("GET", "/info/refs"), ("POST", "/git-upload-pack"), ("POST", "/git-receive-pack")] {
            other(method, "/scm/{projectKey}/{repositorySlug}.git" + tail, .dataCenter, .git, .dcGit)
            other(method, "/{workspace}/{repo_slug}.git" + tail, .cloud, .git, .cloudGit)
        }
        return routes
    }

    /// Rewrites `latest` API versions to `1.0` so both spellings hit the same route, as on real DC.
    static func normalize(_ path: String) -> String {
        var p = path
        if p.hasPrefix("/rest/api/latest/") || p == "/rest/api/latest" {
            p = "/rest/api/1.0" + p.dropFirst("/rest/api/latest".count)
        } else if p.hasPrefix("/rest/access-tokens/latest/") {
            p = "/rest/access-tokens/1.0" + p.dropFirst("/rest/access-tokens/latest".count)
        }
        if p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    /// Matches `path` against a template; returns decoded parameters on success.
    static func match(_ template: String, _ path: String) -> [String: String]? {
        let t = template.split(separator: "/", omittingEmptySubsequences: true)
        let s = path.split(separator: "/", omittingEmptySubsequences: true)
        var params: [String: String] = [:]
        var i = 0
        for (ti, seg) in t.enumerated() {
            if seg.hasPrefix("{"), let close = seg.firstIndex(of: "}") {
                var name = String(seg[seg.index(after: seg.startIndex)..<close])
                let suffix = seg[seg.index(after: close)...]
                if name.hasSuffix("...") {
                    // Greedy tail: must be the last template segment.
                    name.removeLast(3)
                    guard ti == t.count - 1, i < s.count else { return nil }
                    params[name] = s[i...].map { FormCoding.percentDecode($0, plusIsSpace: false) }.joined(separator: "/")
                    return params
                }
                guard i < s.count else { return nil }
                let value = s[i]
                guard value.hasSuffix(suffix), value.count > suffix.count else { return nil }
                params[name] = FormCoding.percentDecode(value.dropLast(suffix.count), plusIsSpace: false)
            } else {
                guard i < s.count, s[i] == seg else { return nil }
            }
            i += 1
        }
        return i == s.count ? params : nil
    }
}
