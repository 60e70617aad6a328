#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Size and count limits applied while unpacking.
public struct ArchiveLimits: Sendable, Hashable {
    /// Largest upload (compressed) accepted.
    public var maxArchiveBytes: Int
    /// Most entries (files, directories, symlinks) accepted.
    public var maxEntries: Int
    /// Largest single file.
    public var maxFileBytes: Int
    /// Largest sum of file sizes after unpacking (guards against compression bombs).
    public var maxExpandedBytes: Int

    public init(maxArchiveBytes: Int, maxEntries: Int, maxFileBytes: Int, maxExpandedBytes: Int) {
        self.maxArchiveBytes = maxArchiveBytes
        self.maxEntries = maxEntries
        self.maxFileBytes = maxFileBytes
        self.maxExpandedBytes = maxExpandedBytes
    }
}

/// Writes the members of a tar stream below `root`, enforcing the path rules, entry types and limits.
///
/// Safety does not depend on the order of members: every created path is tracked, so no member
/// can be written through a symlink or over another member (`O_EXCL`, `O_NOFOLLOW`), and symlink
/// chains are resolved against the unpacked tree in ``finish()``.
final class ArchiveUnpacker {
    let root: String
    let limits: ArchiveLimits
    private(set) var entries = 0
    /// Regular files and symlinks written.
    private(set) var files = 0
    /// Sum of regular file sizes.
    private(set) var expandedBytes = 0

    private var directories: Set<String> = []
    private var leaves: Set<String> = []
    private var symlinks: [String: String] = [:]
    private var currentFD: Int32 = -1
    private var currentPath = ""

    init(root: String, limits: ArchiveLimits) {
        self.root = root
        self.limits = limits
    }

    deinit {
        if currentFD >= 0 { close(currentFD) }
    }

    func handle(_ event: TarEvent) throws {
        switch event {
        case .entry(let entry): try begin(entry)
        case .data(let bytes): try writeData(bytes)
        case .endOfEntry:
            if currentFD >= 0 {
                let fd = currentFD
                currentFD = -1
                guard close(fd) == 0 else { throw ioError("close", currentPath) }
                files += 1
            }
        }
    }

    private func begin(_ entry: TarEntry) throws {
        entries += 1
        guard entries <= limits.maxEntries else {
            throw ArchiveError(.tooManyEntries, "archive has more than \(limits.maxEntries) entries")
        }
        guard let path = try ArchivePath.normalize(entry.path) else {
            if entry.kind == .directory { return }  // "./": the root itself
            throw ArchiveError(.invalidPath, "invalid path \"\(entry.path)\": names the archive root", path: entry.path)
        }
        try checkParents(of: path)
        switch entry.kind {
        case .directory:
            guard !leaves.contains(path) else { throw conflict(path, "is both a file and a directory") }
            try makeDirectory(path)
        case .regular:
            guard entry.size <= limits.maxFileBytes else {
                throw ArchiveError(
                    .fileTooLarge, "file \"\(path)\" has \(entry.size) bytes, more than the limit of \(limits.maxFileBytes)",
                    path: path)
            }
            expandedBytes += entry.size
            guard expandedBytes <= limits.maxExpandedBytes else {
                throw ArchiveError(
                    .expandedTooLarge, "archive unpacks to more than \(limits.maxExpandedBytes) bytes", path: path)
            }
            try claim(path)
            // Only the executable bit matters to git (100644 vs 100755); the umask still applies.
            let mode: mode_t = entry.mode & 0o111 != 0 ? 0o755 : 0o644
            let fd = open(root + "/" + path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            guard fd >= 0 else { throw ioError("open", path) }
            currentFD = fd
            currentPath = path
        case .symlink(let target):
            try ArchivePath.checkSymlink(at: path, target: target)
            try claim(path)
            guard symlink(target, root + "/" + path) == 0 else { throw ioError("symlink", path) }
            symlinks[path] = target
            files += 1
        case .hardLink:
            throw unsupported(path, "hard links")
        case .characterDevice, .blockDevice:
            throw unsupported(path, "device files")
        case .fifo:
            throw unsupported(path, "FIFOs")
        case .other(let type):
            throw unsupported(path, "entries of tar type '\(Character(Unicode.Scalar(type)))'")
        }
    }

    private func writeData(_ bytes: ArraySlice<UInt8>) throws {
        guard currentFD >= 0 else { return }
        try bytes.withUnsafeBytes { buffer in
            try ArchiveStore.writeAll(currentFD, buffer) { ioError("write", currentPath) }
        }
    }

    /// A leaf (file or symlink) may appear once, and never where a directory is.
    private func claim(_ path: String) throws {
        guard !directories.contains(path), !leaves.contains(path) else {
            throw conflict(path, "appears more than once")
        }
        let parent = path.split(separator: "/").dropLast().joined(separator: "/")
        if !parent.isEmpty { try makeDirectory(parent) }
        leaves.insert(path)
    }

    /// No member may lie below a file or a symlink.
    private func checkParents(of path: String) throws {
        var prefix = ""
        for segment in path.split(separator: "/").dropLast() {
            prefix += prefix.isEmpty ? String(segment) : "/" + segment
            if symlinks[prefix] != nil { throw conflict(path, "lies under the symlink \"\(prefix)\"") }
            if leaves.contains(prefix) { throw conflict(path, "lies under the file \"\(prefix)\"") }
        }
    }

    private func makeDirectory(_ path: String) throws {
        var prefix = ""
        for segment in path.split(separator: "/") {
            prefix += prefix.isEmpty ? String(segment) : "/" + segment
            if directories.contains(prefix) { continue }
            if leaves.contains(prefix) { throw conflict(path, "lies under the file \"\(prefix)\"") }
            guard mkdir(root + "/" + prefix, 0o755) == 0 else { throw ioError("mkdir", prefix) }
            directories.insert(prefix)
        }
    }

    /// Resolves every symlink through the unpacked tree (following chains, as the kernel would)
    /// and refuses any that leaves the root.
    func finish() throws {
        for (path, target) in symlinks.sorted(by: { $0.key < $1.key }) {
            var resolved: [String] = path.split(separator: "/").dropLast().map(String.init)
            var pending: [Substring] = target.split(separator: "/").reversed()
            var hops = 0
            while let segment = pending.popLast() {
                switch segment {
                case ".": continue
                case "..":
                    guard !resolved.isEmpty else {
                        throw ArchiveError(
                            .symlinkEscapes, "symlink \"\(path)\" -> \"\(target)\" leaves the archive root through another symlink",
                            path: path)
                    }
                    resolved.removeLast()
                default:
                    resolved.append(String(segment))
                    let joined = resolved.joined(separator: "/")
                    guard let next = symlinks[joined] else { continue }
                    hops += 1
                    guard hops <= 40 else {
                        throw ArchiveError(.symlinkEscapes, "symlink \"\(path)\" is part of a loop", path: path)
                    }
                    resolved.removeLast()
                    pending.append(contentsOf: next.split(separator: "/").reversed())
                }
            }
        }
    }

    private func conflict(_ path: String, _ reason: String) -> ArchiveError {
        ArchiveError(.conflictingEntry, "entry \"\(path)\" \(reason)", path: path)
    }

    private func unsupported(_ path: String, _ what: String) -> ArchiveError {
        ArchiveError(.unsupportedEntry, "entry \"\(path)\": \(what) are not supported", path: path)
    }

    private func ioError(_ call: String, _ path: String) -> ArchiveError {
        ArchiveError(.io, "\(call) \"\(path)\": \(String(cString: strerror(errno)))", path: path)
    }
}
