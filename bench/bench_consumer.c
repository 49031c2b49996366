/* SPDX-License-Identifier: MIT */
/*
 * bench_consumer: consumer throughput, as ratios to two raw nats.c pull
 * consumers measured in the same run on the same stream and nats-server.
 *
 * A stream (file storage, R1) is filled once with N messages carrying the
 * CloudEvents headers the outbox relay sets and ~300-byte JSON payloads.
 * Each contender, each round, reads all N through a new durable consumer
 * with the config sk_consumer gives its own (explicit ack, deliver all,
 * AckWait 5 s, MaxDeliver 7, MaxAckPending 512); the clock runs from
 * creating the consumer until the server reports all N acknowledged
 * (ack floor at the last sequence, nothing pending).
 *
 *  - sk_consumer: sk_consumer_start on an sk_bus and an sk_store (SQLite
 *    WAL, synchronous=FULL): per message an inbox row plus a handler that
 *    inserts one small row, in one unit of work; acked after the commit is
 *    durable. Default batch (128).
 *  - raw: natsSubscription_Fetch(128) + natsMsg_Ack each, no database.
 *  - raw+db: natsSubscription_Fetch(128), then one SQLite transaction
 *    (WAL, synchronous=FULL) with the same inbox insert and handler insert
 *    for every message of the batch, COMMIT, then natsMsg_Ack each.
 *
 * Ack kind: sk_consumer publishes "+ACK" to the message's reply subject
 * (fire-and-forget, no confirmation round trip; src/msg/pull.c sk__js_ack),
 * which is what natsMsg_Ack sends, so both references use natsMsg_Ack.
 * The order of the contenders rotates between rounds.
 * CPU: getrusage of this process, and nats-server's from /proc over the same
 * window, reported apart (the ratios compare this process's alone).
 *
 * Usage: bench_consumer [--messages N] [--rounds R] [--plain|--tls] [--json]
 *        (default 50000 messages, 3 rounds, mTLS)
 */
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "bench_msg_common.h"

#define STREAM  "BENCH_IN"
#define SUBJECT "bench.in.OrderPlaced"
#define FILTER  "bench.in.>"
/* Mirrors of src/msg/consumer.c: default batch, MaxAckPending = 4 * batch, MaxDeliver 5 + 2. */
#define BATCH           128
#define MAX_ACK_PENDING (4 * BATCH)
#define MAX_DELIVER     7
#define FETCH_WAIT_MS   1000
#define PUBLISH_PENDING 256
#define DEFAULT_MESSAGES 50000
#define N_CONTENDERS 3

static const char effect_schema[] =
    "CREATE TABLE bench_effects (msg_id TEXT PRIMARY KEY, aggregate TEXT NOT NULL,"
    " data_len INTEGER NOT NULL)";
static const char effect_insert[] =
    "INSERT INTO bench_effects (msg_id, aggregate, data_len) VALUES (?, ?, ?)";
/* The consumer's inbox insert (src/msg/consumer.c inbox_insert). */
static const char inbox_insert[] =
    "INSERT INTO sk_inbox (consumer, msg_id, processed_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (consumer, msg_id) DO NOTHING";

typedef struct bench {
    bmsg_env e;
    natsConnection *nc;
    jsCtx *js;
    size_t n;
    uint64_t last_seq;
    int64_t budget_ms;
} bench;

/* ---------------------------------------------------------------- the server side */

/* Poll the consumer's state until every message up to last_seq is acknowledged. */
static sk_status wait_all_acked(bench *b, const char *durable, int64_t deadline)
{
    for (;;) {
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetConsumerInfo(&ci, b->js, STREAM, durable, NULL, &jerr);
        bool done;

        if (s != NATS_OK) {
            return bmsg_nats_fail(s, jerr, "consumer info");
        }
        done = ci->AckFloor.Stream >= b->last_seq && ci->NumAckPending == 0;
        jsConsumerInfo_Destroy(ci);
        if (done) {
            return SK_OK;
        }
        if (sk_time_mono_ms() >= deadline) {
            return SK_FAIL(SK_ETIMEDOUT, "consumer %s: not all acknowledged in time", durable);
        }
        bmsg_sleep_ms(1);
    }
}

