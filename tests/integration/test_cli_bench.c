/* SPDX-License-Identifier: MIT */
/*
 * `skald bench` without a system: argument parsing (defaults, every option,
 * each usage error naming its option), exact nearest-rank percentiles, the
 * open-loop schedule (due times from the index, never waiting for earlier
 * sends), the --find-max steps and verdict, and the size of the seed.
 */
/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sk_test.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static sk_status parse(cli_bench_opts *o, int argc, const char *const *argv)
{
    return cli_bench_args_parse(argc, (char **)(uintptr_t)argv, o);
}

static void test_cli_bench_args_parse_defaults(void **state)
{
    cli_bench_opts o;
    const char *argv[] = { "bench" };
    (void)state;

    assert_int_equal(parse(&o, ARGC(argv), argv), SK_OK);
    assert_true(o.rate == CLI_BENCH_DEFAULT_RATE);
    assert_int_equal(o.concurrency, 0);
    assert_true(o.duration_s == CLI_BENCH_DEFAULT_DURATION_S);
    assert_true(o.warmup_s == CLI_BENCH_DEFAULT_WARMUP_S);
    assert_true(o.timeout_s == CLI_BENCH_DEFAULT_TIMEOUT_S);
    assert_int_equal(o.connections, CLI_BENCH_DEFAULT_CONNS);
    assert_false(o.is_json);
    assert_false(o.is_find_max);
    assert_false(o.is_poll);
    assert_null(o.data);
    assert_null(o.url);
}

static void test_cli_bench_args_parse_every_option(void **state)
{
    cli_bench_opts o;
    const char *argv[] = { "bench",
                           "--rate=250.5",
                           "--duration",
                           "2",
                           "--warmup",
                           "0",
                           "--json",
                           "--data",
                           "/tmp/d",
                           "--url",
                           "http://127.0.0.1:1/",
                           "--timeout",
                           "5",
                           "--connections=8",
                           "--follow",
                           "poll" };
    (void)state;

    assert_int_equal(parse(&o, ARGC(argv), argv), SK_OK);
    assert_true(o.rate == 250.5);
    assert_true(o.duration_s == 2);
    assert_true(o.warmup_s == 0);
    assert_true(o.timeout_s == 5);
    assert_int_equal(o.connections, 8);
    assert_true(o.is_json);
    assert_true(o.is_poll);
    assert_string_equal(o.data, "/tmp/d");
    assert_string_equal(o.url, "http://127.0.0.1:1/");

    const char *closed[] = { "bench", "--concurrency", "200" };
    assert_int_equal(parse(&o, ARGC(closed), closed), SK_OK);
    assert_true(o.rate == 0);
    assert_int_equal(o.concurrency, 200);
    assert_int_equal(o.connections, 200); /* one connection per order in flight */

    const char *find[] = { "bench", "--find-max", "--max-rate", "500" };
    assert_int_equal(parse(&o, ARGC(find), find), SK_OK);
    assert_true(o.is_find_max);
    assert_true(o.rate == CLI_BENCH_FIND_START_RATE);
    assert_true(o.max_rate == 500);

    const char *help[] = { "bench", "--help", "--bogus" };
    assert_int_equal(parse(&o, ARGC(help), help), SK_OK);
    assert_true(o.is_help);
}

static void test_cli_bench_args_parse_errors(void **state)
{
    static const struct {
        const char *argv[4];
        const char *message;
    } cases[] = {
        { { "bench", "--bogus" }, "unknown argument \"--bogus\"" },
        { { "bench", "--rate" }, "--rate: missing or empty value" },
        { { "bench", "--rate=" }, "--rate: missing or empty value" },
        { { "bench", "--rate", "0" }, "--rate: expected more than 0" },
        { { "bench", "--rate", "-5" }, "--rate: expected a number" },
        { { "bench", "--rate", "1e3" }, "--rate: expected a number" },
        { { "bench", "--rate", "nan" }, "--rate: expected a number" },
        { { "bench", "--rate", "100001" }, "--rate: expected more than 0 and at most 100000" },
        { { "bench", "--duration", "0" }, "--duration: expected more than 0" },
        { { "bench", "--duration", "x" }, "--duration: expected a number" },
        { { "bench", "--warmup", "601" }, "--warmup: expected 0..600" },
        { { "bench", "--timeout", "0" }, "--timeout" },
        { { "bench", "--concurrency", "0" }, "--concurrency: expected an integer 1..10000" },
        { { "bench", "--concurrency", "1.5" }, "--concurrency: expected an integer" },
        { { "bench", "--connections", "2000" }, "--connections: expected an integer 1..1024" },
        { { "bench", "--rate", "5", "--concurrency=2" }, "give one" },
        { { "bench", "--find-max", "--concurrency=2" }, "--find-max" },
        { { "bench", "--max-rate", "100" }, "--max-rate: only with --find-max" },
        { { "bench", "--find-max", "--rate", "90000" }, "above --max-rate" },
        { { "bench", "--url", "127.0.0.1:8080" }, "--url: expected http://HOST:PORT" },
        { { "bench", "--follow", "sometimes" }, "--follow: expected events or poll" },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cli_bench_opts o;
        int argc = 0;
        while (argc < 4 && cases[i].argv[argc] != NULL) {
            argc++;
        }
        SK_TEST_ASSERT_ERR(parse(&o, argc, cases[i].argv), SK_EINVAL, cases[i].message);
        assert_true(o.rate == 0);
        assert_int_equal(o.concurrency, 0);
    }
    SK_TEST_ASSERT_ERR(cli_bench_args_parse(1, NULL, NULL), SK_EINVAL, "out must not be NULL");
}

