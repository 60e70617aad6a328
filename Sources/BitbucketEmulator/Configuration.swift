import Foundation

/// Settings for a ``BitbucketEmulator`` instance. Everything here can also be changed at run time through the
/// emulator's control API, except the listening address and the directories.
public struct EmulatorConfiguration: Sendable {
    /// Host to bind; loopback by default (the emulator is test infrastructure, never exposed).
    public var host: String = "127.0.0.1"
    /// Port to bind; 0 picks an ephemeral port (read it back from ``BitbucketEmulator/endpoints``).
    public var port: Int = 0
    /// Path prefix of the Cloud REST API, e.g. `/2.0` (so the API base is `http://host:port/2.0`).
    public var cloudAPIPrefix: String = "/2.0"
    /// Directory under which bare repositories are created. `nil` = a fresh temporary directory, removed on ``BitbucketEmulator/stop()``.
    public var repositoriesDirectory: URL? = nil
    /// Branch that new repositories report as default / main branch.
    public var defaultBranch: String = "main"

    /// Cloud access-token lifetime in seconds (Bitbucket Cloud: 7200).
    public var cloudAccessTokenLifetime: TimeInterval = 7200
    /// DC access-token lifetime in seconds (Bitbucket DC: about one hour).
    public var dataCenterAccessTokenLifetime: TimeInterval = 3600
    /// How long a rotated-out refresh token stays usable after its successor was issued. Cloud documents
    /// "a few minutes"; the default is short so tests can observe `invalid_grant` with ``BitbucketEmulator/advanceClock(by:)``.
    public var refreshTokenGrace: TimeInterval = 120
    /// Lifetime of an unused refresh token (Cloud and DC: about 90 days).
    public var refreshTokenLifetime: TimeInterval = 90 * 24 * 3600
    /// Lifetime of an authorization code.
    public var authorizationCodeLifetime: TimeInterval = 600
    /// When true, access tokens are at least 2,500 characters long (Cloud's can be), to catch size assumptions.
    public var longAccessTokens: Bool = false
    /// When true, DC `authorize` refuses requests without a PKCE `code_challenge`.
    public var dataCenterRequiresPKCE: Bool = false
    /// OAuth 1.0a: accepted clock skew of `oauth_timestamp`, in seconds, either side.
    public var oauth1TimestampWindow: TimeInterval = 300
    /// When true, every state-changing DC REST call needs `X-Atlassian-Token: no-check`; when false (like DC),
    /// only calls whose body is not JSON (form, multipart, text) need it.
    public var requireXSRFHeaderOnAllDataCenterWrites: Bool = false
    /// Largest accepted REST request body.
    public var maxRESTBodyBytes: Int = 8 << 20

    /// Creates the default configuration.
    public init() {}
}
