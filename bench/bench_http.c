/* SPDX-License-Identifier: MIT */
/*
 * bench_http: a closed-loop HTTP load generator on libcurl's multi interface
 * that can present a client certificate, so it can call a Skald service
 * directly over mTLS as well as through the gateway or nginx (wrk cannot).
 * For each target, in the same run: concurrency 1 for a clean latency
 * distribution (a fixed number of requests after a warm-up), then
 * concurrency N for throughput (a fixed duration after a warm-up). Every
 * request goes over a kept-alive connection opened during the warm-up: the
 * program counts the connections each measured phase had to open (0 means
 * no handshake in the steady state). Every answer must be 200 with the same
 * body as the first one (across all targets). Percentiles are exact: all
 * samples are kept and sorted (nearest rank). The first target is the
 * reference of the summary ("X adds N ms at p50 over REF", ratios).
 *
 * Run by bench/mesh_vs_nginx.sh; see usage() for the options.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <skald/core.h>

#include "cli.h"

#define MAX_TARGETS     8
#define MAX_URLS        16
#define MAX_PROCS       8
#define MAX_PIDS        16
#define MAX_ROUNDS      20
#define MAX_CONCURRENCY 1024
#define MAX_BODY        65536u
#define MAX_SAMPLES     (50u * 1000u * 1000u)
#define REQUEST_TIMEOUT_MS 10000L

/* A growable array of latencies in nanoseconds. */
typedef struct samples {
    int64_t *v;
    size_t n;
    size_t cap;
} samples;

/* One concurrent request stream: its easy handle keeps its options between requests. */
typedef struct slot {
    CURL *easy;
    size_t url_i; /* index of the URL it sends to */
    int64_t t0_ns;
    char *body; /* MAX_BODY bytes */
    size_t body_len;
    bool is_overflow;
} slot;

/* Processes whose CPU time is reported per request (e.g. "gateway", "orderview"). */
typedef struct proc_group {
    char *label;
    long pids[MAX_PIDS];
    size_t n_pids;
} proc_group;

/* What one phase measured. */
typedef struct phase_result {
    uint64_t n_ok;
    uint64_t n_err;
    long new_conns;
    int64_t elapsed_ns;
    int64_t client_cpu_ns;
    int64_t proc_cpu_us[MAX_PROCS];
} phase_result;

/* Totals of one kind of phase (c=1 or c=N) of a target over the rounds. */
typedef struct phase_totals {
    samples lat;
    double rps[MAX_ROUNDS];
    int n_rounds;
    uint64_t n_ok;
    uint64_t n_err;
    long new_conns;
    int64_t client_cpu_ns;
    int64_t proc_cpu_us[MAX_PROCS];
} phase_totals;

typedef struct target {
    char *name;
    char *urls[MAX_URLS];
    size_t n_urls;
    CURLM *multi;
    slot *slots;
    size_t n_slots;
    phase_totals one;  /* concurrency 1 */
    phase_totals many; /* concurrency N */
} target;

typedef struct options {
    target targets[MAX_TARGETS];
    size_t n_targets;
    proc_group procs[MAX_PROCS];
    size_t n_procs;
    const char *cert;
    const char *key;
    const char *cacert;
    long requests;
    long warmup_requests;
    long concurrency;
    long duration_s;
    long warmup_s;
    long rounds;
    bool is_fresh_handles; /* a new easy handle per request, as src/mesh/client.c does */
} options;

static options O;
static char *expected_body; /* the first 200 answer; every later one must equal it */
static size_t expected_len;

