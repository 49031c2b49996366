/* SPDX-License-Identifier: MIT */
/* Unit tests for src/mesh/policy.c: Istio durations and the upstream policy seam. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "mesh/mesh_int.h"
#include "sk_test.h"

static sk_status dur(const char *s, int64_t *ms)
{
    return sk__mesh_duration_parse(sk_slice_from_str(s), ms);
}

static void test_sk__mesh_duration_parse_valid(void **state)
{
    (void)state;
    int64_t ms = -1;
    struct {
        const char *text;
        int64_t ms;
    } cases[] = {
        { "2s", 2000 },      { "250ms", 250 },  { "1.5s", 1500 },   { "0.25s", 250 },
        { "1m", 60000 },     { "1h", 3600000 }, { "1m30s", 90000 }, { "0s", 0 },
        { "0", 0 },          { "1us", 1 },      { "1ns", 1 },       { "1500us", 2 },
        { "24h", 86400000 }, { "10ms", 10 },    { ".5s", 500 },     { "1h0m0.001s", 3600001 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (strcmp(cases[i].text, "0") == 0) {
            continue; /* a bare number has no unit: checked below */
        }
        assert_int_equal(dur(cases[i].text, &ms), SK_OK);
        assert_int_equal(ms, cases[i].ms);
    }
}

static void test_sk__mesh_duration_parse_invalid(void **state)
{
    (void)state;
    int64_t ms = 7;

    SK_TEST_ASSERT_ERR(dur("", &ms), SK_EPROTO, "got \"\"");
    assert_int_equal(ms, 0);
    SK_TEST_ASSERT_ERR(dur("0", &ms), SK_EPROTO, "expected a unit");
    SK_TEST_ASSERT_ERR(dur("2", &ms), SK_EPROTO, "offset 1");
    SK_TEST_ASSERT_ERR(dur("s", &ms), SK_EPROTO, "expected a number at offset 0");
    SK_TEST_ASSERT_ERR(dur("2x", &ms), SK_EPROTO, "expected a unit");
    SK_TEST_ASSERT_ERR(dur("-1s", &ms), SK_EPROTO, "expected a number");
    SK_TEST_ASSERT_ERR(dur("1s ", &ms), SK_EPROTO, "offset 2");
    SK_TEST_ASSERT_ERR(dur("2 s", &ms), SK_EPROTO, "expected a unit");
    SK_TEST_ASSERT_ERR(dur("25h", &ms), SK_ELIMIT, "24h");
    SK_TEST_ASSERT_ERR(dur("99999999999999999999s", &ms), SK_ELIMIT, "24h");
    SK_TEST_ASSERT_ERR(dur("24h1ms", &ms), SK_ELIMIT, "24h");
    SK_TEST_ASSERT_ERR(sk__mesh_duration_parse(sk_slice_from_str("1s"), NULL), SK_EINVAL, "out_ms");
    SK_TEST_ASSERT_ERR(sk__mesh_duration_parse((sk_slice){ NULL, 3 }, &ms), SK_EINVAL, "ptr");
    /* Not NUL-terminated input is read by length only. */
    assert_int_equal(sk__mesh_duration_parse((sk_slice){ (const uint8_t *)"3sXYZ", 2 }, &ms),
                     SK_OK);
    assert_int_equal(ms, 3000);
}

static json_t *js(const char *text)
{
    json_t *v = NULL;
    assert_int_equal(sk_json_parse(sk_slice_from_str(text), &v), SK_OK);
    return v;
}

static void test_sk__upstream_policy_parse_valid(void **state)
{
    (void)state;
    sk__upstream_policy p;
    json_t *v = js("{\"timeout\":\"2s\",\"retries\":{\"attempts\":3,\"perTryTimeout\":\"500ms\","
                   "\"retryOn\":\"5xx\"},\"trafficPolicy\":{\"outlierDetection\":"
                   "{\"consecutive5xxErrors\":5}},\"fault\":{}}");

    assert_int_equal(sk__upstream_policy_parse(v, &p), SK_OK);
    assert_int_equal(p.timeout_ms, 2000);
    assert_int_equal(p.retries_attempts, 3);
    assert_int_equal(p.per_try_timeout_ms, 500);
    assert_non_null(p.raw);
    assert_true(json_equal(p.raw, v));
    sk__upstream_policy_fini(&p);
    sk__upstream_policy_fini(&p); /* idempotent */
    json_decref(v);

    assert_int_equal(sk__upstream_policy_parse(NULL, &p), SK_OK);
    assert_int_equal(p.timeout_ms, 0);
    assert_null(p.raw);
    v = js("{}");
    assert_int_equal(sk__upstream_policy_parse(v, &p), SK_OK);
    assert_int_equal(p.timeout_ms, 0);
    sk__upstream_policy_fini(&p);
    json_decref(v);
    sk__upstream_policy_fini(NULL);
}

