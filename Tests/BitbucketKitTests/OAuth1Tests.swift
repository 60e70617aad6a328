import BitbucketKit
import Crypto
import Foundation
import TestSupport
import Testing

@Suite("OAuth 1.0a RSA-SHA1")
struct OAuth1Tests {
    /// RFC 5849 §3.4.1.1: the example request and its exact signature base string.
    @Test func rfc5849SignatureBaseStringExample() throws {
        let url = URL(string: "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b")!
        let form = [("c2", ""), ("a3", "2 q")]  // body "c2&a3=2+q"
        let oauth = [
            ("oauth_consumer_key", "9djdj82h48djs9d2"), ("oauth_token", "kkk9d7dh3k39sjv7"),
            ("oauth_signature_method", "HMAC-SHA1"), ("oauth_timestamp", "137131201"), ("oauth_nonce", "7d8f3e4a"),
            ("oauth_signature", "bYT5CMsGcbgUdFHObYMEfcx6bsw="), ("realm", "Example"),
        ]
        let base = try OAuth1.signatureBaseString(method: "post", url: url, parameters: form + oauth)
        #expect(
            base
                == "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
        )
    }

    /// The form body as it arrives on the wire decodes to the same parameters (`+` is a space, a
    /// name without `=` has an empty value).
    @Test func rfc5849BodyDecoding() throws {
        let url = URL(string: "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b")!
        #expect(OAuth1.queryParameters(of: url).map { "\($0.0)=\($0.1)" } == ["b5==%3D", "a3=a", "c@=", "a2=r b"])
    }

    /// The photos.example.net example (RFC 5849 §1.2, and OAuth Core 1.0 Appendix A.5 with
    /// `oauth_version`): base string checked by the published HMAC-SHA1 signatures.
    @Test func photosExampleMatchesPublishedSignatures() throws {
        let url = URL(string: "http://photos.example.net/photos?file=vacation.jpg&size=original")!
        let key = SymmetricKey(data: Data("kd94hf93k423kf44&pfkkdhi9sl3r4s00".utf8))
        func hmac(_ base: String) -> String {
            Data(HMAC<Insecure.SHA1>.authenticationCode(for: Data(base.utf8), using: key)).base64EncodedString()
        }
        let rfc = try OAuth1.signatureBaseString(
            method: "GET",
            url: url,
            parameters: [
                ("oauth_consumer_key", "dpf43f3p2l4k3l03"), ("oauth_token", "nnch734d00sl2jdk"),
                ("oauth_signature_method", "HMAC-SHA1"), ("oauth_timestamp", "137131202"), ("oauth_nonce", "chapoH"),
            ]
        )
        #expect(hmac(rfc) == "MdpQcU8iPSUjWoN/UDMsK2sui9I=")

        let core = try OAuth1.signatureBaseString(
            method: "GET",
            url: url,
            parameters: [
                ("oauth_consumer_key", "dpf43f3p2l4k3l03"), ("oauth_token", "nnch734d00sl2jdk"),
                ("oauth_signature_method", "HMAC-SHA1"), ("oauth_timestamp", "1191242096"),
                ("oauth_nonce", "kllo9940pd9333jh"), ("oauth_version", "1.0"),
            ]
        )
        #expect(
            core
                == "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3Dkllo9940pd9333jh%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1191242096%26oauth_token%3Dnnch734d00sl2jdk%26oauth_version%3D1.0%26size%3Doriginal"
        )
        #expect(hmac(core) == "tR3+Ty81lMeYAr/Fid0kMTYa/WM=")
    }

    @Test(arguments: [
        ("abcABC123", "abcABC123"), ("-._~", "-._~"), ("%", "%25"), ("+", "%2B"), ("&=*", "%26%3D%2A"),
        ("\n", "%0A"), (" ", "%20"), ("\u{7F}", "%7F"), ("\u{80}", "%C2%80"), ("\u{3001}", "%E3%80%81"),
        ("Ladies + Gentlemen", "Ladies%20%2B%20Gentlemen"), ("An encoded string!", "An%20encoded%20string%21"),
        ("Dogs, Cats & Mice", "Dogs%2C%20Cats%20%26%20Mice"), ("☃", "%E2%98%83"), ("/:?#[]@", "%2F%3A%3F%23%5B%5D%40"),
        ("", ""),
    ])
    func percentEncoding(input: String, expected: String) {
        #expect(OAuth1.percentEncode(input) == expected)
    }

    @Test(arguments: [
        ("HTTP://EXAMPLE.COM:80/r%20v/X?id=123", "http://example.com/r%20v/X"),
        ("https://www.example.net:8080/?q=1", "https://www.example.net:8080/"),
        ("https://Example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("http://example.com", "http://example.com/"),
    ])
    func baseStringURI(input: String, expected: String) throws {
        #expect(try OAuth1.baseStringURI(URL(string: input)!) == expected)
    }

    @Test func normalizedParametersSortByEncodedNameThenValue() {
        let normalized = OAuth1.normalizedParameters([("b", "2"), ("a", "z"), ("a", "x y"), ("A", "1"), ("a1", "0")])
        #expect(normalized == "A=1&a=x%20y&a=z&a1=0&b=2")
    }

    @Test func authorizationHeaderRoundTrip() throws {
        let key = try OAuth1PrivateKey.generate()
        let signer = OAuth1Signer(consumerKey: "pushbridge key", privateKey: key, token: Secret("tok/en+1"))
        let url = URL(string: "https://bitbucket.example.com/rest/api/1.0/projects?start=0&limit=25")!
        let header = try signer.authorizationHeader(method: "GET", url: url, nonce: "abc", timestamp: 1_700_000_000)
        #expect(header.hasPrefix("OAuth realm=\"\", oauth_nonce=\"abc\", oauth_timestamp=\"1700000000\", oauth_version=\"1.0\", oauth_signature_method=\"RSA-SHA1\", oauth_consumer_key=\"pushbridge%20key\", oauth_token=\"tok%2Fen%2B1\", oauth_signature=\""))
        let parsed = try #require(OAuth1.parseAuthorizationHeader(header))
        let dict = Dictionary(uniqueKeysWithValues: parsed)
        #expect(dict["oauth_token"] == "tok/en+1")
        #expect(dict["oauth_consumer_key"] == "pushbridge key")
        #expect(dict["realm"] == nil)
        // The signature verifies over the base string rebuilt from the parsed header.
        let base = try OAuth1.signatureBaseString(method: "GET", url: url, parameters: parsed)
        let encodedSignature = try #require(dict["oauth_signature"])
        let signature = try #require(Data(base64Encoded: encodedSignature))
        let digest = Insecure.SHA1.hash(data: Data(base.utf8))
        #expect(key.key.publicKey.isValidSignature(.init(rawRepresentation: signature), for: digest, padding: .insecurePKCS1v1_5))
        #expect(!key.key.publicKey.isValidSignature(.init(rawRepresentation: signature), for: Insecure.SHA1.hash(data: Data((base + "x").utf8)), padding: .insecurePKCS1v1_5))
    }

    @Test func signerDescriptionDoesNotRevealToken() throws {
        let signer = OAuth1Signer(consumerKey: "ck", privateKey: try OAuth1PrivateKey.generate(), token: Secret("access-token-value-123"))
        #expect(!"\(signer)".contains("access-token-value-123"))
        #expect(!String(reflecting: signer).contains("access-token-value-123"))
        #expect("\(try OAuth1PrivateKey.generate().pkcs8PEM)" == "<redacted>")
    }

    @Test(.enabled(if: which("openssl") != nil, "openssl is not installed"))
    func signatureVerifiesWithOpenSSL() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = try OAuth1PrivateKey.generate()
        try key.publicKeyPEM.write(to: dir.appendingPathComponent("pub.pem"), atomically: true, encoding: .utf8)
        let signer = OAuth1Signer(consumerKey: "pushbridge", privateKey: key, token: Secret("T0k3n"))
        let url = URL(string: "https://bitbucket.example.com:8443/rest/api/1.0/projects/PROJ/repos?name=a%20b&limit=2")!
        let parameters = try signer.signedParameters(method: "POST", url: url, formParameters: [("x", "1+1=2")], nonce: "n0nce", timestamp: 1_234_567_890)
        let encodedSignature = try #require(parameters.last { $0.0 == "oauth_signature" }?.1)
        let signature = try #require(Data(base64Encoded: encodedSignature))
        let base = try OAuth1.signatureBaseString(method: "POST", url: url, parameters: [("x", "1+1=2")] + parameters)
        try signature.write(to: dir.appendingPathComponent("sig.bin"))
        try Data(base.utf8).write(to: dir.appendingPathComponent("base.txt"))
        let (status, out, _) = try await runOffPool(which("openssl")!, [
            "dgst", "-sha1", "-verify", dir.appendingPathComponent("pub.pem").path,
            "-signature", dir.appendingPathComponent("sig.bin").path, dir.appendingPathComponent("base.txt").path,
        ])
        #expect(status == 0)
        #expect(out.contains("Verified OK"))
        // A different base string must not verify.
        try Data((base + "&").utf8).write(to: dir.appendingPathComponent("base.txt"))
        let (tamperedStatus, _, _) = try await runOffPool(which("openssl")!, [
            "dgst", "-sha1", "-verify", dir.appendingPathComponent("pub.pem").path,
            "-signature", dir.appendingPathComponent("sig.bin").path, dir.appendingPathComponent("base.txt").path,
        ])
        #expect(tamperedStatus != 0)
    }

    @Test(.enabled(if: which("openssl") != nil, "openssl is not installed"))
    func generatedKeyPEMKinds() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = try OAuth1PrivateKey.generate(bits: 2048)
        let privatePath = dir.appendingPathComponent("private.pem").path
        let publicPath = dir.appendingPathComponent("public.pem").path
        try key.pkcs8PEM.reveal().write(toFile: privatePath, atomically: true, encoding: .utf8)
        try key.publicKeyPEM.write(toFile: publicPath, atomically: true, encoding: .utf8)
        #expect(key.pkcs8PEM.reveal().hasPrefix("-----BEGIN PRIVATE KEY-----"))
        #expect(key.publicKeyPEM.hasPrefix("-----BEGIN PUBLIC KEY-----"))

        let openssl = which("openssl")!
        let (privStatus, privText, _) = try await runOffPool(openssl, ["pkey", "-in", privatePath, "-noout", "-text"])
        #expect(privStatus == 0)
        #expect(privText.contains("Private-Key: (2048 bit"))
        let (pubStatus, pubText, _) = try await runOffPool(openssl, ["rsa", "-pubin", "-in", publicPath, "-noout", "-text"])
        #expect(pubStatus == 0)
        #expect(pubText.contains("Public-Key: (2048 bit)"))
        // The public key derived by openssl from the private PEM equals ours.
        let (_, derived, _) = try await runOffPool(openssl, ["pkey", "-in", privatePath, "-pubout"])
        #expect(derived.trimmingCharacters(in: .whitespacesAndNewlines) == key.publicKeyPEM.trimmingCharacters(in: .whitespacesAndNewlines))
        // Loading the PKCS#8 PEM back yields the same key.
        let reloaded = try OAuth1PrivateKey(pemRepresentation: key.pkcs8PEM.reveal())
        #expect(reloaded.publicKeyPEM == key.publicKeyPEM)
    }

    @Test func invalidKeysAreRejected() {
        #expect(throws: BitbucketError.self) { try OAuth1PrivateKey(pemRepresentation: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n") }
        #expect(throws: BitbucketError.self) { try OAuth1PrivateKey.generate(bits: 1024) }
    }

    static let pythonOAuthlibAvailable: Bool = {
        guard let python = which("python3") else { return false }
        return (try? run(python, ["-c", "import oauthlib.oauth1, cryptography, jwt"]).0) == 0
    }()

    /// An independent implementation (Python oauthlib, RSA-SHA1) produces the identical header for
    /// the same key, nonce and timestamp: PKCS#1 v1.5 signatures are deterministic.
    @Test(
        .enabled(if: pythonOAuthlibAvailable, "python3 with oauthlib, cryptography and pyjwt is not installed (pip install oauthlib cryptography pyjwt)"),
        arguments: [
            ("GET", "https://Bitbucket.Example.com:443/rest/api/1.0/projects/PROJ/repos?name=my+repo&limit=25", "", "Example"),
            ("POST", "http://127.0.0.1:7990/plugins/servlet/oauth/access-token", "", ""),
            ("POST", "https://bitbucket.example.com/ctx/rest/api/1.0/x?a=1&a=0", "b=2&c=%E2%98%83&a=z", "Example"),
        ]
    )
    func headerMatchesPythonOAuthlib(method: String, urlString: String, body: String, realm: String) async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = try OAuth1PrivateKey.generate()
        let keyPath = dir.appendingPathComponent("key.pem").path
        try key.pkcs8PEM.reveal().write(toFile: keyPath, atomically: true, encoding: .utf8)
        let script = """
            import sys, oauthlib.oauth1 as o
            method, url, body, realm, key_path = sys.argv[1:6]
            client = o.Client('pushbridge-consumer', rsa_key=open(key_path).read(), signature_method=o.SIGNATURE_RSA,
                              resource_owner_key='access/token+1', nonce='fixednonce42', timestamp='1700000001',
                              realm=realm or None)
            headers = {'Content-Type': 'application/x-www-form-urlencoded'} if body else {}
            _, h, _ = client.sign(url, http_method=method, body=body or None, headers=headers)
            sys.stdout.write(h['Authorization'])
            """
        let (status, pythonHeader, stderr) = try await runOffPool(which("python3")!, ["-c", script, method, urlString, body, realm, keyPath])
        #expect(status == 0, "python failed: \(stderr)")

        var signer = OAuth1Signer(consumerKey: "pushbridge-consumer", privateKey: key, token: Secret("access/token+1"))
        signer.realm = realm.isEmpty ? nil : realm
        let form = body.isEmpty ? [] : OAuth1.queryParameters(of: URL(string: "http://x/?\(body)")!)
        let swiftHeader = try signer.authorizationHeader(
            method: method,
            url: URL(string: urlString)!,
            formParameters: form,
            nonce: "fixednonce42",
            timestamp: 1_700_000_001
        )
        #expect(swiftHeader == pythonHeader)
    }
}