/* ---------------------------------------------------------------- helpers */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_http --target NAME=URL[,URL...] [--target ...]\n"
            "                  [--cert FILE --key FILE --cacert FILE]\n"
            "                  [--requests N] [--warmup-requests N] [--concurrency N]\n"
            "                  [--duration S] [--warmup S] [--rounds N]\n"
            "                  [--proc LABEL=PID[,PID...]]... [--fresh-handles]\n"
            "  --target       a contender; several URLs are used round robin; the first\n"
            "                 --target is the reference of the summary (up to %d)\n"
            "  --cert/--key/--cacert  client certificate, key and CA for https URLs\n"
            "                 (TLS 1.3; the server's chain is verified, not its host name)\n"
            "  --requests     measured requests at concurrency 1 (default 5000)\n"
            "  --warmup-requests  unmeasured requests before them (default 500)\n"
            "  --concurrency  requests in flight for the throughput phase (default 32)\n"
            "  --duration     seconds of the throughput phase (default 10)\n"
            "  --warmup       unmeasured seconds before it (default 2)\n"
            "  --rounds       repeat everything, rotating the target order (default 1)\n"
            "  --proc         processes whose CPU per request is reported (up to %d)\n"
            "  --fresh-handles  create, configure and free a curl easy handle per request (as\n"
            "                 the mesh client does) instead of reusing one per slot; measures\n"
            "                 that cost in bench_http's own CPU per request\n",
            MAX_TARGETS, MAX_PROCS);
}

static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static bool samples_add(samples *s, int64_t v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap == 0 ? 65536 : s->cap * 2;
        if (cap > MAX_SAMPLES) {
            return false;
        }
        int64_t *nv = sk_realloc(s->v, cap * sizeof(*nv));
        if (nv == NULL) {
            return false;
        }
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = v;
    return true;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Nearest-rank percentile of sorted samples, in ms. */
static double pct_ms(const samples *s, double q)
{
    if (s->n == 0) {
        return 0;
    }
    size_t rank = (size_t)(q * (double)s->n + 0.999999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > s->n) {
        rank = s->n;
    }
    return (double)s->v[rank - 1] / 1e6;
}

static double median_d(const double *v, int n)
{
    double tmp[MAX_ROUNDS];
    if (n == 0) {
        return 0;
    }
    memcpy(tmp, v, (size_t)n * sizeof(*v));
    qsort(tmp, (size_t)n, sizeof(*tmp), cmp_double);
    return n % 2 == 1 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static bool procs_sample(int64_t out[MAX_PROCS])
{
    for (size_t g = 0; g < O.n_procs; g++) {
        out[g] = 0;
        for (size_t i = 0; i < O.procs[g].n_pids; i++) {
            uint64_t t = 0;
            if (!cli_proc_cpu_us((int)O.procs[g].pids[i], &t)) {
                fprintf(stderr, "bench_http: process %ld (%s) is gone\n", O.procs[g].pids[i],
                        O.procs[g].label);
                return false;
            }
            out[g] += (int64_t)t;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- curl */

static size_t on_write(char *data, size_t size, size_t n, void *userdata)
{
    slot *s = userdata;
    size_t len = size * n;
    if (len > MAX_BODY - s->body_len) {
        s->is_overflow = true;
        return 0;
    }
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
    return len;
}

static bool easy_setup(slot *s, const char *url)
{
    CURL *e = s->easy;
    bool ok = curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_NOPROXY, "*") == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_WRITEDATA, s) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PRIVATE, s) == CURLE_OK;
    if (ok && O.cert != NULL) {
        /* As the mesh client does: chain checked against our CA, host name not (URI SANs only). */
        ok = curl_easy_setopt(e, CURLOPT_SSLCERT, O.cert) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_SSLKEY, O.key) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_CAINFO, O.cacert) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3) == CURLE_OK;
    }
    return ok;
}

static bool target_open(target *t, size_t n_slots)
{
    t->multi = curl_multi_init();
    t->slots = sk_calloc(n_slots, sizeof(*t->slots));
    if (t->multi == NULL || t->slots == NULL) {
        return false;
    }
    t->n_slots = n_slots;
    /* Room for one connection per slot and URL, so no warm connection is ever evicted. */
    if (curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, (long)(n_slots * t->n_urls + 8)) !=
        CURLM_OK) {
        return false;
    }
    for (size_t i = 0; i < n_slots; i++) {
        slot *s = &t->slots[i];
        s->easy = curl_easy_init();
        s->body = sk_malloc(MAX_BODY);
        s->url_i = i % t->n_urls;
        if (s->easy == NULL || s->body == NULL || !easy_setup(s, t->urls[s->url_i])) {
            return false;
        }
    }
    return true;
}

