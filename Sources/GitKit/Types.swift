import CLibGit2
import Foundation

/// A SHA-1 git object id.
public struct ObjectID: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    // Three integers instead of a 20-byte tuple: Hashable/Comparable for free, no allocation.
    private var a: UInt64
    private var b: UInt64
    private var c: UInt32

    init(_ oid: git_oid) {
        var copy = oid
        (a, b, c) = withUnsafeBytes(of: &copy.id) { raw in
            (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self).bigEndian,
             raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self).bigEndian,
             raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self).bigEndian)
        }
    }

    init(_ pointer: UnsafePointer<git_oid>) {
        self.init(pointer.pointee)
    }

    var oid: git_oid {
        var result = git_oid()
        withUnsafeMutableBytes(of: &result.id) { raw in
            raw.storeBytes(of: a.bigEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: b.bigEndian, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: c.bigEndian, toByteOffset: 16, as: UInt32.self)
        }
        return result
    }

    /// Parses 40 hexadecimal digits (either case).
    public init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count == 40 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 20)
        for index in 0..<20 {
            guard let high = Self.nibble(digits[2 * index]), let low = Self.nibble(digits[2 * index + 1]) else { return nil }
            bytes[index] = high << 4 | low
        }
        var oid = git_oid()
        withUnsafeMutableBytes(of: &oid.id) { $0.copyBytes(from: bytes) }
        self.init(oid)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The 40-digit lower-case hexadecimal form.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(40)
        for word in [a, b] {
            for shift in stride(from: 60, through: 0, by: -4) { out.append(digits[Int((word >> UInt64(shift)) & 0xF)]) }
        }
        for shift in stride(from: 28, through: 0, by: -4) { out.append(digits[Int((c >> UInt32(shift)) & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }

    public static func < (lhs: ObjectID, rhs: ObjectID) -> Bool {
        (lhs.a, lhs.b, lhs.c) < (rhs.a, rhs.b, rhs.c)
    }

    /// The id of the empty tree (`4b825dc6…`).
    public static let emptyTree = ObjectID(hex: "4b825dc642cb6eb9a060e54bf8d69288fbee4904")!

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = ObjectID(hex: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a 40-digit object id"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }
}

/// The mode of a file entry. Only the three modes git stores for files are representable.
public struct FileMode: Hashable, Sendable, CustomStringConvertible {
    /// The git mode bits (`0o100644`, `0o100755`, `0o120000`).
    public let rawValue: UInt32

    private init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// Accepts exactly `0o100644`, `0o100755` and `0o120000`.
    public init?(rawValue: UInt32) {
        switch rawValue {
        case 0o100644, 0o100755, 0o120000: self.rawValue = rawValue
        default: return nil
        }
    }

    /// A regular, non-executable file (`100644`).
    public static let regular = FileMode(0o100644)
    /// An executable file (`100755`).
    public static let executable = FileMode(0o100755)
    /// A symbolic link (`120000`); the entry's bytes are the link target.
    public static let symlink = FileMode(0o120000)

    public var description: String { String(rawValue, radix: 8) }

    var gitMode: git_filemode_t { git_filemode_t(rawValue: rawValue) }
}

/// One input file: a repository-relative path, a mode and the exact bytes (for a symlink, the target).
public struct FileEntry: Sendable, Hashable {
    /// `/`-separated path relative to the file set's root (no leading `/`, no `.`/`..`/empty segments).
    public var path: String
    public var mode: FileMode
    public var contents: [UInt8]

    public init(path: String, mode: FileMode = .regular, contents: [UInt8]) {
        self.path = path
        self.mode = mode
        self.contents = contents
    }

    /// A file with UTF-8 text contents.
    public init(path: String, mode: FileMode = .regular, text: String) {
        self.init(path: path, mode: mode, contents: Array(text.utf8))
    }

    /// A symbolic link to `target` (resolved relative to the link's directory).
    public static func symlink(path: String, target: String) -> FileEntry {
        FileEntry(path: path, mode: .symlink, contents: Array(target.utf8))
    }
}

/// Where the files of a tree build come from.
public enum FileSource: Sendable {
    /// Every regular file, executable and symlink below a directory on disk (recursively).
    /// Empty directories are not represented (git cannot store them); anything else that is
    /// unusual (a `.git` entry, a fifo, a device, a socket, a non-UTF-8 name) is an error.
    case directory(String)
    /// An explicit list of entries.
    case entries([FileEntry])
}

/// How a file set is applied to the parent tree.
public enum TreeUpdateMode: Sendable, Hashable {
    /// Write the files over the parent tree; everything else is kept.
    case overlay
    /// The subtree under `root` becomes exactly the file set, except parent paths matching one of
    /// the `preserve` patterns, which are kept unless the file set has an entry at that path.
    /// Pattern syntax: see ``PreservePatterns``.
    case sync(preserve: [String])
}

/// Options of a tree build.
public struct TreeBuildOptions: Sendable, Hashable {
    /// Directory prefix (relative, `/`-separated) under which the files land; `""` is the top.
    public var root: String
    public var mode: TreeUpdateMode
    /// Largest accepted file (symlink target) in bytes; larger inputs fail with `file_too_large`.
    public var maxFileSize: Int

    public init(root: String = "", mode: TreeUpdateMode = .overlay, maxFileSize: Int = 100 << 20) {
        self.root = root
        self.mode = mode
        self.maxFileSize = maxFileSize
    }
}

/// Counters of a tree build.
public struct TreeBuildStatistics: Sendable, Hashable {
    /// Files (and symlinks) in the input.
    public var files = 0
    /// Bytes of input read and hashed.
    public var bytesRead = 0
    /// Blobs that did not exist yet and were written.
    public var blobsWritten = 0
    /// Input files identical (id and mode) to the parent entry at the same path.
    public var blobsUnchanged = 0
    /// Input files whose content already existed in the object database at another path.
    public var blobsExisting = 0
    /// Trees created (differing from the parent's tree at the same position).
    public var treesWritten = 0
    /// Parent entries dropped by `sync`.
    public var entriesRemoved = 0
}

/// The outcome of ``RemoteCache/buildTree(parent:files:options:)``.
public struct TreeBuildResult: Sendable, Hashable {
    /// The new root tree.
    public var tree: ObjectID
    /// The parent's root tree, `nil` when there is no parent.
    public var parentTree: ObjectID?
    /// `false` when ``tree`` equals ``parentTree``: nothing to commit.
    public var changed: Bool
    public var statistics: TreeBuildStatistics
}

/// An author or committer identity with a timestamp.
public struct Signature: Sendable, Hashable {
    public var name: String
    public var email: String
    public var date: Date
    /// Offset from UTC in minutes, as recorded in the commit.
    public var timeZoneOffsetMinutes: Int

    public init(name: String, email: String, date: Date = Date(), timeZoneOffsetMinutes: Int = 0) {
        self.name = name
        self.email = email
        self.date = date
        self.timeZoneOffsetMinutes = timeZoneOffsetMinutes
    }
}

/// Result of ``RemoteCache/fetch(branches:transport:)``.
public struct FetchResult: Sendable, Hashable {
    /// Remote tip of every requested branch; `nil` when the branch does not exist on the remote.
    public var tips: [String: ObjectID?]
    /// The branch the remote's `HEAD` points to, when advertised.
    public var defaultBranch: String?
    /// `true` when the remote advertised no references at all (a new, empty repository).
    public var remoteIsEmpty: Bool
    /// Objects received in the pack (0 when everything was already cached).
    public var objectsReceived: Int
    /// Bytes of pack data received.
    public var bytesReceived: Int
    /// Objects injected from the cache to complete a thin pack.
    public var localObjects: Int

    /// The remote tip of `branch`, or `nil` when absent (or not requested).
    public func tip(_ branch: String) -> ObjectID? { tips[branch] ?? nil }
}

/// Result of ``RemoteCache/push(commit:to:expecting:transport:)``.
public struct PushResult: Sendable, Hashable {
    public var branch: String
    public var commit: ObjectID
    /// The remote tip before the push (`nil`: the branch was created).
    public var previous: ObjectID?
    /// `true` when the remote already pointed at ``commit``; nothing was sent.
    public var upToDate: Bool
    /// Objects in the pack sent.
    public var objectsSent: Int
    /// Bytes of pack data sent.
    public var bytesSent: Int
}
