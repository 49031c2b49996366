/* SPDX-License-Identifier: MIT */
/*
 * Prometheus metrics registry. Families (one per metric name, in
 * registration order) hold series (one per label string). The lists only
 * grow, under the registry mutex; a series' values are atomics updated
 * without the lock, so a handle may be used from any thread while the
 * registry renders.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs_int.h"

const double sk__histogram_bounds[SK__HISTOGRAM_N_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

/* The same bounds as written in the "le" label, so the text never depends on printf. */
static const char *const bucket_le[SK__HISTOGRAM_N_BUCKETS] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1",    "0.25",  "0.5",    "1",     "2.5",  "5",     "10",
};

typedef enum kind { KIND_COUNTER = 0, KIND_GAUGE = 1, KIND_HISTOGRAM = 2 } kind;

static const char *const kind_name[] = { "counter", "gauge", "histogram" };

struct sk_counter {
    _Atomic uint64_t value;
};

struct sk_gauge {
    _Atomic int64_t value;
};

struct sk_histogram {
    /* Per-bucket (not cumulative) counts; the last one is (10, +Inf]. The
     * count is their sum, so _count always equals the +Inf bucket. */
    _Atomic uint64_t buckets[SK__HISTOGRAM_N_BUCKETS + 1];
    _Atomic uint64_t sum_bits; /* a double, stored by bit pattern for CAS */
};

typedef struct series {
    struct series *next;
    char *labels; /* "" when the series has no labels */
    union {
        sk_counter counter;
        sk_gauge gauge;
        sk_histogram histogram;
    } u;
} series;

typedef struct family {
    struct family *next;
    char *name;
    char *help; /* "" when none */
    kind kind;
    series *first;
    series *last;
} family;

struct sk_metrics {
    /* Protects the family list, each family's series list and n_series.
     * Never held while calling out of this file except into sk_buf. */
    pthread_mutex_t mu;
    family *first;
    family *last;
    size_t n_series;
};

static void lock(sk_metrics *m)
{
    if (pthread_mutex_lock(&m->mu) != 0) {
        abort(); /* only possible on a corrupted mutex */
    }
}

static void unlock(sk_metrics *m)
{
    if (pthread_mutex_unlock(&m->mu) != 0) {
        abort();
    }
}

void sk__obs_format_double(double v, char out[SK__OBS_DOUBLE_LEN])
{
    if (isnan(v)) {
        memcpy(out, "NaN", 4);
        return;
    }
    if (isinf(v)) {
        memcpy(out, v > 0 ? "+Inf" : "-Inf", 5);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        (void)snprintf(out, SK__OBS_DOUBLE_LEN, "%.*g", prec, v);
        if (strtod(out, NULL) == v) {
            return;
        }
    }
}

bool sk__metrics_name_is_valid(const char *name)
{
    size_t len;

    if (name == NULL) {
        return false;
    }
    len = strnlen(name, SK_METRICS_MAX_NAME + 1);
    if (len == 0 || len > SK_METRICS_MAX_NAME) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok) {
            return false;
        }
    }
    return true;
}

sk_status sk__metrics_labels_check(const char *fn, const char *labels, bool is_histogram)
{
    size_t len;
    bool in_quotes = false;
    size_t name_start = 0; /* start of the current label name, outside quotes */

    if (labels == NULL) {
        return SK_OK;
    }
    len = strnlen(labels, SK_METRICS_MAX_LABELS + 1);
    if (len > SK_METRICS_MAX_LABELS) {
        return SK_FAIL(SK_EINVAL, "%s: labels must be at most %d bytes", fn, SK_METRICS_MAX_LABELS);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)labels[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return SK_FAIL(SK_EINVAL, "%s: labels contain a control character at byte %zu", fn, i);
        }
        if (in_quotes) {
            if (c == '\\') {
                if (i + 1 >= len) {
                    break; /* reported below as an unterminated quote */
                }
                i++; /* the escaped character, whatever it is */
            } else if (c == '"') {
                in_quotes = false;
            }
            continue;
        }
        if (c == '"') {
            in_quotes = true;
        } else if (c == '{' || c == '}') {
            return SK_FAIL(SK_EINVAL, "%s: labels must not contain '%c' outside quotes (byte %zu)",
                           fn, c, i);
        } else if (c == ',') {
            name_start = i + 1;
        } else if (c == '=' && is_histogram) {
            size_t s = name_start;
            size_t e = i;
            while (s < e && (labels[s] == ' ' || labels[s] == '\t')) {
                s++;
            }
            while (e > s && (labels[e - 1] == ' ' || labels[e - 1] == '\t')) {
                e--;
            }
            if (e - s == 2 && labels[s] == 'l' && labels[s + 1] == 'e') {
                return SK_FAIL(SK_EINVAL,
                               "%s: label \"le\" is reserved for histogram buckets (byte %zu)", fn,
                               s);
            }
        }
    }
    if (in_quotes) {
        return SK_FAIL(SK_EINVAL, "%s: labels have an unterminated quoted value", fn);
    }
    return SK_OK;
}

