/* SPDX-License-Identifier: MIT */
/* System-test fixture: `skald up` as a child process and an HTTP client for its gateway. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sk_test.h"
#include "sk_test_system.h"

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

sk_status sk_test_system_start(sk_test_system *sys, int64_t ready_ms)
{
    char port[16], bin[512], config[512];
    memset(sys, 0, sizeof(*sys));
    if (sk_test_tmpdir(sys->data_dir, sizeof(sys->data_dir)) != SK_OK) {
        return SK_FAIL(SK_EIO, "tmpdir");
    }
    sys->port = sk_test_free_port();
    snprintf(port, sizeof(port), "%d", sys->port);
    snprintf(bin, sizeof(bin), "%s/skald", SK_BIN_DIR);
    snprintf(config, sizeof(config), "%s/skald.yaml", SK_SOURCE_DIR);
    snprintf(sys->base_url, sizeof(sys->base_url), "http://127.0.0.1:%d", sys->port);
    char a_up[] = "up", a_config[] = "--config", a_data[] = "--data", a_port[] = "--port";
    char *argv[] = { bin, a_up, a_config, config, a_data, sys->data_dir, a_port, port, NULL };
    char log_path[400];
    snprintf(log_path, sizeof(log_path), "%s/skald-up.log", sys->data_dir);
    int pid = 0;
    sk_status st = sk_test_spawn(bin, argv, log_path, &pid);
    sys->pid = (pid_t)pid;
    if (st != SK_OK) {
        return st;
    }
    int64_t deadline = sk_time_mono_ms() + ready_ms;
    while (sk_time_mono_ms() < deadline) {
        sk_test_http r;
        if (sk_test_http_send(sys, "GET", "/readyz", NULL, 0, NULL, &r) == SK_OK) {
            int status = r.status;
            sk_test_http_fini(&r);
            if (status == 200) {
                return SK_OK;
            }
        }
        int wstatus = 0;
        if (waitpid(sys->pid, &wstatus, WNOHANG) == sys->pid) {
            sys->pid = 0;
            return SK_FAIL(SK_EIO, "skald up exited early (see %s)", log_path);
        }
        sleep_ms(50);
    }
    return SK_FAIL(SK_ETIMEDOUT, "gateway not ready within %lld ms (see %s)", (long long)ready_ms, log_path);
}

/* Count sanitizer reports in the logs of every process (services built with ASan/UBSan write them there). */
static int sanitizer_reports(const sk_test_system *sys)
{
    static const char *const logs[] = { "skald-up.log", "run/logs/customer-1.log", "run/logs/inventory-1.log",
                                        "run/logs/payment-1.log", "run/logs/order-1.log", "run/logs/orderview-1.log",
                                        "run/logs/gateway-1.log", "run/logs/psp-1.log", "run/logs/inventory-2.log",
                                        "run/logs/payment-2.log", "run/logs/orderview-2.log" };
    static const char *const markers[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:" };
    int found = 0;
    for (size_t i = 0; i < sizeof(logs) / sizeof(logs[0]); i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", sys->data_dir, logs[i]);
        char *text = sk_test_read_file(path, NULL);
        for (size_t m = 0; text != NULL && m < sizeof(markers) / sizeof(markers[0]); m++) {
            if (strstr(text, markers[m]) != NULL) {
                fprintf(stderr, "sanitizer report in %s (\"%s\")\n", path, markers[m]);
                found++;
            }
        }
        sk_free(text);
    }
    return found;
}

int sk_test_system_stop(sk_test_system *sys)
{
    int wstatus = 0;
    if (sys->pid <= 0) {
        return -1;
    }
    kill(sys->pid, SIGTERM);
    int64_t deadline = sk_time_mono_ms() + 30000;
    for (;;) {
        pid_t r = waitpid(sys->pid, &wstatus, WNOHANG);
        if (r == sys->pid) {
            break;
        }
        if (sk_time_mono_ms() > deadline) {
            kill(sys->pid, SIGKILL);
            waitpid(sys->pid, &wstatus, 0);
            sys->pid = 0;
            return -1;
        }
        sleep_ms(20);
    }
    sys->pid = 0;
    if (sanitizer_reports(sys) > 0) {
        return -2;
    }
    return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
}

void sk_test_system_cleanup(sk_test_system *sys)
{
    if (getenv("SK_TEST_KEEP") == NULL) {
        sk_test_rmrf(sys->data_dir);
    }
}

/* ---------------------------------------------------------------- HTTP */

static size_t on_body(char *ptr, size_t size, size_t n, void *ctx)
{
    sk_buf *b = ctx;
    return sk_buf_append(b, ptr, size * n) == SK_OK ? size * n : 0;
}

static void copy_header(const char *line, size_t len, const char *name, char *out, size_t out_len)
{
    size_t nlen = strlen(name);
    if (len > nlen + 1 && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
        const char *v = line + nlen + 1;
        size_t vlen = len - nlen - 1;
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n')) {
            vlen--;
        }
        snprintf(out, out_len, "%.*s", (int)vlen, v);
    }
}

