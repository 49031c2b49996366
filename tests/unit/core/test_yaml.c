/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/yaml.c: YAML to JSON conversion and its errors. */
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
    return sk_yaml_parse(sk_slice_from_str(text), "t.yaml", out);
}

static void test_sk_yaml_parse_all_types(void **state)
{
    (void)state;
    size_t len = 0;
    char *text = sk_test_read_file(SK_TEST_DATA "/core/yaml/all_types.yaml", &len);
    assert_non_null(text);
    json_t *v = NULL;
    sk_slice s = { (const uint8_t *)text, len };
    assert_int_equal(sk_yaml_parse(s, "all_types.yaml", &v), SK_OK);
    sk_free(text);
    assert_string_equal(json_string_value(json_object_get(v, "name")), "shop");
    assert_int_equal(json_integer_value(json_object_get(v, "port")), 8080);
    assert_true(json_is_integer(json_object_get(v, "port")));
    assert_int_equal(json_integer_value(json_object_get(v, "negative")), -42);
    assert_int_equal(json_integer_value(json_object_get(v, "zero")), 0);
    assert_string_equal(json_string_value(json_object_get(v, "octal_looking")), "007");
    assert_true(json_integer_value(json_object_get(v, "big")) == INT64_MAX);
    assert_true(json_integer_value(json_object_get(v, "small")) == INT64_MIN);
    assert_string_equal(json_string_value(json_object_get(v, "real")), "1.5");
    assert_string_equal(json_string_value(json_object_get(v, "yes_is_a_string")), "yes");
    assert_true(json_is_true(json_object_get(v, "enabled")));
    assert_true(json_is_false(json_object_get(v, "disabled")));
    assert_true(json_is_null(json_object_get(v, "nothing")));
    assert_true(json_is_null(json_object_get(v, "tilde")));
    assert_true(json_is_null(json_object_get(v, "empty")));
    assert_string_equal(json_string_value(json_object_get(v, "quoted_int")), "8080");
    assert_string_equal(json_string_value(json_object_get(v, "quoted_bool")), "true");
    assert_string_equal(json_string_value(json_object_get(v, "forced")), "12");
    json_t *list = json_object_get(v, "list");
    assert_int_equal(json_array_size(list), 3);
    assert_string_equal(json_string_value(json_array_get(list, 0)), "a");
    assert_int_equal(json_integer_value(json_array_get(list, 1)), 2);
    json_t *y = json_object_get(json_array_get(list, 2), "y");
    assert_true(json_is_true(json_array_get(y, 0)));
    assert_string_equal(json_string_value(json_array_get(y, 1)), "b");
    assert_int_equal(json_array_size(json_object_get(v, "flow")), 2);
    assert_string_equal(json_string_value(json_object_get(v, "multi")), "line one\nline two\n");
    assert_string_equal(json_string_value(json_object_get(v, "unicode")),
                        "caf\xc3\xa9 \xe2\x98\x95");
    json_decref(v);
}

static void test_sk_yaml_parse_empty_is_null(void **state)
{
    (void)state;
    json_t *v = NULL;
    assert_int_equal(parse("", &v), SK_OK);
    assert_true(json_is_null(v));
    json_decref(v);
    assert_int_equal(parse("# only a comment\n", &v), SK_OK);
    assert_true(json_is_null(v));
    json_decref(v);
    sk_slice s = { NULL, 0 };
    assert_int_equal(sk_yaml_parse(s, NULL, &v), SK_OK);
    json_decref(v);
}

static void test_sk_yaml_parse_scalar_root(void **state)
{
    (void)state;
    json_t *v = NULL;
    assert_int_equal(parse("42\n", &v), SK_OK);
    assert_int_equal(json_integer_value(v), 42);
    json_decref(v);
}

static void test_sk_yaml_parse_not_nul_terminated(void **state)
{
    (void)state;
    json_t *v = NULL;
    sk_slice s = { (const uint8_t *)"a: 1\nb: [", 5 };
    assert_int_equal(sk_yaml_parse(s, "t.yaml", &v), SK_OK);
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
    assert_int_equal(json_object_size(v), 1);
    json_decref(v);
}

