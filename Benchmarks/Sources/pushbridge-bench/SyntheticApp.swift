import Foundation

/// A deterministic synthetic "generated application": nested directories of text files
/// whose paths, sizes and bytes are a pure function of a seed.
///
/// Content is computed on demand (`content(ofFile:version:)`) rather than kept in memory,
/// so a 20,000-file repository with history can be streamed into `git fast-import` without
/// the benchmark process holding ~100 MB of file bodies — that would distort the peak-RSS
/// figure recorded for GitKit.
struct SyntheticApp: Sendable {
    struct File: Sendable {
        /// Repository-relative path with `/` separators.
        let path: String
        /// Size of version 0 in bytes.
        let size: Int
    }

    let seed: UInt64
    let files: [File]

    /// - Parameters:
    ///   - fileCount: number of files.
    ///   - sizes: file sizes are log-uniform in this range (source trees have many small
    ///     files and few large ones; a log-uniform draw models that better than uniform).
    init(seed: UInt64, fileCount: Int, sizes: ClosedRange<Int> = 200...20_000) {
        self.seed = seed
        var rng = SplitMix64(seed: seed, 1)
        // Roots with a nesting that grows as files are added: a file starts a new
        // subdirectory with some probability, otherwise lands in an existing one. Depth is
        // capped at 6, which gives paths like src/billingCore/invoice/render/pdf/x.swift.
        var dirs: [(path: String, depth: Int)] = ["src", "lib", "tests", "docs", "config", "web"].map { ($0, 1) }
        var used = Set<String>()
        var files: [File] = []
        files.reserveCapacity(fileCount)
        let logMin = log(Double(sizes.lowerBound))
        let logMax = log(Double(sizes.upperBound))
        for _ in 0..<fileCount {
            var dir = dirs[rng.below(dirs.count)]
            if rng.unit() < 0.08 && dir.depth < 6 {
                let name = Vocabulary.identifier(&rng, capitalized: false)
                dir = ("\(dir.path)/\(name)", dir.depth + 1)
                dirs.append(dir)
            }
            let ext = Vocabulary.extensions[rng.below(Vocabulary.extensions.count)]
            let base = Vocabulary.identifier(&rng, capitalized: true)
            var path = "\(dir.path)/\(base).\(ext)"
            var suffix = 2
            while used.contains(path) || used.contains(path.lowercased()) {
                path = "\(dir.path)/\(base)\(suffix).\(ext)"
                suffix += 1
            }
            used.insert(path)
            used.insert(path.lowercased())
            let size = Int(exp(logMin + rng.unit() * (logMax - logMin)).rounded())
            files.append(File(path: path, size: min(max(size, sizes.lowerBound), sizes.upperBound)))
        }
        self.files = files
    }

    /// Total bytes of version 0 of every file.
    var totalBytes: Int { files.reduce(0) { $0 + $1.size } }

    /// Bytes of `file` at `version`. Version 0 is the base text; version v > 0 is the base
    /// with one region (5–15 % of the file) rewritten, like an edit by a code generator.
    /// Each version is derived from the base (not from version v-1) so it can be computed
    /// without replaying history, while consecutive versions still delta well against
    /// each other, as real edits do.
    func content(ofFile index: Int, version: Int) -> [UInt8] {
        let size = files[index].size
        var rng = SplitMix64(seed: seed, 2, UInt64(index))
        var bytes = Vocabulary.text(&rng, count: size)
        guard version > 0 else { return bytes }
        var edit = SplitMix64(seed: seed, 3, UInt64(index), UInt64(version))
        let length = max(64, size * (5 + edit.below(11)) / 100)
        let start = edit.below(max(1, size - length))
        let end = min(size, start + length)
        let replacement = Vocabulary.text(&edit, count: end - start)
        bytes.replaceSubrange(start..<end, with: replacement)
        return bytes
    }

    /// Writes version 0 of every file below `directory` (created if needed).
    func write(to directory: URL) throws {
        try write(files.indices.map { ($0, 0) }, to: directory)
    }

    /// Writes the given `(file index, version)` pairs below `directory`.
    func write(_ versions: [(file: Int, version: Int)], to directory: URL) throws {
        let fm = FileManager.default
        var created = Set<String>()
        for (index, version) in versions {
            let url = directory.appendingPathComponent(files[index].path)
            let parent = url.deletingLastPathComponent().path
            if created.insert(parent).inserted {
                try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
            }
            try Data(content(ofFile: index, version: version)).write(to: url)
        }
    }
}

