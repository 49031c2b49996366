/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/json_flat.c: flat objects of strings without allocating. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "core/core_int.h"
#include "sk_test.h"

#define MAX_MEMBERS 8

typedef struct parsed {
    char scratch[512];
    sk_json_member m[MAX_MEMBERS];
    size_t n;
} parsed;

static sk_status parse(const char *text, parsed *p)
{
    memset(p, 0x5A, sizeof(*p)); /* no byte of a result may come from before */
    return sk_json_parse_flat_strings(sk_slice_from_str(text), p->scratch, sizeof(p->scratch), p->m,
                                      MAX_MEMBERS, &p->n);
}

static void
assert_member(const parsed *p, size_t i, const char *name, const char *value, size_t value_len)
{
    assert_true(i < p->n);
    assert_int_equal(p->m[i].name.len, strlen(name));
    assert_string_equal((const char *)p->m[i].name.ptr, name);
    assert_int_equal(p->m[i].value.len, value_len);
    assert_memory_equal(p->m[i].value.ptr, value, value_len);
    assert_int_equal(p->m[i].value.ptr[value_len], '\0');
}

static void test_flat_members_in_order(void **state)
{
    (void)state;
    parsed p;

    assert_int_equal(
        parse(" {\"ce-id\" : \"0193\", \"ce-type\":\"OrderPlaced\" ,\"empty\":\"\"}\r\n", &p),
        SK_OK);
    assert_int_equal(p.n, 3);
    assert_member(&p, 0, "ce-id", "0193", 4);
    assert_member(&p, 1, "ce-type", "OrderPlaced", 11);
    assert_member(&p, 2, "empty", "", 0);
    assert_int_equal(parse("{}", &p), SK_OK);
    assert_int_equal(p.n, 0);
    assert_int_equal(parse("\t{ }\n", &p), SK_OK);
    assert_int_equal(p.n, 0);
}

static void test_flat_escapes(void **state)
{
    (void)state;
    parsed p;

    assert_int_equal(parse("{\"k\":\"q\\\"b\\\\s\\/n\\nr\\rt\\tb\\bf\\f\"}", &p), SK_OK);
    assert_member(&p, 0, "k", "q\"b\\s/n\nr\rt\tb\bf\f", 16);
    /* BMP escapes become UTF-8; a surrogate pair becomes one 4-byte character. */
    assert_int_equal(parse("{\"\\u0041\":\"\\u00e9\\u20AC\\ud83d\\ude00\"}", &p), SK_OK);
    assert_member(&p, 0, "A", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
    /* Raw UTF-8 passes through. */
    assert_int_equal(parse("{\"k\":\"\xc3\xa9\"}", &p), SK_OK);
    assert_member(&p, 0, "k", "\xc3\xa9", 2);
}

static void test_flat_refuses(void **state)
{
    (void)state;
    parsed p;

    SK_TEST_ASSERT_ERR(parse("{\"a\":1}", &p), SK_EPROTO, "a: expected a string");
    SK_TEST_ASSERT_ERR(parse("{\"a\":{\"b\":\"c\"}}", &p), SK_EPROTO, "a: expected a string");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"x\",\"a\":\"y\"}", &p), SK_EPROTO, "duplicate name \"a\"");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"x\"} {}", &p), SK_EPROTO, "data after the object");
    SK_TEST_ASSERT_ERR(parse("[\"a\"]", &p), SK_EPROTO, "expected an object");
    SK_TEST_ASSERT_ERR(parse("", &p), SK_EPROTO, "expected an object");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"x\",}", &p), SK_EPROTO, "expected a string");
    SK_TEST_ASSERT_ERR(parse("{\"a\" \"x\"}", &p), SK_EPROTO, "expected ':'");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"x\" \"b\":\"y\"}", &p), SK_EPROTO, "expected ',' or '}'");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"x", &p), SK_EPROTO, "unterminated string");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"x\\", &p), SK_EPROTO, "unterminated string");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"x\ty\"}", &p), SK_EPROTO, "control character");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"\\x\"}", &p), SK_EPROTO, "invalid escape \\x");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"\\u12\"}", &p), SK_EPROTO, "four hex digits");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"\\u0000\"}", &p), SK_EPROTO, "\\u0000");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"\\udc00\"}", &p), SK_EPROTO, "low surrogate without");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"\\ud800x\"}", &p), SK_EPROTO, "high surrogate without");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"\\ud800\\u0041\"}", &p), SK_EPROTO,
                       "high surrogate without");
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"\xc3\"}", &p), SK_EPROTO, "invalid UTF-8");
    /* Names compare decoded: "a" and "\u0061" are the same name. */
    SK_TEST_ASSERT_ERR(parse("{\"a\":\"x\",\"\\u0061\":\"y\"}", &p), SK_EPROTO, "duplicate name");
    SK_TEST_ASSERT_ERR(parse("{\"a\\u0000\":\"x\"}", &p), SK_EPROTO, "\\u0000");
    SK_TEST_ASSERT_ERR(sk_json_parse_flat_strings((sk_slice){ NULL, 0 }, p.scratch,
                                                  sizeof(p.scratch), p.m, MAX_MEMBERS, &p.n),
                       SK_EPROTO, "expected an object");
    assert_int_equal(p.n, 0);
}

static void test_flat_limits(void **state)
{
    (void)state;
    parsed p;
    char few[64];

    assert_int_equal(parse("{\"1\":\"\",\"2\":\"\",\"3\":\"\",\"4\":\"\",\"5\":\"\",\"6\":\"\","
                           "\"7\":\"\",\"8\":\"\"}",
                           &p),
                     SK_OK);
    assert_int_equal(p.n, MAX_MEMBERS);
    SK_TEST_ASSERT_ERR(parse("{\"1\":\"\",\"2\":\"\",\"3\":\"\",\"4\":\"\",\"5\":\"\",\"6\":\"\","
                             "\"7\":\"\",\"8\":\"\",\"9\":\"\"}",
                             &p),
                       SK_ELIMIT, "more than 8 members");
    /* Scratch must hold the text plus one byte. */
    const char *text = "{\"a\":\"b\"}";
    SK_TEST_ASSERT_ERR(sk_json_parse_flat_strings(sk_slice_from_str(text), few, strlen(text), p.m,
                                                  MAX_MEMBERS, &p.n),
                       SK_EINVAL, "scratch");
    assert_int_equal(sk_json_parse_flat_strings(sk_slice_from_str(text), few, strlen(text) + 1, p.m,
                                                MAX_MEMBERS, &p.n),
                     SK_OK);
    assert_member(&p, 0, "a", "b", 1);
    SK_TEST_ASSERT_ERR(
        sk_json_parse_flat_strings(sk_slice_from_str(text), NULL, 64, p.m, MAX_MEMBERS, &p.n),
        SK_EINVAL, "NULL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_members_in_order),
        cmocka_unit_test(test_flat_escapes),
        cmocka_unit_test(test_flat_refuses),
        cmocka_unit_test(test_flat_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
