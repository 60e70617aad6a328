import Foundation

@main struct Bench {
    static func main() async throws {
        let root = URL(fileURLWithPath: "/tmp/benchtry/cold")
        try? FileManager.default.removeItem(at: root)
        let app = SyntheticApp(seed: 42, fileCount: 2_000)
        try app.write(to: root)
        print(app.totalBytes)
    }
}
