/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/obs/metrics.c: get-or-create, name and label checks,
 * the exact Prometheus text of a small registry, histogram buckets, limits,
 * allocation failures and a concurrency smoke test with exact totals.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "obs/obs_int.h"

static int setup(void **state)
{
    (void)state;
    sk_error_clear();
    sk_test_fail_alloc_at(-1);
    return 0;
}

static sk_metrics *new_metrics(void)
{
    sk_metrics *m = NULL;
    assert_int_equal(sk_metrics_create(&m), SK_OK);
    assert_non_null(m);
    return m;
}

static void assert_msg_contains(const char *needle)
{
    const char *msg = sk_error_message();
    if (strstr(msg, needle) == NULL) {
        fail_msg("error message \"%s\" does not contain \"%s\"", msg, needle);
    }
}

/* Render @p m into a fresh buffer; owned, sk_free. */
static char *render(sk_metrics *m)
{
    sk_buf b;
    char *text;

    sk_buf_init(&b, 1u << 20);
    assert_int_equal(sk_metrics_render(m, &b), SK_OK);
    text = sk_buf_take(&b, NULL);
    assert_non_null(text);
    return text;
}

static void assert_render(sk_metrics *m, const char *expected)
{
    char *text = render(m);
    assert_string_equal(text, expected);
    sk_free(text);
}

/* ---------------------------------------------------------------- create / destroy */

static void test_sk_metrics_create_null_out(void **state)
{
    (void)state;
    assert_int_equal(sk_metrics_create(NULL), SK_EINVAL);
    assert_msg_contains("sk_metrics_create: out must not be NULL");
    sk_metrics_destroy(NULL);
}

static void test_sk_metrics_create_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_metrics *m = (sk_metrics *)&n;
        sk_test_fail_alloc_at(n);
        sk_status st = sk_metrics_create(&m);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_metrics_destroy(m);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(m);
    }
}

static void test_sk_metrics_render_empty(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    assert_render(m, "");
    sk_metrics_destroy(m);
}

/* ---------------------------------------------------------------- get-or-create */

static void test_sk_metrics_counter_get_or_create(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    sk_counter *a = sk_metrics_counter(m, "req_total", "Requests.", "code=\"200\"");
    sk_counter *b = sk_metrics_counter(m, "req_total", "Other help.", "code=\"200\"");
    sk_counter *c = sk_metrics_counter(m, "req_total", NULL, "code=\"500\"");
    sk_counter *d = sk_metrics_counter(m, "req_total", NULL, NULL);
    sk_counter *e = sk_metrics_counter(m, "req_total", NULL, "");

    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_non_null(c);
    assert_ptr_not_equal(a, c);
    assert_non_null(d);
    assert_ptr_equal(d, e); /* NULL and "" are the same, unlabelled series */
    sk_counter_add(a, 2);
    sk_counter_add(b, 3);
    sk_counter_add(c, 1);
    /* First help wins. */
    assert_render(m, "# HELP req_total Requests.\n"
                     "# TYPE req_total counter\n"
                     "req_total{code=\"200\"} 5\n"
                     "req_total{code=\"500\"} 1\n"
                     "req_total 0\n");
    sk_metrics_destroy(m);
}

static void test_sk_metrics_names(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    char name[SK_METRICS_MAX_NAME + 2];
    static const char *const good[] = { "a", "_", ":", "A_b:c9", "http_requests_total", "__x" };
    static const char *const bad[] = { "", "1a", "a-b", "a b", "a.b", "é", "a\n" };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_non_null(sk_metrics_counter(m, good[i], NULL, NULL));
        assert_true(sk__metrics_name_is_valid(good[i]));
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sk_error_clear();
        assert_null(sk_metrics_gauge(m, bad[i], NULL, NULL));
        assert_int_equal(sk_error_status(), SK_EINVAL);
        assert_msg_contains("sk_metrics_gauge: name");
        assert_msg_contains("must match [a-zA-Z_:][a-zA-Z0-9_:]*");
    }
    memset(name, 'n', SK_METRICS_MAX_NAME);
    name[SK_METRICS_MAX_NAME] = '\0';
    assert_non_null(sk_metrics_histogram(m, name, NULL, NULL));
    memset(name, 'n', SK_METRICS_MAX_NAME + 1);
    name[SK_METRICS_MAX_NAME + 1] = '\0';
    assert_null(sk_metrics_histogram(m, name, NULL, NULL));
    assert_msg_contains("be 1..128 bytes");
    assert_false(sk__metrics_name_is_valid(NULL));
    sk_metrics_destroy(m);
}

