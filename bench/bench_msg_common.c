/* SPDX-License-Identifier: MIT */
/*
 * Shared parts of the messaging benchmarks (see bench_msg_common.h).
 */
#include "bench_msg_common.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "sk_test.h"

/* The relay's stall wait when max_pending publishes are in flight (RELAY_ACK_WAIT_MS). */
#define PUBLISH_MAX_WAIT_MS 5000
/* js_PublishAsyncComplete's wait for the last acknowledgements. */
#define COMPLETE_WAIT_MS 60000
#define CONNECT_WAIT_MS 5000

/* ---------------------------------------------------------------- options */

static void usage(const char *prog, size_t default_n)
{
    fprintf(stderr,
            "usage: %s [--messages N] [--rounds R] [--plain|--tls] [--json]\n"
            "  --messages N  messages per contender and round, 100..10000000 (default %zu)\n"
            "  --rounds R    rounds, 1..100 (default 3)\n"
            "  --tls         nats-server with mTLS, client certificates (default)\n"
            "  --plain       nats-server over plain TCP\n"
            "  --json        print a JSON summary as the last line\n",
            prog, default_n);
}

static bool parse_num(const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    long long v;

    if (s == NULL || s[0] == '\0') {
        return false;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

int bmsg_opts_parse(bmsg_opts *o, int argc, char **argv, const char *prog, size_t default_n)
{
    *o = (bmsg_opts){ .n_messages = default_n, .rounds = 3, .is_tls = true };
    for (int i = 1; i < argc; i++) {
        long long v = 0;
        if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc) {
            if (!parse_num(argv[++i], 100, 10000000, &v)) {
                fprintf(stderr, "%s: --messages: expected 100..10000000, got \"%s\"\n", prog,
                        argv[i]);
                usage(prog, default_n);
                return 2;
            }
            o->n_messages = (size_t)v;
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            if (!parse_num(argv[++i], 1, 100, &v)) {
                fprintf(stderr, "%s: --rounds: expected 1..100, got \"%s\"\n", prog, argv[i]);
                usage(prog, default_n);
                return 2;
            }
            o->rounds = (int)v;
        } else if (strcmp(argv[i], "--plain") == 0) {
            o->is_tls = false;
        } else if (strcmp(argv[i], "--tls") == 0) {
            o->is_tls = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            o->is_json = true;
        } else {
            if (strcmp(argv[i], "--help") != 0 && strcmp(argv[i], "-h") != 0) {
                fprintf(stderr, "%s: unknown or incomplete argument \"%s\"\n", prog, argv[i]);
            }
            usage(prog, default_n);
            return 2;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- server and connections */

sk_status bmsg_env_start(bmsg_env *e, bool is_tls)
{
    sk_test_nats_options no = { 0 };
    sk_status st;

    memset(e, 0, sizeof(*e));
    e->is_tls = is_tls;
    if ((st = sk_test_tmpdir(e->dir, sizeof(e->dir))) != SK_OK) {
        return SK_WRAP(st, "database directory");
    }
    if (is_tls) {
        if ((st = sk_test_pki_create(&e->pki)) != SK_OK) {
            return SK_WRAP(st, "creating a CA");
        }
        e->has_pki = true;
        if ((st = sk_test_pki_issue(&e->pki, "nats-server", &e->server)) != SK_OK ||
            (st = sk_test_pki_issue(&e->pki, "bench", &e->client)) != SK_OK) {
            return SK_WRAP(st, "issuing certificates");
        }
        no.cert_file = e->server.cert_file;
        no.key_file = e->server.key_file;
        no.ca_file = e->server.ca_file;
        no.verify = true; /* client certificates required, as for the services */
    }
    if ((st = sk_test_nats_start(&e->nats, is_tls ? &no : NULL)) != SK_OK) {
        return SK_WRAP(st, "starting nats-server");
    }
    return SK_OK;
}

void bmsg_env_stop(bmsg_env *e)
{
    sk_test_nats_stop(e->nats); /* SIGTERM to its PID, then its directory */
    e->nats = NULL;
    sk_tls_files_fini(&e->server);
    sk_tls_files_fini(&e->client);
    if (e->has_pki) {
        sk_test_pki_destroy(&e->pki);
        e->has_pki = false;
    }
    if (e->dir[0] != '\0') {
        sk_test_rmrf(e->dir);
        e->dir[0] = '\0';
    }
}

const char *bmsg_transport(const bmsg_env *e)
{
    return e->is_tls ? "mTLS (client certificates)" : "plain TCP";
}

sk_status bmsg_bus_open(bmsg_env *e, const char *name, sk_bus **out)
{
    sk_bus_config bc = { .servers = sk_test_nats_url(e->nats), .name = name };
    int64_t deadline;
    sk_status st;

    if (e->is_tls) {
        bc.ca_file = e->client.ca_file;
        bc.cert_file = e->client.cert_file;
        bc.key_file = e->client.key_file;
    }
    if ((st = sk_bus_open(out, &bc)) != SK_OK) {
        return SK_WRAP(st, "opening the bus");
    }
    deadline = sk_time_mono_ms() + CONNECT_WAIT_MS;
    while (!sk_bus_is_connected(*out)) {
        if (sk_time_mono_ms() >= deadline) {
            sk_bus_close(*out);
            *out = NULL;
            return SK_FAIL(SK_ETIMEDOUT, "the bus did not connect within %d ms", CONNECT_WAIT_MS);
        }
        bmsg_sleep_ms(5);
    }
    return SK_OK;
}

sk_status bmsg_nats_fail(natsStatus s, jsErrCode jerr, const char *what)
{
    const char *last = nats_GetLastError(NULL);

    if (jerr != 0) {
        return SK_FAIL(SK_EBUS, "%s: %s (jetstream error %d)", what, natsStatus_GetText(s),
                       (int)jerr);
    }
    return SK_FAIL(SK_EBUS, "%s: %s%s%s", what, natsStatus_GetText(s), last != NULL ? ": " : "",
                   last != NULL ? last : "");
}

sk_status bmsg_conn_open(bmsg_env *e, const char *name, natsConnection **out)
{
    natsOptions *opts = NULL;
    natsStatus s;

    *out = NULL;
    s = natsOptions_Create(&opts);
    if (s == NATS_OK) {
        s = natsOptions_SetURL(opts, sk_test_nats_url(e->nats));
    }
    if (s == NATS_OK) {
        s = natsOptions_SetName(opts, name);
    }
    if (s == NATS_OK && e->is_tls) {
        s = natsOptions_SetSecure(opts, true);
        if (s == NATS_OK) {
            s = natsOptions_LoadCATrustedCertificates(opts, e->client.ca_file);
        }
        if (s == NATS_OK) {
            s = natsOptions_LoadCertificatesChain(opts, e->client.cert_file, e->client.key_file);
        }
    }
    if (s == NATS_OK) {
        s = natsConnection_Connect(out, opts);
    }
    natsOptions_Destroy(opts);
    if (s != NATS_OK) {
        *out = NULL;
        return bmsg_nats_fail(s, 0, "raw connection");
    }
    return SK_OK;
}

/* ---------------------------------------------------------------- messages */

int bmsg_payload(uint64_t n, char *out)
{
    unsigned long long u = (unsigned long long)n;

    /* Compact, keys in insertion order, integers only: jansson prints it back unchanged. */
    return snprintf(out, BMSG_PAYLOAD_MAX,
                    "{\"order_id\":\"ord-%016llu\",\"customer_id\":\"cus-%08llu\","
                    "\"status\":\"PENDING\",\"items\":["
                    "{\"sku\":\"SKU-%04llu\",\"quantity\":2,\"unit_price_cents\":1999},"
                    "{\"sku\":\"SKU-%04llu\",\"quantity\":1,\"unit_price_cents\":499}],"
                    "\"total_cents\":%llu,\"created_at\":\"2026-11-25T10:00:00.123Z\"}",
                    u, u % 10000, u % 1000, (u + 7) % 1000, u % 100000 + 199);
}

bmsg_event *bmsg_events_create(size_t n, const char *type)
{
    bmsg_event *ev = sk_calloc(n, sizeof(*ev));

    if (ev == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(ev[i].aggregate, sizeof(ev[i].aggregate), "ord-%016llu", (unsigned long long)i);
        sk_envelope_init(&ev[i].env, type, "bench", ev[i].aggregate, NULL);
        sk_time_format_rfc3339(ev[i].env.time_ms, ev[i].time);
    }
    return ev;
}

natsStatus bmsg_msg_create(natsMsg **out, const char *subject, const bmsg_event *ev,
                           const char *data, int len)
{
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, data, len);

    /* The relay's headers (src/msg/envelope.c env_headers_build), same names and values. */
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-specversion", "1.0");
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-id", ev->env.id);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-type", ev->env.type);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-source", ev->env.source);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-time", ev->time);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-subject", ev->env.subject);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-schemaversion", "1");
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "traceparent", ev->env.traceparent);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "Nats-Msg-Id", ev->env.id);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "content-type", "application/json");
    }
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        m = NULL;
    }
    *out = m;
    return s;
}

