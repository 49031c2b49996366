/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/mesh/server.c over plain HTTP on 127.0.0.1 (TLS and
 * client certificates are covered by tests/integration/test_mesh_tls.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "mesh/mesh_int.h"
#include "mesh_test_util.h"
#include "sk_test.h"

typedef struct fixture {
    test_srv t;
    sk_http_server *srv;
    sk_http_client *client;
    sk_metrics *metrics;
    char base[64];
} fixture;

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    assert_non_null(f);
    test_srv_init(&f->t);
    assert_int_equal(sk_metrics_create(&f->metrics), SK_OK);
    sk_http_server_config cfg = {
        .bind_addr = "127.0.0.1", .handler = test_srv_handler, .ctx = &f->t, .metrics = f->metrics
    };
    assert_int_equal(sk_http_server_start(&f->srv, &cfg), SK_OK);
    assert_true(sk_http_server_port(f->srv) > 0);
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
    sk_metrics_destroy(f->metrics);
    sk_free(f);
    return 0;
}

/* Send one request and wait for its completion into @p d. */
static void do_request(fixture *f,
                       done_rec *d,
                       const char *method,
                       const char *path,
                       const char *const *headers,
                       const char *body,
                       size_t body_len)
{
    char url[256];
    int before = atomic_load(&d->n_done);
    snprintf(url, sizeof(url), "%s%s", f->base, path);
    sk_http_request r = {
        .method = method, .url = url, .headers = headers, .body = body, .body_len = body_len
    };
    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, d), SK_OK);
    assert_true(done_rec_wait(d, before + 1, 10000));
}

static void test_sk_http_server_start_bad_args(void **state)
{
    (void)state;
    sk_http_server *srv = (sk_http_server *)1;
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1", .handler = test_srv_handler };

    SK_TEST_ASSERT_ERR(sk_http_server_start(NULL, &cfg), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, NULL), SK_EINVAL, "cfg must not be NULL");
    assert_null(srv);
    cfg.handler = NULL;
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EINVAL, "cfg->handler");
    cfg.handler = test_srv_handler;
    cfg.port = 70000;
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EINVAL, "cfg->port");
    cfg.port = -1;
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EINVAL, "cfg->port");
    cfg.port = 0;
    cfg.bind_addr = "localhost";
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EINVAL, "cfg->bind_addr");
    cfg.bind_addr = "127.0.0.1";
    cfg.n_threads = 1000;
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EINVAL, "cfg->n_threads");
    cfg.n_threads = 0;
    cfg.require_client_cert = true;
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EINVAL, "require_client_cert");
    sk_tls_files tls = { "/nonexistent/ca.pem", "/nonexistent/x.pem", "/nonexistent/x.key" };
    cfg.tls = &tls;
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EIO, "/nonexistent/x.key");
    assert_null(srv);
}

static void test_sk_http_server_start_port_in_use(void **state)
{
    fixture *f = *state;
    sk_http_server *srv = NULL;
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                  .port = sk_http_server_port(f->srv),
                                  .handler = test_srv_handler,
                                  .ctx = &f->t };
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EIO, "cannot listen");
    assert_null(srv);
}

static void test_sk_http_server_null_safe(void **state)
{
    (void)state;
    assert_int_equal(sk_http_server_port(NULL), 0);
    sk_http_server_stop(NULL);
    assert_null(sk_http_req_method(NULL));
    assert_null(sk_http_req_path(NULL));
    assert_null(sk_http_req_query(NULL, "q"));
    assert_null(sk_http_req_header(NULL, "x"));
    assert_int_equal(sk_http_req_body(NULL).len, 0);
    assert_null(sk_http_req_peer_service(NULL));
    sk_http_req_set_user(NULL, NULL);
    assert_null(sk_http_req_user(NULL));
    sk_http_req_respond(NULL, 200, NULL, NULL, 0, NULL);
    sk_http_req_respond_problem(NULL, 400, NULL, "x");
    sk_http_req_respond_json(NULL, 200, NULL, NULL);
}