static void test_sk_metrics_null_args(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    sk_buf b;

    assert_null(sk_metrics_counter(NULL, "a", NULL, NULL));
    assert_msg_contains("sk_metrics_counter: m must not be NULL");
    assert_null(sk_metrics_gauge(NULL, "a", NULL, NULL));
    assert_msg_contains("sk_metrics_gauge: m must not be NULL");
    assert_null(sk_metrics_histogram(NULL, "a", NULL, NULL));
    assert_msg_contains("sk_metrics_histogram: m must not be NULL");
    assert_null(sk_metrics_counter(m, NULL, NULL, NULL));
    assert_msg_contains("sk_metrics_counter: name must not be NULL");

    sk_buf_init(&b, 100);
    assert_int_equal(sk_metrics_render(NULL, &b), SK_EINVAL);
    assert_msg_contains("sk_metrics_render: m must not be NULL");
    assert_int_equal(sk_metrics_render(m, NULL), SK_EINVAL);
    assert_msg_contains("sk_metrics_render: out must not be NULL");
    sk_buf_fini(&b);

    /* Updates through a NULL handle (a failed get) are ignored. */
    sk_counter_add(NULL, 1);
    sk_gauge_set(NULL, 1);
    sk_gauge_add(NULL, 1);
    sk_histogram_observe(NULL, 1.0);
    sk_metrics_destroy(m);
}

static void test_sk_metrics_type_conflict(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();

    assert_non_null(sk_metrics_counter(m, "jobs", NULL, NULL));
    assert_null(sk_metrics_gauge(m, "jobs", NULL, NULL));
    assert_int_equal(sk_error_status(), SK_EEXIST);
    assert_msg_contains("sk_metrics_gauge: metric \"jobs\" is already registered as a counter");
    assert_null(sk_metrics_histogram(m, "jobs", NULL, "a=\"b\""));
    assert_msg_contains("already registered as a counter");
    assert_non_null(sk_metrics_gauge(m, "temp", NULL, NULL));
    assert_null(sk_metrics_counter(m, "temp", NULL, NULL));
    assert_msg_contains("already registered as a gauge");
    sk_metrics_destroy(m);
}

static void test_sk_metrics_labels_checked(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    char labels[SK_METRICS_MAX_LABELS + 2];
    static const char *const good[] = {
        "a=\"b\"",         "a=\"b\",c=\"d\"", "a=\"x\\\"y\"", "a=\"{}\"", "a=\"line\\nbreak\"",
        "a=\"tab\there\"", "a=\"le\"",        "x=\"le=\"",    "a=\"\"",
    };
    static const struct {
        const char *labels;
        const char *msg;
    } bad[] = {
        { "a=\"b\nc\"", "control character at byte 4" },
        { "a=\"b\rc\"", "control character at byte 4" },
        { "a=\"b", "unterminated quoted value" },
        { "a=\"b\\\"", "unterminated quoted value" },
        { "a=\"b\\", "unterminated quoted value" },
        { "a=\"b\"}", "must not contain '}' outside quotes (byte 5)" },
        { "{a=\"b\"", "must not contain '{' outside quotes (byte 0)" },
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (sk_metrics_histogram(m, "h", NULL, good[i]) == NULL) {
            fail_msg("labels %s refused: %s", good[i], sk_error_message());
        }
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(sk_metrics_counter(m, "c", NULL, bad[i].labels));
        assert_int_equal(sk_error_status(), SK_EINVAL);
        assert_msg_contains("sk_metrics_counter: labels");
        assert_msg_contains(bad[i].msg);
    }
    /* "le" is the bucket label, so histograms may not use it; others may. */
    assert_null(sk_metrics_histogram(m, "h", NULL, "le=\"1\""));
    assert_msg_contains("label \"le\" is reserved for histogram buckets (byte 0)");
    assert_null(sk_metrics_histogram(m, "h", NULL, "a=\"1\", le =\"1\""));
    assert_msg_contains("(byte 7)");
    assert_non_null(sk_metrics_counter(m, "c", NULL, "le=\"1\""));
    assert_non_null(sk_metrics_histogram(m, "h", NULL, "lex=\"1\",ale=\"2\""));

    memset(labels, 'a', sizeof(labels));
    labels[0] = 'x';
    labels[1] = '=';
    labels[2] = '"';
    labels[SK_METRICS_MAX_LABELS - 1] = '"';
    labels[SK_METRICS_MAX_LABELS] = '\0';
    assert_non_null(sk_metrics_counter(m, "c", NULL, labels));
    labels[SK_METRICS_MAX_LABELS - 1] = 'a';
    labels[SK_METRICS_MAX_LABELS] = '"';
    labels[SK_METRICS_MAX_LABELS + 1] = '\0';
    assert_null(sk_metrics_counter(m, "c", NULL, labels));
    assert_msg_contains("labels must be at most 1024 bytes");
    sk_metrics_destroy(m);
}

