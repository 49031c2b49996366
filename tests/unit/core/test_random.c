/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/random.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include <skald/core.h>

#include "sk_test.h"

static void test_sk_random_bytes_fills(void **state)
{
    (void)state;
    uint8_t a[64], b[64], zero[64] = { 0 };
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_int_equal(sk_random_bytes(a, sizeof(a)), SK_OK);
    assert_int_equal(sk_random_bytes(b, sizeof(b)), SK_OK);
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_memory_not_equal(a, b, sizeof(a));
}

static void test_sk_random_bytes_large_and_empty(void **state)
{
    (void)state;
    static uint8_t big[1 << 20];
    assert_int_equal(sk_random_bytes(big, sizeof(big)), SK_OK);
    assert_int_equal(sk_random_bytes(big, 0), SK_OK);
    assert_int_equal(sk_random_bytes(NULL, 0), SK_OK);
}

static void test_sk_random_bytes_null(void **state)
{
    (void)state;
    SK_TEST_ASSERT_ERR(sk_random_bytes(NULL, 4), SK_EINVAL, "out must not be NULL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_random_bytes_fills),
        cmocka_unit_test(test_sk_random_bytes_large_and_empty),
        cmocka_unit_test(test_sk_random_bytes_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
