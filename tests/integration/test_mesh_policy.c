/* SPDX-License-Identifier: MIT */
/*
 * Integration test of the upstream traffic policy over real mutual TLS on
 * 127.0.0.1: several "psp" servers whose answers the test programs, one
 * "payment" client. Outlier ejection after exactly N consecutive 5xx and
 * recovery after baseEjectionTime, maxEjectionPercent, pending overflow 503,
 * retry to another instance on connect failure, no retry of a POST once it
 * reached the upstream, and fault abort/delay rates over 1,000 requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "mesh/mesh_int.h"
#include "sk_test.h"
#include "sk_test_pki.h"

#define N_SRV 4

/* A server answering every request with `status` (0 = hold until released). */
typedef struct psrv {
    sk_http_server *srv;
    _Atomic int status;
    _Atomic int n;
    pthread_mutex_t mu;
    sk_http_req *held[16];
    int n_held;
    char ep[64];
} psrv;

typedef struct fixture {
    sk_test_pki pki;
    sk_tls_files psp;
    sk_tls_files payment;
    psrv s[N_SRV];
    sk_http_client *client;
    sk_metrics *metrics;
} fixture;

static void psrv_handler(sk_http_req *req, void *ctx)
{
    psrv *s = ctx;
    int status = atomic_load(&s->status);

    atomic_fetch_add(&s->n, 1);
    if (status == 0) {
        pthread_mutex_lock(&s->mu);
        if (s->n_held < 16) {
            s->held[s->n_held++] = req;
            req = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        if (req == NULL) {
            return;
        }
        status = 503;
    }
    sk_http_req_respond(req, status, "text/plain", "x", 1, NULL);
}

static void psrv_release(psrv *s)
{
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_held; i++) {
        sk_http_req_respond(s->held[i], 200, "text/plain", "x", 1, NULL);
    }
    s->n_held = 0;
    pthread_mutex_unlock(&s->mu);
}

static int group_setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(sk_test_pki_create(&f->pki), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->pki, "psp", &f->psp), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->pki, "payment", &f->payment), SK_OK);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    sk_tls_files_fini(&f->psp);
    sk_tls_files_fini(&f->payment);
    sk_test_pki_destroy(&f->pki);
    sk_free(f);
    return 0;
}

static int setup(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < N_SRV; i++) {
        psrv *s = &f->s[i];
        memset(s, 0, sizeof(*s));
        pthread_mutex_init(&s->mu, NULL);
        atomic_store(&s->status, 200);
        sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                      .tls = &f->psp,
                                      .require_client_cert = true,
                                      .n_threads = 1,
                                      .handler = psrv_handler,
                                      .ctx = s };
        assert_int_equal(sk_http_server_start(&s->srv, &cfg), SK_OK);
        snprintf(s->ep, sizeof(s->ep), "127.0.0.1:%d", sk_http_server_port(s->srv));
    }
    assert_int_equal(sk_http_client_create(&f->client, &f->payment), SK_OK);
    assert_int_equal(sk_metrics_create(&f->metrics), SK_OK);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_http_client_destroy(f->client);
    for (int i = 0; i < N_SRV; i++) {
        psrv_release(&f->s[i]);
        sk_http_server_stop(f->s[i].srv);
        pthread_mutex_destroy(&f->s[i].mu);
    }
    sk_metrics_destroy(f->metrics);
    return 0;
}

/* ---------------------------------------------------------------- completions */

typedef struct tally {
    _Atomic int n_done;
    _Atomic int n_200;
    _Atomic int n_503;
    _Atomic int n_500;
    _Atomic int n_fault;
    _Atomic int n_slow;
    _Atomic int n_err;
    int64_t slow_ms;
} tally;

typedef struct one {
    tally *t;
    int64_t t0;
} one;

