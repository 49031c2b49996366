/* SPDX-License-Identifier: MIT */
/*
 * Locks beside a store's file, for processes that share one database and
 * must agree which of them does a job (publishing its outbox, running its
 * projections). An exclusive flock is released by the kernel when its
 * holder's process dies: no lease to renew, no clock to trust.
 */
#define _GNU_SOURCE /* realpath */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "store/store_int.h"

sk_status sk_store_lock_path(const sk_store *store, const char *purpose, char **out)
{
    char real[PATH_MAX];

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_lock_path: out must not be NULL");
    }
    *out = NULL;
    if (store == NULL || purpose == NULL || !sk_name_is_valid(purpose, SK_STORE_LOCK_PURPOSE_MAX)) {
        return SK_FAIL(SK_EINVAL,
                       "store lock: the store must not be NULL and the purpose 1..%d "
                       "bytes of [A-Za-z0-9_-]",
                       SK_STORE_LOCK_PURPOSE_MAX);
    }
    if (!sk__store_is_file(store)) {
        return SK_OK; /* in memory: nobody else can share it */
    }
    if (realpath(sk_store_location(store), real) == NULL) {
        return SK_FAIL(SK_EIO, "store lock: resolving %s: %s", sk_store_location(store),
                       strerror(errno));
    }
    *out = sk_asprintf("%s-%s.lock", real, purpose);
    return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "store lock: the path");
}

sk_status sk_store_lock_try(const sk_store *store, const char *purpose, int *fd_out)
{
    char *path = NULL;
    int fd;

    if (fd_out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_lock_try: fd_out must not be NULL");
    }
    *fd_out = -1;
    sk_status st = sk_store_lock_path(store, purpose, &path);
    if (st != SK_OK || path == NULL) {
        return st; /* SK_OK without a path: no file, nobody else can share it */
    }
    /* 0600: only who may write the database may take its locks. */
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        st = SK_FAIL(SK_EIO, "opening %s: %s", path, strerror(errno));
        sk_free(path);
        return st;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        st = e == EWOULDBLOCK ? SK_FAIL(SK_ECONFLICT, "%s is held by another process", path)
                              : SK_FAIL(SK_EIO, "locking %s: %s", path, strerror(e));
        sk_free(path);
        return st;
    }
    sk_free(path);
    *fd_out = fd;
    return SK_OK;
}