static size_t on_header(char *ptr, size_t size, size_t n, void *ctx)
{
    sk_test_http *r = ctx;
    copy_header(ptr, size * n, "Content-Type", r->content_type, sizeof(r->content_type));
    copy_header(ptr, size * n, "Location", r->location, sizeof(r->location));
    copy_header(ptr, size * n, "Allow", r->allow, sizeof(r->allow));
    return size * n;
}

static pthread_key_t handle_key;
static pthread_once_t handle_once = PTHREAD_ONCE_INIT;

static void handle_free(void *h)
{
    curl_easy_cleanup(h);
}

static void handle_key_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_key_create(&handle_key, handle_free);
}

sk_status sk_test_http_send(const sk_test_system *sys,
                            const char *method,
                            const char *path,
                            const char *body,
                            size_t body_len,
                            const char *const *headers,
                            sk_test_http *out)
{
    char url[8192];
    sk_buf buf;
    struct curl_slist *list = NULL;
    pthread_once(&handle_once, handle_key_init);
    CURL *h = pthread_getspecific(handle_key);
    if (h == NULL) {
        h = curl_easy_init();
        pthread_setspecific(handle_key, h);
    } else {
        curl_easy_reset(h);
    }
    memset(out, 0, sizeof(*out));
    snprintf(url, sizeof(url), "%s%s", sys->base_url, path);
    sk_buf_init(&buf, 64u * 1024u * 1024u);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        list = curl_slist_append(list, headers[i]);
    }
    if (body != NULL) {
        list = curl_slist_append(list, "Content-Type: application/json");
    }
    list = curl_slist_append(list, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, out);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(list);
    if (rc != CURLE_OK) {
        sk_buf_fini(&buf);
        return SK_FAIL(SK_EIO, "%s %s: %s", method, path, curl_easy_strerror(rc));
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    out->status = (int)status;
    out->body = sk_buf_take(&buf, &out->body_len);
    if (out->body == NULL) {
        out->body = sk_strdup("");
        out->body_len = 0;
    }
    if (out->body_len > 0) {
        json_error_t err;
        out->json = json_loadb(out->body, out->body_len, 0, &err);
    }
    return SK_OK;
}

