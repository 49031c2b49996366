/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/mesh/client.c over plain HTTP on 127.0.0.1 (TLS and
 * server identity checks are in tests/integration/test_mesh_tls.c).
 */
#define _GNU_SOURCE /* pthread_getname_np */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mesh/mesh_int.h"
#include "mesh_test_util.h"
#include "sk_test.h"

typedef struct fixture {
    test_srv t;
    sk_http_server *srv;
    sk_http_client *client;
    char base[64];
} fixture;

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    assert_non_null(f);
    test_srv_init(&f->t);
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                  .handler = test_srv_handler,
                                  .ctx = &f->t };
    assert_int_equal(sk_http_server_start(&f->srv, &cfg), SK_OK);
    snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", sk_http_server_port(f->srv));
    assert_int_equal(sk_http_client_create(&f->client, NULL), SK_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_http_client_destroy(f->client);
    sk_http_server_stop(f->srv);
    test_srv_fini(&f->t);
    sk_free(f);
    return 0;
}

static void noop_done(sk_status st, const sk_http_response *resp, void *ctx)
{
    (void)st;
    (void)resp;
    (void)ctx;
}

/* On the loop: sleep past a second, then read how long the loop has not come round. */
typedef struct blocker {
    sk_http_client *client;
    int64_t seen_ms;
} blocker;

static void block_the_loop(void *ctx)
{
    blocker *b = ctx;
    const struct timespec nap = { 1, 200000000 };
    nanosleep(&nap, NULL);
    b->seen_ms = sk_http_client_stalled_ms(b->client);
}

static bool loop_came_round(void *ctx)
{
    return sk_http_client_stalled_ms(ctx) < 1100;
}

/* What the services' watchdog reads for the gateway: how long the loop has been away. */
static void test_sk_http_client_stalled_ms(void **state)
{
    fixture *f = *state;

    assert_int_equal(sk_http_client_stalled_ms(NULL), 0);
    /* Idle, it comes round at least every second. */
    assert_true(sk_test_wait_until(loop_came_round, f->client, 5000));
    blocker b = { f->client, 0 };
    sk__http_client_on_loop(f->client, block_the_loop, &b);
    assert_true(b.seen_ms >= 1200);
    assert_true(sk_test_wait_until(loop_came_round, f->client, 5000));
}

static void test_sk_http_client_create_errors(void **state)
{
    (void)state;
    sk_http_client *c = (sk_http_client *)1;
    sk_tls_files tls = { "ca.pem", NULL, "x.key" };

    SK_TEST_ASSERT_ERR(sk_http_client_create(NULL, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_http_client_create(&c, &tls), SK_EINVAL, "tls->");
    assert_null(c);
    sk_http_client_destroy(NULL);
    assert_false(sk__http_client_is_tls(NULL));
}

static void test_sk_http_client_create_every_alloc_failure(void **state)
{
    (void)state;
    sk_tls_files tls = { "ca.pem", "x.pem", "x.key" };
    for (long n = 0;; n++) {
        sk_http_client *c = NULL;
        sk_test_fail_alloc_at(n);
        sk_status st = sk_http_client_create(&c, &tls);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            assert_true(sk__http_client_is_tls(c));
            sk_http_client_destroy(c);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(c);
    }
}

static void test_sk_http_client_send_invalid(void **state)
{
    fixture *f = *state;
    sk_http_client *c = f->client;
    char big_url[9000];
    static const char *const bad_hdr[] = { "NoColon", NULL };
    static const char *const crlf_hdr[] = { "X-A: b\r\nX-Evil: 1", NULL };
    sk_http_request r = { .method = "GET", .url = f->base };

    SK_TEST_ASSERT_ERR(sk_http_client_send(NULL, &r, noop_done, NULL), SK_EINVAL, "c must not");
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, NULL, noop_done, NULL), SK_EINVAL, "req must not");
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, NULL, NULL), SK_EINVAL, "done must not");
    r.method = NULL;
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "req->method");
    r.method = "GE T";
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "req->method");
    r.method = "GET";
    r.url = "ftp://x/";
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "req->url");
    r.url = "http://x/a b";
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "req->url");
    memset(big_url, 'a', sizeof(big_url));
    memcpy(big_url, "http://", 7);
    big_url[sizeof(big_url) - 1] = '\0';
    r.url = big_url;
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "req->url");
    r.url = f->base;
    r.headers = bad_hdr;
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "headers[0]");
    r.headers = crlf_hdr;
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "headers[0]");
    r.headers = NULL;
    r.body_len = 3;
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "req->body is NULL");
    r.body = "abc";
    r.body_len = SK_MAX_HTTP_BODY + 1u;
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_ELIMIT, "exceeds");
    r.body = NULL;
    r.body_len = 0;
    r.timeout_ms = -1;
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "timeout_ms");
    r.timeout_ms = 0;
    r.expect_service = "order";
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "https URL");
    r.expect_service = "Bad Name";
    SK_TEST_ASSERT_ERR(sk_http_client_send(c, &r, noop_done, NULL), SK_EINVAL, "expect_service");
}

