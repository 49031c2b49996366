/* SPDX-License-Identifier: MIT */
/* Unit tests for src/mesh/fault.c: parsing Istio's fault object and per-request decisions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mesh/mesh_int.h"
#include "sk_test.h"

static uint64_t fixed_rand(void *ctx)
{
    return *(uint64_t *)ctx;
}

static void test_sk__fault_parse_full(void **state)
{
    sk__fault_policy f;
    json_t *j = json_loads("{\"delay\":{\"percentage\":{\"value\":12.5},\"fixedDelay\":\"150ms\"},"
                           "\"abort\":{\"percentage\":{\"value\":\"0.1\"},\"httpStatus\":503}}",
                           0, NULL);
    (void)state;
    assert_int_equal(sk__fault_parse(j, "fault", &f), SK_OK);
    assert_true(f.has_delay);
    assert_int_equal(f.delay_ms, 150);
    assert_int_equal(f.delay_ppm, 125000);
    assert_true(f.has_abort);
    assert_int_equal(f.abort_ppm, 1000);
    assert_int_equal(f.abort_status, 503);
    json_decref(j);
    assert_int_equal(sk__fault_parse(NULL, "fault", &f), SK_OK);
    assert_false(f.has_delay || f.has_abort);
    j = json_loads("{\"abort\":{\"httpStatus\":500}}", 0, NULL);
    assert_int_equal(sk__fault_parse(j, "fault", &f), SK_OK);
    assert_int_equal(f.abort_ppm, 1000000); /* no percentage: every request */
    json_decref(j);
}

static void test_sk__fault_parse_errors(void **state)
{
    static const struct {
        const char *json;
        sk_status st;
        const char *msg;
    } cases[] = {
        { "[]", SK_EPROTO, "fault: expected an object" },
        { "{\"oops\":{}}", SK_EPROTO, "fault.oops: unknown" },
        { "{\"delay\":{\"percentage\":{\"value\":5}}}", SK_EPROTO,
          "fault.delay.fixedDelay: required" },
        { "{\"delay\":{\"fixedDelay\":\"soon\"}}", SK_EPROTO, "fault.delay.fixedDelay" },
        { "{\"delay\":{\"fixedDelay\":\"1s\",\"percentage\":{\"value\":101}}}", SK_EPROTO,
          "fault.delay.percentage.value: expected a number 0..100" },
        { "{\"delay\":{\"fixedDelay\":\"1s\",\"percentage\":{\"value\":\"x\"}}}", SK_EPROTO,
          "percentage.value" },
        { "{\"delay\":{\"fixedDelay\":\"1s\",\"percentage\":{\"val\":1}}}", SK_EPROTO,
          "percentage.val: unknown" },
        { "{\"delay\":{\"fixedDelay\":\"1s\",\"percent\":1}}", SK_EPROTO, "fault.delay.percent" },
        { "{\"abort\":{\"httpStatus\":99}}", SK_EPROTO, "fault.abort.httpStatus" },
        { "{\"abort\":{\"percentage\":{\"value\":1}}}", SK_EPROTO,
          "fault.abort.httpStatus: required" },
        { "{\"abort\":5}", SK_EPROTO, "fault.abort: expected an object" },
    };
    sk__fault_policy f;
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        assert_non_null(j);
        SK_TEST_ASSERT_ERR(sk__fault_parse(j, "fault", &f), cases[i].st, cases[i].msg);
        json_decref(j);
    }
    SK_TEST_ASSERT_ERR(sk__fault_parse(NULL, "fault", NULL), SK_EINVAL, "out");
}

static void test_sk__fault_decide(void **state)
{
    sk__fault_policy f = { .has_delay = true,
                           .delay_ppm = 500000,
                           .delay_ms = 40,
                           .has_abort = true,
                           .abort_ppm = 10000,
                           .abort_status = 502 };
    int64_t d;
    int a;
    uint64_t r = 499999; /* below both? 499999 < 500000 (delay), >= 10000 (abort) */
    (void)state;
    sk__fault_decide(&f, fixed_rand, &r, &d, &a);
    assert_int_equal(d, 40);
    assert_int_equal(a, 0);
    r = 9999;
    sk__fault_decide(&f, fixed_rand, &r, &d, &a);
    assert_int_equal(d, 40);
    assert_int_equal(a, 502);
    r = 500000;
    sk__fault_decide(&f, fixed_rand, &r, &d, &a);
    assert_int_equal(d, 0);
    assert_int_equal(a, 0);
    sk__fault_decide(NULL, NULL, NULL, &d, &a);
    assert_int_equal(d, 0);
}

static void test_sk__fault_decide_statistics(void **state)
{
    sk__fault_policy f = { .has_abort = true, .abort_ppm = 250000, .abort_status = 503 };
    int n = 0;
    (void)state;
    for (int i = 0; i < 10000; i++) {
        int64_t d;
        int a;
        sk__fault_decide(&f, NULL, NULL, &d, &a);
        n += a == 503;
    }
    /* 25 % of 10000, sd ~43: 6 sd either way. */
    assert_in_range(n, 2240, 2760);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk__fault_parse_full),
        cmocka_unit_test(test_sk__fault_parse_errors),
        cmocka_unit_test(test_sk__fault_decide),
        cmocka_unit_test(test_sk__fault_decide_statistics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
