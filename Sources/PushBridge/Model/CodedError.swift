/// An error that carries a stable, machine-readable `code`.
///
/// Codes are part of pushbridge's contract: the HTTP API returns them as
/// `{"error": {"code", "message"}}`, the job record stores them, and operators grep
/// logs for them. They are lowercase `snake_case` and never change meaning once
/// shipped. `message` is for humans and must never contain a secret.
public protocol CodedError: Error, Sendable, CustomStringConvertible {
    /// Stable machine-readable identifier, e.g. `idempotency_conflict`.
    var code: String { get }
    /// Human-readable explanation; never contains secrets.
    var message: String { get }
}

extension CodedError {
    public var description: String { "\(code): \(message)" }
}