static void tally_cb(sk_status st, const sk_http_response *resp, void *ctx)
{
    one *o = ctx;
    tally *t = o->t;
    if (st != SK_OK) {
        atomic_fetch_add(&t->n_err, 1);
    } else if (resp->status == 200) {
        atomic_fetch_add(&t->n_200, 1);
    } else if (resp->status == 503) {
        atomic_fetch_add(&t->n_503, 1);
    } else if (resp->status == 500) {
        atomic_fetch_add(&t->n_500, 1);
    }
    /* The servers answer text/plain; local answers (faults, overflow) are problem+json. */
    if (st == SK_OK && resp->content_type != NULL &&
        strcmp(resp->content_type, "application/problem+json") == 0) {
        atomic_fetch_add(&t->n_fault, 1);
    }
    if (t->slow_ms > 0 && sk_time_mono_ms() - o->t0 >= t->slow_ms) {
        atomic_fetch_add(&t->n_slow, 1);
    }
    atomic_fetch_add(&t->n_done, 1);
}

typedef struct want {
    tally *t;
    int n;
} want;

static bool tally_reached(void *ctx)
{
    want *w = ctx;
    return atomic_load(&w->t->n_done) >= w->n;
}

/* Send @p n requests, at most @p window in flight, and wait for all. */
static void send_many(sk_upstream *u, const char *method, int n, int window, tally *t)
{
    one *ones = sk_calloc((size_t)n, sizeof(one));
    sk_http_request r = { .method = method, .url = "/pay" };
    assert_non_null(ones);
    int base = atomic_load(&t->n_done);
    for (int i = 0; i < n; i++) {
        want w = { t, base + i - window + 1 };
        assert_true(sk_test_wait_until(tally_reached, &w, 20000));
        ones[i] = (one){ t, sk_time_mono_ms() };
        assert_int_equal(sk_upstream_send(u, &r, tally_cb, &ones[i]), SK_OK);
    }
    want all = { t, base + n };
    assert_true(sk_test_wait_until(tally_reached, &all, 30000));
    sk_free(ones);
}

static json_t *policy_of(const char *text)
{
    json_error_t err;
    json_t *p = json_loads(text, 0, &err);
    if (p == NULL) {
        fail_msg("bad test policy: %s", err.text);
    }
    return p;
}

static sk_upstream *upstream_new(fixture *f, const char *policy_text, size_t n_eps)
{
    sk_upstream *u = NULL;
    json_t *p = policy_of(policy_text);
    const char *eps[N_SRV];
    for (size_t i = 0; i < n_eps; i++) {
        eps[i] = f->s[i].ep;
    }
    assert_int_equal(sk_upstream_create(&u, f->client, "psp", p, f->metrics), SK_OK);
    json_decref(p);
    assert_int_equal(sk_upstream_set_endpoints(u, eps, n_eps), SK_OK);
    return u;
}

static size_t n_ejected(sk_upstream *u)
{
    json_t *d = NULL;
    size_t k = 0, i;
    json_t *e;
    assert_int_equal(sk_upstream_endpoints_describe(u, &d), SK_OK);
    json_array_foreach (d, i, e) {
        k += strcmp(json_string_value(json_object_get(e, "state")), "ejected") == 0;
    }
    json_decref(d);
    return k;
}

static bool none_ejected(void *ctx)
{
    return n_ejected(ctx) == 0;
}

static bool metrics_has(sk_metrics *m, const char *line)
{
    sk_buf b;
    sk_buf_init(&b, 1 << 20);
    assert_int_equal(sk_metrics_render(m, &b), SK_OK);
    bool has = strstr(b.data, line) != NULL;
    if (!has) {
        print_message("metrics:\n%s\n", b.data);
    }
    sk_buf_fini(&b);
    return has;
}

/* ---------------------------------------------------------------- tests */

