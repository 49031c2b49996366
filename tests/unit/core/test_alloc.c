/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/alloc.c: wrappers and the fault-injection hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "core/core_int.h"

static void test_sk_malloc_and_free(void **state)
{
    (void)state;
    char *p = sk_malloc(16);
    assert_non_null(p);
    memset(p, 1, 16);
    sk_free(p);
    p = sk_malloc(0); /* never NULL for size 0 */
    assert_non_null(p);
    sk_free(p);
    sk_free(NULL);
}

static void test_sk_calloc_zeroes_and_checks_overflow(void **state)
{
    (void)state;
    unsigned char *p = sk_calloc(8, 4);
    assert_non_null(p);
    for (int i = 0; i < 32; i++) {
        assert_int_equal(p[i], 0);
    }
    sk_free(p);
    assert_null(sk_calloc(SIZE_MAX / 2, 4));
    p = sk_calloc(0, 0);
    assert_non_null(p);
    sk_free(p);
}

static void test_sk_realloc_grows_and_keeps(void **state)
{
    (void)state;
    char *p = sk_realloc(NULL, 4);
    assert_non_null(p);
    memcpy(p, "abc", 4);
    p = sk_realloc(p, 1000);
    assert_non_null(p);
    assert_string_equal(p, "abc");
    p = sk_realloc(p, 0);
    assert_non_null(p);
    sk_free(p);
}

static void test_sk_strdup_and_strndup(void **state)
{
    (void)state;
    char *s = sk_strdup("hello");
    assert_string_equal(s, "hello");
    sk_free(s);
    s = sk_strndup("hello", 3);
    assert_string_equal(s, "hel");
    sk_free(s);
    s = sk_strndup("hi", 10);
    assert_string_equal(s, "hi");
    sk_free(s);
    s = sk_strndup("hi", 0);
    assert_string_equal(s, "");
    sk_free(s);
    assert_null(sk_strdup(NULL));
    assert_null(sk_strndup(NULL, 3));
}

static void test_sk_asprintf_formats(void **state)
{
    (void)state;
    char *s = sk_asprintf("%s-%d", "a", 7);
    assert_string_equal(s, "a-7");
    sk_free(s);
    s = sk_asprintf("%s", "");
    assert_string_equal(s, "");
    sk_free(s);
}

static void test_sk_test_fail_alloc_at_fails_exactly_once(void **state)
{
    (void)state;
    sk_test_fail_alloc_at(2);
    void *a = sk_malloc(1);
    void *b = sk_calloc(1, 1);
    void *c = sk_malloc(1); /* the third allocation (index 2) fails */
    void *d = sk_realloc(NULL, 1);
    sk_test_fail_alloc_at(-1);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c);
    assert_non_null(d);
    sk_free(a);
    sk_free(b);
    sk_free(d);
}

static void test_sk_test_fail_alloc_at_covers_every_wrapper(void **state)
{
    (void)state;
    sk_test_fail_alloc_at(0);
    assert_null(sk_strdup("x"));
    sk_test_fail_alloc_at(0);
    assert_null(sk_asprintf("%d", 1));
    sk_test_fail_alloc_at(0);
    assert_null(sk_realloc(NULL, 8));
    sk_test_fail_alloc_at(0);
    assert_null(sk_calloc(1, 8));
    sk_test_fail_alloc_at(-1);
    void *p = sk_malloc(1);
    assert_non_null(p);
    sk_free(p);
}

static void test_sk_realloc_failure_keeps_block(void **state)
{
    (void)state;
    char *p = sk_strdup("keep");
    sk_test_fail_alloc_at(0);
    char *q = sk_realloc(p, 4096);
    sk_test_fail_alloc_at(-1);
    assert_null(q);
    assert_string_equal(p, "keep");
    sk_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_malloc_and_free),
        cmocka_unit_test(test_sk_calloc_zeroes_and_checks_overflow),
        cmocka_unit_test(test_sk_realloc_grows_and_keeps),
        cmocka_unit_test(test_sk_strdup_and_strndup),
        cmocka_unit_test(test_sk_asprintf_formats),
        cmocka_unit_test(test_sk_test_fail_alloc_at_fails_exactly_once),
        cmocka_unit_test(test_sk_test_fail_alloc_at_covers_every_wrapper),
        cmocka_unit_test(test_sk_realloc_failure_keeps_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