/* A handler that blocks (what a handler must never do) until the test lets it go. */
typedef struct blocker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_inside;
    bool is_released;
} blocker;

static void blocking_handler(sk_http_req *req, void *ctx)
{
    blocker *b = ctx;
    pthread_mutex_lock(&b->mu);
    b->is_inside = true;
    pthread_cond_broadcast(&b->cv);
    while (!b->is_released) {
        pthread_cond_wait(&b->cv, &b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    sk_http_req_respond(req, 200, "text/plain", "done", 4, NULL);
}

static bool is_not_busy(void *ctx)
{
    return sk_http_server_busy_ms(ctx) == 0;
}

/* The watchdog's reading: how long a thread of the server has been in one request. */
static void test_sk_http_server_busy_ms(void **state)
{
    (void)state;
    blocker b = { .is_inside = false, .is_released = false };
    sk_http_server *srv = NULL;
    sk_http_client *client = NULL;
    done_rec d;
    char url[64];

    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                  .handler = blocking_handler,
                                  .ctx = &b };
    assert_int_equal(sk_http_server_start(&srv, &cfg), SK_OK);
    assert_int_equal(sk_http_client_create(&client, NULL), SK_OK);
    assert_int_equal(sk_http_server_busy_ms(NULL), 0);
    assert_int_equal(sk_http_server_busy_ms(srv), 0); /* idle */

    done_rec_init(&d);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/any", sk_http_server_port(srv));
    sk_http_request r = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(client, &r, done_rec_cb, &d), SK_OK);
    pthread_mutex_lock(&b.mu);
    while (!b.is_inside) {
        pthread_cond_wait(&b.cv, &b.mu);
    }
    pthread_mutex_unlock(&b.mu);
    int64_t inside_at = sk_time_mono_ms();
    struct timespec pause = { 0, 120 * 1000000L };
    nanosleep(&pause, NULL);
    int64_t busy = sk_http_server_busy_ms(srv);
    assert_true(busy >= 100);
    assert_true(busy <= sk_time_mono_ms() - inside_at + 1000); /* since the request, not before */

    pthread_mutex_lock(&b.mu);
    b.is_released = true;
    pthread_cond_broadcast(&b.cv);
    pthread_mutex_unlock(&b.mu);
    assert_true(done_rec_wait(&d, 1, 10000));
    assert_int_equal(d.status, 200);
    assert_true(sk_test_wait_until(is_not_busy, srv, 5000)); /* out of the callback: 0 again */
    done_rec_fini(&d);
    sk_http_client_destroy(client);
    sk_http_server_stop(srv);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
}

static void test_sk_http_server_reload_tls_errors(void **state)
{
    fixture *f = *state;
    SK_TEST_ASSERT_ERR(sk_http_server_reload_tls(NULL), SK_EINVAL, "srv must not be NULL");
    SK_TEST_ASSERT_ERR(sk_http_server_reload_tls(f->srv), SK_ESTATE, "without TLS");
    SK_TEST_ASSERT_ERR(sk_http_client_reload_tls(NULL), SK_EINVAL, "c must not be NULL");
    SK_TEST_ASSERT_ERR(sk_http_client_reload_tls(f->client), SK_ESTATE, "without TLS");
}

static void test_sk_http_server_start_tls_missing_files(void **state)
{
    (void)state;
    sk_http_server *srv = (sk_http_server *)1;
    sk_tls_files tls = { "/nonexistent/ca.pem", "/nonexistent/x.pem", "/nonexistent/x.key" };
    sk_tls_files empty = { "", "", "" };
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                  .tls = &tls,
                                  .require_client_cert = true,
                                  .handler = test_srv_handler };

    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EIO, "key_file /nonexistent/x.key");
    assert_null(srv);
    cfg.tls = &empty;
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EINVAL, "cfg->tls->key_file");
    empty.key_file = "k";
    empty.cert_file = "c";
    SK_TEST_ASSERT_ERR(sk_http_server_start(&srv, &cfg), SK_EINVAL, "cfg->tls->ca_file");
    assert_null(srv);
}

