/* SPDX-License-Identifier: MIT */
/*
 * bench_relay: outbox relay throughput, from committed outbox rows to
 * JetStream acknowledgements, as a ratio to a raw nats.c publisher measured
 * in the same run on the same nats-server.
 *
 *  - relay: N rows added with sk_outbox_add (units of work on an sk_store,
 *    SQLite WAL, synchronous=FULL, as services use it), committed in big
 *    transactions before timing starts; then the clock starts,
 *    sk_relay_start runs on an sk_bus, and the clock stops when
 *    sk_relay_published reaches N.
 *  - raw: a nats.c loop of js_PublishMsgAsync with the same headers the
 *    relay sets (Nats-Msg-Id = ce-id and the CloudEvents headers), the same
 *    subject, the same ~300-byte payloads and the relay's max pending (256),
 *    then js_PublishAsyncComplete. Envelopes are made before the clock
 *    starts, as the relay's are (they sit in the outbox).
 *
 * Both publish into the same stream (file storage, R1, the config
 * sk_bus_stream_ensure gives the relay's streams), which is checked to hold
 * N messages and purged after each contender. The order of the two
 * alternates between rounds. CPU: getrusage of this process, and
 * nats-server's from /proc over the same window, reported apart (the
 * ratios compare this process's alone).
 *
 * Usage: bench_relay [--messages N] [--rounds R] [--plain|--tls] [--json]
 *        (default 50000 messages, 3 rounds, mTLS)
 */
#include <stdio.h>
#include <string.h>

#include "bench_msg_common.h"

#define STREAM  "BENCH_EVENTS"
#define SUBJECT "bench.events.OrderPlaced"
/* Mirror of RELAY_MAX_PENDING in src/msg/relay.c. */
#define RELAY_MAX_PENDING 256
/* Outbox rows per prefill transaction. */
#define PREFILL_PER_TX 2000
#define DEFAULT_MESSAGES 50000

typedef struct prefill {
    const bmsg_event *events;
    size_t from;
    size_t to;
} prefill;

static sk_status prefill_work(sk_tx *tx, void *ctx)
{
    prefill *p = ctx;
    sk_status st = SK_OK;

    for (size_t i = p->from; i < p->to && st == SK_OK; i++) {
        char data[BMSG_PAYLOAD_MAX];
        int len = bmsg_payload(i, data);
        json_t *obj = NULL;

        st = sk_json_parse_object((sk_slice){ (const uint8_t *)data, (size_t)len }, &obj);
        if (st == SK_OK) {
            st = sk_outbox_add(tx, SUBJECT, &p->events[i].env, obj);
        }
        json_decref(obj);
    }
    return st;
}

typedef struct count_ctx {
    int64_t n;
} count_ctx;

static sk_status count_work(sk_tx *tx, void *ctx)
{
    count_ctx *c = ctx;
    sk_db_value p[1] = { SK_DB_INT_V(0) };

    /* The query the relay runs after every full batch of 512 rows (read_rows, for its lag gauge). */
    return sk_tx_query_int(tx, "SELECT COUNT(*) FROM sk_outbox WHERE seq > ?", p, 1, &c->n);
}

/* Stream must hold n messages; then empty it for the next contender. */
static sk_status stream_check_purge(jsCtx *js, size_t n)
{
    uint64_t have = 0;
    jsErrCode jerr = 0;
    sk_status st = bmsg_stream_count(js, STREAM, &have);
    natsStatus s;

    if (st != SK_OK) {
        return st;
    }
    if (have != n) {
        return SK_FAIL(SK_EINTERNAL, "stream %s holds %llu messages, expected %zu", STREAM,
                       (unsigned long long)have, n);
    }
    s = js_PurgeStream(js, STREAM, NULL, &jerr);
    return s == NATS_OK ? SK_OK : bmsg_nats_fail(s, jerr, "purging the stream");
}

