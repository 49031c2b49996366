/* SPDX-License-Identifier: MIT */
/* Unit tests for src/mesh/upstream.c over plain HTTP (TLS identity: tests/integration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mesh/mesh_int.h"
#include "mesh_test_util.h"
#include "sk_test.h"

typedef struct fixture {
    test_srv t[2];
    sk_http_server *srv[2];
    char ep[2][64];
    sk_http_client *client;
    sk_metrics *metrics;
} fixture;

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    assert_non_null(f);
    for (int i = 0; i < 2; i++) {
        test_srv_init(&f->t[i]);
        sk_http_server_config cfg = {
            .bind_addr = "127.0.0.1", .n_threads = 1, .handler = test_srv_handler, .ctx = &f->t[i]
        };
        assert_int_equal(sk_http_server_start(&f->srv[i], &cfg), SK_OK);
        snprintf(f->ep[i], sizeof(f->ep[i]), "127.0.0.1:%d", sk_http_server_port(f->srv[i]));
    }
    assert_int_equal(sk_http_client_create(&f->client, NULL), SK_OK);
    assert_int_equal(sk_metrics_create(&f->metrics), SK_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_http_client_destroy(f->client);
    for (int i = 0; i < 2; i++) {
        sk_http_server_stop(f->srv[i]);
        test_srv_fini(&f->t[i]);
    }
    sk_metrics_destroy(f->metrics);
    sk_free(f);
    return 0;
}

static void noop_done(sk_status st, const sk_http_response *resp, void *ctx)
{
    (void)st;
    (void)resp;
    (void)ctx;
}

static void test_sk_upstream_create_errors(void **state)
{
    fixture *f = *state;
    sk_upstream *u = (sk_upstream *)1;
    json_t *bad = json_pack("{s:i}", "timeout", 5);

    SK_TEST_ASSERT_ERR(sk_upstream_create(NULL, f->client, "order", NULL, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_upstream_create(&u, NULL, "order", NULL, NULL), SK_EINVAL, "client");
    assert_null(u);
    SK_TEST_ASSERT_ERR(sk_upstream_create(&u, f->client, NULL, NULL, NULL), SK_EINVAL, "service");
    SK_TEST_ASSERT_ERR(sk_upstream_create(&u, f->client, "", NULL, NULL), SK_EINVAL, "service");
    SK_TEST_ASSERT_ERR(sk_upstream_create(&u, f->client, "Order", NULL, NULL), SK_EINVAL,
                       "service");
    SK_TEST_ASSERT_ERR(
        sk_upstream_create(&u, f->client, "a23456789012345678901234567890123", NULL, NULL),
        SK_EINVAL, "service");
    SK_TEST_ASSERT_ERR(sk_upstream_create(&u, f->client, "order", bad, NULL), SK_EPROTO,
                       "upstream order: policy.timeout");
    assert_null(u);
    json_decref(bad);
    assert_int_equal(
        sk_upstream_create(&u, f->client, "a2345678901234567890123456789012", NULL, NULL), SK_OK);
    sk_upstream_destroy(u);
    sk_upstream_destroy(NULL);
}

static void test_sk_upstream_create_every_alloc_failure(void **state)
{
    fixture *f = *state;
    json_t *policy = json_pack("{s:s}", "timeout", "1s");
    for (long n = 0;; n++) {
        sk_upstream *u = NULL;
        sk_test_fail_alloc_at(n);
        sk_status st = sk_upstream_create(&u, f->client, "order", policy, f->metrics);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_upstream_destroy(u);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(u);
    }
    json_decref(policy);
}

static void test_sk_upstream_set_endpoints(void **state)
{
    fixture *f = *state;
    sk_upstream *u = NULL;
    const char *good[] = { "127.0.0.1:1", "[::1]:65535", "order-1.local:8080" };
    const char *bad[] = { "nope",   "1.2.3.4:0", "1.2.3.4:65536", ":80",
                          "a b:80", "[::1:80",   "1.2.3.4:",      "h/x:80" };

    assert_int_equal(sk_upstream_create(&u, f->client, "order", NULL, NULL), SK_OK);
    assert_int_equal(sk_upstream_endpoint_count(u), 0);
    assert_int_equal(sk_upstream_set_endpoints(u, good, 3), SK_OK);
    assert_int_equal(sk_upstream_endpoint_count(u), 3);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        SK_TEST_ASSERT_ERR(sk_upstream_set_endpoints(u, &bad[i], 1), SK_EINVAL, "addrs[0]");
    }
    assert_int_equal(sk_upstream_endpoint_count(u), 3); /* unchanged on failure */
    SK_TEST_ASSERT_ERR(sk_upstream_set_endpoints(NULL, good, 1), SK_EINVAL, "u must");
    SK_TEST_ASSERT_ERR(sk_upstream_set_endpoints(u, NULL, 1), SK_EINVAL, "addrs is NULL");
    const char *many[1025];
    for (size_t i = 0; i < 1025; i++) {
        many[i] = "127.0.0.1:1";
    }
    SK_TEST_ASSERT_ERR(sk_upstream_set_endpoints(u, many, 1025), SK_ELIMIT, "at most 1024");
    assert_int_equal(sk_upstream_set_endpoints(u, many, 1024), SK_OK);
    assert_int_equal(sk_upstream_endpoint_count(u), 1024);
    assert_int_equal(sk_upstream_set_endpoints(u, NULL, 0), SK_OK);
    assert_int_equal(sk_upstream_endpoint_count(u), 0);
    assert_int_equal(sk_upstream_endpoint_count(NULL), 0);
    for (long n = 0;; n++) {
        sk_test_fail_alloc_at(n);
        sk_status st = sk_upstream_set_endpoints(u, good, 3);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_int_equal(sk_upstream_endpoint_count(u), 0);
    }
    sk_upstream_destroy(u);
}

