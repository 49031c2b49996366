/* SPDX-License-Identifier: MIT */
/*
 * System test of outlier detection at the gateway (issue: "an instance
 * killed stops receiving traffic within one outlier-detection interval and
 * leaves the registry within its TTL; a restarted one rejoins"), shown with
 * an instance that is alive but broken:
 *   1. product reads through the gateway succeed and reach both orderview
 *      instances; the gateway's /mesh/upstreams shows both healthy;
 *   2. orderview-2 is hung with SIGSTOP (the kernel still accepts TCP into
 *      the backlog, nothing answers) while clients keep reading: every read
 *      still answers 200, the tries that hit orderview-2 pay the per-try
 *      timeout (2.5 s) and are retried on orderview-1;
 *   3. the gateway ejects orderview-2 after consecutive5xxErrors (5) failed
 *      tries, reported "ejected" by /mesh/upstreams, and the reads started
 *      after that no longer pay the per-try timeout;
 *   4. SIGCONT: orderview-2 is healthy at the gateway again and answers reads
 *      (as soon as it re-registers when discovery dropped it meanwhile, else
 *      within baseEjectionTime + interval);
 *   5. `skald up` stops on SIGTERM with exit 0.
 *
 * Why several clients and not one: a hung instance stops heartbeating and
 * leaves the registry (hence the gateway's endpoint set, ejection state
 * included) within the discovery TTL (6 s). One client reading in sequence
 * makes at most one failed try per 2.5 s, so it never reaches 5 failures in
 * time and the registry, not outlier detection, would take the instance out.
 * N_CLIENTS sequential readers make the 5 failing tries overlap, so they all
 * time out together one per-try timeout after the hang.
 *
 * Policy of the gateway's orderview upstream in skald.yaml: outlierDetection
 * {consecutive5xxErrors 5, interval 5s, baseEjectionTime 30s,
 * maxEjectionPercent 50}, retries {attempts 2, perTryTimeout 2500ms, retryOn
 * connect-failure,reset,5xx}, timeout 5s. Every wait polls with a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sk_test.h"
#include "sk_test_system.h"
#include <skald/discovery.h>

/* The orderview policy of skald.yaml (ms). */
#define PER_TRY_TIMEOUT_MS 2500
#define CALL_TIMEOUT_MS    5000
#define INTERVAL_MS        5000
#define BASE_EJECTION_MS   30000
/* Test shape. */
#define N_CLIENTS    6     /* concurrent sequential readers */
#define MAX_SAMPLES  20000 /* per client */
#define READ_GAP_MS  5     /* between one client's reads */
#define READY_MS     40000 /* both orderview instances listed ready, read models seeded (ASan, busy machine) */
#define EJECT_MS     (PER_TRY_TIMEOUT_MS + INTERVAL_MS) /* hang -> "ejected" at the gateway */
#define AFTER_MS     1000  /* reads kept going after the ejection was seen (then SIGCONT) */
#define FAST_MS      1000  /* "well under" the per-try timeout */
#define MIN_FAST     20    /* reads started after the ejection, at least */
#define REJOIN_MS    10000 /* SIGCONT -> listed again when discovery had dropped it */
#define SLACK_MS     2500  /* polling and scheduling on a shared 2-core machine */
/* orderview-2 stays stopped well under skald up's watchdog (30 s of silence, then SIGKILL). */
_Static_assert(EJECT_MS + SLACK_MS + AFTER_MS + CALL_TIMEOUT_MS <= 25000,
               "orderview-2 would be stopped long enough for skald up's watchdog to kill it");

static sk_test_system g_sys;
static pid_t g_stopped_pid; /* orderview-2 while SIGSTOPped, for the teardown */

static void pause_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void unique(char *out, size_t len, const char *prefix)
{
    char id[SK_UUID_LEN];
    sk_uuid7(id);
    snprintf(out, len, "%s-%.8s", prefix, id + 28);
}

/* ---------------------------------------------------------------- skald status */

