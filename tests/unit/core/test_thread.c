/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/thread.c: thread names. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <skald/core.h>

static void *named_main(void *arg)
{
    char *out = arg;

    sk_thread_name(out);
    sk_thread_name_get(out);
    return NULL;
}

/* @p out (64 bytes) carries the name in and the name read back out. */
static void name_in_thread(const char *name, char *out)
{
    pthread_t t;

    strcpy(out, name);
    assert_int_equal(pthread_create(&t, NULL, named_main, out), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

static void test_sk_thread_name_sets_the_name(void **state)
{
    char got[64];

    (void)state;
    name_in_thread("sk-writer", got);
    assert_string_equal(got, "sk-writer");
}

static void test_sk_thread_name_cuts_long_names(void **state)
{
    char got[64];

    (void)state;
    name_in_thread("sk-a-very-long-thread-name", got);
    assert_string_equal(got, "sk-a-very-long-");
}

static void test_sk_thread_name_null_is_ignored(void **state)
{
    (void)state;
    sk_thread_name(NULL); /* must not crash */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_thread_name_sets_the_name),
        cmocka_unit_test(test_sk_thread_name_cuts_long_names),
        cmocka_unit_test(test_sk_thread_name_null_is_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
