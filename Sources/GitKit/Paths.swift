#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rules every input path (and the build root) must satisfy.
///
/// A path is `/`-separated and relative. Rejected, with `invalid_path` naming the path:
/// the empty path, a leading `/`, empty segments (`a//b`, trailing `/`), `.` and `..` segments,
/// NUL bytes, backslashes (a directory separator for Windows clients), and any segment that
/// git clients would treat as the `.git` directory: `.git` in any letter case, also with
/// trailing dots or spaces (`.git.`, `.GIT `), with an NTFS stream suffix (`.git::$DATA`), with
/// HFS+-ignorable Unicode code points (`.g\u{200C}it`), and the NTFS short name `git~1`.
///
/// Public so that every other place accepting repository paths (archive uploads) applies the
/// very same rules instead of a weaker copy.
public enum PathRules {
    static func components(of path: String, role: String = "path") throws(GitError) -> [String] {
        if path.isEmpty {
            throw GitError(code: .invalidPath, message: "empty \(role)", path: path)
        }
        if path.utf8.contains(0) {
            throw GitError(code: .invalidPath, message: "\(role) contains a NUL byte: \(printable(path))", path: printable(path))
        }
        if path.hasPrefix("/") {
            throw GitError(code: .invalidPath, message: "\(role) must be relative: \(path)", path: path)
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for part in parts {
            try validate(component: part, in: path, role: role)
        }
        return parts
    }

    /// The root prefix: `""` is the top of the repository.
    static func rootComponents(_ root: String) throws(GitError) -> [String] {
        root.isEmpty ? [] : try components(of: root, role: "root")
    }

    /// Checks one segment of `path`: not empty, not `.`/`..`, no NUL byte, no backslash, not
    /// ``isDotGit(_:)``. `role` names what is checked in the message (`path`, `root`, …).
    ///
    /// - Throws: ``GitError`` `invalid_path` naming `path`.
    public static func validate(component: String, in path: String, role: String = "path") throws(GitError) {
        if component.isEmpty {
            throw GitError(code: .invalidPath, message: "\(role) has an empty segment: \(path)", path: path)
        }
        if component == "." || component == ".." {
            throw GitError(code: .invalidPath, message: "\(role) contains '\(component)': \(path)", path: path)
        }
        if component.utf8.contains(0) {
            throw GitError(code: .invalidPath, message: "\(role) contains a NUL byte: \(printable(path))", path: printable(path))
        }
        if component.contains("\\") {
            throw GitError(code: .invalidPath, message: "\(role) contains a backslash: \(path)", path: path)
        }
        if isDotGit(component) {
            throw GitError(code: .invalidPath, message: "\(role) contains a .git component: \(path)", path: path)
        }
    }

    /// Whether a git client (on any file system) would treat `name` as `.git`.
    public static func isDotGit(_ name: String) -> Bool {
        // HFS+ ignores these code points when comparing names.
        let ignorable: Set<UInt32> = [
            0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
            0x206A, 0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0xFEFF,
        ]
        var folded = String(String.UnicodeScalarView(name.unicodeScalars.filter { !ignorable.contains($0.value) })).lowercased()
        // NTFS: alternate data streams (`.git::$INDEX_ALLOCATION`), trailing dots and spaces.
        if let colon = folded.firstIndex(of: ":") { folded = String(folded[..<colon]) }
        while let last = folded.last, last == "." || last == " " { folded.removeLast() }
        return folded == ".git" || folded == "git~1"
    }

    static func printable(_ path: String) -> String {
        path.replacing("\0", with: "\\0")
    }
}

/// Glob patterns selecting parent paths that `sync` keeps.
///
/// Patterns are matched against paths relative to the build root, segment by segment
/// (gitignore-like, without negation):
/// - `*` matches any run of characters within one segment (including none and leading dots),
///   `?` one character, `[abc]`, `[a-z]`, `[!a-z]` a character class, `\x` the character `x`
///   (POSIX `fnmatch` without flags, applied to a single segment).
/// - A segment `**` matches zero or more whole segments (`**/x`, `a/**/b`); a trailing `/**`
///   matches everything inside (at least one more segment).
/// - A pattern without a `/` (other than a trailing one) matches at any depth: `*.lock` is
///   `**/*.lock`. A pattern with a `/` in the middle or at the start is anchored at the root;
///   a leading `/` is removed.
/// - A trailing `/` restricts the pattern to directories.
/// - A matching directory preserves everything inside it.
/// - Negation (`!`), empty patterns, empty segments and `.`/`..` segments are rejected with
///   `invalid_argument`.
public struct PreservePatterns: Sendable, Hashable {
    enum Segment: Sendable, Hashable {
        case anyDepth
        case glob(String)
    }

    struct Pattern: Sendable, Hashable {
        var segments: [Segment]
        var directoryOnly: Bool
    }

    let patterns: [Pattern]

    /// Parses patterns; throws `invalid_argument` for unsupported syntax.
    public init(_ patterns: [String]) throws(GitError) {
        var parsed: [Pattern] = []
        for raw in patterns {
            parsed.append(try Self.parse(raw))
        }
        self.patterns = parsed
    }

    public var isEmpty: Bool { patterns.isEmpty }

