import BitbucketKit
import Crypto
import Foundation

/// What a picker page belongs to. A cursor is only accepted back by the same listing: same
/// connection, same route, same workspace/project and same search text.
struct PickerListing: Codable, Sendable, Hashable {
    /// Connection id.
    var connection: String
    /// `workspaces`, `projects` or `repositories`.
    var route: String
    /// Workspace slug or project key of a repository listing; empty for namespace listings.
    var namespace: String
    /// The `q` filter of a repository listing; empty when absent.
    var query: String
}

/// Seals BitbucketKit's page cursors into the opaque `next` strings the picker routes hand out.
///
/// A BitbucketKit cursor of a Cloud listing is Bitbucket's `next` URL; handing it to a caller as is
/// would let the caller read (and edit) the address the daemon will call with the connection's
/// token. So the cursor is sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the
/// master key, together with the ``PickerListing`` it belongs to: callers cannot read it, cannot
/// forge one, and cannot replay one against another connection, workspace or query. BitbucketKit
/// additionally refuses a cursor that does not point at the listing's own origin and path, so even
/// a cursor sealed with the right key cannot send the token to another host.
struct PickerCursorSealer: Sendable {
    private let key: SymmetricKey

    /// Version prefix; lets the format change without misreading old cursors.
    private static let prefix = "pc1."

    /// - Parameter masterKey: the 32 bytes of `PUSHBRIDGE_MASTER_KEY`. The derived key is
    ///   specific to picker cursors, so a cursor never decrypts as anything else.
    init(masterKey: [UInt8]) {
        key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: masterKey), salt: Data("pushbridge".utf8),
            info: Data("pushbridge picker cursor v1".utf8), outputByteCount: 32)
    }

    private struct Payload: Codable {
        var listing: PickerListing
        var cursor: String
    }

    /// The opaque cursor for `cursor` of `listing`, or `nil` on the last page.
    func seal(_ cursor: PageCursor?, for listing: PickerListing) throws -> String? {
        guard let cursor else { return nil }
        let plaintext = try JSONEncoder().encode(Payload(listing: listing, cursor: cursor.rawValue))
        // The listing is also the associated data, so a cursor of one listing fails to open under another.
        let box = try AES.GCM.seal(plaintext, using: key, authenticating: try Self.associatedData(listing))
        guard let combined = box.combined else {
            throw APIError(.internalServerError, code: "internal_error", "cannot seal a page cursor")
        }
        return Self.prefix + Self.base64URL(combined)
    }

    /// The BitbucketKit cursor inside `text`.
    ///
    /// - Throws: ``APIError`` 400 `invalid_cursor` when `text` was not sealed by this daemon for
    ///   exactly this listing (tampered, truncated, from another listing, or sealed under another
    ///   master key).
    func open(_ text: String, for listing: PickerListing) throws(APIError) -> PageCursor {
        let invalid = APIError(
            .badRequest, code: "invalid_cursor",
            "cursor is not a \"next\" value of this listing (same connection, workspace and q); start without a cursor")
        guard text.hasPrefix(Self.prefix), text.utf8.count <= 8192,
            let combined = Self.fromBase64URL(String(text.dropFirst(Self.prefix.count))),
            let box = try? AES.GCM.SealedBox(combined: combined),
            let plaintext = try? AES.GCM.open(box, using: key, authenticating: Self.associatedData(listing)),
            let payload = try? JSONDecoder().decode(Payload.self, from: plaintext),
            payload.listing == listing
        else { throw invalid }
        return PageCursor(rawValue: payload.cursor)
    }

    private static func associatedData(_ listing: PickerListing) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return try encoder.encode(listing)
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func fromBase64URL(_ text: String) -> Data? {
        guard text.utf8.allSatisfy({ $0 < 0x80 }), !text.contains("="), !text.contains("+"), !text.contains("/") else {
            return nil
        }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64)
    }
}
