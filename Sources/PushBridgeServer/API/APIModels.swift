import Foundation
import Hummingbird
import PushBridge

/// `POST /v1/connections` body.
struct CreateConnectionRequest: Decodable {
    var id: String
    var provider: Provider
    var workspace: String
    /// Data Center / Server base URL (`https://bitbucket.example.com`); REST, OAuth and git URLs derive from it.
    var baseUrl: String?
    /// Explicit overrides of the derived URLs.
    var apiUrl: String?
    var siteUrl: String?
    var gitUrl: String?
    var credentials: Credentials
}

/// A connection as the API shows it: never a secret, only the credential type and expiry.
struct ConnectionView: Encodable, ResponseEncodable {
    struct CredentialsView: Encodable {
        var type: String
        var expiresAt: Date?
        var refreshable: Bool?
        var consumerKey: String?
    }
    var id: String
    var provider: String
    var workspace: String
    var apiUrl: String?
    var siteUrl: String?
    var gitUrl: String?
    var state: String
    var credentials: CredentialsView
    var createdAt: Date
    var updatedAt: Date

    init(_ connection: Connection, credentials: Credentials?) {
        id = connection.id
        provider = connection.provider.rawValue
        workspace = connection.workspace
        apiUrl = connection.apiURL?.absoluteString
        siteUrl = connection.siteURL?.absoluteString
        gitUrl = connection.gitURL?.absoluteString
        state = connection.state.rawValue
        var view = CredentialsView(type: connection.credentialsKind.rawValue)
        switch credentials {
        case .oauth2(let oauth)?:
            view.expiresAt = oauth.expiresAt
            view.refreshable = oauth.refreshToken != nil
        case .oauth1(let oauth)?:
            view.consumerKey = oauth.consumerKey
            view.expiresAt = oauth.gitAccessTokenExpiresAt
        case .accessToken?, nil:
            break
        }
        self.credentials = view
        createdAt = connection.createdAt
        updatedAt = connection.updatedAt
    }
}

struct ConnectionListView: Encodable, ResponseEncodable {
    var connections: [ConnectionView]
}

/// A job as the API shows it (lease owner and checkpoint internals are not part of the contract).
struct JobView: Encodable, ResponseEncodable {
    var id: String
    var state: String
    var connection: String
    var spec: JobSpec
    var attempts: Int
    var maxAttempts: Int
    var cancelRequested: Bool
    var idempotencyKey: String?
    var result: JobResult?
    var error: JobError?
    var createdAt: Date
    var updatedAt: Date
    var finishedAt: Date?

    init(_ job: Job) {
        id = job.id
        state = job.state.rawValue
        connection = job.spec.connection
        spec = job.spec
        attempts = job.attempts
        maxAttempts = job.maxAttempts
        cancelRequested = job.cancelRequested
        idempotencyKey = job.idempotencyKey
        result = job.result
        error = job.error
        createdAt = job.createdAt
        updatedAt = job.updatedAt
        finishedAt = job.finishedAt
    }
}

struct JobListView: Encodable, ResponseEncodable {
    var jobs: [JobView]
    var nextCursor: String?
}

/// `202` answer of `POST /v1/jobs`.
struct EnqueuedView: Encodable, ResponseEncodable {
    var id: String
    var state: String
}

/// `201` answer of `POST /v1/archives`.
struct ArchiveView: Encodable, ResponseEncodable {
    var id: String
    var sha256: String
    var files: Int
    var bytes: Int
}

struct HealthView: Encodable, ResponseEncodable {
    var status: String
    var checks: [String: String]?
}
