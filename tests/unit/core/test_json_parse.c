/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/json_parse.c: sk_json_parse and sk_json_parse_object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "core/core_int.h"
#include "sk_test.h"

static sk_status parse(const char *text, json_t **out)
{
    return sk_json_parse(sk_slice_from_str(text), out);
}

static void test_sk_json_parse_values(void **state)
{
    (void)state;
    json_t *v = NULL;
    assert_int_equal(parse("{\"a\": [1, 2.5, \"x\", true, null]}", &v), SK_OK);
    assert_true(json_is_object(v));
    json_decref(v);
    assert_int_equal(parse("42", &v), SK_OK); /* any value at the top level */
    assert_int_equal(json_integer_value(v), 42);
    json_decref(v);
    assert_int_equal(parse("\"caf\xc3\xa9\"", &v), SK_OK);
    json_decref(v);
}

static void test_sk_json_parse_not_nul_terminated(void **state)
{
    (void)state;
    json_t *v = NULL;
    sk_slice s = { (const uint8_t *)"[1,2]garbage", 5 };
    assert_int_equal(sk_json_parse(s, &v), SK_OK);
    assert_int_equal(json_array_size(v), 2);
    json_decref(v);
}

static void test_sk_json_parse_syntax_error_has_position(void **state)
{
    (void)state;
    json_t *v = (json_t *)1;
    SK_TEST_ASSERT_ERR(parse("{\n  \"a\": ]\n}", &v), SK_EPROTO, "line 2, column ");
    assert_null(v);
    SK_TEST_ASSERT_ERR(parse("", &v), SK_EPROTO, "line ");
    SK_TEST_ASSERT_ERR(parse("{\"a\":1} x", &v), SK_EPROTO, "end of file expected");
}

static void test_sk_json_parse_rejects_duplicates(void **state)
{
    (void)state;
    json_t *v = NULL;
    SK_TEST_ASSERT_ERR(parse("{\"a\":1,\"a\":2}", &v), SK_EPROTO, "duplicate object key");
    assert_null(v);
}

static void test_sk_json_parse_rejects_invalid_utf8(void **state)
{
    (void)state;
    json_t *v = NULL;
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"\xff\"}", &v), SK_EPROTO, "offset 6: invalid UTF-8");
    SK_TEST_ASSERT_ERR(parse("\"\xc0\xaf\"", &v), SK_EPROTO, "invalid UTF-8");     /* overlong */
    SK_TEST_ASSERT_ERR(parse("\"\xed\xa0\x80\"", &v), SK_EPROTO, "invalid UTF-8"); /* surrogate */
    SK_TEST_ASSERT_ERR(parse("\"\\u0000\"", &v), SK_EPROTO, "line 1"); /* NUL escape refused */
    assert_null(v);
}

static void test_sk_json_parse_depth_limit(void **state)
{
    (void)state;
    char text[256];
    json_t *v = NULL;
    /* Exactly SK_MAX_JSON_DEPTH levels pass. */
    memset(text, '[', SK_MAX_JSON_DEPTH);
    memset(text + SK_MAX_JSON_DEPTH, ']', SK_MAX_JSON_DEPTH);
    text[2 * SK_MAX_JSON_DEPTH] = '\0';
    assert_int_equal(parse(text, &v), SK_OK);
    json_decref(v);
    /* One more is refused. */
    memset(text, '[', SK_MAX_JSON_DEPTH + 1);
    memset(text + SK_MAX_JSON_DEPTH + 1, ']', SK_MAX_JSON_DEPTH + 1);
    text[2 * SK_MAX_JSON_DEPTH + 2] = '\0';
    SK_TEST_ASSERT_ERR(parse(text, &v), SK_ELIMIT, "offset 32: JSON nested deeper than 32");
    assert_null(v);
    /* Brackets inside strings do not count, escaped quotes do not end strings. */
    assert_int_equal(parse("{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[\"}", &v),
                     SK_OK);
    json_decref(v);
}

static void test_sk_json_parse_huge_numbers(void **state)
{
    (void)state;
    json_t *v = NULL;
    SK_TEST_ASSERT_ERR(parse("{\"n\": 99999999999999999999}", &v), SK_EPROTO, "line 1, column");
    assert_null(v);
    SK_TEST_ASSERT_ERR(parse("[1e400]", &v), SK_EPROTO, "line 1, column");
    assert_int_equal(parse("[1e30]", &v), SK_OK); /* a real, refused by sk_json_get_int */
    int64_t n = 0;
    json_t *obj = json_pack("{s:O}", "q", json_array_get(v, 0));
    SK_TEST_ASSERT_ERR(sk_json_get_int(obj, "q", 1, 10, &n), SK_EPROTO,
                       "q: expected an integer in 1..10, got real number");
    json_decref(obj);
    json_decref(v);
}