static void test_ejection_after_exactly_n_5xx_and_recovery(void **state)
{
    fixture *f = *state;
    tally t = { 0 };
    sk_upstream *u =
        upstream_new(f,
                     "{\"trafficPolicy\":{\"loadBalancer\":{\"simple\":\"ROUND_ROBIN\"},"
                     "\"outlierDetection\":{\"consecutive5xxErrors\":3,\"interval\":\"50ms\","
                     "\"baseEjectionTime\":\"400ms\",\"maxEjectionPercent\":100}},"
                     "\"retries\":{\"attempts\":0}}",
                     2);
    atomic_store(&f->s[0].status, 500);
    send_many(u, "GET", 20, 1, &t);
    assert_int_equal(atomic_load(&f->s[0].n), 3); /* ejected at the third 5xx, never again */
    assert_int_equal(atomic_load(&t.n_500), 3);
    assert_int_equal(atomic_load(&t.n_200), 17);
    assert_int_equal(n_ejected(u), 1);
    assert_true(metrics_has(f->metrics, "sk_upstream_ejections_total{upstream=\"psp\"} 1"));
    assert_true(metrics_has(f->metrics, "sk_upstream_ejected_hosts{upstream=\"psp\"} 1"));
    assert_true(
        metrics_has(f->metrics, "sk_upstream_requests_total{upstream=\"psp\",status=\"500\"} 3"));

    /* Recovery: back after baseEjectionTime (at the next sweep), not before. */
    int64_t t0 = sk_time_mono_ms();
    atomic_store(&f->s[0].status, 200);
    assert_true(sk_test_wait_until(none_ejected, u, 5000));
    assert_true(sk_time_mono_ms() - t0 >= 250); /* ejected for 400 ms, some of it already spent */
    send_many(u, "GET", 4, 1, &t);
    assert_true(atomic_load(&f->s[0].n) >= 4);
    sk_upstream_destroy(u);
}

static void test_max_ejection_percent_honoured(void **state)
{
    fixture *f = *state;
    tally t = { 0 };
    sk_upstream *u = upstream_new(
        f,
        "{\"trafficPolicy\":{\"outlierDetection\":{\"consecutive5xxErrors\":1,"
        "\"interval\":\"10s\",\"baseEjectionTime\":\"30s\",\"maxEjectionPercent\":50}},"
        "\"retries\":{\"attempts\":0}}",
        4);
    for (int i = 0; i < 4; i++) {
        atomic_store(&f->s[i].status, 500);
    }
    send_many(u, "GET", 40, 1, &t);
    assert_int_equal(n_ejected(u), 2); /* half of 4, however many fail */
    assert_int_equal(atomic_load(&t.n_500), 40);
    sk_upstream_destroy(u);
}

static void test_pending_overflow_503(void **state)
{
    fixture *f = *state;
    tally t = { 0 };
    one o[3];
    sk_http_request r = { .method = "GET", .url = "/pay" };
    sk_upstream *u =
        upstream_new(f,
                     "{\"trafficPolicy\":{\"connectionPool\":{\"tcp\":{\"maxConnections\":1},"
                     "\"http\":{\"http1MaxPendingRequests\":1}}}}",
                     1);
    uint32_t n_active = 0, n_pending = 0;
    atomic_store(&f->s[0].status, 0); /* hold */
    for (int i = 0; i < 3; i++) {
        o[i] = (one){ &t, 0 };
        assert_int_equal(sk_upstream_send(u, &r, tally_cb, &o[i]), SK_OK);
    }
    want w1 = { &t, 1 };
    assert_true(sk_test_wait_until(tally_reached, &w1, 5000));
    assert_int_equal(atomic_load(&t.n_503), 1); /* the third, at once */
    sk__upstream_pool_get(u, &n_active, &n_pending);
    assert_int_equal(n_active, 1);
    assert_int_equal(n_pending, 1);
    assert_true(metrics_has(f->metrics, "sk_upstream_pending_overflows_total{upstream=\"psp\"} 1"));
    atomic_store(&f->s[0].status, 200);
    for (int k = 0; k < 100 && atomic_load(&t.n_200) < 2; k++) {
        psrv_release(&f->s[0]);
        want w = { &t, 2 + (atomic_load(&t.n_200) > 0) };
        SK_IGNORE(sk_test_wait_until(tally_reached, &w, 100));
    }
    want w3 = { &t, 3 };
    assert_true(sk_test_wait_until(tally_reached, &w3, 5000));
    assert_int_equal(atomic_load(&t.n_200), 2);
    sk_upstream_destroy(u);
}

