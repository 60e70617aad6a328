#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CompressNIO
import Crypto
import Foundation
import NIOCore

/// An unpacked upload, as returned by `POST /v1/archives`.
public struct ArchiveInfo: Codable, Sendable, Hashable {
    /// What a job names in `source.archive`; equal to ``sha256`` (archives are content-addressed).
    public var id: String
    /// Lowercase hex SHA-256 of the uploaded bytes (compressed form, as sent).
    public var sha256: String
    /// Regular files and symlinks unpacked (directories not counted).
    public var files: Int
    /// Size of the upload in bytes.
    public var bytes: Int
    /// Sum of the unpacked regular files' sizes.
    public var expandedBytes: Int
    /// When this content was first unpacked.
    public var createdAt: Date

    public init(id: String, sha256: String, files: Int, bytes: Int, expandedBytes: Int, createdAt: Date) {
        self.id = id
        self.sha256 = sha256
        self.files = files
        self.bytes = bytes
        self.expandedBytes = expandedBytes
        self.createdAt = createdAt
    }
}

/// Archives of generated files, unpacked under `<dataDir>/archives/<sha256>/`.
///
/// Uploads are streamed to a temporary file while hashed (never held in memory), then unpacked
/// into a staging directory and renamed into place, so a reader never sees a half-unpacked tree.
/// Identical uploads share one tree. A manifest `<sha256>.json` beside the tree records
/// ``ArchiveInfo``; its modification time is the archive's last use, which garbage collection reads.
public struct ArchiveStore: Sendable {
    /// `<dataDir>/archives`.
    public let directory: String
    public let limits: ArchiveLimits

    private var incoming: String { directory + "/.incoming" }

    public init(directory: String, limits: ArchiveLimits) {
        self.directory = directory
        self.limits = limits
    }

