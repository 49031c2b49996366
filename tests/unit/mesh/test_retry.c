/* SPDX-License-Identifier: MIT */
/* Unit tests for src/mesh/retry.c: retryOn, the retriable test with the idempotency rule, back-off,
 * Retry-After. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "mesh/mesh_int.h"
#include "sk_test.h"

static sk_slice sl(const char *s)
{
    return (sk_slice){ (const uint8_t *)s, strlen(s) };
}

static void test_sk__retry_on_parse_conditions(void **state)
{
    sk__retry_policy p = { 0 };
    (void)state;
    assert_int_equal(sk__retry_on_parse(sl("connect-failure, reset,5xx"), &p), SK_OK);
    assert_int_equal(p.on, SK__RETRY_CONNECT_FAILURE | SK__RETRY_RESET | SK__RETRY_5XX);
    assert_int_equal(sk__retry_on_parse(sl("gateway-error,retriable-status-codes,429"), &p), SK_OK);
    assert_true((p.on & SK__RETRY_GATEWAY_ERROR) != 0);
    assert_int_equal(p.n_codes, 2);
    assert_int_equal(p.codes[0], 503);
    assert_int_equal(p.codes[1], 429);
    assert_int_equal(sk__retry_on_parse(sl("refused-stream,unavailable,cancelled"), &p), SK_OK);
    assert_int_equal(p.on, 0);
    assert_int_equal(sk__retry_on_parse(sl(""), &p), SK_OK);
    assert_int_equal(p.on, 0);
}

static void test_sk__retry_on_parse_errors(void **state)
{
    sk__retry_policy p = { 0 };
    (void)state;
    SK_TEST_ASSERT_ERR(sk__retry_on_parse(sl("5xx,bogus"), &p), SK_EPROTO,
                       "unknown condition \"bogus\"");
    SK_TEST_ASSERT_ERR(sk__retry_on_parse(sl("5xx,,reset"), &p), SK_EPROTO, "empty entry");
    SK_TEST_ASSERT_ERR(sk__retry_on_parse(sl("600"), &p), SK_EPROTO, "unknown condition");
    SK_TEST_ASSERT_ERR(sk__retry_on_parse(sl("5xx"), NULL), SK_EINVAL, "NULL");
    SK_TEST_ASSERT_ERR(sk__retry_on_parse(sl("500,501,502,503,504,505,506,507,508,509,510,511,512,"
                                             "513,514,515,516"),
                                          &p),
                       SK_ELIMIT, "at most 16");
}

static void test_connect_failure_always_safe(void **state)
{
    sk__retry_policy p = { 0 };
    (void)state;
    p.on = SK__RETRY_CONNECT_FAILURE;
    assert_true(sk__retry_is_retriable(&p, SK__ATTEMPT_CONNECT_FAILURE, 0, false));
    assert_false(sk__retry_is_retriable(&p, SK__ATTEMPT_RESET, 0, true));
    p.on = SK__RETRY_5XX; /* 5xx includes connect-failure in Envoy */
    assert_true(sk__retry_is_retriable(&p, SK__ATTEMPT_CONNECT_FAILURE, 0, false));
    p.on = 0;
    assert_false(sk__retry_is_retriable(&p, SK__ATTEMPT_CONNECT_FAILURE, 0, true));
}

static void test_non_idempotent_never_retried_once_sent(void **state)
{
    sk__retry_policy p = { 0 };
    (void)state;
    p.on = SK__RETRY_5XX | SK__RETRY_RESET | SK__RETRY_STATUS_CODES;
    p.codes[0] = 503;
    p.n_codes = 1;
    assert_false(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 503, false));
    assert_false(sk__retry_is_retriable(&p, SK__ATTEMPT_RESET, 0, false));
    assert_false(sk__retry_is_retriable(&p, SK__ATTEMPT_TIMEOUT, 0, false));
    assert_true(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 503, true));
    assert_true(sk__retry_is_retriable(&p, SK__ATTEMPT_RESET, 0, true));
    assert_true(sk__retry_is_retriable(&p, SK__ATTEMPT_TIMEOUT, 0, true));
    assert_false(sk__retry_is_retriable(&p, SK__ATTEMPT_OTHER, 0, true));
}

static void test_5xx_gateway_and_status_codes(void **state)
{
    sk__retry_policy p = { 0 };
    (void)state;
    p.on = SK__RETRY_GATEWAY_ERROR;
    assert_true(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 502, true));
    assert_true(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 504, true));
    assert_false(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 500, true));
    p.on = SK__RETRY_5XX;
    assert_true(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 500, true));
    assert_false(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 200, true));
}

