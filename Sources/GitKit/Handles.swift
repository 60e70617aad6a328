import CLibGit2

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Owning wrappers: each C handle belongs to exactly one Swift object whose deinit frees it.
// None of them is Sendable; they live inside one RemoteCache actor.

/// An open bare repository with an in-memory object backend in front of its object database.
///
/// New objects (blobs, trees, commits) go to the `git_mempack` backend, so building a commit
/// creates no loose files; ``RemoteCache`` later writes exactly those objects into one pack.
final class Repository {
    let pointer: OpaquePointer
    let odb: OpaquePointer
    /// Owned by `odb` (freed with it); kept to ask "is this object pending?" and to reset it.
    let mempack: UnsafeMutablePointer<git_odb_backend>
    let path: String

    private init(pointer: OpaquePointer, odb: OpaquePointer, mempack: UnsafeMutablePointer<git_odb_backend>, path: String) {
        self.pointer = pointer
        self.odb = odb
        self.mempack = mempack
        self.path = path
    }

    deinit {
        git_odb_free(odb)
        git_repository_free(pointer)
    }

    /// Opens the bare repository at `path`, creating it when absent.
    static func openOrCreate(at path: String) throws(GitError) -> Repository {
        LibGit2.initialize()
        var repo: OpaquePointer?
        var rc = git_repository_open_bare(&repo, path)
        if rc == GIT_ENOTFOUND.rawValue {
            git_error_clear()
            var options = git_repository_init_options()
            try check(git_repository_init_options_init(&options, UInt32(GIT_REPOSITORY_INIT_OPTIONS_VERSION)), "init options")
            options.flags = GIT_REPOSITORY_INIT_BARE.rawValue | GIT_REPOSITORY_INIT_MKPATH.rawValue
            rc = git_repository_init_ext(&repo, path, &options)
            if rc >= 0, let repo {
                try configureNew(repo)
            }
        }
        try check(rc, "cannot open object cache \(path)")
        guard let repo else { throw GitError(code: .libgit2, message: "cannot open object cache \(path)") }
        var odb: OpaquePointer?
        var backend: UnsafeMutablePointer<git_odb_backend>?
        var attached = false
        do {
            try check(git_repository_odb(&odb, repo), "open object database")
            try check(git_mempack_new(&backend), "create in-memory object backend")
            // Highest priority: libgit2 writes new objects to the first writable backend.
            try check(git_odb_add_backend(odb, backend, 1000), "attach in-memory object backend")
            attached = true
        } catch {
            if !attached, let backend { backend.pointee.free?(backend) }
            git_odb_free(odb)
            git_repository_free(repo)
            throw error
        }
        return Repository(pointer: repo, odb: odb!, mempack: backend!, path: path)
    }

    private static func configureNew(_ repo: OpaquePointer) throws(GitError) {
        var config: OpaquePointer?
        try check(git_repository_config(&config, repo), "open cache config")
        defer { git_config_free(config) }
        try check(git_config_set_bool(config, "core.logAllRefUpdates", 0), "configure cache")
        try check(git_config_set_int32(config, "gc.auto", 0), "configure cache")
    }

    func objectExists(_ id: ObjectID) -> Bool {
        var oid = id.oid
        return git_odb_exists(odb, &oid) != 0
    }

    /// Whether the object was written since the last ``resetPending()`` (lives in the mempack).
    func isPending(_ id: ObjectID) -> Bool {
        var oid = id.oid
        return pushbridge_odb_backend_exists(mempack, &oid) != 0
    }

    func resetPending() {
        git_mempack_reset(mempack)
    }

    func lookupTree(_ id: ObjectID) throws(GitError) -> Tree {
        var oid = id.oid
        var tree: OpaquePointer?
        try check(git_tree_lookup(&tree, pointer, &oid), "tree \(id)")
        return Tree(tree!)
    }

    func lookupCommit(_ id: ObjectID) throws(GitError) -> Commit {
        var oid = id.oid
        var commit: OpaquePointer?
        try check(git_commit_lookup(&commit, pointer, &oid), "commit \(id)")
        return Commit(commit!)
    }

    /// Peels a commit or tree id to its tree.
    func treeID(of id: ObjectID) throws(GitError) -> ObjectID {
        var oid = id.oid
        var object: OpaquePointer?
        try check(git_object_lookup(&object, pointer, &oid, GIT_OBJECT_ANY), "object \(id)")
        defer { git_object_free(object) }
        var peeled: OpaquePointer?
        try check(git_object_peel(&peeled, object, GIT_OBJECT_TREE), "object \(id) is not a commit or tree")
        defer { git_object_free(peeled) }
        return ObjectID(git_object_id(peeled)!)
    }

