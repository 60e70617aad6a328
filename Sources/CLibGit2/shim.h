#ifndef PUSHBRIDGE_CLIBGIT2_SHIM_H
#define PUSHBRIDGE_CLIBGIT2_SHIM_H
#include <sys/types.h>
#include <git2.h>
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>

/*
 * git_libgit2_opts() is variadic, and Swift does not import C variadic functions.
 * These non-variadic wrappers expose exactly the options GitKit sets.
 */

static inline int pushbridge_git_set_ssl_cert_locations(const char *file, const char *path) {
    return git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, file, path);
}

static inline int pushbridge_git_set_cache_object_limit(git_object_t type, size_t limit) {
    return git_libgit2_opts(GIT_OPT_SET_CACHE_OBJECT_LIMIT, type, limit);
}

static inline int pushbridge_git_set_cache_max_size(ssize_t bytes) {
    return git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, bytes);
}

static inline int pushbridge_git_get_cached_memory(ssize_t *current, ssize_t *allowed) {
    return git_libgit2_opts(GIT_OPT_GET_CACHED_MEMORY, current, allowed);
}

static inline int pushbridge_git_set_mwindow_file_limit(size_t limit) {
    return git_libgit2_opts(GIT_OPT_SET_MWINDOW_FILE_LIMIT, limit);
}

static inline int pushbridge_git_set_user_agent(const char *user_agent) {
    return git_libgit2_opts(GIT_OPT_SET_USER_AGENT, user_agent);
}

/* Calls a backend's `exists` slot (used to ask the mempack backend alone). */
static inline int pushbridge_odb_backend_exists(git_odb_backend *backend, const git_oid *oid) {
    if (backend == NULL || backend->exists == NULL) {
        return 0;
    }
    return backend->exists(backend, oid);
}

#endif