static void test_sk_http_server_echo_decodes_path_query_headers(void **state)
{
    fixture *f = *state;
    done_rec d;
    static const char *const hdrs[] = { "X-Test: hello", NULL };
    json_t *o;

    done_rec_init(&d);
    do_request(f, &d, "GET", "/echo/a%20b?q=x%26y&other", hdrs, NULL, 0);
    assert_int_equal(d.st, SK_OK);
    assert_int_equal(d.status, 200);
    assert_string_equal(d.content_type, "application/json");
    assert_string_equal(d.location, "/somewhere");
    assert_string_equal(d.retry_after, "3");
    assert_int_equal(sk_json_parse_object(sk_slice_from_str(d.body), &o), SK_OK);
    assert_string_equal(json_string_value(json_object_get(o, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(o, "path")), "/echo/a b");
    assert_string_equal(json_string_value(json_object_get(o, "q")), "x&y");
    assert_string_equal(json_string_value(json_object_get(o, "x_test")), "hello");
    assert_true(json_is_null(json_object_get(o, "peer")));
    json_decref(o);
    done_rec_fini(&d);
}

static void test_sk_http_server_post_body_sizes(void **state)
{
    fixture *f = *state;
    done_rec d;
    size_t max = SK_MAX_HTTP_BODY;
    char *body = sk_malloc(max + 1);
    json_t *o;

    assert_non_null(body);
    memset(body, 'a', max + 1);
    done_rec_init(&d);
    /* 0, 1 and max bytes reach the handler. */
    size_t sizes[] = { 0, 1, max };
    for (size_t i = 0; i < 3; i++) {
        do_request(f, &d, "POST", "/echo", NULL, body, sizes[i]);
        assert_int_equal(d.st, SK_OK);
        assert_int_equal(d.status, 200);
        assert_int_equal(sk_json_parse_object(sk_slice_from_str(d.body), &o), SK_OK);
        assert_int_equal(json_integer_value(json_object_get(o, "body_len")), (json_int_t)sizes[i]);
        json_decref(o);
    }
    /* max + 1 is refused by the client already (the server side is tested with a small limit). */
    sk_http_request r = { .method = "POST", .url = f->base, .body = body, .body_len = max + 1 };
    SK_TEST_ASSERT_ERR(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_ELIMIT, "exceeds");
    done_rec_fini(&d);
    sk_free(body);
}

static void test_sk_http_server_small_limit_413(void **state)
{
    fixture *f = *state;
    done_rec d;
    sk_http_server *srv = NULL;
    char url[128];
    json_t *o;
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                  .handler = test_srv_handler,
                                  .ctx = &f->t,
                                  .max_body_bytes = 10,
                                  .n_threads = 1 };

    assert_int_equal(sk_http_server_start(&srv, &cfg), SK_OK);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", sk_http_server_port(srv));
    done_rec_init(&d);
    int handled = atomic_load(&f->t.n_handled);
    sk_http_request r = { .method = "POST", .url = url, .body = "0123456789A", .body_len = 11 };
    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, 1, 10000));
    assert_int_equal(d.st, SK_OK);
    assert_int_equal(d.status, 413);
    assert_string_equal(d.content_type, "application/problem+json");
    assert_int_equal(sk_json_parse_object(sk_slice_from_str(d.body), &o), SK_OK);
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 413);
    assert_non_null(json_object_get(o, "request_id"));
    json_decref(o);
    assert_int_equal(atomic_load(&f->t.n_handled), handled);
    /* Exactly the limit is fine. */
    r.body_len = 10;
    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, 2, 10000));
    assert_int_equal(d.status, 200);
    done_rec_fini(&d);
    sk_http_server_stop(srv);
}

