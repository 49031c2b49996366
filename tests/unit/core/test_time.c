/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/time.c: clocks and RFC 3339 formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <time.h>

#include <skald/core.h>

static void test_sk_time_now_ms_is_recent(void **state)
{
    (void)state;
    int64_t now = sk_time_now_ms();
    assert_true(now > 1700000000000LL);    /* after 2023 */
    assert_true(now < 4102444800000LL);    /* before 2100 */
}

static void test_sk_time_mono_is_monotonic(void **state)
{
    (void)state;
    int64_t a = sk_time_mono_ns();
    int64_t b = sk_time_mono_ns();
    assert_true(b >= a);
    int64_t ms = sk_time_mono_ms();
    assert_true(ms >= a / 1000000);
}

/* The deadline is ms ahead on the monotonic clock, with tv_nsec normalised. */
static void test_sk_time_mono_deadline(void **state)
{
    (void)state;
    const int64_t cases[] = { 0, 1, 999, 1000, 1500, 123456, -5 };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct timespec before, d, after;
        clock_gettime(CLOCK_MONOTONIC, &before);
        sk_time_mono_deadline(cases[i], &d);
        clock_gettime(CLOCK_MONOTONIC, &after);
        assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
        /* Bracketed by the clock read before and after: no bound on how long we were paused. */
        int64_t want_ns = (cases[i] < 0 ? 0 : cases[i]) * 1000000;
        int64_t d_ns = (int64_t)d.tv_sec * 1000000000 + d.tv_nsec;
        assert_true(d_ns >= (int64_t)before.tv_sec * 1000000000 + before.tv_nsec + want_ns);
        assert_true(d_ns <= (int64_t)after.tv_sec * 1000000000 + after.tv_nsec + want_ns);
    }
}

static void test_sk_time_mono_since_ms(void **state)
{
    (void)state;
    int64_t now = sk_time_mono_ms();
    assert_int_equal(sk_time_mono_since_ms(0), 0); /* not set */
    int64_t since = sk_time_mono_since_ms(now - 5000);
    assert_true(since >= 5000 && since < 5000 + 60000);
    assert_int_equal(sk_time_mono_since_ms(now + 60000), 0); /* in the future */
}

static void test_sk_time_format_rfc3339_values(void **state)
{
    (void)state;
    char out[SK_RFC3339_LEN];
    sk_time_format_rfc3339(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    sk_time_format_rfc3339(1795600800123LL, out);
    assert_string_equal(out, "2026-11-25T10:00:00.123Z");
    sk_time_format_rfc3339(-1, out);
    assert_string_equal(out, "1969-12-31T23:59:59.999Z");
    sk_time_format_rfc3339(951782400000LL, out); /* leap day */
    assert_string_equal(out, "2000-02-29T00:00:00.000Z");
}

static void test_sk_time_format_rfc3339_clamps(void **state)
{
    (void)state;
    char out[SK_RFC3339_LEN];
    sk_time_format_rfc3339(INT64_MAX, out);
    assert_string_equal(out, "9999-12-31T23:59:59.999Z");
    sk_time_format_rfc3339(INT64_MIN, out);
    assert_string_equal(out, "0000-01-01T00:00:00.000Z");
    sk_time_format_rfc3339(0, NULL); /* NULL-safe */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_time_now_ms_is_recent),
        cmocka_unit_test(test_sk_time_mono_is_monotonic),
        cmocka_unit_test(test_sk_time_mono_deadline),
        cmocka_unit_test(test_sk_time_mono_since_ms),
        cmocka_unit_test(test_sk_time_format_rfc3339_values),
        cmocka_unit_test(test_sk_time_format_rfc3339_clamps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
