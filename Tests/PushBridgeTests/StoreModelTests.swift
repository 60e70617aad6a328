import Foundation
import PushBridge
import Testing

@Suite struct StoreModelTests {
    static let designExample = """
        {
          "connection": "acme-cloud",
          "repository": {"slug": "billing-service", "create": true, "private": true, "project": "PROJ"},
          "source": {"directory": "/var/lib/pushbridge/builds/123"},
          "root": "", "mode": "overlay", "preserve": ["README.md"],
          "branch": "pushbridge/billing-service", "baseBranch": "main",
          "commit": {"message": "Generated build 123", "author": {"name": "Bot", "email": "bot@example.com"}},
          "pullRequest": {"title": "Build 123", "description": "…", "draft": false}
        }
        """

    @Test func decodesTheDesignExample() throws {
        let spec = try JSONDecoder().decode(JobSpec.self, from: Data(Self.designExample.utf8))
        #expect(spec.connection == "acme-cloud")
        #expect(spec.repository == .init(slug: "billing-service", create: true, private: true, project: "PROJ"))
        #expect(spec.source == .directory("/var/lib/pushbridge/builds/123"))
        #expect(spec.mode == .overlay)
        #expect(spec.preserve == ["README.md"])
        #expect(spec.branch == "pushbridge/billing-service")
        #expect(spec.baseBranch == "main")
        #expect(spec.commit.author == .init(name: "Bot", email: "bot@example.com"))
        #expect(spec.pullRequest?.title == "Build 123")
        #expect(spec.pullRequest?.draft == false)
        let again = try JSONDecoder().decode(JobSpec.self, from: try spec.canonicalJSON())
        #expect(again == spec)
    }

    @Test func defaultsMakeEquivalentBodiesHashEqual() throws {
        let minimal = """
            {"connection":"c","repository":{"slug":"r"},"source":{"archive":"arc1"},
             "branch":"b","commit":{"message":"m"}}
            """
        let explicit = """
            {"branch":"b","commit":{"message":"m"},"connection":"c","mode":"overlay","preserve":[],"root":"",
             "repository":{"slug":"r","create":false,"private":true},"source":{"archive":"arc1"}}
            """
        let a = try JSONDecoder().decode(JobSpec.self, from: Data(minimal.utf8))
        let b = try JSONDecoder().decode(JobSpec.self, from: Data(explicit.utf8))
        #expect(a == b)
        #expect(try a.canonicalHash() == b.canonicalHash())
        #expect(a.pullRequest == nil)
        var c = a
        c.mode = .sync
        #expect(try c.canonicalHash() != a.canonicalHash())
    }

    @Test func sourceNeedsExactlyOneKind() {
        for bad in [#"{"directory":"/a","archive":"x"}"#, "{}"] {
            #expect(throws: DecodingError.self) { try JSONDecoder().decode(JobSpec.Source.self, from: Data(bad.utf8)) }
        }
    }
}
