/* SPDX-License-Identifier: MIT */
/*
 * nats-server fixture (see sk_test_nats.h): writes a config into a temporary
 * directory, spawns the server with its output in server.log, and polls its
 * port with a deadline; servers a failed test left running are killed at
 * exit. Test-only code; it never touches anything outside /tmp.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sk_test.h"
#include "sk_test_nats.h"

#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS  5000

struct sk_test_nats {
    char dir[64];
    char conf[128];
    char log[128];
    char url[64];
    char server[256];
    int port;
    pid_t pid;
};

/*
 * Servers running now, by pid: a test that fails an assertion skips its
 * sk_test_nats_stop, so at exit the ones left are killed rather than
 * outliving the test binary. Only pids are kept (LeakSanitizer still reports
 * a fixture a test forgot to stop).
 */
#define MAX_LIVE 64
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t live[MAX_LIVE];
static pid_t live_owner; /* the process that started them (a forked child that exits must not) */
static bool has_atexit;

static void live_kill_all(void)
{
    if (getpid() != live_owner) {
        return;
    }
    pthread_mutex_lock(&live_mu);
    for (size_t i = 0; i < MAX_LIVE; i++) {
        if (live[i] > 0) {
            (void)kill(live[i], SIGKILL);
            (void)waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
    }
    pthread_mutex_unlock(&live_mu);
}

static void live_add(pid_t pid)
{
    pthread_mutex_lock(&live_mu);
    if (!has_atexit) {
        live_owner = getpid();
        has_atexit = atexit(live_kill_all) == 0;
    }
    for (size_t i = 0; i < MAX_LIVE; i++) {
        if (live[i] == 0) {
            live[i] = pid;
            break;
        }
    }
    pthread_mutex_unlock(&live_mu);
}

static void live_remove(pid_t pid)
{
    pthread_mutex_lock(&live_mu);
    for (size_t i = 0; i < MAX_LIVE; i++) {
        if (live[i] == pid) {
            live[i] = 0;
        }
    }
    pthread_mutex_unlock(&live_mu);
}

static bool is_executable(const char *path)
{
    return access(path, X_OK) == 0;
}

/* Find nats-server on PATH, then in the Debian locations. */
static bool find_server(char *out, size_t out_len)
{
    const char *path = getenv("PATH");
    static const char *const fixed[] = { "/usr/bin/nats-server", "/usr/sbin/nats-server",
                                         "/usr/local/bin/nats-server" };

    while (path != NULL && *path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end != NULL ? (size_t)(end - path) : strlen(path);
        if (len > 0 && len + sizeof("/nats-server") < out_len) {
            snprintf(out, out_len, "%.*s/nats-server", (int)len, path);
            if (is_executable(out)) {
                return true;
            }
        }
        path = end != NULL ? end + 1 : NULL;
    }
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (is_executable(fixed[i])) {
            snprintf(out, out_len, "%s", fixed[i]);
            return true;
        }
    }
    return false;
}

static bool port_accepts(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;

    if (fd < 0) {
        return false;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    (void)nanosleep(&ts, NULL);
}

/* Wait for the child to exit, at most @p timeout_ms. @return true when it did. */
static bool reap(pid_t pid, int64_t timeout_ms)
{
    int64_t deadline = sk_time_mono_ms() + timeout_ms;

    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            return true;
        }
        if (sk_time_mono_ms() >= deadline) {
            return false;
        }
        sleep_ms(5);
    }
}

static sk_status spawn_server(sk_test_nats *n)
{
    char *argv[] = { n->server, (char *)"-c", n->conf, NULL };
    int64_t deadline;
    int pid = 0;
    sk_status st = sk_test_spawn(n->server, argv, n->log, &pid);

    n->pid = (pid_t)pid;
    if (st != SK_OK) {
        return st;
    }
    live_add(n->pid);
    deadline = sk_time_mono_ms() + START_TIMEOUT_MS;
    while (!port_accepts(n->port)) {
        int status;
        if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
            live_remove(n->pid);
            n->pid = 0;
            return SK_FAIL(SK_EIO, "nats-server exited at start (see %s)", n->log);
        }
        if (sk_time_mono_ms() >= deadline) {
            return SK_FAIL(SK_ETIMEDOUT, "nats-server did not listen on port %d within %d ms",
                           n->port, START_TIMEOUT_MS);
        }
        sleep_ms(10);
    }
    return SK_OK;
}