static void test_sk_yaml_parse_duplicate_key(void **state)
{
    (void)state;
    json_t *v = (json_t *)1;
    SK_TEST_ASSERT_ERR(parse("a: 1\nb:\n  c: 1\n  c: 2\n", &v), SK_EPROTO,
                       "t.yaml:4:3: duplicate key \"c\"");
    assert_null(v);
}

static void test_sk_yaml_parse_integer_overflow(void **state)
{
    (void)state;
    json_t *v = NULL;
    SK_TEST_ASSERT_ERR(parse("a: 1\nb: 9223372036854775808\n", &v), SK_EPROTO,
                       "t.yaml:2:4: integer out of range (int64): 9223372036854775808");
    SK_TEST_ASSERT_ERR(parse("- -9223372036854775809\n", &v), SK_EPROTO, "t.yaml:1:3: integer");
    SK_TEST_ASSERT_ERR(parse("- 99999999999999999999999999999999999999999999999999\n", &v),
                       SK_EPROTO, "9999...");
    assert_null(v);
    /* Quoted, the same text is a plain string. */
    assert_int_equal(parse("a: \"99999999999999999999\"\n", &v), SK_OK);
    json_decref(v);
}

static void test_sk_yaml_parse_refuses_anchors_aliases_tags(void **state)
{
    (void)state;
    json_t *v = NULL;
    SK_TEST_ASSERT_ERR(parse("a: &x 1\nb: *x\n", &v), SK_EPROTO,
                       "t.yaml:1:4: anchors (&x) are not supported");
    SK_TEST_ASSERT_ERR(parse("a: &m {b: 1}\n", &v), SK_EPROTO, "anchors (&m)");
    SK_TEST_ASSERT_ERR(parse("a: *x\n", &v), SK_EPROTO, "t.yaml:1:4:");
    SK_TEST_ASSERT_ERR(parse("a: !!int 3\n", &v), SK_EPROTO, "tags (tag:yaml.org,2002:int)");
    SK_TEST_ASSERT_ERR(parse("a: !custom {}\n", &v), SK_EPROTO, "are not supported");
    assert_null(v);
}

static void test_sk_yaml_parse_multiple_documents(void **state)
{
    (void)state;
    size_t len = 0;
    char *text = sk_test_read_file(SK_TEST_DATA "/core/yaml/two_docs.yaml", &len);
    json_t *v = NULL;
    sk_slice s = { (const uint8_t *)text, len };
    SK_TEST_ASSERT_ERR(sk_yaml_parse(s, "two_docs.yaml", &v), SK_EPROTO,
                       "two_docs.yaml:2:1: multiple documents are not supported");
    assert_null(v);
    sk_free(text);
}

static void test_sk_yaml_parse_syntax_errors(void **state)
{
    (void)state;
    json_t *v = NULL;
    SK_TEST_ASSERT_ERR(parse("a: [1, 2\n", &v), SK_EPROTO, "t.yaml:2:1: ");
    SK_TEST_ASSERT_ERR(parse("- {path: /orders/{id}}\n", &v), SK_EPROTO,
                       "t.yaml:1:18: did not find expected ',' or '}' (while parsing a flow "
                       "mapping); in flow style {...} or [...], quote values");
    SK_TEST_ASSERT_ERR(parse("a: b: c\n", &v), SK_EPROTO,
                       "t.yaml:1:5: mapping values are not allowed in this context");
    SK_TEST_ASSERT_ERR(parse("a:\n\t- b\n", &v), SK_EPROTO, "t.yaml:2:1: ");
    SK_TEST_ASSERT_ERR(parse("a: \"\xff\"\n", &v), SK_EPROTO, "invalid");
    SK_TEST_ASSERT_ERR(parse("? [a]\n: 1\n", &v), SK_EPROTO, "mapping keys must be scalars");
    assert_null(v);
}

static void test_sk_yaml_parse_nul_in_input(void **state)
{
    (void)state;
    json_t *v = NULL;
    sk_slice s = { (const uint8_t *)"a: 1\0\n", 6 };
    SK_TEST_ASSERT_ERR(sk_yaml_parse(s, "t.yaml", &v), SK_EPROTO, "t.yaml:");
    assert_null(v);
    SK_TEST_ASSERT_ERR(parse("\"a\\0b\": 1\n", &v), SK_EPROTO, "keys must not contain NUL");
}

