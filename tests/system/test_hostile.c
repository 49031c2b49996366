/* SPDX-License-Identifier: MIT */
/*
 * System test of hostile input on the running shop: the public gateway
 * (plain HTTP), an internal listener (mutual TLS) and nats-server each get
 * oversized, slow, malformed, badly encoded and out-of-range input and
 * answer with problem+json or a closed connection; nothing is half-applied,
 * private keys on disk are 0600, TLS below 1.2 is refused everywhere, and
 * the system stays healthy. The HTTP time bounds are shortened through the
 * environment (inherited by every service) so slow clients take seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <skald/mesh.h>

#include "sk_test.h"
#include "sk_test_raw.h"
#include "sk_test_system.h"

#define REQUEST_MS 1500
#define IDLE_MS    3000

static sk_test_system g_sys;
static char g_order_addr[64];
static int g_order_port;
static char g_pki[300];

/* Address of @p instance as `skald status` lists it. */
static void find_address(const char *instance, char *out, size_t out_len)
{
    if (sk_test_system_instance_address(&g_sys, instance, out, out_len) != SK_OK) {
        fail_msg("%s", sk_error_message());
    }
}

static int group_setup(void **state)
{
    char rq[32], idle[32];
    (void)state;
    snprintf(rq, sizeof(rq), "%d", REQUEST_MS);
    snprintf(idle, sizeof(idle), "%d", IDLE_MS);
    setenv("SKALD_HTTP_REQUEST_TIMEOUT_MS", rq, 1);
    setenv("SKALD_HTTP_IDLE_TIMEOUT_MS", idle, 1);
    if (sk_init("system-test") != SK_OK || sk_test_system_start(&g_sys, 60000) != SK_OK) {
        fprintf(stderr, "system-test: %s\n", sk_error_message());
        return -1;
    }
    snprintf(g_pki, sizeof(g_pki), "%s/pki", g_sys.data_dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = sk_test_system_stop(&g_sys);
    if (rc != 0) {
        fprintf(stderr, "system-test: skald up exited with %d (data kept in %s)\n", rc,
                g_sys.data_dir);
        return -1;
    }
    sk_test_system_cleanup(&g_sys);
    sk_shutdown();
    return 0;
}

/* ---------------------------------------------------------------- helpers */

/* Connect to the gateway (plain) or to order-1 (mutual TLS as @p identity). */
static void open_client(bool is_internal, const char *identity, sk_raw *c)
{
    char ca[400], cert[400], key[400];
    if (!is_internal) {
        assert_true(sk_raw_connect(c, g_sys.port));
        return;
    }
    assert_true(sk_raw_connect(c, g_order_port));
    snprintf(ca, sizeof(ca), "%s/ca.pem", g_pki);
    snprintf(cert, sizeof(cert), "%s/%s.pem", g_pki, identity);
    snprintf(key, sizeof(key), "%s/%s.key", g_pki, identity);
    assert_true(sk_raw_tls(c, ca, cert, key, 0, 0));
}

/* Send @p request; expect @p status as problem+json holding @p needle (or NULL). */
static void expect_raw(bool is_internal, const char *request, int status, const char *needle)
{
    sk_raw c;
    char buf[16384];
    open_client(is_internal, "gateway", &c);
    SK_IGNORE(sk_raw_send_str(&c, request));
    int got = sk_raw_response(&c, buf, sizeof(buf), 10000);
    if (got != status || strstr(buf, "application/problem+json") == NULL ||
        (needle != NULL && strstr(buf, needle) == NULL)) {
        fail_msg("%s: expected %d problem+json with \"%s\", got %d: %.500s",
                 is_internal ? "order" : "gateway", status, needle != NULL ? needle : "", got, buf);
    }
    sk_raw_close(&c);
}

/* JSON request through the gateway; expect @p status (problem+json naming @p needle when >= 400).
 */
static void
expect_api(const char *method, const char *path, const char *body, int status, const char *needle)
{
    sk_test_http r;
    static const char *const headers[] = { "Content-Type: application/json", NULL };
    assert_int_equal(
        sk_test_http_send(&g_sys, method, path, body, body != NULL ? strlen(body) : 0, headers, &r),
        SK_OK);
    if (r.status != status ||
        (status >= 400 && strncmp(r.content_type, "application/problem+json", 24) != 0) ||
        (needle != NULL && strstr(r.body, needle) == NULL)) {
        fail_msg("%s %s %.80s: expected %d naming \"%s\", got %d %s: %.400s", method, path,
                 body != NULL ? body : "", status, needle != NULL ? needle : "", r.status,
                 r.content_type, r.body);
    }
    sk_test_http_fini(&r);
}

static void assert_system_healthy(void)
{
    sk_test_http r;
    assert_int_equal(sk_test_http_send(&g_sys, "GET", "/healthz", NULL, 0, NULL, &r), SK_OK);
    assert_int_equal(r.status, 200);
    sk_test_http_fini(&r);
    assert_int_equal(sk_test_system_await_ready(&g_sys, 20000), SK_OK);
    sk_raw c;
    char buf[8192];
    open_client(true, "gateway", &c);
    assert_true(sk_raw_send_str(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_int_equal(sk_raw_response(&c, buf, sizeof(buf), 5000), 200);
    sk_raw_close(&c);
}

/* Trickle @p text one byte per 100 ms (polling for the close); closed within @p max_ms. */
static void trickle_until_closed(sk_raw *c, const char *text, int64_t max_ms)
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
    if (!c->is_closed || took > max_ms) {
        fail_msg("slow client still connected after %lld ms (bound %lld)", (long long)took,
                 (long long)max_ms);
    }
}

/* ---------------------------------------------------------------- tests */

static void test_setup_addresses(void **state)
{
    (void)state;
    find_address("order-1", g_order_addr, sizeof(g_order_addr));
    const char *colon = strrchr(g_order_addr, ':');
    assert_non_null(colon);
    g_order_port = atoi(colon + 1);
    assert_true(g_order_port > 0);
}

static void check_sizes(bool is_internal)
{
    char *req = sk_malloc(64 * 1024);
    assert_non_null(req);
    int off = snprintf(req, 64 * 1024, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + off, 'a', 20 * 1024);
    snprintf(req + off + 20 * 1024, 16, "\r\n\r\n");
    expect_raw(is_internal, req, 431, "headers too large");
    off = snprintf(req, 64 * 1024, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 150; i++) {
        off += snprintf(req + off, 32, "X-H%d: v\r\n", i);
    }
    snprintf(req + off, 8, "\r\n");
    expect_raw(is_internal, req, 431, "fields");
    snprintf(req, 64 * 1024,
             "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
             "%u\r\n\r\n",
             is_internal ? "/orders" : "/api/v1/orders", SK_MAX_HTTP_BODY + 1u);
    expect_raw(is_internal, req, 413, "larger than the limit");
    sk_free(req);

    /* Chunked, growing past 1 MiB, then ended: 413 problem+json (or cut when far past). */
    sk_raw c;
    char buf[8192];
    char *chunk = sk_malloc(64 * 1024);
    assert_non_null(chunk);
    memset(chunk, ' ', 64 * 1024);
    open_client(is_internal, "gateway", &c);
    assert_true(sk_raw_send_str(
        &c, is_internal ? "POST /orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        : "POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                          "chunked\r\n\r\n"));
    bool is_sent = true;
    for (int i = 0; i < 17 && is_sent; i++) {
        is_sent = sk_raw_send_str(&c, "10000\r\n") && sk_raw_send(&c, chunk, 64 * 1024) &&
                  sk_raw_send_str(&c, "\r\n");
    }
    if (is_sent) {
        SK_IGNORE(sk_raw_send_str(&c, "0\r\n\r\n"));
    }
    int status = sk_raw_response(&c, buf, sizeof(buf), 10000);
    if (status != 413 || strstr(buf, "application/problem+json") == NULL) {
        fail_msg("chunked over the limit: got %d: %.300s", status, buf);
    }
    sk_raw_close(&c);
    sk_free(chunk);
}

static void test_size_limits(void **state)
{
    (void)state;
    check_sizes(false);
    check_sizes(true);
    assert_system_healthy();
}

static void test_slow_clients(void **state)
{
    (void)state;
    static const char head_rest[] =
        "Host: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for (int internal = 0; internal < 2; internal++) {
        sk_raw c;
        /* Headers one byte at a time. */
        open_client(internal, "gateway", &c);
        assert_true(sk_raw_send_str(&c, "GET /healthz HTTP/1.1\r\n"));
        trickle_until_closed(&c, head_rest, REQUEST_MS + 2000);
        sk_raw_close(&c);
        /* A body one byte at a time. */
        open_client(internal, "gateway", &c);
        assert_true(sk_raw_send_str(
            &c, internal ? "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                         : "POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: "
                           "100\r\n\r\n"));
        trickle_until_closed(
            &c,
            "{\"customer_id\":"
            "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
            REQUEST_MS + 2000);
        sk_raw_close(&c);
        /* Connected and silent. */
        open_client(internal, "gateway", &c);
        trickle_until_closed(&c, "", IDLE_MS + 2000);
        sk_raw_close(&c);
    }
    assert_system_healthy();
}

static void test_malformed_tls_and_old_versions(void **state)
{
    (void)state;
    char ca[400];
    sk_raw c, stuck;
    snprintf(ca, sizeof(ca), "%s/ca.pem", g_pki);

    assert_true(sk_raw_connect(&c, g_order_port));
    SK_IGNORE(sk_raw_send_str(&c, "\x16\x03\x01\xff\xff not a handshake at all"));
    assert_true(sk_raw_wait_closed(&c, IDLE_MS));
    sk_raw_close(&c);
    assert_true(sk_raw_connect(&c, g_order_port));
    SK_IGNORE(sk_raw_send_str(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_true(sk_raw_wait_closed(&c, IDLE_MS + 2000));
    sk_raw_close(&c);
    /* A truncated ClientHello hangs one connection; others go on; the idle bound ends it. */
    assert_true(sk_raw_connect(&stuck, g_order_port));
    assert_true(sk_raw_send(&stuck, "\x16\x03\x01\x02\x00\x01", 6));
    assert_system_healthy();
    assert_true(sk_raw_wait_closed(&stuck, IDLE_MS + 2000));
    sk_raw_close(&stuck);

    /* TLS 1.0, 1.1 and 1.2 are refused by the internal listener (TLS 1.3 only). */
    static const int old[] = { TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION };
    char cert[400], key[400];
    snprintf(cert, sizeof(cert), "%s/gateway.pem", g_pki);
    snprintf(key, sizeof(key), "%s/gateway.key", g_pki);
    for (size_t i = 0; i < 3; i++) {
        assert_true(sk_raw_connect(&c, g_order_port));
        if (sk_raw_tls(&c, ca, cert, key, old[i], old[i])) {
            fail_msg("order accepted TLS version 0x%x", old[i]);
        }
        sk_raw_close(&c);
    }

    /* The gateway is plain HTTP: a ClientHello there is answered 400 or closed, nothing else. */
    char buf[4096];
    assert_true(sk_raw_connect(&c, g_sys.port));
    SK_IGNORE(sk_raw_send(&c, "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 10));
    int status = sk_raw_response(&c, buf, sizeof(buf), IDLE_MS + 2000);
    assert_true(status == 400 || status == 0);
    assert_true(sk_raw_wait_closed(&c, IDLE_MS + 2000));
    sk_raw_close(&c);
    assert_system_healthy();
}

/* nats-server: TLS after its INFO line; TLS 1.0 and 1.1 must be refused (1.2 and 1.3 are allowed). */
static void test_nats_refuses_tls_below_1_2(void **state)
{
    (void)state;
    char path[400], url[128] = "", ca[400], cert[400], key[400];
    snprintf(path, sizeof(path), "%s/run/nats.url", g_sys.data_dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(url, sizeof(url), fp));
    fclose(fp);
    /* "tls://127.0.0.1:PORT" (a cluster lists several: the first node is enough). */
    const char *host = strstr(url, "127.0.0.1:");
    assert_non_null(host);
    int port = atoi(host + strlen("127.0.0.1:"));
    snprintf(ca, sizeof(ca), "%s/ca.pem", g_pki);
    snprintf(cert, sizeof(cert), "%s/skald-cli.pem", g_pki);
    snprintf(key, sizeof(key), "%s/skald-cli.key", g_pki);

    static const struct {
        int version;
        bool is_ok;
    } cases[] = { { TLS1_VERSION, false },
                  { TLS1_1_VERSION, false },
                  { TLS1_2_VERSION, true },
                  { TLS1_3_VERSION, true } };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sk_raw c;
        char info[4096] = "";
        size_t len = 0;
        assert_true(sk_raw_connect(&c, port));
        while (strchr(info, '\n') == NULL || len == 0) {
            assert_true(sk_raw_read_some(&c, info, sizeof(info), &len, 5000));
            assert_false(c.is_closed);
        }
        assert_int_equal(strncmp(info, "INFO ", 5), 0);
        bool ok = sk_raw_tls(&c, ca, cert, key, cases[i].version, cases[i].version);
        if (ok != cases[i].is_ok) {
            fail_msg("nats-server: TLS version 0x%x %s", cases[i].version,
                     ok ? "accepted" : "refused");
        }
        sk_raw_close(&c);
    }
}

static void test_bad_targets(void **state)
{
    (void)state;
    static const struct {
        const char *target;
        const char *needle;
    } bad[] = {
        { "/api/v1/products/../customers", "'..' segment" },
        { "/api/v1/products/%2e%2e/restock", "'..' segment" },
        { "/api/v1/products/a%2fb", "encoded '/'" },
        { "/api/v1/products/a%2Fb", "encoded '/'" },
        { "/ui/..%2f..%2fetc%2fpasswd", "encoded '/'" },
        { "/api/v1/products/x%00.json", "NUL" },
        { "/api/v1/products/%c0%ae%c0%ae", "UTF-8" },
        { "/api/v1/products/%ff", "UTF-8" },
        { "/api/v1/orders?customer_id=%ff", "customer_id" },
        { "/api/v1/orders?customer_id=a%00b", "NUL" },
        { "/../../etc/passwd", "'..' segment" },
    };
    char req[512];
    for (int internal = 0; internal < 2; internal++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            const char *t = bad[i].target;
            if (internal) {
                t += strncmp(t, "/api/v1", 7) == 0 ? 7 : 0;
            }
            snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", t);
            expect_raw(internal, req, 400, bad[i].needle);
        }
    }
    /* No static files: anything under /ui/ that is not a route is a 404 problem. */
    expect_raw(false, "GET /ui/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400, "'..' segment");
    expect_api("GET", "/etc/passwd", NULL, 404, NULL);
    assert_system_healthy();
}

/* The value after @p key in @p text, up to a delimiter (quote, CR, LF), into @p out. */
static void text_value(const char *text, const char *key, char *out, size_t out_len)
{
    const char *p = strstr(text, key);
    size_t n = 0;
    out[0] = '\0';
    if (p == NULL) {
        return;
    }
    p += strlen(key);
    while (p[n] != '\0' && p[n] != '"' && p[n] != '\r' && p[n] != '\n' && n + 1 < out_len) {
        n++;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

/*
 * A proxied answer names one request id: the gateway's X-Request-Id header and
 * the upstream's problem body agree, whether the client sent a valid id, an
 * invalid one (replaced) or none.
 */
static void test_request_id_is_the_same_at_every_hop(void **state)
{
    (void)state;
    static const char *const sent[] = { "", "X-Request-Id: client-id_1.2:3\r\n",
                                        "X-Request-Id: not valid!\r\n" };
    for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
        sk_raw c;
        char req[512], buf[16384], header[128], body[128];
        snprintf(req, sizeof(req),
                 "GET /api/v1/orders/01890000-0000-7000-8000-000000000000 HTTP/1.1\r\nHost: x\r\n"
                 "%s\r\n",
                 sent[i]);
        open_client(false, NULL, &c);
        assert_true(sk_raw_send_str(&c, req));
        int got = sk_raw_response(&c, buf, sizeof(buf), 10000);
        sk_raw_close(&c);
        text_value(buf, "X-Request-Id: ", header, sizeof(header));
        text_value(buf, "\"request_id\":\"", body, sizeof(body));
        if (got != 404 || header[0] == '\0' || strcmp(header, body) != 0 ||
            (i == 1 && strcmp(header, "client-id_1.2:3") != 0) ||
            (i == 2 && strcmp(header, "not valid!") == 0)) {
            fail_msg("request id case %zu: %d, header \"%s\", body \"%s\": %.600s", i, got, header,
                     body, buf);
        }
    }
}

static void test_bad_json_and_numbers(void **state)
{
    (void)state;
    /* A product to work on, and its state before the hostile requests. */
    expect_api("POST", "/api/v1/products",
               "{\"sku\":\"HOSTILE-1\",\"name\":\"W\",\"price_cents\":100,\"stock\":5}", 201, NULL);

    expect_api("POST", "/api/v1/products",
               "{\"sku\":\"H\xff\xfe\",\"name\":\"W\",\"price_cents\":1,\"stock\":1}", 400, "body");
    expect_api("POST", "/api/v1/products",
               "{\"sku\":\"H\xc0\xaf\",\"name\":\"W\",\"price_cents\":1,\"stock\":1}", 400, "body");
    /* 100000 '[' */
    char *deep = sk_malloc(100001);
    assert_non_null(deep);
    memset(deep, '[', 100000);
    deep[100000] = '\0';
    expect_api("POST", "/api/v1/products", deep, 400, "deep");
    for (size_t i = 0; i + 5 <= 100000; i += 5) {
        memcpy(deep + i, "{\"a\":", 5);
    }
    expect_api("POST", "/api/v1/orders", deep, 400, NULL);
    sk_free(deep);

    static const struct {
        const char *path;
        const char *body;
        const char *field;
    } nums[] = {
        { "/api/v1/products",
          "{\"sku\":\"H-2\",\"name\":\"W\",\"price_cents\":9223372036854775808,\"stock\":1}",
          NULL },
        { "/api/v1/products", "{\"sku\":\"H-2\",\"name\":\"W\",\"price_cents\":1e400,\"stock\":1}",
          NULL },
        { "/api/v1/products", "{\"sku\":\"H-2\",\"name\":\"W\",\"price_cents\":-1,\"stock\":1}",
          "price_cents" },
        { "/api/v1/products", "{\"sku\":\"H-2\",\"name\":\"W\",\"price_cents\":1.5,\"stock\":1}",
          "price_cents" },
        { "/api/v1/products",
          "{\"sku\":\"H-2\",\"name\":\"W\",\"price_cents\":\"100\",\"stock\":1}", "price_cents" },
        { "/api/v1/products",
          "{\"sku\":\"H-2\",\"name\":\"W\",\"price_cents\":1000000000001,\"stock\":1}",
          "price_cents" },
        { "/api/v1/products",
          "{\"sku\":\"H-2\",\"name\":\"W\",\"price_cents\":1,\"stock\":9223372036854775807}",
          "stock" },
        { "/api/v1/products/HOSTILE-1/restock", "{\"quantity\":9223372036854775807}", "quantity" },
        { "/api/v1/products/HOSTILE-1/restock", "{\"quantity\":-1}", "quantity" },
        { "/api/v1/products/HOSTILE-1/restock", "{\"quantity\":1.5}", "quantity" },
        { "/api/v1/products/HOSTILE-1/restock", "{\"quantity\":\"5\"}", "quantity" },
        { "/api/v1/products/HOSTILE-1/restock", "{\"quantity\":18446744073709551616}", NULL },
        { "/api/v1/customers", "{\"name\":\"Ada\",\"credit_limit_cents\":-9223372036854775808}",
          "credit_limit_cents" },
        { "/api/v1/customers", "{\"name\":\"Ada\",\"credit_limit_cents\":1e18}",
          "credit_limit_cents" },
        { "/api/v1/customers", "{\"name\":\"Ada\",\"credit_limit_cents\":\"1\"}",
          "credit_limit_cents" },
        { "/api/v1/orders",
          "{\"customer_id\":\"c\",\"items\":[{\"sku\":\"HOSTILE-1\",\"quantity\":4294967297}]}",
          "quantity" },
        { "/api/v1/orders",
          "{\"customer_id\":\"c\",\"items\":[{\"sku\":\"HOSTILE-1\",\"quantity\":-2}]}",
          "quantity" },
        { "/api/v1/orders",
          "{\"customer_id\":\"c\",\"items\":[{\"sku\":\"HOSTILE-1\",\"quantity\":0.5}]}",
          "quantity" },
        { "/api/v1/orders",
          "{\"customer_id\":\"c\",\"items\":[{\"sku\":\"HOSTILE-1\",\"quantity\":\"1\"}]}",
          "quantity" },
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        expect_api("POST", nums[i].path, nums[i].body, 400, nums[i].field);
    }
    /* Nothing was half-applied: H-2 does not exist, HOSTILE-1 is as created. */
    sk_test_http r;
    int64_t deadline = sk_time_mono_ms() + 10000;
    int status = 0;
    while (status != 200 && sk_time_mono_ms() < deadline) {
        assert_int_equal(
            sk_test_http_send(&g_sys, "GET", "/api/v1/products/HOSTILE-1", NULL, 0, NULL, &r),
            SK_OK);
        status = r.status;
        if (status == 200) {
            assert_non_null(r.json);
            assert_int_equal(json_integer_value(json_object_get(r.json, "available")), 5);
            assert_int_equal(json_integer_value(json_object_get(r.json, "price_cents")), 100);
        }
        sk_test_http_fini(&r);
    }
    assert_int_equal(status, 200);
    expect_api("GET", "/api/v1/products/H-2", NULL, 404, NULL);
    assert_system_healthy();
}

static void test_private_keys_are_0600(void **state)
{
    (void)state;
    DIR *d = opendir(g_pki);
    struct dirent *e;
    int n_keys = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".key") != 0) {
            continue;
        }
        char path[600];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/%s", g_pki, e->d_name);
        assert_int_equal(stat(path, &sb), 0);
        if ((sb.st_mode & 0777) != 0600) {
            fail_msg("%s: mode %o, expected 600", path, (unsigned)(sb.st_mode & 0777));
        }
        n_keys++;
    }
    closedir(d);
    assert_true(n_keys >= 3); /* ca, nats-server, services, cli */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setup_addresses),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_slow_clients),
        cmocka_unit_test(test_malformed_tls_and_old_versions),
        cmocka_unit_test(test_nats_refuses_tls_below_1_2),
        cmocka_unit_test(test_bad_targets),
        cmocka_unit_test(test_request_id_is_the_same_at_every_hop),
        cmocka_unit_test(test_bad_json_and_numbers),
        cmocka_unit_test(test_private_keys_are_0600),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
