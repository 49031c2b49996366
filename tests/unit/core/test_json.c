/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/json.c: typed readers, dumping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "core/core_int.h"
#include "sk_test.h"

static void test_sk_json_get_string(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:n}", "name", "Ada", "uni", "\xc3\xa9\xc3\xa9",
                          "num", 3, "empty", "", "nul");
    const char *s = "x";
    assert_int_equal(sk_json_get_string(o, "name", 1, 200, &s), SK_OK);
    assert_string_equal(s, "Ada");
    /* Two code points in four bytes: counted as characters. */
    assert_int_equal(sk_json_get_string(o, "uni", 2, 2, &s), SK_OK);
    SK_TEST_ASSERT_ERR(sk_json_get_string(o, "uni", 3, 5, &s), SK_EPROTO,
                       "uni: expected a string of 3..5 characters, got 2");
    assert_null(s);
    SK_TEST_ASSERT_ERR(sk_json_get_string(o, "empty", 1, 200, &s), SK_EPROTO,
                       "empty: expected a string of 1..200 characters");
    assert_int_equal(sk_json_get_string(o, "empty", 0, 0, &s), SK_OK);
    SK_TEST_ASSERT_ERR(sk_json_get_string(o, "name", 1, 2, &s), SK_EPROTO,
                       "name: expected a string of 1..2 characters, got 3");
    SK_TEST_ASSERT_ERR(sk_json_get_string(o, "missing", 1, 2, &s), SK_EPROTO, "missing: required");
    SK_TEST_ASSERT_ERR(sk_json_get_string(o, "num", 1, 2, &s), SK_EPROTO,
                       "num: expected a string, got integer");
    SK_TEST_ASSERT_ERR(sk_json_get_string(o, "nul", 1, 2, &s), SK_EPROTO,
                       "nul: expected a string, got null");
    json_object_set_new(o, "zero", json_stringn("a\0b", 3));
    SK_TEST_ASSERT_ERR(sk_json_get_string(o, "zero", 1, 9, &s), SK_EPROTO, "zero: must not");
    json_decref(o);
}

static void test_sk_json_get_string_bad_args(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s}", "a", "b");
    json_t *arr = json_array();
    const char *s;
    SK_TEST_ASSERT_ERR(sk_json_get_string(NULL, "a", 0, 1, &s), SK_EINVAL, "obj must not");
    SK_TEST_ASSERT_ERR(sk_json_get_string(o, NULL, 0, 1, &s), SK_EINVAL, "key must not");
    SK_TEST_ASSERT_ERR(sk_json_get_string(o, "a", 0, 1, NULL), SK_EINVAL, "out must not");
    SK_TEST_ASSERT_ERR(sk_json_get_string(o, "a", 2, 1, &s), SK_EINVAL, "min_chars");
    SK_TEST_ASSERT_ERR(sk_json_get_string(arr, "a", 0, 1, &s), SK_EPROTO,
                       "a: expected a JSON object holding it, got array");
    json_decref(arr);
    json_decref(o);
}