static void test_sk_yaml_parse_depth_limit(void **state)
{
    (void)state;
    char text[256];
    json_t *v = NULL;
    memset(text, '[', SK_MAX_JSON_DEPTH);
    memset(text + SK_MAX_JSON_DEPTH, ']', SK_MAX_JSON_DEPTH);
    text[2 * SK_MAX_JSON_DEPTH] = '\0';
    assert_int_equal(parse(text, &v), SK_OK);
    json_decref(v);
    memset(text, '[', SK_MAX_JSON_DEPTH + 1);
    memset(text + SK_MAX_JSON_DEPTH + 1, ']', SK_MAX_JSON_DEPTH + 1);
    text[2 * SK_MAX_JSON_DEPTH + 2] = '\0';
    SK_TEST_ASSERT_ERR(parse(text, &v), SK_ELIMIT, "t.yaml:1:33: nested deeper than 32 levels");
    assert_null(v);
}

static void test_sk_yaml_parse_size_limit(void **state)
{
    (void)state;
    json_t *v = NULL;
    char *big = sk_malloc(SK_MAX_CONFIG_BYTES + 1);
    assert_non_null(big);
    memset(big, ' ', SK_MAX_CONFIG_BYTES + 1);
    big[0] = '#';
    sk_slice s = { (const uint8_t *)big, SK_MAX_CONFIG_BYTES };
    assert_int_equal(sk_yaml_parse(s, "big.yaml", &v), SK_OK); /* exactly the limit */
    json_decref(v);
    s.len++;
    SK_TEST_ASSERT_ERR(sk_yaml_parse(s, "big.yaml", &v), SK_ELIMIT,
                       "big.yaml: 1048577 bytes is more than the limit");
    assert_null(v);
    sk_free(big);
}

static void test_sk_yaml_parse_null_args(void **state)
{
    (void)state;
    json_t *v;
    SK_TEST_ASSERT_ERR(sk_yaml_parse(sk_slice_from_str("a: 1"), "x", NULL), SK_EINVAL,
                       "out must not be NULL");
    sk_slice bad = { NULL, 3 };
    SK_TEST_ASSERT_ERR(sk_yaml_parse(bad, "x", &v), SK_EINVAL, "text.ptr");
    assert_null(v);
    SK_TEST_ASSERT_ERR(sk_yaml_parse(sk_slice_from_str("a: *b"), NULL, &v), SK_EPROTO,
                       "<yaml>:1:4:");
}

static void test_sk_yaml_parse_every_alloc_failure(void **state)
{
    (void)state;
    const char *text = "a: 1\nb: [x, {c: true, d: null}]\ne: \"s\"\n";
    for (long n = 0;; n++) {
        json_t *v = NULL;
        sk_test_fail_alloc_at(n);
        sk_status st = parse(text, &v);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            assert_int_equal(json_object_size(v), 3);
            json_decref(v);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_yaml_parse_all_types),
        cmocka_unit_test(test_sk_yaml_parse_empty_is_null),
        cmocka_unit_test(test_sk_yaml_parse_scalar_root),
        cmocka_unit_test(test_sk_yaml_parse_not_nul_terminated),
        cmocka_unit_test(test_sk_yaml_parse_duplicate_key),
        cmocka_unit_test(test_sk_yaml_parse_integer_overflow),
        cmocka_unit_test(test_sk_yaml_parse_refuses_anchors_aliases_tags),
        cmocka_unit_test(test_sk_yaml_parse_multiple_documents),
        cmocka_unit_test(test_sk_yaml_parse_syntax_errors),
        cmocka_unit_test(test_sk_yaml_parse_nul_in_input),
        cmocka_unit_test(test_sk_yaml_parse_depth_limit),
        cmocka_unit_test(test_sk_yaml_parse_size_limit),
        cmocka_unit_test(test_sk_yaml_parse_null_args),
        cmocka_unit_test(test_sk_yaml_parse_every_alloc_failure),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
