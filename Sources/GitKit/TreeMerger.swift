import CLibGit2

/// Applies a validated file set to a parent tree without a checkout.
///
/// Only the parent subtrees on the paths of the input (and, for `sync` with preserve
/// patterns, the subtrees that may contain preserved paths) are read; everything else is
/// reused by id. Blobs are hashed before writing and compared with the parent entry at the
/// same path, then with the object database, so unchanged content is never written again.
struct TreeMerger {
    enum Outcome {
        case unchanged(ObjectID)
        case changed(ObjectID)
        case empty
    }

    let repository: Repository
    let files: FileSet
    let syncMode: Bool
    let preserve: PreservePatterns
    let rootComponents: [String]
    var statistics = TreeBuildStatistics()
    /// Objects this build wrote (candidates for the pending pack).
    var written: [ObjectID] = []

    init(repository: Repository, files: FileSet, options: TreeBuildOptions) throws(GitError) {
        self.repository = repository
        self.files = files
        rootComponents = try PathRules.rootComponents(options.root)
        switch options.mode {
        case .overlay:
            syncMode = false
            preserve = try PreservePatterns([])
        case .sync(let patterns):
            syncMode = true
            preserve = try PreservePatterns(patterns)
        }
        statistics.files = files.count
    }

    /// Builds the new root tree on top of `parent` (a root tree, or `nil` for none).
    mutating func build(parent: Tree?) throws(GitError) -> ObjectID {
        switch try apply(parent: parent, root: rootComponents[...]) {
        case .unchanged(let id), .changed(let id):
            return id
        case .empty:
            let builder = try TreeBuilder(repository: repository, source: nil)
            let id = try builder.write()
            if id != parent?.id { written.append(id) }
            return id
        }
    }

    private mutating func apply(parent: Tree?, root: ArraySlice<String>) throws(GitError) -> Outcome {
        guard let name = root.first else {
            return syncMode
                ? try sync(files.root, parent: parent, path: [], preserved: false)
                : try overlay(files.root, parent: parent, path: [])
        }
        let existing = parent?.entry(named: name)
        let subtree = try existing.flatMap { entry throws(GitError) in entry.isTree ? try repository.lookupTree(entry.id) : nil }
        let outcome = try apply(parent: subtree, root: root.dropFirst())
        var builder: TreeBuilder?
        let path = rootComponents[..<(rootComponents.count - root.count + 1)].joined(separator: "/")
        try place(outcome, name: name, existing: existing, in: &builder, parent: parent, path: path)
        return try finish(builder, parent: parent)
    }

    private mutating func overlay(_ input: InputDirectory, parent: Tree?, path: [String]) throws(GitError) -> Outcome {
        var builder: TreeBuilder?
        try addFiles(of: input, parent: parent, path: path, into: &builder)
        for name in input.directories.keys.sorted() {
            let existing = parent?.entry(named: name)
            let subtree = try existing.flatMap { entry throws(GitError) in entry.isTree ? try repository.lookupTree(entry.id) : nil }
            let outcome = try overlay(input.directories[name]!, parent: subtree, path: path + [name])
            try place(outcome, name: name, existing: existing, in: &builder, parent: parent, path: display(path + [name]))
        }
        return try finish(builder, parent: parent)
    }

    /// `input == nil`: the directory is absent from the file set; only preserved paths survive.
    private mutating func sync(_ input: InputDirectory?, parent: Tree?, path: [String], preserved: Bool) throws(GitError) -> Outcome {
        if input == nil {
            guard let parent else { return .empty }
            if preserved { return .unchanged(parent.id) }
            if !preserve.mayMatchInside(path[...]) { return .empty }
        }
        let input = input ?? InputDirectory()
        var builder: TreeBuilder?
        if let parent, !preserved {
            for entry in parent.entries where input.files[entry.name] == nil && input.directories[entry.name] == nil {
                let entryPath = path + [entry.name]
                if entry.isTree {
                    if preserve.matches(entryPath[...], isDirectory: true) { continue }
                    if preserve.mayMatchInside(entryPath[...]) {
                        let subtree = try repository.lookupTree(entry.id)
                        let outcome = try sync(nil, parent: subtree, path: entryPath, preserved: false)
                        if case .empty = outcome { statistics.entriesRemoved += 1 }
                        try place(outcome, name: entry.name, existing: entry, in: &builder, parent: parent, path: display(entryPath))
                        continue
                    }
                } else if preserve.matches(entryPath[...], isDirectory: false) {
                    continue
                }
                try edit(&builder, parent: parent).remove(entry.name)
                statistics.entriesRemoved += 1
            }
        }
        try addFiles(of: input, parent: parent, path: path, into: &builder)
        for name in input.directories.keys.sorted() {
            let childPath = path + [name]
            let existing = parent?.entry(named: name)
            let subtree = try existing.flatMap { entry throws(GitError) in entry.isTree ? try repository.lookupTree(entry.id) : nil }
            let childPreserved = preserved || (subtree != nil && preserve.matches(childPath[...], isDirectory: true))
            let outcome = try sync(input.directories[name]!, parent: subtree, path: childPath, preserved: childPreserved)
            try place(outcome, name: name, existing: existing, in: &builder, parent: parent, path: display(childPath))
        }
        return try finish(builder, parent: parent)
    }

