import Crypto
import Foundation

/// Why the vault could not seal or open a secret. Messages name key ids, never keys.
public struct VaultError: CodedError, Hashable {
    public enum Code: String, Sendable, Hashable {
        /// No master key is configured (`PUSHBRIDGE_MASTER_KEY` or `$CREDENTIALS_DIRECTORY/master-key`).
        case masterKeyMissing = "master_key_missing"
        /// The blob was sealed under a key id that is not loaded.
        case masterKeyMismatch = "master_key_mismatch"
        /// A configured key is not base64 of exactly 32 bytes.
        case masterKeyInvalid = "master_key_invalid"
        /// Not a `v1.<kid>.<base64>` envelope.
        case envelopeMalformed = "sealed_envelope_malformed"
        /// AES-GCM authentication failed under the right key id: tampered, or moved to another connection row.
        case authenticationFailed = "sealed_data_invalid"
    }

    public let kind: Code
    public let message: String
    /// Key id involved, when there is one (e.g. the unknown kid of a `master_key_mismatch`).
    public let kid: String?

    public var code: String { kind.rawValue }

    public init(_ kind: Code, _ message: String, kid: String? = nil) {
        self.kind = kind
        self.message = message
        self.kid = kid
    }
}

/// A 256-bit AES key and its public identifier.
///
/// `kid` is the hex of the first 8 bytes of SHA-256(key): stable, safe to log, and
/// lets the vault pick the right key for a blob without trial decryption.
public struct MasterKey: Sendable {
    /// 16 lowercase hex characters.
    public let kid: String
    let key: SymmetricKey

    /// - Throws: `master_key_invalid` unless `bytes` is exactly 32 bytes.
    public init(bytes: some ContiguousBytes) throws(VaultError) {
        let key = SymmetricKey(data: bytes)
        guard key.bitCount == 256 else {
            throw VaultError(.masterKeyInvalid, "master key must be 32 bytes, got \(key.bitCount / 8)")
        }
        self.key = key
        self.kid = key.withUnsafeBytes { raw in
            SHA256.hash(data: raw).prefix(8).map { String(format: "%02x", $0) }.joined()
        }
    }

    /// Decodes base64 (standard alphabet; surrounding whitespace, such as the trailing
    /// newline of a credentials file, is ignored).
    /// - Throws: `master_key_invalid` for bad base64 or a wrong length.
    public init(base64: String) throws(VaultError) {
        guard let data = Data(base64Encoded: base64.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw VaultError(.masterKeyInvalid, "master key is not valid base64")
        }
        try self.init(bytes: data)
    }

    /// A fresh random key (for `pushbridge rotate-key --generate` and tests).
    public static func generate() -> MasterKey {
        // 32 random bytes always make a valid key.
        try! MasterKey(bytes: SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) })
    }

    /// The key as base64, for writing it to a credentials file. Handle the result as a secret.
    public func exportBase64() -> String {
        key.withUnsafeBytes { Data($0).base64EncodedString() }
    }
}

extension MasterKey: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "MasterKey(kid: \(kid))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["kid": kid]) }
}

/// Seals secrets with AES-256-GCM for storage at rest.
///
/// Envelope: `v1.<kid>.<base64(nonce ‖ ciphertext ‖ tag)>`, with a random 96-bit nonce
/// per seal. The additional authenticated data is the connection id, so a blob copied
/// onto another connection's row fails to open instead of handing one tenant's tokens
/// to another. The current key seals; every loaded key opens, which is what makes
/// key rotation (``Store/rotateKey()``) possible without downtime.
public struct Vault: Sendable {
    /// Seals new blobs; `nil` = vault can neither seal nor open anything sealed with an unknown key.
    public let current: MasterKey?
    /// Every key that can open, by kid (includes `current`).
    public let keys: [String: MasterKey]

    public init(current: MasterKey?, previous: [MasterKey] = []) {
        self.current = current
        var keys: [String: MasterKey] = [:]
        for key in previous { keys[key.kid] = key }
        if let current { keys[current.kid] = current }
        self.keys = keys
    }