static void test_cli_lat_percentile_exact(void **state)
{
    cli_lat l;
    (void)state;

    cli_lat_init(&l);
    assert_int_equal(cli_lat_percentile(&l, 50), 0); /* empty */
    /* 1000..1 in reverse: percentiles are exact nearest ranks. */
    for (int64_t v = 1000; v >= 1; v--) {
        assert_int_equal(cli_lat_add(&l, v), SK_OK);
    }
    assert_int_equal(cli_lat_percentile(&l, 0), 1);
    assert_int_equal(cli_lat_percentile(&l, 50), 500);
    assert_int_equal(cli_lat_percentile(&l, 90), 900);
    assert_int_equal(cli_lat_percentile(&l, 99), 990);
    assert_int_equal(cli_lat_percentile(&l, 99.9), 999);
    assert_int_equal(cli_lat_percentile(&l, 100), 1000);
    assert_int_equal(cli_lat_percentile(&l, 101), 0);
    assert_int_equal(cli_lat_percentile(&l, -1), 0);
    /* One sample is every percentile; a negative one counts as 0. */
    cli_lat_reset(&l);
    assert_int_equal(cli_lat_add(&l, -7), SK_OK);
    assert_int_equal(cli_lat_percentile(&l, 50), 0);
    assert_int_equal(cli_lat_add(&l, 42), SK_OK);
    assert_int_equal(cli_lat_percentile(&l, 50), 0);
    assert_int_equal(cli_lat_percentile(&l, 51), 42);
    assert_int_equal(cli_lat_percentile(&l, 100), 42);
    /* A slow tail: 99 fast samples and one slow one is p99 fast, p99.9 and max slow. */
    cli_lat_reset(&l);
    for (int i = 0; i < 99; i++) {
        assert_int_equal(cli_lat_add(&l, 10), SK_OK);
    }
    assert_int_equal(cli_lat_add(&l, 5000000), SK_OK);
    assert_int_equal(cli_lat_percentile(&l, 99), 10);
    assert_int_equal(cli_lat_percentile(&l, 99.9), 5000000);
    cli_lat_fini(&l);
    cli_lat_fini(&l); /* idempotent */
    SK_TEST_ASSERT_ERR(cli_lat_add(NULL, 1), SK_EINVAL, "must not be NULL");
    assert_int_equal(cli_lat_percentile(NULL, 50), 0);
}

static void test_cli_sched_open_loop(void **state)
{
    cli_sched s;
    uint64_t i = 99;
    int64_t due = -1;
    (void)state;

    /* 4 sends at 1000/s from t=1,000,000 µs: due at +0, +1, +2, +3 ms. */
    cli_sched_init(&s, 1000000, 1000, 4);
    assert_int_equal(cli_sched_time_us(&s, 0), 1000000);
    assert_int_equal(cli_sched_time_us(&s, 3), 1003000);
    assert_int_equal(cli_sched_wait_us(&s, 999000), 1000);
    assert_false(cli_sched_next(&s, 999999, &i, &due));
    assert_true(cli_sched_next(&s, 1000000, &i, &due));
    assert_int_equal(i, 0);
    assert_int_equal(due, 1000000);
    assert_false(cli_sched_next(&s, 1000999, &i, &due));
    assert_int_equal(cli_sched_wait_us(&s, 1000500), 500);
    /*
     * The sender stalled for 10 ms: every overdue send comes out at once
     * with its own due time, so its latency counts from when it was due.
     */
    assert_int_equal(cli_sched_wait_us(&s, 1010000), 0);
    for (uint64_t k = 1; k < 4; k++) {
        assert_true(cli_sched_next(&s, 1010000, &i, &due));
        assert_int_equal(i, k);
        assert_int_equal(due, 1000000 + (int64_t)k * 1000);
    }
    assert_false(cli_sched_next(&s, 2000000, &i, &due));
    assert_int_equal(cli_sched_wait_us(&s, 2000000), -1);
    /* No drift over a long schedule: send 3,000,000 at 3/s... is due exactly at 1,000,000 s. */
    cli_sched_init(&s, 0, 3, 10000000);
    assert_int_equal(cli_sched_time_us(&s, 3000000), 1000000000000LL);
    assert_int_equal(cli_sched_time_us(&s, 1), 333333);
    /* A rate of 0 schedules nothing. */
    cli_sched_init(&s, 0, 0, 10);
    assert_false(cli_sched_next(&s, 1000000000, &i, &due));
    assert_int_equal(cli_sched_wait_us(&s, 0), -1);
}