static void test_sk_metrics_help_limits_and_escaping(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    char *help = sk_malloc(SK_METRICS_MAX_HELP + 2);

    assert_non_null(help);
    memset(help, 'h', SK_METRICS_MAX_HELP + 1);
    help[SK_METRICS_MAX_HELP + 1] = '\0';
    assert_null(sk_metrics_counter(m, "c", help, NULL));
    assert_msg_contains("help of \"c\" must be at most 1024 bytes");
    help[SK_METRICS_MAX_HELP] = '\0';
    assert_non_null(sk_metrics_counter(m, "c", help, NULL));
    sk_free(help);
    sk_metrics_destroy(m);

    m = new_metrics();
    assert_non_null(sk_metrics_gauge(m, "g", "Path C:\\tmp\nsecond line", NULL));
    assert_render(m, "# HELP g Path C:\\\\tmp\\nsecond line\n"
                     "# TYPE g gauge\n"
                     "g 0\n");
    sk_metrics_destroy(m);
}

/* ---------------------------------------------------------------- values */

static void test_sk_gauge_signed(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    sk_gauge *g = sk_metrics_gauge(m, "g", NULL, NULL);

    sk_gauge_set(g, -5);
    sk_gauge_add(g, 3);
    assert_render(m, "# TYPE g gauge\ng -2\n");
    sk_gauge_set(g, INT64_MIN);
    assert_render(m, "# TYPE g gauge\ng -9223372036854775808\n");
    sk_gauge_set(g, INT64_MAX);
    sk_gauge_add(g, -1);
    assert_render(m, "# TYPE g gauge\ng 9223372036854775806\n");
    sk_metrics_destroy(m);
}

static void test_sk_counter_large(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    sk_counter *c = sk_metrics_counter(m, "c", NULL, NULL);

    sk_counter_add(c, UINT64_MAX - 1);
    sk_counter_add(c, 0);
    sk_counter_add(c, 1);
    assert_render(m, "# TYPE c counter\nc 18446744073709551615\n");
    sk_metrics_destroy(m);
}

static void test_sk_histogram_empty_unlabelled(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();

    assert_non_null(sk_metrics_histogram(m, "h", NULL, NULL));
    assert_render(m, "# TYPE h histogram\n"
                     "h_bucket{le=\"0.0005\"} 0\n"
                     "h_bucket{le=\"0.001\"} 0\n"
                     "h_bucket{le=\"0.0025\"} 0\n"
                     "h_bucket{le=\"0.005\"} 0\n"
                     "h_bucket{le=\"0.01\"} 0\n"
                     "h_bucket{le=\"0.025\"} 0\n"
                     "h_bucket{le=\"0.05\"} 0\n"
                     "h_bucket{le=\"0.1\"} 0\n"
                     "h_bucket{le=\"0.25\"} 0\n"
                     "h_bucket{le=\"0.5\"} 0\n"
                     "h_bucket{le=\"1\"} 0\n"
                     "h_bucket{le=\"2.5\"} 0\n"
                     "h_bucket{le=\"5\"} 0\n"
                     "h_bucket{le=\"10\"} 0\n"
                     "h_bucket{le=\"+Inf\"} 0\n"
                     "h_sum 0\n"
                     "h_count 0\n");
    sk_metrics_destroy(m);
}

