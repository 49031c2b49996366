/* SPDX-License-Identifier: MIT */
/*
 * The pure parts of `skald bench`: argument parsing, exact latency
 * percentiles over every sample, the open-loop schedule (send i is due at
 * start + i / rate whatever the earlier sends did, so nothing hides a slow
 * answer), the --find-max steps and the size of the seed. No I/O here, so
 * tests/integration/test_cli_bench.c checks all of it without a system.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/*
 * ceil/floor without libm (the CLI does not link it): exact for the values
 * here, which stay far below 2^53.
 */
static double ceil_d(double v)
{
    double t = (double)(int64_t)v;
    return t < v ? t + 1 : t;
}

static double floor_d(double v)
{
    double t = (double)(int64_t)v;
    return t > v ? t - 1 : t;
}

/* ---------------------------------------------------------------- arguments */

/* A decimal number in [lo, hi] (lo excluded when is_lo_open), nothing else. */
static sk_status
parse_number(const char *flag, const char *text, double lo, double hi, bool is_lo_open, double *out)
{
    char *end = NULL;
    double v;

    *out = 0;
    /* strtod accepts leading spaces, hex, "inf" and "nan": allow digits and one dot only. */
    for (const char *p = text; *p != '\0'; p++) {
        if ((*p < '0' || *p > '9') && *p != '.') {
            return SK_FAIL(SK_EINVAL, "%s: expected a number, got \"%.32s\"", flag, text);
        }
    }
    v = strtod(text, &end);
    if (end == text || *end != '\0' || !isfinite(v)) {
        return SK_FAIL(SK_EINVAL, "%s: expected a number, got \"%.32s\"", flag, text);
    }
    if (v > hi || v < lo || (is_lo_open && v <= lo)) {
        if (is_lo_open) {
            return SK_FAIL(SK_EINVAL, "%s: expected more than %g and at most %g, got %.32s", flag,
                           lo, hi, text);
        }
        return SK_FAIL(SK_EINVAL, "%s: expected %g..%g, got %.32s", flag, lo, hi, text);
    }
    *out = v;
    return SK_OK;
}

static sk_status parse_int(const char *flag, const char *text, int lo, int hi, int *out)
{
    long v = 0;
    size_t n = strlen(text);

    *out = 0;
    if (n == 0 || n > 9) {
        return SK_FAIL(SK_EINVAL, "%s: expected an integer %d..%d, got \"%.32s\"", flag, lo, hi,
                       text);
    }
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return SK_FAIL(SK_EINVAL, "%s: expected an integer %d..%d, got \"%.32s\"", flag, lo, hi,
                           text);
        }
        v = v * 10 + (text[i] - '0');
    }
    if (v < lo || v > hi) {
        return SK_FAIL(SK_EINVAL, "%s: expected an integer %d..%d, got %.32s", flag, lo, hi, text);
    }
    *out = (int)v;
    return SK_OK;
}

/* One "--flag VALUE" or "--flag=VALUE" with a value; *value NULL when argv[*i] is another flag. */
static sk_status flag_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    int m = cli_flag(argc, argv, i, name, value);
    if (m < 0) {
        return SK_FAIL(SK_EINVAL, "%s: missing or empty value", name);
    }
    return SK_OK;
}

