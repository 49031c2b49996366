/* SPDX-License-Identifier: MIT */
/*
 * Generic test helpers (see sk_test.h). Test-only code: it may print to
 * stderr, and it never touches anything outside /tmp.
 */
#define _GNU_SOURCE /* nftw, syscall */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sk_test.h"

extern char **environ;

sk_status sk_test_spawn(const char *path, char *const argv[], const char *log_path, int *pid_out)
{
    pid_t parent = getpid();
    bool is_main_thread = (pid_t)syscall(SYS_gettid) == parent;
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    pid_t pid;

    *pid_out = 0;
    if (fd < 0) {
        return SK_FAIL(SK_EIO, "opening %s: %s", log_path, strerror(errno));
    }
    pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls until execve: the parent has other threads. The parent
         * may have died before prctl took effect, hence the getppid check. */
        if (is_main_thread && (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)) {
            _exit(126);
        }
        /* The forking thread's mask and ignored signals are inherited: SIGTERM must work. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGTERM, SIG_DFL);
        if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(126);
        }
        execve(path, argv, environ);
        _exit(127);
    }
    int e = errno;
    close(fd);
    if (pid < 0) {
        return SK_FAIL(SK_EIO, "spawning %s: %s", path, strerror(e));
    }
    *pid_out = (int)pid;
    return SK_OK;
}

sk_status sk_test_tmpdir(char *out, size_t out_len)
{
    static const char tmpl[] = "/tmp/skald-test-XXXXXX";

    if (out == NULL || out_len < sizeof(tmpl)) {
        return SK_FAIL(SK_EINVAL, "sk_test_tmpdir: out must hold at least %zu bytes",
                       sizeof(tmpl));
    }
    memcpy(out, tmpl, sizeof(tmpl));
    if (mkdtemp(out) == NULL) {
        int e = errno;
        out[0] = '\0';
        return SK_FAIL(SK_EIO, "mkdtemp: %s", strerror(e));
    }
    return SK_OK;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (type == FTW_DP) {
        (void)rmdir(path);
    } else {
        (void)unlink(path);
    }
    return 0;
}

void sk_test_rmrf(const char *dir)
{
    if (dir == NULL || strncmp(dir, "/tmp/", 5) != 0 || strstr(dir, "/..") != NULL) {
        return;
    }
    (void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int sk_test_group_setup(void **state)
{
    (void)state;
    return sk_init("test") == SK_OK ? 0 : -1;
}

int sk_test_group_teardown(void **state)
{
    (void)state;
    sk_shutdown();
    return 0;
}

bool sk_test_wait_until(bool (*cond)(void *ctx), void *ctx, int64_t timeout_ms)
{
    int64_t deadline = sk_time_mono_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    long delay_us = 1000;

    if (cond == NULL) {
        return false;
    }
    for (;;) {
        if (cond(ctx)) {
            return true;
        }
        if (sk_time_mono_ms() >= deadline) {
            return cond(ctx);
        }
        struct timespec ts = { 0, delay_us * 1000 };
        (void)nanosleep(&ts, NULL);
        if (delay_us < 5000) {
            delay_us += 1000;
        }
    }
}

int sk_test_free_port(void)
{
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    if (fd < 0) {
        return -1;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0) {
        port = ntohs(addr.sin_port);
    }
    (void)close(fd);
    return port;
}

char *sk_test_read_file(const char *path, size_t *len_out)
{
    sk_buf b;
    char chunk[4096];
    int fd;

    if (len_out != NULL) {
        *len_out = 0;
    }
    if (path == NULL) {
        return NULL;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    sk_buf_init(&b, 64u * 1024u * 1024u);
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 || (n > 0 && sk_buf_append(&b, chunk, (size_t)n) != SK_OK)) {
            (void)close(fd);
            sk_buf_fini(&b);
            return NULL;
        }
        if (n == 0) {
            break;
        }
    }
    (void)close(fd);
    return sk_buf_take(&b, len_out);
}

sk_status sk_test_write_file(const char *path, const void *data, size_t len)
{
    const char *p = data;
    int fd;

    if (path == NULL || (data == NULL && len > 0)) {
        return SK_FAIL(SK_EINVAL, "sk_test_write_file: path and data must not be NULL");
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return SK_FAIL(SK_EIO, "%s: %s", path, strerror(errno));
    }
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;
            (void)close(fd);
            return SK_FAIL(SK_EIO, "%s: %s", path, strerror(e));
        }
        p += n;
        len -= (size_t)n;
    }
    if (close(fd) != 0) {
        return SK_FAIL(SK_EIO, "%s: %s", path, strerror(errno));
    }
    return SK_OK;
}

void sk_test_assert_err(sk_status got, sk_status want, const char *substr, const char *file,
                        int line)
{
    const char *msg = sk_error_message();

    if (got != want) {
        print_error("status %s, want %s (message: \"%s\")\n", sk_status_name(got),
                    sk_status_name(want), msg);
        _fail(file, line);
    }
    if (substr != NULL && strstr(msg, substr) == NULL) {
        print_error("message \"%s\" does not contain \"%s\"\n", msg, substr);
        _fail(file, line);
    }
}
