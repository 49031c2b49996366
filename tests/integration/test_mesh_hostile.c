/* SPDX-License-Identifier: MIT */
/*
 * Hostile clients against one mesh HTTP server, both kinds the system runs:
 * an internal listener (TLS 1.3, client certificate required) and a plain
 * one (the public gateway). Oversized headers and bodies, slow clients,
 * malformed TLS, old TLS versions and crafted request targets each get a
 * clear answer (problem+json) or a closed connection, no handler sees them,
 * and a normal request succeeds afterwards. Timeouts are set short (1 s
 * request, 1.5 s idle) so that the slow-client cases take seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../unit/mesh/mesh_test_util.h"
#include "mesh/mesh_int.h"
#include "sk_test.h"
#include "sk_test_pki.h"
#include "sk_test_raw.h"

#define REQUEST_MS 1000
#define IDLE_MS    1500
#define BODY_MAX   4096u

typedef struct fixture {
    sk_test_pki pki;
    sk_tls_files order;   /* server identity */
    sk_tls_files payment; /* client identity */
    test_srv t;
    sk_http_server *tls_srv;
    sk_http_server *plain_srv;
} fixture;

static int group_setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(sk_test_pki_create(&f->pki), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->pki, "order", &f->order), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->pki, "payment", &f->payment), SK_OK);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    sk_tls_files_fini(&f->order);
    sk_tls_files_fini(&f->payment);
    sk_test_pki_destroy(&f->pki);
    sk_free(f);
    return 0;
}

static int setup(void **state)
{
    fixture *f = *state;
    test_srv_init(&f->t);
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                  .tls = &f->order,
                                  .require_client_cert = true,
                                  .n_threads = 2,
                                  .max_body_bytes = BODY_MAX,
                                  .handler = test_srv_handler,
                                  .ctx = &f->t,
                                  .request_timeout_ms = REQUEST_MS,
                                  .idle_timeout_ms = IDLE_MS };
    assert_int_equal(sk_http_server_start(&f->tls_srv, &cfg), SK_OK);
    cfg.tls = NULL;
    cfg.require_client_cert = false;
    assert_int_equal(sk_http_server_start(&f->plain_srv, &cfg), SK_OK);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_http_server_stop(f->tls_srv);
    sk_http_server_stop(f->plain_srv);
    f->tls_srv = f->plain_srv = NULL;
    test_srv_fini(&f->t);
    return 0;
}

/* Open a client connection to the TLS (mutual) or the plain server. */
static void open_client(fixture *f, bool is_tls, sk_raw *c)
{
    sk_http_server *srv = is_tls ? f->tls_srv : f->plain_srv;
    assert_true(sk_raw_connect(c, sk_http_server_port(srv)));
    if (is_tls) {
        assert_true(
            sk_raw_tls(c, f->order.ca_file, f->payment.cert_file, f->payment.key_file, 0, 0));
    }
}