sk_status cli_bench_args_parse(int argc, char **argv, cli_bench_opts *out)
{
    bool has_rate = false, has_conns = false, has_max_rate = false;
    sk_status st = SK_OK;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_bench_args_parse: out must not be NULL");
    }
    *out = (cli_bench_opts){
        .duration_s = CLI_BENCH_DEFAULT_DURATION_S,
        .warmup_s = CLI_BENCH_DEFAULT_WARMUP_S,
        .timeout_s = CLI_BENCH_DEFAULT_TIMEOUT_S,
        .max_rate = CLI_BENCH_FIND_MAX_RATE,
    };
    if (argc < 0 || (argc > 0 && argv == NULL)) {
        return SK_FAIL(SK_EINVAL, "cli_bench_args_parse: argv must not be NULL");
    }
    for (int i = 1; i < argc && st == SK_OK; i++) {
        const char *v = NULL;
        const char *arg = argv[i];
        if (arg == NULL) {
            return SK_FAIL(SK_EINVAL, "cli_bench_args_parse: argv[%d] is NULL", i);
        }
        if (cli_is_help(arg)) {
            out->is_help = true;
            return SK_OK;
        }
        if (strcmp(arg, "--json") == 0) {
            out->is_json = true;
        } else if (strcmp(arg, "--find-max") == 0) {
            out->is_find_max = true;
        } else if ((st = flag_value(argc, argv, &i, "--data", &v)) != SK_OK || v != NULL) {
            out->data = v;
        } else if ((st = flag_value(argc, argv, &i, "--url", &v)) != SK_OK || v != NULL) {
            if (st == SK_OK && strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
                st = SK_FAIL(SK_EINVAL, "--url: expected http://HOST:PORT, got \"%.64s\"", v);
            }
            out->url = v;
        } else if ((st = flag_value(argc, argv, &i, "--rate", &v)) != SK_OK || v != NULL) {
            st = st != SK_OK ? st
                             : parse_number("--rate", v, 0, CLI_BENCH_MAX_RATE, true, &out->rate);
            has_rate = true;
        } else if ((st = flag_value(argc, argv, &i, "--concurrency", &v)) != SK_OK || v != NULL) {
            st = st != SK_OK ? st
                             : parse_int("--concurrency", v, 1, CLI_BENCH_MAX_CONCURRENCY,
                                         &out->concurrency);
        } else if ((st = flag_value(argc, argv, &i, "--duration", &v)) != SK_OK || v != NULL) {
            st = st != SK_OK ? st
                             : parse_number("--duration", v, 0, CLI_BENCH_MAX_DURATION_S, true,
                                            &out->duration_s);
        } else if ((st = flag_value(argc, argv, &i, "--warmup", &v)) != SK_OK || v != NULL) {
            st = st != SK_OK ? st
                             : parse_number("--warmup", v, 0, CLI_BENCH_MAX_WARMUP_S, false,
                                            &out->warmup_s);
        } else if ((st = flag_value(argc, argv, &i, "--timeout", &v)) != SK_OK || v != NULL) {
            st = st != SK_OK ? st
                             : parse_number("--timeout", v, 0, CLI_BENCH_MAX_TIMEOUT_S, true,
                                            &out->timeout_s);
        } else if ((st = flag_value(argc, argv, &i, "--connections", &v)) != SK_OK || v != NULL) {
            st = st != SK_OK ? st
                             : parse_int("--connections", v, 1, CLI_BENCH_MAX_CONNECTIONS,
                                         &out->connections);
            has_conns = true;
        } else if ((st = flag_value(argc, argv, &i, "--max-rate", &v)) != SK_OK || v != NULL) {
            st = st != SK_OK
                     ? st
                     : parse_number("--max-rate", v, 0, CLI_BENCH_MAX_RATE, true, &out->max_rate);
            has_max_rate = true;
        } else if ((st = flag_value(argc, argv, &i, "--follow", &v)) != SK_OK || v != NULL) {
            if (st == SK_OK && strcmp(v, "poll") != 0 && strcmp(v, "events") != 0) {
                st = SK_FAIL(SK_EINVAL, "--follow: expected events or poll, got \"%.32s\"", v);
            }
            out->is_poll = st == SK_OK && strcmp(v, "poll") == 0;
        } else {
            st = SK_FAIL(SK_EINVAL, "unknown argument \"%.64s\"", arg);
        }
    }
    if (st == SK_OK && has_rate && out->concurrency > 0) {
        st = SK_FAIL(SK_EINVAL, "--rate and --concurrency: give one (open loop at a rate, or "
                                "closed loop with a fixed number of orders in flight)");
    }
    if (st == SK_OK && out->is_find_max && out->concurrency > 0) {
        st = SK_FAIL(SK_EINVAL, "--find-max steps the offered rate: it does not go with "
                                "--concurrency");
    }
    if (st == SK_OK && has_max_rate && !out->is_find_max) {
        st = SK_FAIL(SK_EINVAL, "--max-rate: only with --find-max");
    }
    if (st == SK_OK && out->concurrency == 0 && !has_rate) {
        out->rate = out->is_find_max ? CLI_BENCH_FIND_START_RATE : CLI_BENCH_DEFAULT_RATE;
    }
    if (st == SK_OK && out->is_find_max && out->rate > out->max_rate) {
        st = SK_FAIL(SK_EINVAL, "--rate: the first step (%g/s) is above --max-rate (%g/s)",
                     out->rate, out->max_rate);
    }
    if (st == SK_OK && !has_conns) {
        out->connections =
            out->concurrency > 0 && out->concurrency < CLI_BENCH_MAX_CONNECTIONS
                ? (out->concurrency > CLI_BENCH_DEFAULT_CONNS ? out->concurrency
                                                              : CLI_BENCH_DEFAULT_CONNS)
                : CLI_BENCH_DEFAULT_CONNS;
    }
    if (st != SK_OK) {
        bool is_help = out->is_help;
        *out = (cli_bench_opts){ .is_help = is_help };
    }
    return st;
}

