/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/text.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/core_int.h"

static void test_sk_name_is_valid(void **state)
{
    (void)state;
    assert_true(sk_name_is_valid("ORDER_EVENTS", 64));
    assert_true(sk_name_is_valid("consumer-inventory-commands", 64));
    assert_true(sk_name_is_valid("a", 1));
    assert_true(sk_name_is_valid("abcd", 4));
    assert_false(sk_name_is_valid("abcde", 4)); /* one byte too long */
    assert_false(sk_name_is_valid("", 64));
    assert_false(sk_name_is_valid(NULL, 64));
    assert_false(sk_name_is_valid("a b", 64));
    assert_false(sk_name_is_valid("a.b", 64));
    assert_false(sk_name_is_valid("a/b", 64));
    assert_false(sk_name_is_valid("caf\xc3\xa9", 64));
}

static void test_sk_hash_text(void **state)
{
    (void)state;
    /* FNV-1a 64 reference values. */
    assert_true(sk_hash_text("") == 0xcbf29ce484222325ULL);
    assert_true(sk_hash_text("a") == 0xaf63dc4c8601ec8cULL);
    assert_true(sk_hash_text("foobar") == 0x85944171f73967e8ULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_name_is_valid),
        cmocka_unit_test(test_sk_hash_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
