import CLibGit2
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How GitKit authenticates to a remote. Secrets never enter URLs, process arguments or
/// error messages (they are redacted from every ``GitError`` of the operation).
public struct GitCredentials: Sendable, CustomStringConvertible {
    enum Storage: Sendable {
        case none
        case userPassword(username: String, password: String)
        case header(name: String, value: String)
    }

    let storage: Storage

    /// No credentials: a remote asking for authentication fails with `auth_failed`.
    public static let none = GitCredentials(storage: .none)

    /// HTTP Basic user name and password (or token), supplied through libgit2's credentials
    /// callback after the server's first `401` (for example user `x-token-auth` and an OAuth
    /// access token for Bitbucket Cloud).
    public static func userPassword(username: String, password: String) -> GitCredentials {
        GitCredentials(storage: .userPassword(username: username, password: password))
    }

    /// `Authorization: Bearer <token>`, sent on every request as a custom header (the
    /// credentials callback is then never consulted; a `401` means the token was refused).
    public static func bearerToken(_ token: String) -> GitCredentials {
        GitCredentials(storage: .header(name: "Authorization", value: "Bearer \(token)"))
    }

    /// An arbitrary secret header sent on every request, such as `Authorization: Basic …`.
    public static func httpHeader(name: String, value: String) -> GitCredentials {
        GitCredentials(storage: .header(name: name, value: value))
    }

    /// Strings to redact from anything this operation reports.
    var secrets: [String] {
        switch storage {
        case .none:
            return []
        case .userPassword(let username, let password):
            let basic = Data("\(username):\(password)".utf8).base64EncodedString()
            return [password, basic]
        case .header(_, let value):
            var result = [value]
            // "Bearer abc" / "Basic abc": the credential after the scheme is the secret too.
            if let space = value.lastIndex(of: " ") {
                result.append(String(value[value.index(after: space)...]))
            }
            return result
        }
    }

    public var description: String {
        switch storage {
        case .none: "none"
        case .userPassword(let username, _): "userPassword(username: \(username), password: ***)"
        case .header(let name, _): "httpHeader(\(name): ***)"
        }
    }
}

/// Which HTTP(S) proxy git traffic uses.
public enum ProxySetting: Sendable, Hashable {
    /// Connect directly.
    case none
    /// libgit2's detection: `http.proxy` configuration and the `https_proxy`/`http_proxy`
    /// environment variables.
    case automatic
    /// This proxy (`http://host:port`); credentials for the proxy may be given as URL userinfo
    /// and are redacted from errors.
    ///
    /// - Note: libgit2 1.5.1 tunnels only `https` remotes through the proxy (`CONNECT`); for
    ///   plain `http` remotes it formats proxy requests but connects to the origin directly.
    case url(String)
}

/// Whether libgit2 follows HTTP redirects.
public enum RedirectPolicy: Sendable, Hashable {
    /// Never (default: a redirect to another host would carry the authorization header).
    case none
    /// Only on the initial reference-discovery request, like git.
    case initial
    /// Always.
    case all
}

/// Per-operation transport settings.
public struct TransportOptions: Sendable {
    public var credentials: GitCredentials
    public var proxy: ProxySetting
    /// Extra non-secret request headers (name → value). Secret headers belong in ``credentials``.
    public var extraHeaders: [String: String]
    /// How many times credentials are offered to a server answering `401`; after that the
    /// operation fails with `auth_failed` (libgit2 would otherwise ask again forever).
    public var maxAuthAttempts: Int
    public var redirects: RedirectPolicy
    /// Threads libgit2 uses to build packs to push; `0` means one per CPU.
    public var packBuilderThreads: Int

    public init(
        credentials: GitCredentials = .none,
        proxy: ProxySetting = .none,
        extraHeaders: [String: String] = [:],
        maxAuthAttempts: Int = 1,
        redirects: RedirectPolicy = .none,
        packBuilderThreads: Int = 0
    ) {
        self.credentials = credentials
        self.proxy = proxy
        self.extraHeaders = extraHeaders
        self.maxAuthAttempts = maxAuthAttempts
        self.redirects = redirects
        self.packBuilderThreads = packBuilderThreads
    }
}

