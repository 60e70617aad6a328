import Foundation
import Hummingbird
import Logging
import NIOCore

/// `HTTPField` itself is not re-exported by Hummingbird; reach it through `HTTPFields`.
typealias HeaderField = HTTPFields.Element

/// One HTTP request, in the terms `git http-backend` (a CGI program) needs.
public struct GitCGIRequest: Sendable {
    /// HTTP method, e.g. `GET` or `POST`.
    public var method: String
    /// Repository-relative path, e.g. `/ws/repo.git/info/refs`. Already percent-decoded.
    public var pathInfo: String
    /// Raw query string without `?`, e.g. `service=git-upload-pack`.
    public var queryString: String
    /// `Content-Type` of the body, if any.
    public var contentType: String?
    /// `Content-Encoding` of the body (`gzip` is inflated by http-backend itself).
    public var contentEncoding: String?
    /// The `Git-Protocol` request header (e.g. `version=2`).
    public var gitProtocol: String?
    /// The complete, de-chunked request body (still compressed if `contentEncoding` says so).
    public var body: ByteBuffer
    /// The authenticated user name, never a credential.
    public var remoteUser: String?
    /// The client's IP address.
    public var remoteAddress: String?

    /// Creates a request.
    public init(
        method: String,
        pathInfo: String,
        queryString: String = "",
        contentType: String? = nil,
        contentEncoding: String? = nil,
        gitProtocol: String? = nil,
        body: ByteBuffer = ByteBuffer(),
        remoteUser: String? = nil,
        remoteAddress: String? = nil
    ) {
        self.method = method
        self.pathInfo = pathInfo
        self.queryString = queryString
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.gitProtocol = gitProtocol
        self.body = body
        self.remoteUser = remoteUser
        self.remoteAddress = remoteAddress
    }
}

/// A parsed CGI response from `git http-backend`.
public struct GitCGIResponse: Sendable {
    /// One response header as written by the CGI program.
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
    }

    /// HTTP status (from the CGI `Status:` header; 200 when absent).
    public var status: Int
    /// Reason phrase from the `Status:` header, if any.
    public var reasonPhrase: String
    /// Response headers other than `Status`, in order.
    public var headers: [Header]
    /// Response body.
    public var body: ByteBuffer

    /// The first header value named `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

/// Exactly what was handed to a `git http-backend` process: lets tests (and
/// audits) verify that no credential ever reaches the CGI.
public struct GitCGILaunch: Sendable {
    /// The program started.
    public var executable: URL
    /// Its arguments.
    public var arguments: [String]
    /// Its complete environment.
    public var environment: [String: String]
}

/// A `git config` entry passed to git through `GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`.
public struct GitConfigEntry: Sendable, Equatable {
    public var key: String
    public var value: String

    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// Serves git smart HTTP for every repository under ``projectRoot`` by running
/// `git http-backend` as a CGI program, one process per request.
///
/// Authentication is the caller's job and happens *before* ``respond(to:pathInfo:remoteUser:context:)``:
/// only the authenticated user *name* reaches the CGI (`REMOTE_USER`). The child
/// environment is built from scratch, so no header, token or secret from our
/// process environment is passed on.
///
/// Mount it in any Hummingbird router, with the embedding application's own
/// URL layout and auth rules (here Data Center's `/scm/{project}/{repo}.git/...`):
/// ```swift
/// let git = GitHTTPBackend(projectRoot: repositoriesDirectory)
/// for method in [HTTPRequest.Method.get, .post] {
///     router.on("/scm/**", method: method) { request, context in
///         guard let user = myAuthenticate(request.headers[.authorization]) else {
///             return GitHTTPBackend.unauthorized(realm: "Bitbucket")
///         }
///         let pathInfo = "/" + context.parameters.getCatchAll().joined(separator: "/")
///         return await git.respond(to: request, pathInfo: pathInfo, remoteUser: user, context: context)
///     }
/// }
/// ```
public struct GitHTTPBackend: Sendable {
    /// Tunables of a backend.
    public struct Configuration: Sendable {
        /// Request bodies larger than this are answered with `413` (the git CLI and
        /// libgit2 send pushes as one body). Default 512 MiB.
        public var maxRequestBodySize: Int
        /// Whether pushes are accepted (`http.receivepack`). Default `true`.
        public var enableReceivePack: Bool
        /// Extra `git config` entries for the served repositories, e.g.
        /// `GitConfigEntry("uploadpack.allowFilter", "true")`.
        public var extraConfig: [GitConfigEntry]
        /// Explicit program locations; `nil` finds them with ``GitExecutables/locate()``.
        public var executables: GitExecutables?
        /// Called with the exact executable, arguments and environment of every CGI launch.
        public var launchObserver: (@Sendable (GitCGILaunch) -> Void)?