static void test_cli_bench_find_max_steps(void **state)
{
    (void)state;
    assert_true(cli_bench_step_rate(50, 1.5, 0) == 50);
    assert_true(cli_bench_step_rate(50, 1.5, 1) == 75);
    assert_true(cli_bench_step_rate(50, 1.5, 2) == 112.5);
    assert_true(cli_bench_step_rate(50, 1.5, -1) == 50);

    /* Refining between 1,000 (sustained) and 2,250 (not): 1,500, and always inside the bracket. */
    assert_true(cli_bench_refine_rate(1000, 2250) == 1500);
    double lo = 1012.5, hi = 1518.75;
    for (int i = 0; i < CLI_BENCH_FIND_REFINE; i++) {
        double mid = cli_bench_refine_rate(lo, hi);
        assert_true(mid > lo && mid < hi);
        hi = mid; /* as if never sustained: the bracket shrinks towards lo */
    }
    assert_true(hi / lo < 1.06); /* three steps take a ×1.5 bracket to within 6 % */
    assert_true(cli_bench_refine_rate(0, 100) == 0); /* no sustained rate: nothing between */
    assert_true(cli_bench_refine_rate(100, 100) == 100);
    /* Sustained: ≥ 95 % achieved and completed, p99 ≤ 1 s, nothing failed. */
    assert_true(cli_bench_is_sustained(100, 95, 96, 1000000, 0));
    assert_false(cli_bench_is_sustained(100, 94.9, 100, 1000, 0));
    assert_false(cli_bench_is_sustained(100, 100, 94.9, 1000, 0));
    assert_false(cli_bench_is_sustained(100, 100, 100, 1000001, 0));
    assert_false(cli_bench_is_sustained(100, 100, 100, 1000, 1));
    assert_false(cli_bench_is_sustained(0, 0, 0, 0, 0));
}

static void test_cli_bench_plan_make(void **state)
{
    cli_bench_opts o;
    cli_bench_plan p;
    const char *argv[] = { "bench", "--rate", "20", "--duration", "2" };
    (void)state;

    /* 20/s × (1 s warm-up + 2 s) = 60 orders over 16 products and customers, 2× margin. */
    assert_int_equal(parse(&o, ARGC(argv), argv), SK_OK);
    assert_int_equal(cli_bench_plan_make(&o, &p), SK_OK);
    assert_int_equal(p.max_orders, 60);
    assert_int_equal(p.n_products, 16);
    assert_int_equal(p.n_customers, 16);
    assert_int_equal(p.stock, 2 * 4 + 10);
    assert_int_equal(p.credit_cents, (2 * 4 + 10) * p.price_cents);

    /* Big runs spread over 64 of each. */
    const char *big[] = { "bench", "--rate", "2000", "--duration", "60" };
    assert_int_equal(parse(&o, ARGC(big), big), SK_OK);
    assert_int_equal(cli_bench_plan_make(&o, &p), SK_OK);
    assert_int_equal(p.max_orders, 122000);
    assert_int_equal(p.n_products, 64);
    assert_true(p.stock >= 2 * 122000 / 64);

    /* --find-max sums its steps: 50, 75, 112.5 (the next, 168.75, is above 150), and room for
     * its refining steps, each below the top one. */
    const char *find[] = { "bench",      "--find-max", "--max-rate", "150",
                           "--duration", "1",          "--warmup",   "0" };
    assert_int_equal(parse(&o, ARGC(find), find), SK_OK);
    assert_int_equal(cli_bench_plan_make(&o, &p), SK_OK);
    assert_int_equal(p.max_orders, 50 + 75 + 113 + CLI_BENCH_FIND_REFINE * 113);

    /* Closed loop: as if each order took 1 ms. */
    const char *closed[] = { "bench", "--concurrency", "4", "--duration", "1", "--warmup", "0" };
    assert_int_equal(parse(&o, ARGC(closed), closed), SK_OK);
    assert_int_equal(cli_bench_plan_make(&o, &p), SK_OK);
    assert_int_equal(p.max_orders, 4000);

    /* More than the API accepts. */
    const char *huge[] = { "bench", "--concurrency", "10000", "--duration", "3600" };
    assert_int_equal(parse(&o, ARGC(huge), huge), SK_OK);
    SK_TEST_ASSERT_ERR(cli_bench_plan_make(&o, &p), SK_ELIMIT, "shorten --duration");
    assert_int_equal(p.max_orders, 0);

    SK_TEST_ASSERT_ERR(cli_bench_plan_make(NULL, &p), SK_EINVAL, "o must not be NULL");
    SK_TEST_ASSERT_ERR(cli_bench_plan_make(&o, NULL), SK_EINVAL, "out must not be NULL");
}

