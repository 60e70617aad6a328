import Dispatch

/// A serial executor backed by its own dispatch queue.
///
/// libgit2 calls block (network I/O, hashing, compression). Running them on the Swift
/// cooperative pool — one thread per core, two on this machine — could starve the rest of
/// the process, including an in-process HTTP server that the blocked call is waiting for.
/// Each ``RemoteCache`` therefore runs on its own serial queue (which serialises work per
/// remote) whose threads come from dispatch's overcommitting pool.
final class QueueExecutor: SerialExecutor {
    private let queue: DispatchQueue

    init(label: String) {
        queue = DispatchQueue(label: label)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        queue.async {
            job.runSynchronously(on: executor)
        }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }
}
