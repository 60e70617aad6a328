import Foundation
import PushBridge

/// Validates a decoded ``JobSpec`` beyond what decoding checks, naming the field at fault.
///
/// Checks that need the outside world (does the connection or archive exist, does the directory
/// lie under a source root) are done here too so that a job that is queued can run.
struct JobSpecValidator {
    /// Canonical (symlink-resolved) source roots.
    let sourceRoots: [String]

    func validate(_ spec: JobSpec) throws(APIError) {
        func invalid(_ field: String, _ reason: String) -> APIError { .invalidField(field, reason) }

        if spec.connection.isEmpty { throw invalid("connection", "must not be empty") }
        try validateSlug(spec.repository.slug)
        if let project = spec.repository.project, project.isEmpty || project.count > 128 {
            throw invalid("repository.project", "must be 1 to 128 characters")
        }

        switch spec.source {
        case .directory(let path):
            _ = try resolveSourceDirectory(path)
        case .archive(let id):
            if !ArchiveStore.isValidID(id) { throw invalid("source.archive", "is not an archive id (64 hex digits)") }
        }

        if !spec.root.isEmpty {
            let normalized: String?
            do {
                normalized = try ArchivePath.normalize(spec.root)
            } catch {
                throw invalid("root", error.message)
            }
            if normalized != spec.root || spec.root.hasSuffix("/") {
                throw invalid("root", "must be a relative path without './', '..', '.git' or a trailing '/'")
            }
        }

        for (index, glob) in spec.preserve.enumerated() {
            if let reason = Self.globProblem(glob) { throw invalid("preserve[\(index)]", reason) }
        }

        if let reason = Self.branchNameProblem(spec.branch) { throw invalid("branch", reason) }
        if let base = spec.baseBranch, let reason = Self.branchNameProblem(base) {
            throw invalid("baseBranch", reason)
        }
        if spec.pullRequest != nil, let base = spec.baseBranch, base == spec.branch {
            throw invalid("baseBranch", "must differ from branch when a pull request is requested")
        }

        if spec.commit.message.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw invalid("commit.message", "must not be empty")
        }
        if let author = spec.commit.author {
            if let reason = Self.identityProblem(author.name) { throw invalid("commit.author.name", reason) }
            if let reason = Self.identityProblem(author.email) { throw invalid("commit.author.email", reason) }
            if !author.email.contains("@") { throw invalid("commit.author.email", "must be an email address") }
        }
        if let pullRequest = spec.pullRequest,
            pullRequest.title.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        {
            throw invalid("pullRequest.title", "must not be empty")
        }
    }

    /// The canonical path of `path` if it is an existing directory under a source root.
    func resolveSourceDirectory(_ path: String) throws(APIError) -> String {
        let field = "source.directory"
        guard path.hasPrefix("/") else { throw .invalidField(field, "must be an absolute path") }
        guard !sourceRoots.isEmpty else {
            throw .invalidField(field, "directory sources are disabled (PUSHBRIDGE_SOURCE_ROOTS is empty); upload an archive")
        }
        // Resolve symlinks first: a link inside a root may point anywhere.
        guard let resolved = resolvingSymlinks(path) else { throw .invalidField(field, "does not exist") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .invalidField(field, "is not a directory")
        }
        guard sourceRoots.contains(where: { resolved == $0 || resolved.hasPrefix($0 == "/" ? "/" : $0 + "/") }) else {
            throw .invalidField(field, "is not under a configured source root")
        }
        return resolved
    }

    func validateSlug(_ slug: String) throws(APIError) {
        let allowed = slug.utf8.allSatisfy {
            (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || $0 == 45 || $0 == 46 || $0 == 95
        }
        guard !slug.isEmpty, slug.count <= 128, allowed, slug != ".", slug != "..", !slug.lowercased().hasSuffix(".git")
        else {
            throw .invalidField("repository.slug", "must be 1 to 128 of A-Z a-z 0-9 . _ - and not end in .git")
        }
    }

    /// `nil` when `name` is a valid branch name (`git check-ref-format --branch` rules), else why not.
    static func branchNameProblem(_ name: String) -> String? {
        if name.isEmpty { return "must not be empty" }
        if name.utf8.count > 250 { return "is longer than 250 bytes" }
        if name == "@" { return "must not be '@'" }
        if name.hasPrefix("-") { return "must not start with '-'" }
        if name.hasPrefix("/") || name.hasSuffix("/") { return "must not start or end with '/'" }
        if name.hasSuffix(".") { return "must not end with '.'" }
        if name.contains("..") { return "must not contain '..'" }
        if name.contains("//") { return "must not contain '//'" }
        if name.contains("@{") { return "must not contain '@{'" }
        for byte in name.utf8 {
            if byte < 0x20 || byte == 0x7F { return "must not contain control characters" }
            if " ~^:?*[\\".utf8.contains(byte) { return "must not contain space or any of ~ ^ : ? * [ \\" }
        }
        for component in name.split(separator: "/") {
            if component.hasPrefix(".") { return "no '/'-separated component may start with '.'" }
            if component.hasSuffix(".lock") { return "no '/'-separated component may end with '.lock'" }
        }
        return nil
    }

    /// `nil` when `glob` is an acceptable preserve pattern, else why not.
    static func globProblem(_ glob: String) -> String? {
        if glob.isEmpty { return "must not be empty" }
        if glob.utf8.contains(0) { return "must not contain NUL" }
        if glob.hasPrefix("/") { return "must be relative to root" }
        if glob.split(separator: "/").contains("..") { return "must not contain '..'" }
        var depth = 0
        var escaped = false
        for character in glob {
            if escaped { escaped = false; continue }
            switch character {
            case "\\": escaped = true
            case "[": depth += 1
            case "]": if depth > 0 { depth -= 1 }
            default: break
            }
        }
        if depth != 0 || escaped { return "has an unterminated '[' or trailing '\\'" }
        return nil
    }

    static func identityProblem(_ text: String) -> String? {
        if text.trimmingCharacters(in: .whitespaces).isEmpty { return "must not be empty" }
        if text.contains(where: { $0 == "<" || $0 == ">" || $0.isNewline || $0 == "\0" }) {
            return "must not contain '<', '>', NUL or newlines"
        }
        return nil
    }
}
