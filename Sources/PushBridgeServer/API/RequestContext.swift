import Hummingbird
import Logging

/// Who made an authenticated request: the position of the matching token in
/// `PUSHBRIDGE_API_TOKENS` (the token itself is never kept or logged).
public struct APIPrincipal: Sendable, Hashable, CustomStringConvertible {
    /// 1-based index of the token that matched.
    public let tokenNumber: Int
    public var description: String { "token#\(tokenNumber)" }
}

/// Request context of the pushbridge API: Hummingbird's core storage plus the authenticated principal.
public struct PushBridgeRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by the bearer-token middleware on routes that require authentication.
    public var principal: APIPrincipal?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.principal = nil
    }

    /// JSON bodies are small; archives are streamed and limited separately.
    public var maxUploadSize: Int { 1 << 20 }
}