sk_status sk_test_nats_start(sk_test_nats **out, const sk_test_nats_options *opt)
{
    sk_status st = SK_OK;
    sk_test_nats *n = NULL;
    sk_buf conf;
    bool tls = opt != NULL && opt->cert_file != NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_test_nats_start: out must not be NULL");
    }
    *out = NULL;
    if (tls && (opt->key_file == NULL || opt->ca_file == NULL)) {
        return SK_FAIL(SK_EINVAL, "sk_test_nats_start: TLS needs cert_file, key_file and ca_file");
    }
    sk_buf_init(&conf, 64 * 1024);
    n = sk_calloc(1, sizeof(*n));
    if (n == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_test_nats_start: allocating");
    }
    if (!find_server(n->server, sizeof(n->server))) {
        sk_free(n);
        return SK_FAIL(SK_ENOTFOUND, "nats-server not found on PATH or in /usr/bin, /usr/sbin");
    }
    if ((st = sk_test_tmpdir(n->dir, sizeof(n->dir))) != SK_OK) {
        sk_free(n);
        return st;
    }
    n->port = sk_test_free_port();
    if (n->port <= 0) {
        st = SK_FAIL(SK_EIO, "no free port");
        goto out;
    }
    snprintf(n->conf, sizeof(n->conf), "%s/nats.conf", n->dir);
    snprintf(n->log, sizeof(n->log), "%s/server.log", n->dir);
    snprintf(n->url, sizeof(n->url), "%s://127.0.0.1:%d", tls ? "tls" : "nats", n->port);
    st = sk_buf_appendf(&conf, "listen: \"127.0.0.1:%d\"\nmax_payload: 2097152\n", n->port);
    if (st == SK_OK && (opt == NULL || !opt->no_jetstream)) {
        st = sk_buf_appendf(&conf, "jetstream {\n  store_dir: \"%s/js\"\n}\n", n->dir);
    }
    if (st == SK_OK && tls) {
        st = sk_buf_appendf(&conf,
                            "tls {\n  cert_file: \"%s\"\n  key_file: \"%s\"\n  ca_file: \"%s\"\n"
                            "  verify: %s\n  timeout: 5\n}\n",
                            opt->cert_file, opt->key_file, opt->ca_file,
                            opt->verify ? "true" : "false");
    }
    if (st == SK_OK) {
        st = sk_test_write_file(n->conf, conf.data, conf.len);
    }
    if (st == SK_OK) {
        st = spawn_server(n);
    }
out:
    sk_buf_fini(&conf);
    if (st != SK_OK) {
        sk_test_nats_stop(n);
        return st;
    }
    *out = n;
    return SK_OK;
}

const char *sk_test_nats_url(const sk_test_nats *n)
{
    return n != NULL ? n->url : "";
}

const char *sk_test_nats_dir(const sk_test_nats *n)
{
    return n != NULL ? n->dir : "";
}

long sk_test_nats_pid(const sk_test_nats *n)
{
    return n != NULL && n->pid > 0 ? (long)n->pid : 0;
}

void sk_test_nats_kill(sk_test_nats *n)
{
    if (n == NULL || n->pid <= 0) {
        return;
    }
    (void)kill(n->pid, SIGKILL);
    (void)reap(n->pid, STOP_TIMEOUT_MS);
    live_remove(n->pid);
    n->pid = 0;
}

sk_status sk_test_nats_restart(sk_test_nats *n)
{
    if (n == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_test_nats_restart: n must not be NULL");
    }
    sk_test_nats_kill(n);
    return spawn_server(n);
}

void sk_test_nats_stop(sk_test_nats *n)
{
    if (n == NULL) {
        return;
    }
    if (n->pid > 0) {
        (void)kill(n->pid, SIGTERM);
        if (!reap(n->pid, STOP_TIMEOUT_MS)) {
            (void)kill(n->pid, SIGKILL);
            (void)reap(n->pid, STOP_TIMEOUT_MS);
        }
        live_remove(n->pid);
        n->pid = 0;
    }
    if (n->dir[0] != '\0') {
        sk_test_rmrf(n->dir);
    }
    sk_free(n);
}
