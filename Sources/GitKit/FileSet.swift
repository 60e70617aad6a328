#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One validated input file.
struct InputFile {
    enum Content {
        case bytes([UInt8])
        /// A regular file of a directory source, read when its blob is needed.
        case disk
    }

    var path: String
    var mode: FileMode
    var content: Content
}

/// A validated file set as a directory tree.
final class InputDirectory {
    var files: [String: InputFile] = [:]
    var directories: [String: InputDirectory] = [:]

    var isEmpty: Bool { files.isEmpty && directories.isEmpty }

    func insert(_ file: InputFile, at components: [String]) throws(GitError) {
        var directory = self
        for (depth, name) in components.dropLast().enumerated() {
            if directory.files[name] != nil {
                let prefix = components[...depth].joined(separator: "/")
                throw GitError(
                    code: .invalidPath, message: "\(prefix) is both a file and a directory in the input", path: file.path)
            }
            if let next = directory.directories[name] {
                directory = next
            } else {
                let next = InputDirectory()
                directory.directories[name] = next
                directory = next
            }
        }
        let name = components.last!
        if directory.files[name] != nil {
            throw GitError(code: .invalidPath, message: "duplicate path in the input: \(file.path)", path: file.path)
        }
        if directory.directories[name] != nil {
            throw GitError(code: .invalidPath, message: "\(file.path) is both a file and a directory in the input", path: file.path)
        }
        directory.files[name] = file
    }
}

/// A validated file set: every path, mode, size and symlink target is checked before any
/// object is written, so a rejected input leaves nothing behind.
struct FileSet {
    let root: InputDirectory
    let count: Int
    /// Open directory of a ``FileSource/directory(_:)`` source, to read file contents from.
    let directory: DirectoryReader?

    static func collect(_ source: FileSource, maxFileSize: Int) throws(GitError) -> FileSet {
        switch source {
        case .entries(let entries):
            return try collect(entries: entries, maxFileSize: maxFileSize)
        case .directory(let path):
            let reader = try DirectoryReader(path: path, maxFileSize: maxFileSize)
            var walk = DirectoryWalk(reader: reader)
            try walk.run()
            for (components, target) in walk.symlinks {
                try walk.validator.validate(path: components, target: target)
            }
            return FileSet(root: walk.root, count: walk.count, directory: reader)
        }
    }

    private static func collect(entries: [FileEntry], maxFileSize: Int) throws(GitError) -> FileSet {
        let root = InputDirectory()
        var validator = SymlinkValidator()
        var symlinks: [([String], String)] = []
        for entry in entries {
            let components = try PathRules.components(of: entry.path)
            if entry.contents.count > maxFileSize {
                throw GitError(
                    code: .fileTooLarge,
                    message: "\(entry.path) is \(entry.contents.count) bytes, more than the limit of \(maxFileSize)",
                    path: entry.path)
            }
            if entry.mode == .symlink {
                guard let target = String(validating: entry.contents, as: UTF8.self) else {
                    throw GitError(code: .invalidPath, message: "symlink \(entry.path) target is not UTF-8", path: entry.path)
                }
                validator.links[components.joined(separator: "/")] = target
                symlinks.append((components, target))
            }
            try root.insert(InputFile(path: entry.path, mode: entry.mode, content: .bytes(entry.contents)), at: components)
        }
        for (components, target) in symlinks {
            try validator.validate(path: components, target: target)
        }
        return FileSet(root: root, count: entries.count, directory: nil)
    }

    /// The bytes of `file`.
    func contents(of file: InputFile) throws(GitError) -> [UInt8] {
        switch file.content {
        case .bytes(let bytes): return bytes
        case .disk:
            guard let directory else {
                throw GitError(code: .io, message: "no source directory for \(file.path)", path: file.path)
            }
            return try directory.read(file.path)
        }
    }
}

/// Walks a source directory without following symlinks (`openat`/`fstatat` relative to open
/// directory descriptors, `O_NOFOLLOW`).
private struct DirectoryWalk {
    let reader: DirectoryReader
    let root = InputDirectory()
    var count = 0
    var validator = SymlinkValidator()
    var symlinks: [([String], String)] = []

    init(reader: DirectoryReader) { self.reader = reader }

    mutating func run() throws(GitError) {
        let fd = dup(reader.fd)
        guard fd >= 0 else { throw posixError("cannot read directory", reader.path) }
        try walk(fd: fd, components: [])
    }