static void test_retry_to_another_instance_on_connect_failure(void **state)
{
    fixture *f = *state;
    tally t = { 0 };
    char dead[64];
    sk_upstream *u = NULL;
    json_t *p = policy_of("{\"trafficPolicy\":{\"loadBalancer\":{\"simple\":\"ROUND_ROBIN\"}},"
                          "\"retries\":{\"attempts\":2,\"retryOn\":\"connect-failure\"}}");
    snprintf(dead, sizeof(dead), "127.0.0.1:%d", sk_test_free_port());
    const char *eps[] = { dead, f->s[0].ep };
    assert_int_equal(sk_upstream_create(&u, f->client, "psp", p, f->metrics), SK_OK);
    json_decref(p);
    assert_int_equal(sk_upstream_set_endpoints(u, eps, 2), SK_OK);
    /* Round robin sends every first try to the dead host (no outlier detection here); the POSTs
     * carry no Idempotency-Key and are still retried because they never left. */
    send_many(u, "POST", 10, 1, &t);
    assert_int_equal(atomic_load(&t.n_200), 10);
    assert_int_equal(atomic_load(&f->s[0].n), 10);
    assert_true(metrics_has(f->metrics, "sk_upstream_retries_total{upstream=\"psp\"} 10"));
    sk_upstream_destroy(u);
}

static void test_post_not_retried_once_it_reached_the_upstream(void **state)
{
    fixture *f = *state;
    tally t = { 0 };
    sk_upstream *u = upstream_new(
        f, "{\"retries\":{\"attempts\":2,\"retryOn\":\"5xx,reset,connect-failure\"}}", 1);
    atomic_store(&f->s[0].status, 503);
    send_many(u, "POST", 1, 1, &t);
    assert_int_equal(atomic_load(&t.n_503), 1);
    assert_int_equal(atomic_load(&f->s[0].n), 1); /* istio/istio#50506: no second payout */
    send_many(u, "GET", 1, 1, &t);
    assert_int_equal(atomic_load(&f->s[0].n), 4); /* an idempotent GET: 1 + 2 retries */
    sk_upstream_destroy(u);
}

static void test_fault_abort_and_delay_rates(void **state)
{
    fixture *f = *state;
    tally t = { .slow_ms = 40 };
    sk_upstream *u =
        upstream_new(f,
                     "{\"fault\":{\"abort\":{\"percentage\":{\"value\":30},\"httpStatus\":503},"
                     "\"delay\":{\"percentage\":{\"value\":10},\"fixedDelay\":\"40ms\"}}}",
                     2);
    send_many(u, "GET", 1000, 64, &t);
    /* Binomial(1000, 0.3): sd 14.5; (1000, 0.1): sd 9.5; 5 sd either way. */
    assert_in_range(atomic_load(&t.n_fault), 228, 372);
    assert_int_equal(atomic_load(&t.n_fault), atomic_load(&t.n_503));
    assert_int_equal(atomic_load(&t.n_200) + atomic_load(&t.n_503), 1000);
    /* At least the delayed ones are slow. No upper bound: on a busy machine (sanitizers,
     * parallel tests) any request may take 40 ms; the delay rate itself is checked without a
     * clock in tests/unit/mesh/test_fault.c (test_sk__fault_decide_statistics). */
    assert_true(atomic_load(&t.n_slow) >= 52);
    sk_upstream_destroy(u);
}

static void test_server_fault_abort_rate(void **state)
{
    fixture *f = *state;
    tally t = { 0 };
    json_t *fault = policy_of("{\"abort\":{\"percentage\":{\"value\":50},\"httpStatus\":500},"
                              "\"delay\":{\"percentage\":{\"value\":5},\"fixedDelay\":\"5ms\"}}");
    sk_upstream *u = upstream_new(f, "{\"retries\":{\"attempts\":0}}", 1);
    assert_int_equal(sk_http_server_set_fault(f->s[0].srv, fault), SK_OK);
    json_decref(fault);
    send_many(u, "GET", 1000, 32, &t);
    /* Binomial(1000, 0.5): sd 15.8. */
    assert_in_range(atomic_load(&t.n_500), 421, 579);
    assert_int_equal(atomic_load(&t.n_500) + atomic_load(&t.n_200), 1000);
    assert_int_equal(sk_http_server_set_fault(f->s[0].srv, NULL), SK_OK);
    int before = atomic_load(&t.n_500);
    send_many(u, "GET", 50, 8, &t);
    assert_int_equal(atomic_load(&t.n_500), before);
    sk_upstream_destroy(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ejection_after_exactly_n_5xx_and_recovery, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_max_ejection_percent_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_overflow_503, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_to_another_instance_on_connect_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_post_not_retried_once_it_reached_the_upstream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fault_abort_and_delay_rates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_fault_abort_rate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
