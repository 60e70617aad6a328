import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import OpenAPIKit30
import Testing

@testable import PushBridgeServer

@Suite("OpenAPI document")
struct OpenAPITests {
    private var specFile: URL { TestPaths.packageRoot.appendingPathComponent("openapi/pushbridge.json") }

    @Test("the embedded document is byte-identical to openapi/pushbridge.json (run scripts/embed-openapi.sh)")
    func embeddedMatchesFile() throws {
        let file = try String(contentsOf: specFile, encoding: .utf8)
        #expect(OpenAPIDocument.jsonText == file)
    }

    @Test("the document is valid OpenAPI 3.0")
    func validates() throws {
        let document = try JSONDecoder().decode(OpenAPI.Document.self, from: Data(contentsOf: specFile))
        try document.validate()
        #expect(document.openAPIVersion.rawValue.hasPrefix("3.0"))
    }

    @Test("every route of the router is documented, and every documented operation is routed")
    func routesAgree() async throws {
        let harness = try await APITestHarness.make()
        defer { try? FileManager.default.removeItem(at: harness.directory) }
        // The production route extensions (OAuth flows, …) are part of the API as `serve` runs it.
        let bitbucket = try BitbucketServices(
            configuration: harness.configuration, store: harness.store, logger: Logger(label: "openapi-test"))
        let context = DaemonContext(
            configuration: harness.configuration, store: harness.store, archives: harness.api.archives,
            bitbucket: bitbucket, logger: Logger(label: "openapi-test"))
        let api = PushBridgeAPI(
            configuration: harness.configuration, store: harness.store, archives: harness.api.archives,
            registry: harness.api.registry, extensions: try PushBridgeDaemon.productionRoutes(context))
        let router = api.buildRouter()
        try? await bitbucket.shutdown()
        try? await harness.store.close()

        // ":id" (router) and "{id}" (OpenAPI) are the same parameter.
        func normalize(_ path: String) -> String {
            path.split(separator: "/", omittingEmptySubsequences: false).map { segment in
                segment.hasPrefix(":") || (segment.hasPrefix("{") && segment.hasSuffix("}")) ? "{}" : String(segment)
            }.joined(separator: "/")
        }
        let routed = Set(router.routes.map { "\($0.method.rawValue) \(normalize("/" + $0.path.description.trimmingCharacters(in: ["/"])))" })

        let document = try JSONDecoder().decode(OpenAPI.Document.self, from: Data(contentsOf: specFile))
        var documented: Set<String> = []
        for (path, item) in document.paths {
            guard let pathItem = item.pathItemValue else { continue }
            for endpoint in pathItem.endpoints {
                documented.insert("\(endpoint.method.rawValue.uppercased()) \(normalize(path.rawValue))")
            }
        }
        #expect(routed == documented, "only routed: \(routed.subtracting(documented)); only documented: \(documented.subtracting(routed))")
    }

    @Test("served as JSON and as YAML that parses to the same document")
    func served() async throws {
        let harness = try await APITestHarness.make()
        let yamlFile = harness.directory.appendingPathComponent("served.yaml")
        try await harness.test { client in
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.text == OpenAPIDocument.jsonText)
            }
            try await client.execute(uri: "/openapi.yaml", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("application/yaml") == true)
                #expect(!response.text.hasPrefix("{"))  // real block YAML, not JSON passed through
                try response.text.write(to: yamlFile, atomically: true, encoding: .utf8)
                let script = "import json,sys,yaml; a=yaml.safe_load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(0 if a==b else 1)"
                let check = try ProcessRunner.run("python3", ["-c", script, yamlFile.path, specFile.path])
                #expect(check.status == 0, "YAML differs from JSON: \(check.stderr)")
            }
        }
    }

    @Test("YAML scalars are quoted so that nothing is reinterpreted")
    func yamlScalars() {
        #expect(YAMLWriter.quoted("yes") == "\"yes\"")
        #expect(YAMLWriter.quoted("a\"b\\c\nd") == #""a\"b\\c\nd""#)
        #expect(YAMLWriter.document(.object(["k": .array([.integer(1), .bool(false), .null, .object([:])])]))
            == "\"k\":\n  - 1\n  - false\n  - null\n  - {}\n")
    }
}