    /// Whether `id` has the shape of an archive id (64 lowercase hex digits). Anything else is
    /// refused before it can be used to build a path.
    public static func isValidID(_ id: String) -> Bool {
        id.utf8.count == 64 && id.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// Streams `body` to disk, hashes it, and unpacks it (tar, or tar.gz detected by its magic bytes).
    ///
    /// - Returns: The archive's info; an upload identical to an earlier one returns the earlier
    ///   archive (and marks it used now).
    /// - Throws: ``ArchiveError`` for limits and bad content; errors of `body` (client went away) as is.
    public func ingest<Body: AsyncSequence>(_ body: Body) async throws -> ArchiveInfo where Body.Element == ByteBuffer {
        try createDirectory(incoming)
        let uploadPath = incoming + "/\(UUID().uuidString).upload"
        defer { unlink(uploadPath) }

        let fd = open(uploadPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Self.ioError("open", uploadPath) }
        var hasher = SHA256()
        var total = 0
        do {
            defer { close(fd) }
            for try await chunk in body {
                total += chunk.readableBytes
                guard total <= limits.maxArchiveBytes else {
                    throw ArchiveError(
                        .archiveTooLarge, "archive is larger than the limit of \(limits.maxArchiveBytes) bytes")
                }
                try chunk.withUnsafeReadableBytes { buffer in
                    hasher.update(bufferPointer: buffer)
                    try Self.writeAll(fd, buffer) { Self.ioError("write", uploadPath) }
                }
            }
        }
        guard total > 0 else { throw ArchiveError(.invalidArchive, "archive is empty") }
        let sha256 = hasher.finalize().map { String(format: "%02x", $0) }.joined()

        if let existing = try info(id: sha256) {
            touch(id: sha256)
            return existing
        }
        let limits = self.limits
        let directory = self.directory
        let size = total
        // Unpacking is blocking file I/O: keep it off the cooperative thread pool.
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(
                    with: Result {
                        try Self.unpack(
                            upload: uploadPath, sha256: sha256, size: size, directory: directory, limits: limits)
                    })
            }
        }
    }

    /// The info of archive `id`, or `nil` when there is none (or `id` is not an archive id).
    public func info(id: String) throws -> ArchiveInfo? {
        guard Self.isValidID(id) else { return nil }
        let manifest = directory + "/\(id).json"
        guard let data = FileManager.default.contents(atPath: manifest) else { return nil }
        guard FileManager.default.fileExists(atPath: directory + "/\(id)") else { return nil }
        do {
            return try Self.decoder.decode(ArchiveInfo.self, from: data)
        } catch {
            throw ArchiveError(.io, "archive manifest \(id).json is unreadable: \(error)")
        }
    }

    /// The directory holding archive `id`'s files.
    ///
    /// - Throws: ``ArchiveError`` `archive_not_found`.
    public func root(id: String) throws -> String {
        guard try info(id: id) != nil else {
            throw ArchiveError(.notFound, "archive \"\(ArchivePath.printable(id))\" does not exist")
        }
        return directory + "/\(id)"
    }

    /// Marks archive `id` as used now, postponing its garbage collection.
    public func touch(id: String) {
        guard Self.isValidID(id) else { return }
        utimes(directory + "/\(id).json", nil)
    }

    /// Deletes archives last used before `now - ttl` whose id is not in `keep` (the archives of
    /// queued and running jobs), and leftovers of interrupted uploads older than `ttl`.
    ///
    /// - Returns: The ids deleted.
    public func collectGarbage(ttl: Duration, keep: Set<String>, now: Date = Date()) throws -> [String] {
        let cutoff = now.addingTimeInterval(-Double(ttl.components.seconds))
        let fileManager = FileManager.default
        guard let names = try? fileManager.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        for name in names.sorted() {
            let path = directory + "/" + name
            guard let modified = Self.modificationDate(path), modified < cutoff else { continue }
            if name.hasSuffix(".json") {
                let id = String(name.dropLast(5))
                guard Self.isValidID(id), !keep.contains(id) else { continue }
                // Manifest first: without it the archive is invisible, so a concurrent job lookup
                // fails cleanly instead of seeing a half-deleted tree.
                try? fileManager.removeItem(atPath: path)
                try? fileManager.removeItem(atPath: directory + "/" + id)
                removed.append(id)
            } else if name.hasPrefix(".staging-") {
                try? fileManager.removeItem(atPath: path)
            }
        }
        for name in (try? fileManager.contentsOfDirectory(atPath: incoming)) ?? [] {
            let path = incoming + "/" + name
            if let modified = Self.modificationDate(path), modified < cutoff { try? fileManager.removeItem(atPath: path) }
        }
        // Trees without a manifest (crash between rename and manifest write) are orphans.
        for name in names where Self.isValidID(name) && !names.contains(name + ".json") {
            let path = directory + "/" + name
            if let modified = Self.modificationDate(path), modified < cutoff, !keep.contains(name) {
                try? fileManager.removeItem(atPath: path)
            }
        }
        return removed
    }

    // MARK: - Unpacking

    private static func unpack(
        upload: String, sha256: String, size: Int, directory: String, limits: ArchiveLimits
    ) throws -> ArchiveInfo {
        let staging = directory + "/.staging-\(UUID().uuidString)"
        try createDirectory(staging)
        var keepStaging = false
        defer { if !keepStaging { try? FileManager.default.removeItem(atPath: staging) } }

        let unpacker = ArchiveUnpacker(root: staging, limits: limits)
        try readArchive(at: upload) { event in try unpacker.handle(event) }
        try unpacker.finish()

        let info = ArchiveInfo(
            id: sha256, sha256: sha256, files: unpacker.files, bytes: size,
            // Whole seconds: the manifest stores ISO 8601, which has no fractions.
            expandedBytes: unpacker.expandedBytes, createdAt: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)))
        let final = directory + "/\(sha256)"
        if rename(staging, final) != 0 {
            // Another upload of the same bytes won the race: its tree is identical.
            guard errno == EEXIST || errno == ENOTEMPTY else { throw ioError("rename", final) }
        } else {
            keepStaging = true
        }
        let manifest = directory + "/\(sha256).json"
        if !FileManager.default.fileExists(atPath: manifest) {
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = [.sortedKeys]
            do {
                try encoder.encode(info).write(to: URL(fileURLWithPath: manifest), options: .atomic)
            } catch {
                throw ArchiveError(.io, "cannot write archive manifest: \(error)")
            }
        }
        return info
    }

    /// Feeds the upload through gunzip (when it starts with the gzip magic) and the tar reader.
    private static func readArchive(at path: String, handle: (TarEvent) throws -> Void) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ioError("open", path) }
        defer { close(fd) }

        var tar = TarReader()
        var inflater: ZlibDecompressor?
        var chunk = ByteBufferAllocator().buffer(capacity: 64 * 1024)
        var output = ByteBufferAllocator().buffer(capacity: 256 * 1024)
        var first = true
        while true {
            chunk.clear()
            let count = try chunk.writeWithUnsafeMutableBytes(minimumWritableBytes: 64 * 1024) { buffer in
                let n = read(fd, buffer.baseAddress, buffer.count)
                if n < 0 { throw ioError("read", path) }
                return n
            }
            if count == 0 { break }
            if first {
                first = false
                let magic = chunk.getBytes(at: chunk.readerIndex, length: min(2, count)) ?? []
                if magic == [0x1F, 0x8B] {
                    do {
                        inflater = try ZlibDecompressor(algorithm: .gzip)
                    } catch {
                        throw ArchiveError(.io, "cannot start gzip decompression: \(error)")
                    }
                }
            }
            if let inflater {
                try inflate(inflater, &chunk, &output) { bytes in try tar.consume(bytes, emit: handle) }
            } else {
                try tar.consume(chunk.readableBytesView.withContiguousStorageIfAvailable { Array($0)[...] }
                    ?? Array(chunk.readableBytesView)[...], emit: handle)
            }
        }
        if let inflater {
            // Drain output zlib may still hold after the last input byte.
            var empty = ByteBufferAllocator().buffer(capacity: 16)
            try inflate(inflater, &empty, &output, flushing: true) { bytes in try tar.consume(bytes, emit: handle) }
        }
        try tar.finish()
    }

    /// Runs zlib over `input` until it is consumed, handing every filled output window to `sink`.
    private static func inflate(
        _ inflater: ZlibDecompressor, _ input: inout ByteBuffer, _ output: inout ByteBuffer, flushing: Bool = false,
        sink: (ArraySlice<UInt8>) throws -> Void
    ) throws {
        var more = true
        var ended = false
        while more {
            output.clear()
            let before = input.readerIndex
            do {
                if ended {
                    // The previous gzip member ended with input left: RFC 1952 allows several
                    // members back to back, each starting a fresh stream.
                    try inflater.reset()
                    ended = false
                }
                try inflater.inflate(from: &input, to: &output)
                more = false
                if input.readableBytes > 0 {
                    guard input.readerIndex != before || output.readableBytes > 0 else {
                        throw ArchiveError(.invalidArchive, "gzip stream does not progress")
                    }
                    ended = true
                }
            } catch let error as CompressNIOError where error == .bufferOverflow {
                more = true  // output window full: hand it over and continue
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                more = false  // needs the next input chunk
            } catch let error as CompressNIOError {
                throw ArchiveError(.invalidArchive, "gzip data is corrupt (\(error))")
            }
            if output.readableBytes > 0 {
                try sink(Array(output.readableBytesView)[...])
            }
            if !flushing && input.readableBytes > 0 { more = true }
        }
    }

    // MARK: - Helpers

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    private static func modificationDate(_ path: String) -> Date? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec))
    }

    private func createDirectory(_ path: String) throws { try Self.createDirectory(path) }

    private static func createDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw ArchiveError(.io, "cannot create \(path): \(error)")
        }
    }

    /// Writes all of `buffer` to `fd`, retrying short writes and `EINTR`; any other failure throws
    /// `failure()`, built while `errno` still holds the cause. Shared with ``ArchiveUnpacker``.
    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, failure: () -> ArchiveError) throws(ArchiveError) {
        var offset = 0
        while offset < buffer.count {
            let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw failure()
            }
            offset += written
        }
    }

    private static func ioError(_ call: String, _ path: String) -> ArchiveError {
        ArchiveError(.io, "\(call) \(path): \(String(cString: strerror(errno)))")
    }
}
