import Foundation

/// Opens the store named by `PUSHBRIDGE_DATABASE_URL`.
public enum StoreFactory {
    /// - Parameters:
    ///   - databaseURL: `sqlite:///absolute/path.sqlite` or `postgres://…` / `postgresql://…`.
    ///   - migrate: apply pending migrations before returning (what `serve` and `migrate` want).
    /// - Throws: `invalid_database_url`, or the backend's error while connecting/migrating.
    public static func open(
        databaseURL: String, vault: Vault, options: StoreOptions = StoreOptions(), migrate: Bool = true
    ) async throws -> any Store {
        let store: any Store
        if databaseURL.hasPrefix("sqlite://") {
            let path = String(databaseURL.dropFirst("sqlite://".count))
            guard path.hasPrefix("/"), path.count > 1 else {
                throw StoreError(.invalidDatabaseURL, "SQLite URL must be sqlite:///absolute/path (got '\(databaseURL)')")
            }
            store = try SQLiteStore(path: path.removingPercentEncoding ?? path, vault: vault, options: options)
        } else if databaseURL.hasPrefix("postgres://") || databaseURL.hasPrefix("postgresql://") {
            store = try PostgresStore(url: databaseURL, vault: vault, options: options)
        } else {
            // Only the scheme is echoed: a postgres-like URL may carry a password.
            let scheme = databaseURL.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
            throw StoreError(.invalidDatabaseURL, "unsupported database URL scheme '\(scheme)' (use sqlite:// or postgres://)")
        }
        if migrate {
            do { try await store.migrate() } catch {
                try? await store.close()
                throw error
            }
        }
        return store
    }
}