/* ---------------------------------------------------------------- percentiles */

void cli_lat_init(cli_lat *l)
{
    *l = (cli_lat){ .is_sorted = true };
}

void cli_lat_fini(cli_lat *l)
{
    if (l == NULL) {
        return;
    }
    sk_free(l->us);
    cli_lat_init(l);
}

void cli_lat_reset(cli_lat *l)
{
    if (l != NULL) {
        l->n = 0;
        l->is_sorted = true;
    }
}

sk_status cli_lat_add(cli_lat *l, int64_t us)
{
    if (l == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_lat_add: l must not be NULL");
    }
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 1024 : l->cap * 2;
        size_t bytes;
        if (__builtin_mul_overflow(cap, sizeof(*l->us), &bytes)) {
            return SK_FAIL(SK_ENOMEM, "cli_lat_add: %zu samples", cap);
        }
        int64_t *grown = sk_realloc(l->us, bytes);
        if (grown == NULL) {
            return SK_FAIL(SK_ENOMEM, "cli_lat_add: %zu samples", cap);
        }
        l->us = grown;
        l->cap = cap;
    }
    l->us[l->n++] = us < 0 ? 0 : us;
    l->is_sorted = l->n == 1 || (l->is_sorted && l->us[l->n - 2] <= l->us[l->n - 1]);
    return SK_OK;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int64_t cli_lat_percentile(cli_lat *l, double pct)
{
    if (l == NULL || l->n == 0 || !(pct >= 0 && pct <= 100)) {
        return 0;
    }
    if (!l->is_sorted) {
        qsort(l->us, l->n, sizeof(*l->us), cmp_i64);
        l->is_sorted = true;
    }
    /* Nearest rank: ceil(pct/100 × n), at least 1. The epsilon keeps 99.9 % of 1000 at 999. */
    double rank = ceil_d(pct / 100.0 * (double)l->n - 1e-9);
    size_t r = rank < 1 ? 1 : (size_t)rank;
    return l->us[(r > l->n ? l->n : r) - 1];
}

/* ---------------------------------------------------------------- open-loop schedule */

void cli_sched_init(cli_sched *s, int64_t start_us, double rate, uint64_t n_total)
{
    *s = (cli_sched){
        .start_us = start_us,
        .rate = rate > 0 && isfinite(rate) ? rate : 0,
        .n_total = rate > 0 && isfinite(rate) ? n_total : 0,
    };
}

int64_t cli_sched_time_us(const cli_sched *s, uint64_t i)
{
    if (s->rate <= 0) {
        return s->start_us;
    }
    /* From the index, not by adding intervals: no rounding drift over a long run. */
    return s->start_us + (int64_t)floor_d((double)i * 1e6 / s->rate);
}

bool cli_sched_next(cli_sched *s, int64_t now_us, uint64_t *index, int64_t *due_us)
{
    if (s->n_taken >= s->n_total) {
        return false;
    }
    int64_t due = cli_sched_time_us(s, s->n_taken);
    if (due > now_us) {
        return false;
    }
    *index = s->n_taken++;
    *due_us = due;
    return true;
}