static void test_sk_json_parse_null_args(void **state)
{
    (void)state;
    json_t *v;
    SK_TEST_ASSERT_ERR(parse("{}", NULL), SK_EINVAL, "out must not be NULL");
    sk_slice bad = { NULL, 2 };
    SK_TEST_ASSERT_ERR(sk_json_parse(bad, &v), SK_EINVAL, "text.ptr");
    assert_null(v);
    SK_TEST_ASSERT_ERR(sk_json_parse_object(sk_slice_from_str("{}"), NULL), SK_EINVAL, "out");
}

static void test_sk_json_parse_object(void **state)
{
    (void)state;
    json_t *v = NULL;
    assert_int_equal(sk_json_parse_object(sk_slice_from_str("{\"a\":1}"), &v), SK_OK);
    json_decref(v);
    SK_TEST_ASSERT_ERR(sk_json_parse_object(sk_slice_from_str("[1]"), &v), SK_EPROTO,
                       "expected a JSON object, got array");
    assert_null(v);
    SK_TEST_ASSERT_ERR(sk_json_parse_object(sk_slice_from_str("{"), &v), SK_EPROTO, "line 1");
}

/* Parsing @p text with each allocation failing in turn gives SK_ENOMEM and nothing, until it
 * succeeds. */
static void assert_every_alloc_failure_is_enomem(sk_slice text)
{
    for (long n = 0;; n++) {
        json_t *v = NULL;
        sk_test_fail_alloc_at(n);
        sk_status st = sk_json_parse(text, &v);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            json_decref(v);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(v);
    }
}

static void test_sk_json_parse_every_alloc_failure(void **state)
{
    (void)state;
    const char *text = "{\"order\":{\"items\":[{\"sku\":\"SKU-1\",\"quantity\":2}],\"n\":1.5}}";
    assert_every_alloc_failure_is_enomem(sk_slice_from_str(text));
}

/* Each of @p texts is refused as bad JSON. */
static void assert_all_refused(const char *const *texts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_t *v = (json_t *)1;
        if (parse(texts[i], &v) != SK_EPROTO || v != NULL) {
            fail_msg("accepted or wrong status: %s", texts[i]);
        }
    }
}

static void test_sk_json_parse_numbers(void **state)
{
    (void)state;
    json_t *v = NULL;
    assert_int_equal(parse("[0, -0, 9223372036854775807, -9223372036854775808, 1.5, -2e3, "
                           "1E+2, 0.25e-1, 1e-400]",
                           &v),
                     SK_OK);
    assert_int_equal(json_integer_value(json_array_get(v, 0)), 0);
    assert_true(json_is_integer(json_array_get(v, 1)));
    assert_int_equal(json_integer_value(json_array_get(v, 2)), INT64_MAX);
    assert_int_equal(json_integer_value(json_array_get(v, 3)), INT64_MIN);
    assert_true(json_real_value(json_array_get(v, 4)) == 1.5);
    assert_true(json_real_value(json_array_get(v, 5)) == -2000.0);
    assert_true(json_real_value(json_array_get(v, 6)) == 100.0);
    assert_true(json_real_value(json_array_get(v, 7)) == 0.025);
    assert_true(json_real_value(json_array_get(v, 8)) == 0.0); /* underflow: zero, as jansson */
    json_decref(v);
    SK_TEST_ASSERT_ERR(parse("9223372036854775808", &v), SK_EPROTO, "too big integer");
    SK_TEST_ASSERT_ERR(parse("-9223372036854775809", &v), SK_EPROTO, "too big negative integer");
    SK_TEST_ASSERT_ERR(parse("-1e309", &v), SK_EPROTO, "real number overflow");
    const char *bad[] = { "01",  "-",   "+1",   ".5",  "1.",       "1.e2",      "1e",
                          "1e+", "--1", "0x10", "NaN", "Infinity", "-Infinity", "1 2" };
    assert_all_refused(bad, sizeof(bad) / sizeof(bad[0]));
}

