import Crypto
import Foundation
import PushBridge
import Testing

@Suite struct VaultTests {
    let keyA = MasterKey.generate()
    let keyB = MasterKey.generate()

    @Test func kidIsFirstEightBytesOfSHA256Hex() throws {
        let raw = Data((0..<32).map { UInt8($0) })
        let key = try MasterKey(bytes: raw)
        let expected = SHA256.hash(data: raw).prefix(8).map { String(format: "%02x", $0) }.joined()
        #expect(key.kid == expected)
        #expect(key.kid.count == 16)
        #expect(try MasterKey(base64: raw.base64EncodedString() + "\n").kid == expected)
    }

    @Test func sealOpenRoundTripWithEnvelopeFormat() throws {
        let vault = Vault(current: keyA)
        let envelope = try vault.seal(Data("hello".utf8), connectionID: "c1")
        let parts = envelope.split(separator: ".")
        #expect(parts.count == 3)
        #expect(parts[0] == "v1")
        #expect(String(parts[1]) == keyA.kid)
        // nonce (12) + ciphertext (5) + tag (16)
        #expect(Data(base64Encoded: String(parts[2]))?.count == 12 + 5 + 16)
        #expect(try vault.open(envelope, connectionID: "c1") == Data("hello".utf8))
        // Fresh nonce per seal.
        #expect(try vault.seal(Data("hello".utf8), connectionID: "c1") != envelope)
        #expect(!envelope.contains("hello"))
    }

    @Test func blobMovedToAnotherConnectionFailsToOpen() async throws {
        let vault = Vault(current: keyA)
        let envelope = try vault.seal(sampleCredentials, connectionID: "tenant-a")
        let error = await expectCode("sealed_data_invalid") {
            _ = try vault.openCredentials(envelope, connectionID: "tenant-b")
        }
        #expect(error?.message.contains(keyA.kid) == true)
    }

    @Test func tamperedCiphertextFailsWithTypedError() async throws {
        let vault = Vault(current: keyA)
        let envelope = try vault.seal(Data("payload".utf8), connectionID: "c1")
        var bytes = Data(base64Encoded: String(envelope.split(separator: ".")[2]))!
        bytes[14] ^= 0x01
        let tampered = "v1.\(keyA.kid).\(bytes.base64EncodedString())"
        await expectCode("sealed_data_invalid") { _ = try vault.open(tampered, connectionID: "c1") }
        await expectCode("sealed_envelope_malformed") { _ = try vault.open("v2.abc.def", connectionID: "c1") }
        await expectCode("sealed_envelope_malformed") { _ = try vault.open("plaintext-token", connectionID: "c1") }
    }

    @Test func unknownKidNamesTheKidButNeverAKey() async throws {
        let envelope = try Vault(current: keyA).seal(Data("x".utf8), connectionID: "c1")
        let error = await expectCode("master_key_mismatch") {
            _ = try Vault(current: keyB).open(envelope, connectionID: "c1")
        }
        let message = "\(error.map { "\($0)" } ?? "")"
        #expect(message.contains(keyA.kid))
        #expect(message.contains(keyB.kid))
        #expect(!message.contains(keyA.exportBase64()))
        #expect(!message.contains(keyB.exportBase64()))
        #expect((error as? VaultError)?.kid == keyA.kid)
    }

    @Test func missingKeyIsTyped() async throws {
        let envelope = try Vault(current: keyA).seal(Data("x".utf8), connectionID: "c1")
        await expectCode("master_key_missing") { _ = try Vault(current: nil).seal(Data("x".utf8), connectionID: "c1") }
        await expectCode("master_key_missing") { _ = try Vault(current: nil).open(envelope, connectionID: "c1") }
    }

    @Test func invalidKeysAreRejected() async {
        await expectCode("master_key_invalid") { _ = try MasterKey(base64: Data(count: 16).base64EncodedString()) }
        await expectCode("master_key_invalid") { _ = try MasterKey(base64: "not base64!!") }
    }

    @Test func previousKeysOpenButCurrentSeals() throws {
        let old = try Vault(current: keyA).seal(Data("x".utf8), connectionID: "c1")
        let rotated = Vault(current: keyB, previous: [keyA])
        #expect(try rotated.open(old, connectionID: "c1") == Data("x".utf8))
        #expect(Vault.kid(of: try rotated.seal(Data("x".utf8), connectionID: "c1")) == keyB.kid)
        #expect(Set(rotated.keys.keys) == [keyA.kid, keyB.kid])
    }

    @Test func credentialsRoundTripEveryVariant() throws {
        let vault = Vault(current: keyA)
        let variants: [Credentials] = [
            sampleCredentials,
            .oauth1(.init(
                consumerKey: "pushbridge", accessToken: "oa1-SECRET", tokenSecret: "ts-SECRET",
                gitAccessToken: "git-SECRET", gitAccessTokenExpiresAt: Date(timeIntervalSince1970: 1_770_000_000.5))),
            .accessToken(.init(token: "tok-SECRET")),
        ]
        for credentials in variants {
            let sealed = try vault.seal(credentials, connectionID: "c")
            #expect(!sealed.contains("SECRET"))
            #expect(try vault.openCredentials(sealed, connectionID: "c") == credentials)
        }
    }

    @Test func renderingsAreRedacted() throws {
        let variants: [Credentials] = [
            sampleCredentials,
            .oauth1(.init(consumerKey: "pushbridge", accessToken: "oa1-SECRET", tokenSecret: "ts-SECRET",
                          gitAccessToken: "git-SECRET")),
            .accessToken(.init(token: "tok-SECRET")),
        ]
        for credentials in variants {
            var dumped = ""
            dump(credentials, to: &dumped)
            for text in [
                "\(credentials)", String(reflecting: credentials), dumped, "\([credentials])",
                "\(Optional(credentials) as Any)",
            ] {
                #expect(!text.contains("SECRET"), "leaked: \(text)")
                #expect(text.contains("<redacted>"))
            }
        }
        #expect("\(sampleCredentials)".contains("client-1"))  // non-secret fields stay visible
        var dumpedKey = ""
        dump(keyA, to: &dumpedKey)
        for text in ["\(keyA)", String(reflecting: keyA), dumpedKey] {
            #expect(!text.contains(keyA.exportBase64()))
            #expect(text.contains(keyA.kid))
        }
    }

    @Test func credentialsJSONMatchesTheAPIShape() throws {
        let json = #"{"type":"oauth2","accessToken":"a","refreshToken":"r"}"#
        let decoded = try JSONDecoder().decode(Credentials.self, from: Data(json.utf8))
        #expect(decoded == .oauth2(.init(accessToken: "a", refreshToken: "r")))
        #expect(decoded.kind == .oauth2)
        let token = try JSONDecoder().decode(Credentials.self, from: Data(#"{"type":"access-token","token":"t"}"#.utf8))
        #expect(token == .accessToken(.init(token: "t")))
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Credentials.self, from: Data(#"{"type":"basic","token":"t"}"#.utf8))
        }
        let encoded = String(decoding: try JSONEncoder().encode(token), as: UTF8.self)
        #expect(encoded.contains(#""type":"access-token""#))
    }
}
