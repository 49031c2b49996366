/* SPDX-License-Identifier: MIT */
/* Unit tests for src/mesh/timer.c: order, cancel, destroy with pending timers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>

#include "mesh/mesh_int.h"
#include "sk_test.h"

typedef struct rec {
    _Atomic int n;
    _Atomic int n_canceled;
    int order[8];
} rec;

typedef struct tctx {
    rec *r;
    int tag;
} tctx;

static void on_timer(void *ctx, bool is_canceled)
{
    tctx *c = ctx;
    if (is_canceled) {
        atomic_fetch_add(&c->r->n_canceled, 1);
        return;
    }
    int k = atomic_fetch_add(&c->r->n, 1);
    if (k < 8) {
        c->r->order[k] = c->tag;
    }
}

static void noop_timer(void *ctx, bool is_canceled)
{
    (void)ctx;
    (void)is_canceled;
}

static bool reached3(void *ctx)
{
    return atomic_load(&((rec *)ctx)->n) >= 3;
}

static void test_sk__timers_order_and_cancel(void **state)
{
    sk__timers *t = NULL;
    rec r = { 0 };
    tctx a = { &r, 1 }, b = { &r, 2 }, c = { &r, 3 }, d = { &r, 4 };
    uint64_t id_d = 0;
    int64_t now = sk_time_mono_ms();
    (void)state;
    assert_int_equal(sk__timers_create(&t), SK_OK);
    assert_int_equal(sk__timers_add(t, now + 60, on_timer, &c, NULL), SK_OK);
    assert_int_equal(sk__timers_add(t, now + 20, on_timer, &a, NULL), SK_OK);
    assert_int_equal(sk__timers_add(t, now + 40, on_timer, &b, NULL), SK_OK);
    assert_int_equal(sk__timers_add(t, now + 30, on_timer, &d, &id_d), SK_OK);
    assert_true(sk__timers_cancel(t, id_d));
    assert_false(sk__timers_cancel(t, id_d));
    assert_false(sk__timers_cancel(t, 0));
    assert_true(sk_test_wait_until(reached3, &r, 5000));
    assert_int_equal(r.order[0], 1);
    assert_int_equal(r.order[1], 2);
    assert_int_equal(r.order[2], 3);
    sk__timers_destroy(t);
    assert_int_equal(atomic_load(&r.n), 3);
}

static void test_sk__timers_destroy_runs_pending_canceled(void **state)
{
    sk__timers *t = NULL;
    rec r = { 0 };
    tctx a = { &r, 1 };
    (void)state;
    assert_int_equal(sk__timers_create(&t), SK_OK);
    assert_int_equal(sk__timers_add(t, sk_time_mono_ms() + 600000, on_timer, &a, NULL), SK_OK);
    assert_int_equal(sk__timers_add(t, sk_time_mono_ms() + 600000, on_timer, &a, NULL), SK_OK);
    sk__timers_destroy(t);
    assert_int_equal(atomic_load(&r.n_canceled), 2);
    assert_int_equal(atomic_load(&r.n), 0);
    sk__timers_destroy(NULL);
}

static void test_sk__timers_errors(void **state)
{
    sk__timers *t = NULL;
    (void)state;
    SK_TEST_ASSERT_ERR(sk__timers_create(NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk__timers_add(NULL, 0, on_timer, NULL, NULL), SK_EINVAL,
                       "must not be NULL");
    assert_int_equal(sk__timers_create(&t), SK_OK);
    SK_TEST_ASSERT_ERR(sk__timers_add(t, 0, NULL, NULL, NULL), SK_EINVAL, "must not be NULL");
    assert_false(sk__timers_cancel(NULL, 1));
    for (long n = 0;; n++) {
        sk_test_fail_alloc_at(n);
        sk_status st = sk__timers_add(t, sk_time_mono_ms() + 600000, noop_timer, NULL, NULL);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
    }
    rec r = { 0 };
    tctx a = { &r, 1 };
    uint64_t id = 0;
    assert_int_equal(sk__timers_add(t, sk_time_mono_ms() + 600000, on_timer, &a, &id), SK_OK);
    sk__timers_destroy(t);
    assert_int_equal(atomic_load(&r.n_canceled), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk__timers_order_and_cancel),
        cmocka_unit_test(test_sk__timers_destroy_runs_pending_canceled),
        cmocka_unit_test(test_sk__timers_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
