/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/status.c: names and texts of every status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include <skald/status.h>

static void test_sk_status_name_known(void **state)
{
    (void)state;
    assert_string_equal(sk_status_name(SK_OK), "OK");
    assert_string_equal(sk_status_name(SK_EINVAL), "EINVAL");
    assert_string_equal(sk_status_name(SK_ECANCELED), "ECANCELED");
}

static void test_sk_status_text_known(void **state)
{
    (void)state;
    assert_string_equal(sk_status_text(SK_OK), "success");
    assert_string_equal(sk_status_text(SK_ENOMEM), "out of memory");
    assert_string_equal(sk_status_text(SK_EDENIED), "permission denied");
}

static void test_sk_status_every_code_has_text(void **state)
{
    (void)state;
    for (int i = 0; i < SK_STATUS_COUNT_; i++) {
        assert_non_null(sk_status_name((sk_status)i));
        assert_true(strlen(sk_status_text((sk_status)i)) > 0);
        assert_string_not_equal(sk_status_name((sk_status)i), "EUNKNOWN");
    }
}

static void test_sk_status_out_of_range(void **state)
{
    (void)state;
    assert_string_equal(sk_status_name(SK_STATUS_COUNT_), "EUNKNOWN");
    assert_string_equal(sk_status_name((sk_status)-1), "EUNKNOWN");
    assert_string_equal(sk_status_text((sk_status)1000), "unknown status");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_status_name_known),
        cmocka_unit_test(test_sk_status_text_known),
        cmocka_unit_test(test_sk_status_every_code_has_text),
        cmocka_unit_test(test_sk_status_out_of_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
