import Foundation
import GitHTTPServer
import Testing

@testable import PushBridgeServer

/// Property-based conformance of the running daemon to its own OpenAPI document.
@Suite("Schemathesis against the running daemon")
struct SchemathesisTests {
    /// `schemathesis` from PATH (or pyenv's shims), if installed.
    static let executable: URL? = {
        var directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        directories.append(NSHomeDirectory() + "/.pyenv/shims")
        for directory in directories {
            let candidate = URL(fileURLWithPath: directory).appendingPathComponent("schemathesis")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return nil
    }()

    static let tokenVariable = "PUSHBRIDGE_SCHEMATHESIS_TOKEN"

    /// The bearer token reaches schemathesis through an environment variable that the config file
    /// names (`${…}`), never through its command line (visible in `ps`).
    ///
    /// `authorize` for Data Center / Server calls the `baseUrl` it is given (the OAuth 1.0a request
    /// token, the PKCE redirect), so that one parameter is pinned to the emulator: a generated
    /// `https://0.com` makes the daemon answer 502 (upstream unreachable), which is right for the
    /// product but is exactly what `not_a_server_error` flags.
    static func config(dataCenterURL: String) -> String {
        """
        headers = { Authorization = "Bearer ${\(tokenVariable)}" }
        seed = 20261125
        workers = 1
        continue-on-failure = true

        [generation]
        max-examples = 12

        [phases.examples]
        enabled = true
        [phases.coverage]
        enabled = true
        [phases.fuzzing]
        enabled = true
        [phases.stateful]
        enabled = false

        [checks]
        enabled = false
        not_a_server_error.enabled = true
        status_code_conformance.enabled = true
        content_type_conformance.enabled = true
        response_schema_conformance.enabled = true

        [[operations]]
        include-path = "/v1/oauth/{provider}/authorize"
        parameters = { baseUrl = "\(dataCenterURL)" }
        """
    }

    @Test(
        "no 5xx, and status codes, content types and bodies conform to openapi.json",
        .enabled(if: executable != nil, "schemathesis is not installed (scripts/setup.sh --test installs it)"))
    func conformance() async throws {
        let executable = try #require(Self.executable)
        try await DaemonHarness.with { h in
            try await h.registerConnection("acme", .bitbucketCloud)
            let configFile = h.directory.appending("schemathesis.toml")
            try Data(Self.config(dataCenterURL: h.emulator.endpoints.dataCenter.absoluteString).utf8).write(to: configFile)
            var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PUSHBRIDGE_") }
            environment[Self.tokenVariable] = DaemonHarness.apiToken
            environment["NO_COLOR"] = "1"
            environment["SCHEMATHESIS_HOOKS"] = nil
            let arguments = [
                "--config-file", configFile.path, "run", "\(h.baseURL)/openapi.json", "--url", h.baseURL,
                "--report", "junit", "--report-dir", h.directory.appending("schemathesis-report").path,
            ]
            #expect(!arguments.joined(separator: " ").contains(DaemonHarness.apiToken))
            let childEnvironment = environment
            let result = try await withDeadline(.seconds(180), "schemathesis") {
                try await ChildProcess.run(
                    executable: executable, arguments: arguments, environment: childEnvironment,
                    currentDirectory: h.directory.url)
            }
            let output = result.standardOutputString
            // The closing block ("API Operations: … Test cases: … N passed in Xs") as one line.
            let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            let summary = lines.drop { !$0.hasPrefix("API Operations") }.filter { !$0.isEmpty && !$0.hasPrefix("=====") }
            print("schemathesis summary: \(summary.joined(separator: " "))")
            #expect(result.succeeded, "schemathesis found failures:\n\(output)\n\(result.standardErrorString)")
            #expect(!output.contains(DaemonHarness.apiToken))
            h.expectNoSecretsLeaked()
        }
    }
}
