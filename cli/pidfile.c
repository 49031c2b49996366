/* SPDX-License-Identifier: MIT */
/*
 * DATA/run/skald.pid: one `skald up` per data dir. The file is locked with
 * a POSIX record lock for as long as skald runs (the kernel drops the lock
 * when the process dies, however it dies), and holds the PID so the
 * refusal message can name the running instance. A file left behind by a
 * crash is simply taken over.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* The PID written in the file, or 0 when unreadable. */
static pid_t read_pid(int fd)
{
    char text[32] = { 0 };
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    long v = 0;

    for (ssize_t i = 0; i < n && text[i] >= '0' && text[i] <= '9' && v < 10000000; i++) {
        v = v * 10 + (text[i] - '0');
    }
    return (pid_t)v;
}

sk_status cli_pidfile_acquire(cli_pidfile *pf, const char *path, pid_t *other)
{
    struct flock fl;
    char text[32];
    int n;

    if (pf == NULL || path == NULL || other == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_pidfile_acquire: pf, path and other must not be NULL");
    }
    pf->fd = -1;
    pf->path = NULL;
    *other = 0;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return SK_FAIL(SK_EIO, "opening %s: %s", path, strerror(errno));
    }
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        pid_t pid = read_pid(fd);
        close(fd);
        if (e == EAGAIN || e == EACCES) {
            /* Prefer the lock holder the kernel reports; the file's content may be mid-write. */
            *other = pid;
            return SK_FAIL(SK_EEXIST, "another `skald up` (pid %ld) is running with this data dir",
                           (long)pid);
        }
        return SK_FAIL(SK_EIO, "locking %s: %s", path, strerror(e));
    }
    /* Locked: a PID still in the file belongs to a dead skald (or to an unrelated process). */
    n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return SK_FAIL(SK_EIO, "writing %s: %s", path, strerror(e));
    }
    pf->path = sk_strdup(path);
    if (pf->path == NULL) {
        close(fd);
        return SK_FAIL(SK_ENOMEM, "cli_pidfile_acquire: copying the path");
    }
    pf->fd = fd;
    return SK_OK;
}

void cli_pidfile_release(cli_pidfile *pf)
{
    if (pf == NULL || pf->fd < 0) {
        return;
    }
    (void)unlink(pf->path); /* while still locked, so no other skald sees it half-removed */
    close(pf->fd);
    pf->fd = -1;
    sk_free(pf->path);
    pf->path = NULL;
}