static void consumer_delete(bench *b, const char *durable)
{
    jsErrCode jerr = 0;
    natsStatus s = js_DeleteConsumer(b->js, STREAM, durable, NULL, &jerr);

    if (s != NATS_OK) {
        fprintf(stderr, "bench_consumer: deleting consumer %s: %s\n", durable,
                natsStatus_GetText(s));
    }
}

/* The durable consumer sk_consumer would create (consumer_subscribe), bound as a pull subscription. */
static sk_status raw_subscribe(bench *b, const char *durable, natsSubscription **sub)
{
    jsConsumerConfig cc;
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsStatus s;

    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.MaxDeliver = MAX_DELIVER;
    cc.AckWait = (int64_t)SK_CONSUMER_DEFAULT_ACK_WAIT_MS * 1000000; /* nanoseconds */
    cc.MaxAckPending = MAX_ACK_PENDING;
    cc.FilterSubject = FILTER;
    s = js_AddConsumer(NULL, b->js, STREAM, &cc, NULL, &jerr);
    if (s != NATS_OK) {
        return bmsg_nats_fail(s, jerr, "creating the durable consumer");
    }
    jsSubOptions_Init(&so);
    so.Stream = STREAM;
    so.Consumer = durable;
    so.ManualAck = true;
    jerr = 0;
    s = js_PullSubscribe(sub, b->js, FILTER, durable, NULL, &so, &jerr);
    return s == NATS_OK ? SK_OK : bmsg_nats_fail(s, jerr, "pull subscribe");
}

/* ---------------------------------------------------------------- sk_consumer */

typedef struct handler_ctx {
    atomic_size_t n_handled;
} handler_ctx;

/* The service's work: one small row, in the unit that also writes the inbox row. */
static sk_status handler(sk_tx *tx, const sk_message *m, void *ctx)
{
    handler_ctx *h = ctx;
    sk_db_value p[3] = { SK_DB_TEXT_V(m->env.id), SK_DB_TEXT_V(m->env.subject),
                         SK_DB_INT_V((int64_t)m->data.len) };
    sk_status st = sk_tx_exec(tx, effect_insert, p, 3, NULL);

    if (st == SK_OK) {
        atomic_fetch_add(&h->n_handled, 1);
    }
    return st;
}

static sk_status run_sk(bench *b, int round, bmsg_result *res)
{
    sk_migration mig[16];
    size_t n_mig = 0;
    const sk_migration *msg_mig = sk_msg_migrations(&n_mig);
    sk_store_config sc = { 0 };
    sk_store *store = NULL;
    sk_bus *bus = NULL;
    sk_consumer *c = NULL;
    handler_ctx h = { 0 };
    char url[128], db[32], durable[32];
    sk_consumer_config cc = { .stream = STREAM,
                              .durable = durable,
                              .filter_subject = FILTER,
                              .handler = handler,
                              .ctx = &h }; /* the defaults otherwise: batch 128, AckWait 5 s */
    sk_status st = SK_OK;
    bmsg_meter meter;
    int64_t deadline;

    if (n_mig + 1 > sizeof(mig) / sizeof(mig[0])) {
        return SK_FAIL(SK_EINTERNAL, "too many migrations");
    }
    memcpy(mig, msg_mig, n_mig * sizeof(mig[0]));
    mig[n_mig++] = (sk_migration){ "bench", 1, effect_schema };
    snprintf(db, sizeof(db), "sk-%d.db", round);
    snprintf(url, sizeof(url), "sqlite:%s/%s", b->e.dir, db);
    snprintf(durable, sizeof(durable), "sk_%d", round);
    sc.url = url;
    sc.migrations = mig;
    sc.n_migrations = n_mig;
    if ((st = sk_store_open(&store, &sc)) != SK_OK) {
        st = SK_WRAP(st, "sk_consumer: store");
        goto out;
    }
    if ((st = bmsg_bus_open(&b->e, "bench-consumer", &bus)) != SK_OK) {
        goto out;
    }
    bmsg_meter_start(&meter, &b->e);
    deadline = sk_time_mono_ms() + b->budget_ms;
    if ((st = sk_consumer_start(&c, bus, store, NULL, &cc)) != SK_OK) {
        goto out;
    }
    /* Cheap local gate first, then the server's word that every ack arrived. */
    while (atomic_load(&h.n_handled) < b->n) {
        if (sk_time_mono_ms() >= deadline) {
            st = SK_FAIL(SK_ETIMEDOUT, "sk_consumer: %zu of %zu handled in time",
                         atomic_load(&h.n_handled), b->n);
            goto out;
        }
        bmsg_sleep_ms(1);
    }
    if ((st = wait_all_acked(b, durable, deadline)) != SK_OK) {
        goto out;
    }
    bmsg_meter_stop(&meter, res);
    res->n = atomic_load(&h.n_handled);
    {
        uint64_t n_units = 0, n_commits = 0;
        sk_store_stats(store, &n_units, &n_commits);
        printf("  (sk_consumer round %d: %llu units in %llu commits, %.1f units per commit)\n",
               round + 1, (unsigned long long)n_units, (unsigned long long)n_commits,
               n_commits > 0 ? (double)n_units / (double)n_commits : 0.0);
    }
    if (res->n != b->n) {
        st = SK_FAIL(SK_EINTERNAL, "sk_consumer: handled %zu, expected %zu", res->n, b->n);
    }
out:
    sk_consumer_stop(c);
    if (bus != NULL && sk_consumer_delete(bus, STREAM, durable) != SK_OK) {
        fprintf(stderr, "bench_consumer: %s\n", sk_error_message());
    }
    sk_bus_close(bus);
    sk_store_close(store);
    bmsg_db_remove(b->e.dir, db);
    return st;
}

