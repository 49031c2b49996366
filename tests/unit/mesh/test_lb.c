/* SPDX-License-Identifier: MIT */
/* Unit tests for src/mesh/lb.c: round robin, least request (P2C), random, with a scripted random
 * source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mesh/mesh_int.h"

typedef struct script {
    const uint64_t *v;
    size_t n, i;
} script;

static uint64_t script_rand(void *ctx)
{
    script *s = ctx;
    return s->v[s->i++ % s->n];
}

static void test_sk__lb_pick_round_robin_skips_unusable(void **state)
{
    bool usable[] = { true, false, true };
    uint64_t cursor = 0;
    (void)state;
    assert_int_equal(sk__lb_pick(SK__LB_ROUND_ROBIN, &cursor, usable, NULL, 3, NULL, NULL), 0);
    assert_int_equal(sk__lb_pick(SK__LB_ROUND_ROBIN, &cursor, usable, NULL, 3, NULL, NULL), 2);
    assert_int_equal(sk__lb_pick(SK__LB_ROUND_ROBIN, &cursor, usable, NULL, 3, NULL, NULL), 2);
    assert_int_equal(sk__lb_pick(SK__LB_ROUND_ROBIN, &cursor, usable, NULL, 3, NULL, NULL), 0);
}

static void test_sk__lb_pick_round_robin_even(void **state)
{
    bool usable[] = { true, true, true };
    uint64_t cursor = 0;
    int count[3] = { 0 };
    (void)state;
    for (int i = 0; i < 300; i++) {
        count[sk__lb_pick(SK__LB_ROUND_ROBIN, &cursor, usable, NULL, 3, NULL, NULL)]++;
    }
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 100);
}

static void test_sk__lb_pick_least_request_keeps_less_loaded(void **state)
{
    bool usable[] = { true, true, true };
    uint32_t active[] = { 5, 1, 3 };
    uint64_t seq[] = { 0, 1 }; /* draws hosts 0 and 1 */
    script s = { seq, 2, 0 };
    (void)state;
    assert_int_equal(sk__lb_pick(SK__LB_LEAST_REQUEST, NULL, usable, active, 3, script_rand, &s),
                     1);
    uint64_t seq2[] = { 2, 0 }; /* hosts 2 (3 active) and 0 (5 active) */
    s = (script){ seq2, 2, 0 };
    assert_int_equal(sk__lb_pick(SK__LB_LEAST_REQUEST, NULL, usable, active, 3, script_rand, &s),
                     2);
}

static void test_sk__lb_pick_least_request_only_usable(void **state)
{
    bool usable[] = { false, true, false, true };
    uint32_t active[] = { 0, 7, 0, 2 };
    uint64_t seq[] = { 0, 1 }; /* 0th and 1st usable: hosts 1 and 3 */
    script s = { seq, 2, 0 };
    (void)state;
    assert_int_equal(sk__lb_pick(SK__LB_LEAST_REQUEST, NULL, usable, active, 4, script_rand, &s),
                     3);
}

static void test_sk__lb_pick_least_request_spreads_load(void **state)
{
    bool usable[] = { true, true, true, true };
    uint32_t active[4] = { 0 };
    (void)state;
    /* Requests that never finish: P2C keeps the spread within a couple of requests. */
    for (int i = 0; i < 400; i++) {
        size_t k = sk__lb_pick(SK__LB_LEAST_REQUEST, NULL, usable, active, 4, NULL, NULL);
        assert_true(k < 4);
        active[k]++;
    }
    for (int i = 0; i < 4; i++) {
        assert_in_range(active[i], 90, 110);
    }
}

static void test_sk__lb_pick_random_and_none(void **state)
{
    bool usable[] = { false, true };
    bool none[] = { false, false };
    uint64_t cursor = 0;
    (void)state;
    assert_int_equal(sk__lb_pick(SK__LB_RANDOM, NULL, usable, NULL, 2, NULL, NULL), 1);
    assert_int_equal(sk__lb_pick(SK__LB_RANDOM, NULL, none, NULL, 2, NULL, NULL), SIZE_MAX);
    assert_int_equal(sk__lb_pick(SK__LB_ROUND_ROBIN, &cursor, none, NULL, 2, NULL, NULL), SIZE_MAX);
    assert_int_equal(sk__lb_pick(SK__LB_LEAST_REQUEST, NULL, none, NULL, 2, NULL, NULL), SIZE_MAX);
    assert_int_equal(sk__lb_pick(SK__LB_LEAST_REQUEST, NULL, NULL, NULL, 2, NULL, NULL), SIZE_MAX);
    assert_int_equal(sk__lb_pick(SK__LB_LEAST_REQUEST, NULL, usable, NULL, 0, NULL, NULL),
                     SIZE_MAX);
}

static void test_sk__mesh_rand_default_varies(void **state)
{
    (void)state;
    uint64_t a = sk__mesh_rand_default(NULL);
    uint64_t b = sk__mesh_rand_default(NULL);
    assert_true(a != b);
    assert_true(sk__mesh_clock_default(NULL) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk__lb_pick_round_robin_skips_unusable),
        cmocka_unit_test(test_sk__lb_pick_round_robin_even),
        cmocka_unit_test(test_sk__lb_pick_least_request_keeps_less_loaded),
        cmocka_unit_test(test_sk__lb_pick_least_request_only_usable),
        cmocka_unit_test(test_sk__lb_pick_least_request_spreads_load),
        cmocka_unit_test(test_sk__lb_pick_random_and_none),
        cmocka_unit_test(test_sk__mesh_rand_default_varies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