/// Mutable state shared with libgit2's C callbacks through their `payload` pointer.
final class TransferState {
    let credentials: GitCredentials
    let maxAuthAttempts: Int
    var authAttempts = 0
    var authRefused = false
    var cancelled = false
    var indexer = git_indexer_progress()
    var pushObjects = 0
    var pushBytes = 0
    var rejections: [(reference: String, status: String)] = []
    var remoteMessages = ""

    init(credentials: GitCredentials, maxAuthAttempts: Int) {
        self.credentials = credentials
        self.maxAuthAttempts = max(1, maxAuthAttempts)
    }

    /// Called by libgit2 after each `401`.
    func acquire(_ out: UnsafeMutablePointer<UnsafeMutablePointer<git_credential>?>, allowed: UInt32) -> Int32 {
        authAttempts += 1
        func refuse(_ message: String) -> Int32 {
            authRefused = true
            // Without this, git_error_last() would report a stale, unrelated message.
            git_error_set_str(Int32(GIT_ERROR_HTTP.rawValue), message)
            return GIT_EAUTH.rawValue
        }
        switch credentials.storage {
        case .none:
            return refuse("authentication required but no credentials were configured")
        case .header(let name, _):
            return refuse("authentication failed: the remote refused the \(name) header")
        case .userPassword(let username, let password):
            guard authAttempts <= maxAuthAttempts else {
                return refuse("authentication failed: the remote refused the credentials for user '\(username)'")
            }
            guard allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT.rawValue != 0 else {
                return refuse("authentication failed: the remote does not accept user/password credentials")
            }
            return git_credential_userpass_plaintext_new(out, username, password)
        }
    }

    /// Whether to abort the transfer (the calling task was cancelled).
    func shouldAbort() -> Bool {
        if Task.isCancelled {
            cancelled = true
            return true
        }
        return false
    }

    func appendRemoteMessage(_ text: String) {
        guard remoteMessages.utf8.count < 4096 else { return }
        remoteMessages += text
    }
}

/// The libgit2 option structures of one network operation, with the C strings and payload
/// they point to kept alive as long as this object.
final class TransportSession {
    let state: TransferState
    let redactor: Redactor
    private let headers: CStringArray
    private let proxyURL: UnsafeMutablePointer<CChar>?
    private let proxyType: git_proxy_t
    private let redirect: git_remote_redirect_t
    private let threads: UInt32

