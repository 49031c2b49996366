/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/hex.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/core_int.h"

static void test_sk_hex_value(void **state)
{
    (void)state;
    const char *digits = "0123456789abcdef";
    const char *upper = "0123456789ABCDEF";

    for (int i = 0; i < 16; i++) {
        assert_int_equal(sk_hex_value(digits[i]), i);
        assert_int_equal(sk_hex_value(upper[i]), i);
    }
    for (int c = -1; c < 256; c++) {
        bool is_hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!is_hex) {
            assert_int_equal(sk_hex_value(c), -1);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_hex_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