/* The relay contender. */
static sk_status run_relay(bmsg_env *e, jsCtx *js, size_t n, int round, bmsg_result *res)
{
    sk_store_config sc = { 0 };
    sk_store *store = NULL;
    sk_bus *bus = NULL;
    sk_relay *relay = NULL;
    bmsg_event *events = NULL;
    char url[128];
    char db[32];
    size_t n_mig = 0;
    sk_status st = SK_OK;
    bmsg_meter meter;
    int64_t deadline;
    /* Far above any plausible figure: a stuck relay fails the run instead of hanging it. */
    int64_t budget_ms = 60000 + (int64_t)(n / 100);

    snprintf(db, sizeof(db), "relay-%d.db", round);
    snprintf(url, sizeof(url), "sqlite:%s/%s", e->dir, db);
    sc.url = url;
    sc.migrations = sk_msg_migrations(&n_mig);
    sc.n_migrations = n_mig;
    if ((st = sk_store_open(&store, &sc)) != SK_OK) {
        st = SK_WRAP(st, "relay: store");
        goto out;
    }
    if ((st = bmsg_bus_open(e, "bench-relay", &bus)) != SK_OK) {
        goto out;
    }
    events = bmsg_events_create(n, "OrderPlaced");
    if (events == NULL) {
        st = SK_FAIL(SK_ENOMEM, "relay: envelopes");
        goto out;
    }
    for (size_t from = 0; from < n && st == SK_OK; from += PREFILL_PER_TX) {
        prefill p = { events, from, from + PREFILL_PER_TX < n ? from + PREFILL_PER_TX : n };
        st = sk_store_run(store, prefill_work, &p);
    }
    if (st != SK_OK) {
        st = SK_WRAP(st, "relay: filling the outbox");
        goto out;
    }
    {
        /* The outbox holds exactly N rows before the clock starts. */
        count_ctx cc = { 0 };
        if ((st = sk_store_read(store, count_work, &cc)) != SK_OK) {
            goto out;
        }
        if (cc.n != (int64_t)n) {
            st = SK_FAIL(SK_EINTERNAL, "outbox holds %lld rows, expected %zu", (long long)cc.n, n);
            goto out;
        }
    }

    bmsg_meter_start(&meter, e);
    deadline = sk_time_mono_ms() + budget_ms;
    if ((st = sk_relay_start(&relay, store, bus, NULL)) != SK_OK) {
        goto out;
    }
    while (sk_relay_published(relay) < n) {
        if (sk_time_mono_ms() >= deadline) {
            st = SK_FAIL(SK_ETIMEDOUT, "relay: %llu of %zu published after %lld ms",
                         (unsigned long long)sk_relay_published(relay), n, (long long)budget_ms);
            goto out;
        }
        bmsg_sleep_ms(1); /* poll; a wake-up per ms is noise next to the relay's work */
    }
    bmsg_meter_stop(&meter, res);
    res->n = n;
    sk_relay_stop(relay);
    relay = NULL;
    st = stream_check_purge(js, n);
out:
    sk_relay_stop(relay);
    sk_bus_close(bus);
    sk_store_close(store);
    sk_free(events);
    bmsg_db_remove(e->dir, db);
    return st;
}

static sk_status run_raw(const bmsg_env *e, natsConnection *nc, jsCtx *js, size_t n,
                         bmsg_result *res)
{
    bmsg_event *events = bmsg_events_create(n, "OrderPlaced");
    size_t n_acked = 0;
    sk_status st;
    bmsg_meter meter;

    if (events == NULL) {
        return SK_FAIL(SK_ENOMEM, "raw: envelopes");
    }
    bmsg_meter_start(&meter, e);
    st = bmsg_publish_async(nc, SUBJECT, events, n, 0, RELAY_MAX_PENDING, &n_acked);
    bmsg_meter_stop(&meter, res);
    res->n = n_acked;
    sk_free(events);
    if (st == SK_OK && n_acked != n) {
        st = SK_FAIL(SK_EINTERNAL, "raw: %zu of %zu acknowledged", n_acked, n);
    }
    if (st == SK_OK) {
        st = stream_check_purge(js, n);
    }
    return st;
}