    init(options: TransportOptions) throws(GitError) {
        var lines: [String] = []
        var secrets = options.credentials.secrets
        for (name, value) in options.extraHeaders.sorted(by: { $0.key < $1.key }) {
            try Self.validateHeader(name: name, value: value, secret: false)
            lines.append("\(name): \(value)")
        }
        if case .header(let name, let value) = options.credentials.storage {
            try Self.validateHeader(name: name, value: value, secret: true)
            lines.append("\(name): \(value)")
        }
        switch options.proxy {
        case .none:
            proxyType = GIT_PROXY_NONE
            proxyURL = nil
        case .automatic:
            proxyType = GIT_PROXY_AUTO
            proxyURL = nil
        case .url(let url):
            guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                throw GitError(code: .invalidArgument, message: "proxy URL must be http:// or https://: \(url)")
            }
            if let userinfo = RemoteURL.userinfo(of: url) {
                secrets.append(userinfo)
                if let colon = userinfo.firstIndex(of: ":") { secrets.append(String(userinfo[userinfo.index(after: colon)...])) }
            }
            proxyType = GIT_PROXY_SPECIFIED
            proxyURL = strdup(url)
        }
        switch options.redirects {
        case .none: redirect = GIT_REMOTE_REDIRECT_NONE
        case .initial: redirect = GIT_REMOTE_REDIRECT_INITIAL
        case .all: redirect = GIT_REMOTE_REDIRECT_ALL
        }
        threads = UInt32(max(0, options.packBuilderThreads))
        headers = CStringArray(lines)
        redactor = Redactor(secrets: secrets)
        state = TransferState(credentials: options.credentials, maxAuthAttempts: options.maxAuthAttempts)
    }

    deinit { free(proxyURL) }

    private static func validateHeader(name: String, value: String, secret: Bool) throws(GitError) {
        let tokenCharacters = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        guard !name.isEmpty, name.allSatisfy({ tokenCharacters.contains($0) }) else {
            throw GitError(code: .invalidArgument, message: "invalid HTTP header name")
        }
        guard !value.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
            // Never echo a secret header's value.
            throw GitError(code: .invalidArgument, message: "HTTP header \(name) has an invalid value\(secret ? "" : ": \(value)")")
        }
    }

    var payload: UnsafeMutableRawPointer { Unmanaged.passUnretained(state).toOpaque() }

    var callbacks: git_remote_callbacks {
        var callbacks = git_remote_callbacks()
        git_remote_init_callbacks(&callbacks, UInt32(GIT_REMOTE_CALLBACKS_VERSION))
        callbacks.payload = payload
        callbacks.credentials = { out, _, _, allowed, payload in
            guard let out, let payload else { return -1 }
            return Unmanaged<TransferState>.fromOpaque(payload).takeUnretainedValue().acquire(out, allowed: allowed)
        }
        callbacks.transfer_progress = { stats, payload in
            guard let payload else { return 0 }
            let state = Unmanaged<TransferState>.fromOpaque(payload).takeUnretainedValue()
            if let stats { state.indexer = stats.pointee }
            return state.shouldAbort() ? -1 : 0
        }
        callbacks.sideband_progress = { text, length, payload in
            guard let payload else { return 0 }
            let state = Unmanaged<TransferState>.fromOpaque(payload).takeUnretainedValue()
            if let text, length > 0 {
                let bytes = UnsafeRawBufferPointer(start: text, count: Int(length))
                state.appendRemoteMessage(String(decoding: bytes, as: UTF8.self))
            }
            return state.shouldAbort() ? -1 : 0
        }
        callbacks.pack_progress = { _, _, _, payload in
            guard let payload else { return 0 }
            return Unmanaged<TransferState>.fromOpaque(payload).takeUnretainedValue().shouldAbort() ? -1 : 0
        }
        callbacks.push_transfer_progress = { _, total, bytes, payload in
            guard let payload else { return 0 }
            let state = Unmanaged<TransferState>.fromOpaque(payload).takeUnretainedValue()
            state.pushObjects = Int(total)
            state.pushBytes = bytes
            return state.shouldAbort() ? -1 : 0
        }
        callbacks.push_update_reference = { reference, status, payload in
            // git_remote_push/upload may return 0 although the server rejected the update:
            // the rejection only arrives here, as a non-NULL status.
            guard let payload, let status else { return 0 }
            let state = Unmanaged<TransferState>.fromOpaque(payload).takeUnretainedValue()
            state.rejections.append((reference.map { String(cString: $0) } ?? "", String(cString: status)))
            return 0
        }
        return callbacks
    }

    var proxyOptions: git_proxy_options {
        var proxy = git_proxy_options()
        git_proxy_options_init(&proxy, UInt32(GIT_PROXY_OPTIONS_VERSION))
        proxy.type = proxyType
        proxy.url = UnsafePointer(proxyURL)
        return proxy
    }

    var customHeaders: git_strarray { headers.strarray }

    var fetchOptions: git_fetch_options {
        var options = git_fetch_options()
        git_fetch_options_init(&options, UInt32(GIT_FETCH_OPTIONS_VERSION))
        options.callbacks = callbacks
        options.proxy_opts = proxyOptions
        options.custom_headers = customHeaders
        options.follow_redirects = redirect
        options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE
        options.update_fetchhead = 0
        options.prune = GIT_FETCH_NO_PRUNE
        return options
    }

    var pushOptions: git_push_options {
        var options = git_push_options()
        git_push_options_init(&options, UInt32(GIT_PUSH_OPTIONS_VERSION))
        options.callbacks = callbacks
        options.proxy_opts = proxyOptions
        options.custom_headers = customHeaders
        options.follow_redirects = redirect
        options.pb_parallelism = threads
        return options
    }

    var connectOptions: git_remote_connect_options {
        var options = git_remote_connect_options()
        git_remote_connect_options_init(&options, UInt32(GIT_REMOTE_CONNECT_OPTIONS_VERSION))
        options.callbacks = callbacks
        options.proxy_opts = proxyOptions
        options.custom_headers = customHeaders
        options.follow_redirects = redirect
        return options
    }

    /// The ``GitError`` for a failed libgit2 network call, with this operation's secrets redacted.
    func failure(_ rc: Int32, _ context: String) -> GitError {
        let failure = LibGit2Failure.current(rc)
        var code = failure.mappedCode
        if state.cancelled {
            code = .cancelled
        } else if state.authRefused || rc == GIT_EAUTH.rawValue {
            code = .authFailed
        }
        var message = "\(context): \(failure.message)"
        let remote = state.remoteMessages.trimmingCharacters(in: .whitespacesAndNewlines)
        if !remote.isEmpty { message += " (remote said: \(remote))" }
        return GitError(code: code, message: message, libgit2: failure).redacted(with: redactor)
    }
}