    func referenceTarget(_ name: String) throws(GitError) -> ObjectID? {
        var oid = git_oid()
        let rc = git_reference_name_to_id(&oid, pointer, name)
        if rc == GIT_ENOTFOUND.rawValue {
            git_error_clear()
            return nil
        }
        try check(rc, "reference \(name)")
        return ObjectID(oid)
    }

    func setReference(_ name: String, to id: ObjectID) throws(GitError) {
        var oid = id.oid
        var ref: OpaquePointer?
        try check(git_reference_create(&ref, pointer, name, &oid, 1, nil), "update reference \(name)")
        git_reference_free(ref)
    }

    func deleteReference(_ name: String) throws(GitError) {
        var ref: OpaquePointer?
        let rc = git_reference_lookup(&ref, pointer, name)
        if rc == GIT_ENOTFOUND.rawValue {
            git_error_clear()
            return
        }
        try check(rc, "reference \(name)")
        defer { git_reference_free(ref) }
        try check(git_reference_delete(ref), "delete reference \(name)")
    }
}

/// A parsed tree.
final class Tree {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { git_tree_free(pointer) }

    var id: ObjectID { ObjectID(git_tree_id(pointer)!) }
    var count: Int { git_tree_entrycount(pointer) }

    struct Entry {
        var name: String
        var id: ObjectID
        var mode: UInt32
        var isTree: Bool { mode == GIT_FILEMODE_TREE.rawValue }
    }

    func entry(named name: String) -> Entry? {
        guard let entry = git_tree_entry_byname(pointer, name) else { return nil }
        return Entry(
            name: name, id: ObjectID(git_tree_entry_id(entry)!),
            mode: git_tree_entry_filemode(entry).rawValue)
    }

    var entries: [Entry] {
        (0..<count).map { index in
            let entry = git_tree_entry_byindex(pointer, index)!
            return Entry(
                name: String(cString: git_tree_entry_name(entry)), id: ObjectID(git_tree_entry_id(entry)!),
                mode: git_tree_entry_filemode(entry).rawValue)
        }
    }
}

final class Commit {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { git_commit_free(pointer) }
    var treeID: ObjectID { ObjectID(git_commit_tree_id(pointer)!) }
}

/// A tree under construction; created from a source tree (entries copied) or empty.
final class TreeBuilder {
    let pointer: OpaquePointer
    private(set) var modified = false

    init(repository: Repository, source: Tree?) throws(GitError) {
        var builder: OpaquePointer?
        try check(git_treebuilder_new(&builder, repository.pointer, source?.pointer), "tree builder")
        pointer = builder!
    }

    deinit { git_treebuilder_free(pointer) }

    var count: Int { git_treebuilder_entrycount(pointer) }

    func insert(_ name: String, id: ObjectID, mode: UInt32, path: String) throws(GitError) {
        var oid = id.oid
        let rc = git_treebuilder_insert(nil, pointer, name, &oid, git_filemode_t(rawValue: mode))
        if rc < 0 {
            let failure = LibGit2Failure.current(rc)
            throw GitError(code: .invalidPath, message: "cannot add \(path): \(failure.message)", path: path, libgit2: failure)
        }
        modified = true
    }

    func remove(_ name: String) throws(GitError) {
        try check(git_treebuilder_remove(pointer, name), "remove \(name)")
        modified = true
    }

    func write() throws(GitError) -> ObjectID {
        var oid = git_oid()
        try check(git_treebuilder_write(&oid, pointer), "write tree")
        return ObjectID(oid)
    }
}

/// A NUL-terminated copy of strings laid out as a `git_strarray` that stays valid while this
/// object lives (libgit2 reads refspecs and headers during the call only).
final class CStringArray {
    private let storage: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    let count: Int

    init(_ strings: [String]) {
        count = strings.count
        storage = .allocate(capacity: max(count, 1))
        for (index, string) in strings.enumerated() {
            storage[index] = strdup(string)
        }
    }

    deinit {
        for index in 0..<count { free(storage[index]) }
        storage.deallocate()
    }

    var strarray: git_strarray {
        git_strarray(strings: count == 0 ? nil : storage, count: count)
    }
}
