import BitbucketKit
import Foundation
import Hummingbird

/// `{"items": [...], "next": "<cursor>" | null}`.
struct PickerPageView<Item: Encodable & Sendable>: Encodable, ResponseEncodable, Sendable {
    var items: [Item]
    /// Opaque; pass back as `cursor`. `null` on the last page.
    var next: String?

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(items, forKey: .items)
        try container.encode(next, forKey: .next)  // explicit null: the shape never changes
    }

    enum CodingKeys: String, CodingKey { case items, next }
}

/// A Cloud workspace or a Data Center / Server project.
///
/// Workspaces: `{"slug", "name", "id" (uuid), "administrator"}`; projects: `{"key", "name", "id"}`.
struct NamespaceItemView: Encodable, Sendable {
    var namespace: BitbucketNamespace

    init(_ namespace: BitbucketNamespace) { self.namespace = namespace }

    enum CodingKeys: String, CodingKey { case slug, key, name, id, administrator }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch namespace.kind {
        case .workspace:
            try container.encode(namespace.key, forKey: .slug)
            try container.encode(namespace.name, forKey: .name)
            try container.encode(namespace.id, forKey: .id)
            try container.encode(namespace.isAdministrator ?? false, forKey: .administrator)
        case .project:
            try container.encode(namespace.key, forKey: .key)
            try container.encode(namespace.name, forKey: .name)
            try container.encode(namespace.id, forKey: .id)
        }
    }
}

/// A repository as a picker shows it. Same keys for every product; absent values are `null`.
struct RepositoryItemView: Encodable, Sendable {
    var slug: String
    var name: String
    /// Cloud workspace slug or Data Center project key: the `workspace` to pass to other calls.
    var workspace: String
    /// Cloud: the project key inside the workspace; Data Center: the project key.
    var project: String?
    var id: String
    var `private`: Bool
    /// Browser URL.
    var url: String?
    /// The credential-free git URL pushbridge pushes to.
    var cloneUrl: String?
    var defaultBranch: String?

    init(_ repository: Repository, cloneURL: URL?) {
        slug = repository.ref.slug
        name = repository.name
        workspace = repository.ref.namespace
        project = repository.projectKey
        id = repository.id
        `private` = repository.isPrivate
        url = repository.webURL.map(Self.withoutUserInfo)
        cloneUrl = (cloneURL ?? repository.httpCloneURL).map(Self.withoutUserInfo)
        defaultBranch = repository.defaultBranch
    }

    enum CodingKeys: String, CodingKey { case slug, name, workspace, project, id, `private`, url, cloneUrl, defaultBranch }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(slug, forKey: .slug)
        try container.encode(name, forKey: .name)
        try container.encode(workspace, forKey: .workspace)
        try container.encode(project, forKey: .project)
        try container.encode(id, forKey: .id)
        try container.encode(`private`, forKey: .private)
        try container.encode(url, forKey: .url)
        try container.encode(cloneUrl, forKey: .cloneUrl)
        try container.encode(defaultBranch, forKey: .defaultBranch)
    }

    /// Bitbucket's own clone links may carry a user name (`https://alice@bitbucket.org/…`); a
    /// picker shows addresses, never account names or credentials.
    static func withoutUserInfo(_ url: URL) -> String {
        guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return url.absoluteString }
        components.user = nil
        components.password = nil
        return components.string ?? url.absoluteString
    }
}
