/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/id.c: UUIDv7 and UUIDv5 generation, validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <skald/core.h>

#include "sk_test.h"

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

/* RFC 9562, appendix A.4: "www.example.com" in the DNS namespace. */
static void test_sk_uuid5_matches_the_rfc_vector(void **state)
{
    (void)state;
    char id[SK_UUID_LEN];
    assert_int_equal(
        sk_uuid5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", sk_slice_from_str("www.example.com"), id),
        SK_OK);
    assert_string_equal(id, "2ed6657d-e927-568b-95e1-2665a8aea6a2");
    /* The namespace in upper case is the same namespace. */
    assert_int_equal(
        sk_uuid5("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", sk_slice_from_str("www.example.com"), id),
        SK_OK);
    assert_string_equal(id, "2ed6657d-e927-568b-95e1-2665a8aea6a2");
    /* The empty name (Python's uuid.uuid5(uuid.NAMESPACE_DNS, "")). */
    assert_int_equal(sk_uuid5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", sk_slice_from_str(""), id),
                     SK_OK);
    assert_string_equal(id, "4ebd0208-8328-5d69-8c44-ec50939c0967");
}

static void test_sk_uuid5_is_stable_and_distinct(void **state)
{
    (void)state;
    const char *ns = "0190a6e4-8f6e-7c3a-9b2d-1e2f3a4b5c6d";
    char a[SK_UUID_LEN], b[SK_UUID_LEN], c[SK_UUID_LEN], d[SK_UUID_LEN];
    assert_int_equal(sk_uuid5(ns, sk_slice_from_str("order-1"), a), SK_OK);
    assert_int_equal(sk_uuid5(ns, sk_slice_from_str("order-1"), b), SK_OK);
    assert_int_equal(sk_uuid5(ns, sk_slice_from_str("order-2"), c), SK_OK);
    assert_int_equal(
        sk_uuid5("0190a6e4-8f6e-7c3a-9b2d-1e2f3a4b5c6e", sk_slice_from_str("order-1"), d), SK_OK);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    assert_true(sk_uuid_is_valid(sk_slice_from_str(a)));
    assert_int_equal(a[14], '5');           /* version */
    assert_non_null(strchr("89ab", a[19])); /* variant 10xx */
    /* Only len bytes of the name count. */
    sk_slice part = { (const uint8_t *)"order-1 and more", 7 };
    assert_int_equal(sk_uuid5(ns, part, c), SK_OK);
    assert_string_equal(a, c);
}

static void test_sk_uuid5_refuses_bad_arguments(void **state)
{
    (void)state;
    const char *dns = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    char id[SK_UUID_LEN] = "x";
    SK_TEST_ASSERT_ERR(sk_uuid5("not-a-uuid", sk_slice_from_str("a"), id), SK_EINVAL,
                       "is not a UUID");
    assert_string_equal(id, "");
    SK_TEST_ASSERT_ERR(sk_uuid5("6ba7b810-9dad-11d1-80b4-00c04fd430c", sk_slice_from_str("a"), id),
                       SK_EINVAL, "is not a UUID");
    SK_TEST_ASSERT_ERR(sk_uuid5(NULL, sk_slice_from_str("a"), id), SK_EINVAL, "must not be NULL");
    sk_slice no_name = { NULL, 3 };
    SK_TEST_ASSERT_ERR(sk_uuid5(dns, no_name, id), SK_EINVAL, "must not be NULL");
    SK_TEST_ASSERT_ERR(sk_uuid5(dns, sk_slice_from_str("a"), NULL), SK_EINVAL, "must not be NULL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_uuid7_format),
        cmocka_unit_test(test_sk_uuid7_carries_time),
        cmocka_unit_test(test_sk_uuid7_strictly_increasing),
        cmocka_unit_test(test_sk_uuid_is_valid_cases),
        cmocka_unit_test(test_sk_uuid5_matches_the_rfc_vector),
        cmocka_unit_test(test_sk_uuid5_is_stable_and_distinct),
        cmocka_unit_test(test_sk_uuid5_refuses_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
