import CLibGit2
import Synchronization

/// The error type of every GitKit operation.
///
/// ``code`` is a stable machine-readable string callers switch on (and put in API responses);
/// ``message`` is for humans. Messages never contain secrets: every message passes through
/// ``SecretRedactor`` (registered secrets and the secrets of the operation's
/// ``GitCredentials`` become `***`, and `user:password@` userinfo is removed from URLs).
public struct GitError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable error code.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }

        /// The remote rejected or did not receive acceptable credentials (HTTP 401, or the
        /// credential attempts were exhausted).
        public static let authFailed: Code = "auth_failed"
        /// Authenticated, but the remote refused access (HTTP 403).
        public static let permissionDenied: Code = "permission_denied"
        /// The remote branch is not at the expected tip, or the new commit does not descend from it.
        public static let nonFastForward: Code = "non_fast_forward"
        /// The remote refused the reference update for another reason (hook, policy, unpack error).
        public static let pushRejected: Code = "push_rejected"
        /// A repository, object or reference does not exist (HTTP 404 for remotes).
        public static let notFound: Code = "not_found"
        /// An input path (or symlink target) is not acceptable; ``GitError/path`` names it.
        public static let invalidPath: Code = "invalid_path"
        /// An input file exceeds the configured maximum size; ``GitError/path`` names it.
        public static let fileTooLarge: Code = "file_too_large"
        /// A directory source contains something that is neither a file, a directory nor a symlink.
        public static let unsupportedFileType: Code = "unsupported_file_type"
        /// A caller-supplied argument (branch name, URL, header, glob, signature…) is malformed.
        public static let invalidArgument: Code = "invalid_argument"
        /// Transport failure: connection, TLS, proxy, unexpected HTTP status.
        public static let network: Code = "network"
        /// The server certificate could not be verified, or trust anchors could not be loaded.
        public static let certificate: Code = "certificate"
        /// The calling task was cancelled.
        public static let cancelled: Code = "cancelled"
        /// A local file-system operation failed.
        public static let io: Code = "io"
        /// Any other libgit2 failure.
        public static let libgit2: Code = "libgit2"
    }

    /// The stable error code.
    public var code: Code
    /// A human-readable, redacted description of what failed.
    public var message: String
    /// The libgit2 return code (`git_error_code`, e.g. `-16` for `GIT_EAUTH`), when libgit2 failed.
    public var libgit2Code: Int32?
    /// The libgit2 error class (`git_error_t`, e.g. `34` for `GIT_ERROR_HTTP`), when libgit2 reported one.
    public var libgit2Class: Int32?
    /// The offending input path for path and file errors.
    public var path: String?

    public init(code: Code, message: String, path: String? = nil, libgit2Code: Int32? = nil, libgit2Class: Int32? = nil) {
        self.code = code
        self.message = SecretRedactor.shared.redact(message)
        self.path = path
        self.libgit2Code = libgit2Code
        self.libgit2Class = libgit2Class
    }

    init(code: Code, message: String, path: String? = nil, libgit2 failure: LibGit2Failure) {
        self.init(
            code: code, message: message, path: path,
            libgit2Code: failure.code, libgit2Class: failure.errorClass)
    }

    /// Whether retrying the same operation later may succeed (transport trouble, or a remote
    /// that moved and needs a re-fetch).
    public var isRetryable: Bool {
        switch code {
        case .network, .nonFastForward: true
        default: false
        }
    }

    public var description: String {
        var text = "GitError(\(code.rawValue)): \(message)"
        if let libgit2Code {
            text += " [libgit2 \(libgit2Code)"
            if let libgit2Class { text += "/class \(libgit2Class)" }
            text += "]"
        }
        return text
    }

    /// Applies extra redaction (the secrets of one operation) on top of the global one.
    func redacted(with redactor: Redactor) -> GitError {
        var copy = self
        copy.message = redactor.redact(message)
        if let path { copy.path = redactor.redact(path) }
        return copy
    }
}

/// What libgit2 said about its last failure on this thread.
struct LibGit2Failure: Sendable {
    var code: Int32
    var errorClass: Int32?
    var message: String

    /// Reads (and clears) libgit2's thread-local last error for return code `rc`.
    static func current(_ rc: Int32) -> LibGit2Failure {
        var failure = LibGit2Failure(code: rc, errorClass: nil, message: "libgit2 error \(rc)")
        if let last = git_error_last() {
            failure.errorClass = last.pointee.klass
            if let text = last.pointee.message {
                failure.message = String(cString: text)
            }
        }
        git_error_clear()
        return failure
    }