static void test_sk_histogram_bucket_edges(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    sk_histogram *h = sk_metrics_histogram(m, "h", NULL, NULL);

    /* Every bound lands in its own bucket (le is "less than or equal"). */
    for (size_t i = 0; i < SK__HISTOGRAM_N_BUCKETS; i++) {
        sk_histogram_observe(h, sk__histogram_bounds[i]);
    }
    sk_histogram_observe(h, 10.000000000000002); /* the next double above the last bound */
    sk_histogram_observe(h, NAN);                /* ignored */
    sk_histogram_observe(h, -1.0);               /* below every bound */
    char *text = render(m);
    assert_non_null(strstr(text, "h_bucket{le=\"0.0005\"} 2\n"));
    assert_non_null(strstr(text, "h_bucket{le=\"0.001\"} 3\n"));
    assert_non_null(strstr(text, "h_bucket{le=\"1\"} 12\n"));
    assert_non_null(strstr(text, "h_bucket{le=\"10\"} 15\n"));
    assert_non_null(strstr(text, "h_bucket{le=\"+Inf\"} 16\n"));
    assert_non_null(strstr(text, "h_count 16\n"));
    sk_free(text);

    sk_histogram_observe(h, INFINITY);
    text = render(m);
    assert_non_null(strstr(text, "h_bucket{le=\"+Inf\"} 17\n"));
    assert_non_null(strstr(text, "h_sum +Inf\n"));
    sk_free(text);
    sk_metrics_destroy(m);
}

/* The whole text of a small registry: grouping, HELP/TYPE, labels, buckets. */
static void test_sk_metrics_render_exact(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    sk_counter *ok = sk_metrics_counter(m, "http_requests_total", "Requests handled.",
                                        "route=\"/orders\",status=\"202\"");
    sk_gauge *inflight = sk_metrics_gauge(m, "inflight", "In flight.", NULL);
    /* A second series of the first family, registered after another family. */
    sk_counter *bad =
        sk_metrics_counter(m, "http_requests_total", NULL, "route=\"/orders\",status=\"400\"");
    sk_histogram *lat = sk_metrics_histogram(m, "latency_seconds", "Latency.", "route=\"/orders\"");
    sk_counter *bare = sk_metrics_counter(m, "bare_total", NULL, NULL);

    assert_non_null(bare);
    sk_counter_add(ok, 3);
    sk_counter_add(bad, 1);
    sk_gauge_set(inflight, -2);
    /* Values exact in binary, so the sum prints exactly. */
    sk_histogram_observe(lat, 0.0001220703125);
    sk_histogram_observe(lat, 0.125);
    sk_histogram_observe(lat, 0.5);
    sk_histogram_observe(lat, 3);
    sk_histogram_observe(lat, 20);

    assert_render(m, "# HELP http_requests_total Requests handled.\n"
                     "# TYPE http_requests_total counter\n"
                     "http_requests_total{route=\"/orders\",status=\"202\"} 3\n"
                     "http_requests_total{route=\"/orders\",status=\"400\"} 1\n"
                     "# HELP inflight In flight.\n"
                     "# TYPE inflight gauge\n"
                     "inflight -2\n"
                     "# HELP latency_seconds Latency.\n"
                     "# TYPE latency_seconds histogram\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"0.0005\"} 1\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"0.001\"} 1\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"0.0025\"} 1\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"0.005\"} 1\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"0.01\"} 1\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"0.025\"} 1\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"0.05\"} 1\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"0.1\"} 1\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"0.25\"} 2\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"0.5\"} 3\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"1\"} 3\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"2.5\"} 3\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"5\"} 4\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"10\"} 4\n"
                     "latency_seconds_bucket{route=\"/orders\",le=\"+Inf\"} 5\n"
                     "latency_seconds_sum{route=\"/orders\"} 23.6251220703125\n"
                     "latency_seconds_count{route=\"/orders\"} 5\n"
                     "# TYPE bare_total counter\n"
                     "bare_total 0\n");
    sk_metrics_destroy(m);
}