    private mutating func addFiles(
        of input: InputDirectory, parent: Tree?, path: [String], into builder: inout TreeBuilder?
    ) throws(GitError) {
        for name in input.files.keys.sorted() {
            let file = input.files[name]!
            let existing = parent?.entry(named: name)
            let id = try blob(for: file, existing: existing)
            if let existing, existing.id == id, existing.mode == file.mode.rawValue { continue }
            try edit(&builder, parent: parent).insert(name, id: id, mode: file.mode.rawValue, path: display(path + [name]))
        }
    }

    /// Puts a child directory's outcome into its parent's builder (only when it changed).
    private mutating func place(
        _ outcome: Outcome, name: String, existing: Tree.Entry?, in builder: inout TreeBuilder?, parent: Tree?, path: String
    ) throws(GitError) {
        switch outcome {
        case .empty:
            if existing != nil { try edit(&builder, parent: parent).remove(name) }
        case .unchanged(let id), .changed(let id):
            if let existing, existing.isTree, existing.id == id { return }
            try edit(&builder, parent: parent).insert(name, id: id, mode: GIT_FILEMODE_TREE.rawValue, path: path)
        }
    }

    private func edit(_ builder: inout TreeBuilder?, parent: Tree?) throws(GitError) -> TreeBuilder {
        if let builder { return builder }
        let created = try TreeBuilder(repository: repository, source: parent)
        builder = created
        return created
    }

    private mutating func finish(_ builder: TreeBuilder?, parent: Tree?) throws(GitError) -> Outcome {
        guard let builder, builder.modified else {
            return parent.map { .unchanged($0.id) } ?? .empty
        }
        if builder.count == 0 { return .empty }
        let id = try builder.write()
        if id == parent?.id { return .unchanged(id) }
        statistics.treesWritten += 1
        written.append(id)
        return .changed(id)
    }

    /// Hashes the file, reusing the parent entry or an existing object when possible.
    private mutating func blob(for file: InputFile, existing: Tree.Entry?) throws(GitError) -> ObjectID {
        if Task.isCancelled { throw GitError(code: .cancelled, message: "tree build cancelled") }
        let bytes = try files.contents(of: file)
        statistics.bytesRead += bytes.count
        var oid = git_oid()
        try check(withBytes(bytes) { git_odb_hash(&oid, $0, $1, GIT_OBJECT_BLOB) }, "hash \(file.path)", path: file.path)
        let id = ObjectID(oid)
        if let existing, existing.id == id {
            statistics.blobsUnchanged += 1
            return id
        }
        if repository.objectExists(id) {
            statistics.blobsExisting += 1
            return id
        }
        let odb = repository.odb
        try check(withBytes(bytes) { git_odb_write(&oid, odb, $0, $1, GIT_OBJECT_BLOB) }, "write \(file.path)", path: file.path)
        statistics.blobsWritten += 1
        written.append(id)
        return id
    }

    private func display(_ path: [String]) -> String {
        (rootComponents + path).joined(separator: "/")
    }
}

/// Gives libgit2 a valid pointer even for empty content.
private func withBytes(_ bytes: [UInt8], _ body: (UnsafeRawPointer, Int) -> Int32) -> Int32 {
    if bytes.isEmpty {
        var zero: UInt8 = 0
        return withUnsafeBytes(of: &zero) { body($0.baseAddress!, 0) }
    }
    return bytes.withUnsafeBytes { body($0.baseAddress!, $0.count) }
}