    /// Seals `plaintext` bound to `connectionID`.
    /// - Throws: `master_key_missing` when no current key is loaded.
    public func seal(_ plaintext: Data, connectionID: String) throws(VaultError) -> String {
        guard let current else {
            throw VaultError(.masterKeyMissing, "no master key configured; cannot store secrets")
        }
        let box: AES.GCM.SealedBox
        do {
            box = try AES.GCM.seal(plaintext, using: current.key, authenticating: Data(connectionID.utf8))
        } catch {
            // Only fails on invalid nonce/key sizes, which our types rule out; still typed.
            throw VaultError(.masterKeyInvalid, "sealing failed under key \(current.kid)", kid: current.kid)
        }
        // `combined` is non-nil for the default 12-byte nonce.
        return "v1.\(current.kid).\(box.combined!.base64EncodedString())"
    }

    /// Opens an envelope made by ``seal(_:connectionID:)`` for the same connection.
    /// - Throws: `master_key_missing`, `master_key_mismatch` (naming the envelope's kid),
    ///   `sealed_envelope_malformed`, or `sealed_data_invalid`.
    public func open(_ envelope: String, connectionID: String) throws(VaultError) -> Data {
        let parts = envelope.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1", parts[1].count == 16,
              let combined = Data(base64Encoded: String(parts[2])), combined.count >= 28
        else {
            throw VaultError(.envelopeMalformed, "sealed value for connection '\(connectionID)' is not a v1 envelope")
        }
        let kid = String(parts[1])
        guard !keys.isEmpty else {
            throw VaultError(
                .masterKeyMissing,
                "no master key configured; secrets of connection '\(connectionID)' are sealed with key \(kid)",
                kid: kid)
        }
        guard let key = keys[kid] else {
            throw VaultError(
                .masterKeyMismatch,
                "secrets of connection '\(connectionID)' are sealed with key \(kid), which is not loaded "
                    + "(loaded: \(keys.keys.sorted().joined(separator: ", ")))",
                kid: kid)
        }
        do {
            let box = try AES.GCM.SealedBox(combined: combined)
            return try AES.GCM.open(box, using: key.key, authenticating: Data(connectionID.utf8))
        } catch {
            // swift-crypto on Linux surfaces BoringSSL's error here (on Darwin CryptoKit's
            // authenticationFailure); neither says anything useful to an operator, and the
            // underlying error must not leak into API responses, so it is replaced.
            throw VaultError(
                .authenticationFailed,
                "sealed secrets of connection '\(connectionID)' failed authentication under key \(kid) "
                    + "(tampered, or copied from another connection)",
                kid: kid)
        }
    }

    /// Seals credentials as their JSON form.
    public func seal(_ credentials: Credentials, connectionID: String) throws(VaultError) -> String {
        let data: Data
        do { data = try Self.encoder.encode(credentials) } catch {
            // Encoding plain strings/dates cannot fail; typed anyway.
            throw VaultError(.envelopeMalformed, "credentials of connection '\(connectionID)' could not be encoded")
        }
        return try seal(data, connectionID: connectionID)
    }

    /// Opens credentials sealed by ``seal(_:connectionID:)-(Credentials,_)``.
    public func openCredentials(_ envelope: String, connectionID: String) throws(VaultError) -> Credentials {
        let data = try open(envelope, connectionID: connectionID)
        do { return try Self.decoder.decode(Credentials.self, from: data) } catch {
            throw VaultError(
                .envelopeMalformed, "sealed credentials of connection '\(connectionID)' are not valid credentials JSON")
        }
    }

    /// The kid an envelope was sealed with, or `nil` if it is not a v1 envelope.
    public static func kid(of envelope: String) -> String? {
        let parts = envelope.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1" else { return nil }
        return String(parts[1])
    }

    // Dates as milliseconds: exact round-trip, independent of the API's date strategy.
    private static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .millisecondsSince1970
        e.outputFormatting = .sortedKeys
        return e
    }()
    private static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .millisecondsSince1970
        return d
    }()
}
