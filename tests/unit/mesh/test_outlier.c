/* SPDX-License-Identifier: MIT */
/* Unit tests for src/mesh/outlier.c with an injected clock (time is an argument): one per table
 * row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "mesh/mesh_int.h"

#define N_HOSTS 10

typedef struct world {
    sk__outlier o;
    sk__outlier_host h[N_HOSTS];
    sk__outlier_host *v[N_HOSTS];
    size_t n;
} world;

static void world_init(world *w, size_t n, sk__outlier_policy p)
{
    memset(w, 0, sizeof(*w));
    p.is_enabled = true;
    if (p.interval_ms == 0) {
        p.interval_ms = 10000;
    }
    if (p.base_ejection_ms == 0) {
        p.base_ejection_ms = 30000;
    }
    if (p.max_ejection_ms == 0) {
        p.max_ejection_ms = 300000;
    }
    sk__outlier_init(&w->o, &p, 0);
    w->n = n;
    for (size_t i = 0; i < n; i++) {
        w->v[i] = &w->h[i];
    }
}

static bool rec(world *w, size_t i, sk__outcome oc, int64_t now)
{
    return sk__outlier_record(&w->o, w->v, w->n, i, oc, now);
}

static void test_consecutive_5xx_ejects_after_exactly_n(void **state)
{
    world w;
    (void)state;
    world_init(&w, 2, (sk__outlier_policy){ .consecutive_5xx = 3, .max_ejection_percent = 100 });
    assert_false(rec(&w, 0, SK__OUTCOME_5XX, 1));
    assert_false(rec(&w, 0, SK__OUTCOME_5XX, 2));
    assert_true(rec(&w, 0, SK__OUTCOME_5XX, 3));
    assert_true(w.h[0].is_ejected);
    assert_int_equal(w.h[0].ejected_until_ms, 3 + 30000);
    assert_int_equal(sk__outlier_n_ejected(w.v, w.n), 1);
}

static void test_success_and_4xx_reset_the_streak(void **state)
{
    world w;
    (void)state;
    world_init(&w, 2, (sk__outlier_policy){ .consecutive_5xx = 2, .max_ejection_percent = 100 });
    assert_false(rec(&w, 0, SK__OUTCOME_5XX, 1));
    assert_int_equal(sk__outcome_of(SK_OK, 429), SK__OUTCOME_SUCCESS); /* 4xx never a failure */
    assert_false(rec(&w, 0, sk__outcome_of(SK_OK, 404), 2));
    assert_false(rec(&w, 0, SK__OUTCOME_5XX, 3));
    assert_false(w.h[0].is_ejected);
    assert_false(rec(&w, 0, SK__OUTCOME_IGNORED, 4)); /* canceled: neither counts nor resets */
    assert_true(rec(&w, 0, SK__OUTCOME_5XX, 5));
}

static void test_gateway_errors_count_separately(void **state)
{
    world w;
    (void)state;
    world_init(&w, 2,
               (sk__outlier_policy){
                   .consecutive_5xx = 0, .consecutive_gateway = 2, .max_ejection_percent = 100 });
    assert_int_equal(sk__outcome_of(SK_OK, 500), SK__OUTCOME_5XX);
    assert_int_equal(sk__outcome_of(SK_OK, 503), SK__OUTCOME_GATEWAY);
    assert_int_equal(sk__outcome_of(SK_EUNAVAILABLE, 0), SK__OUTCOME_GATEWAY);
    assert_int_equal(sk__outcome_of(SK_ETIMEDOUT, 0), SK__OUTCOME_GATEWAY);
    assert_int_equal(sk__outcome_of(SK_ECANCELED, 0), SK__OUTCOME_IGNORED);
    assert_false(rec(&w, 0, SK__OUTCOME_GATEWAY, 1));
    assert_false(rec(&w, 0, SK__OUTCOME_5XX, 2)); /* a 500 breaks the gateway streak */
    assert_false(rec(&w, 0, SK__OUTCOME_GATEWAY, 3));
    assert_true(rec(&w, 0, SK__OUTCOME_GATEWAY, 4));
}

static void test_gateway_errors_also_count_as_5xx(void **state)
{
    world w;
    (void)state;
    world_init(&w, 2, (sk__outlier_policy){ .consecutive_5xx = 3, .max_ejection_percent = 100 });
    assert_false(rec(&w, 1, SK__OUTCOME_GATEWAY, 1));
    assert_false(rec(&w, 1, SK__OUTCOME_5XX, 2));
    assert_true(rec(&w, 1, SK__OUTCOME_GATEWAY, 3));
}

static void test_sweep_returns_host_after_base_ejection_time(void **state)
{
    world w;
    (void)state;
    world_init(&w, 2,
               (sk__outlier_policy){ .consecutive_5xx = 1,
                                     .interval_ms = 1000,
                                     .base_ejection_ms = 5000,
                                     .max_ejection_percent = 100 });
    assert_true(rec(&w, 0, SK__OUTCOME_5XX, 0));
    assert_int_equal(sk__outlier_sweep(&w.o, w.v, w.n, 999), 0); /* not due yet */
    assert_int_equal(sk__outlier_sweep(&w.o, w.v, w.n, 4000), 0);
    assert_true(w.h[0].is_ejected);
    assert_int_equal(sk__outlier_sweep(&w.o, w.v, w.n, 5000), 1);
    assert_false(w.h[0].is_ejected);
    assert_int_equal(sk__outlier_sweep(&w.o, w.v, w.n, 5500), 0); /* next sweep at 6000 */
}

