import CLibGit2

/// Process-wide libgit2 state: one-time initialisation, version, features and the few
/// settings libgit2 only offers process-wide.
///
/// Every GitKit entry point calls ``initialize()`` itself, so callers never have to.
/// libgit2 is never shut down: its global state lives as long as the process.
public enum LibGit2 {
    /// A libgit2 version triple.
    public struct Version: Sendable, Hashable, CustomStringConvertible {
        public var major: Int
        public var minor: Int
        public var revision: Int
        public var description: String { "\(major).\(minor).\(revision)" }
    }

    /// Compile-time features of the linked libgit2.
    public struct Features: OptionSet, Sendable, Hashable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// Built thread-safe (required: GitKit drives several repositories from several threads).
        public static let threads = Features(rawValue: Int32(GIT_FEATURE_THREADS.rawValue))
        /// HTTPS transport available.
        public static let https = Features(rawValue: Int32(GIT_FEATURE_HTTPS.rawValue))
        /// SSH transport available.
        public static let ssh = Features(rawValue: Int32(GIT_FEATURE_SSH.rawValue))
        /// Nanosecond file timestamps.
        public static let nanosecondTimestamps = Features(rawValue: Int32(GIT_FEATURE_NSEC.rawValue))
    }

    /// Size limit above which parsed trees are not kept in libgit2's object cache.
    ///
    /// libgit2 only caches trees up to 4 KiB by default; directories of generated code are
    /// often bigger, and re-parsing them on every job would make cost follow repository size.
    static let treeCacheLimit = 1 << 20

    /// `swift_once`-backed (atomic, lazy): runs exactly once per process.
    private static let runtime: Void = {
        let count = git_libgit2_init()
        precondition(count > 0, "git_libgit2_init failed")
        _ = pushbridge_git_set_cache_object_limit(GIT_OBJECT_TREE, treeCacheLimit)
        _ = pushbridge_git_set_user_agent("pushbridge-gitkit")
    }()

    /// Initialises libgit2 for this process (idempotent, thread-safe).
    public static func initialize() {
        _ = runtime
    }

    /// The version of the linked libgit2.
    public static var version: Version {
        initialize()
        var major: Int32 = 0
        var minor: Int32 = 0
        var revision: Int32 = 0
        git_libgit2_version(&major, &minor, &revision)
        return Version(major: Int(major), minor: Int(minor), revision: Int(revision))
    }

    /// The features compiled into the linked libgit2.
    public static var features: Features {
        initialize()
        return Features(rawValue: git_libgit2_features())
    }

    /// Sets the trust anchors libgit2 uses to verify HTTPS servers.
    ///
    /// - Important: this setting is **process-global** in libgit2
    ///   (`GIT_OPT_SET_SSL_CERT_LOCATIONS`): it applies to every repository and every remote in
    ///   the process, so call it once at start-up from configuration (`PUSHBRIDGE_CA_BUNDLE`).
    ///   With the mbedTLS backend used by Debian's libgit2, the given locations *replace* the
    ///   default store, so a bundle meant as "extra" anchors must also contain the system roots
    ///   (concatenate `/etc/ssl/certs/ca-certificates.crt` and the extra PEM file).
    /// - Parameters:
    ///   - file: a PEM bundle, or `nil`.
    ///   - directory: a directory of hashed certificates, or `nil`.
    /// - Throws: ``GitError`` `invalid_argument` when both are `nil`, `certificate` when libgit2
    ///   cannot load them.
    public static func setTrustedCertificates(file: String?, directory: String?) throws(GitError) {
        initialize()
        guard file != nil || directory != nil else {
            throw GitError(code: .invalidArgument, message: "a CA bundle file or directory is required")
        }
        git_error_clear()
        let rc = pushbridge_git_set_ssl_cert_locations(file, directory)
        if rc < 0 {
            let detail = LibGit2Failure.current(rc)
            throw GitError(
                code: .certificate,
                message: "cannot load trust anchors: \(detail.message)",
                libgit2: detail)
        }
    }

    /// Memory currently held by libgit2's object cache and the allowed maximum, in bytes.
    public static var cachedMemory: (current: Int, allowed: Int) {
        initialize()
        var current = 0
        var allowed = 0
        _ = pushbridge_git_get_cached_memory(&current, &allowed)
        return (current, allowed)
    }
}