/* Every default of the table in docs/mesh.md. */
static void test_sk__upstream_policy_parse_defaults(void **state)
{
    (void)state;
    sk__upstream_policy p;
    assert_int_equal(sk__upstream_policy_parse(NULL, &p), SK_OK);
    assert_int_equal(p.lb, SK__LB_LEAST_REQUEST);
    assert_int_equal(p.pool.max_connections, UINT32_MAX);
    assert_int_equal(p.pool.max_pending, UINT32_MAX);
    assert_int_equal(p.pool.connect_timeout_ms, 10000);
    assert_int_equal(p.pool.max_requests_per_connection, 0);
    assert_false(p.outlier.is_enabled);
    assert_int_equal(p.outlier.consecutive_5xx, 5);
    assert_int_equal(p.outlier.consecutive_gateway, 0);
    assert_int_equal(p.outlier.interval_ms, 10000);
    assert_int_equal(p.outlier.base_ejection_ms, 30000);
    assert_int_equal(p.outlier.max_ejection_ms, 300000);
    assert_int_equal(p.outlier.max_ejection_percent, 10);
    assert_int_equal(p.outlier.min_health_percent, 0);
    assert_int_equal(p.retry.attempts, 2);
    assert_int_equal(p.retry.on, SK__RETRY_CONNECT_FAILURE | SK__RETRY_STATUS_CODES);
    assert_int_equal(p.retry.codes[0], 503);
    assert_int_equal(p.timeout_ms, 0);
    assert_false(p.fault.has_delay || p.fault.has_abort);
    sk__upstream_policy_fini(&p);
}

static void test_sk__upstream_policy_parse_full(void **state)
{
    (void)state;
    sk__upstream_policy p;
    json_t *v = js("{\"service\":\"psp\",\"x-note\":1,\"trafficPolicy\":{\"loadBalancer\":{\"simple\":"
                   "\"ROUND_ROBIN\"},\"connectionPool\":{\"tcp\":{\"maxConnections\":32,"
                   "\"connectTimeout\":\"1s\"},\"http\":{\"http1MaxPendingRequests\":256,"
                   "\"maxRequestsPerConnection\":1}},\"outlierDetection\":{\"consecutive5xxErrors\":3,"
                   "\"consecutiveGatewayErrors\":2,\"interval\":\"2s\",\"baseEjectionTime\":\"400s\","
                   "\"maxEjectionPercent\":100,\"minHealthPercent\":50}},\"retries\":{\"attempts\":1,"
                   "\"retryOn\":\"connect-failure,reset\"},\"x-idempotent-routes\":[\"POST /captures\"]}");
    assert_int_equal(sk__upstream_policy_parse(v, &p), SK_OK);
    assert_int_equal(p.lb, SK__LB_ROUND_ROBIN);
    assert_int_equal(p.pool.max_connections, 32);
    assert_int_equal(p.pool.connect_timeout_ms, 1000);
    assert_int_equal(p.pool.max_pending, 256);
    assert_int_equal(p.pool.max_requests_per_connection, 1);
    assert_true(p.outlier.is_enabled);
    assert_int_equal(p.outlier.consecutive_5xx, 3);
    assert_int_equal(p.outlier.consecutive_gateway, 2);
    assert_int_equal(p.outlier.interval_ms, 2000);
    assert_int_equal(p.outlier.base_ejection_ms, 400000);
    assert_int_equal(p.outlier.max_ejection_ms, 400000); /* max(300 s, base) */
    assert_int_equal(p.outlier.min_health_percent, 50);
    assert_int_equal(p.retry.attempts, 1);
    assert_int_equal(p.retry.on, SK__RETRY_CONNECT_FAILURE | SK__RETRY_RESET);
    assert_int_equal(p.n_idempotent_routes, 1);
    assert_string_equal(p.idempotent_routes[0], "POST /captures");
    sk__upstream_policy_fini(&p);
    json_decref(v);
}