        /// Creates a configuration.
        public init(
            maxRequestBodySize: Int = 512 * 1024 * 1024,
            enableReceivePack: Bool = true,
            extraConfig: [GitConfigEntry] = [],
            executables: GitExecutables? = nil,
            launchObserver: (@Sendable (GitCGILaunch) -> Void)? = nil
        ) {
            self.maxRequestBodySize = maxRequestBodySize
            self.enableReceivePack = enableReceivePack
            self.extraConfig = extraConfig
            self.executables = executables
            self.launchObserver = launchObserver
        }
    }

    /// Directory holding the bare repositories (`GIT_PROJECT_ROOT`).
    public let projectRoot: URL
    /// Tunables.
    public let configuration: Configuration
    /// Counters updated by ``respond(to:pathInfo:remoteUser:context:)``, if any.
    public let statistics: GitHTTPStatistics?
    /// Where CGI stderr and failures are logged (at `debug`, failures at `warning`).
    public let logger: Logger

    /// Creates a backend serving repositories under `projectRoot`.
    public init(
        projectRoot: URL,
        configuration: Configuration = Configuration(),
        statistics: GitHTTPStatistics? = nil,
        logger: Logger = Logger(label: "GitHTTPServer.backend")
    ) {
        self.projectRoot = projectRoot.standardizedFileURL
        self.configuration = configuration
        self.statistics = statistics
        self.logger = logger
    }

    // MARK: - CGI

    /// The complete environment a CGI process gets for `request`.
    ///
    /// Nothing is inherited from our own environment except `PATH` (git needs it
    /// to find hooks' tools); git's system and global configuration are disabled
    /// so the served repositories behave the same on every machine.
    public func environment(for request: GitCGIRequest) -> [String: String] {
        var env: [String: String] = [
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": "pushbridge-git-http",
            "GIT_PROJECT_ROOT": projectRoot.path,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "LC_ALL": "C",
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.pathInfo,
            "QUERY_STRING": request.queryString,
            "REMOTE_ADDR": request.remoteAddress ?? "127.0.0.1",
        ]
        if request.method != "GET" && request.method != "HEAD" {
            env["CONTENT_LENGTH"] = String(request.body.readableBytes)
        }
        if let contentType = request.contentType { env["CONTENT_TYPE"] = contentType }
        if let encoding = request.contentEncoding { env["HTTP_CONTENT_ENCODING"] = encoding }
        if let gitProtocol = request.gitProtocol { env["GIT_PROTOCOL"] = gitProtocol }
        if let user = request.remoteUser { env["REMOTE_USER"] = user }

        let config = [GitConfigEntry("http.receivepack", configuration.enableReceivePack ? "true" : "false")]
            + configuration.extraConfig
        env["GIT_CONFIG_COUNT"] = String(config.count)
        for (index, entry) in config.enumerated() {
            env["GIT_CONFIG_KEY_\(index)"] = entry.key
            env["GIT_CONFIG_VALUE_\(index)"] = entry.value
        }
        return env
    }