static void test_sk_upstream_send_errors(void **state)
{
    fixture *f = *state;
    sk_upstream *u = NULL;
    sk_http_request r = { .method = "GET", .url = "/echo" };

    assert_int_equal(sk_upstream_create(&u, f->client, "order", NULL, NULL), SK_OK);
    SK_TEST_ASSERT_ERR(sk_upstream_send(u, &r, noop_done, NULL), SK_EUNAVAILABLE, "no endpoint");
    SK_TEST_ASSERT_ERR(sk_upstream_send(NULL, &r, noop_done, NULL), SK_EINVAL, "u must");
    SK_TEST_ASSERT_ERR(sk_upstream_send(u, NULL, noop_done, NULL), SK_EINVAL, "req must");
    SK_TEST_ASSERT_ERR(sk_upstream_send(u, &r, NULL, NULL), SK_EINVAL, "done must");
    r.url = "http://x/echo";
    SK_TEST_ASSERT_ERR(sk_upstream_send(u, &r, noop_done, NULL), SK_EINVAL, "path");
    const char *eps[] = { f->ep[0] };
    assert_int_equal(sk_upstream_set_endpoints(u, eps, 1), SK_OK);
    r.url = "/echo";
    r.method = "BAD METHOD";
    SK_TEST_ASSERT_ERR(sk_upstream_send(u, &r, noop_done, NULL), SK_EINVAL, "upstream order");
    sk_upstream_destroy(u);
}

static void test_sk_upstream_send_round_robin(void **state)
{
    fixture *f = *state;
    sk_upstream *u = NULL;
    done_rec d;
    const char *eps[] = { f->ep[0], f->ep[1] };
    sk_http_request r = { .method = "GET", .url = "/echo?q=rr" };
    sk_buf b;

    json_t *policy = json_pack("{s:{s:{s:s}}}", "trafficPolicy", "loadBalancer", "simple",
                               "ROUND_ROBIN");
    assert_int_equal(sk_upstream_create(&u, f->client, "order", policy, f->metrics), SK_OK);
    json_decref(policy);
    assert_int_equal(sk_upstream_set_endpoints(u, eps, 2), SK_OK);
    done_rec_init(&d);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(sk_upstream_send(u, &r, done_rec_cb, &d), SK_OK);
        assert_true(done_rec_wait(&d, i + 1, 10000));
        assert_int_equal(d.status, 200);
    }
    assert_int_equal(atomic_load(&f->t[0].n_handled), 5);
    assert_int_equal(atomic_load(&f->t[1].n_handled), 5);
    sk_buf_init(&b, 1 << 20);
    assert_int_equal(sk_metrics_render(f->metrics, &b), SK_OK);
    assert_non_null(
        strstr(b.data, "sk_upstream_requests_total{upstream=\"order\",status=\"200\"} 10"));
    sk_buf_fini(&b);
    done_rec_fini(&d);
    sk_upstream_destroy(u);
}

/* The pool's maxConnections, as a caller that keeps its own backlog reads it. */
static void test_sk_upstream_max_active(void **state)
{
    fixture *f = *state;
    sk_upstream *u = NULL;
    json_t *policy = json_pack("{s:{s:{s:{s:i}, s:{s:i}}}}", "trafficPolicy", "connectionPool",
                               "tcp", "maxConnections", 7, "http", "http1MaxPendingRequests", 3);

    assert_int_equal(sk_upstream_create(&u, f->client, "order", policy, NULL), SK_OK);
    json_decref(policy);
    assert_int_equal(sk_upstream_max_active(u), 7); /* the waiting ones do not count */
    sk_upstream_destroy(u);
    assert_int_equal(sk_upstream_create(&u, f->client, "order", NULL, NULL), SK_OK);
    assert_int_equal(sk_upstream_max_active(u), UINT32_MAX); /* Istio's default */
    sk_upstream_destroy(u);
    assert_int_equal(sk_upstream_max_active(NULL), 0);
}