static void test_sk_http_client_send_methods_and_headers(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];
    json_t *o;
    static const char *const hdrs[] = { "X-Test: v1", "Content-Type: application/json", NULL };
    const char *methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS" };

    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/echo?q=1", f->base);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        sk_http_request r = { .method = methods[i],
                              .url = url,
                              .headers = hdrs,
                              .body = i == 1 || i == 2 ? "{\"a\":1}" : NULL,
                              .body_len = i == 1 || i == 2 ? 7 : 0 };
        assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
        assert_true(done_rec_wait(&d, (int)i + 1, 10000));
        assert_int_equal(d.st, SK_OK);
        assert_int_equal(d.status, 200);
        if (strcmp(methods[i], "HEAD") == 0) {
            assert_int_equal(d.body_len, 0);
            continue;
        }
        assert_int_equal(sk_json_parse_object(sk_slice_from_str(d.body), &o), SK_OK);
        assert_string_equal(json_string_value(json_object_get(o, "method")), methods[i]);
        assert_string_equal(json_string_value(json_object_get(o, "x_test")), "v1");
        assert_string_equal(json_string_value(json_object_get(o, "q")), "1");
        assert_int_equal(json_integer_value(json_object_get(o, "body_len")), r.body_len);
        json_decref(o);
        assert_string_equal(d.location, "/somewhere");
        assert_string_equal(d.retry_after, "3");
    }
    done_rec_fini(&d);
}

static void test_sk_http_client_connect_refused(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];
    int port = sk_test_free_port();

    done_rec_init(&d);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    sk_http_request r = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, 1, 10000));
    assert_int_equal(d.st, SK_EUNAVAILABLE);
    assert_int_equal(d.status, 0);
    assert_non_null(strstr(d.err, url));
    done_rec_fini(&d);
}

static void test_sk_http_client_timeout(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];

    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/hold", f->base);
    sk_http_request r = { .method = "GET", .url = url, .timeout_ms = 100 };
    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, 1, 10000));
    assert_int_equal(d.st, SK_ETIMEDOUT);
    assert_non_null(strstr(d.err, "imeout"));
    assert_true(sk_test_wait_until(test_srv_has_held, &f->t, 10000));
    sk_http_req_respond(test_srv_take_held(&f->t), 204, NULL, NULL, 0, NULL);
    done_rec_fini(&d);
}

static void test_sk_http_client_response_too_large(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];

    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/big", f->base);
    sk_http_request r = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, 1, 10000));
    assert_int_equal(d.st, SK_ELIMIT);
    assert_non_null(strstr(d.err, "larger than"));
    done_rec_fini(&d);
}

static void test_sk_http_client_destroy_cancels_in_flight(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];

    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/hold", f->base);
    sk_http_request r = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
    assert_true(sk_test_wait_until(test_srv_has_held, &f->t, 10000));
    sk_http_client_destroy(f->client);
    f->client = NULL;
    assert_int_equal(atomic_load(&d.n_done), 1);
    assert_int_equal(d.st, SK_ECANCELED);
    sk_http_req_respond(test_srv_take_held(&f->t), 200, NULL, "x", 1, NULL);
    done_rec_fini(&d);
}