    private static func parse(_ raw: String) throws(GitError) -> Pattern {
        var text = Substring(raw)
        guard !text.isEmpty else { throw GitError(code: .invalidArgument, message: "empty preserve pattern") }
        if text.hasPrefix("!") {
            throw GitError(code: .invalidArgument, message: "negated preserve patterns are not supported: \(raw)")
        }
        if text.utf8.contains(0) { throw GitError(code: .invalidArgument, message: "preserve pattern contains NUL") }
        var directoryOnly = false
        if text.hasSuffix("/") {
            directoryOnly = true
            text = text.dropLast()
        }
        var anchored = text.contains("/")
        if text.hasPrefix("/") {
            anchored = true
            text = text.dropFirst()
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        var segments: [Segment] = anchored ? [] : [.anyDepth]
        for part in parts {
            if part.isEmpty || part == "." || part == ".." {
                throw GitError(code: .invalidArgument, message: "invalid preserve pattern: \(raw)")
            }
            if part == "**" {
                if segments.last != .anyDepth { segments.append(.anyDepth) }
            } else {
                segments.append(.glob(String(part)))
            }
        }
        return Pattern(segments: segments, directoryOnly: directoryOnly)
    }

    /// Whether `path` (relative to the build root) is matched by a pattern itself — not via an
    /// ancestor directory.
    public func matches(_ path: String, isDirectory: Bool) -> Bool {
        matches(path.split(separator: "/").map(String.init)[...], isDirectory: isDirectory)
    }

    /// Whether `path` or one of its ancestor directories is matched.
    public func preserves(_ path: String, isDirectory: Bool) -> Bool {
        let parts = path.split(separator: "/").map(String.init)
        for end in 1..<max(parts.count, 1) where matches(parts[..<end], isDirectory: true) { return true }
        return matches(parts[...], isDirectory: isDirectory)
    }

    func matches(_ path: ArraySlice<String>, isDirectory: Bool) -> Bool {
        patterns.contains { pattern in
            (!pattern.directoryOnly || isDirectory) && Self.match(pattern.segments[...], path)
        }
    }

    /// Whether some path strictly inside directory `path` could be matched (so the directory
    /// must be read to find preserved entries).
    func mayMatchInside(_ path: ArraySlice<String>) -> Bool {
        patterns.contains { Self.matchPrefix($0.segments[...], path) }
    }

    private static func match(_ pattern: ArraySlice<Segment>, _ path: ArraySlice<String>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        switch first {
        case .anyDepth:
            let rest = pattern.dropFirst()
            // A trailing `**` must match at least one segment ("everything inside").
            let minimum = rest.isEmpty ? 1 : 0
            guard path.count >= minimum else { return false }
            for skip in minimum...path.count where match(rest, path.dropFirst(skip)) { return true }
            return false
        case .glob(let glob):
            guard let name = path.first, fnmatch(glob, name, 0) == 0 else { return false }
            return match(pattern.dropFirst(), path.dropFirst())
        }
    }

    private static func matchPrefix(_ pattern: ArraySlice<Segment>, _ path: ArraySlice<String>) -> Bool {
        if path.isEmpty { return !pattern.isEmpty }
        guard let first = pattern.first else { return false }
        switch first {
        case .anyDepth:
            return true
        case .glob(let glob):
            guard fnmatch(glob, path.first!, 0) == 0 else { return false }
            return matchPrefix(pattern.dropFirst(), path.dropFirst())
        }
    }
}

/// Checks that symlink targets stay inside the file set's root.
///
/// Targets are resolved relative to the link's directory; intermediate components that are
/// themselves symlinks of the file set are followed (so `a -> .` then `b -> a/..` is caught).
/// Absolute targets, targets climbing above the root, empty targets and NUL bytes are rejected
/// with `invalid_path`.
struct SymlinkValidator {
    /// Every symlink of the file set: path components joined by `/` → target.
    var links: [String: String] = [:]

    func validate(path: [String], target: String) throws(GitError) {
        let display = path.joined(separator: "/")
        guard !target.isEmpty else {
            throw GitError(code: .invalidPath, message: "symlink \(display) has an empty target", path: display)
        }
        guard !target.utf8.contains(0) else {
            throw GitError(code: .invalidPath, message: "symlink \(display) target contains a NUL byte", path: display)
        }
        var stack = Array(path.dropLast())
        var pending = try Self.split(target, link: display)
        var hops = 0
        while !pending.isEmpty {
            let component = pending.removeFirst()
            if component.isEmpty || component == "." { continue }
            if component == ".." {
                guard !stack.isEmpty else {
                    throw GitError(
                        code: .invalidPath, message: "symlink \(display) points outside the source root (\(target))",
                        path: display)
                }
                stack.removeLast()
                continue
            }
            stack.append(component)
            if !pending.isEmpty, let next = links[stack.joined(separator: "/")] {
                hops += 1
                guard hops <= 40 else {
                    throw GitError(code: .invalidPath, message: "symlink \(display): too many levels of symbolic links", path: display)
                }
                stack.removeLast()
                pending = try Self.split(next, link: display) + pending
            }
        }
    }

    private static func split(_ target: String, link: String) throws(GitError) -> [String] {
        if target.hasPrefix("/") {
            throw GitError(code: .invalidPath, message: "symlink \(link) has an absolute target", path: link)
        }
        return target.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    }
}
