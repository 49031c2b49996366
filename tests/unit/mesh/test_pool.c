/* SPDX-License-Identifier: MIT */
/* Unit tests for src/mesh/pool.c: maxConnections, http1MaxPendingRequests, overflow, FIFO
 * hand-over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mesh/mesh_int.h"

static void test_sk__pool_admit_limits(void **state)
{
    sk__pool_policy pp = { .max_connections = 2, .max_pending = 1 };
    sk__pool p;
    (void)state;
    sk__pool_init(&p, &pp);
    assert_int_equal(sk__pool_admit(&p), SK__POOL_GO);
    assert_int_equal(sk__pool_admit(&p), SK__POOL_GO);
    assert_int_equal(sk__pool_admit(&p), SK__POOL_QUEUE);
    assert_int_equal(sk__pool_admit(&p), SK__POOL_OVERFLOW);
    assert_int_equal(sk__pool_admit(&p), SK__POOL_OVERFLOW);
    assert_int_equal(p.n_overflows, 2);
    assert_int_equal(p.n_active, 2);
    assert_int_equal(p.n_pending, 1);
}

static void test_sk__pool_release_hands_over(void **state)
{
    sk__pool_policy pp = { .max_connections = 1, .max_pending = 2 };
    sk__pool p;
    (void)state;
    sk__pool_init(&p, &pp);
    assert_int_equal(sk__pool_admit(&p), SK__POOL_GO);
    assert_int_equal(sk__pool_admit(&p), SK__POOL_QUEUE);
    assert_int_equal(sk__pool_admit(&p), SK__POOL_QUEUE);
    assert_true(sk__pool_release(&p)); /* slot passes to the first pending */
    assert_int_equal(p.n_active, 1);
    assert_int_equal(p.n_pending, 1);
    sk__pool_unqueue(&p); /* the second gave up (deadline) */
    assert_int_equal(p.n_pending, 0);
    assert_false(sk__pool_release(&p));
    assert_int_equal(p.n_active, 0);
    assert_false(sk__pool_release(&p)); /* never below zero */
    sk__pool_unqueue(&p);
    assert_int_equal(p.n_pending, 0);
}

static void test_sk__pool_zero_pending_overflows_at_once(void **state)
{
    sk__pool_policy pp = { .max_connections = 1, .max_pending = 0 };
    sk__pool p;
    (void)state;
    sk__pool_init(&p, &pp);
    assert_int_equal(sk__pool_admit(&p), SK__POOL_GO);
    assert_int_equal(sk__pool_admit(&p), SK__POOL_OVERFLOW);
}

static void test_sk__pool_defaults_unlimited(void **state)
{
    sk__pool p;
    (void)state;
    sk__pool_init(&p, NULL);
    assert_int_equal(p.max_active, UINT32_MAX);
    assert_int_equal(p.max_pending, UINT32_MAX);
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(sk__pool_admit(&p), SK__POOL_GO);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk__pool_admit_limits),
        cmocka_unit_test(test_sk__pool_release_hands_over),
        cmocka_unit_test(test_sk__pool_zero_pending_overflows_at_once),
        cmocka_unit_test(test_sk__pool_defaults_unlimited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