    /// Runs `git http-backend` for one request and parses its CGI response.
    ///
    /// - Throws: ``GitHTTPServerError/invalidRepositoryPath(_:)`` for a path with `..`,
    ///   ``GitHTTPServerError/gitNotFound(_:)``, ``GitHTTPServerError/launchFailed(executable:reason:)``,
    ///   ``GitHTTPServerError/malformedCGIResponse(_:)``.
    public func execute(_ request: GitCGIRequest) async throws -> GitCGIResponse {
        guard Self.isSafe(pathInfo: request.pathInfo) else {
            throw GitHTTPServerError.invalidRepositoryPath(request.pathInfo)
        }
        let executables = try await resolvedExecutables()
        let environment = environment(for: request)
        configuration.launchObserver?(GitCGILaunch(executable: executables.httpBackend, arguments: [], environment: environment))
        let result = try await ChildProcess.run(
            executable: executables.httpBackend,
            arguments: [],
            environment: environment,
            currentDirectory: projectRoot,
            standardInput: request.body
        )
        if result.standardError.readableBytes > 0 {
            logger.debug(
                "git http-backend stderr",
                metadata: ["path": "\(request.pathInfo)", "stderr": "\(result.standardErrorString)"]
            )
        }
        do {
            return try Self.parseCGIResponse(result.standardOutput)
        } catch {
            throw GitHTTPServerError.malformedCGIResponse(
                "exit \(result.exitCode): \(error); stderr: \(result.standardErrorString.suffix(2000))"
            )
        }
    }

    func resolvedExecutables() async throws -> GitExecutables {
        if let executables = configuration.executables { return executables }
        return try await GitExecutables.locate()
    }

    /// Splits CGI output into status, headers and body.
    ///
    /// Headers end at the first empty line (`\r\n\r\n` or `\n\n`); a `Status:`
    /// header sets the status, otherwise it is 200 (CGI/1.1 §6.3.3).
    public static func parseCGIResponse(_ output: ByteBuffer) throws -> GitCGIResponse {
        let bytes = output.readableBytesView
        var lineStart = bytes.startIndex
        var index = bytes.startIndex
        var headerLines: [String] = []
        var bodyStart: Int?
        while index < bytes.endIndex {
            if bytes[index] == UInt8(ascii: "\n") {
                var lineEnd = index
                if lineEnd > lineStart && bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
                if lineEnd == lineStart {
                    bodyStart = index + 1
                    break
                }
                headerLines.append(String(decoding: bytes[lineStart..<lineEnd], as: UTF8.self))
                lineStart = index + 1
            }
            index += 1
        }
        guard let bodyStart else {
            throw GitHTTPServerError.malformedCGIResponse("no end of CGI headers in \(bytes.count) bytes of output")
        }
        var status = 200
        var reason = ""
        var headers: [GitCGIResponse.Header] = []
        for line in headerLines {
            guard let colon = line.firstIndex(of: ":") else {
                throw GitHTTPServerError.malformedCGIResponse("bad CGI header line \(line.prefix(200).debugDescription)")
            }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name.caseInsensitiveCompare("Status") == .orderedSame {
                let parts = value.split(separator: " ", maxSplits: 1)
                guard let first = parts.first, let code = Int(first), (100...599).contains(code) else {
                    throw GitHTTPServerError.malformedCGIResponse("bad CGI Status \(value.debugDescription)")
                }
                status = code
                reason = parts.count > 1 ? String(parts[1]) : ""
            } else {
                headers.append(.init(name: name, value: value))
            }
        }
        let body = output.getSlice(at: output.readerIndex + (bodyStart - bytes.startIndex), length: bytes.endIndex - bodyStart)!
        return GitCGIResponse(status: status, reasonPhrase: reason, headers: headers, body: body)
    }

    /// `true` when `pathInfo` is absolute and has no `.`/`..` segment or NUL byte.
    /// (http-backend refuses such paths too; checking first keeps them from ever reaching it.)
    public static func isSafe(pathInfo: String) -> Bool {
        guard pathInfo.hasPrefix("/"), !pathInfo.contains("\0") else { return false }
        return !pathInfo.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == ".." || $0 == "." }
    }

    // MARK: - Hummingbird