int main(int argc, char **argv)
{
    bmsg_opts o;
    bmsg_env e = { 0 };
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    sk_bus *bus = NULL;
    json_t *jrounds = NULL;
    double ratios[100], cpu_ratios[100];
    sk_status st = SK_OK;
    int rc;

    if ((rc = bmsg_opts_parse(&o, argc, argv, "bench_relay", DEFAULT_MESSAGES)) != 0) {
        return rc;
    }
    rc = 1;
    if (sk_init("bench_relay") != SK_OK) {
        fprintf(stderr, "bench_relay: %s\n", sk_error_message());
        return 1;
    }
    sk_log_set_level(SK_LOG_LEVEL_WARN);
    jrounds = json_array();
    if (jrounds == NULL || (st = bmsg_env_start(&e, o.is_tls)) != SK_OK ||
        (st = bmsg_conn_open(&e, "bench-raw", &nc)) != SK_OK) {
        goto out;
    }
    {
        natsStatus s = natsConnection_JetStream(&js, nc, NULL);
        const char *subjects[] = { "bench.events.>" };
        sk_stream_config sc = { .name = STREAM, .subjects = subjects, .n_subjects = 1 };
        if (s != NATS_OK) {
            st = bmsg_nats_fail(s, 0, "JetStream context");
            goto out;
        }
        /* The stream as services get theirs: sk_bus_stream_ensure (file storage, R1). */
        if ((st = bmsg_bus_open(&e, "bench-setup", &bus)) != SK_OK ||
            (st = sk_bus_stream_ensure(bus, &sc)) != SK_OK) {
            goto out;
        }
        sk_bus_close(bus);
        bus = NULL;
    }
    printf("bench_relay: %zu events per contender, %d rounds, nats-server %s, %s, "
           "stream %s file storage R1, ~300-byte payloads, max pending %d\n",
           o.n_messages, o.rounds, sk_test_nats_url(e.nats), bmsg_transport(&e), STREAM,
           RELAY_MAX_PENDING);
    printf("relay = sk_outbox_add rows (prefilled, WAL synchronous=FULL) -> sk_relay -> acks; "
           "raw = js_PublishMsgAsync loop + js_PublishAsyncComplete\n");
    for (int r = 0; r < o.rounds; r++) {
        bmsg_result relay = { .name = "relay" };
        bmsg_result raw = { .name = "raw js_PublishAsync" };
        json_t *jr;

        /* Alternate who goes first: the shared machine drifts. */
        if (r % 2 == 0) {
            st = run_relay(&e, js, o.n_messages, r, &relay);
            if (st == SK_OK) {
                st = run_raw(&e, nc, js, o.n_messages, &raw);
            }
        } else {
            st = run_raw(&e, nc, js, o.n_messages, &raw);
            if (st == SK_OK) {
                st = run_relay(&e, js, o.n_messages, r, &relay);
            }
        }
        if (st != SK_OK) {
            goto out;
        }
        ratios[r] = bmsg_rate(&relay) / bmsg_rate(&raw);
        cpu_ratios[r] = bmsg_cpu_per_msg(&relay) / bmsg_cpu_per_msg(&raw);
        printf("round %d (%s first):\n", r + 1, r % 2 == 0 ? "relay" : "raw");
        bmsg_result_print("  ", &relay);
        bmsg_result_print("  ", &raw);
        printf("  ratio relay/raw: throughput %.3f, CPU per event %.2fx\n", ratios[r],
               cpu_ratios[r]);
        fflush(stdout);
        jr = json_pack("{s:o, s:o, s:f, s:f}", "relay", bmsg_result_json(&relay), "raw",
                       bmsg_result_json(&raw), "ratio", ratios[r], "cpu_ratio", cpu_ratios[r]);
        if (jr == NULL || json_array_append_new(jrounds, jr) != 0) {
            st = SK_FAIL(SK_ENOMEM, "json");
            goto out;
        }
    }
    bmsg_spread_print("throughput ratio relay/raw over rounds:", ratios, (size_t)o.rounds);
    bmsg_spread_print("CPU-per-event ratio relay/raw over rounds:", cpu_ratios, (size_t)o.rounds);
    if (o.is_json) {
        st = bmsg_json_print(json_pack("{s:s, s:s, s:I, s:O, s:f, s:f}", "bench", "relay",
                                       "transport", o.is_tls ? "mtls" : "plain", "messages",
                                       (json_int_t)o.n_messages, "rounds", jrounds, "ratio_median",
                                       bmsg_median(ratios, (size_t)o.rounds), "cpu_ratio_median",
                                       bmsg_median(cpu_ratios, (size_t)o.rounds)));
        if (st != SK_OK) {
            goto out;
        }
    }
    rc = 0;
out:
    if (st != SK_OK) {
        fprintf(stderr, "bench_relay: %s\n", sk_error_message());
    }
    json_decref(jrounds);
    sk_bus_close(bus);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    bmsg_env_stop(&e);
    if (!o.is_tls) {
        /* With TLS connections this races OpenSSL's own exit cleanup (see test_msg_rotation). */
        nats_CloseAndWait(5000);
    }
    sk_shutdown();
    return rc;
}