/* Address of @p instance as `skald status` lists it (ready); false when absent or not ready. */
static bool status_address(const char *instance, char *addr, size_t addr_len)
{
    char *text = NULL;
    int code = -1;
    bool found = false;
    if (sk_test_system_cli(&g_sys, "status", &text, &code) != SK_OK || code != 0) {
        sk_free(text);
        return false;
    }
    for (char *line = text; line != NULL && *line != '\0' && !found;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        char inst[64], svc[64], a[64], pid[16], health[32];
        if (sscanf(line, "%63s %63s %63s %15s %31s", inst, svc, a, pid, health) == 5 &&
            strcmp(inst, instance) == 0 && strcmp(health, "ready") == 0) {
            snprintf(addr, addr_len, "%s", a);
            found = true;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    sk_free(text);
    return found;
}

/* ---------------------------------------------------------------- gateway /mesh/upstreams */

typedef enum ep_state { EP_ABSENT, EP_HEALTHY, EP_EJECTED } ep_state;

/*
 * State of the orderview endpoint @p addr at the gateway; @p body_out (when
 * not NULL) gets a copy of the whole answer (caller sk_frees).
 */
static ep_state gateway_ep_state(const char *addr, int64_t *consecutive_5xx, char **body_out)
{
    sk_test_http r;
    ep_state s = EP_ABSENT;
    if (sk_test_http_send(&g_sys, "GET", "/mesh/upstreams", NULL, 0, NULL, &r) != SK_OK) {
        fail_msg("GET /mesh/upstreams on the gateway: %s", sk_error_message());
    }
    if (r.status != 200) {
        fail_msg("GET /mesh/upstreams on the gateway: HTTP %d: %s", r.status, r.body);
    }
    const json_t *eps = json_object_get(json_object_get(r.json, "upstreams"), "orderview");
    if (!json_is_array(eps)) {
        fail_msg("gateway /mesh/upstreams has no orderview array: %s", r.body);
    }
    for (size_t i = 0; i < json_array_size(eps); i++) {
        const json_t *ep = json_array_get(eps, i);
        const char *a = json_string_value(json_object_get(ep, "address"));
        const char *state = json_string_value(json_object_get(ep, "state"));
        if (a == NULL || state == NULL || strcmp(a, addr) != 0) {
            continue;
        }
        if (strcmp(state, "healthy") == 0) {
            s = EP_HEALTHY;
        } else if (strcmp(state, "ejected") == 0) {
            s = EP_EJECTED;
        } else {
            fail_msg("gateway /mesh/upstreams: endpoint %s in unknown state \"%s\"", a, state);
        }
        if (consecutive_5xx != NULL) {
            *consecutive_5xx = (int64_t)json_integer_value(json_object_get(ep, "consecutive_5xx"));
        }
    }
    if (body_out != NULL) {
        *body_out = sk_strdup(r.body);
    }
    sk_test_http_fini(&r);
    return s;
}

/* Value of the gateway metric line starting with @p prefix ("name{labels} "); -1 when absent. */
static long long gateway_metric(const char *prefix)
{
    sk_test_http r;
    long long v = -1;
    if (sk_test_http_send(&g_sys, "GET", "/metrics", NULL, 0, NULL, &r) != SK_OK || r.status != 200) {
        fail_msg("GET /metrics on the gateway failed");
    }
    for (const char *p = r.body; (p = strstr(p, prefix)) != NULL; p++) {
        if (p == r.body || p[-1] == '\n') {
            v = (long long)strtod(p + strlen(prefix), NULL);
            break;
        }
    }
    sk_test_http_fini(&r);
    return v;
}

/* GetProduct reads answered 200 by the instance at @p addr (its /metrics over mTLS); -1 on failure. */
static int64_t product_reads(const char *addr)
{
    sk_test_http r;
    int64_t total = -1;
    if (sk_test_service_get(&g_sys, addr, "/metrics", &r) != SK_OK) {
        return -1;
    }
    if (r.status == 200) {
        total = 0;
        for (const char *line = r.body; line != NULL && *line != '\0';) {
            const char *end = strchr(line, '\n');
            size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
            char buf[512];
            snprintf(buf, sizeof(buf), "%.*s", (int)(len < sizeof(buf) - 1 ? len : sizeof(buf) - 1),
                     line);
            if (strncmp(buf, "sk_cqrs_requests_total{", 23) == 0 &&
                strstr(buf, "type=\"GetProduct\"") != NULL && strstr(buf, "status=\"200\"") != NULL) {
                const char *v = strrchr(buf, ' ');
                total += v != NULL ? (int64_t)strtod(v + 1, NULL) : 0;
            }
            line = end != NULL ? end + 1 : NULL;
        }
    }
    sk_test_http_fini(&r);
    return total;
}

/* ---------------------------------------------------------------- readers */

typedef struct sample {
    int64_t start_ms;
    int64_t latency_ms;
    int status; /* HTTP status, 0 when no answer arrived */
} sample;

typedef struct reader {
    pthread_t thread;
    const char *path;
    atomic_bool *stop;
    sample *samples;
    size_t n;
} reader;

static void *reader_main(void *arg)
{
    reader *rd = arg;
    while (!atomic_load(rd->stop) && rd->n < MAX_SAMPLES) {
        sk_test_http r;
        sample *s = &rd->samples[rd->n++];
        s->start_ms = sk_time_mono_ms();
        if (sk_test_http_send(&g_sys, "GET", rd->path, NULL, 0, NULL, &r) == SK_OK) {
            s->status = r.status;
            sk_test_http_fini(&r);
        } else {
            s->status = 0;
        }
        s->latency_ms = sk_time_mono_ms() - s->start_ms;
        pause_ms(READ_GAP_MS); /* a few hundred reads a second is plenty on a shared machine */
    }
    return NULL;
}

/* ---------------------------------------------------------------- the test */

typedef struct scene {
    char sku[64];
    char path[128];
    char addr[2][64]; /* orderview-1, orderview-2 */
} scene;

static void seed(scene *sc)
{
    char body[256];
    sk_test_http r;
    unique(sc->sku, sizeof(sc->sku), "ej-sku");
    snprintf(sc->path, sizeof(sc->path), "/api/v1/products/%s", sc->sku);
    snprintf(body, sizeof(body),
             "{\"sku\":\"%s\",\"name\":\"Ejection\",\"price_cents\":100,\"stock\":10}", sc->sku);
    assert_int_equal(sk_test_http_send(&g_sys, "POST", "/api/v1/products", body, strlen(body), NULL, &r),
                     SK_OK);
    if (r.status != 201) {
        fail_msg("POST /api/v1/products: HTTP %d: %s", r.status, r.body);
    }
    sk_test_http_fini(&r);
}

/* Step 1: both instances ready, healthy at the gateway, both answer the product read. */
static void step_baseline(scene *sc)
{
    const char *names[2] = { "orderview-1", "orderview-2" };
    int64_t deadline = sk_time_mono_ms() + READY_MS;
    for (int i = 0; i < 2; i++) {
        while (!status_address(names[i], sc->addr[i], sizeof(sc->addr[i]))) {
            if (sk_time_mono_ms() > deadline) {
                fail_msg("skald status: %s not listed ready within %d ms", names[i], READY_MS);
            }
            pause_ms(200);
        }
    }
    /* The gateway found both (discovery) and neither is ejected. */
    for (;;) {
        char *body = NULL;
        ep_state s1 = gateway_ep_state(sc->addr[0], NULL, NULL);
        ep_state s2 = gateway_ep_state(sc->addr[1], NULL, &body);
        if (s1 == EP_HEALTHY && s2 == EP_HEALTHY) {
            sk_free(body);
            break;
        }
        if (sk_time_mono_ms() > deadline) {
            fail_msg("gateway /mesh/upstreams: orderview %s and %s not both healthy within %d ms: %s",
                     sc->addr[0], sc->addr[1], READY_MS, body);
        }
        sk_free(body);
        pause_ms(100);
    }
    seed(sc);
    /*
     * Both read models project ProductCreated (an instance answers reads only
     * from the gateway, so ask through it): 8 answers 200 in a row.
     */
    for (int in_a_row = 0; in_a_row < 8;) {
        sk_test_http r;
        int status = 0;
        if (sk_test_http_send(&g_sys, "GET", sc->path, NULL, 0, NULL, &r) == SK_OK) {
            status = r.status;
            sk_test_http_fini(&r);
        }
        in_a_row = status == 200 ? in_a_row + 1 : 0;
        if (in_a_row < 8) {
            if (sk_time_mono_ms() > deadline) {
                fail_msg("GET %s: not 8 answers 200 in a row within %d ms (last %d)", sc->path,
                         READY_MS, status);
            }
            pause_ms(20);
        }
    }
    int64_t before[2], after[2];
    for (int i = 0; i < 2; i++) {
        before[i] = product_reads(sc->addr[i]);
        assert_true(before[i] >= 0);
    }
    for (int k = 0; k < 40; k++) {
        sk_test_http r;
        assert_int_equal(sk_test_http_send(&g_sys, "GET", sc->path, NULL, 0, NULL, &r), SK_OK);
        if (r.status != 200) {
            fail_msg("GET %s: HTTP %d: %s", sc->path, r.status, r.body);
        }
        sk_test_http_fini(&r);
    }
    for (int i = 0; i < 2; i++) {
        after[i] = product_reads(sc->addr[i]);
        assert_true(after[i] >= 0);
    }
    fprintf(stderr, "[baseline] 40 GETs: orderview-1 (%s) answered %lld, orderview-2 (%s) %lld\n",
            sc->addr[0], (long long)(after[0] - before[0]), sc->addr[1],
            (long long)(after[1] - before[1]));
    assert_true(after[0] - before[0] > 0);
    assert_true(after[1] - before[1] > 0);
}

static void test_hung_instance_is_ejected_and_rejoins(void **state)
{
    (void)state;
    scene sc;
    reader rd[N_CLIENTS];
    atomic_bool stop;
    memset(&sc, 0, sizeof(sc));
    memset(rd, 0, sizeof(rd));
    atomic_init(&stop, false);

    step_baseline(&sc);
    long long ejections_before = gateway_metric("sk_upstream_ejections_total{upstream=\"orderview\"} ");
    long long retries_before = gateway_metric("sk_upstream_retries_total{upstream=\"orderview\"} ");

    /* Step 2: hang orderview-2 under N_CLIENTS sequential readers. */
    pid_t pid = sk_test_system_instance_pid(&g_sys, "orderview-2");
    assert_true(pid > 0);
    for (int i = 0; i < N_CLIENTS; i++) {
        rd[i].path = sc.path;
        rd[i].stop = &stop;
        rd[i].samples = sk_calloc(MAX_SAMPLES, sizeof(sample));
        assert_non_null(rd[i].samples);
    }
    assert_int_equal(kill(pid, SIGSTOP), 0);
    g_stopped_pid = pid;
    int64_t t_stop = sk_time_mono_ms();
    for (int i = 0; i < N_CLIENTS; i++) {
        assert_int_equal(pthread_create(&rd[i].thread, NULL, reader_main, &rd[i]), 0);
    }

    /* Step 3: watch the gateway's view of orderview-2 until ejected (or gone from discovery). */
    int64_t t_eject = -1, t_gone = -1, streak = 0, max_streak = 0;
    char *last_body = NULL;
    for (;;) {
        sk_free(last_body);
        last_body = NULL;
        ep_state s = gateway_ep_state(sc.addr[1], &streak, &last_body);
        int64_t now = sk_time_mono_ms();
        max_streak = streak > max_streak ? streak : max_streak;
        if (s == EP_EJECTED) {
            t_eject = now;
            break;
        }
        if (s == EP_ABSENT) {
            t_gone = now;
            break;
        }
        if (now - t_stop > EJECT_MS + SLACK_MS) {
            break;
        }
        pause_ms(25);
    }
    char *eject_body = last_body;
    last_body = NULL;
    /* Keep reading a while after the ejection: these reads must not touch orderview-2. */
    int64_t t_after = sk_time_mono_ms();
    while (sk_time_mono_ms() - t_after < AFTER_MS) {
        /* Ejected for baseEjectionTime: never healthy meanwhile (gone from discovery is fine). */
        char *body = NULL;
        ep_state s = gateway_ep_state(sc.addr[1], NULL, &body);
        if (s == EP_HEALTHY) {
            fail_msg("orderview-2 (%s), hung and ejected %lld ms ago, is healthy at the gateway again "
                     "(baseEjectionTime %d ms): %s",
                     sc.addr[1], (long long)(sk_time_mono_ms() - t_eject), BASE_EJECTION_MS, body);
        }
        if (s == EP_ABSENT && t_gone < 0) {
            t_gone = sk_time_mono_ms();
            fprintf(stderr, "[hang] orderview-2 left the gateway's endpoints %lld ms after SIGSTOP\n",
                    (long long)(t_gone - t_stop));
        }
        sk_free(body);
        pause_ms(25);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < N_CLIENTS; i++) {
        assert_int_equal(pthread_join(rd[i].thread, NULL), 0);
    }

    /* Every read answered 200; the slow ones paid one per-try timeout, never the call timeout. */
    size_t n_total = 0, n_slow = 0, n_fast_after = 0, n_after = 0;
    int64_t worst = 0, worst_after = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        for (size_t k = 0; k < rd[i].n; k++) {
            const sample *s = &rd[i].samples[k];
            n_total++;
            if (s->status != 200) {
                fail_msg("client %d read %zu (started %lld ms after SIGSTOP) answered %d after %lld ms", i,
                         k, (long long)(s->start_ms - t_stop), s->status, (long long)s->latency_ms);
            }
            worst = s->latency_ms > worst ? s->latency_ms : worst;
            n_slow += s->latency_ms >= PER_TRY_TIMEOUT_MS - 100 ? 1 : 0;
            if (t_eject >= 0 && s->start_ms >= t_eject) {
                n_after++;
                n_fast_after += s->latency_ms < FAST_MS ? 1 : 0;
                worst_after = s->latency_ms > worst_after ? s->latency_ms : worst_after;
            }
        }
    }
    long long ejections = gateway_metric("sk_upstream_ejections_total{upstream=\"orderview\"} ");
    long long retries = gateway_metric("sk_upstream_retries_total{upstream=\"orderview\"} ");
    fprintf(stderr,
            "[hang] %zu reads by %d clients, all 200; %zu paid the per-try timeout, slowest %lld ms; "
            "highest consecutive_5xx seen %lld; gateway retries +%lld, ejections +%lld\n",
            n_total, N_CLIENTS, n_slow, (long long)worst, (long long)max_streak,
            retries - retries_before, ejections - ejections_before);
    if (t_eject < 0) {
        if (t_gone >= 0) {
            fail_msg("orderview-2 (%s) left the gateway's endpoints (discovery TTL %d ms) %lld ms after "
                     "SIGSTOP without being ejected first (highest consecutive_5xx %lld): %s",
                     sc.addr[1], SK_DISCOVERY_DEFAULT_TTL_MS, (long long)(t_gone - t_stop),
                     (long long)max_streak, eject_body);
        }
        fail_msg("orderview-2 (%s) not ejected by the gateway within %d ms of SIGSTOP "
                 "(highest consecutive_5xx %lld): %s",
                 sc.addr[1], EJECT_MS + SLACK_MS, (long long)max_streak, eject_body);
    }
    fprintf(stderr, "[hang] orderview-2 ejected %lld ms after SIGSTOP: %s\n",
            (long long)(t_eject - t_stop), eject_body);
    sk_free(eject_body);
    assert_true(t_eject - t_stop <= EJECT_MS + SLACK_MS);
    /* The hang was real: some tries waited the per-try timeout, and were retried. */
    assert_true(n_slow > 0);
    assert_true(worst < CALL_TIMEOUT_MS);
    assert_true(retries - retries_before >= 5);
    assert_true(ejections - ejections_before >= 1);
    /* After the ejection no read pays the per-try timeout: nothing goes to orderview-2. */
    fprintf(stderr, "[hang] %zu reads started after the ejection, %zu under %d ms, slowest %lld ms\n",
            n_after, n_fast_after, FAST_MS, (long long)worst_after);
    assert_true(n_after >= MIN_FAST);
    assert_int_equal(n_fast_after, n_after);
    for (int i = 0; i < N_CLIENTS; i++) {
        sk_free(rd[i].samples);
    }

    /*
     * Step 4: SIGCONT. Still listed (ejected): back healthy at a sweep once
     * baseEjectionTime has passed. Dropped by discovery meanwhile (TTL): a
     * fresh, healthy endpoint as soon as its heartbeat lands again.
     */
    int64_t t_cont_ejected_until = t_eject + BASE_EJECTION_MS + INTERVAL_MS + SLACK_MS;
    assert_int_equal(kill(pid, SIGCONT), 0);
    g_stopped_pid = 0;
    int64_t t_cont = sk_time_mono_ms();
    bool was_absent = false;
    char *cont_body = NULL;
    ep_state cont_state = gateway_ep_state(sc.addr[1], NULL, &cont_body);
    fprintf(stderr, "[recover] at SIGCONT the gateway has orderview-2 %s: %s\n",
            cont_state == EP_ABSENT ? "absent" : cont_state == EP_HEALTHY ? "healthy" : "ejected",
            cont_body);
    sk_free(cont_body);
    was_absent = cont_state == EP_ABSENT;
    if (cont_state == EP_EJECTED) {
        /*
         * Alive again but still ejected: no read goes to it. It first answers
         * what waited in its sockets while stopped, so count once that settled.
         */
        int64_t before = product_reads(sc.addr[1]), settled = -1;
        int64_t deadline = sk_time_mono_ms() + SLACK_MS;
        while ((settled = product_reads(sc.addr[1])) != before || before < 0) {
            if (sk_time_mono_ms() > deadline) {
                fail_msg("orderview-2's GetProduct count did not settle after SIGCONT (%lld, %lld)",
                         (long long)before, (long long)settled);
            }
            before = settled;
            pause_ms(200);
        }
        for (int k = 0; k < 40; k++) {
            sk_test_http r;
            assert_int_equal(sk_test_http_send(&g_sys, "GET", sc.path, NULL, 0, NULL, &r), SK_OK);
            if (r.status != 200) {
                fail_msg("GET %s while orderview-2 is ejected: HTTP %d: %s", sc.path, r.status, r.body);
            }
            sk_test_http_fini(&r);
        }
        int64_t after = product_reads(sc.addr[1]);
        if (gateway_ep_state(sc.addr[1], NULL, NULL) == EP_EJECTED) {
            fprintf(stderr, "[recover] 40 reads while orderview-2 runs but is ejected: it answered %lld\n",
                    (long long)(after - before));
            assert_int_equal(after, before);
        }
    }
    for (;;) {
        char *body = NULL;
        ep_state s = gateway_ep_state(sc.addr[1], NULL, &body);
        int64_t now = sk_time_mono_ms();
        was_absent = was_absent || s == EP_ABSENT;
        if (s == EP_HEALTHY) {
            fprintf(stderr, "[recover] orderview-2 healthy at the gateway %lld ms after SIGCONT (%s): %s\n",
                    (long long)(now - t_cont),
                    was_absent ? "had left discovery, re-registered" : "ejection time passed", body);
            sk_free(body);
            break;
        }
        if (now > (was_absent ? t_cont + REJOIN_MS : t_cont_ejected_until)) {
            fail_msg("orderview-2 (%s) not healthy at the gateway %lld ms after SIGCONT (%s): %s",
                     sc.addr[1], (long long)(now - t_cont),
                     was_absent ? "absent from discovery" : "still ejected", body);
        }
        sk_free(body);
        pause_ms(100);
    }
    /* And it answers reads through the gateway again. */
    int64_t before = product_reads(sc.addr[1]);
    assert_true(before >= 0);
    int64_t deadline = sk_time_mono_ms() + REJOIN_MS;
    for (;;) {
        for (int k = 0; k < 10; k++) {
            sk_test_http r;
            assert_int_equal(sk_test_http_send(&g_sys, "GET", sc.path, NULL, 0, NULL, &r), SK_OK);
            if (r.status != 200) {
                fail_msg("GET %s after SIGCONT: HTTP %d: %s", sc.path, r.status, r.body);
            }
            sk_test_http_fini(&r);
        }
        int64_t now_reads = product_reads(sc.addr[1]);
        if (now_reads > before) {
            fprintf(stderr, "[recover] orderview-2 answers reads again %lld ms after SIGCONT\n",
                    (long long)(sk_time_mono_ms() - t_cont));
            break;
        }
        if (sk_time_mono_ms() > deadline) {
            fail_msg("orderview-2 answered no read through the gateway within %d ms of being healthy",
                     REJOIN_MS);
        }
    }
}

/* ---------------------------------------------------------------- fixture */

static int group_setup(void **state)
{
    (void)state;
    if (sk_init("system-ejection") != SK_OK) {
        return -1;
    }
    if (sk_test_system_start(&g_sys, 60000) != SK_OK) {
        fprintf(stderr, "system-ejection: %s\n", sk_error_message());
        return -1;
    }
    fprintf(stderr, "system-ejection: data dir %s\n", g_sys.data_dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_stopped_pid > 0) {
        kill(g_stopped_pid, SIGCONT); /* a failed step left it stopped: let it stop on SIGTERM */
    }
    int rc = sk_test_system_stop(&g_sys);
    if (rc != 0) {
        fprintf(stderr, "system-ejection: skald up exited with %d (data kept in %s)\n", rc,
                g_sys.data_dir);
        return -1;
    }
    sk_test_system_cleanup(&g_sys);
    sk_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hung_instance_is_ejected_and_rejoins),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