static void test_ejection_time_grows_with_ejections_and_is_capped(void **state)
{
    world w;
    int64_t t = 0;
    (void)state;
    world_init(&w, 2,
               (sk__outlier_policy){ .consecutive_5xx = 1,
                                     .interval_ms = 1000,
                                     .base_ejection_ms = 10000,
                                     .max_ejection_ms = 25000,
                                     .max_ejection_percent = 100 });
    assert_true(rec(&w, 0, SK__OUTCOME_5XX, t));
    assert_int_equal(w.h[0].ejected_until_ms - t, 10000);
    t = 10000;
    assert_int_equal(sk__outlier_sweep(&w.o, w.v, w.n, t), 1);
    assert_true(rec(&w, 0, SK__OUTCOME_5XX, t));
    assert_int_equal(w.h[0].ejected_until_ms - t, 20000); /* 2 x base */
    t = 30000;
    assert_int_equal(sk__outlier_sweep(&w.o, w.v, w.n, t), 1);
    assert_true(rec(&w, 0, SK__OUTCOME_5XX, t));
    assert_int_equal(w.h[0].ejected_until_ms - t, 25000); /* 3 x base capped */
}

static void test_multiplier_decreases_after_healthy_base_time(void **state)
{
    world w;
    (void)state;
    world_init(&w, 2,
               (sk__outlier_policy){ .consecutive_5xx = 1,
                                     .interval_ms = 1000,
                                     .base_ejection_ms = 2000,
                                     .max_ejection_percent = 100 });
    assert_true(rec(&w, 0, SK__OUTCOME_5XX, 0));
    assert_int_equal(sk__outlier_sweep(&w.o, w.v, w.n, 2000), 1);
    assert_int_equal(w.h[0].n_ejections, 1);
    SK_IGNORE(sk__outlier_sweep(&w.o, w.v, w.n, 3000)); /* back for 1 s < base: kept */
    assert_int_equal(w.h[0].n_ejections, 1);
    SK_IGNORE(sk__outlier_sweep(&w.o, w.v, w.n, 4000)); /* back for a base time: lowered */
    assert_int_equal(w.h[0].n_ejections, 0);
}

static void test_max_ejection_percent_honoured(void **state)
{
    world w;
    (void)state;
    world_init(&w, 4, (sk__outlier_policy){ .consecutive_5xx = 1, .max_ejection_percent = 50 });
    assert_true(rec(&w, 0, SK__OUTCOME_5XX, 1));
    assert_true(rec(&w, 1, SK__OUTCOME_5XX, 1));  /* 2/4 = 50 % */
    assert_false(rec(&w, 2, SK__OUTCOME_5XX, 1)); /* 3/4 > 50 % */
    assert_int_equal(sk__outlier_n_ejected(w.v, w.n), 2);
}

static void test_at_least_one_host_even_when_percent_rounds_to_zero(void **state)
{
    world w;
    (void)state;
    world_init(&w, 3, (sk__outlier_policy){ .consecutive_5xx = 1, .max_ejection_percent = 10 });
    assert_true(rec(&w, 0, SK__OUTCOME_5XX, 1)); /* 1/3 > 10 %, but one host can always go */
    assert_false(rec(&w, 1, SK__OUTCOME_5XX, 1));
    world_init(&w, 3, (sk__outlier_policy){ .consecutive_5xx = 1, .max_ejection_percent = 0 });
    assert_true(rec(&w, 2, SK__OUTCOME_5XX, 1));
}

static void test_min_health_percent_panic(void **state)
{
    world w;
    (void)state;
    world_init(&w, 4,
               (sk__outlier_policy){
                   .consecutive_5xx = 1, .max_ejection_percent = 100, .min_health_percent = 60 });
    assert_false(sk__outlier_is_panic(&w.o, w.v, w.n));
    assert_true(rec(&w, 0, SK__OUTCOME_5XX, 1)); /* 75 % healthy */
    assert_false(sk__outlier_is_panic(&w.o, w.v, w.n));
    assert_true(rec(&w, 1, SK__OUTCOME_5XX, 1)); /* 50 % < 60 %: panic */
    assert_true(sk__outlier_is_panic(&w.o, w.v, w.n));
    w.o.p.min_health_percent = 0; /* 0 disables panic mode (Istio's default) */
    assert_false(sk__outlier_is_panic(&w.o, w.v, w.n));
}

static void test_disabled_detector_does_nothing(void **state)
{
    world w;
    (void)state;
    world_init(&w, 2, (sk__outlier_policy){ .consecutive_5xx = 1, .max_ejection_percent = 100 });
    w.o.p.is_enabled = false;
    assert_false(rec(&w, 0, SK__OUTCOME_5XX, 1));
    assert_int_equal(sk__outlier_sweep(&w.o, w.v, w.n, 1000000), 0);
    assert_false(sk__outlier_record(&w.o, NULL, 0, 0, SK__OUTCOME_5XX, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consecutive_5xx_ejects_after_exactly_n),
        cmocka_unit_test(test_success_and_4xx_reset_the_streak),
        cmocka_unit_test(test_gateway_errors_count_separately),
        cmocka_unit_test(test_gateway_errors_also_count_as_5xx),
        cmocka_unit_test(test_sweep_returns_host_after_base_ejection_time),
        cmocka_unit_test(test_ejection_time_grows_with_ejections_and_is_capped),
        cmocka_unit_test(test_multiplier_decreases_after_healthy_base_time),
        cmocka_unit_test(test_max_ejection_percent_honoured),
        cmocka_unit_test(test_at_least_one_host_even_when_percent_rounds_to_zero),
        cmocka_unit_test(test_min_health_percent_panic),
        cmocka_unit_test(test_disabled_detector_does_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