sk_status sk_metrics_create(sk_metrics **out)
{
    sk_metrics *m;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_metrics_create: out must not be NULL");
    }
    *out = NULL;
    m = sk_calloc(1, sizeof(*m));
    if (m == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_metrics_create: allocating the registry");
    }
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        sk_free(m);
        return SK_FAIL(SK_ENOMEM, "sk_metrics_create: initialising the mutex");
    }
    *out = m;
    return SK_OK;
}

static void series_free(series *s)
{
    if (s != NULL) {
        sk_free(s->labels);
        sk_free(s);
    }
}

static void family_free(family *f)
{
    if (f == NULL) {
        return;
    }
    for (series *s = f->first; s != NULL;) {
        series *next = s->next;
        series_free(s);
        s = next;
    }
    sk_free(f->name);
    sk_free(f->help);
    sk_free(f);
}

void sk_metrics_destroy(sk_metrics *m)
{
    if (m == NULL) {
        return;
    }
    for (family *f = m->first; f != NULL;) {
        family *next = f->next;
        family_free(f);
        f = next;
    }
    (void)pthread_mutex_destroy(&m->mu);
    sk_free(m);
}

static family *family_find(const sk_metrics *m, const char *name)
{
    for (family *f = m->first; f != NULL; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

static series *series_find(const family *f, const char *labels)
{
    for (series *s = f->first; s != NULL; s = s->next) {
        if (strcmp(s->labels, labels) == 0) {
            return s;
        }
    }
    return NULL;
}

static void series_init_values(series *s, kind k)
{
    switch (k) {
    case KIND_COUNTER:
        atomic_init(&s->u.counter.value, 0);
        break;
    case KIND_GAUGE:
        atomic_init(&s->u.gauge.value, 0);
        break;
    case KIND_HISTOGRAM:
        for (size_t i = 0; i <= SK__HISTOGRAM_N_BUCKETS; i++) {
            atomic_init(&s->u.histogram.buckets[i], 0);
        }
        {
            double zero = 0.0;
            uint64_t bits;
            memcpy(&bits, &zero, sizeof(bits));
            atomic_init(&s->u.histogram.sum_bits, bits);
        }
        break;
    }
}

/* The get-or-create behind the three public getters; NULL with a message on failure. */
static series *get_or_create(
    sk_metrics *m, kind k, const char *fn, const char *name, const char *help, const char *labels)
{
    family *f;
    family *new_family = NULL;
    series *s;
    series *new_series = NULL;

    if (m == NULL) {
        (void)SK_FAIL(SK_EINVAL, "%s: m must not be NULL", fn);
        return NULL;
    }
    if (name == NULL) {
        (void)SK_FAIL(SK_EINVAL, "%s: name must not be NULL", fn);
        return NULL;
    }
    if (!sk__metrics_name_is_valid(name)) {
        (void)SK_FAIL(SK_EINVAL,
                      "%s: name \"%.*s\" must match [a-zA-Z_:][a-zA-Z0-9_:]* and be 1..%d bytes",
                      fn, SK_METRICS_MAX_NAME, name, SK_METRICS_MAX_NAME);
        return NULL;
    }
    if (help == NULL) {
        help = "";
    }
    if (strnlen(help, SK_METRICS_MAX_HELP + 1) > SK_METRICS_MAX_HELP) {
        (void)SK_FAIL(SK_EINVAL, "%s: help of \"%s\" must be at most %d bytes", fn, name,
                      SK_METRICS_MAX_HELP);
        return NULL;
    }
    if (sk__metrics_labels_check(fn, labels, k == KIND_HISTOGRAM) != SK_OK) {
        return NULL;
    }
    if (labels == NULL) {
        labels = "";
    }

    lock(m);
    f = family_find(m, name);
    if (f != NULL && f->kind != k) {
        (void)SK_FAIL(SK_EEXIST, "%s: metric \"%s\" is already registered as a %s", fn, name,
                      kind_name[f->kind]);
        s = NULL;
        goto out;
    }
    s = f != NULL ? series_find(f, labels) : NULL;
    if (s != NULL) {
        goto out;
    }
    if (m->n_series >= SK_METRICS_MAX_SERIES) {
        (void)SK_FAIL(SK_ELIMIT, "%s: the registry already holds %d series (adding \"%s\")", fn,
                      SK_METRICS_MAX_SERIES, name);
        goto out;
    }
    if (f == NULL) {
        new_family = sk_calloc(1, sizeof(*new_family));
        if (new_family == NULL) {
            goto oom;
        }
        new_family->kind = k;
        new_family->name = sk_strdup(name);
        new_family->help = sk_strdup(help);
        if (new_family->name == NULL || new_family->help == NULL) {
            goto oom;
        }
    }
    new_series = sk_calloc(1, sizeof(*new_series));
    if (new_series == NULL) {
        goto oom;
    }
    new_series->labels = sk_strdup(labels);
    if (new_series->labels == NULL) {
        goto oom;
    }
    series_init_values(new_series, k);

    if (new_family != NULL) {
        if (m->last != NULL) {
            m->last->next = new_family;
        } else {
            m->first = new_family;
        }
        m->last = new_family;
        f = new_family;
        new_family = NULL;
    }
    if (f->last != NULL) {
        f->last->next = new_series;
    } else {
        f->first = new_series;
    }
    f->last = new_series;
    m->n_series++;
    s = new_series;
    new_series = NULL;
    goto out;
oom:
    (void)SK_FAIL(SK_ENOMEM, "%s: allocating metric \"%s\"", fn, name);
out:
    unlock(m);
    series_free(new_series);
    family_free(new_family);
    return s;
}

sk_counter *
sk_metrics_counter(sk_metrics *m, const char *name, const char *help, const char *labels)
{
    series *s = get_or_create(m, KIND_COUNTER, "sk_metrics_counter", name, help, labels);
    return s != NULL ? &s->u.counter : NULL;
}

sk_gauge *sk_metrics_gauge(sk_metrics *m, const char *name, const char *help, const char *labels)
{
    series *s = get_or_create(m, KIND_GAUGE, "sk_metrics_gauge", name, help, labels);
    return s != NULL ? &s->u.gauge : NULL;
}

sk_histogram *
sk_metrics_histogram(sk_metrics *m, const char *name, const char *help, const char *labels)
{
    series *s = get_or_create(m, KIND_HISTOGRAM, "sk_metrics_histogram", name, help, labels);
    return s != NULL ? &s->u.histogram : NULL;
}

void sk_counter_add(sk_counter *c, uint64_t n)
{
    if (c != NULL) {
        atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
    }
}

void sk_gauge_set(sk_gauge *g, int64_t v)
{
    if (g != NULL) {
        atomic_store_explicit(&g->value, v, memory_order_relaxed);
    }
}

void sk_gauge_add(sk_gauge *g, int64_t delta)
{
    if (g != NULL) {
        /* Atomic signed arithmetic wraps (C11 7.17.7.5), so no overflow UB here. */
        atomic_fetch_add_explicit(&g->value, delta, memory_order_relaxed);
    }
}

void sk_histogram_observe(sk_histogram *h, double seconds)
{
    size_t i = 0;
    uint64_t old_bits;

    if (h == NULL || isnan(seconds)) {
        return; /* a NaN would poison _sum forever */
    }
    while (i < SK__HISTOGRAM_N_BUCKETS && !(seconds <= sk__histogram_bounds[i])) {
        i++;
    }
    /* The sum first: a concurrent render may then see a sum slightly ahead of
     * the count, never a count whose observations are missing from the sum. */
    old_bits = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    for (;;) {
        double sum;
        uint64_t new_bits;

        memcpy(&sum, &old_bits, sizeof(sum));
        sum += seconds;
        memcpy(&new_bits, &sum, sizeof(new_bits));
        if (atomic_compare_exchange_weak_explicit(&h->sum_bits, &old_bits, new_bits,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            break;
        }
    }
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
}

/* "# HELP name text" with backslash and newline escaped as the format requires. */
static sk_status render_help(sk_buf *out, const family *f)
{
    sk_status st;
    const char *p = f->help;

    if (p[0] == '\0') {
        return SK_OK;
    }
    st = sk_buf_appendf(out, "# HELP %s ", f->name);
    while (st == SK_OK && *p != '\0') {
        size_t run = strcspn(p, "\\\n");
        st = sk_buf_append(out, p, run);
        p += run;
        if (st == SK_OK && *p != '\0') {
            st = sk_buf_append_str(out, *p == '\\' ? "\\\\" : "\\n");
            p++;
        }
    }
    if (st == SK_OK) {
        st = sk_buf_append_str(out, "\n");
    }
    return st;
}

/* "name{labels}" or "name" when there are none. */
static sk_status render_name(sk_buf *out, const char *name, const char *suffix, const char *labels)
{
    if (labels[0] == '\0') {
        return sk_buf_appendf(out, "%s%s", name, suffix);
    }
    return sk_buf_appendf(out, "%s%s{%s}", name, suffix, labels);
}

static sk_status render_histogram(sk_buf *out, const family *f, const series *s)
{
    const sk_histogram *h = &s->u.histogram;
    const char *sep = s->labels[0] == '\0' ? "" : ",";
    char num[SK__OBS_DOUBLE_LEN];
    sk_status st = SK_OK;
    uint64_t cum = 0;
    uint64_t bits;
    double sum;

    for (size_t i = 0; i <= SK__HISTOGRAM_N_BUCKETS && st == SK_OK; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        st = sk_buf_appendf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, s->labels, sep,
                            i < SK__HISTOGRAM_N_BUCKETS ? bucket_le[i] : "+Inf",
                            (unsigned long long)cum);
    }
    bits = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    memcpy(&sum, &bits, sizeof(sum));
    sk__obs_format_double(sum, num);
    if (st == SK_OK) {
        st = render_name(out, f->name, "_sum", s->labels);
    }
    if (st == SK_OK) {
        st = sk_buf_appendf(out, " %s\n", num);
    }
    if (st == SK_OK) {
        st = render_name(out, f->name, "_count", s->labels);
    }
    if (st == SK_OK) {
        st = sk_buf_appendf(out, " %llu\n", (unsigned long long)cum);
    }
    return st;
}

static sk_status render_family(sk_buf *out, const family *f)
{
    sk_status st = render_help(out, f);

    if (st == SK_OK) {
        st = sk_buf_appendf(out, "# TYPE %s %s\n", f->name, kind_name[f->kind]);
    }
    for (const series *s = f->first; s != NULL && st == SK_OK; s = s->next) {
        switch (f->kind) {
        case KIND_COUNTER:
            st = render_name(out, f->name, "", s->labels);
            if (st == SK_OK) {
                st = sk_buf_appendf(out, " %llu\n",
                                    (unsigned long long)atomic_load_explicit(&s->u.counter.value,
                                                                             memory_order_relaxed));
            }
            break;
        case KIND_GAUGE:
            st = render_name(out, f->name, "", s->labels);
            if (st == SK_OK) {
                st = sk_buf_appendf(
                    out, " %lld\n",
                    (long long)atomic_load_explicit(&s->u.gauge.value, memory_order_relaxed));
            }
            break;
        case KIND_HISTOGRAM:
            st = render_histogram(out, f, s);
            break;
        }
    }
    return st;
}

sk_status sk_metrics_render(sk_metrics *m, sk_buf *out)
{
    sk_status st = SK_OK;
    size_t start;

    if (m == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_metrics_render: m must not be NULL");
    }
    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_metrics_render: out must not be NULL");
    }
    start = out->len;
    lock(m);
    for (const family *f = m->first; f != NULL && st == SK_OK; f = f->next) {
        st = render_family(out, f);
    }
    unlock(m);
    if (st != SK_OK) {
        /* Leave no half rendering behind. */
        out->len = start;
        if (out->data != NULL) {
            out->data[start] = '\0';
        }
        st = SK_WRAP(st, "sk_metrics_render");
    }
    return st;
}
