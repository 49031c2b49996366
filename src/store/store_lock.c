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

static bool purpose_is_valid(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') ||
            n >= 64) {
            return false;
        }
    }
    return n > 0;
}

char *sk_store_lock_path(const sk_store *store, const char *purpose)
{
    char real[PATH_MAX];
    const char *location = sk_store_location(store);

    if (location == NULL || purpose == NULL || !purpose_is_valid(purpose) ||
        realpath(location, real) == NULL) {
        return NULL;
    }
    return sk_asprintf("%s-%s.lock", real, purpose);
}

sk_status sk_store_lock_try(const sk_store *store, const char *purpose, int *fd_out)
{
    char *path;
    int fd;

    if (fd_out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_lock_try: fd_out must not be NULL");
    }
    *fd_out = -1;
    if (store == NULL || purpose == NULL || !purpose_is_valid(purpose)) {
        return SK_FAIL(
            SK_EINVAL,
            "sk_store_lock_try: store must not be NULL and purpose 1..64 bytes of [a-z0-9_-]");
    }
    path = sk_store_lock_path(store, purpose);
    if (path == NULL) {
        return SK_OK; /* no file (in memory): nobody else can share it */
    }
    /* 0600: only who may write the database may take its locks. */
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        sk_status st = SK_FAIL(SK_EIO, "opening %s: %s", path, strerror(errno));
        sk_free(path);
        return st;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        sk_status st = e == EWOULDBLOCK
                           ? SK_FAIL(SK_ECONFLICT, "%s is held by another process", path)
                           : SK_FAIL(SK_EIO, "locking %s: %s", path, strerror(e));
        sk_free(path);
        return st;
    }
    sk_free(path);
    *fd_out = fd;
    return SK_OK;
}
