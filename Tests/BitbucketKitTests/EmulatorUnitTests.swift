import Foundation
import Testing

@testable import BitbucketEmulator

@Suite("Emulator internals: RFC 5849 base string, BBQL, globs, routes")
struct EmulatorUnitTests {
    /// RFC 5849 §3.4.1.1: the request and its exact signature base string.
    @Test func rfc5849BaseStringExample() throws {
        let header = """
            OAuth realm="Example", oauth_consumer_key="9djdj82h48djs9d2", oauth_token="kkk9d7dh3k39sjv7", \
            oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131201", oauth_nonce="7d8f3e4a", \
            oauth_signature="bYT5CMsGcbgUdFHObYMEfcx6bsw%3D"
            """
        let oauth = try #require(OAuth1BaseString.parseAuthorizationHeader(header))
        #expect(oauth.first { $0.0 == "oauth_signature" }?.1 == "bYT5CMsGcbgUdFHObYMEfcx6bsw=")
        let params = oauth + FormCoding.decode("b5=%3D%253D&a3=a&c%40=&a2=r%20b") + FormCoding.decode("c2&a3=2+q")
        let base = OAuth1BaseString.make(
            method: "post", scheme: "HTTP", host: "Example.com:80", path: "/request", parameters: params)
        #expect(
            base
                == "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
        )
    }

    @Test func percentEncodingFollowsRFC5849() {
        #expect(FormCoding.percentEncode("Ladies + Gentlemen") == "Ladies%20%2B%20Gentlemen")
        #expect(FormCoding.percentEncode("An encoded string!") == "An%20encoded%20string%21")
        #expect(FormCoding.percentEncode("Dogs, Cats & Mice") == "Dogs%2C%20Cats%20%26%20Mice")
        #expect(FormCoding.percentEncode("☃") == "%E2%98%83")
        #expect(FormCoding.percentEncode("-._~") == "-._~")
    }

    @Test func bbqlEvaluatesTheSupportedSubset() throws {
        let pr: JSONValue = [
            "id": 7, "state": "OPEN", "title": "Generated Build",
            "source": ["branch": ["name": "pushbridge/app"]], "destination": ["branch": ["name": "main"]],
        ]
        let q = try BBQLQuery(#"source.branch.name="pushbridge/app" AND destination.branch.name="main" AND state="OPEN""#)
        #expect(q.matches(pr))
        #expect(q.mentions("state"))
        #expect(!(try BBQLQuery(#"state = "MERGED""#).matches(pr)))
        #expect(try BBQLQuery(#"title ~ "build" and id = 7"#).matches(pr))
        #expect(try BBQLQuery(#"(state = "MERGED" OR state = "OPEN") AND id >= 7"#).matches(pr))
        #expect(!(try BBQLQuery(#"title !~ "generated""#).matches(pr)))
        #expect(try BBQLQuery(#"id != 3 and missing = null"#).matches(pr))
        #expect(throws: BBQLQuery.ParseError.self) { try BBQLQuery(#"state = "OPEN"#) }
        #expect(throws: BBQLQuery.ParseError.self) { try BBQLQuery(#"state == "OPEN""#) }
        #expect(throws: BBQLQuery.ParseError.self) { try BBQLQuery(#"(state = "OPEN""#) }
    }

    @Test func pathGlobs() {
        #expect(PathGlob.matches("/2.0/repositories/*/*/pullrequests", "/2.0/repositories/acme/app/pullrequests"))
        #expect(!PathGlob.matches("/2.0/repositories/*/pullrequests", "/2.0/repositories/acme/app/pullrequests"))
        #expect(PathGlob.matches("/rest/**", "/rest/api/1.0/projects"))
        #expect(PathGlob.matches("/acme/*.git/**", "/acme/app.git/info/refs"))
        #expect(!PathGlob.matches("/2.0/user", "/2.0/user/workspaces"))
    }

    @Test func routeMatchingDecodesParametersAndTakesGreedyTails() {
        #expect(
            RouteTable.match("/2.0/repositories/{workspace}/{repo_slug}/refs/branches/{name...}", "/2.0/repositories/a/b/refs/branches/feature/x%20y")
                == ["workspace": "a", "repo_slug": "b", "name": "feature/x y"])
        #expect(RouteTable.match("/scm/{projectKey}/{repositorySlug}.git/info/refs", "/scm/prj/app.git/info/refs")?["repositorySlug"] == "app")
        #expect(RouteTable.match("/scm/{projectKey}/{repositorySlug}.git/info/refs", "/scm/prj/app/info/refs") == nil)
        #expect(RouteTable.normalize("/rest/api/latest/projects/") == "/rest/api/1.0/projects")
        #expect(EmulatorService.dcSlug("Billing Service (v2)") == "billing-service-v2")
        #expect(EmulatorService.isValidCloudSlug("billing-service.v2"))
        #expect(!EmulatorService.isValidCloudSlug("Billing"))
        #expect(!EmulatorService.isValidCloudSlug("-x"))
    }
}