/* ---------------------------------------------------------------- a server hosted by the client */

typedef struct proxy {
    fixture *f;
    sk_http_client *loop;
    pthread_mutex_t mu;
    char thread_name[32]; /* where the last handler ran */
} proxy;

typedef struct forward {
    sk_http_req *req;
} forward;

static void forward_done(sk_status st, const sk_http_response *resp, void *ctx)
{
    forward *fw = ctx;
    if (st != SK_OK) {
        sk_http_req_respond_problem(fw->req, 502, NULL, "%s", sk_error_message());
    } else {
        sk_http_req_respond(fw->req, resp->status, resp->content_type, (const char *)resp->body.ptr,
                            resp->body.len, NULL);
    }
    sk_free(fw);
}

/* /via/REST goes to the backend's /REST through the hosting client; the rest as test_srv. */
static void proxy_handler(sk_http_req *req, void *ctx)
{
    proxy *p = ctx;
    const char *path = sk_http_req_path(req);
    char url[256];

    pthread_mutex_lock(&p->mu);
    pthread_getname_np(pthread_self(), p->thread_name, sizeof(p->thread_name));
    pthread_mutex_unlock(&p->mu);
    if (strncmp(path, "/via/", 5) != 0) {
        test_srv_handler(req, &p->f->t);
        return;
    }
    forward *fw = sk_calloc(1, sizeof(*fw));
    assert_non_null(fw);
    fw->req = req;
    snprintf(url, sizeof(url), "%s/%s", p->f->base, path + 5);
    sk_http_request r = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(p->loop, &r, forward_done, fw), SK_OK);
}

static void test_sk_http_server_hosted_by_client(void **state)
{
    fixture *f = *state;
    proxy p = { .f = f, .loop = f->client };
    sk_http_server *front = NULL;
    sk_http_client *caller = NULL;
    done_rec d;
    char url[128];
    int n = 0;

    pthread_mutex_init(&p.mu, NULL);
    done_rec_init(&d);
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                  .loop = f->client,
                                  .handler = proxy_handler,
                                  .ctx = &p };
    assert_int_equal(sk_http_server_start(&front, &cfg), SK_OK);
    assert_int_equal(sk_http_client_create(&caller, NULL), SK_OK);
    int port = sk_http_server_port(front);

    /*
     * Proxied over a new connection each: accepting, the upstream call and
     * the answer (a resumed connection) all happen on the client thread. A
     * missed wake-up costs the loop's 1 s poll: 100 of them overrun the
     * budget, which is over 100 times what the requests need.
     */
    int64_t deadline = sk_time_mono_ms() + 30000;
    for (int i = 0; i < 100; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/via/echo?q=%d", port, i);
        sk_http_request r = { .method = "GET", .url = url, .is_reuse_forbidden = true };
        assert_int_equal(sk_http_client_send(caller, &r, done_rec_cb, &d), SK_OK);
        assert_true(done_rec_wait(&d, ++n, deadline - sk_time_mono_ms()));
        assert_int_equal(d.st, SK_OK);
        assert_int_equal(d.status, 200);
    }
    assert_int_equal(atomic_load(&d.n_ok), 100);
    pthread_mutex_lock(&p.mu);
    assert_string_equal(p.thread_name, "sk-http-client");
    pthread_mutex_unlock(&p.mu);

    /* Answered from another thread: the loop is woken to send it. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/later", port);
    sk_http_request later = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(caller, &later, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, ++n, 10000));
    assert_int_equal(d.status, 200);
    assert_string_equal(d.body, "later");

    /* Stopping answers a held request 503, then the client carries on without its guest. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hold", port);
    sk_http_request hold = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(caller, &hold, done_rec_cb, &d), SK_OK);
    assert_true(sk_test_wait_until(test_srv_has_held, &f->t, 10000));
    sk_http_server_stop(front);
    assert_true(done_rec_wait(&d, ++n, 10000));
    assert_int_equal(d.status, 503);
    sk_http_req_respond(test_srv_take_held(&f->t), 200, NULL, "x", 1, NULL); /* a no-op now */
    snprintf(url, sizeof(url), "%s/echo", f->base);
    sk_http_request direct = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(f->client, &direct, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, ++n, 10000));
    assert_int_equal(d.status, 200);

    sk_http_client_destroy(caller);
    done_rec_fini(&d);
    pthread_mutex_destroy(&p.mu);
}

