/// A credential value (access token, refresh token, client secret, PKCE verifier, OAuth 1.0a token)
/// that must never appear in logs, error descriptions or debug output.
///
/// `description`, `debugDescription` and the reflection mirror all print `<redacted>`, so string
/// interpolation, `print`, `dump` and `Logger` metadata built from a `Secret` cannot leak it.
/// `Secret` is deliberately not `Codable`: persisting one is an explicit act through ``reveal()``.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    private let value: String

    /// Wraps `value`.
    public init(_ value: String) {
        self.value = value
    }

    /// The wrapped value. Call only where the value leaves the process on purpose (an HTTP header,
    /// a form body, an encrypted store).
    public func reveal() -> String {
        value
    }

    /// `true` when the wrapped value is the empty string.
    public var isEmpty: Bool { value.isEmpty }

    /// Always `<redacted>`.
    public var description: String { "<redacted>" }

    /// Always `<redacted>`.
    public var debugDescription: String { "<redacted>" }

    /// A mirror without children, so `dump` and reflection-based printers see nothing.
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
