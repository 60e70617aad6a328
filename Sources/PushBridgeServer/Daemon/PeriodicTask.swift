import ServiceLifecycle

/// Runs `body` every `interval` until graceful shutdown or cancellation.
///
/// Not built on `cancelWhenGracefulShutdown` around each sleep: in swift-service-lifecycle 2.x that
/// helper can hang when its operation finishes before its internal waiter has registered (seen
/// with short intervals under load). One unstructured loop cancelled by the shutdown handler has
/// no such window.
func runPeriodically(every interval: Duration, _ body: @escaping @Sendable () async -> Void) async {
    let loop = Task {
        while !Task.isCancelled {
            await body()
            try? await Task.sleep(for: interval)
        }
    }
    await withTaskCancellationHandler {
        await withGracefulShutdownHandler {
            await loop.value
        } onGracefulShutdown: {
            loop.cancel()
        }
    } onCancel: {
        loop.cancel()
    }
}