static void target_close(target *t)
{
    for (size_t i = 0; t->slots != NULL && i < t->n_slots; i++) {
        if (t->slots[i].easy != NULL) {
            curl_easy_cleanup(t->slots[i].easy);
        }
        sk_free(t->slots[i].body);
    }
    sk_free(t->slots);
    t->slots = NULL;
    if (t->multi != NULL) {
        curl_multi_cleanup(t->multi);
        t->multi = NULL;
    }
    sk_free(t->one.lat.v);
    sk_free(t->many.lat.v);
}

/* Start the next request of @p s; with @p is_rotating it goes to the target's next URL. */
static bool slot_start(target *t, slot *s, bool is_rotating)
{
    if (O.is_fresh_handles) {
        /* Pooled connections live in the multi handle, so a new easy handle still reuses them. */
        curl_easy_cleanup(s->easy);
        s->easy = curl_easy_init();
        if (s->easy == NULL) {
            return false;
        }
        if (!easy_setup(s, t->urls[(s->url_i + (is_rotating ? 1 : 0)) % t->n_urls])) {
            return false;
        }
    }
    if (is_rotating) {
        s->url_i = (s->url_i + 1) % t->n_urls;
        if (curl_easy_setopt(s->easy, CURLOPT_URL, t->urls[s->url_i]) != CURLE_OK) {
            return false;
        }
    }
    s->body_len = 0;
    s->is_overflow = false;
    s->t0_ns = sk_time_mono_ns();
    return curl_multi_add_handle(t->multi, s->easy) == CURLM_OK;
}

/* Check one finished transfer; false (with a message for the first few) when it failed. */
static bool answer_ok(const target *t, slot *s, CURLcode rc, uint64_t n_err)
{
    long code = 0;
    char why[160];

    if (rc != CURLE_OK) {
        snprintf(why, sizeof(why), "%s", curl_easy_strerror(rc));
    } else if (curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK ||
               code != 200) {
        snprintf(why, sizeof(why), "HTTP status %ld: %.*s", code,
                 (int)(s->body_len > 100 ? 100 : s->body_len), s->body);
    } else if (s->is_overflow) {
        snprintf(why, sizeof(why), "body larger than %u bytes", MAX_BODY);
    } else if (expected_body == NULL) {
        expected_body = sk_malloc(s->body_len + 1);
        if (expected_body == NULL) {
            snprintf(why, sizeof(why), "out of memory");
        } else {
            memcpy(expected_body, s->body, s->body_len);
            expected_body[s->body_len] = '\0';
            expected_len = s->body_len;
            return true;
        }
    } else if (s->body_len != expected_len || memcmp(s->body, expected_body, expected_len) != 0) {
        snprintf(why, sizeof(why), "body differs from the first answer: %.*s",
                 (int)(s->body_len > 100 ? 100 : s->body_len), s->body);
    } else {
        return true;
    }
    if (n_err < 5) {
        fprintf(stderr, "bench_http: %s %s: %s\n", t->name, t->urls[s->url_i], why);
    }
    return false;
}

/*
 * Closed loop over @p conc slots: each slot sends its next request as soon as
 * the previous one is answered, until @p n_requests are done (when > 0) or
 * until @p duration_ns has passed (requests in flight then still finish and
 * count). Latencies go to @p lat when it is not NULL.
 */
