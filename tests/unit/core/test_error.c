/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/error.c: the thread-local error slot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <string.h>

#include "core/core_int.h"

static void test_sk_error_set_stores_message_and_site(void **state)
{
    (void)state;
    sk_error_clear();
    int line = __LINE__ + 1;
    sk_status st = SK_FAIL(SK_EPROTO, "field %s: bad %d", "x", 42);
    assert_int_equal(st, SK_EPROTO);
    assert_int_equal(sk_error_status(), SK_EPROTO);
    assert_string_equal(sk_error_message(), "field x: bad 42");
    assert_non_null(strstr(sk__error_file(), "test_error.c"));
    assert_int_equal(sk__error_line(), line);
}

static void test_sk_error_wrap_prefixes_context(void **state)
{
    (void)state;
    SK_IGNORE(SK_FAIL(SK_EIO, "read failed"));
    sk_status st = SK_WRAP(SK_EIO, "loading %s", "a.yaml");
    assert_int_equal(st, SK_EIO);
    assert_string_equal(sk_error_message(), "loading a.yaml: read failed");
    st = SK_WRAP(SK_EPROTO, "outer");
    assert_int_equal(sk_error_status(), SK_EPROTO);
    assert_string_equal(sk_error_message(), "outer: loading a.yaml: read failed");
}

static void test_sk_error_wrap_without_message(void **state)
{
    (void)state;
    sk_error_clear();
    assert_int_equal(SK_WRAP(SK_EIO, "ctx"), SK_EIO);
    assert_string_equal(sk_error_message(), "ctx");
}

static void test_sk_error_set_truncates_long_message(void **state)
{
    (void)state;
    char big[3000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    SK_IGNORE(SK_FAIL(SK_EPROTO, "%s", big));
    assert_int_equal(strlen(sk_error_message()), SK__ERROR_MAX - 1);
    SK_IGNORE(SK_WRAP(SK_EPROTO, "%s", big));
    assert_int_equal(strlen(sk_error_message()), SK__ERROR_MAX - 1);
}

static void test_sk_error_truncation_keeps_utf8_whole(void **state)
{
    (void)state;
    char big[SK__ERROR_MAX + 8];
    /* 1022 'a' then a 3-byte character straddling the end of the buffer. */
    memset(big, 'a', SK__ERROR_MAX - 2);
    memcpy(big + SK__ERROR_MAX - 2, "\xe2\x82\xac", 4);
    SK_IGNORE(SK_FAIL(SK_EPROTO, "%s", big));
    assert_int_equal(strlen(sk_error_message()), SK__ERROR_MAX - 2);
    sk_slice s = sk_slice_from_str(sk_error_message());
    assert_true(sk__utf8_is_valid(s, NULL));
}

static void test_sk_error_clear_resets(void **state)
{
    (void)state;
    SK_IGNORE(SK_FAIL(SK_EIO, "x"));
    sk_error_clear();
    assert_int_equal(sk_error_status(), SK_OK);
    assert_string_equal(sk_error_message(), "");
    assert_string_equal(sk__error_file(), "");
    assert_int_equal(sk__error_line(), 0);
}

static void test_sk_error_set_null_format(void **state)
{
    (void)state;
    assert_int_equal(sk_error_set(SK_EIO, NULL, 0, NULL), SK_EIO);
    assert_string_equal(sk_error_message(), "");
    assert_string_equal(sk__error_file(), "");
}

static void *other_thread(void *arg)
{
    (void)arg;
    SK_IGNORE(SK_FAIL(SK_EBUS, "from another thread"));
    return NULL;
}

static void test_sk_error_is_thread_local(void **state)
{
    (void)state;
    pthread_t t;
    SK_IGNORE(SK_FAIL(SK_EIO, "mine"));
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_string_equal(sk_error_message(), "mine");
    assert_int_equal(sk_error_status(), SK_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_error_set_stores_message_and_site),
        cmocka_unit_test(test_sk_error_wrap_prefixes_context),
        cmocka_unit_test(test_sk_error_wrap_without_message),
        cmocka_unit_test(test_sk_error_set_truncates_long_message),
        cmocka_unit_test(test_sk_error_truncation_keeps_utf8_whole),
        cmocka_unit_test(test_sk_error_clear_resets),
        cmocka_unit_test(test_sk_error_set_null_format),
        cmocka_unit_test(test_sk_error_is_thread_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
