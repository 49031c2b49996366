/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/utf8.c: strict decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/core_int.h"

static size_t dec(const char *s, size_t len, uint32_t *cp)
{
    return sk__utf8_decode((const uint8_t *)s, len, cp);
}

static void test_sk__utf8_decode_valid(void **state)
{
    (void)state;
    uint32_t cp = 0;
    assert_int_equal(dec("A", 1, &cp), 1);
    assert_int_equal(cp, 'A');
    assert_int_equal(dec("\xc3\xa9", 2, &cp), 2);
    assert_int_equal(cp, 0xE9);
    assert_int_equal(dec("\xe2\x82\xac", 3, &cp), 3);
    assert_int_equal(cp, 0x20AC);
    assert_int_equal(dec("\xf0\x9f\x98\x80", 4, &cp), 4);
    assert_int_equal(cp, 0x1F600);
    assert_int_equal(dec("\xf4\x8f\xbf\xbf", 4, NULL), 4); /* U+10FFFF */
}

static void test_sk__utf8_decode_invalid(void **state)
{
    (void)state;
    assert_int_equal(dec("\x80", 1, NULL), 0);             /* continuation */
    assert_int_equal(dec("\xc0\x80", 2, NULL), 0);         /* overlong NUL */
    assert_int_equal(dec("\xe0\x80\xaf", 3, NULL), 0);     /* overlong */
    assert_int_equal(dec("\xed\xa0\x80", 3, NULL), 0);     /* surrogate */
    assert_int_equal(dec("\xf4\x90\x80\x80", 4, NULL), 0); /* > U+10FFFF */
    assert_int_equal(dec("\xe2\x82", 2, NULL), 0);         /* truncated */
    assert_int_equal(dec("\xe2\x28\xac", 3, NULL), 0);     /* bad continuation */
    assert_int_equal(dec("\xff", 1, NULL), 0);
    assert_int_equal(dec(NULL, 1, NULL), 0);
    assert_int_equal(dec("a", 0, NULL), 0);
}

static void test_sk__utf8_is_valid(void **state)
{
    (void)state;
    size_t off = 99;
    assert_true(sk__utf8_is_valid(sk_slice_from_str("plain caf\xc3\xa9"), &off));
    assert_false(sk__utf8_is_valid(sk_slice_from_str("ab\xc3"), &off));
    assert_int_equal(off, 2);
    sk_slice empty = { NULL, 0 };
    assert_true(sk__utf8_is_valid(empty, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk__utf8_decode_valid),
        cmocka_unit_test(test_sk__utf8_decode_invalid),
        cmocka_unit_test(test_sk__utf8_is_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
