import Logging
import ServiceLifecycle

/// Pings systemd's watchdog (`WATCHDOG=1`) every ``SystemdNotifier/watchdogInterval`` until
/// graceful shutdown; does nothing when the watchdog is off.
///
/// It runs as a lifecycle service beside the API so that a wedged process (deadlocked executor,
/// stuck event loop) stops pinging and systemd restarts it.
public struct SystemdWatchdogService: Service {
    let notifier: SystemdNotifier?
    let logger: Logger

    /// Creates the service; `notifier == nil` (not under systemd) makes it a no-op.
    public init(notifier: SystemdNotifier?, logger: Logger) {
        self.notifier = notifier
        self.logger = logger
    }

    public func run() async throws {
        guard let notifier, let interval = notifier.watchdogInterval else {
            // Nothing to ping, but returning early would read as a failed service to ServiceGroup.
            try? await gracefulShutdown()
            return
        }
        let logger = self.logger
        await runPeriodically(every: interval) {
            do {
                try notifier.notify(.watchdog)
            } catch {
                logger.warning("watchdog ping failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