static void test_sk_metrics_render_appends_and_limit(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    sk_buf b;

    sk_counter_add(sk_metrics_counter(m, "c", NULL, NULL), 7);
    sk_buf_init(&b, 30);
    assert_int_equal(sk_buf_append_str(&b, "x\n"), SK_OK);
    assert_int_equal(sk_metrics_render(m, &b), SK_OK);
    assert_string_equal(b.data, "x\n# TYPE c counter\nc 7\n");

    /* Too small: the error, and the buffer as it was. */
    assert_non_null(sk_metrics_histogram(m, "h", NULL, NULL));
    size_t before = b.len;
    assert_int_equal(sk_metrics_render(m, &b), SK_ELIMIT);
    assert_msg_contains("sk_metrics_render: ");
    assert_msg_contains("limit");
    assert_int_equal(b.len, before);
    assert_string_equal(b.data, "x\n# TYPE c counter\nc 7\n");
    sk_buf_fini(&b);
    sk_metrics_destroy(m);
}

static void test_sk_metrics_render_every_alloc_failure(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();

    sk_counter_add(sk_metrics_counter(m, "c", "Help.", "a=\"b\""), 1);
    assert_non_null(sk_metrics_histogram(m, "h", NULL, NULL));
    for (long n = 0;; n++) {
        sk_buf b;
        sk_buf_init(&b, 1u << 20);
        sk_test_fail_alloc_at(n);
        sk_status st = sk_metrics_render(m, &b);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            assert_non_null(strstr(b.data, "h_count 0\n"));
            sk_buf_fini(&b);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_int_equal(b.len, 0);
        sk_buf_fini(&b);
    }
    sk_metrics_destroy(m);
}

/* Creating the first series of a family, then another series of it. */
static void test_sk_metrics_get_every_alloc_failure(void **state)
{
    (void)state;
    for (int which = 0; which < 3; which++) {
        for (long n = 0;; n++) {
            sk_metrics *m = new_metrics();
            void *first = NULL;
            void *second = NULL;

            sk_test_fail_alloc_at(n);
            switch (which) {
            case 0:
                first = sk_metrics_counter(m, "c", "Help.", "a=\"1\"");
                second = first != NULL ? sk_metrics_counter(m, "c", NULL, "a=\"2\"") : NULL;
                break;
            case 1:
                first = sk_metrics_gauge(m, "g", "Help.", NULL);
                second = first != NULL ? sk_metrics_gauge(m, "g", NULL, "a=\"2\"") : NULL;
                break;
            default:
                first = sk_metrics_histogram(m, "h", NULL, "a=\"1\"");
                second = first != NULL ? sk_metrics_histogram(m, "h", NULL, "a=\"2\"") : NULL;
                break;
            }
            sk_test_fail_alloc_at(-1);
            if (second != NULL) {
                sk_metrics_destroy(m);
                break;
            }
            assert_int_equal(sk_error_status(), SK_ENOMEM);
            assert_msg_contains("allocating metric");
            /* The registry is intact: whatever exists renders, and a retry works. */
            char *text = render(m);
            sk_free(text);
            assert_non_null(sk_metrics_counter(m, "other", NULL, NULL));
            sk_metrics_destroy(m);
        }
    }
}

static void test_sk_metrics_series_limit(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    char labels[32];

    /* Spread over several families so the linear look-ups stay short. */
    for (int i = 0; i < SK_METRICS_MAX_SERIES; i++) {
        char name[16];
        snprintf(name, sizeof(name), "f%d", i / 100);
        snprintf(labels, sizeof(labels), "i=\"%d\"", i);
        if (sk_metrics_counter(m, name, NULL, labels) == NULL) {
            fail_msg("series %d: %s", i, sk_error_message());
        }
    }
    assert_null(sk_metrics_counter(m, "f0", NULL, "i=\"new\""));
    assert_int_equal(sk_error_status(), SK_ELIMIT);
    assert_msg_contains("already holds 10000 series");
    /* Existing series are still found. */
    assert_non_null(sk_metrics_counter(m, "f0", NULL, "i=\"5\""));
    sk_metrics_destroy(m);
}

/* ---------------------------------------------------------------- concurrency */

enum { N_THREADS = 4, N_INCREMENTS = 100000 };

