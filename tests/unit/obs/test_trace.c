/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/obs/trace.c: traceparent validation edge cases, new
 * roots and children.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "obs/obs_int.h"

#define GOOD "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
static const char good_s[] = GOOD;

static bool valid_str(const char *s)
{
    return sk_trace_is_valid(sk_slice_from_str(s));
}

/* @p s with byte @p at replaced by @p c. */
static bool valid_with(size_t at, char c)
{
    char buf[SK_TRACEPARENT_LEN];
    memcpy(buf, GOOD, sizeof(buf));
    buf[at] = c;
    return valid_str(buf);
}

static void test_sk_trace_is_valid_good(void **state)
{
    (void)state;
    assert_int_equal(strlen(GOOD), SK_TRACEPARENT_LEN - 1);
    assert_true(valid_str(GOOD));
    assert_true(valid_str("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
    assert_true(valid_str("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff"));
    assert_true(valid_str("00-00000000000000000000000000000001-0000000000000001-01"));
    /* Not NUL-terminated: only len counts. */
    char raw[64];
    memcpy(raw, GOOD "xyz", sizeof(GOOD) + 3);
    assert_true(sk_trace_is_valid((sk_slice){ (const uint8_t *)raw, 55 }));
}

static void test_sk_trace_is_valid_length(void **state)
{
    (void)state;
    char buf[64];

    assert_false(sk_trace_is_valid((sk_slice){ NULL, 0 }));
    assert_false(sk_trace_is_valid((sk_slice){ NULL, 55 }));
    assert_false(valid_str(""));
    memcpy(buf, GOOD, 54);
    buf[54] = '\0';
    assert_false(valid_str(buf)); /* 54 */
    snprintf(buf, sizeof(buf), "%s0", GOOD);
    assert_false(valid_str(buf)); /* 56 */
    snprintf(buf, sizeof(buf), "%s-", GOOD);
    assert_false(valid_str(buf)); /* a future version's extra field, refused for 00 */
}

static void test_sk_trace_is_valid_bad_bytes(void **state)
{
    (void)state;
    /* Upper-case hex anywhere is refused. */
    assert_false(valid_with(3, 'A'));
    assert_false(valid_with(36, 'F'));
    assert_false(valid_with(54, 'F'));
    /* Not hex. */
    assert_false(valid_with(10, 'g'));
    assert_false(valid_with(40, 'z'));
    assert_false(valid_with(53, ' '));
    assert_false(valid_with(20, '\0'));
    /* Separators. */
    assert_false(valid_with(2, '_'));
    assert_false(valid_with(35, '0'));
    assert_false(valid_with(52, '.'));
    /* Versions other than 00, including the forbidden ff. */
    assert_false(valid_with(1, '1'));
    assert_false(valid_with(0, 'f'));
    assert_false(valid_str("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
}

static void test_sk_trace_is_valid_zero_ids(void **state)
{
    (void)state;
    assert_false(valid_str("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    assert_false(valid_str("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    assert_false(valid_str("00-00000000000000000000000000000000-0000000000000000-00"));
}

static void test_sk_trace_new(void **state)
{
    (void)state;
    char a[SK_TRACEPARENT_LEN];
    char b[SK_TRACEPARENT_LEN];

    memset(a, 'x', sizeof(a));
    sk_trace_new(a);
    assert_int_equal(strlen(a), SK_TRACEPARENT_LEN - 1);
    assert_true(valid_str(a));
    assert_memory_equal(a, "00-", 3);
    assert_string_equal(a + 53, "01"); /* sampled */
    sk_trace_new(b);
    assert_true(valid_str(b));
    assert_memory_not_equal(a + 3, b + 3, 32);
    assert_memory_not_equal(a + 36, b + 36, 16);
    sk_trace_new(NULL); /* no-op */
}

static void test_sk_trace_new_unique(void **state)
{
    (void)state;
    enum { N = 1000 };
    static char ids[N][SK_TRACEPARENT_LEN];

    for (int i = 0; i < N; i++) {
        sk_trace_new(ids[i]);
        assert_true(valid_str(ids[i]));
        for (int j = 0; j < i; j++) {
            assert_memory_not_equal(ids[i] + 3, ids[j] + 3, 32);
        }
    }
}

static void test_sk_trace_child_keeps_trace_id(void **state)
{
    (void)state;
    char child[SK_TRACEPARENT_LEN];
    char grandchild[SK_TRACEPARENT_LEN];

    sk_trace_child(sk_slice_from_str(GOOD), child);
    assert_true(valid_str(child));
    assert_memory_equal(child, GOOD, 36); /* version and trace id */
    assert_memory_not_equal(child + 36, good_s + 36, 16);
    assert_string_equal(child + 52, "-01");

    /* Flags come from the parent (not sampled stays not sampled). */
    sk_trace_child(sk_slice_from_str("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
                   grandchild);
    assert_true(valid_str(grandchild));
    assert_string_equal(grandchild + 52, "-00");

    sk_trace_child(sk_slice_from_str(child), grandchild);
    assert_memory_equal(grandchild, GOOD, 36);
    assert_memory_not_equal(grandchild + 36, child + 36, 16);
}

static void test_sk_trace_child_in_place(void **state)
{
    (void)state;
    char buf[SK_TRACEPARENT_LEN];

    memcpy(buf, GOOD, sizeof(buf));
    sk_trace_child((sk_slice){ (const uint8_t *)buf, 55 }, buf);
    assert_true(valid_str(buf));
    assert_memory_equal(buf, GOOD, 36);
    assert_string_equal(buf + 52, "-01");
}

static void test_sk_trace_child_of_invalid_is_new_root(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    };
    char out[SK_TRACEPARENT_LEN];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(out, 0, sizeof(out));
        sk_trace_child(sk_slice_from_str(bad[i]), out);
        assert_true(valid_str(out));
        assert_string_equal(out + 52, "-01");
    }
    sk_trace_child((sk_slice){ NULL, 0 }, out);
    assert_true(valid_str(out));
    assert_memory_not_equal(out + 3, good_s + 3, 32);
    sk_trace_child(sk_slice_from_str(GOOD), NULL); /* no-op */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_trace_is_valid_good),
        cmocka_unit_test(test_sk_trace_is_valid_length),
        cmocka_unit_test(test_sk_trace_is_valid_bad_bytes),
        cmocka_unit_test(test_sk_trace_is_valid_zero_ids),
        cmocka_unit_test(test_sk_trace_new),
        cmocka_unit_test(test_sk_trace_new_unique),
        cmocka_unit_test(test_sk_trace_child_keeps_trace_id),
        cmocka_unit_test(test_sk_trace_child_in_place),
        cmocka_unit_test(test_sk_trace_child_of_invalid_is_new_root),
    };
    return cmocka_run_group_tests_name("obs_trace", tests, NULL, NULL);
}