typedef struct ack_count {
    atomic_size_t n_ok;
    atomic_size_t n_failed;
} ack_count;

/* nats thread: count the fate of one publish; the handler owns the message (as the relay's). */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    ack_count *c = closure;

    (void)js;
    if (pa != NULL && pae == NULL) {
        atomic_fetch_add(&c->n_ok, 1);
    } else {
        atomic_fetch_add(&c->n_failed, 1);
    }
    natsMsg_Destroy(msg);
}

sk_status bmsg_publish_async(natsConnection *nc, const char *subject, const bmsg_event *events,
                             size_t n, uint64_t first, int64_t max_pending, size_t *n_acked)
{
    ack_count count = { 0 };
    jsCtx *js = NULL;
    jsOptions jo;
    jsPubOptions popts;
    jsPubOptions copts;
    sk_status st = SK_OK;
    natsStatus s;

    *n_acked = 0;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = max_pending;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = &count;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) {
        return bmsg_nats_fail(s, 0, "JetStream context");
    }
    jsPubOptions_Init(&popts);
    popts.MaxWait = PUBLISH_MAX_WAIT_MS;
    for (size_t i = 0; i < n; i++) {
        char data[BMSG_PAYLOAD_MAX];
        int len = bmsg_payload(first + i, data);
        natsMsg *m = NULL;

        s = bmsg_msg_create(&m, subject, &events[i], data, len);
        if (s == NATS_OK) {
            s = js_PublishMsgAsync(js, &m, &popts); /* takes m when it succeeds */
        }
        if (s != NATS_OK) {
            natsMsg_Destroy(m);
            st = bmsg_nats_fail(s, 0, "js_PublishMsgAsync");
            break;
        }
    }
    jsPubOptions_Init(&copts);
    copts.MaxWait = COMPLETE_WAIT_MS;
    s = js_PublishAsyncComplete(js, &copts);
    if (s != NATS_OK && st == SK_OK) {
        st = bmsg_nats_fail(s, 0, "js_PublishAsyncComplete");
    }
    if (s != NATS_OK) {
        natsMsgList pending = { 0 };
        if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) {
            natsMsgList_Destroy(&pending);
        }
    }
    jsCtx_Destroy(js);
    *n_acked = atomic_load(&count.n_ok);
    if (st == SK_OK && atomic_load(&count.n_failed) > 0) {
        st = SK_FAIL(SK_EBUS, "%zu publishes failed", atomic_load(&count.n_failed));
    }
    return st;
}

