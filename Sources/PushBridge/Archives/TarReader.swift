/// One member of a tar stream, with pax / GNU long-name extensions already applied.
struct TarEntry: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case regular
        case directory
        case symlink(target: String)
        case hardLink(target: String)
        case characterDevice
        case blockDevice
        case fifo
        case other(UInt8)
    }

    /// Path as stored (raw bytes decoded as UTF-8; NUL bytes inside a pax path are kept so that
    /// validation can reject them).
    var path: String
    var kind: Kind
    /// Permission bits from the header.
    var mode: UInt32
    /// Bytes of data that follow (regular files only; zero otherwise).
    var size: Int
}

/// Events produced by ``TarReader``.
enum TarEvent {
    /// A member header; its data (if any) follows as `.data` events totalling `entry.size`.
    case entry(TarEntry)
    /// A chunk of the current member's data.
    case data(ArraySlice<UInt8>)
    /// The current member's data is complete.
    case endOfEntry
}

/// A push-style streaming reader of POSIX ustar, GNU (`L`/`K` long names, base-256 sizes) and
/// pax (`x` headers with `path`, `linkpath`, `size`) tar streams.
///
/// Hand-written because none of the packages pushbridge may depend on reads tar. It never holds
/// more than one 512-byte header plus one pending extension record (bounded) in memory: file
/// data is handed to the caller chunk by chunk as it arrives, so archives are unpacked without
/// being buffered.
struct TarReader {
    /// Pax and GNU long-name records larger than this are refused (they are metadata only).
    static let maxExtensionBytes = 1 << 20

    private enum State {
        case header
        /// Streaming the data of a member the caller sees.
        case data(remaining: Int, padding: Int)
        /// Collecting the data of a pax / GNU extension record.
        case extensionRecord(type: UInt8, remaining: Int, padding: Int)
        case padding(remaining: Int)
        case finished
    }

    private var state: State = .header
    private var header: [UInt8] = []
    private var extensionData: [UInt8] = []
    private var zeroBlocks = 0
    /// Overrides from pax `x` / GNU `L`/`K` records for the next member.
    private var pendingPath: String?
    private var pendingLinkPath: String?
    private var pendingSize: Int?

    /// `true` once the end-of-archive marker (two zero blocks) has been read.
    var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// Consumes `bytes`, calling `emit` for every event they complete.
    mutating func consume(_ bytes: ArraySlice<UInt8>, emit: (TarEvent) throws -> Void) throws {
        var input = bytes
        while !input.isEmpty {
            switch state {
            case .finished:
                // Anything after the end marker must be zero padding (tar writes whole records).
                guard input.allSatisfy({ $0 == 0 }) else {
                    throw ArchiveError(.invalidArchive, "data after the end-of-archive marker")
                }
                return
            case .header:
                let take = min(512 - header.count, input.count)
                header.append(contentsOf: input.prefix(take))
                input = input.dropFirst(take)
                if header.count == 512 {
                    let block = header
                    header.removeAll(keepingCapacity: true)
                    try processHeader(block, emit: emit)
                }
            case .data(let remaining, let padding):
                let take = min(remaining, input.count)
                if take > 0 { try emit(.data(input.prefix(take))) }
                input = input.dropFirst(take)
                if take == remaining {
                    try emit(.endOfEntry)
                    state = padding > 0 ? .padding(remaining: padding) : .header
                } else {
                    state = .data(remaining: remaining - take, padding: padding)
                }
            case .extensionRecord(let type, let remaining, let padding):
                let take = min(remaining, input.count)
                extensionData.append(contentsOf: input.prefix(take))
                input = input.dropFirst(take)
                if take == remaining {
                    try applyExtension(type: type)
                    state = padding > 0 ? .padding(remaining: padding) : .header
                } else {
                    state = .extensionRecord(type: type, remaining: remaining - take, padding: padding)
                }
            case .padding(let remaining):
                let take = min(remaining, input.count)
                input = input.dropFirst(take)
                state = take == remaining ? .header : .padding(remaining: remaining - take)
            }
        }
    }