    /// Takes ownership of `fd`.
    private mutating func walk(fd: Int32, components: [String]) throws(GitError) {
        guard let stream = fdopendir(fd) else {
            close(fd)
            throw posixError("cannot read directory", display(components))
        }
        defer { closedir(stream) }
        if components.count > 512 {
            throw GitError(code: .invalidPath, message: "directory nesting too deep at \(display(components))", path: display(components))
        }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { throw posixError("cannot read directory", display(components)) }
                break
            }
            let rawName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                Array(raw.prefix { $0 != 0 })
            }
            if rawName == [UInt8(ascii: ".")] || rawName == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            guard let name = String(validating: rawName, as: UTF8.self) else {
                let shown = display(components + [String(decoding: rawName, as: UTF8.self)])
                throw GitError(code: .invalidPath, message: "file name is not valid UTF-8: \(shown)", path: shown)
            }
            names.append(name)
        }
        let directoryFD = dirfd(stream)
        for name in names.sorted() {
            let path = components + [name]
            let shown = display(path)
            try PathRules.validate(component: name, in: shown)
            var info = stat()
            guard fstatat(directoryFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw posixError("cannot stat", shown)
            }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                let child = openat(directoryFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { throw posixError("cannot open directory", shown) }
                try walk(fd: child, components: path)
            case S_IFREG:
                try reader.checkSize(Int(info.st_size), shown)
                let mode: FileMode = (info.st_mode & S_IXUSR) != 0 ? .executable : .regular
                try root.insert(InputFile(path: shown, mode: mode, content: .disk), at: path)
                count += 1
            case S_IFLNK:
                let target = try readLink(directoryFD, name, shown, size: Int(info.st_size))
                guard let text = String(validating: target, as: UTF8.self) else {
                    throw GitError(code: .invalidPath, message: "symlink \(shown) target is not UTF-8", path: shown)
                }
                validator.links[shown] = text
                symlinks.append((path, text))
                try root.insert(InputFile(path: shown, mode: .symlink, content: .bytes(target)), at: path)
                count += 1
            default:
                let kind: String
                switch info.st_mode & S_IFMT {
                case S_IFIFO: kind = "a fifo"
                case S_IFSOCK: kind = "a socket"
                case S_IFCHR: kind = "a character device"
                case S_IFBLK: kind = "a block device"
                default: kind = "an unsupported file type"
                }
                throw GitError(code: .unsupportedFileType, message: "\(shown) is \(kind)", path: shown)
            }
        }
    }

    private func readLink(_ directoryFD: Int32, _ name: String, _ shown: String, size: Int) throws(GitError) -> [UInt8] {
        try reader.checkSize(size, shown)
        var buffer = [UInt8](repeating: 0, count: max(size, 255) + 1)
        let length = buffer.withUnsafeMutableBufferPointer { raw in
            raw.withMemoryRebound(to: CChar.self) { readlinkat(directoryFD, name, $0.baseAddress!, $0.count) }
        }
        guard length >= 0 else { throw posixError("cannot read symlink", shown) }
        guard length < buffer.count else {
            throw GitError(code: .io, message: "symlink \(shown) changed while reading", path: shown)
        }
        return Array(buffer[..<length])
    }

    private func display(_ components: [String]) -> String {
        components.isEmpty ? "." : components.joined(separator: "/")
    }
}

/// An open source directory from which files are read by relative path.
final class DirectoryReader {
    let fd: Int32
    let path: String
    let maxFileSize: Int

    init(path: String, maxFileSize: Int) throws(GitError) {
        self.path = path
        self.maxFileSize = maxFileSize
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw GitError(code: .notFound, message: "source directory \(path) does not exist") }
            if code == ENOTDIR { throw GitError(code: .invalidArgument, message: "source \(path) is not a directory") }
            throw posixError("cannot open source directory", path, errno: code)
        }
        self.fd = fd
    }

    deinit { close(fd) }

    func checkSize(_ size: Int, _ shown: String) throws(GitError) {
        if size > maxFileSize {
            throw GitError(
                code: .fileTooLarge, message: "\(shown) is \(size) bytes, more than the limit of \(maxFileSize)", path: shown)
        }
    }

    /// Reads a regular file; refuses anything that became a symlink or special file meanwhile.
    func read(_ relative: String) throws(GitError) -> [UInt8] {
        let file = openat(fd, relative, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard file >= 0 else { throw posixError("cannot open", relative) }
        defer { close(file) }
        var info = stat()
        guard fstat(file, &info) == 0 else { throw posixError("cannot stat", relative) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw GitError(code: .unsupportedFileType, message: "\(relative) is no longer a regular file", path: relative)
        }
        try checkSize(Int(info.st_size), relative)
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var offset = 0
        while offset < bytes.count {
            let got = bytes.withUnsafeMutableBytes { raw in
                systemRead(file, raw.baseAddress! + offset, raw.count - offset)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw posixError("cannot read", relative)
            }
            if got == 0 { break }
            offset += got
        }
        if offset < bytes.count { bytes.removeLast(bytes.count - offset) }
        // A file that grew after fstat: read the rest, still bounded by the size limit.
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = chunk.withUnsafeMutableBytes { systemRead(file, $0.baseAddress!, $0.count) }
            if got < 0 {
                if errno == EINTR { continue }
                throw posixError("cannot read", relative)
            }
            if got == 0 { break }
            bytes.append(contentsOf: chunk[..<got])
            try checkSize(bytes.count, relative)
        }
        return bytes
    }
}

func posixError(_ what: String, _ path: String, errno code: Int32 = errno) -> GitError {
    let reason = String(cString: strerror(code))
    return GitError(code: .io, message: "\(what) \(path): \(reason)", path: path)
}

private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.read(fd, buffer, count)
    #else
    Darwin.read(fd, buffer, count)
    #endif
}