/* ---------------------------------------------------------------- raw fetch + ack */

/* The raw+db contender's database and statements; the raw contender has none. */
typedef struct raw_db {
    sqlite3 *db;
    sqlite3_stmt *si; /* inbox insert */
    sqlite3_stmt *se; /* effect insert */
} raw_db;

static sk_status db_batch(raw_db *d, const char *durable, natsMsgList *list);

/*
 * Both raw contenders: Fetch(BATCH) and ack each message, after writing the
 * batch to @p d in one transaction when there is one, until all N are acked.
 */
static sk_status fetch_ack_loop(bench *b, const char *label, const char *durable, raw_db *d,
                                bmsg_result *res)
{
    natsSubscription *sub = NULL;
    size_t got = 0;
    sk_status st = SK_OK;
    int64_t deadline = sk_time_mono_ms() + b->budget_ms;
    bmsg_meter meter;

    bmsg_meter_start(&meter, &b->e);
    if ((st = raw_subscribe(b, durable, &sub)) != SK_OK) {
        goto out;
    }
    while (got < b->n) {
        natsMsgList list = { 0 };
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, sub, BATCH, FETCH_WAIT_MS, &jerr);

        if (s == NATS_OK) {
            /* Acknowledge only once the batch's transaction is durable. */
            if (d != NULL) {
                st = db_batch(d, durable, &list);
            }
            for (int i = 0; i < list.Count && st == SK_OK; i++) {
                natsStatus a = natsMsg_Ack(list.Msgs[i], NULL);
                if (a != NATS_OK) {
                    st = bmsg_nats_fail(a, 0, "ack");
                }
            }
            got += (size_t)list.Count;
        } else if (s != NATS_TIMEOUT) {
            st = bmsg_nats_fail(s, jerr, "fetch");
        }
        natsMsgList_Destroy(&list);
        if (st != SK_OK) {
            goto out;
        }
        if (sk_time_mono_ms() >= deadline) {
            st = SK_FAIL(SK_ETIMEDOUT, "%s: %zu of %zu fetched in time", label, got, b->n);
            goto out;
        }
    }
    if ((st = wait_all_acked(b, durable, deadline)) != SK_OK) {
        goto out;
    }
    bmsg_meter_stop(&meter, res);
    res->n = got;
out:
    if (sub != NULL) {
        SK_IGNORE(natsSubscription_Unsubscribe(sub)); /* bound: the durable stays until deleted */
        natsSubscription_Destroy(sub);
        consumer_delete(b, durable);
    }
    return st;
}