/// A connected (or connectable) anonymous remote.
final class Remote {
    let pointer: OpaquePointer

    init(repository: Repository, url: String) throws(GitError) {
        var remote: OpaquePointer?
        try check(git_remote_create_anonymous(&remote, repository.pointer, url), "remote")
        pointer = remote!
    }

    deinit { git_remote_free(pointer) }

    func connect(_ direction: git_direction, session: TransportSession, context: String) throws(GitError) {
        var options = session.connectOptions
        let rc = withExtendedLifetime(session) { git_remote_connect_ext(pointer, direction, &options) }
        if rc < 0 { throw session.failure(rc, context) }
    }

    struct Advertisement {
        var references: [String: ObjectID] = [:]
        var headTarget: String?

        /// The branch `HEAD` points to (upload-pack advertises it; receive-pack does not).
        var defaultBranch: String? {
            headTarget.flatMap { $0.hasPrefix("refs/heads/") ? String($0.dropFirst("refs/heads/".count)) : nil }
        }
    }

    func advertisement(session: TransportSession) throws(GitError) -> Advertisement {
        var heads: UnsafeMutablePointer<UnsafePointer<git_remote_head>?>?
        var count = 0
        let rc = git_remote_ls(&heads, &count, pointer)
        if rc < 0 { throw session.failure(rc, "list remote references") }
        var result = Advertisement()
        for index in 0..<count {
            guard let head = heads?[index] else { continue }
            let name = String(cString: head.pointee.name)
            if name == "HEAD", let target = head.pointee.symref_target {
                result.headTarget = String(cString: target)
            }
            var oid = head.pointee.oid
            // An empty repository advertises its capabilities on a zero-id pseudo reference.
            if git_oid_is_zero(&oid) != 0 || name == "capabilities^{}" { continue }
            result.references[name] = ObjectID(oid)
        }
        return result
    }
}

/// URL checks and the cache key of a remote.
enum RemoteURL {
    /// The `userinfo` part of `scheme://userinfo@host/…`, if any.
    static func userinfo(of url: String) -> String? {
        guard let marker = url.range(of: "://") else { return nil }
        let rest = url[marker.upperBound...]
        let end = rest.firstIndex { "/?#".contains($0) } ?? rest.endIndex
        guard let at = rest[..<end].lastIndex(of: "@") else { return nil }
        return String(rest[..<at])
    }

    /// Accepts `http`, `https` and `file` URLs; refuses a password in the URL (secrets never
    /// live in URLs) without echoing it.
    static func validate(_ url: String) throws(GitError) {
        let lower = url.lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://") || lower.hasPrefix("file://") else {
            throw GitError(code: .invalidArgument, message: "unsupported remote URL (http, https or file expected): \(url)")
        }
        guard !url.contains(where: { $0 == "\0" || $0 == "\n" || $0 == "\r" || $0 == " " }) else {
            throw GitError(code: .invalidArgument, message: "remote URL contains invalid characters")
        }
        if let userinfo = userinfo(of: url), userinfo.contains(":") {
            throw GitError(
                code: .invalidArgument,
                message: "remote URL must not contain a password; pass credentials separately: \(SecretRedactor.stripURLUserinfo(url))")
        }
    }
}
