import Foundation

/// Paths of the package under test, computed from this file's location.
enum TestPaths {
    /// The package root (…/Tests/PushBridgeServerTests/TestPaths.swift → …).
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A fresh private temporary directory; the caller removes it.
    static func makeTemporaryDirectory(_ label: String = "pbtest") throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(label)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.resolvingSymlinksInPath()
    }
}
