/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/json_dump.c: the same text as jansson's compact dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "core/core_int.h"
#include "sk_test.h"

/* sk_json_dumps(@p v) is jansson's compact text of @p v; takes @p v. */
static void assert_as_jansson(json_t *v)
{
    char *ours;
    char *theirs;

    assert_non_null(v);
    ours = sk_json_dumps(v);
    theirs = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(ours);
    assert_non_null(theirs);
    assert_string_equal(ours, theirs);
    sk_free(ours);
    sk_free(theirs); /* jansson allocates with sk_malloc (sk_init) */
    json_decref(v);
}

static void test_scalars(void **state)
{
    (void)state;
    assert_as_jansson(json_true());
    assert_as_jansson(json_false());
    assert_as_jansson(json_null());
    assert_as_jansson(json_integer(0));
    assert_as_jansson(json_integer(-7));
    assert_as_jansson(json_integer(INT64_MAX));
    assert_as_jansson(json_integer(INT64_MIN));
    assert_as_jansson(json_real(1.5));
    assert_as_jansson(json_real(-0.0));
    assert_as_jansson(json_real(3.0));
    assert_as_jansson(json_real(1e300));
    assert_as_jansson(json_real(-2.5e-300));
    assert_as_jansson(json_real(0.1));
    assert_as_jansson(json_string(""));
}

static void test_strings_escaped_as_jansson_does(void **state)
{
    (void)state;
    char every_control[33];
    for (int i = 1; i < 32; i++) {
        every_control[i - 1] = (char)i;
    }
    every_control[31] = 'x';
    every_control[32] = '\0';
    assert_as_jansson(json_string(every_control));
    assert_as_jansson(json_string("quote \" backslash \\ slash / tab \t end"));
    assert_as_jansson(json_string("Ünïcödé ✓ and 🎉, \x7f kept as it is"));
    assert_as_jansson(json_stringn("nul\0inside", 10));
    /* Longer than one chunk, escapes on both sides of its border. */
    char long_text[1200];
    for (size_t i = 0; i < sizeof(long_text) - 1; i++) {
        long_text[i] = i % 97 == 0 ? '\n' : i % 89 == 0 ? '"' : (char)('a' + i % 26);
    }
    long_text[sizeof(long_text) - 1] = '\0';
    assert_as_jansson(json_string(long_text));
}

static void test_containers_in_member_order(void **state)
{
    (void)state;
    assert_as_jansson(json_object());
    assert_as_jansson(json_array());
    assert_as_jansson(json_pack("{s:i,s:s,s:[i,{},[]],s:{s:n,s:b},s:f}", "zeta", 1, "alpha", "x",
                                "list", 2, "obj", "k", "t", 1, "real", 2.25));
    json_t *o = json_object();
    assert_int_equal(json_object_setn_new(o, "key\0with nul", 12, json_integer(1)), 0);
    assert_int_equal(json_object_set_new(o, "ключ\n", json_string("значение")), 0);
    assert_as_jansson(o);
    json_t *deep = json_array();
    json_t *at = deep;
    for (int i = 0; i < 40; i++) {
        json_t *inner = json_array();
        assert_int_equal(json_array_append_new(at, inner), 0);
        at = inner;
    }
    assert_as_jansson(deep);
}

static void test_invalid_utf8_refused(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:o}", "k", json_stringn_nocheck("bad \xc3\x28 text", 10));
    sk_buf b;
    sk_buf_init(&b, 1024);
    assert_int_equal(sk_buf_append_str(&b, "keep"), SK_OK);
    SK_TEST_ASSERT_ERR(sk_json_dump(o, &b), SK_EPROTO, "not valid UTF-8");
    assert_string_equal(b.data, "keep");
    assert_null(json_dumps(o, JSON_COMPACT)); /* jansson refuses it too */
    sk_buf_fini(&b);
    json_decref(o);
}

static void test_invalid_utf8_key_refused(void **state)
{
    (void)state;
    json_t *o = json_object();
    assert_int_equal(json_object_setn_new_nocheck(o, "k\xff", 2, json_true()), 0);
    sk_buf b;
    sk_buf_init(&b, 1024);
    /* jansson would write {"k<0xff>":true}, which no parser accepts. */
    SK_TEST_ASSERT_ERR(sk_json_dump(o, &b), SK_EPROTO, "not valid UTF-8");
    assert_int_equal(b.len, 0);
    sk_buf_fini(&b);
    json_decref(o);
}

static void test_limit_counts_the_text_not_the_worst_case(void **state)
{
    (void)state;
    json_t *s = json_string("0123456789012345678901234567890123456789");
    sk_buf b;
    sk_buf_init(&b, 42); /* the 40 characters and their quotes, no more */
    assert_int_equal(sk_json_dump(s, &b), SK_OK);
    assert_int_equal(b.len, 42);
    sk_buf_reset(&b);
    json_t *escaped = json_string("\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\x01");
    SK_TEST_ASSERT_ERR(sk_json_dump(escaped, &b), SK_ELIMIT, "limit");
    assert_int_equal(b.len, 0);
    sk_buf_fini(&b);
    json_decref(s);
    json_decref(escaped);
}

static void test_a_tree_that_contains_itself_fails(void **state)
{
    (void)state;
    json_t *a = json_array();
    json_t *b = json_array();
    /* json_array_append refuses an array in itself, not one two levels down. */
    assert_int_equal(json_array_append(a, b), 0);
    assert_int_equal(json_array_append(b, a), 0);
    char *s = sk_json_dumps(a);
    assert_null(s);
    assert_int_equal(sk_error_status(), SK_ELIMIT);
    assert_null(json_dumps(a, JSON_COMPACT)); /* jansson's dump refuses it too */
    json_array_clear(b); /* break the cycle so both can be freed */
    json_decref(b);
    json_decref(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_strings_escaped_as_jansson_does),
        cmocka_unit_test(test_containers_in_member_order),
        cmocka_unit_test(test_invalid_utf8_refused),
        cmocka_unit_test(test_invalid_utf8_key_refused),
        cmocka_unit_test(test_limit_counts_the_text_not_the_worst_case),
        cmocka_unit_test(test_a_tree_that_contains_itself_fails),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