static size_t n_idle_easy(sk_http_client *c)
{
    size_t n_easy;
    uint64_t n_closes;
    sk__http_client_idle_counts(c, &n_easy, &n_closes);
    return n_easy;
}

static uint64_t n_pool_closes(sk_http_client *c)
{
    size_t n_easy;
    uint64_t n_closes;
    sk__http_client_idle_counts(c, &n_easy, &n_closes);
    return n_closes;
}

static bool is_pool_closed(void *ctx)
{
    return n_pool_closes(ctx) > 0;
}

/* An idle client frees its spare easy handles, then closes its pooled connections, once. */
static void test_sk_http_client_idle_releases_handles_and_connections(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];
    uint64_t before = sk__http_server_connections_total(f->srv);

    snprintf(url, sizeof(url), "%s/echo", f->base);
    sk_http_request r = { .method = "GET", .url = url };
    sk__http_client_set_idle_ms(f->client, 100, 400);
    done_rec_init(&d);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
        assert_true(done_rec_wait(&d, i + 1, 10000));
        assert_int_equal(d.status, 200);
    }
    assert_int_equal(sk__http_server_connections_total(f->srv) - before, 1); /* reused */
    assert_true(n_idle_easy(f->client) > 0);

    /* The loop looks at least once a second. */
    assert_true(sk_test_wait_until(is_pool_closed, f->client, 10000));
    assert_int_equal(n_pool_closes(f->client), 1);
    assert_int_equal(n_idle_easy(f->client), 0);
    struct timespec more_turns = { 1, 200 * 1000 * 1000 }; /* of the loop: nothing left to close */
    nanosleep(&more_turns, NULL);
    assert_int_equal(n_pool_closes(f->client), 1);

    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, 3, 10000));
    assert_int_equal(d.status, 200);
    assert_int_equal(sk__http_server_connections_total(f->srv) - before, 2); /* a new one */
    done_rec_fini(&d);
}

/* A listener on 127.0.0.1 standing in for a proxy named by the environment. */
static int proxy_listen(int *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static const char *const proxy_vars[] = { "http_proxy",  "HTTP_PROXY", "https_proxy",
                                          "HTTPS_PROXY", "all_proxy",  "ALL_PROXY" };

/*
 * Mesh calls go to the endpoint the load balancer chose, never through a
 * proxy the process environment names (a node's http_proxy would otherwise
 * carry service traffic off the host, or stop it).
 */
static void test_sk_http_client_ignores_proxy_environment(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128], proxy_url[64];
    int port;
    int fd = proxy_listen(&port);

    snprintf(proxy_url, sizeof(proxy_url), "http://127.0.0.1:%d", port);
    for (size_t i = 0; i < sizeof(proxy_vars) / sizeof(proxy_vars[0]); i++) {
        assert_int_equal(setenv(proxy_vars[i], proxy_url, 1), 0);
    }
    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/echo", f->base);
    sk_http_request r = { .method = "GET", .url = url, .timeout_ms = 5000 };
    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, 1, 10000));
    for (size_t i = 0; i < sizeof(proxy_vars) / sizeof(proxy_vars[0]); i++) {
        assert_int_equal(unsetenv(proxy_vars[i]), 0);
    }
    assert_int_equal(d.st, SK_OK);
    assert_int_equal(d.status, 200);
    assert_int_equal(accept(fd, NULL, NULL), -1); /* nobody called the proxy */
    close(fd);
    done_rec_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_http_client_create_errors),
        cmocka_unit_test_setup_teardown(test_sk_http_client_stalled_ms, setup, teardown),
        cmocka_unit_test(test_sk_http_client_create_every_alloc_failure),
        cmocka_unit_test_setup_teardown(test_sk_http_client_send_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_client_send_methods_and_headers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_client_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_client_ignores_proxy_environment, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_client_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_client_response_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_client_destroy_cancels_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_server_hosted_by_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_client_idle_releases_handles_and_connections,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