static bool run_phase(target *t, size_t conc, uint64_t n_requests, int64_t duration_ns,
                      samples *lat, phase_result *res)
{
    uint64_t started = 0;
    size_t active = 0;
    int64_t t0, end_ns, last_ns;
    int64_t cpu0_us[MAX_PROCS] = { 0 }, cpu1_us[MAX_PROCS] = { 0 };
    int64_t cpu0;
    bool ok = true;
    /*
     * With at least one slot per URL each slot keeps one URL (and so one
     * connection), as wrk does; sharing every URL among the slots would let
     * the number of connections each server needs drift above what the
     * warm-up opened. Fewer slots than URLs (c=1) go round robin.
     */
    bool is_rotating = conc < t->n_urls;

    memset(res, 0, sizeof(*res));
    for (size_t i = 0; i < conc; i++) {
        slot *s = &t->slots[i];
        s->url_i = i % t->n_urls;
        if (curl_easy_setopt(s->easy, CURLOPT_URL, t->urls[s->url_i]) != CURLE_OK) {
            return false;
        }
    }
    if (!procs_sample(cpu0_us)) {
        return false;
    }
    cpu0 = (int64_t)cli_self_cpu_us() * 1000;
    t0 = sk_time_mono_ns();
    end_ns = t0 + duration_ns;
    last_ns = t0;
    for (size_t i = 0; i < conc && (n_requests == 0 || started < n_requests); i++) {
        if (!slot_start(t, &t->slots[i], is_rotating)) {
            fprintf(stderr, "bench_http: %s: starting a transfer failed\n", t->name);
            return false;
        }
        started++;
        active++;
    }
    while (active > 0) {
        int running = 0;
        int n_left = 0;
        CURLMsg *msg;

        if (curl_multi_perform(t->multi, &running) != CURLM_OK) {
            fprintf(stderr, "bench_http: %s: curl_multi_perform failed\n", t->name);
            ok = false;
            break;
        }
        while ((msg = curl_multi_info_read(t->multi, &n_left)) != NULL) {
            slot *s = NULL;
            long nc = 0;
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            CURL *e = msg->easy_handle;
            CURLcode rc = msg->data.result;
            int64_t now = sk_time_mono_ns();
            if (curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s) != CURLE_OK || s == NULL) {
                ok = false;
                break;
            }
            (void)curl_multi_remove_handle(t->multi, e); /* cannot fail for a handle it holds */
            active--;
            last_ns = now;
            if (curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &nc) == CURLE_OK) {
                res->new_conns += nc;
            }
            if (answer_ok(t, s, rc, res->n_err)) {
                res->n_ok++;
                if (lat != NULL && !samples_add(lat, now - s->t0_ns)) {
                    fprintf(stderr, "bench_http: too many samples (at most %u)\n", MAX_SAMPLES);
                    ok = false;
                }
            } else {
                res->n_err++;
            }
            bool more = n_requests > 0 ? started < n_requests : now < end_ns;
            if (ok && more) {
                if (!slot_start(t, s, is_rotating)) {
                    fprintf(stderr, "bench_http: %s: starting a transfer failed\n", t->name);
                    ok = false;
                } else {
                    started++;
                    active++;
                }
            }
        }
        if (!ok) {
            break;
        }
        if (active > 0 && curl_multi_poll(t->multi, NULL, 0, 100, NULL) != CURLM_OK) {
            fprintf(stderr, "bench_http: %s: curl_multi_poll failed\n", t->name);
            ok = false;
        }
    }
    /* After a failure leave no transfer half done (removing one that is not added is fine). */
    for (size_t i = 0; !ok && i < conc; i++) {
        (void)curl_multi_remove_handle(t->multi, t->slots[i].easy);
    }
    res->elapsed_ns = last_ns - t0;
    res->client_cpu_ns = (int64_t)cli_self_cpu_us() * 1000 - cpu0;
    if (!procs_sample(cpu1_us)) {
        return false;
    }
    for (size_t g = 0; g < O.n_procs; g++) {
        res->proc_cpu_us[g] = cpu1_us[g] - cpu0_us[g];
    }
    return ok;
}

/* ---------------------------------------------------------------- reporting */

static double us_per_req(int64_t cpu_us, uint64_t n)
{
    return n > 0 ? (double)cpu_us / (double)n : 0;
}

static void print_cpu(int64_t client_cpu_ns, const int64_t *cpu_us, uint64_t n)
{
    printf("  CPU us/req: bench_http %.1f", n > 0 ? (double)client_cpu_ns / 1e3 / (double)n : 0);
    for (size_t g = 0; g < O.n_procs; g++) {
        printf(", %s %.1f", O.procs[g].label, us_per_req(cpu_us[g], n));
    }
}