static void test_sk_json_get_int(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:i, s:f, s:s, s:b, s:I, s:I}", "quantity", 5, "real", 2.0, "str", "5",
                          "flag", 1, "min", (json_int_t)INT64_MIN, "max", (json_int_t)INT64_MAX);
    int64_t n = 7;
    assert_int_equal(sk_json_get_int(o, "quantity", 1, 10000, &n), SK_OK);
    assert_int_equal(n, 5);
    assert_int_equal(sk_json_get_int(o, "quantity", 5, 5, &n), SK_OK);
    SK_TEST_ASSERT_ERR(sk_json_get_int(o, "quantity", 6, 10000, &n), SK_EPROTO,
                       "quantity: expected an integer in 6..10000, got 5");
    assert_int_equal(n, 0);
    SK_TEST_ASSERT_ERR(sk_json_get_int(o, "quantity", 1, 4, &n), SK_EPROTO,
                       "quantity: expected an integer in 1..4");
    SK_TEST_ASSERT_ERR(sk_json_get_int(o, "real", 1, 4, &n), SK_EPROTO, "got real number");
    SK_TEST_ASSERT_ERR(sk_json_get_int(o, "str", 1, 10, &n), SK_EPROTO, "got string");
    SK_TEST_ASSERT_ERR(sk_json_get_int(o, "flag", 0, 10, &n), SK_EPROTO, "got boolean");
    SK_TEST_ASSERT_ERR(sk_json_get_int(o, "none", 0, 10, &n), SK_EPROTO, "none: required");
    assert_int_equal(sk_json_get_int(o, "min", INT64_MIN, INT64_MAX, &n), SK_OK);
    assert_true(n == INT64_MIN);
    assert_int_equal(sk_json_get_int(o, "max", INT64_MIN, INT64_MAX, &n), SK_OK);
    assert_true(n == INT64_MAX);
    SK_TEST_ASSERT_ERR(sk_json_get_int(NULL, "a", 0, 1, &n), SK_EINVAL, "obj");
    SK_TEST_ASSERT_ERR(sk_json_get_int(o, "quantity", 0, 1, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_json_get_int(o, "quantity", 2, 1, &n), SK_EINVAL, "min 2 > max 1");
    json_decref(o);
}

static void test_sk_json_dump_and_dumps(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:i, s:[s,b]}", "a", 1, "b", "x", 0);
    sk_buf b;
    sk_buf_init(&b, 1024);
    assert_int_equal(sk_buf_append_str(&b, ">"), SK_OK);
    assert_int_equal(sk_json_dump(o, &b), SK_OK);
    assert_string_equal(b.data, ">{\"a\":1,\"b\":[\"x\",false]}");
    sk_buf_fini(&b);
    char *s = sk_json_dumps(o);
    assert_string_equal(s, "{\"a\":1,\"b\":[\"x\",false]}");
    sk_free(s);
    json_t *i = json_integer(7);
    s = sk_json_dumps(i);
    assert_string_equal(s, "7");
    sk_free(s);
    json_decref(i);
    assert_null(sk_json_dumps(NULL));
    SK_TEST_ASSERT_ERR(sk_json_dump(NULL, &b), SK_EINVAL, "value must not be NULL");
    SK_TEST_ASSERT_ERR(sk_json_dump(o, NULL), SK_EINVAL, "out must not be NULL");
    json_decref(o);
}

static void test_sk_json_dump_limit_leaves_buffer(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s}", "long", "0123456789012345678901234567890123456789");
    sk_buf b;
    sk_buf_init(&b, 20);
    assert_int_equal(sk_buf_append_str(&b, "keep"), SK_OK);
    SK_TEST_ASSERT_ERR(sk_json_dump(o, &b), SK_ELIMIT, "limit");
    assert_string_equal(b.data, "keep");
    assert_int_equal(b.len, 4);
    sk_buf_fini(&b);
    json_decref(o);
}

static void test_sk_json_dumps_every_alloc_failure(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:i, s:[s,b,f]}", "a", 1, "b", "x", 0, 1.5);
    for (long n = 0;; n++) {
        sk_test_fail_alloc_at(n);
        char *s = sk_json_dumps(o);
        sk_test_fail_alloc_at(-1);
        if (s != NULL) {
            sk_free(s);
            break;
        }
        assert_int_equal(sk_error_status(), SK_ENOMEM);
    }
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_json_get_string),
        cmocka_unit_test(test_sk_json_get_string_bad_args),
        cmocka_unit_test(test_sk_json_get_int),
        cmocka_unit_test(test_sk_json_dump_and_dumps),
        cmocka_unit_test(test_sk_json_dump_limit_leaves_buffer),
        cmocka_unit_test(test_sk_json_dumps_every_alloc_failure),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
