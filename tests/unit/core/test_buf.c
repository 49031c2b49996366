/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/buf.c: slices and bounded buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "core/core_int.h"
#include "sk_test.h"

static void test_sk_slice_from_str_and_eq(void **state)
{
    (void)state;
    sk_slice s = sk_slice_from_str("abc");
    assert_int_equal(s.len, 3);
    assert_true(sk_slice_eq_str(s, "abc"));
    assert_false(sk_slice_eq_str(s, "abd"));
    assert_false(sk_slice_eq_str(s, "ab"));
    assert_false(sk_slice_eq_str(s, NULL));
    sk_slice e = sk_slice_from_str(NULL);
    assert_null(e.ptr);
    assert_int_equal(e.len, 0);
    assert_true(sk_slice_eq_str(e, ""));
}

static void test_sk_buf_append_grows_and_terminates(void **state)
{
    (void)state;
    sk_buf b;
    sk_buf_init(&b, 1024);
    assert_int_equal(sk_buf_append(&b, "ab", 2), SK_OK);
    assert_int_equal(sk_buf_append_str(&b, "cd"), SK_OK);
    assert_int_equal(sk_buf_appendf(&b, "-%d-%s", 12, "x"), SK_OK);
    assert_string_equal(b.data, "abcd-12-x");
    assert_int_equal(b.len, 9);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(sk_buf_append(&b, "0123456789", 10), SK_OK);
    }
    assert_int_equal(b.len, 1009);
    assert_int_equal(b.data[b.len], '\0');
    sk_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    sk_buf_fini(&b);
    sk_buf_fini(&b); /* idempotent */
    assert_null(b.data);
}

static void test_sk_buf_append_zero_bytes_gives_string(void **state)
{
    (void)state;
    sk_buf b;
    sk_buf_init(&b, 0);
    assert_int_equal(sk_buf_append(&b, NULL, 0), SK_OK);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    sk_buf_fini(&b);
}

static void test_sk_buf_append_limit(void **state)
{
    (void)state;
    sk_buf b;
    sk_buf_init(&b, 4);
    assert_int_equal(sk_buf_append(&b, "abcd", 4), SK_OK); /* exactly max */
    SK_TEST_ASSERT_ERR(sk_buf_append(&b, "e", 1), SK_ELIMIT, "limit of 4 bytes");
    assert_string_equal(b.data, "abcd"); /* unchanged */
    SK_TEST_ASSERT_ERR(sk_buf_appendf(&b, "%d", 1), SK_ELIMIT, "limit");
    sk_buf_reset(&b);
    SK_TEST_ASSERT_ERR(sk_buf_append(&b, "abcde", 5), SK_ELIMIT, "limit");
    assert_int_equal(b.len, 0);
    sk_buf_fini(&b);
}

static void test_sk_buf_null_args(void **state)
{
    (void)state;
    sk_buf b;
    sk_buf_init(&b, 16);
    SK_TEST_ASSERT_ERR(sk_buf_append(NULL, "a", 1), SK_EINVAL, "b must not be NULL");
    SK_TEST_ASSERT_ERR(sk_buf_append(&b, NULL, 1), SK_EINVAL, "data");
    SK_TEST_ASSERT_ERR(sk_buf_append_str(&b, NULL), SK_EINVAL, "s must not be NULL");
    SK_TEST_ASSERT_ERR(sk_buf_appendf(NULL, "x"), SK_EINVAL, "b must not be NULL");
    sk_buf_init(NULL, 1);
    sk_buf_fini(NULL);
    sk_buf_reset(NULL);
    assert_null(sk_buf_take(NULL, NULL));
    sk_buf_fini(&b);
}

static void test_sk_buf_take(void **state)
{
    (void)state;
    sk_buf b;
    size_t len = 99;
    sk_buf_init(&b, 16);
    char *s = sk_buf_take(&b, &len); /* nothing appended: empty string */
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    sk_free(s);
    assert_int_equal(sk_buf_append_str(&b, "xyz"), SK_OK);
    s = sk_buf_take(&b, &len);
    assert_string_equal(s, "xyz");
    assert_int_equal(len, 3);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    sk_free(s);
}

static void test_sk_buf_append_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_buf b;
        sk_buf_init(&b, 4096);
        sk_test_fail_alloc_at(n);
        sk_status st = SK_OK;
        for (int i = 0; i < 50 && st == SK_OK; i++) {
            st = sk_buf_appendf(&b, "%02d-456789", i);
        }
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            assert_int_equal(b.len, 450);
            sk_buf_fini(&b);
            break;
        }
        SK_TEST_ASSERT_ERR(st, SK_ENOMEM, "growing a buffer");
        assert_true(b.data == NULL || b.data[b.len] == '\0');
        sk_buf_fini(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_slice_from_str_and_eq),
        cmocka_unit_test(test_sk_buf_append_grows_and_terminates),
        cmocka_unit_test(test_sk_buf_append_zero_bytes_gives_string),
        cmocka_unit_test(test_sk_buf_append_limit),
        cmocka_unit_test(test_sk_buf_null_args),
        cmocka_unit_test(test_sk_buf_take),
        cmocka_unit_test(test_sk_buf_append_every_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
