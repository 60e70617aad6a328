import Foundation

/// A fresh directory under the system temporary directory, removed with
/// everything in it when the last reference goes away.
public final class TemporaryDirectory: Sendable {
    /// The directory (already created).
    public let url: URL

    /// Creates `<tmp>/<prefix>-<uuid>/`.
    public init(prefix: String = "pushbridge-test") throws {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        // Resolve symlinks (macOS /var → /private/var) so paths compare equal to what git prints.
        self.url = url.resolvingSymlinksInPath()
    }

    /// `url/relativePath`.
    public func appending(_ relativePath: String) -> URL {
        url.appendingPathComponent(relativePath)
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }
}

/// Runs `body` with a fresh temporary directory that is removed afterwards.
public func withTemporaryDirectory<T>(
    prefix: String = "pushbridge-test",
    _ body: (URL) async throws -> T
) async throws -> T {
    let directory = try TemporaryDirectory(prefix: prefix)
    let result = try await body(directory.url)
    // Keeps `directory` alive until `body` is done, then removes it.
    withExtendedLifetime(directory) {}
    return result
}