/* Send @p request on a plain socket and read the answer until the server closes or 2 s pass. */
static size_t raw_exchange(int port, const char *request, char *out, size_t out_len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { 0 };
    struct timeval tv = { 2, 0 };
    size_t total = 0;

    assert_true(fd >= 0);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(send(fd, request, strlen(request), MSG_NOSIGNAL), (ssize_t)strlen(request));
    for (;;) {
        ssize_t n = recv(fd, out + total, out_len - 1 - total, 0);
        if (n <= 0) {
            break;
        }
        total += (size_t)n;
        if (strstr(out, "\r\n\r\n") != NULL && total >= out_len / 2) {
            break;
        }
        out[total] = '\0';
        if (strstr(out, "}") != NULL) {
            break; /* the problem body is complete */
        }
    }
    out[total] = '\0';
    close(fd);
    return total;
}

static void test_sk_http_server_chunked_over_limit_413(void **state)
{
    fixture *f = *state;
    sk_http_server *srv = NULL;
    char out[4096];
    sk_http_server_config cfg = {
        .bind_addr = "127.0.0.1", .handler = test_srv_handler, .ctx = &f->t, .max_body_bytes = 10
    };
    int handled = atomic_load(&f->t.n_handled);

    assert_int_equal(sk_http_server_start(&srv, &cfg), SK_OK);
    /* No Content-Length: the limit is found while the body streams in. */
    raw_exchange(sk_http_server_port(srv),
                 "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "14\r\n01234567890123456789\r\n0\r\n\r\n",
                 out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 413"));
    assert_non_null(strstr(out, "application/problem+json"));
    /* Exactly the limit, chunked, reaches the handler. */
    raw_exchange(sk_http_server_port(srv),
                 "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 "Connection: close\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n",
                 out, sizeof(out));
    assert_non_null(strstr(out, "HTTP/1.1 200"));
    assert_non_null(strstr(out, "\"body_len\":10"));
    assert_int_equal(atomic_load(&f->t.n_handled), handled + 1);
    /* A Content-Length that is not a number is refused as well. */
    raw_exchange(
        sk_http_server_port(srv),
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", out,
        sizeof(out));
    assert_true(strstr(out, "HTTP/1.1 413") != NULL || strstr(out, "HTTP/1.1 400") != NULL);
    sk_http_server_stop(srv);
}

static void test_sk_http_server_unknown_method_reaches_handler(void **state)
{
    fixture *f = *state;
    done_rec d;
    json_t *o;

    done_rec_init(&d);
    do_request(f, &d, "BREW", "/echo", NULL, NULL, 0);
    assert_int_equal(d.status, 200);
    assert_int_equal(sk_json_parse_object(sk_slice_from_str(d.body), &o), SK_OK);
    assert_string_equal(json_string_value(json_object_get(o, "method")), "BREW");
    json_decref(o);
    done_rec_fini(&d);
}

static void test_sk_http_req_respond_problem_body(void **state)
{
    fixture *f = *state;
    done_rec d;
    json_t *o;
    static const char *const good_id[] = { "X-Request-Id: abc-123", NULL };
    static const char *const bad_id[] = { "X-Request-Id: bad/id", NULL };

    done_rec_init(&d);
    do_request(f, &d, "GET", "/problem", good_id, NULL, 0);
    assert_int_equal(d.status, 409);
    assert_string_equal(d.content_type, "application/problem+json");
    assert_int_equal(sk_json_parse_object(sk_slice_from_str(d.body), &o), SK_OK);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "about:blank");
    assert_string_equal(json_string_value(json_object_get(o, "title")), "Conflict");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 409);
    assert_string_equal(json_string_value(json_object_get(o, "detail")),
                        "order 42 is already paid");
    assert_string_equal(json_string_value(json_object_get(o, "request_id")), "abc-123");
    json_decref(o);

    do_request(f, &d, "GET", "/nowhere", bad_id, NULL, 0);
    assert_int_equal(d.status, 404);
    assert_int_equal(sk_json_parse_object(sk_slice_from_str(d.body), &o), SK_OK);
    const char *rid = json_string_value(json_object_get(o, "request_id"));
    assert_non_null(rid);
    assert_true(sk_uuid_is_valid(sk_slice_from_str(rid)));
    assert_string_equal(json_string_value(json_object_get(o, "title")), "Not Found");
    json_decref(o);
    done_rec_fini(&d);
}