sk_status bmsg_stream_count(jsCtx *js, const char *stream, uint64_t *out)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);

    *out = 0;
    if (s != NATS_OK) {
        return bmsg_nats_fail(s, jerr, "stream info");
    }
    *out = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return SK_OK;
}

/* ---------------------------------------------------------------- measuring */

int64_t bmsg_server_cpu_us(const bmsg_env *e)
{
    uint64_t us = 0;
    return cli_proc_cpu_us((int)sk_test_nats_pid(e->nats), &us) ? (int64_t)us : -1;
}

void bmsg_meter_start(bmsg_meter *m, const bmsg_env *e)
{
    m->e = e;
    m->server0_us = bmsg_server_cpu_us(e);
    m->cpu0_us = (int64_t)cli_self_cpu_us();
    m->t0_ns = sk_time_mono_ns();
}

void bmsg_meter_stop(const bmsg_meter *m, bmsg_result *r)
{
    r->seconds = (double)(sk_time_mono_ns() - m->t0_ns) / 1e9;
    r->cpu_us = (double)((int64_t)cli_self_cpu_us() - m->cpu0_us);
    int64_t server1_us = bmsg_server_cpu_us(m->e);
    /* -1: unknown (the server could not be read); reported as such, never as 0. */
    r->server_cpu_us = m->server0_us < 0 || server1_us < 0 ? -1.0
                                                             : (double)(server1_us - m->server0_us);
}

