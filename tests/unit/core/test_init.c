/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/init.c: environment and jansson allocator routing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"
#include "sk_test.h"

static int teardown(void **state)
{
    (void)state;
    unsetenv("SK_LOG_LEVEL");
    unsetenv("SK_LOG_FORMAT");
    sk__log_set_stream(NULL);
    sk_shutdown();
    return 0;
}

static void test_sk_init_defaults(void **state)
{
    (void)state;
    unsetenv("SK_LOG_LEVEL");
    unsetenv("SK_LOG_FORMAT");
    assert_int_equal(sk_init(NULL), SK_OK);
    assert_int_equal(sk_log_level_current, SK_LOG_LEVEL_INFO);
    FILE *f = tmpfile();
    char line[256] = { 0 };
    sk__log_set_stream(f);
    sk_log_write(SK_LOG_LEVEL_INFO, "m", "x");
    rewind(f);
    assert_non_null(fgets(line, sizeof(line), f));
    assert_non_null(strstr(line, " INFO skald m x"));
    sk__log_set_stream(NULL);
    fclose(f);
}

static void test_sk_init_reads_env(void **state)
{
    (void)state;
    setenv("SK_LOG_LEVEL", "debug", 1);
    setenv("SK_LOG_FORMAT", "json", 1);
    assert_int_equal(sk_init("order"), SK_OK);
    assert_int_equal(sk_log_level_current, SK_LOG_LEVEL_DEBUG);
    FILE *f = tmpfile();
    char line[256] = { 0 };
    sk__log_set_stream(f);
    sk_log_write(SK_LOG_LEVEL_DEBUG, "m", "x");
    rewind(f);
    assert_non_null(fgets(line, sizeof(line), f));
    assert_non_null(strstr(line, "\"level\":\"debug\",\"service\":\"order\""));
    sk__log_set_stream(NULL);
    fclose(f);
    setenv("SK_LOG_LEVEL", "error", 1);
    setenv("SK_LOG_FORMAT", "text", 1);
    assert_int_equal(sk_init("order"), SK_OK);
    assert_int_equal(sk_log_level_current, SK_LOG_LEVEL_ERROR);
}

static void test_sk_init_rejects_bad_env(void **state)
{
    (void)state;
    setenv("SK_LOG_LEVEL", "loud", 1);
    SK_TEST_ASSERT_ERR(sk_init("x"), SK_EINVAL,
                       "SK_LOG_LEVEL: expected error, warn, info or debug, got \"loud\"");
    unsetenv("SK_LOG_LEVEL");
    setenv("SK_LOG_FORMAT", "xml", 1);
    SK_TEST_ASSERT_ERR(sk_init("x"), SK_EINVAL, "SK_LOG_FORMAT: expected text or json");
}

static void test_sk_init_rejects_bad_service(void **state)
{
    (void)state;
    char long_name[80];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    SK_TEST_ASSERT_ERR(sk_init(""), SK_EINVAL, "service must be 1..63 bytes");
    SK_TEST_ASSERT_ERR(sk_init(long_name), SK_EINVAL, "service must be 1..63 bytes");
    SK_TEST_ASSERT_ERR(sk_init("a b"), SK_EINVAL, "control characters");
    SK_TEST_ASSERT_ERR(sk_init("a\nb"), SK_EINVAL, "control characters");
}

static void test_sk_init_routes_jansson_allocations(void **state)
{
    (void)state;
    assert_int_equal(sk_init("t"), SK_OK);
    sk_test_fail_alloc_at(0);
    json_t *v = json_string("routed through sk_malloc");
    sk_test_fail_alloc_at(-1);
    assert_null(v);
}

static void test_sk_shutdown_without_init(void **state)
{
    (void)state;
    sk_shutdown();
    sk_shutdown();
    assert_int_equal(sk_log_level_current, SK_LOG_LEVEL_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sk_init_defaults, teardown),
        cmocka_unit_test_teardown(test_sk_init_reads_env, teardown),
        cmocka_unit_test_teardown(test_sk_init_rejects_bad_env, teardown),
        cmocka_unit_test_teardown(test_sk_init_rejects_bad_service, teardown),
        cmocka_unit_test_teardown(test_sk_init_routes_jansson_allocations, teardown),
        cmocka_unit_test_teardown(test_sk_shutdown_without_init, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