static void test_sk_http_req_respond_later_from_thread(void **state)
{
    fixture *f = *state;
    done_rec d;

    done_rec_init(&d);
    do_request(f, &d, "GET", "/later", NULL, NULL, 0);
    assert_int_equal(d.st, SK_OK);
    assert_int_equal(d.status, 200);
    assert_string_equal(d.body, "later");
    done_rec_fini(&d);
}

static void test_sk_http_server_keep_alive(void **state)
{
    fixture *f = *state;
    done_rec d;
    uint64_t before = sk__http_server_connections_total(f->srv);

    done_rec_init(&d);
    for (int i = 0; i < 20; i++) {
        do_request(f, &d, i % 2 ? "POST" : "GET", "/echo", NULL, i % 2 ? "{}" : NULL,
                   i % 2 ? 2 : 0);
        assert_int_equal(d.status, 200);
    }
    assert_int_equal(sk__http_server_connections_total(f->srv) - before, 1);
    done_rec_fini(&d);
}

static bool metrics_has_404(void *ctx)
{
    fixture *f = ctx;
    sk_buf b;
    bool found;

    sk_buf_init(&b, 1 << 20);
    found = sk_metrics_render(f->metrics, &b) == SK_OK &&
            strstr(b.data, "sk_http_server_requests_total{status=\"404\"} 1") != NULL;
    sk_buf_fini(&b);
    return found;
}

static void test_sk_http_server_metrics(void **state)
{
    fixture *f = *state;
    done_rec d;
    sk_buf b;

    done_rec_init(&d);
    do_request(f, &d, "GET", "/echo", NULL, NULL, 0);
    do_request(f, &d, "GET", "/nowhere", NULL, NULL, 0);
    done_rec_fini(&d);
    sk_buf_init(&b, 1 << 20);
    /* The completion callback may run just after the answer went out: poll. */
    assert_true(sk_test_wait_until(metrics_has_404, f, 10000));
    assert_int_equal(sk_metrics_render(f->metrics, &b), SK_OK);
    assert_non_null(strstr(b.data, "sk_http_server_requests_total{status=\"200\"} 1"));
    assert_non_null(strstr(b.data, "sk_http_server_requests_total{status=\"404\"} 1"));
    assert_non_null(strstr(b.data, "sk_http_server_request_duration_seconds"));
    sk_buf_fini(&b);
}

static void test_sk_http_server_stop_answers_held_503(void **state)
{
    (void)state;
    test_srv t;
    sk_http_server *srv = NULL;
    sk_http_client *c = NULL;
    done_rec d;
    char url[128];
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                  .handler = test_srv_handler,
                                  .ctx = &t };

    test_srv_init(&t);
    done_rec_init(&d);
    assert_int_equal(sk_http_server_start(&srv, &cfg), SK_OK);
    assert_int_equal(sk_http_client_create(&c, NULL), SK_OK);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hold", sk_http_server_port(srv));
    sk_http_request r = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(c, &r, done_rec_cb, &d), SK_OK);
    assert_true(sk_test_wait_until(test_srv_has_held, &t, 10000));
    sk_http_req *held = test_srv_take_held(&t);
    sk_http_server_stop(srv);
    assert_true(done_rec_wait(&d, 1, 10000));
    assert_int_equal(d.st, SK_OK);
    assert_int_equal(d.status, 503);
    assert_string_equal(d.content_type, "application/problem+json");
    /* The handler's late answer is a no-op that releases the request (ASan checks). */
    sk_http_req_respond(held, 200, "text/plain", "late", 4, NULL);
    sk_http_client_destroy(c);
    test_srv_fini(&t);
    done_rec_fini(&d);
}

