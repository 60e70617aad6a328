#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive `flock(2)` on a lock file next to a cache directory.
///
/// Within one process, ``RemoteCache`` is already serialised by its actor; the lock makes a
/// second process (another daemon on the same data directory, an operator's tool) wait
/// instead of interleaving reference and pack updates. `flock` locks belong to the open file
/// description, so they are released if the process dies.
final class FileLock {
    let path: String
    private var fd: Int32 = -1

    init(path: String) {
        self.path = path
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Blocks until the lock is held, runs `body`, releases the lock.
    func withLock<T>(_ body: () throws(GitError) -> T) throws(GitError) -> T {
        if fd < 0 {
            let opened = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard opened >= 0 else { throw posixError("cannot open lock file", path) }
            fd = opened
        }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { throw posixError("cannot lock", path) }
        }
        defer { _ = flock(fd, LOCK_UN) }
        return try body()
    }
}