static void test_sk__upstream_policy_parse_invalid(void **state)
{
    (void)state;
    sk__upstream_policy p;
    struct {
        const char *json;
        sk_status st;
        const char *msg;
    } cases[] = {
        { "[]", SK_EPROTO, "policy: expected an object" },
        { "{\"timeout\":5}", SK_EPROTO, "policy.timeout: expected a duration" },
        { "{\"timeout\":\"5\"}", SK_EPROTO, "policy.timeout" },
        { "{\"timeout\":\"48h\"}", SK_ELIMIT, "policy.timeout" },
        { "{\"retries\":3}", SK_EPROTO, "policy.retries: expected an object" },
        { "{\"retries\":{\"attempts\":-1}}", SK_EPROTO, "policy.retries.attempts" },
        { "{\"retries\":{\"attempts\":\"3\"}}", SK_EPROTO, "policy.retries.attempts" },
        { "{\"retries\":{\"perTryTimeout\":\"x\"}}", SK_EPROTO, "policy.retries.perTryTimeout" },
        { "{\"trafficPolicy\":true}", SK_EPROTO, "policy.trafficPolicy" },
        { "{\"fault\":\"none\"}", SK_EPROTO, "policy.fault" },
        { "{\"trafficPolicy\":{\"tls\":{}}}", SK_EPROTO, "policy.trafficPolicy.tls: an Istio field" },
        { "{\"trafficPolicy\":{\"bogus\":1}}", SK_EPROTO, "policy.trafficPolicy.bogus: unknown field" },
        { "{\"trafficPolicy\":{\"loadBalancer\":{\"simple\":\"PASSTHROUGH\"}}}", SK_EPROTO,
          "loadBalancer.simple: expected ROUND_ROBIN" },
        { "{\"trafficPolicy\":{\"loadBalancer\":{\"consistentHash\":{}}}}", SK_EPROTO,
          "loadBalancer.consistentHash: an Istio field" },
        { "{\"trafficPolicy\":{\"connectionPool\":{\"tcp\":{\"maxConnections\":0}}}}", SK_EPROTO,
          "tcp.maxConnections: expected an integer 1..4294967295" },
        { "{\"trafficPolicy\":{\"connectionPool\":{\"tcp\":{\"connectTimeout\":\"0s\"}}}}",
          SK_EPROTO, "tcp.connectTimeout: must be at least 1ms" },
        { "{\"trafficPolicy\":{\"connectionPool\":{\"http\":{\"http2MaxRequests\":1}}}}",
          SK_EPROTO, "http.http2MaxRequests: an Istio field" },
        { "{\"trafficPolicy\":{\"connectionPool\":{\"http\":{\"http1MaxPendingRequests\":-1}}}}",
          SK_EPROTO, "http1MaxPendingRequests: expected an integer" },
        { "{\"trafficPolicy\":{\"outlierDetection\":{\"maxEjectionPercent\":101}}}", SK_EPROTO,
          "outlierDetection.maxEjectionPercent: expected an integer 0..100" },
        { "{\"trafficPolicy\":{\"outlierDetection\":{\"interval\":5}}}", SK_EPROTO,
          "outlierDetection.interval: expected a duration" },
        { "{\"trafficPolicy\":{\"outlierDetection\":{\"consecutiveErrors\":5}}}", SK_EPROTO,
          "outlierDetection.consecutiveErrors: an Istio field" },
        { "{\"retries\":{\"retryOn\":\"5xx,nope\"}}", SK_EPROTO, "policy.retries: retryOn: unknown" },
        { "{\"retries\":{\"retryOn\":5}}", SK_EPROTO, "policy.retries.retryOn: expected a string" },
        { "{\"retries\":{\"attempts\":11}}", SK_EPROTO, "policy.retries.attempts" },
        { "{\"fault\":{\"abort\":{\"httpStatus\":42}}}", SK_EPROTO, "policy.fault.abort.httpStatus" },
        { "{\"x-idempotent-routes\":[\"POST\"]}", SK_EPROTO, "x-idempotent-routes[0]" },
        { "{\"x-idempotent-routes\":\"POST /a\"}", SK_EPROTO, "x-idempotent-routes: expected a list" },
        { "{\"mirror\":{}}", SK_EPROTO, "policy.mirror: an Istio field" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = js(cases[i].json);
        SK_TEST_ASSERT_ERR(sk__upstream_policy_parse(v, &p), cases[i].st, cases[i].msg);
        assert_null(p.raw);
        json_decref(v);
    }
    SK_TEST_ASSERT_ERR(sk__upstream_policy_parse(NULL, NULL), SK_EINVAL, "out");
}

static void test_sk__upstream_policy_parse_every_alloc_failure(void **state)
{
    (void)state;
    json_t *v = js("{\"timeout\":\"2s\",\"retries\":{\"attempts\":2},\"x-idempotent-routes\":"
                   "[\"POST /a\",\"PUT /b*\"]}");
    for (long n = 0;; n++) {
        sk__upstream_policy p;
        sk_test_fail_alloc_at(n);
        sk_status st = sk__upstream_policy_parse(v, &p);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk__upstream_policy_fini(&p);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(p.raw);
    }
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk__mesh_duration_parse_valid),
        cmocka_unit_test(test_sk__mesh_duration_parse_invalid),
        cmocka_unit_test(test_sk__upstream_policy_parse_valid),
        cmocka_unit_test(test_sk__upstream_policy_parse_defaults),
        cmocka_unit_test(test_sk__upstream_policy_parse_full),
        cmocka_unit_test(test_sk__upstream_policy_parse_invalid),
        cmocka_unit_test(test_sk__upstream_policy_parse_every_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