    /// Answers a git smart-HTTP request from inside any Hummingbird router.
    ///
    /// Buffers the (already de-chunked) body up to ``Configuration/maxRequestBodySize``
    /// (`413` beyond), runs `git http-backend`, and returns its response. Never throws:
    /// failures become `400`/`500` responses and are logged. The request's own
    /// `Authorization` header is *not* passed on — authenticate before calling this.
    ///
    /// - Parameters:
    ///   - request: The incoming request; its body is consumed.
    ///   - pathInfo: The repository-relative path, e.g. `/PROJ/repo.git/info/refs`,
    ///     resolved against ``projectRoot``.
    ///   - remoteUser: The authenticated user name (becomes `REMOTE_USER`), never a secret.
    ///   - context: The request context; used for its logger and, if it conforms to
    ///     `RemoteAddressRequestContext`, the client address.
    public func respond(
        to request: Request,
        pathInfo: String,
        remoteUser: String?,
        context: some RequestContext
    ) async -> Response {
        let kind = GitRequestKind(pathInfo: pathInfo)
        let encoding = request.headers[.contentEncoding]
        let gzip = encoding.map { $0.lowercased().contains("gzip") } ?? false

        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > configuration.maxRequestBodySize {
            statistics?.record(kind, status: 413)
            return Self.plainText(.contentTooLarge, "request body exceeds \(configuration.maxRequestBodySize) bytes\n")
        }
        var body = ByteBuffer()
        do {
            for try await chunk in request.body {
                guard body.readableBytes + chunk.readableBytes <= configuration.maxRequestBodySize else {
                    statistics?.record(kind, status: 413, requestBodyBytes: body.readableBytes, gzip: gzip)
                    return Self.plainText(.contentTooLarge, "request body exceeds \(configuration.maxRequestBodySize) bytes\n")
                }
                body.writeImmutableBuffer(chunk)
            }
        } catch {
            statistics?.record(kind, status: 400, requestBodyBytes: body.readableBytes, gzip: gzip)
            return Self.plainText(.badRequest, "could not read request body\n")
        }

        let remoteAddress = (context as? any RemoteAddressRequestContext)?.remoteAddress?.ipAddress
        let cgiRequest = GitCGIRequest(
            method: request.method.rawValue,
            pathInfo: pathInfo,
            queryString: request.uri.query ?? "",
            contentType: request.headers[.contentType],
            contentEncoding: encoding,
            gitProtocol: request.headers[Self.gitProtocolField],
            body: body,
            remoteUser: remoteUser,
            remoteAddress: remoteAddress
        )
        let response: Response
        var responseBytes = 0
        do {
            let cgi = try await execute(cgiRequest)
            responseBytes = cgi.body.readableBytes
            var fields = HTTPFields()
            for header in cgi.headers {
                guard let name = HeaderField.Name(header.name),
                    name != .contentLength, name != .transferEncoding, name != .connection
                else { continue }
                fields.append(HeaderField(name: name, value: header.value))
            }
            response = Response(
                status: HTTPResponse.Status(code: cgi.status, reasonPhrase: cgi.reasonPhrase),
                headers: fields,
                body: ResponseBody(byteBuffer: cgi.body)
            )
        } catch GitHTTPServerError.invalidRepositoryPath {
            response = Self.plainText(.badRequest, "invalid repository path\n")
        } catch {
            context.logger.warning(
                "git http-backend failed",
                metadata: ["path": "\(pathInfo)", "error": "\(error)"]
            )
            response = Self.plainText(.internalServerError, "git http-backend failed\n")
        }
        statistics?.record(
            kind,
            status: response.status.code,
            requestBodyBytes: body.readableBytes,
            responseBodyBytes: responseBytes,
            gzip: gzip
        )
        context.logger.debug(
            "git request",
            metadata: [
                "method": "\(request.method)", "path": "\(pathInfo)", "status": "\(response.status.code)",
                "requestBytes": "\(body.readableBytes)", "responseBytes": "\(responseBytes)",
            ]
        )
        return response
    }

    /// A `401` that makes git clients (CLI and libgit2) retry with credentials.
    ///
    /// - Parameter realm: Shown by credential prompts; must not contain `"`.
    public static func unauthorized(realm: String) -> Response {
        var response = plainText(.unauthorized, "authentication required\n")
        response.headers[.wwwAuthenticate] = "Basic realm=\"\(realm)\""
        return response
    }

    static let gitProtocolField = HeaderField.Name("Git-Protocol")!

    static func plainText(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(
            status: status,
            headers: [.contentType: "text/plain; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text))
        )
    }
}