static void test_cli_proc_and_smaps_parsing(void **state)
{
    uint64_t v = 0;
    (void)state;

    /* A command name with spaces and parentheses; utime 1200 + stime 34. */
    assert_true(cli_proc_stat_ticks(
        "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1200 34 0 0 20 0 9 0", &v));
    assert_int_equal(v, 1234);
    assert_false(cli_proc_stat_ticks("4242 no parenthesis S 1", &v));
    assert_false(cli_proc_stat_ticks("4242 (x) S 1 2", &v)); /* cut short */
    assert_false(cli_proc_stat_ticks(NULL, &v));

    static const char rollup[] = "55d0c0000000-7ffd1c1f2000 ---p 00000000 00:00 0 [rollup]\n"
                                 "Rss:               16536 kB\n"
                                 "Pss:                5264 kB\n"
                                 "Pss_Dirty:          3708 kB\n"
                                 "Pss_Anon:           3676 kB\n";
    assert_true(cli_smaps_kb(rollup, "Rss", &v));
    assert_int_equal(v, 16536);
    assert_true(cli_smaps_kb(rollup, "Pss", &v));
    assert_int_equal(v, 5264);
    assert_true(cli_smaps_kb(rollup, "Pss_Anon", &v));
    assert_int_equal(v, 3676);
    assert_false(cli_smaps_kb(rollup, "Swap", &v));
    assert_false(cli_smaps_kb(rollup, "", &v));
    assert_false(cli_smaps_kb(NULL, "Rss", &v));
}

/* This process's CPU as /proc and getrusage see it: both grow while it works. */
static void test_cli_proc_cpu_us(void **state)
{
    uint64_t proc0 = 0, proc1 = 0, self0 = cli_self_cpu_us(), n_polls = 0;
    (void)state;

    assert_true(cli_proc_cpu_us((int)getpid(), &proc0));
    /* Well over one clock tick (10 ms) of work: asking getrusage is the work. */
    while (cli_self_cpu_us() - self0 < 60000) {
        n_polls++;
    }
    assert_true(n_polls > 0);
    assert_true(cli_proc_cpu_us((int)getpid(), &proc1));
    assert_true(proc1 > proc0);
    assert_true(cli_self_cpu_us() - self0 >= 60000);

    assert_false(cli_proc_cpu_us(0, &proc0));
    assert_false(cli_proc_cpu_us(-1, &proc0));
    assert_false(cli_proc_cpu_us(999999999, &proc0)); /* above pid_max */
}

static void test_cli_sys_without_a_local_system(void **state)
{
    cli_sys s;
    cli_sys_report rep;
    (void)state;

    /* No skald up owns this data dir: no figures, and every step is harmless. */
    assert_false(cli_sys_open(&s, "/nonexistent/skald-data"));
    assert_int_equal(s.root, 0);
    cli_sys_start(&s);
    cli_sys_sample(&s);
    cli_sys_report_make(&s, 100, &rep);
    assert_false(rep.is_available);
    assert_false(cli_sys_open(&s, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_bench_args_parse_defaults),
        cmocka_unit_test(test_cli_bench_args_parse_every_option),
        cmocka_unit_test(test_cli_bench_args_parse_errors),
        cmocka_unit_test(test_cli_lat_percentile_exact),
        cmocka_unit_test(test_cli_proc_and_smaps_parsing),
        cmocka_unit_test(test_cli_proc_cpu_us),
        cmocka_unit_test(test_cli_sys_without_a_local_system),
        cmocka_unit_test(test_cli_sched_open_loop),
        cmocka_unit_test(test_cli_bench_find_max_steps),
        cmocka_unit_test(test_cli_bench_plan_make),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