void bmsg_sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

double bmsg_rate(const bmsg_result *r)
{
    return r->seconds > 0 ? (double)r->n / r->seconds : 0.0;
}

double bmsg_cpu_per_msg(const bmsg_result *r)
{
    return r->n > 0 ? r->cpu_us / (double)r->n : 0.0;
}

double bmsg_server_cpu_per_msg(const bmsg_result *r)
{
    if (r->server_cpu_us < 0) {
        return -1.0;
    }
    return r->n > 0 ? r->server_cpu_us / (double)r->n : 0.0;
}

void bmsg_result_print(const char *indent, const bmsg_result *r)
{
    char server[32] = "unknown";
    double s = bmsg_server_cpu_per_msg(r);

    if (s >= 0) {
        snprintf(server, sizeof(server), "%6.2f", s);
    }
    printf("%s%-18s %8zu msgs in %6.3f s = %8.0f msg/s, CPU %6.2f us/msg + nats-server %s\n",
           indent, r->name, r->n, r->seconds, bmsg_rate(r), bmsg_cpu_per_msg(r), server);
}

json_t *bmsg_result_json(const bmsg_result *r)
{
    double server = bmsg_server_cpu_per_msg(r);
    return json_pack("{s:s, s:I, s:f, s:f, s:f, s:o}", "name", r->name, "messages",
                     (json_int_t)r->n, "seconds", r->seconds, "rate", bmsg_rate(r),
                     "cpu_us_per_msg", bmsg_cpu_per_msg(r), "server_cpu_us_per_msg",
                     server >= 0 ? json_real(server) : json_null());
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

double bmsg_median(const double *v, size_t n)
{
    double sorted[128];

    if (n == 0) {
        return 0.0;
    }
    if (n > sizeof(sorted) / sizeof(sorted[0])) {
        n = sizeof(sorted) / sizeof(sorted[0]);
    }
    memcpy(sorted, v, n * sizeof(double));
    qsort(sorted, n, sizeof(double), cmp_double);
    return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0;
}

sk_status bmsg_json_print(json_t *j)
{
    char *text = j != NULL ? sk_json_dumps(j) : NULL;

    json_decref(j);
    if (text == NULL) {
        return SK_FAIL(SK_ENOMEM, "printing the JSON result");
    }
    printf("%s\n", text);
    sk_free(text);
    return SK_OK;
}

void bmsg_spread_print(const char *label, const double *v, size_t n)
{
    double lo = v[0];
    double hi = v[0];

    for (size_t i = 1; i < n; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    printf("%-44s min %.3f  median %.3f  max %.3f\n", label, lo, bmsg_median(v, n), hi);
}

void bmsg_db_remove(const char *dir, const char *name)
{
    static const char *const suffixes[] = { "", "-wal", "-shm" };
    char path[256];

    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s%s", dir, name, suffixes[i]);
        (void)unlink(path); /* missing files are fine */
    }
}