static bool measure(target *t, int round, bool is_many, phase_totals *tot)
{
    phase_result warm, res;
    size_t conc = is_many ? (size_t)O.concurrency : 1;
    size_t first = tot->lat.n;
    samples one_round = { 0 };

    if (!run_phase(t, conc, is_many ? 0 : (uint64_t)O.warmup_requests,
                   is_many ? O.warmup_s * 1000000000LL : 0, NULL, &warm)) {
        return false;
    }
    if (warm.n_err > 0) {
        fprintf(stderr, "bench_http: %s: %" PRIu64 " failed requests during the warm-up\n",
                t->name, warm.n_err);
        return false;
    }
    if (!run_phase(t, conc, is_many ? 0 : (uint64_t)O.requests,
                   is_many ? O.duration_s * 1000000000LL : 0, &tot->lat, &res)) {
        return false;
    }
    double rps = res.elapsed_ns > 0 ? (double)res.n_ok / ((double)res.elapsed_ns / 1e9) : 0;
    tot->rps[tot->n_rounds++] = rps;
    tot->n_ok += res.n_ok;
    tot->n_err += res.n_err;
    tot->new_conns += res.new_conns;
    tot->client_cpu_ns += res.client_cpu_ns;
    for (size_t g = 0; g < O.n_procs; g++) {
        tot->proc_cpu_us[g] += res.proc_cpu_us[g];
    }
    /* This round's percentiles from a sorted copy; the pooled ones are computed at the end. */
    one_round.n = one_round.cap = tot->lat.n - first;
    one_round.v = sk_malloc((one_round.n > 0 ? one_round.n : 1) * sizeof(int64_t));
    if (one_round.v == NULL) {
        return false;
    }
    memcpy(one_round.v, tot->lat.v + first, one_round.n * sizeof(int64_t));
    qsort(one_round.v, one_round.n, sizeof(int64_t), cmp_i64);
    printf("round %d %-8s c=%-4zu %7" PRIu64 " req %5.1f s %8.0f req/s  p50 %.3f p90 %.3f "
           "p99 %.3f max %.3f ms  errors %" PRIu64 "  new connections %ld (warm-up %ld)\n",
           round, t->name, conc, res.n_ok, (double)res.elapsed_ns / 1e9, rps,
           pct_ms(&one_round, 0.50), pct_ms(&one_round, 0.90), pct_ms(&one_round, 0.99),
           pct_ms(&one_round, 1.0), res.n_err, res.new_conns, warm.new_conns);
    print_cpu(res.client_cpu_ns, res.proc_cpu_us, res.n_ok);
    printf("\n");
    fflush(stdout);
    sk_free(one_round.v);
    return true;
}

static void print_ratio_line(const target *a, const target *b)
{
    double a50 = pct_ms(&a->one.lat, 0.50), b50 = pct_ms(&b->one.lat, 0.50);
    double a99 = pct_ms(&a->one.lat, 0.99), b99 = pct_ms(&b->one.lat, 0.99);
    double arps = median_d(a->many.rps, a->many.n_rounds);
    double brps = median_d(b->many.rps, b->many.n_rounds);
    double a1 = median_d(a->one.rps, a->one.n_rounds), b1 = median_d(b->one.rps, b->one.n_rounds);

    printf("%s/%s: req/s c=%ld %.2f, req/s c=1 %.2f, p50 c=1 %.2f, p99 c=1 %.2f, "
           "p50 c=%ld %.2f, p99 c=%ld %.2f\n",
           a->name, b->name, O.concurrency, brps > 0 ? arps / brps : 0, b1 > 0 ? a1 / b1 : 0,
           b50 > 0 ? a50 / b50 : 0, b99 > 0 ? a99 / b99 : 0, O.concurrency,
           pct_ms(&b->many.lat, 0.5) > 0 ? pct_ms(&a->many.lat, 0.5) / pct_ms(&b->many.lat, 0.5)
                                        : 0,
           O.concurrency,
           pct_ms(&b->many.lat, 0.99) > 0
               ? pct_ms(&a->many.lat, 0.99) / pct_ms(&b->many.lat, 0.99)
               : 0);
}

