import ArgumentParser
import Foundation
import PushBridgeServer

/// How client commands find the daemon. The token never comes from a flag (it would show in `ps`):
/// `PUSHBRIDGE_API_TOKEN`, else the first of `PUSHBRIDGE_API_TOKENS` from the environment, the env
/// file or `$CREDENTIALS_DIRECTORY`.
struct ClientOptions: ParsableArguments {
    @Option(help: "Daemon base URL (default: PUSHBRIDGE_URL, else http://<PUSHBRIDGE_LISTEN>).")
    var url: String?
    @OptionGroup var envFile: EnvFileOption

    func client() async throws -> APIClient {
        let sources = try await ConfigurationSources(envFile: envFile.location)
        guard
            let token = sources.value(.cliAPIToken)
                ?? sources.value(.apiTokens)?.split(separator: ",").first.map({ $0.trimmingCharacters(in: .whitespaces) })
        else {
            throw CommandFailure("no API token: set PUSHBRIDGE_API_TOKEN (or PUSHBRIDGE_API_TOKENS in the env file)")
        }
        var base = url ?? sources.value(.cliURL)
        if base == nil, let listen = sources.value(.listen).flatMap(ListenAddress.init(parsing:)) {
            let host = ["0.0.0.0", "::"].contains(listen.host) ? "127.0.0.1" : listen.host
            base = "http://\(ListenAddress(host: host, port: listen.port))"
        }
        return APIClient(baseURL: base ?? "http://127.0.0.1:8080", token: token)
    }
}

func printJSON(_ object: Any) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) {
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Tab-separated columns, `-` for missing values.
func row(_ columns: [Any?]) -> String {
    columns.map { $0.map { "\($0)" } ?? "-" }.joined(separator: "\t")
}

func percentEncoded(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? text
}

/// Runs a client call, turning daemon errors into one clear line.
func clientCall(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as APIClientError {
        throw CommandFailure("\(error.code): \(error.message)")
    }
}

struct Connections: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage connections of a running daemon.", subcommands: [Add.self, List.self, Show.self, Remove.self, Authorize.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a connection.")
        @OptionGroup var client: ClientOptions
        @Option var id: String
        @Option(help: "bitbucket-cloud, bitbucket-datacenter or bitbucket-server.") var provider: String
        @Option(help: "Cloud workspace, or DC/Server project key.") var workspace: String
        @Option(help: "Data Center / Server base URL.") var baseUrl: String?
        @Option(help: "JSON credentials file ({\"type\": \"oauth2\"|\"oauth1\"|\"access-token\", …}); '-' reads stdin.")
        var credentialsFile: String

        func run() async throws {
            let data = credentialsFile == "-"
                ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: credentialsFile))
            guard let credentials = try? JSONSerialization.jsonObject(with: data) else {
                throw CommandFailure("\(credentialsFile) is not JSON")
            }
            var body: [String: Any] = ["id": id, "provider": provider, "workspace": workspace, "credentials": credentials]
            if let baseUrl { body["baseUrl"] = baseUrl }
            try await clientCall {
                let answer = try await client.client().object(.POST, "/v1/connections", json: try JSONSerialization.data(withJSONObject: body))
                printJSON(answer)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List connections.")
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await clientCall {
                let answer = try await client.client().object(.GET, "/v1/connections")
                for connection in answer["connections"] as? [[String: Any]] ?? [] {
                    let credentials = connection["credentials"] as? [String: Any] ?? [:]
                    let columns: [Any?] = [
                        connection["id"], connection["provider"], connection["workspace"], connection["state"],
                        credentials["type"], credentials["expiresAt"],
                    ]
                    print(row(columns))
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one connection.")
        @OptionGroup var client: ClientOptions
        @Argument var id: String
        func run() async throws {
            try await clientCall { printJSON(try await client.client().object(.GET, "/v1/connections/\(percentEncoded(id))")) }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a connection (its jobs stay).")
        @OptionGroup var client: ClientOptions
        @Argument var id: String
        func run() async throws {
            try await clientCall {
                _ = try await client.client().send(.DELETE, "/v1/connections/\(percentEncoded(id))")
                print("removed \(id)")
            }
        }
    }

    struct Authorize: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the Bitbucket URL that authorizes a new connection or re-authorizes an existing one.",
            discussion: """
                Open the URL in a browser signed in to Bitbucket; after approval Bitbucket sends the browser to \
                the daemon's callback (PUSHBRIDGE_PUBLIC_URL), which stores the tokens. The URL is single-use \
                and expires after PUSHBRIDGE_OAUTH_STATE_TTL.
                """)
        @OptionGroup var client: ClientOptions
        @Argument(help: "Connection id (new, or existing to re-authorize).") var id: String
        @Option(help: "bitbucket-cloud, bitbucket-datacenter or bitbucket-server (default: the existing connection's).")
        var provider: String?
        @Option(help: "Cloud workspace, or DC/Server project key (required for a new connection).") var workspace: String?
        @Option(help: "Data Center / Server base URL (new connection; default PUSHBRIDGE_DC_API_URL).") var baseUrl: String?

        func run() async throws {
            try await clientCall {
                let api = try await client.client()
                var provider = self.provider
                if provider == nil {
                    do {
                        let connection = try await api.object(.GET, "/v1/connections/\(percentEncoded(id))")
                        provider = connection["provider"] as? String
                    } catch let error as APIClientError where error.code == "connection_not_found" {
                        throw CommandFailure("connection \(id) does not exist: --provider is required for a new connection")
                    }
                }
                var query = ["connection=\(percentEncoded(id))"]
                if let workspace { query.append("workspace=\(percentEncoded(workspace))") }
                if let baseUrl { query.append("baseUrl=\(percentEncoded(baseUrl))") }
                let answer = try await api.object(
                    .GET, "/v1/oauth/\(percentEncoded(provider ?? ""))/authorize?" + query.joined(separator: "&"))
                print(answer["url"] as? String ?? "")
            }
        }
    }
}

struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect and control jobs of a running daemon.", subcommands: [List.self, Show.self, Cancel.self, Retry.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List jobs, newest first.")
        @OptionGroup var client: ClientOptions
        @Option var state: String?
        @Option var connection: String?
        @Option(help: "Page size.") var limit: Int = 50
        @Flag(help: "Follow cursors to the last page.") var all = false

        func run() async throws {
            try await clientCall {
                let api = try await client.client()
                var cursor: String?
                repeat {
                    var query = ["limit=\(limit)"]
                    if let state { query.append("state=\(percentEncoded(state))") }
                    if let connection { query.append("connection=\(percentEncoded(connection))") }
                    if let cursor { query.append("cursor=\(percentEncoded(cursor))") }
                    let page = try await api.object(.GET, "/v1/jobs?" + query.joined(separator: "&"))
                    for job in page["jobs"] as? [[String: Any]] ?? [] {
                        let spec = job["spec"] as? [String: Any] ?? [:]
                        let columns: [Any?] = [
                            job["id"], job["state"], job["connection"], (spec["repository"] as? [String: Any])?["slug"],
                            spec["branch"], job["createdAt"],
                        ]
                        print(row(columns))
                    }
                    cursor = page["nextCursor"] as? String
                } while all && cursor != nil
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a job with its result or error.")
        @OptionGroup var client: ClientOptions
        @Argument var id: String
        func run() async throws {
            try await clientCall { printJSON(try await client.client().object(.GET, "/v1/jobs/\(percentEncoded(id))")) }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a queued job or stop a running one.")
        @OptionGroup var client: ClientOptions
        @Argument var id: String
        func run() async throws {
            try await clientCall {
                let job = try await client.client().object(.POST, "/v1/jobs/\(percentEncoded(id))/cancel")
                print("\(id)\t\(job["state"] ?? "-")\(job["cancelRequested"] as? Bool == true ? " (cancel requested)" : "")")
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Queue a failed or cancelled job again.")
        @OptionGroup var client: ClientOptions
        @Argument var id: String
        func run() async throws {
            try await clientCall {
                let job = try await client.client().object(.POST, "/v1/jobs/\(percentEncoded(id))/retry")
                print("\(id)\t\(job["state"] ?? "-")")
            }
        }
    }
}

struct Enqueue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Push a directory as a job: upload it as an archive (or pass its path) and wait for the result.")
    @OptionGroup var client: ClientOptions
    @Option(help: "Connection id.") var connection: String
    @Option(help: "Repository slug.") var repo: String
    @Flag(help: "Create the repository when missing.") var create = false
    @Flag(help: "Create it public (default private).") var `public` = false
    @Option(help: "Project key to create the repository in.") var project: String?
    @Option(help: "Directory of generated files.") var dir: String
    @Flag(help: "Send the directory path (it must be under the daemon's PUSHBRIDGE_SOURCE_ROOTS) instead of uploading it.")
    var byPath = false
    @Option(help: "Branch to push to.") var branch: String
    @Option(help: "Base branch (default: the repository's default branch).") var base: String?
    @Option(help: "Directory inside the repository.") var root: String = ""
    @Option(help: "overlay or sync.") var mode: String = "overlay"
    @Option(help: "Glob kept by sync mode (repeatable).") var preserve: [String] = []
    @Option(help: "Commit message.") var message: String
    @Option var authorName: String?
    @Option var authorEmail: String?
    @Option(help: "Open/update a pull request with this title.") var prTitle: String?
    @Option var prDescription: String?
    @Flag var draft = false
    @Option(help: "Idempotency-Key header (same key and body returns the same job).") var idempotencyKey: String?
    @Flag(help: "Print the job id and return without waiting.") var noWait = false

    func run() async throws {
        try await clientCall {
            let api = try await client.client()
            var source: [String: Any]
            if byPath {
                source = ["directory": URL(fileURLWithPath: dir).standardizedFileURL.path]
            } else {
                source = ["archive": try await upload(api)]
            }
            var spec: [String: Any] = [
                "connection": connection,
                "repository": ["slug": repo, "create": create, "private": !`public`].merging(project.map { ["project": $0] } ?? [:]) { $1 },
                "source": source, "root": root, "mode": mode, "preserve": preserve, "branch": branch,
                "commit": ["message": message].merging(authorName.flatMap { name in authorEmail.map { ["author": ["name": name, "email": $0]] } } ?? [:]) { $1 },
            ]
            if let base { spec["baseBranch"] = base }
            if let prTitle {
                var pullRequest: [String: Any] = ["title": prTitle, "draft": draft]
                if let prDescription { pullRequest["description"] = prDescription }
                spec["pullRequest"] = pullRequest
            }
            let headers = idempotencyKey.map { [("Idempotency-Key", $0)] } ?? []
            let queued = try await api.object(.POST, "/v1/jobs", json: try JSONSerialization.data(withJSONObject: spec), headers: headers)
            guard let id = queued["id"] as? String else { throw CommandFailure("daemon answered without a job id") }
            if noWait {
                print(id)
                return
            }
            try await wait(api, id: id)
        }
    }

    private func upload(_ api: APIClient) async throws -> String {
        let archive = FileManager.default.temporaryDirectory.appendingPathComponent("pushbridge-\(UUID().uuidString).tar.gz")
        defer { try? FileManager.default.removeItem(at: archive) }
        // The tar CLI writes a standard archive (modes, symlinks) without loading it into memory.
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.arguments = ["tar", "-czf", archive.path, "-C", dir, "."]
        try tar.run()
        tar.waitUntilExit()
        guard tar.terminationStatus == 0 else { throw CommandFailure("tar failed for \(dir)") }
        let answer = try await api.uploadArchive(path: archive.path)
        guard let id = answer["id"] as? String else { throw CommandFailure("upload answered without an archive id") }
        FileHandle.standardError.write(Data("uploaded \(answer["files"] ?? 0) files as archive \(id.prefix(12))…\n".utf8))
        return id
    }

    /// Polls the job (every second, then every 2 s) with one progress line on stderr until it ends.
    private func wait(_ api: APIClient, id: String) async throws {
        var delay = Duration.seconds(1)
        while true {
            let job = try await api.object(.GET, "/v1/jobs/\(id)")
            let state = job["state"] as? String ?? "?"
            FileHandle.standardError.write(Data("\r\(id) \(state) (attempt \(job["attempts"] ?? 0))   ".utf8))
            if ["succeeded", "failed", "cancelled"].contains(state) {
                FileHandle.standardError.write(Data("\n".utf8))
                printJSON(job)
                if state != "succeeded" { throw ExitCode(1) }
                return
            }
            try await Task.sleep(for: delay)
            delay = .seconds(2)
        }
    }
}