static void get_path(fixture *f, const char *path, done_rec *d, int n_before)
{
    char url[128];
    snprintf(url, sizeof(url), "%s%s", f->base, path);
    sk_http_request r = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, d), SK_OK);
    assert_true(done_rec_wait(d, n_before + 1, 10000));
}

static void test_sk_http_server_set_fault(void **state)
{
    fixture *f = *state;
    done_rec d;
    json_t *abort_all = json_loads("{\"abort\":{\"httpStatus\":418}}", 0, NULL);
    json_t *delay_all = json_loads("{\"delay\":{\"fixedDelay\":\"150ms\"}}", 0, NULL);
    json_t *bad = json_loads("{\"abort\":{\"httpStatus\":1000}}", 0, NULL);

    SK_TEST_ASSERT_ERR(sk_http_server_set_fault(NULL, abort_all), SK_EINVAL, "srv");
    SK_TEST_ASSERT_ERR(sk_http_server_set_fault(f->srv, bad), SK_EPROTO, "fault.abort.httpStatus");
    done_rec_init(&d);
    assert_int_equal(sk_http_server_set_fault(f->srv, abort_all), SK_OK);
    get_path(f, "/echo", &d, 0);
    assert_int_equal(d.status, 418);
    get_path(f, "/healthz", &d, 1); /* exempt: the handler's own 404 */
    assert_int_equal(d.status, 404);
    assert_int_equal(sk_http_server_set_fault(f->srv, delay_all), SK_OK);
    int64_t t0 = sk_time_mono_ms();
    get_path(f, "/echo", &d, 2);
    assert_int_equal(d.status, 200);
    assert_true(sk_time_mono_ms() - t0 >= 150);
    assert_int_equal(sk_http_server_set_fault(f->srv, NULL), SK_OK);
    get_path(f, "/echo", &d, 3);
    assert_int_equal(d.status, 200);
    json_decref(abort_all);
    json_decref(delay_all);
    json_decref(bad);
    done_rec_fini(&d);
}

static void test_sk_http_server_fault_delayed_at_stop(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];
    json_t *delay_all = json_loads("{\"delay\":{\"fixedDelay\":\"60s\"}}", 0, NULL);

    done_rec_init(&d);
    assert_int_equal(sk_http_server_set_fault(f->srv, delay_all), SK_OK);
    snprintf(url, sizeof(url), "%s/echo", f->base);
    sk_http_request r = { .method = "GET", .url = url };
    assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
    /* Wait until the server holds it (delayed), then stop: the delayed request gets 503. */
    for (int i = 0; i < 200 && sk__http_server_connections_total(f->srv) == 0; i++) {
        SK_IGNORE(done_rec_wait(&d, 1, 10));
    }
    SK_IGNORE(done_rec_wait(&d, 1, 100));
    sk_http_server_stop(f->srv);
    f->srv = NULL;
    assert_true(done_rec_wait(&d, 1, 10000));
    assert_int_equal(d.status, 503);
    json_decref(delay_all);
    done_rec_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_http_server_start_bad_args),
        cmocka_unit_test_setup_teardown(test_sk_http_server_start_port_in_use, setup, teardown),
        cmocka_unit_test(test_sk_http_server_null_safe),
        cmocka_unit_test(test_sk_http_server_busy_ms),
        cmocka_unit_test_setup_teardown(test_sk_http_server_reload_tls_errors, setup, teardown),
        cmocka_unit_test(test_sk_http_server_start_tls_missing_files),
        cmocka_unit_test_setup_teardown(test_sk_http_server_set_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_server_fault_delayed_at_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_server_echo_decodes_path_query_headers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_server_post_body_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_server_small_limit_413, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_server_chunked_over_limit_413, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_server_unknown_method_reaches_handler, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_req_respond_problem_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_req_respond_later_from_thread, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_server_keep_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_server_metrics, setup, teardown),
        cmocka_unit_test(test_sk_http_server_stop_answers_held_503),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