static void summary(void)
{
    printf("\n| target | c=1 req/s | c=1 p50 ms | p90 ms | p99 ms | c=%ld req/s | c=%ld p50 ms | "
           "p90 ms | p99 ms | new conns | errors | bench_http CPU us/req",
           O.concurrency, O.concurrency);
    for (size_t g = 0; g < O.n_procs; g++) {
        printf(" | %s CPU us/req", O.procs[g].label);
    }
    printf(" |\n|---|---|---|---|---|---|---|---|---|---|---|---");
    for (size_t g = 0; g < O.n_procs; g++) {
        printf("|---");
    }
    printf("|\n");
    for (size_t i = 0; i < O.n_targets; i++) {
        target *t = &O.targets[i];
        qsort(t->one.lat.v, t->one.lat.n, sizeof(int64_t), cmp_i64);
        qsort(t->many.lat.v, t->many.lat.n, sizeof(int64_t), cmp_i64);
        uint64_t n = t->many.n_ok;
        printf("| %s | %.0f | %.3f | %.3f | %.3f | %.0f | %.3f | %.3f | %.3f | %ld | %" PRIu64
               " | %.1f",
               t->name, median_d(t->one.rps, t->one.n_rounds), pct_ms(&t->one.lat, 0.5),
               pct_ms(&t->one.lat, 0.9), pct_ms(&t->one.lat, 0.99),
               median_d(t->many.rps, t->many.n_rounds), pct_ms(&t->many.lat, 0.5),
               pct_ms(&t->many.lat, 0.9), pct_ms(&t->many.lat, 0.99),
               t->one.new_conns + t->many.new_conns, t->one.n_err + t->many.n_err,
               n > 0 ? (double)t->many.client_cpu_ns / 1e3 / (double)n : 0);
        for (size_t g = 0; g < O.n_procs; g++) {
            printf(" | %.1f", us_per_req(t->many.proc_cpu_us[g], n));
        }
        printf(" |\n");
    }
    printf("(latency percentiles pooled over %ld round(s), nearest rank over all samples; req/s is "
           "the median over rounds; CPU per request from the c=%ld phases)\n\n",
           O.rounds, O.concurrency);
    const target *ref = &O.targets[0];
    for (size_t i = 1; i < O.n_targets; i++) {
        const target *t = &O.targets[i];
        printf("%s adds %.3f ms at p50 over %s (c=1; p90 %+.3f ms, p99 %+.3f ms; c=%ld p50 "
               "%+.3f ms)\n",
               t->name, pct_ms(&t->one.lat, 0.5) - pct_ms(&ref->one.lat, 0.5), ref->name,
               pct_ms(&t->one.lat, 0.9) - pct_ms(&ref->one.lat, 0.9),
               pct_ms(&t->one.lat, 0.99) - pct_ms(&ref->one.lat, 0.99), O.concurrency,
               pct_ms(&t->many.lat, 0.5) - pct_ms(&ref->many.lat, 0.5));
    }
    for (size_t i = 1; i < O.n_targets; i++) {
        print_ratio_line(&O.targets[i], ref);
    }
    for (size_t i = 1; i < O.n_targets; i++) {
        for (size_t j = i + 1; j < O.n_targets; j++) {
            print_ratio_line(&O.targets[i], &O.targets[j]);
        }
    }
}

/* ---------------------------------------------------------------- arguments */

/* "NAME=A,B,C": NAME and up to @p max comma-separated values, each copied. */
static bool split_spec(const char *spec, char **name, char **vals, size_t max, size_t *n)
{
    const char *eq = strchr(spec, '=');
    *n = 0;
    if (eq == NULL || eq == spec || eq[1] == '\0') {
        return false;
    }
    *name = sk_strndup(spec, (size_t)(eq - spec));
    if (*name == NULL) {
        return false;
    }
    const char *p = eq + 1;
    while (*p != '\0') {
        const char *c = strchr(p, ',');
        size_t len = c != NULL ? (size_t)(c - p) : strlen(p);
        if (len == 0 || *n == max) {
            return false;
        }
        vals[*n] = sk_strndup(p, len);
        if (vals[*n] == NULL) {
            return false;
        }
        (*n)++;
        p += len + (c != NULL ? 1 : 0);
        if (c != NULL && *p == '\0') {
            return false;
        }
    }
    return true;
}