    /// The stable code for this libgit2 failure.
    var mappedCode: GitError.Code {
        switch code {
        case GIT_EAUTH.rawValue: return .authFailed
        case GIT_ECERTIFICATE.rawValue: return .certificate
        case GIT_ENONFASTFORWARD.rawValue: return .nonFastForward
        case GIT_ENOTFOUND.rawValue: return .notFound
        case GIT_EINVALIDSPEC.rawValue: return .invalidArgument
        default: break
        }
        let transportClasses: Set<Int32> = [
            Int32(GIT_ERROR_NET.rawValue), Int32(GIT_ERROR_HTTP.rawValue),
            Int32(GIT_ERROR_SSL.rawValue), Int32(GIT_ERROR_SSH.rawValue),
        ]
        if let errorClass, transportClasses.contains(errorClass) {
            if message.contains("status code: 404") { return .notFound }
            if message.contains("status code: 401") || message.contains("authentication") { return .authFailed }
            if message.contains("status code: 403") { return .permissionDenied }
            if errorClass == Int32(GIT_ERROR_SSL.rawValue) && message.contains("certificate") { return .certificate }
            return .network
        }
        return .libgit2
    }
}

/// Calls a libgit2 function returning an `int`, turning a negative result into a ``GitError``.
@discardableResult
func check(_ rc: Int32, _ context: @autoclosure () -> String, path: String? = nil) throws(GitError) -> Int32 {
    if rc >= 0 { return rc }
    let failure = LibGit2Failure.current(rc)
    throw GitError(code: failure.mappedCode, message: "\(context()): \(failure.message)", path: path, libgit2: failure)
}

/// Removes secrets from text.
struct Redactor: Sendable {
    private(set) var secrets: [String]

    init(secrets: [String] = []) {
        // Longest first so a secret containing another one is removed whole.
        self.secrets = secrets.filter { $0.count >= 3 }.sorted { $0.count > $1.count }
    }

    func redact(_ text: String) -> String {
        var result = SecretRedactor.stripURLUserinfo(text)
        for secret in secrets where result.contains(secret) {
            result = result.replacing(secret, with: "***")
        }
        return result
    }
}

/// A process-wide registry of secrets that must never appear in ``GitError`` messages.
///
/// The secrets of the ``GitCredentials`` passed to an operation are redacted from that
/// operation's errors automatically; register other secrets (for example a token that may
/// appear in a URL supplied by a caller) here. Unregister secrets that are rotated away so the
/// registry does not grow without bound.
public final class SecretRedactor: Sendable {
    /// The registry consulted by every ``GitError``.
    public static let shared = SecretRedactor()

    private let secrets = Mutex<[String: Int]>([:])

    /// Registers `secret` (counted: register and unregister in pairs). Secrets shorter than
    /// three characters are ignored (they would redact ordinary words).
    public func register(_ secret: String) {
        guard secret.count >= 3 else { return }
        secrets.withLock { $0[secret, default: 0] += 1 }
    }

    /// Drops one registration of `secret`.
    public func unregister(_ secret: String) {
        secrets.withLock { table in
            guard let count = table[secret] else { return }
            if count <= 1 { table[secret] = nil } else { table[secret] = count - 1 }
        }
    }

    /// `text` with registered secrets replaced by `***` and URL userinfo removed.
    public func redact(_ text: String) -> String {
        var result = Self.stripURLUserinfo(text)
        let current = secrets.withLock { Array($0.keys) }.sorted { $0.count > $1.count }
        for secret in current where result.contains(secret) {
            result = result.replacing(secret, with: "***")
        }
        return result
    }

    /// Removes `userinfo@` from every `scheme://userinfo@host` in `text`.
    static func stripURLUserinfo(_ text: String) -> String {
        guard text.contains("://") else { return text }
        var output = ""
        output.reserveCapacity(text.utf8.count)
        var rest = Substring(text)
        while let marker = rest.range(of: "://") {
            output += rest[..<marker.upperBound]
            rest = rest[marker.upperBound...]
            // The authority ends at the first of these; userinfo is whatever precedes its last '@'.
            let end = rest.firstIndex { "/?#\"' \n\t<>".contains($0) } ?? rest.endIndex
            if let at = rest[..<end].lastIndex(of: "@") {
                rest = rest[rest.index(after: at)...]
            }
        }
        output += rest
        return output
    }
}