static void *worker(void *arg)
{
    sk_metrics *m = arg;
    /* Each thread looks the series up itself, racing on get-or-create. */
    sk_counter *c = sk_metrics_counter(m, "hits_total", "Hits.", "kind=\"x\"");
    sk_gauge *g = sk_metrics_gauge(m, "level", NULL, NULL);
    sk_histogram *h = sk_metrics_histogram(m, "lat", NULL, NULL);

    if (c == NULL || g == NULL || h == NULL) {
        return (void *)1;
    }
    for (int i = 0; i < N_INCREMENTS; i++) {
        sk_counter_add(c, 1);
        sk_gauge_add(g, (i & 1) != 0 ? 1 : -1);
        if ((i % 100) == 0) {
            sk_histogram_observe(h, 0.25);
        }
    }
    return NULL;
}

static void test_sk_metrics_concurrent_updates_exact(void **state)
{
    (void)state;
    sk_metrics *m = new_metrics();
    pthread_t t[N_THREADS];

    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, worker, m), 0);
    }
    /* Render while the workers run: must be safe, values may be anything so far. */
    for (int i = 0; i < 20; i++) {
        sk_free(render(m));
    }
    for (int i = 0; i < N_THREADS; i++) {
        void *rv = (void *)2;
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    char *text = render(m);
    assert_non_null(strstr(text, "hits_total{kind=\"x\"} 400000\n"));
    assert_non_null(strstr(text, "\nlevel 0\n"));
    assert_non_null(strstr(text, "lat_bucket{le=\"0.25\"} 4000\n"));
    assert_non_null(strstr(text, "lat_sum 1000\n"));
    assert_non_null(strstr(text, "lat_count 4000\n"));
    /* One family and one series each, despite the race. */
    const char *first = strstr(text, "# TYPE hits_total");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE hits_total"));
    sk_free(text);
    sk_metrics_destroy(m);
}

/* ---------------------------------------------------------------- helpers */

static void test_sk__obs_format_double(void **state)
{
    (void)state;
    char out[SK__OBS_DOUBLE_LEN];

    sk__obs_format_double(0.0, out);
    assert_string_equal(out, "0");
    sk__obs_format_double(0.1, out);
    assert_string_equal(out, "0.1");
    sk__obs_format_double(0.1 + 0.2, out);
    assert_string_equal(out, "0.30000000000000004");
    sk__obs_format_double(-2.5, out);
    assert_string_equal(out, "-2.5");
    sk__obs_format_double(1e300, out);
    assert_string_equal(out, "1e+300");
    sk__obs_format_double(NAN, out);
    assert_string_equal(out, "NaN");
    sk__obs_format_double(INFINITY, out);
    assert_string_equal(out, "+Inf");
    sk__obs_format_double(-INFINITY, out);
    assert_string_equal(out, "-Inf");
    sk__obs_format_double(-1.7976931348623157e308, out);
    assert_string_equal(out, "-1.7976931348623157e+308");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_sk_metrics_create_null_out, setup),
        cmocka_unit_test_setup(test_sk_metrics_create_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_metrics_render_empty, setup),
        cmocka_unit_test_setup(test_sk_metrics_counter_get_or_create, setup),
        cmocka_unit_test_setup(test_sk_metrics_names, setup),
        cmocka_unit_test_setup(test_sk_metrics_null_args, setup),
        cmocka_unit_test_setup(test_sk_metrics_type_conflict, setup),
        cmocka_unit_test_setup(test_sk_metrics_labels_checked, setup),
        cmocka_unit_test_setup(test_sk_metrics_help_limits_and_escaping, setup),
        cmocka_unit_test_setup(test_sk_gauge_signed, setup),
        cmocka_unit_test_setup(test_sk_counter_large, setup),
        cmocka_unit_test_setup(test_sk_histogram_empty_unlabelled, setup),
        cmocka_unit_test_setup(test_sk_histogram_bucket_edges, setup),
        cmocka_unit_test_setup(test_sk_metrics_render_exact, setup),
        cmocka_unit_test_setup(test_sk_metrics_render_appends_and_limit, setup),
        cmocka_unit_test_setup(test_sk_metrics_render_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_metrics_get_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_metrics_series_limit, setup),
        cmocka_unit_test_setup(test_sk_metrics_concurrent_updates_exact, setup),
        cmocka_unit_test_setup(test_sk__obs_format_double, setup),
    };
    return cmocka_run_group_tests_name("obs_metrics", tests, NULL, NULL);
}