static bool parse_args(int argc, char **argv)
{
    O.requests = 5000;
    O.warmup_requests = 500;
    O.concurrency = 32;
    O.duration_s = 10;
    O.warmup_s = 2;
    O.rounds = 1;
    for (int i = 1; i < argc; i += 2) {
        const char *opt = argv[i];
        if (strcmp(opt, "--fresh-handles") == 0) {
            O.is_fresh_handles = true;
            i--; /* no value */
            continue;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = val != NULL;
        if (!ok) {
            fprintf(stderr, "bench_http: %s: missing value\n", opt);
        } else if (strcmp(opt, "--target") == 0) {
            if (O.n_targets == MAX_TARGETS) {
                fprintf(stderr, "bench_http: --target: at most %d\n", MAX_TARGETS);
                return false;
            }
            target *t = &O.targets[O.n_targets++];
            ok = split_spec(val, &t->name, t->urls, MAX_URLS, &t->n_urls);
            for (size_t u = 0; ok && u < t->n_urls; u++) {
                ok = strncmp(t->urls[u], "http://", 7) == 0 ||
                     strncmp(t->urls[u], "https://", 8) == 0;
            }
            if (!ok) {
                fprintf(stderr,
                        "bench_http: --target: expected NAME=URL[,URL...] with 1..%d http:// or "
                        "https:// URLs, got \"%.200s\"\n",
                        MAX_URLS, val);
            }
        } else if (strcmp(opt, "--proc") == 0) {
            char *pids[MAX_PIDS] = { 0 };
            size_t n = 0;
            if (O.n_procs == MAX_PROCS) {
                fprintf(stderr, "bench_http: --proc: at most %d\n", MAX_PROCS);
                return false;
            }
            proc_group *g = &O.procs[O.n_procs++];
            ok = split_spec(val, &g->label, pids, MAX_PIDS, &n);
            for (size_t k = 0; k < n; k++) {
                ok = ok && parse_long(pids[k], 1, 4194304, &g->pids[k]);
                sk_free(pids[k]);
            }
            g->n_pids = n;
            if (!ok) {
                fprintf(stderr, "bench_http: --proc: expected LABEL=PID[,PID...] (1..%d), got \"%.200s\"\n",
                        MAX_PIDS, val);
            }
        } else if (strcmp(opt, "--cert") == 0) {
            O.cert = val;
        } else if (strcmp(opt, "--key") == 0) {
            O.key = val;
        } else if (strcmp(opt, "--cacert") == 0) {
            O.cacert = val;
        } else {
            struct {
                const char *name;
                long *out;
                long min, max;
            } nums[] = {
                { "--requests", &O.requests, 1, 10000000 },
                { "--warmup-requests", &O.warmup_requests, 1, 10000000 },
                { "--concurrency", &O.concurrency, 1, MAX_CONCURRENCY },
                { "--duration", &O.duration_s, 1, 600 },
                { "--warmup", &O.warmup_s, 1, 600 },
                { "--rounds", &O.rounds, 1, MAX_ROUNDS },
            };
            size_t k = 0;
            while (k < sizeof(nums) / sizeof(nums[0]) && strcmp(opt, nums[k].name) != 0) {
                k++;
            }
            if (k == sizeof(nums) / sizeof(nums[0])) {
                fprintf(stderr, "bench_http: unknown option %s\n", opt);
                ok = false;
            } else if (!parse_long(val, nums[k].min, nums[k].max, nums[k].out)) {
                fprintf(stderr, "bench_http: %s: expected an integer in %ld..%ld, got \"%.40s\"\n",
                        opt, nums[k].min, nums[k].max, val);
                ok = false;
            }
        }
        if (!ok) {
            return false;
        }
    }
    if (O.n_targets == 0) {
        fprintf(stderr, "bench_http: at least one --target is required\n");
        return false;
    }
    if ((O.cert != NULL) != (O.key != NULL) || (O.cert != NULL) != (O.cacert != NULL)) {
        fprintf(stderr, "bench_http: --cert, --key and --cacert go together\n");
        return false;
    }
    for (size_t i = 0; i < O.n_targets; i++) {
        for (size_t u = 0; u < O.targets[i].n_urls; u++) {
            if (strncmp(O.targets[i].urls[u], "https://", 8) == 0 && O.cert == NULL) {
                fprintf(stderr, "bench_http: %s: https needs --cert, --key and --cacert\n",
                        O.targets[i].name);
                return false;
            }
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(O.targets[i].name, O.targets[j].name) == 0) {
                fprintf(stderr, "bench_http: --target %s given twice\n", O.targets[i].name);
                return false;
            }
        }
    }
    for (const char *const *f = (const char *const[]){ O.cert, O.key, O.cacert, NULL };
         O.cert != NULL && *f != NULL; f++) {
        if (access(*f, R_OK) != 0) {
            fprintf(stderr, "bench_http: %s: %s\n", *f, strerror(errno));
            return false;
        }
    }
    return true;
}