static void test_sk_json_parse_strings_and_keys(void **state)
{
    (void)state;
    json_t *v = NULL;
    assert_int_equal(parse("{\"caf\\u00e9\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\ud83d\\ude00\"}", &v),
                     SK_OK);
    const char *s = json_string_value(json_object_get(v, "caf\xc3\xa9"));
    assert_non_null(s);
    assert_string_equal(s, "a\"b\\c/d\b\f\n\r\t\xf0\x9f\x98\x80");
    json_decref(v);
    /* The same key written two ways is a duplicate. */
    SK_TEST_ASSERT_ERR(parse("{\"x\":{\"\\u00e9\":1,\"\xc3\xa9\":2}}", &v), SK_EPROTO,
                       "duplicate object key");
    /* The same key at different levels is not. */
    assert_int_equal(parse("{\"a\":{\"a\":{\"a\":1}}}", &v), SK_OK);
    json_decref(v);
    const char *bad[] = { "\"a",         "\"\\x\"",       "\"\\u12\"", "\"\\ud800\"",
                          "\"\\udc00\"", "\"tab\there\"", "{\"a\" 1}", "{\"a\":1,}",
                          "[1,]",        "{,}",           "[",         "{\"a\":1",
                          "tru",         "nul",           "falsey",    "{1:2}",
                          "'a'" };
    assert_all_refused(bad, sizeof(bad) / sizeof(bad[0]));
}

static void test_sk_json_parse_refuses_nul_bytes(void **state)
{
    (void)state;
    json_t *v = NULL;
    /* jansson's json_loadb accepted the first two (it dropped the NUL after a number). */
    const char *texts[] = { "{\"a\":601\0}", "[1\0]", "[true\0]", "\"a\0\"", "1\0" };
    size_t lens[] = { 10, 4, 7, 4, 2 };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        sk_slice s = { (const uint8_t *)texts[i], lens[i] };
        assert_int_equal(sk_json_parse(s, &v), SK_EPROTO);
        assert_null(v);
    }
}

/* Text over the 1 KiB stack scratch decodes through heap scratch; every allocation fails once. */
static void test_sk_json_parse_long_text(void **state)
{
    (void)state;
    sk_buf b;
    sk_buf_init(&b, 1 << 20);
    assert_int_equal(sk_buf_append_str(&b, "{\"items\":["), SK_OK);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(
            sk_buf_appendf(&b, "%s{\"sku\":\"SKU-\\u00e9%d\",\"n\":%d.5}", i ? "," : "", i, i),
            SK_OK);
    }
    assert_int_equal(sk_buf_append_str(&b, "]}"), SK_OK);
    sk_slice text = { (const uint8_t *)b.data, b.len };
    assert_true(text.len > 2048);
    json_t *v = NULL;
    assert_int_equal(sk_json_parse(text, &v), SK_OK);
    json_t *last = json_array_get(json_object_get(v, "items"), 99);
    assert_string_equal(json_string_value(json_object_get(last, "sku")), "SKU-\xc3\xa9"
                                                                         "99");
    assert_true(json_real_value(json_object_get(last, "n")) == 99.5);
    json_decref(v);
    assert_every_alloc_failure_is_enomem(text);
    sk_buf_fini(&b);
}

static void test_sk_json_parse_error_position(void **state)
{
    (void)state;
    json_t *v = NULL;
    /* Columns count characters: the é before the fault is one. */
    SK_TEST_ASSERT_ERR(parse("{\n \"\xc3\xa9\": x}", &v), SK_EPROTO,
                       "line 2, column 7: invalid token");
    SK_TEST_ASSERT_ERR(parse("[1,\n2,\n\"\\q\"]", &v), SK_EPROTO,
                       "line 3, column 2: invalid escape \\q");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_json_parse_values),
        cmocka_unit_test(test_sk_json_parse_not_nul_terminated),
        cmocka_unit_test(test_sk_json_parse_syntax_error_has_position),
        cmocka_unit_test(test_sk_json_parse_rejects_duplicates),
        cmocka_unit_test(test_sk_json_parse_rejects_invalid_utf8),
        cmocka_unit_test(test_sk_json_parse_depth_limit),
        cmocka_unit_test(test_sk_json_parse_huge_numbers),
        cmocka_unit_test(test_sk_json_parse_null_args),
        cmocka_unit_test(test_sk_json_parse_object),
        cmocka_unit_test(test_sk_json_parse_every_alloc_failure),
        cmocka_unit_test(test_sk_json_parse_numbers),
        cmocka_unit_test(test_sk_json_parse_strings_and_keys),
        cmocka_unit_test(test_sk_json_parse_refuses_nul_bytes),
        cmocka_unit_test(test_sk_json_parse_long_text),
        cmocka_unit_test(test_sk_json_parse_error_position),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