static sk_status run_raw(bench *b, int round, bmsg_result *res)
{
    char durable[32];

    snprintf(durable, sizeof(durable), "raw_%d", round);
    return fetch_ack_loop(b, "raw", durable, NULL, res);
}

/* ---------------------------------------------------------------- raw fetch + SQLite + ack */

static sk_status db_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        sk_status st = SK_FAIL(SK_EDB, "raw+db: %.60s: %s", sql, err != NULL ? err : "?");
        sqlite3_free(err);
        return st;
    }
    return SK_OK;
}

/* A database like an sk_store's: WAL, synchronous=FULL, temp_store=MEMORY, the same tables. */
static sk_status db_open(const char *path, sqlite3 **out)
{
    size_t n_mig = 0;
    const sk_migration *mig = sk_msg_migrations(&n_mig);
    sk_status st;

    if (sqlite3_open_v2(path, out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        return SK_FAIL(SK_EDB, "raw+db: opening %s: %s", path, sqlite3_errmsg(*out));
    }
    if ((st = db_exec(*out, "PRAGMA journal_mode=WAL")) != SK_OK ||
        (st = db_exec(*out, "PRAGMA synchronous=FULL")) != SK_OK ||
        (st = db_exec(*out, "PRAGMA temp_store=MEMORY")) != SK_OK ||
        (st = db_exec(*out, "PRAGMA foreign_keys=ON")) != SK_OK) {
        return st;
    }
    for (size_t i = 0; i < n_mig; i++) {
        if ((st = db_exec(*out, mig[i].sql)) != SK_OK) {
            return st;
        }
    }
    return db_exec(*out, effect_schema);
}

/* One fetched batch in one transaction: inbox row + effect row per message. */
static sk_status db_batch(raw_db *d, const char *durable, natsMsgList *list)
{
    sqlite3 *db = d->db;
    sqlite3_stmt *si = d->si;
    sqlite3_stmt *se = d->se;
    sk_status st = db_exec(db, "BEGIN IMMEDIATE");
    int64_t now = sk_time_now_ms();

    for (int i = 0; i < list->Count && st == SK_OK; i++) {
        natsMsg *m = list->Msgs[i];
        const char *id = NULL;
        const char *agg = NULL;

        if (natsMsgHeader_Get(m, "ce-id", &id) != NATS_OK ||
            natsMsgHeader_Get(m, "ce-subject", &agg) != NATS_OK) {
            st = SK_FAIL(SK_EPROTO, "raw+db: message without ce-id or ce-subject");
            break;
        }
        sqlite3_bind_text(si, 1, durable, -1, SQLITE_STATIC);
        sqlite3_bind_text(si, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(si, 3, now);
        if (sqlite3_step(si) != SQLITE_DONE) {
            st = SK_FAIL(SK_EDB, "raw+db: inbox insert: %s", sqlite3_errmsg(db));
        } else if (sqlite3_changes(db) == 1) {
            sqlite3_bind_text(se, 1, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(se, 2, agg, -1, SQLITE_STATIC);
            sqlite3_bind_int64(se, 3, natsMsg_GetDataLength(m));
            if (sqlite3_step(se) != SQLITE_DONE) {
                st = SK_FAIL(SK_EDB, "raw+db: effect insert: %s", sqlite3_errmsg(db));
            }
            sqlite3_reset(se);
        }
        sqlite3_reset(si);
    }
    if (st == SK_OK) {
        return db_exec(db, "COMMIT");
    }
    SK_IGNORE(db_exec(db, "ROLLBACK")); /* the failure is already reported */
    return st;
}

static sk_status run_raw_db(bench *b, int round, bmsg_result *res)
{
    raw_db d = { 0 };
    char path[160], name[32], durable[32];
    sk_status st = SK_OK;

    snprintf(name, sizeof(name), "rawdb-%d.db", round);
    snprintf(path, sizeof(path), "%s/%s", b->e.dir, name);
    snprintf(durable, sizeof(durable), "rawdb_%d", round);
    if ((st = db_open(path, &d.db)) != SK_OK) {
        goto out;
    }
    if (sqlite3_prepare_v2(d.db, inbox_insert, -1, &d.si, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(d.db, effect_insert, -1, &d.se, NULL) != SQLITE_OK) {
        st = SK_FAIL(SK_EDB, "raw+db: prepare: %s", sqlite3_errmsg(d.db));
        goto out;
    }
    st = fetch_ack_loop(b, "raw+db", durable, &d, res);
out:
    sqlite3_finalize(d.si);
    sqlite3_finalize(d.se);
    sqlite3_close(d.db);
    bmsg_db_remove(b->e.dir, name);
    return st;
}

/* ---------------------------------------------------------------- main */

/* Create the streams (as sk_bus_stream_ensure makes them) and fill ours with N messages. */
static sk_status setup(bench *b)
{
    const char *subjects[] = { FILTER };
    const char *dlq_subjects[] = { SK_DLQ_SUBJECT_PREFIX ">" };
    sk_stream_config sc = { .name = STREAM, .subjects = subjects, .n_subjects = 1 };
    sk_stream_config dlq = { .name = SK_DLQ_STREAM, .subjects = dlq_subjects, .n_subjects = 1 };
    sk_bus *bus = NULL;
    bmsg_event *events = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    size_t n_acked = 0;
    sk_status st;
    natsStatus s;

    if ((st = bmsg_bus_open(&b->e, "bench-setup", &bus)) != SK_OK) {
        return st;
    }
    /* The dead-letter stream too, which sk_consumer_start would otherwise create inside round 1. */
    st = sk_bus_stream_ensure(bus, &sc);
    if (st == SK_OK) {
        st = sk_bus_stream_ensure(bus, &dlq);
    }
    sk_bus_close(bus);
    if (st != SK_OK) {
        return st;
    }
    events = bmsg_events_create(b->n, "OrderPlaced");
    if (events == NULL) {
        return SK_FAIL(SK_ENOMEM, "envelopes");
    }
    st = bmsg_publish_async(b->nc, SUBJECT, events, b->n, 0, PUBLISH_PENDING, &n_acked);
    sk_free(events);
    if (st != SK_OK) {
        return SK_WRAP(st, "filling the stream");
    }
    s = js_GetStreamInfo(&si, b->js, STREAM, NULL, &jerr);
    if (s != NATS_OK) {
        return bmsg_nats_fail(s, jerr, "stream info");
    }
    b->last_seq = si->State.LastSeq;
    if (si->State.Msgs != b->n) {
        st = SK_FAIL(SK_EINTERNAL, "stream holds %llu messages, expected %zu",
                     (unsigned long long)si->State.Msgs, b->n);
    }
    jsStreamInfo_Destroy(si);
    return st;
}

typedef sk_status (*contender_fn)(bench *b, int round, bmsg_result *res);

int main(int argc, char **argv)
{
    static const char *const names[N_CONTENDERS] = { "sk_consumer", "raw fetch+ack",
                                                     "raw fetch+db+ack" };
    static const contender_fn fns[N_CONTENDERS] = { run_sk, run_raw, run_raw_db };
    bmsg_opts o;
    bench b = { 0 };
    json_t *jrounds = NULL;
    double r_raw[100], r_db[100], c_raw[100], c_db[100];
    sk_status st = SK_OK;
    int rc;

    if ((rc = bmsg_opts_parse(&o, argc, argv, "bench_consumer", DEFAULT_MESSAGES)) != 0) {
        return rc;
    }
    rc = 1;
    if (sk_init("bench_consumer") != SK_OK) {
        fprintf(stderr, "bench_consumer: %s\n", sk_error_message());
        return 1;
    }
    sk_log_set_level(SK_LOG_LEVEL_WARN);
    b.n = o.n_messages;
    b.budget_ms = 60000 + (int64_t)(b.n / 100); /* a stuck contender fails the run */
    jrounds = json_array();
    if (jrounds == NULL || (st = bmsg_env_start(&b.e, o.is_tls)) != SK_OK ||
        (st = bmsg_conn_open(&b.e, "bench-raw", &b.nc)) != SK_OK) {
        goto out;
    }
    {
        natsStatus s = natsConnection_JetStream(&b.js, b.nc, NULL);
        if (s != NATS_OK) {
            st = bmsg_nats_fail(s, 0, "JetStream context");
            goto out;
        }
    }
    if ((st = setup(&b)) != SK_OK) {
        goto out;
    }
    printf("bench_consumer: %zu messages per contender, %d rounds, nats-server %s, %s, "
           "stream %s file storage R1, ~300-byte payloads, batch %d, MaxAckPending %d, "
           "ack = +ACK without confirmation\n",
           b.n, o.rounds, sk_test_nats_url(b.e.nats), bmsg_transport(&b.e), STREAM, BATCH,
           MAX_ACK_PENDING);
    for (int r = 0; r < o.rounds; r++) {
        bmsg_result res[N_CONTENDERS];
        json_t *jr;

        for (int k = 0; k < N_CONTENDERS; k++) {
            res[k] = (bmsg_result){ .name = names[k] };
        }
        /* Rotate who goes first: the shared machine drifts. */
        for (int k = 0; k < N_CONTENDERS && st == SK_OK; k++) {
            int i = (r + k) % N_CONTENDERS;
            st = fns[i](&b, r, &res[i]);
        }
        if (st != SK_OK) {
            goto out;
        }
        r_raw[r] = bmsg_rate(&res[0]) / bmsg_rate(&res[1]);
        r_db[r] = bmsg_rate(&res[0]) / bmsg_rate(&res[2]);
        c_raw[r] = bmsg_cpu_per_msg(&res[0]) / bmsg_cpu_per_msg(&res[1]);
        c_db[r] = bmsg_cpu_per_msg(&res[0]) / bmsg_cpu_per_msg(&res[2]);
        printf("round %d (%s first):\n", r + 1, names[r % N_CONTENDERS]);
        for (int k = 0; k < N_CONTENDERS; k++) {
            bmsg_result_print("  ", &res[k]);
        }
        printf("  ratio sk_consumer/raw:    throughput %.3f, CPU per message %.2fx\n", r_raw[r],
               c_raw[r]);
        printf("  ratio sk_consumer/raw+db: throughput %.3f, CPU per message %.2fx\n", r_db[r],
               c_db[r]);
        fflush(stdout);
        jr = json_pack("{s:o, s:o, s:o, s:f, s:f, s:f, s:f}", "sk_consumer",
                       bmsg_result_json(&res[0]), "raw", bmsg_result_json(&res[1]), "raw_db",
                       bmsg_result_json(&res[2]), "ratio_raw", r_raw[r], "ratio_raw_db", r_db[r],
                       "cpu_ratio_raw", c_raw[r], "cpu_ratio_raw_db", c_db[r]);
        if (jr == NULL || json_array_append_new(jrounds, jr) != 0) {
            st = SK_FAIL(SK_ENOMEM, "json");
            goto out;
        }
    }
    bmsg_spread_print("throughput ratio sk_consumer/raw:", r_raw, (size_t)o.rounds);
    bmsg_spread_print("throughput ratio sk_consumer/raw+db:", r_db, (size_t)o.rounds);
    bmsg_spread_print("CPU-per-message ratio sk_consumer/raw:", c_raw, (size_t)o.rounds);
    bmsg_spread_print("CPU-per-message ratio sk_consumer/raw+db:", c_db, (size_t)o.rounds);
    if (o.is_json) {
        st = bmsg_json_print(json_pack("{s:s, s:s, s:I, s:s, s:O, s:f, s:f}", "bench", "consumer",
                                       "transport", o.is_tls ? "mtls" : "plain", "messages",
                                       (json_int_t)b.n, "ack", "+ACK", "rounds", jrounds,
                                       "ratio_raw_median", bmsg_median(r_raw, (size_t)o.rounds),
                                       "ratio_raw_db_median", bmsg_median(r_db, (size_t)o.rounds)));
        if (st != SK_OK) {
            goto out;
        }
    }
    rc = 0;
out:
    if (st != SK_OK) {
        fprintf(stderr, "bench_consumer: %s\n", sk_error_message());
    }
    json_decref(jrounds);
    jsCtx_Destroy(b.js);
    natsConnection_Destroy(b.nc);
    bmsg_env_stop(&b.e);
    if (!o.is_tls) {
        /* With TLS connections this races OpenSSL's own exit cleanup (see test_msg_rotation). */
        nats_CloseAndWait(5000);
    }
    sk_shutdown();
    return rc;
}
