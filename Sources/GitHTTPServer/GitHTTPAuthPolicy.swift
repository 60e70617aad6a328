import Foundation

/// Which credentials a ``GitSmartHTTPServer`` accepts.
///
/// The description never contains a password or token.
public indirect enum GitHTTPAuthPolicy: Sendable, CustomStringConvertible {
    /// Every request is allowed, anonymously.
    case none
    /// HTTP Basic with exactly this user name and password.
    case basic(username: String, password: String)
    /// `Authorization: Bearer <token>` with exactly this token.
    case bearer(token: String)
    /// Allowed when any of the policies allows it (an empty list allows nothing).
    case anyOf([GitHTTPAuthPolicy])

    /// The result of checking one request.
    public enum Decision: Sendable, Equatable {
        /// Allowed; `user` is the authenticated user name (`nil` for anonymous or bearer access).
        case allowed(user: String?)
        /// Missing or wrong credentials.
        case denied
    }

    /// Checks an `Authorization` header value (`nil` when the header is absent).
    ///
    /// Secrets are compared in time independent of where they differ.
    public func authorize(_ authorization: String?) -> Decision {
        switch self {
        case .none:
            return .allowed(user: nil)
        case .basic(let username, let password):
            guard let (user, pass) = Self.basicCredentials(authorization),
                Self.constantTimeEquals(user, username), Self.constantTimeEquals(pass, password)
            else { return .denied }
            return .allowed(user: user)
        case .bearer(let token):
            guard let presented = Self.credential(authorization, scheme: "bearer"),
                Self.constantTimeEquals(presented, token)
            else { return .denied }
            return .allowed(user: nil)
        case .anyOf(let policies):
            for policy in policies {
                if case .allowed(let user) = policy.authorize(authorization) { return .allowed(user: user) }
            }
            return .denied
        }
    }

    public var description: String {
        switch self {
        case .none: "none"
        case .basic(let username, _): "basic(username: \(username.debugDescription), password: <redacted>)"
        case .bearer: "bearer(token: <redacted>)"
        case .anyOf(let policies): "anyOf(\(policies.map(\.description).joined(separator: ", ")))"
        }
    }

    /// The text after `<scheme> ` in an `Authorization` value (scheme matched case-insensitively).
    static func credential(_ authorization: String?, scheme: String) -> String? {
        guard let authorization else { return nil }
        let trimmed = authorization.trimmingCharacters(in: .whitespaces)
        guard let space = trimmed.firstIndex(of: " "),
            trimmed[..<space].lowercased() == scheme
        else { return nil }
        return trimmed[space...].trimmingCharacters(in: .whitespaces)
    }

    /// User name and password of an HTTP Basic `Authorization` value.
    static func basicCredentials(_ authorization: String?) -> (String, String)? {
        guard let encoded = credential(authorization, scheme: "basic"),
            let data = Data(base64Encoded: encoded),
            let decoded = String(data: data, encoding: .utf8),
            let colon = decoded.firstIndex(of: ":")
        else { return nil }
        return (String(decoded[..<colon]), String(decoded[decoded.index(after: colon)...]))
    }

    static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        let a = Array(lhs.utf8)
        let b = Array(rhs.utf8)
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }
}