int64_t cli_sched_wait_us(const cli_sched *s, int64_t now_us)
{
    if (s->n_taken >= s->n_total) {
        return -1;
    }
    int64_t due = cli_sched_time_us(s, s->n_taken);
    return due > now_us ? due - now_us : 0;
}

/* ---------------------------------------------------------------- find-max */

double cli_bench_step_rate(double start, double factor, int k)
{
    double r = start;
    for (int i = 0; i < k; i++) {
        r *= factor;
    }
    return r;
}

double cli_bench_refine_rate(double lo, double hi)
{
    return lo > 0 && hi > lo ? sqrt(lo * hi) : lo;
}

bool cli_bench_is_sustained(
    double offered, double achieved, double completed, int64_t e2e_p99_us, uint64_t n_failed)
{
    double floor_rate = CLI_BENCH_SUSTAINED_SHARE * offered;
    return offered > 0 && achieved >= floor_rate && completed >= floor_rate &&
           e2e_p99_us <= CLI_BENCH_SUSTAINED_P99_US && n_failed == 0;
}

/* ---------------------------------------------------------------- seed */

/* What the public API accepts (CONTRACT.md: credit limits 0..10^12; inventory stock 0..10^9). */
#define API_MAX_CREDIT_CENTS 1000000000000LL
#define API_MAX_STOCK        1000000000LL
#define BENCH_PRICE_CENTS    100
/* The run never places more: it bounds the seed and the memory of the run. */
#define BENCH_MAX_ORDERS 100000000ULL

sk_status cli_bench_plan_make(const cli_bench_opts *o, cli_bench_plan *out)
{
    double orders = 0;
    double span = 0;

    if (out == NULL || o == NULL) {
        if (out != NULL) {
            *out = (cli_bench_plan){ 0 };
        }
        return SK_FAIL(SK_EINVAL, "cli_bench_plan_make: %s must not be NULL",
                       o == NULL ? "o" : "out");
    }
    *out = (cli_bench_plan){ 0 };
    span = o->warmup_s + o->duration_s;
    if (o->concurrency > 0) {
        orders = (double)o->concurrency * span * 1000.0;
    } else if (o->is_find_max) {
        double top = 0;
        for (int k = 0; k < CLI_BENCH_FIND_MAX_STEPS; k++) {
            double r = cli_bench_step_rate(o->rate, CLI_BENCH_FIND_FACTOR, k);
            if (r > o->max_rate) {
                break;
            }
            orders += ceil_d(r * span);
            top = r;
        }
        /* The refining steps run below the step that was not sustained, so below the top one. */
        orders += CLI_BENCH_FIND_REFINE * ceil_d(top * span);
    } else {
        orders = ceil_d(o->rate * span);
    }
    if (!(orders >= 1)) {
        orders = 1;
    }
    if (orders > (double)BENCH_MAX_ORDERS) {
        return SK_FAIL(SK_ELIMIT,
                       "the run would place up to %.0f orders, more than %llu: "
                       "shorten --duration or lower --rate/--concurrency",
                       orders, (unsigned long long)BENCH_MAX_ORDERS);
    }
    out->max_orders = (uint64_t)orders;
    /* Spread the orders so no product or account row is hot: 16 of each for small runs, 64 above.
     */
    out->n_products = out->max_orders <= 1000 ? 16 : 64;
    out->n_customers = out->n_products;
    out->price_cents = BENCH_PRICE_CENTS;
    /* Round-robin: each product and customer gets at most ceil(orders / n); twice that as margin.
     */
    int64_t per_product =
        (int64_t)((out->max_orders + (uint64_t)out->n_products - 1) / (uint64_t)out->n_products);
    int64_t per_customer =
        (int64_t)((out->max_orders + (uint64_t)out->n_customers - 1) / (uint64_t)out->n_customers);
    out->stock = 2 * per_product + 10;
    out->credit_cents = (2 * per_customer + 10) * out->price_cents;
    if (out->stock > API_MAX_STOCK || out->credit_cents > API_MAX_CREDIT_CENTS) {
        *out = (cli_bench_plan){ 0 };
        return SK_FAIL(SK_ELIMIT, "the run needs more stock or credit than the API accepts: "
                                  "shorten --duration or lower --rate/--concurrency");
    }
    return SK_OK;
}