/* A normal request on a fresh connection answers 200: the server is healthy. */
static void assert_healthy(fixture *f, bool is_tls)
{
    sk_raw c;
    char buf[8192];
    open_client(f, is_tls, &c);
    assert_true(sk_raw_send_str(&c, "GET /echo?q=ok HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_int_equal(sk_raw_response(&c, buf, sizeof(buf), 5000), 200);
    assert_non_null(strstr(buf, "\"q\":\"ok\""));
    sk_raw_close(&c);
}

/* Send @p request on a fresh connection; expect @p status as problem+json whose detail holds @p
 * needle. */
static void
expect_problem(fixture *f, bool is_tls, const char *request, int status, const char *needle)
{
    sk_raw c;
    char buf[16384];
    char want[32];
    int handled = atomic_load(&f->t.n_handled);

    open_client(f, is_tls, &c);
    SK_IGNORE(sk_raw_send_str(&c, request));
    int got = sk_raw_response(&c, buf, sizeof(buf), 5000);
    if (got != status) {
        fail_msg("%s: expected %d, got %d: %.300s", is_tls ? "tls" : "plain", status, got, buf);
    }
    if (strstr(buf, "application/problem+json") == NULL) {
        fail_msg("not problem+json: %.400s", buf);
    }
    snprintf(want, sizeof(want), "\"status\":%d", status);
    assert_non_null(strstr(buf, want));
    if (needle != NULL && strstr(buf, needle) == NULL) {
        fail_msg("answer lacks \"%s\": %.400s", needle, buf);
    }
    assert_int_equal(atomic_load(&f->t.n_handled), handled); /* no handler saw it */
    sk_raw_close(&c);
}

/* ---------------------------------------------------------------- size limits */

static void check_headers(fixture *f, bool is_tls)
{
    size_t n = 20 * 1024;
    char *req = sk_malloc(300 * 1024);
    assert_non_null(req);

    /* One header over SK_HTTP_MAX_HEADER_BYTES: our 431. */
    int off = snprintf(req, 300 * 1024, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + off, 'a', n);
    snprintf(req + off + n, 64, "\r\n\r\n");
    expect_problem(f, is_tls, req, 431, "headers too large");

    /* The request line counts: a 10 KiB query and 8 KiB of headers, each under the limit
     * alone, are over it together: our 431. */
    off = snprintf(req, 300 * 1024, "GET /echo?q=");
    memset(req + off, 'q', 10 * 1024);
    off += 10 * 1024;
    off += snprintf(req + off, 64, " HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + off, 'a', 8 * 1024);
    snprintf(req + off + 8 * 1024, 64, "\r\n\r\n");
    expect_problem(f, is_tls, req, 431, "with the request line");

    /* Just under the limit with SK_HTTP_MAX_HEADERS fields and a long query: served. */
    off = snprintf(req, 300 * 1024, "GET /echo?q=");
    memset(req + off, 'q', 7680);
    off += 7680;
    off += snprintf(req + off, 64, " HTTP/1.1\r\nHost: x\r\n");
    for (unsigned i = 1; i < SK_HTTP_MAX_HEADERS; i++) {
        off += snprintf(req + off, 128, "X-H%03u: %070u\r\n", i, i);
    }
    snprintf(req + off, 8, "\r\n");
    assert_true(strlen(req) > SK_HTTP_MAX_HEADER_BYTES - 1024 &&
                strlen(req) < SK_HTTP_MAX_HEADER_BYTES);
    sk_raw ok;
    char okbuf[8192];
    open_client(f, is_tls, &ok);
    SK_IGNORE(sk_raw_send_str(&ok, req));
    assert_int_equal(sk_raw_response(&ok, okbuf, sizeof(okbuf), 5000), 200);
    sk_raw_close(&ok);

    /* More than SK_HTTP_MAX_HEADERS small ones: our 431. */
    off = snprintf(req, 300 * 1024, "GET /echo HTTP/1.1\r\nHost: x\r\n");
    for (unsigned i = 0; i < SK_HTTP_MAX_HEADERS + 10; i++) {
        off += snprintf(req + off, 64, "X-H%u: v\r\n", i);
    }
    snprintf(req + off, 8, "\r\n");
    expect_problem(f, is_tls, req, 431, "fields");

    /* 200 KiB, past libmicrohttpd's memory pool: its own 431, or a closed connection. */
    sk_raw c;
    char buf[8192];
    off = snprintf(req, 300 * 1024, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Huge: ");
    memset(req + off, 'b', 200 * 1024);
    snprintf(req + off + 200 * 1024, 64, "\r\n\r\n");
    open_client(f, is_tls, &c);
    SK_IGNORE(sk_raw_send_str(&c, req));
    int status = sk_raw_response(&c, buf, sizeof(buf), 5000);
    assert_true(status == 431 || status == 0);
    assert_true(sk_raw_wait_closed(&c, 5000));
    sk_raw_close(&c);
    sk_free(req);
    assert_healthy(f, is_tls);
}

static void test_header_limits(void **state)
{
    check_headers(*state, true);
    check_headers(*state, false);
}

static void check_bodies(fixture *f, bool is_tls)
{
    char head[256];
    char *chunk = sk_malloc(1024);
    sk_raw c;
    char buf[8192];

    assert_non_null(chunk);
    memset(chunk, 'x', 1024);
    /* Content-Length over the limit: refused before the body is read. */
    snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %u\r\n\r\n",
             BODY_MAX + 1);
    expect_problem(f, is_tls, head, 413, "larger than the limit");
    /* A Content-Length no 64-bit integer holds: libmicrohttpd's own 413, then closed. */
    open_client(f, is_tls, &c);
    assert_true(sk_raw_send_str(
        &c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"));
    assert_int_equal(sk_raw_response(&c, buf, sizeof(buf), 5000), 413);
    assert_true(sk_raw_wait_closed(&c, 5000));
    sk_raw_close(&c);

    /* A chunked body that grows past the limit, then ends: 413 at the end. */
    int handled = atomic_load(&f->t.n_handled);
    open_client(f, is_tls, &c);
    assert_true(sk_raw_send_str(
        &c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
    for (unsigned i = 0; i < BODY_MAX / 1024 + 1; i++) {
        assert_true(sk_raw_send_str(&c, "400\r\n"));
        assert_true(sk_raw_send(&c, chunk, 1024));
        assert_true(sk_raw_send_str(&c, "\r\n"));
    }
    assert_true(sk_raw_send_str(&c, "0\r\n\r\n"));
    assert_int_equal(sk_raw_response(&c, buf, sizeof(buf), 5000), 413);
    assert_non_null(strstr(buf, "application/problem+json"));
    sk_raw_close(&c);

    /* A chunked body that never ends: disconnected once far past the limit. */
    open_client(f, is_tls, &c);
    assert_true(sk_raw_send_str(
        &c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
    size_t sent = 0;
    while (sent < 64u * BODY_MAX && sk_raw_send_str(&c, "400\r\n") &&
           sk_raw_send(&c, chunk, 1024) && sk_raw_send_str(&c, "\r\n")) {
        sent += 1024;
    }
    /* The kernel buffers some of what was sent after the server stopped reading. */
    assert_true(sk_raw_wait_closed(&c, 5000));
    sk_raw_close(&c);
    assert_int_equal(atomic_load(&f->t.n_handled), handled);
    sk_free(chunk);
    assert_healthy(f, is_tls);
}

static void test_body_limits(void **state)
{
    check_bodies(*state, true);
    check_bodies(*state, false);
}

/* ---------------------------------------------------------------- slow clients */

/*
 * Trickle @p text one byte every 100 ms (the wait is a poll for the server
 * closing the connection) until the server closes it; fail unless that
 * happens between @p min_ms and @p max_ms after the start.
 */
static void trickle_until_closed(sk_raw *c, const char *text, int64_t min_ms, int64_t max_ms)
{
    int64_t start = sk_time_mono_ms();
    size_t i = 0;
    size_t len = strlen(text);

    while (!c->is_closed && sk_time_mono_ms() - start < max_ms + 2000) {
        if (i < len && !sk_raw_send(c, text + i, 1)) {
            break;
        }
        i++;
        SK_IGNORE(sk_raw_wait_closed(c, 100));
    }
    int64_t took = sk_time_mono_ms() - start;
    if (!c->is_closed || took < min_ms || took > max_ms) {
        fail_msg("slow client: closed=%d after %lld ms (expected %lld..%lld)", c->is_closed,
                 (long long)took, (long long)min_ms, (long long)max_ms);
    }
}

static void check_slowloris(fixture *f, bool is_tls)
{
    sk_http_server *srv = is_tls ? f->tls_srv : f->plain_srv;
    uint64_t cut = sk__http_server_cut_total(srv);
    sk_raw c;
    static const char slow_head[] =
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";

    /* Headers trickled: cut REQUEST_MS after the request line is in. */
    open_client(f, is_tls, &c);
    assert_true(sk_raw_send_str(&c, "GET /echo HTTP/1.1\r\n"));
    trickle_until_closed(&c, slow_head + strlen("GET /echo HTTP/1.1\r\n"), REQUEST_MS - 200,
                         REQUEST_MS + 1500);
    sk_raw_close(&c);
    uint64_t cut1 = sk__http_server_cut_total(srv);

    /* Body trickled: the same bound covers the body. */
    open_client(f, is_tls, &c);
    assert_true(
        sk_raw_send_str(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n"));
    trickle_until_closed(&c, slow_head, REQUEST_MS - 200, REQUEST_MS + 1500);
    sk_raw_close(&c);
    uint64_t cut2 = sk__http_server_cut_total(srv);

    /* Connected and silent (or trickling a request line that never ends): the idle bound. */
    open_client(f, is_tls, &c);
    trickle_until_closed(&c, "GET /echoechoechoechoechoechoechoechoechoechoechoechoecho",
                         IDLE_MS - 200, IDLE_MS + 1500);
    sk_raw_close(&c);
    if (sk__http_server_cut_total(srv) < cut + 3) {
        fail_msg("%s: cuts %llu -> %llu -> %llu -> %llu", is_tls ? "tls" : "plain",
                 (unsigned long long)cut, (unsigned long long)cut1, (unsigned long long)cut2,
                 (unsigned long long)sk__http_server_cut_total(srv));
    }

    /* Keep-alive within the bounds is not cut: two requests 500 ms apart on one connection. */
    char buf[8192];
    open_client(f, is_tls, &c);
    assert_true(sk_raw_send_str(&c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_int_equal(sk_raw_response(&c, buf, sizeof(buf), 5000), 200);
    assert_false(sk_raw_wait_closed(&c, 500));
    assert_true(sk_raw_send_str(&c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_int_equal(sk_raw_response(&c, buf, sizeof(buf), 5000), 200);
    sk_raw_close(&c);
    assert_healthy(f, is_tls);
}

static void test_slow_clients_are_cut(void **state)
{
    check_slowloris(*state, true);
    check_slowloris(*state, false);
}

/* A handler that takes longer than the request bound is not the client's fault: not cut. */
static void test_slow_handler_is_not_cut(void **state)
{
    fixture *f = *state;
    sk_raw c;
    char buf[8192];

    open_client(f, true, &c);
    assert_true(sk_raw_send_str(&c, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_true(sk_test_wait_until(test_srv_has_held, &f->t, 5000));
    assert_false(sk_raw_wait_closed(&c, REQUEST_MS + 500));
    sk_http_req_respond(test_srv_take_held(&f->t), 200, "text/plain", "late", 4, NULL);
    assert_int_equal(sk_raw_response(&c, buf, sizeof(buf), 5000), 200);
    sk_raw_close(&c);
}

/* ---------------------------------------------------------------- malformed TLS */

static void test_malformed_tls_closes_and_others_go_on(void **state)
{
    fixture *f = *state;
    int port = sk_http_server_port(f->tls_srv);
    sk_raw c, stuck;

    /* Garbage bytes: the handshake fails and the connection closes at once. */
    assert_true(sk_raw_connect(&c, port));
    SK_IGNORE(sk_raw_send_str(&c, "\x16\x03\x01\xff\xff garbage garbage garbage garbage garbage"));
    assert_true(sk_raw_wait_closed(&c, IDLE_MS - 500));
    sk_raw_close(&c);

    /* Plain HTTP on the TLS port: closed, never an HTTP answer. */
    assert_true(sk_raw_connect(&c, port));
    SK_IGNORE(sk_raw_send_str(&c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
    char buf[4096];
    size_t len = 0;
    while (!c.is_closed && sk_raw_read_some(&c, buf, sizeof(buf), &len, IDLE_MS + 1500)) {
    }
    assert_true(c.is_closed);
    assert_null(strstr(buf, "HTTP/1."));
    sk_raw_close(&c);

    /* A truncated ClientHello (record header announcing 512 bytes, 6 sent) hangs the
     * handshake; other clients are served meanwhile and the idle bound cuts it. */
    assert_true(sk_raw_connect(&stuck, port));
    assert_true(sk_raw_send(&stuck, "\x16\x03\x01\x02\x00\x01", 6));
    int64_t start = sk_time_mono_ms();
    for (int i = 0; i < 5; i++) {
        assert_healthy(f, true);
    }
    assert_true(sk_raw_wait_closed(&stuck, IDLE_MS + 1500));
    assert_true(sk_time_mono_ms() - start < IDLE_MS + 1500);
    sk_raw_close(&stuck);
    assert_healthy(f, true);
}

static void test_tls_below_1_3_refused_on_internal_listener(void **state)
{
    fixture *f = *state;
    int port = sk_http_server_port(f->tls_srv);
    static const int old[] = { TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION };
    sk_raw c;

    for (size_t i = 0; i < sizeof(old) / sizeof(old[0]); i++) {
        assert_true(sk_raw_connect(&c, port));
        bool ok = sk_raw_tls(&c, f->order.ca_file, f->payment.cert_file, f->payment.key_file,
                             old[i], old[i]);
        if (ok) {
            fail_msg("TLS version 0x%x was accepted", old[i]);
        }
        sk_raw_close(&c);
    }
    assert_true(sk_raw_connect(&c, port));
    assert_true(sk_raw_tls(&c, f->order.ca_file, f->payment.cert_file, f->payment.key_file,
                           TLS1_3_VERSION, TLS1_3_VERSION));
    sk_raw_close(&c);
    assert_healthy(f, true);
}

/* ---------------------------------------------------------------- request targets */

static void check_targets(fixture *f, bool is_tls)
{
    static const struct {
        const char *target;
        const char *needle;
    } bad[] = {
        { "/echo/../etc/passwd", "'..' segment" },
        { "/echo/./x", "'.' segment" },
        { "/echo/%2e%2e/%2e%2e/etc/passwd", "'..' segment" },
        { "/echo/%2E%2e", "'..' segment" },
        { "/echo%2f..%2fetc", "encoded '/'" },
        { "/echo/a%2Fb", "encoded '/'" },
        { "/echo/..%5c..%5cwin.ini", "encoded '\\\\'" },
        { "/echo%00.json", "NUL" },
        { "/echo?q=a%00b", "query: encoded NUL" },
        { "/echo/%c0%ae%c0%ae/x", "UTF-8" },
        { "/echo/%e0%80%ae", "UTF-8" },
        { "/echo/%ed%a0%80", "UTF-8" },
        { "/echo/%ff", "UTF-8" },
        { "/echo?q=%ff%fe", "query argument q: not valid UTF-8" },
        { "/echo/%0d%0aX-Injected:%20yes", "control character" },
        { "echo", "start with '/'" },
    };
    char req[512];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", bad[i].target);
        expect_problem(f, is_tls, req, 400, bad[i].needle);
    }
    /* What stays allowed: encoded '/' in the query, UTF-8 in the path, dots inside a segment. */
    sk_raw c;
    char buf[8192];
    open_client(f, is_tls, &c);
    assert_true(sk_raw_send_str(&c, "GET /echo/a..b/%C3%A9.x?q=a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_int_equal(sk_raw_response(&c, buf, sizeof(buf), 5000), 200);
    assert_non_null(strstr(buf, "\"q\":\"a/b\""));
    sk_raw_close(&c);
    assert_healthy(f, is_tls);
}

static void test_bad_targets_400(void **state)
{
    check_targets(*state, true);
    check_targets(*state, false);
}

/* ---------------------------------------------------------------- configuration */

static void test_timeout_config_checked(void **state)
{
    fixture *f = *state;
    sk_http_server *srv = NULL;
    sk_http_server_config cfg = { .handler = test_srv_handler,
                                  .ctx = &f->t,
                                  .request_timeout_ms = 5 };

    assert_int_equal(sk_http_server_start(&srv, &cfg), SK_EINVAL);
    assert_non_null(strstr(sk_error_message(), "request_timeout_ms"));
    cfg.request_timeout_ms = 0;
    cfg.idle_timeout_ms = 3600001;
    assert_int_equal(sk_http_server_start(&srv, &cfg), SK_EINVAL);
    assert_non_null(strstr(sk_error_message(), "idle_timeout_ms"));
    cfg.idle_timeout_ms = 0;
    setenv("SKALD_HTTP_REQUEST_TIMEOUT_MS", "soon", 1);
    assert_int_equal(sk_http_server_start(&srv, &cfg), SK_EINVAL);
    assert_non_null(strstr(sk_error_message(), "SKALD_HTTP_REQUEST_TIMEOUT_MS"));
    setenv("SKALD_HTTP_REQUEST_TIMEOUT_MS", "2000", 1);
    assert_int_equal(sk_http_server_start(&srv, &cfg), SK_OK);
    sk_http_server_stop(srv);
    unsetenv("SKALD_HTTP_REQUEST_TIMEOUT_MS");
}

/* ---------------------------------------------------------------- keys */

static void assert_mode(const char *path, mode_t want)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    if ((sb.st_mode & 0777) != want) {
        fail_msg("%s: mode %o, expected %o", path, (unsigned)(sb.st_mode & 0777), (unsigned)want);
    }
}

static void test_private_keys_written_0600(void **state)
{
    fixture *f = *state;
    char path[256];

    snprintf(path, sizeof(path), "%s/ca.key", f->pki.dir);
    assert_mode(path, 0600);
    assert_mode(f->order.key_file, 0600);
    assert_mode(f->payment.key_file, 0600);
    assert_mode(f->order.cert_file, 0644);
    /* Re-issued over a key someone loosened: the new key is 0600 again, whatever the umask. */
    mode_t old_umask = umask(0);
    assert_int_equal(chmod(f->payment.key_file, 0644), 0);
    assert_int_equal(unlink(f->payment.cert_file), 0);
    assert_int_equal(sk_pki_issue(f->pki.dir, "payment", SK_SPIFFE_PREFIX "payment", "127.0.0.1"),
                     SK_OK);
    umask(old_umask);
    assert_mode(f->payment.key_file, 0600);
    assert_mode(f->payment.cert_file, 0644);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_header_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_clients_are_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_handler_is_not_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_tls_closes_and_others_go_on, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls_below_1_3_refused_on_internal_listener, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_targets_400, setup, teardown),
        cmocka_unit_test(test_timeout_config_checked),
        cmocka_unit_test(test_private_keys_written_0600),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