void sk_test_http_fini(sk_test_http *r)
{
    sk_free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------- child processes */

/* Parent PID from /proc/PID/stat; the command name may hold ')' so parse after the last one. */
static pid_t parent_of(const char *pid_dir)
{
    char path[300], buf[1024];
    snprintf(path, sizeof(path), "/proc/%s/stat", pid_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    char state = 0;
    int ppid = -1;
    if (p == NULL || sscanf(p + 1, " %c %d", &state, &ppid) != 2) {
        return -1;
    }
    return (pid_t)ppid;
}

/* Does the NUL-separated command line name @p service (see the header)? */
static bool cmdline_serves(const char *cmd, size_t len, const char *service)
{
    char bin_name[128];
    snprintf(bin_name, sizeof(bin_name), "skald-%s", service);
    const char *prev = NULL;
    for (size_t off = 0; off < len;) {
        const char *word = cmd + off;
        size_t wlen = strnlen(word, len - off);
        if (off == 0) {
            const char *base = strrchr(word, '/');
            base = base != NULL ? base + 1 : word;
            if (strcmp(base, bin_name) == 0) {
                return true;
            }
        }
        if (prev != NULL && strcmp(prev, "--service") == 0 && strcmp(word, service) == 0) {
            return true;
        }
        prev = word;
        off += wlen + 1;
    }
    return false;
}

/* Does the NUL-separated command line hold the word @p flag followed by the word @p value? */
static bool cmdline_has_flag_value(const char *cmd, size_t len, const char *flag, const char *value)
{
    const char *prev = NULL;
    for (size_t off = 0; off < len;) {
        const char *word = cmd + off;
        size_t wlen = strnlen(word, len - off);
        if (prev != NULL && strcmp(prev, flag) == 0 && strcmp(word, value) == 0) {
            return true;
        }
        prev = word;
        off += wlen + 1;
    }
    return false;
}

static bool cmdline_is_instance(const char *cmd, size_t len, const char *instance)
{
    return cmdline_has_flag_value(cmd, len, "--instance", instance);
}

typedef bool (*cmdline_match_fn)(const char *cmd, size_t len, const char *name);

/* The first child of `skald up` whose command line matches @p name, or 0. */
static pid_t child_pid(const sk_test_system *sys, cmdline_match_fn match, const char *name)
{
    pid_t found = 0;
    if (sys == NULL || sys->pid <= 0 || name == NULL || name[0] == '\0') {
        return 0;
    }
    DIR *d = opendir("/proc");
    if (d == NULL) {
        return 0;
    }
    struct dirent *e;
    while (found == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9' ||
            strspn(e->d_name, "0123456789") != strlen(e->d_name)) {
            continue;
        }
        if (parent_of(e->d_name) != sys->pid) {
            continue;
        }
        char path[300];
        size_t len = 0;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        /* A zombie (killed, not reaped yet) has an empty command line and never matches. */
        char *cmd = sk_test_read_file(path, &len);
        if (cmd != NULL && match(cmd, len, name)) {
            found = (pid_t)strtol(e->d_name, NULL, 10);
        }
        sk_free(cmd);
    }
    closedir(d);
    return found;
}

/* Poll until a child matching @p name runs under a PID other than @p old_pid. */
static sk_status await_child(const sk_test_system *sys,
                             cmdline_match_fn match,
                             const char *name,
                             pid_t old_pid,
                             int64_t timeout_ms,
                             pid_t *pid_out)
{
    if (pid_out == NULL) {
        return SK_FAIL(SK_EINVAL, "awaiting a restart: pid_out must not be NULL");
    }
    *pid_out = 0;
    if (sys == NULL || name == NULL || name[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "awaiting a restart: sys and a name are required");
    }
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    for (;;) {
        pid_t pid = child_pid(sys, match, name);
        if (pid > 0 && pid != old_pid) {
            *pid_out = pid;
            return SK_OK;
        }
        if (sk_time_mono_ms() > deadline) {
            return SK_FAIL(SK_ETIMEDOUT, "no new process of %s within %lld ms (old pid %d)", name,
                           (long long)timeout_ms, (int)old_pid);
        }
        sleep_ms(20);
    }
}

pid_t sk_test_system_service_pid(const sk_test_system *sys, const char *service)
{
    return child_pid(sys, cmdline_serves, service);
}

sk_status sk_test_system_await_service(const sk_test_system *sys,
                                       const char *service,
                                       pid_t old_pid,
                                       int64_t timeout_ms,
                                       pid_t *pid_out)
{
    return await_child(sys, cmdline_serves, service, old_pid, timeout_ms, pid_out);
}

pid_t sk_test_system_instance_pid(const sk_test_system *sys, const char *instance)
{
    return child_pid(sys, cmdline_is_instance, instance);
}

sk_status sk_test_system_await_instance(const sk_test_system *sys,
                                        const char *instance,
                                        pid_t old_pid,
                                        int64_t timeout_ms,
                                        pid_t *pid_out)
{
    return await_child(sys, cmdline_is_instance, instance, old_pid, timeout_ms, pid_out);
}

/* Is the last path component of argv[0] (the first word) exactly @p program? */
static bool cmdline_runs(const char *cmd, size_t len, const char *program)
{
    if (len == 0) {
        return false;
    }
    const char *base = strrchr(cmd, '/');
    base = base != NULL ? base + 1 : cmd;
    return strcmp(base, program) == 0;
}

pid_t sk_test_system_program_pid(const sk_test_system *sys, const char *program)
{
    return child_pid(sys, cmdline_runs, program);
}

sk_status sk_test_system_await_program(const sk_test_system *sys,
                                       const char *program,
                                       pid_t old_pid,
                                       int64_t timeout_ms,
                                       pid_t *pid_out)
{
    return await_child(sys, cmdline_runs, program, old_pid, timeout_ms, pid_out);
}

sk_status sk_test_system_await_ready(const sk_test_system *sys, int64_t timeout_ms)
{
    if (sys == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_test_system_await_ready: sys must not be NULL");
    }
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    int last = 0;
    for (;;) {
        sk_test_http r;
        if (sk_test_http_send(sys, "GET", "/readyz", NULL, 0, NULL, &r) == SK_OK) {
            last = r.status;
            sk_test_http_fini(&r);
            if (last == 200) {
                return SK_OK;
            }
        }
        if (sk_time_mono_ms() > deadline) {
            return SK_FAIL(SK_ETIMEDOUT, "gateway /readyz not 200 within %lld ms (last answer %d)",
                           (long long)timeout_ms, last);
        }
        sleep_ms(20);
    }
}

/* ---------------------------------------------------------------- services and CLI */

sk_status sk_test_service_get(const sk_test_system *sys, const char *address, const char *path, sk_test_http *out)
{
    char url[1024], ca[400], cert[400], key[400];
    sk_buf buf;
    CURL *h = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_test_service_get: out must not be NULL");
    }
    memset(out, 0, sizeof(*out));
    if (sys == NULL || address == NULL || path == NULL || path[0] != '/') {
        return SK_FAIL(SK_EINVAL, "sk_test_service_get: sys, address and an absolute path are required");
    }
    pthread_once(&handle_once, handle_key_init);
    h = curl_easy_init();
    if (h == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_test_service_get: curl_easy_init");
    }
    snprintf(url, sizeof(url), "https://%s%s", address, path);
    snprintf(ca, sizeof(ca), "%s/pki/ca.pem", sys->data_dir);
    snprintf(cert, sizeof(cert), "%s/pki/skald-cli.pem", sys->data_dir);
    snprintf(key, sizeof(key), "%s/pki/skald-cli.key", sys->data_dir);
    sk_buf_init(&buf, 64u * 1024u * 1024u);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    curl_easy_setopt(h, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(h, CURLOPT_SSLKEY, key);
    /* The chain is verified against the system's CA; the certificates name a
     * SPIFFE identity (URI SAN), not the 127.0.0.1 host, so the host check is off. */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, out);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        sk_buf_fini(&buf);
        return SK_FAIL(SK_EIO, "GET %s: %s", url, curl_easy_strerror(rc));
    }
    out->status = (int)status;
    out->body = sk_buf_take(&buf, &out->body_len);
    if (out->body == NULL) {
        out->body = sk_strdup("");
        out->body_len = 0;
    }
    if (out->body_len > 0) {
        json_error_t err;
        out->json = json_loadb(out->body, out->body_len, 0, &err);
    }
    return SK_OK;
}