static void test_sk_upstream_policy_timeout_applied(void **state)
{
    fixture *f = *state;
    sk_upstream *u = NULL;
    done_rec d;
    const char *eps[] = { f->ep[0] };
    json_t *policy = json_pack("{s:s}", "timeout", "100ms");
    sk_http_request r = { .method = "GET", .url = "/hold" };

    assert_int_equal(sk_upstream_create(&u, f->client, "order", policy, NULL), SK_OK);
    json_decref(policy);
    assert_int_equal(sk_upstream_set_endpoints(u, eps, 1), SK_OK);
    done_rec_init(&d);
    int64_t t0 = sk_time_mono_ms();
    assert_int_equal(sk_upstream_send(u, &r, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, 1, 10000));
    assert_int_equal(d.st, SK_ETIMEDOUT);
    assert_true(sk_time_mono_ms() - t0 < 5000); /* not the 10 s default */
    assert_true(sk_test_wait_until(test_srv_has_held, &f->t[0], 10000));
    sk_http_req_respond(test_srv_take_held(&f->t[0]), 200, NULL, NULL, 0, NULL);
    done_rec_fini(&d);
    sk_upstream_destroy(u);
}

static void test_sk_upstream_endpoints_describe(void **state)
{
    fixture *f = *state;
    sk_upstream *u = NULL;
    json_t *d = (json_t *)1;
    const char *eps[] = { f->ep[0], f->ep[1] };

    assert_int_equal(sk_upstream_create(&u, f->client, "order", NULL, NULL), SK_OK);
    SK_TEST_ASSERT_ERR(sk_upstream_endpoints_describe(NULL, &d), SK_EINVAL, "u must");
    assert_null(d);
    SK_TEST_ASSERT_ERR(sk_upstream_endpoints_describe(u, NULL), SK_EINVAL, "out must");
    assert_int_equal(sk_upstream_endpoints_describe(u, &d), SK_OK);
    assert_int_equal(json_array_size(d), 0);
    json_decref(d);
    assert_int_equal(sk_upstream_set_endpoints(u, eps, 2), SK_OK);
    assert_int_equal(sk_upstream_endpoints_describe(u, &d), SK_OK);
    assert_int_equal(json_array_size(d), 2);
    json_t *e = json_array_get(d, 1);
    assert_string_equal(json_string_value(json_object_get(e, "address")), f->ep[1]);
    assert_string_equal(json_string_value(json_object_get(e, "state")), "healthy");
    assert_int_equal(json_integer_value(json_object_get(e, "ejected_until_ms")), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "active_requests")), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "consecutive_5xx")), 0);
    json_decref(d);
    for (long n = 0;; n++) {
        sk_test_fail_alloc_at(n);
        sk_status st = sk_upstream_endpoints_describe(u, &d);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            json_decref(d);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(d);
    }
    sk_upstream_destroy(u);
}

/* Destroy with calls queued and in flight: the queued ones end ECANCELED, the one in flight
 * completes later and the upstream's memory outlives it. */
static void test_sk_upstream_destroy_with_calls_pending(void **state)
{
    fixture *f = *state;
    sk_upstream *u = NULL;
    done_rec d;
    const char *eps[] = { f->ep[0] };
    json_t *policy = json_pack("{s:{s:{s:{s:i},s:{s:i}}}}", "trafficPolicy", "connectionPool", "tcp",
                               "maxConnections", 1, "http", "http1MaxPendingRequests", 4);
    sk_http_request r = { .method = "GET", .url = "/hold" };

    assert_int_equal(sk_upstream_create(&u, f->client, "order", policy, f->metrics), SK_OK);
    json_decref(policy);
    assert_int_equal(sk_upstream_set_endpoints(u, eps, 1), SK_OK);
    done_rec_init(&d);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sk_upstream_send(u, &r, done_rec_cb, &d), SK_OK);
    }
    assert_true(sk_test_wait_until(test_srv_has_held, &f->t[0], 10000));
    sk_upstream_destroy(u);
    assert_true(done_rec_wait(&d, 2, 10000));
    assert_int_equal(d.st, SK_ECANCELED);
    sk_http_req_respond(test_srv_take_held(&f->t[0]), 200, NULL, NULL, 0, NULL);
    assert_true(done_rec_wait(&d, 3, 10000));
    assert_int_equal(d.status, 200);
    done_rec_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sk_upstream_create_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_upstream_create_every_alloc_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_upstream_set_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_upstream_max_active, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_upstream_send_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_upstream_send_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_upstream_policy_timeout_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_upstream_endpoints_describe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_upstream_destroy_with_calls_pending, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
