/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/id.c: UUIDv7 generation and validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <skald/core.h>

static void test_sk_uuid7_format(void **state)
{
    (void)state;
    char id[SK_UUID_LEN];
    sk_uuid7(id);
    assert_int_equal(strlen(id), 36);
    assert_true(sk_uuid_is_valid(sk_slice_from_str(id)));
    assert_int_equal(id[14], '7');                   /* version */
    assert_non_null(strchr("89ab", id[19]));         /* variant 10xx */
    for (size_t i = 0; i < 36; i++) {
        assert_true(id[i] == '-' || (id[i] >= '0' && id[i] <= '9') ||
                    (id[i] >= 'a' && id[i] <= 'f'));
    }
    sk_uuid7(NULL); /* NULL-safe */
}

static void test_sk_uuid7_carries_time(void **state)
{
    (void)state;
    char id[SK_UUID_LEN];
    char hex[13];
    int64_t before = sk_time_now_ms();
    sk_uuid7(id);
    int64_t after = sk_time_now_ms();
    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    hex[12] = '\0';
    int64_t ms = (int64_t)strtoll(hex, NULL, 16);
    assert_true(ms >= before);
    assert_true(ms <= after + 1); /* may borrow the next millisecond */
}

static void test_sk_uuid7_strictly_increasing(void **state)
{
    (void)state;
    char prev[SK_UUID_LEN], cur[SK_UUID_LEN];
    sk_uuid7(prev);
    for (int i = 0; i < 20000; i++) {
        sk_uuid7(cur);
        assert_true(strcmp(prev, cur) < 0);
        memcpy(prev, cur, sizeof(cur));
    }
}

static void test_sk_uuid_is_valid_cases(void **state)
{
    (void)state;
    assert_true(sk_uuid_is_valid(sk_slice_from_str("0190a6e4-8f6e-7c3a-9b2d-1e2f3a4b5c6d")));
    assert_true(sk_uuid_is_valid(sk_slice_from_str("0190A6E4-8F6E-7C3A-9B2D-1E2F3A4B5C6D")));
    assert_false(sk_uuid_is_valid(sk_slice_from_str("0190a6e4-8f6e-7c3a-9b2d-1e2f3a4b5c6")));
    assert_false(sk_uuid_is_valid(sk_slice_from_str("0190a6e4-8f6e-7c3a-9b2d-1e2f3a4b5c6d0")));
    assert_false(sk_uuid_is_valid(sk_slice_from_str("0190a6e48f6e-7c3a-9b2d-1e2f3a4b5c6d-")));
    assert_false(sk_uuid_is_valid(sk_slice_from_str("0190a6e4-8f6e-7c3a-9b2d-1e2f3a4b5c6g")));
    assert_false(sk_uuid_is_valid(sk_slice_from_str("")));
    sk_slice n = { NULL, 36 };
    assert_false(sk_uuid_is_valid(n));
    /* Not NUL-terminated: only len bytes are read. */
    sk_slice s = { (const uint8_t *)"0190a6e4-8f6e-7c3a-9b2d-1e2f3a4b5c6dXYZ", 36 };
    assert_true(sk_uuid_is_valid(s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_uuid7_format),
        cmocka_unit_test(test_sk_uuid7_carries_time),
        cmocka_unit_test(test_sk_uuid7_strictly_increasing),
        cmocka_unit_test(test_sk_uuid_is_valid_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