    /// Checks the stream ended cleanly: on a member boundary, with the end-of-archive marker.
    ///
    /// The marker is required so that a truncated upload (a gzip stream cut at a member boundary
    /// decompresses to a shorter, well-formed prefix) is refused instead of silently unpacked.
    func finish() throws {
        switch state {
        case .finished:
            return
        case .header where header.isEmpty && zeroBlocks == 1:
            return  // some writers emit a single zero block
        default:
            throw ArchiveError(.invalidArchive, "archive is truncated (no end-of-archive marker)")
        }
    }

    private mutating func processHeader(_ block: [UInt8], emit: (TarEvent) throws -> Void) throws {
        if block.allSatisfy({ $0 == 0 }) {
            zeroBlocks += 1
            if zeroBlocks == 2 { state = .finished }
            return
        }
        guard zeroBlocks == 0 else {
            throw ArchiveError(.invalidArchive, "unexpected zero block inside the archive")
        }
        try Self.verifyChecksum(block)
        let type = block[156]
        var size = try pendingSize ?? Self.number(block[124..<136], field: "size")
        let mode = UInt32(truncatingIfNeeded: try Self.number(block[100..<108], field: "mode"))

        switch type {
        case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
            // Extension records describe the next member (x, L, K) or all members (g).
            size = try Self.number(block[124..<136], field: "size")
            guard size <= Self.maxExtensionBytes else {
                throw ArchiveError(.invalidArchive, "extension header of \(size) bytes is too large")
            }
            extensionData.removeAll(keepingCapacity: true)
            state = size == 0 ? .header : .extensionRecord(type: type, remaining: size, padding: Self.padding(size))
            if size == 0 { try applyExtension(type: type) }
            return
        default:
            break
        }

        var path = pendingPath ?? Self.ustarPath(block)
        let linkTarget = pendingLinkPath ?? Self.string(block[157..<257])
        pendingPath = nil
        pendingLinkPath = nil
        pendingSize = nil

        let kind: TarEntry.Kind
        switch type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
            kind = path.hasSuffix("/") && size == 0 ? .directory : .regular
        case UInt8(ascii: "1"): kind = .hardLink(target: linkTarget)
        case UInt8(ascii: "2"): kind = .symlink(target: linkTarget)
        case UInt8(ascii: "3"): kind = .characterDevice
        case UInt8(ascii: "4"): kind = .blockDevice
        case UInt8(ascii: "5"): kind = .directory
        case UInt8(ascii: "6"): kind = .fifo
        default: kind = .other(type)
        }
        if case .directory = kind, path.hasSuffix("/") { path.removeLast() }
        // Only regular files carry data the caller sees; anything else with a size is skipped.
        let visibleSize = kind == .regular ? size : 0
        try emit(.entry(TarEntry(path: path, kind: kind, mode: mode & 0o7777, size: visibleSize)))
        if kind == .regular {
            if size == 0 {
                try emit(.endOfEntry)
            } else {
                state = .data(remaining: size, padding: Self.padding(size))
            }
        } else if size > 0 {
            state = .padding(remaining: size + Self.padding(size))
        }
    }

    private mutating func applyExtension(type: UInt8) throws {
        defer { extensionData.removeAll(keepingCapacity: true) }
        switch type {
        case UInt8(ascii: "L"):
            pendingPath = Self.string(extensionData[...])
        case UInt8(ascii: "K"):
            pendingLinkPath = Self.string(extensionData[...])
        case UInt8(ascii: "x"):
            for (key, value) in try Self.paxRecords(extensionData) {
                switch key {
                case "path": pendingPath = value
                case "linkpath": pendingLinkPath = value
                case "size":
                    guard let size = Int(value), size >= 0 else {
                        throw ArchiveError(.invalidArchive, "invalid pax size \"\(value)\"")
                    }
                    pendingSize = size
                default: break  // mtime, uid, uname, xattrs…: irrelevant to a git tree
                }
            }
        default:
            break  // 'g' global headers: nothing pushbridge uses
        }
    }

    /// Parses `"<len> <key>=<value>\n"` records.
    static func paxRecords(_ data: [UInt8]) throws -> [(String, String)] {
        var records: [(String, String)] = []
        var index = 0
        while index < data.count {
            guard let space = data[index...].firstIndex(of: UInt8(ascii: " ")),
                let length = Int(String(decoding: data[index..<space], as: UTF8.self)), length > 0,
                index + length <= data.count, data[index + length - 1] == UInt8(ascii: "\n")
            else { throw ArchiveError(.invalidArchive, "malformed pax extended header") }
            let record = data[(space + 1)..<(index + length - 1)]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else {
                throw ArchiveError(.invalidArchive, "malformed pax extended header")
            }
            records.append(
                (String(decoding: record[..<equals], as: UTF8.self),
                 String(decoding: record[(equals + 1)...], as: UTF8.self)))
            index += length
        }
        return records
    }

    static func padding(_ size: Int) -> Int { (512 - size % 512) % 512 }

    /// `prefix + "/" + name` for ustar, `name` otherwise.
    static func ustarPath(_ block: [UInt8]) -> String {
        let name = string(block[0..<100])
        let isUstar = block[257..<262].elementsEqual("ustar".utf8)
        let isGNU = isUstar && block[262] == UInt8(ascii: " ")  // GNU uses "ustar  \0" and no prefix field
        if isUstar && !isGNU {
            let prefix = string(block[345..<500])
            if !prefix.isEmpty { return prefix + "/" + name }
        }
        return name
    }

    /// A NUL-terminated field as UTF-8.
    static func string(_ field: ArraySlice<UInt8>) -> String {
        let end = field.firstIndex(of: 0) ?? field.endIndex
        return String(decoding: field[field.startIndex..<end], as: UTF8.self)
    }

    /// An octal field (space/NUL terminated) or a GNU base-256 field (high bit set).
    static func number(_ field: ArraySlice<UInt8>, field name: String) throws -> Int {
        if let first = field.first, first & 0x80 != 0 {
            guard first & 0x40 == 0 else { throw ArchiveError(.invalidArchive, "negative \(name) in tar header") }
            var value = Int(first & 0x3F)
            for byte in field.dropFirst() {
                guard value <= (Int.max >> 8) else { throw ArchiveError(.invalidArchive, "\(name) overflows") }
                value = value << 8 | Int(byte)
            }
            return value
        }
        var value = 0
        var seenDigit = false
        for byte in field {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard value <= (Int.max >> 3) else { throw ArchiveError(.invalidArchive, "\(name) overflows") }
                value = value << 3 | Int(byte - UInt8(ascii: "0"))
                seenDigit = true
            case UInt8(ascii: " ") where !seenDigit:
                continue
            case 0, UInt8(ascii: " "):
                return value
            default:
                throw ArchiveError(.invalidArchive, "invalid \(name) field in tar header")
            }
        }
        return value
    }

    /// The header checksum: sum of all bytes with the checksum field read as spaces. Historic
    /// writers summed signed bytes; both sums are accepted.
    static func verifyChecksum(_ block: [UInt8]) throws {
        let stored = try number(block[148..<156], field: "checksum")
        var unsigned = 0
        var signed = 0
        for (index, byte) in block.enumerated() {
            let value = (148..<156).contains(index) ? UInt8(ascii: " ") : byte
            unsigned += Int(value)
            signed += Int(Int8(bitPattern: value))
        }
        guard stored == unsigned || stored == signed else {
            throw ArchiveError(.invalidArchive, "tar header checksum mismatch (not a tar archive?)")
        }
    }
}
