import GitKit

/// Path rules for archive entries and symlink targets.
///
/// An entry path is relative, `/`-separated, and every segment satisfies GitKit's
/// `PathRules` — the rules the pipeline applies when it builds the tree, so an archive that is
/// accepted here can be pushed: no empty segments (`a//b`), no `.` or `..`, no NUL byte, no
/// backslash, nothing a git client on any file system would treat as `.git` (`.GIT`, `.git.`,
/// `git~1`, `.git::$DATA`, HFS+-ignorable code points), and at most 255 bytes. A leading `./`
/// (as `tar -C dir .` writes) is accepted and stripped.
public enum ArchivePath {
    /// The normalized form of `raw`, or `nil` for the archive root itself (`.`, `./`).
    ///
    /// - Throws: ``ArchiveError`` `invalid_path` naming `raw`.
    public static func normalize(_ raw: String) throws(ArchiveError) -> String? {
        func invalid(_ reason: String) -> ArchiveError {
            ArchiveError(.invalidPath, "invalid path \"\(printable(raw))\": \(reason)", path: printable(raw))
        }
        if raw.utf8.contains(0) { throw invalid("contains a NUL byte") }
        if raw.hasPrefix("/") { throw invalid("absolute paths are not allowed") }
        var path = Substring(raw)
        while path.hasPrefix("./") { path = path.dropFirst(2) }
        if path.isEmpty || path == "." { return nil }
        for segment in path.split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty { throw invalid("empty path segment") }
            if segment == "." { throw invalid("'.' segment") }
            if segment == ".." { throw invalid("'..' segment") }
            if PathRules.isDotGit(String(segment)) { throw invalid("'\(printable(String(segment)))' is reserved (.git)") }
            do {
                try PathRules.validate(component: String(segment), in: String(path))
            } catch {
                throw invalid(ArchivePath.printable(error.message))
            }
            if segment.utf8.count > 255 { throw invalid("segment longer than 255 bytes") }
        }
        return String(path)
    }

    /// Checks that a symlink at `linkPath` (normalized) with `target` stays inside the root when
    /// resolved lexically; chains through other symlinks are checked after unpacking.
    public static func checkSymlink(at linkPath: String, target: String) throws(ArchiveError) {
        func escapes(_ reason: String) -> ArchiveError {
            ArchiveError(
                .symlinkEscapes, "symlink \"\(printable(linkPath))\" -> \"\(printable(target))\" \(reason)",
                path: printable(linkPath))
        }
        if target.isEmpty { throw escapes("has an empty target") }
        if target.utf8.contains(0) { throw escapes("target contains a NUL byte") }
        if target.hasPrefix("/") { throw escapes("is absolute") }
        var stack = linkPath.split(separator: "/").dropLast().map(String.init)
        for segment in target.split(separator: "/") {
            switch segment {
            case ".": continue
            case "..":
                if stack.isEmpty { throw escapes("leaves the archive root") }
                stack.removeLast()
            default:
                if PathRules.isDotGit(String(segment)) { throw escapes("points into '.git'") }
                stack.append(String(segment))
            }
        }
    }

    /// `text` with control characters escaped, safe to put in a message.
    public static func printable(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