static void test_4xx_only_when_named(void **state)
{
    sk__retry_policy p = { 0 };
    (void)state;
    p.on = SK__RETRY_5XX;
    assert_false(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 429, true));
    assert_false(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 409, true));
    p.on |= SK__RETRY_RETRIABLE_4XX;
    assert_true(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 409, true));
    assert_int_equal(sk__retry_on_parse(sl("429"), &p), SK_OK);
    assert_true(sk__retry_is_retriable(&p, SK__ATTEMPT_RESPONSE, 429, true));
    assert_false(sk__retry_is_retriable(NULL, SK__ATTEMPT_RESPONSE, 429, true));
}

static void test_sk__retry_backoff_ms_jittered_and_capped(void **state)
{
    (void)state;
    assert_int_equal(sk__retry_backoff_ms(1, 0), 0);
    assert_int_equal(sk__retry_backoff_ms(1, 24), 24);
    assert_int_equal(sk__retry_backoff_ms(1, 25), 0);    /* [0, 25) */
    assert_int_equal(sk__retry_backoff_ms(2, 74), 74);   /* [0, 75) */
    assert_int_equal(sk__retry_backoff_ms(3, 174), 174); /* [0, 175) */
    assert_int_equal(sk__retry_backoff_ms(4, 1000), 1000 % 250);
    assert_int_equal(sk__retry_backoff_ms(30, 249), 249);
    assert_int_equal(sk__retry_backoff_ms(0, 30), 5);
    for (uint64_t r = 0; r < 1000; r += 7) {
        assert_true(sk__retry_backoff_ms(10, r * 7919) < SK__RETRY_BACKOFF_MAX_MS);
    }
}

static void test_sk__retry_after_parse(void **state)
{
    int64_t ms = -1;
    (void)state;
    assert_true(sk__retry_after_parse("3", 0, &ms));
    assert_int_equal(ms, 3000);
    assert_true(sk__retry_after_parse("0", 0, &ms));
    assert_int_equal(ms, 0);
    /* 1994-11-06 08:49:37 UTC = 784111777 s */
    assert_true(sk__retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", INT64_C(784111770000), &ms));
    assert_int_equal(ms, 7000);
    assert_true(sk__retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", INT64_C(784111790000), &ms));
    assert_int_equal(ms, 0); /* in the past */
    assert_false(sk__retry_after_parse("", 0, &ms));
    assert_false(sk__retry_after_parse("-1", 0, &ms));
    assert_false(sk__retry_after_parse("soon", 0, &ms));
    assert_false(sk__retry_after_parse("Sun, 06 Xyz 1994 08:49:37 GMT", 0, &ms));
    assert_false(sk__retry_after_parse("Sun, 06 Nov 1994 28:49:37 GMT", 0, &ms));
    assert_false(sk__retry_after_parse(NULL, 0, &ms));
}

static void test_sk__http_is_idempotent(void **state)
{
    const char *key[] = { "Content-Type: application/json", "idempotency-key: pay-1", NULL };
    const char *empty_key[] = { "Idempotency-Key:  ", NULL };
    char r1[] = "POST /captures";
    char r2[] = "POST /refunds/*";
    char *routes[] = { r1, r2 };
    (void)state;
    assert_true(sk__http_is_idempotent("GET", "/x", NULL, NULL, 0));
    assert_true(sk__http_is_idempotent("PUT", "/x", NULL, NULL, 0));
    assert_true(sk__http_is_idempotent("DELETE", "/x", NULL, NULL, 0));
    assert_false(sk__http_is_idempotent("POST", "/orders", NULL, NULL, 0));
    assert_false(sk__http_is_idempotent("PATCH", "/orders", NULL, NULL, 0));
    assert_true(sk__http_is_idempotent("POST", "/orders", key, NULL, 0));
    assert_false(sk__http_is_idempotent("POST", "/orders", empty_key, NULL, 0));
    assert_true(sk__http_is_idempotent("POST", "/captures", NULL, routes, 2));
    assert_false(sk__http_is_idempotent("POST", "/captures/1", NULL, routes, 2));
    assert_true(sk__http_is_idempotent("POST", "/refunds/9", NULL, routes, 2));
    assert_false(sk__http_is_idempotent("PUT2", "/refunds/9", NULL, routes, 2));
    assert_false(sk__http_is_idempotent(NULL, "/x", NULL, NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk__retry_on_parse_conditions),
        cmocka_unit_test(test_sk__retry_on_parse_errors),
        cmocka_unit_test(test_connect_failure_always_safe),
        cmocka_unit_test(test_non_idempotent_never_retried_once_sent),
        cmocka_unit_test(test_5xx_gateway_and_status_codes),
        cmocka_unit_test(test_4xx_only_when_named),
        cmocka_unit_test(test_sk__retry_backoff_ms_jittered_and_capped),
        cmocka_unit_test(test_sk__retry_after_parse),
        cmocka_unit_test(test_sk__http_is_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