/// Word lists and line shapes for code-like text. The aim is bytes that compress like
/// real source code (zlib ratio ≈ 3–5), so pack sizes and transfer volumes are realistic.
enum Vocabulary {
    static let extensions = ["swift", "ts", "js", "json", "md", "yml", "css", "go", "py", "sql"]

    static let words = [
        "account", "adapter", "alpha", "amount", "api", "apply", "audit", "auth", "balance", "batch",
        "billing", "bind", "buffer", "build", "cache", "call", "cancel", "card", "charge", "check",
        "client", "close", "config", "connect", "context", "count", "create", "credit", "cursor", "customer",
        "data", "debit", "decode", "default", "delete", "delta", "detail", "draft", "emit", "encode",
        "entry", "error", "event", "export", "fetch", "field", "filter", "find", "format", "gateway",
        "handle", "header", "id", "import", "index", "info", "input", "invoice", "item", "job",
        "key", "ledger", "limit", "line", "list", "load", "lock", "log", "map", "merge",
        "meta", "model", "name", "node", "offset", "open", "order", "owner", "page", "parse",
        "payment", "plan", "policy", "post", "price", "query", "queue", "rate", "read", "record",
        "refund", "render", "report", "request", "reset", "result", "retry", "route", "rule", "save",
        "schema", "scope", "send", "service", "session", "state", "status", "store", "stream", "sync",
        "tax", "tenant", "token", "total", "trace", "update", "user", "value", "verify", "write",
    ]
    static let types = ["String", "Int", "Bool", "Double", "Date", "UUID", "Data", "[String]", "Decimal", "URL"]

    static func identifier(_ rng: inout SplitMix64, capitalized: Bool) -> String {
        let count = 1 + rng.below(3)
        var out = ""
        for i in 0..<count {
            let w = words[rng.below(words.count)]
            out += (i == 0 && !capitalized) ? w : w.prefix(1).uppercased() + w.dropFirst()
        }
        return out
    }

    /// Exactly `count` bytes of code-like lines, ending in a newline when `count > 0`.
    /// Each call draws a small local vocabulary and mostly uses it, the way one source
    /// file keeps reusing its own identifiers — that is what makes real code compress.
    static func text(_ rng: inout SplitMix64, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count + 128)
        var indent = 0
        let local = (0..<12).map { _ in words[rng.below(words.count)] }
        func w(_ rng: inout SplitMix64) -> String {
            rng.below(8) == 0 ? words[rng.below(words.count)] : local[rng.below(local.count)]
        }
        func ident(_ rng: inout SplitMix64) -> String {
            rng.below(2) == 0 ? w(&rng) : w(&rng) + w(&rng).capitalized
        }
        func type(_ rng: inout SplitMix64) -> String { types[rng.below(4) == 0 ? rng.below(types.count) : 0] }
        while out.count < count {
            let line: String
            switch rng.below(14) {
            case 0:
                line = "func \(ident(&rng))(_ \(w(&rng)): \(type(&rng))) throws -> \(type(&rng)) {"
            case 1:
                line = "// \(w(&rng)) the \(w(&rng)) for the \(w(&rng)) \(w(&rng))"
            case 2:
                line = "if \(w(&rng)).\(w(&rng)) > \(rng.below(4)) {"
            case 3 where indent > 0, 4 where indent > 0:
                line = "}"
            case 5:
                line = "return try \(ident(&rng))(\(w(&rng)), \(w(&rng)))"
            case 6:
                line = "guard let \(w(&rng)) = \(w(&rng)) else { return nil }"
            case 7:
                line = "\"\(w(&rng))\": \"\(w(&rng))\","
            case 8:
                line = "self.\(w(&rng)) = \(w(&rng))"
            case 9:
                line = ""
            default:
                line = "let \(w(&rng)) = try \(w(&rng)).\(ident(&rng))(\(w(&rng)): \(w(&rng)))"
            }
            if line == "}" { indent -= 1 }
            out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 4 * max(0, indent)))
            out.append(contentsOf: line.utf8)
            out.append(UInt8(ascii: "\n"))
            if line.hasSuffix("{") && indent < 4 { indent += 1 }
        }
        if count > 0 {
            out.removeLast(out.count - count)
            out[count - 1] = UInt8(ascii: "\n")
        }
        return out
    }
}