sk_status sk_test_system_cli(const sk_test_system *sys, const char *args, char **out, int *exit_code)
{
    char cmd[2048];
    char chunk[4096];
    sk_buf buf;
    FILE *p = NULL;
    sk_status st = SK_OK;

    if (out != NULL) {
        *out = NULL;
    }
    if (sys == NULL || args == NULL || out == NULL || exit_code == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_test_system_cli: sys, args, out and exit_code are required");
    }
    *exit_code = -1;
    snprintf(cmd, sizeof(cmd), "%s/skald %s --data '%s' 2>&1", SK_BIN_DIR, args, sys->data_dir);
    p = popen(cmd, "r");
    if (p == NULL) {
        return SK_FAIL(SK_EIO, "running %s: %s", cmd, strerror(errno));
    }
    sk_buf_init(&buf, 16u * 1024u * 1024u);
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0) {
        if (st == SK_OK) {
            st = sk_buf_append(&buf, chunk, n);
        }
    }
    int rc = pclose(p);
    if (st == SK_OK && sk_buf_append(&buf, "", 1) != SK_OK) { /* NUL-terminate */
        st = SK_ENOMEM;
    }
    if (st != SK_OK) {
        sk_buf_fini(&buf);
        return SK_FAIL(st, "reading the output of %s", cmd);
    }
    size_t len = 0;
    *out = sk_buf_take(&buf, &len);
    *exit_code = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return SK_OK;
}

sk_status sk_test_system_instance_address(const sk_test_system *sys,
                                          const char *instance,
                                          char *out,
                                          size_t out_len)
{
    char *text = NULL;
    int code = -1;
    sk_status st;

    if (sys == NULL || instance == NULL || out == NULL || out_len == 0) {
        return SK_FAIL(SK_EINVAL, "sk_test_system_instance_address: arguments must not be NULL");
    }
    out[0] = '\0';
    st = sk_test_system_cli(sys, "status", &text, &code);
    if (st != SK_OK) {
        return st;
    }
    if (code != 0) {
        sk_free(text);
        return SK_FAIL(SK_EIO, "skald status exited with %d", code);
    }
    /* Rows: INSTANCE SERVICE ADDRESS ... */
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char name[64], service[64], address[64];
        if (sscanf(line, "%63s %63s %63s", name, service, address) == 3 &&
            strcmp(name, instance) == 0) {
            snprintf(out, out_len, "%s", address);
        }
    }
    sk_free(text);
    if (out[0] == '\0') {
        return SK_FAIL(SK_ENOTFOUND, "skald status does not list %s", instance);
    }
    return SK_OK;
}
