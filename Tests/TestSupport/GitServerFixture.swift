import Foundation
import GitHTTPServer
import Logging

/// A running ``GitSmartHTTPServer`` over a fresh temporary root.
public struct GitServerFixture: Sendable {
    /// The server (already started).
    public let server: GitSmartHTTPServer
    /// Its base URL, e.g. `http://127.0.0.1:54321/`.
    public let baseURL: URL
    /// The root directory of served repositories (removed after the test).
    public let root: URL

    /// Creates a bare repository and returns its clone URL.
    public func makeRepository(_ relativePath: String = "ws/repo.git", defaultBranch: String = "main") async throws -> URL {
        try await server.createBareRepository(relativePath, defaultBranch: defaultBranch)
        return try await server.repositoryURL(relativePath)
    }

    /// The on-disk directory of the repository at `relativePath`.
    public func repositoryDirectory(_ relativePath: String = "ws/repo.git") -> URL {
        root.appendingPathComponent(relativePath)
    }
}

/// Starts a ``GitSmartHTTPServer`` on loopback with a fresh root, runs `body`,
/// then stops the server and removes the root — also when `body` throws.
///
/// Logging is at `warning` unless `PUSHBRIDGE_TEST_LOG_LEVEL` says otherwise.
public func withGitServer<T>(
    auth: GitHTTPAuthPolicy = .none,
    configuration: GitSmartHTTPServer.Configuration = .init(),
    _ body: (GitServerFixture) async throws -> T
) async throws -> T {
    let root = try TemporaryDirectory(prefix: "pushbridge-git-server")
    var logger = Logger(label: "test.git-server")
    logger.logLevel = ProcessInfo.processInfo.environment["PUSHBRIDGE_TEST_LOG_LEVEL"]
        .flatMap(Logger.Level.init(rawValue:)) ?? .warning
    let server = GitSmartHTTPServer(root: root.url, auth: auth, configuration: configuration, logger: logger)
    let baseURL = try await server.start()
    let fixture = GitServerFixture(server: server, baseURL: baseURL, root: root.url)
    do {
        let result = try await body(fixture)
        await server.stop()
        withExtendedLifetime(root) {}
        return result
    } catch {
        await server.stop()
        throw error
    }
}
