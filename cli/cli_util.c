/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the subcommands: error lines, ports, the data dir
 * and gateway port precedence (flag > environment > default), files written
 * atomically and loopback port checks. Every file descriptor is O_CLOEXEC so
 * children started by `skald up` inherit none of them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

void cli_errorf(const char *context, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "skald: %s: ", context);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_flag(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);

    *value = NULL;
    if (strncmp(arg, name, n) != 0 || (arg[n] != '\0' && arg[n] != '=')) {
        return 0;
    }
    if (arg[n] == '=') {
        *value = arg + n + 1;
    } else if (*i + 1 < argc) {
        *i += 1;
        *value = argv[*i];
    }
    return *value != NULL && (*value)[0] != '\0' ? 1 : -1;
}

bool cli_is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0;
}

sk_status cli_port_parse(const char *text, int *out)
{
    long v = 0;
    size_t i = 0;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_port_parse: out must not be NULL");
    }
    *out = 0;
    if (text == NULL) {
        return SK_FAIL(SK_EINVAL, "expected a port 1..65535, got nothing");
    }
    /* Digits only: strtol would accept spaces, signs and "0x". */
    for (i = 0; text[i] != '\0'; i++) {
        if (text[i] < '0' || text[i] > '9' || i >= 5) {
            break;
        }
        v = v * 10 + (text[i] - '0');
    }
    if (i == 0 || text[i] != '\0' || v < 1 || v > 65535) {
        return SK_FAIL(SK_EINVAL, "expected a port 1..65535, got \"%.20s\"", text);
    }
    *out = (int)v;
    return SK_OK;
}

const char *cli_data_dir_choose(const char *flag)
{
    const char *env = getenv("SKALD_DATA");
    if (flag != NULL) {
        return flag;
    }
    if (env != NULL && env[0] != '\0') {
        return env;
    }
    return CLI_DEFAULT_DATA;
}

sk_status cli_gateway_port_choose(int flag, int system_port, int *out)
{
    const char *env = getenv("SKALD_GATEWAY_PORT");
    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_gateway_port_choose: out must not be NULL");
    }
    *out = 0;
    if (flag > 0) {
        *out = flag;
        return SK_OK;
    }
    if (env != NULL && env[0] != '\0') {
        sk_status st = cli_port_parse(env, out);
        return st == SK_OK ? SK_OK : SK_WRAP(st, "SKALD_GATEWAY_PORT");
    }
    if (system_port < 1 || system_port > 65535) {
        return SK_FAIL(SK_EINVAL, "gateway.port: expected 1..65535, got %d", system_port);
    }
    *out = system_port;
    return SK_OK;
}

sk_status cli_mkdir(const char *path, mode_t mode)
{
    struct stat sb;
    if (mkdir(path, mode) == 0) {
        return SK_OK;
    }
    if (errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        return SK_OK;
    }
    return SK_FAIL(SK_EIO, "creating directory %s: %s", path,
                   errno == EEXIST ? "exists and is not a directory" : strerror(errno));
}

sk_status cli_file_read_line(const char *path, size_t max_bytes, char **out)
{
    sk_status st = SK_OK;
    sk_buf b;
    char chunk[256];
    int fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return SK_FAIL(errno == ENOENT ? SK_ENOTFOUND : SK_EIO, "reading %s: %s", path,
                       strerror(errno));
    }
    sk_buf_init(&b, max_bytes);
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            st = SK_FAIL(SK_EIO, "reading %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0) {
            break;
        }
        st = sk_buf_append(&b, chunk, (size_t)n);
        if (st != SK_OK) {
            st = SK_WRAP(st, "reading %s", path);
            goto out;
        }
    }
    st = sk_buf_append(&b, "", 0); /* makes data non-NULL and terminated for an empty file */
    if (st == SK_OK) {
        b.data[strcspn(b.data, "\r\n")] = '\0';
        *out = sk_buf_take(&b, NULL);
    }
out:
    close(fd);
    sk_buf_fini(&b);
    return st;
}

sk_status cli_file_write(const char *path, const char *text, mode_t mode)
{
    sk_status st = SK_OK;
    char *tmp = sk_asprintf("%s.tmp.%ld", path, (long)getpid());
    size_t len = strlen(text), done = 0;
    int fd;

    if (tmp == NULL) {
        return SK_FAIL(SK_ENOMEM, "writing %s", path);
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        st = SK_FAIL(SK_EIO, "writing %s: %s", tmp, strerror(errno));
        goto out;
    }
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            st = SK_FAIL(SK_EIO, "writing %s: %s", tmp, strerror(errno));
            break;
        }
        done += (size_t)n;
    }
    if (close(fd) != 0 && st == SK_OK) {
        st = SK_FAIL(SK_EIO, "writing %s: %s", tmp, strerror(errno));
    }
    if (st == SK_OK && rename(tmp, path) != 0) {
        st = SK_FAIL(SK_EIO, "renaming %s to %s: %s", tmp, path, strerror(errno));
    }
    if (st != SK_OK) {
        (void)unlink(tmp);
    }
out:
    sk_free(tmp);
    return st;
}

static void loopback(struct sockaddr_in *sa, int port)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

bool cli_port_accepts(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd < 0) {
        return false;
    }
    loopback(&sa, port);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

bool cli_port_is_free(int port, int *bound)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = false;

    if (bound != NULL) {
        *bound = 0;
    }
    if (fd < 0) {
        return false;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    loopback(&sa, port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        ok = true;
        if (bound != NULL) {
            *bound = ntohs(sa.sin_port);
        }
    }
    close(fd);
    return ok;
}

sk_status cli_self_dir(char **out)
{
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

    *out = NULL;
    if (n <= 0 || (size_t)n >= sizeof(path) - 1) {
        return SK_FAIL(SK_EIO, "reading /proc/self/exe: %s", n < 0 ? strerror(errno) : "too long");
    }
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    if (slash == NULL) {
        return SK_FAIL(SK_EIO, "/proc/self/exe: not an absolute path: %s", path);
    }
    *slash = '\0';
    *out = sk_strdup(path[0] != '\0' ? path : "/");
    return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "cli_self_dir");
}

static bool is_executable_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0;
}

sk_status cli_program_find(const char *name, char **out)
{
    static const char *const extra[] = { "/usr/sbin", "/usr/local/sbin", "/usr/local/bin",
                                         "/sbin" };
    const char *path = getenv("PATH");

    *out = NULL;
    while (path != NULL && *path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end != NULL ? (size_t)(end - path) : strlen(path);
        if (len > 0) {
            char *candidate = sk_asprintf("%.*s/%s", (int)len, path, name);
            if (candidate == NULL) {
                return SK_FAIL(SK_ENOMEM, "cli_program_find");
            }
            if (is_executable_file(candidate)) {
                *out = candidate;
                return SK_OK;
            }
            sk_free(candidate);
        }
        path = end != NULL ? end + 1 : NULL;
    }
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        char *candidate = sk_asprintf("%s/%s", extra[i], name);
        if (candidate == NULL) {
            return SK_FAIL(SK_ENOMEM, "cli_program_find");
        }
        if (is_executable_file(candidate)) {
            *out = candidate;
            return SK_OK;
        }
        sk_free(candidate);
    }
    return SK_FAIL(SK_ENOTFOUND,
                   "%s not found on PATH nor in /usr/sbin, /usr/local/sbin, "
                   "/usr/local/bin, /sbin",
                   name);
}

void cli_sleep_ms(int64_t ms)
{
    struct timespec ts;
    if (ms <= 0) {
        return;
    }
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    (void)nanosleep(&ts, NULL);
}
