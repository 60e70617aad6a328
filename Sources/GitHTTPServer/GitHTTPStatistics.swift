import Synchronization

/// The kind of git smart-HTTP request, derived from the request path.
public enum GitRequestKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// `GET …/info/refs?service=…` — ref advertisement (both services).
    case infoRefs = "info-refs"
    /// `POST …/git-upload-pack` — fetch/clone negotiation and pack download.
    case uploadPack = "git-upload-pack"
    /// `POST …/git-receive-pack` — push.
    case receivePack = "git-receive-pack"
    /// Anything else (dumb-protocol files, `HEAD`, unknown paths).
    case other

    /// Classifies a path such as `/ws/repo.git/info/refs`.
    public init(pathInfo: String) {
        if pathInfo.hasSuffix("/info/refs") {
            self = .infoRefs
        } else if pathInfo.hasSuffix("/git-upload-pack") {
            self = .uploadPack
        } else if pathInfo.hasSuffix("/git-receive-pack") {
            self = .receivePack
        } else {
            self = .other
        }
    }

    public var description: String { rawValue }
}

/// Thread-safe request counters for a git HTTP endpoint.
///
/// Tests read these to assert what actually crossed the wire: how many
/// requests of each kind were answered with which status, how many request-body
/// bytes a push sent (as received, i.e. still gzip-compressed if the client
/// compressed), and how many bodies arrived with `Content-Encoding: gzip`.
public final class GitHTTPStatistics: Sendable {
    /// An immutable copy of all counters.
    public struct Snapshot: Sendable, Equatable {
        /// Requests per kind and HTTP status code.
        public var requests: [GitRequestKind: [Int: Int]] = [:]
        /// Request-body bytes received per kind (before any gzip inflation).
        public var requestBodyBytes: [GitRequestKind: Int] = [:]
        /// Response-body bytes sent per kind (e.g. the pack a clone or fetch downloaded).
        public var responseBodyBytes: [GitRequestKind: Int] = [:]
        /// Requests per kind whose body had `Content-Encoding: gzip`.
        public var gzipRequests: [GitRequestKind: Int] = [:]

        /// Number of requests of `kind` (any kind when `nil`) answered with `status` (any when `nil`).
        public func requestCount(_ kind: GitRequestKind? = nil, status: Int? = nil) -> Int {
            requests
                .filter { kind == nil || $0.key == kind }
                .flatMap { $0.value }
                .filter { status == nil || $0.key == status }
                .reduce(0) { $0 + $1.value }
        }
    }

    private let state = Mutex(Snapshot())

    /// Creates empty counters.
    public init() {}

    /// Records one answered request.
    ///
    /// - Parameters:
    ///   - kind: What the request was.
    ///   - status: The HTTP status code sent back.
    ///   - requestBodyBytes: Body bytes read from the client (0 if the body was not read).
    ///   - responseBodyBytes: Body bytes of the response.
    ///   - gzip: Whether the body carried `Content-Encoding: gzip`.
    public func record(
        _ kind: GitRequestKind,
        status: Int,
        requestBodyBytes: Int = 0,
        responseBodyBytes: Int = 0,
        gzip: Bool = false
    ) {
        state.withLock { state in
            state.requests[kind, default: [:]][status, default: 0] += 1
            state.requestBodyBytes[kind, default: 0] += requestBodyBytes
            state.responseBodyBytes[kind, default: 0] += responseBodyBytes
            if gzip { state.gzipRequests[kind, default: 0] += 1 }
        }
    }

    /// A consistent copy of all counters.
    public var snapshot: Snapshot { state.withLock { $0 } }

    /// Number of requests of `kind` (any kind when `nil`) answered with `status` (any when `nil`).
    public func requestCount(_ kind: GitRequestKind? = nil, status: Int? = nil) -> Int {
        snapshot.requestCount(kind, status: status)
    }

    /// Request-body bytes received for `kind`, as sent by the client (compressed if it compressed).
    public func requestBodyBytes(_ kind: GitRequestKind) -> Int {
        state.withLock { $0.requestBodyBytes[kind, default: 0] }
    }

    /// Response-body bytes sent for `kind` (for `.uploadPack`: the packs clients downloaded).
    public func responseBodyBytes(_ kind: GitRequestKind) -> Int {
        state.withLock { $0.responseBodyBytes[kind, default: 0] }
    }

    /// Number of `kind` requests whose body was gzip-encoded.
    public func gzipRequestCount(_ kind: GitRequestKind) -> Int {
        state.withLock { $0.gzipRequests[kind, default: 0] }
    }

    /// Sets every counter back to zero.
    public func reset() {
        state.withLock { $0 = Snapshot() }
    }
}