static void options_free(void)
{
    for (size_t i = 0; i < O.n_targets; i++) {
        sk_free(O.targets[i].name);
        for (size_t u = 0; u < O.targets[i].n_urls; u++) {
            sk_free(O.targets[i].urls[u]);
        }
    }
    for (size_t g = 0; g < O.n_procs; g++) {
        sk_free(O.procs[g].label);
    }
}

int main(int argc, char **argv)
{
    int rc = 1;
    bool is_curl_init = false;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage();
        return 2;
    }
    if (sk_init("bench_http") != SK_OK) {
        fprintf(stderr, "bench_http: %s\n", sk_error_message());
        return 1;
    }
    if (!parse_args(argc, argv)) {
        options_free();
        sk_shutdown();
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "bench_http: curl_global_init failed\n");
        goto out;
    }
    is_curl_init = true;
    for (size_t i = 0; i < O.n_targets; i++) {
        if (!target_open(&O.targets[i], (size_t)O.concurrency)) {
            fprintf(stderr, "bench_http: %s: setting up curl failed (out of memory?)\n",
                    O.targets[i].name);
            goto out;
        }
    }
    printf("bench_http: %zu target(s); per round and target: %ld warm-up + %ld measured requests "
           "at c=1, then %ld s warm-up + %ld s measured at c=%ld; %ld round(s); %s; %s\n",
           O.n_targets, O.warmup_requests, O.requests, O.warmup_s, O.duration_s, O.concurrency,
           O.rounds,
           O.is_fresh_handles ? "a new easy handle per request" : "one easy handle per slot",
           curl_version());
    for (size_t i = 0; i < O.n_targets; i++) {
        printf("  %s:", O.targets[i].name);
        for (size_t u = 0; u < O.targets[i].n_urls; u++) {
            printf(" %s", O.targets[i].urls[u]);
        }
        printf("\n");
    }
    for (long r = 0; r < O.rounds; r++) {
        /* Rotate the order each round so that no target always runs first (or last). */
        for (size_t k = 0; k < O.n_targets; k++) {
            target *t = &O.targets[(k + (size_t)r) % O.n_targets];
            if (!measure(t, (int)r + 1, false, &t->one) || !measure(t, (int)r + 1, true, &t->many)) {
                goto out;
            }
        }
    }
    summary();
    rc = 0;
    for (size_t i = 0; i < O.n_targets; i++) {
        if (O.targets[i].one.n_err + O.targets[i].many.n_err > 0) {
            fprintf(stderr, "bench_http: %s: failed requests (see above)\n", O.targets[i].name);
            rc = 1;
        }
    }
out:
    for (size_t i = 0; i < O.n_targets; i++) {
        target_close(&O.targets[i]);
    }
    if (is_curl_init) {
        curl_global_cleanup();
    }
    sk_free(expected_body);
    options_free();
    sk_shutdown();
    return rc;
}
