/* SPDX-License-Identifier: MIT */
/*
 * Integration: durable consumer exactly-once under redelivery, transient
 * failures (retried from the parking tables) and duplicate stream copies,
 * dead letters after max_deliver (other aggregates still flow, the failing
 * one's later messages stay parked), malformed messages dead-lettered at
 * once, SK_EPROTO from a handler. Parking, redrive and upcasting in detail:
 * test_msg_dlq.c.
 * Real nats-server, real SQLite files.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "msg/msg_int.h"
#include "sk_test.h"
#include "sk_test_nats.h"

#define STREAM  "INV_COMMANDS"
#define DURABLE "inventory"

static const sk_migration test_migration = {
    "test", 1, "CREATE TABLE counts (msg_id TEXT PRIMARY KEY, n INTEGER NOT NULL)"
};

typedef struct fixture {
    sk_test_nats *nats;
    sk_bus *bus;
    sk_store *store;
    char dir[64];
    _Atomic int calls;
    _Atomic int poison_calls;
} fixture;

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    const char *subjects[] = { "inv.commands.>" };
    sk_stream_config sc = { .name = STREAM, .subjects = subjects, .n_subjects = 1 };
    sk_migration mig[8];
    size_t n_mig = 0;
    const sk_migration *msg_mig = sk_msg_migrations(&n_mig);
    char url[128];

    assert_non_null(f);
    memcpy(mig, msg_mig, n_mig * sizeof(*mig));
    mig[n_mig++] = test_migration;
    assert_int_equal(sk_test_nats_start(&f->nats, NULL), SK_OK);
    sk_bus_config bc = { .servers = sk_test_nats_url(f->nats), .name = "test-consumer" };
    assert_int_equal(sk_bus_open(&f->bus, &bc), SK_OK);
    assert_int_equal(sk_bus_stream_ensure(f->bus, &sc), SK_OK);
    assert_int_equal(sk_test_tmpdir(f->dir, sizeof(f->dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/db.sqlite", f->dir);
    sk_store_config cfg = { .url = url, .migrations = mig, .n_migrations = n_mig };
    assert_int_equal(sk_store_open(&f->store, &cfg), SK_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_store_close(f->store);
    sk_bus_close(f->bus);
    sk_test_nats_stop(f->nats);
    sk_test_rmrf(f->dir);
    sk_free(f);
    return 0;
}

/* ---------------------------------------------------------------- publishing */

/*
 * Publish one message with an envelope for aggregate (ce-subject) @p agg;
 * @p msg_id overrides Nats-Msg-Id (copies).
 */
static void publish(fixture *f,
                    const char *type,
                    const char *agg,
                    const char *id,
                    const char *msg_id,
                    const char *data)
{
    sk_envelope env;
    natsMsg *m = NULL;

    sk_envelope_init(&env, type, "test", agg, NULL);
    if (id != NULL) {
        snprintf(env.id, sizeof(env.id), "%s", id);
    }
    assert_int_equal(natsMsg_Create(&m, "inv.commands.Reserve", NULL, data, (int)strlen(data)),
                     NATS_OK);
    assert_int_equal(sk__envelope_encode(&env, m), SK_OK);
    if (msg_id != NULL) {
        assert_int_equal(natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id), NATS_OK);
    }
    assert_int_equal(js_PublishMsg(NULL, sk__bus_js(f->bus), m, NULL, NULL), NATS_OK);
    natsMsg_Destroy(m);
}

static void publish_raw(fixture *f, const char *data)
{
    assert_int_equal(js_Publish(NULL, sk__bus_js(f->bus), "inv.commands.Raw", data,
                                (int)strlen(data), NULL, NULL),
                     NATS_OK);
}

/* ---------------------------------------------------------------- handler */

static sk_status count_handler(sk_tx *tx, const sk_message *m, void *ctx)
{
    fixture *f = ctx;
    sk_db_value p[1] = { SK_DB_TEXT_V(m->env.id) };
    int64_t n = json_integer_value(json_object_get(m->json, "n"));

    atomic_fetch_add(&f->calls, 1);
    if (strcmp(m->env.type, "Poison") == 0) {
        atomic_fetch_add(&f->poison_calls, 1);
        return SK_FAIL(SK_EUNAVAILABLE, "boom: poison message %lld", (long long)n);
    }
    if (strcmp(m->env.type, "Bad") == 0) {
        return SK_FAIL(SK_EPROTO, "bad command: field sku missing");
    }
    /* Some messages fail transiently on their first delivery. */
    if (n % 7 == 0 && m->n_delivered == 1) {
        return SK_FAIL(SK_EUNAVAILABLE, "transient failure of message %lld", (long long)n);
    }
    return sk_tx_exec(tx,
                      "INSERT INTO counts (msg_id, n) VALUES (?, 1) "
                      "ON CONFLICT (msg_id) DO UPDATE SET n = n + 1",
                      p, 1, NULL);
}

/* Start the test consumer on @p store with @p handler (0: the defaults). */
static sk_consumer *start_on(sk_bus *bus,
                             sk_store *store,
                             sk_msg_handler_fn handler,
                             void *ctx,
                             int max_deliver,
                             int64_t ack_wait_ms,
                             size_t batch)
{
    sk_consumer_config cfg = {
        .stream = STREAM,
        .durable = DURABLE,
        .filter_subject = "inv.commands.>",
        .max_deliver = max_deliver,
        .ack_wait_ms = ack_wait_ms,
        .batch = batch,
        .handler = handler,
        .ctx = ctx,
    };
    sk_consumer *c = NULL;
    assert_int_equal(sk_consumer_start(&c, bus, store, NULL, &cfg), SK_OK);
    return c;
}

static sk_consumer *start(fixture *f, int max_deliver, int64_t ack_wait_ms, size_t batch)
{
    return start_on(f->bus, f->store, count_handler, f, max_deliver, ack_wait_ms, batch);
}

/* ---------------------------------------------------------------- queries */

typedef struct q {
    fixture *f;
    const char *sql;
    int64_t want;
    int64_t got;
} q;

static sk_status q_run(sk_tx *tx, void *ctx)
{
    q *x = ctx;
    return sk_tx_query_int(tx, x->sql, NULL, 0, &x->got);
}

static int64_t query(fixture *f, const char *sql)
{
    q x = { .f = f, .sql = sql };
    assert_int_equal(sk_store_read(f->store, q_run, &x), SK_OK);
    return x.got;
}

static bool q_reached(void *ctx)
{
    q *x = ctx;
    return sk_store_read(x->f->store, q_run, x) == SK_OK && x->got >= x->want;
}

static void wait_query(fixture *f, const char *sql, int64_t want, int64_t timeout_ms)
{
    q x = { .f = f, .sql = sql, .want = want };
    if (!sk_test_wait_until(q_reached, &x, timeout_ms)) {
        fail_msg("%s: got %lld, want %lld", sql, (long long)x.got, (long long)want);
    }
}

static bool no_ack_pending(void *ctx)
{
    fixture *f = ctx;
    jsConsumerInfo *ci = NULL;
    bool ok = false;
    if (js_GetConsumerInfo(&ci, sk__bus_js(f->bus), STREAM, DURABLE, NULL, NULL) == NATS_OK) {
        ok = ci->NumAckPending == 0 && ci->NumPending == 0;
    }
    jsConsumerInfo_Destroy(ci);
    return ok;
}

/* ---------------------------------------------------------------- tests */

static void test_consumer_exactly_once_under_redelivery(void **state)
{
    fixture *f = *state;
    static const char *const aggs[10] = { "a0", "a1", "a2", "a3", "a4",
                                          "a5", "a6", "a7", "a8", "a9" };
    char ids[200][SK_UUID_LEN];
    char data[64];
    sk_consumer *c;

    for (int i = 0; i < 200; i++) {
        sk_uuid7(ids[i]);
        snprintf(data, sizeof(data), "{\"n\":%d}", i + 1);
        publish(f, "Reserve", aggs[i % 10], ids[i], NULL, data);
    }
    /* The same ce-id stored twice: a different Nats-Msg-Id defeats JetStream's dedup. */
    for (int i = 0; i < 200; i += 10) {
        char other[SK_UUID_LEN];
        sk_uuid7(other);
        snprintf(data, sizeof(data), "{\"n\":%d}", i + 1);
        publish(f, "Reserve", aggs[i % 10], ids[i], other, data);
    }
    c = start(f, 5, 2000, 16);
    wait_query(f, "SELECT COUNT(*) FROM counts", 200, 15000);
    assert_true(sk_test_wait_until(no_ack_pending, f, 15000));
    sk_consumer_stop(c);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM counts"), 200);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM counts WHERE n <> 1"), 0);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_inbox WHERE consumer = 'inventory'"), 200);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_dead_letters"), 0);
    /* Transient failures and duplicates made the handler run more than 200 times. */
    assert_true(atomic_load(&f->calls) > 200);

    /* A restart binds to the same durable and gets nothing again. */
    c = start(f, 5, 2000, 16);
    publish(f, "Reserve", aggs[1], ids[1], "fresh-copy", "{\"n\":2}");
    assert_true(sk_test_wait_until(no_ack_pending, f, 10000));
    sk_consumer_stop(c);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM counts WHERE n <> 1"), 0);
}

static void test_consumer_dead_letters_after_max_deliver(void **state)
{
    fixture *f = *state;
    sk_relay *relay = NULL;
    sk_metrics *metrics = NULL;
    sk_consumer *c = NULL;
    jsStreamInfo *si = NULL;
    char data[64];
    sk_buf out;
    sk_consumer_config cfg = {
        .stream = STREAM,
        .durable = DURABLE,
        .filter_subject = "inv.commands.>",
        .max_deliver = 3,
        .ack_wait_ms = 5000,
        .handler = count_handler,
        .ctx = f,
    };

    assert_int_equal(sk_metrics_create(&metrics), SK_OK);
    assert_int_equal(sk_relay_start(&relay, f->store, f->bus, NULL), SK_OK);
    publish(f, "Poison", "poison", NULL, NULL, "{\"n\":1}");
    for (int i = 0; i < 5; i++) {
        char agg[16];
        snprintf(agg, sizeof(agg), "other-%d", i);
        snprintf(data, sizeof(data), "{\"n\":%d}", 7 * (100 + i) + 1); /* never fails */
        publish(f, "Reserve", agg, NULL, NULL, data);
    }
    /* Parked behind the poison message: never handled while it is dead. */
    publish(f, "Reserve", "poison", NULL, NULL, "{\"n\":2}");
    assert_int_equal(sk_consumer_start(&c, f->bus, f->store, metrics, &cfg), SK_OK);
    /* Later messages are not held up by the failing one. */
    wait_query(f, "SELECT COUNT(*) FROM counts", 5, 5000);
    wait_query(f, "SELECT COUNT(*) FROM sk_dead_letters", 1, 15000);
    assert_int_equal(atomic_load(&f->poison_calls), 3);
    wait_query(f, "SELECT COUNT(*) FROM sk_msg_parked WHERE aggregate = 'poison'", 1, 5000);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM counts"), 5);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_msg_blocked WHERE aggregate = 'poison' AND "
                              "dead_letter_id = (SELECT id FROM sk_dead_letters)"),
                     1);
    assert_int_equal(query(f, "SELECT deliveries FROM sk_dead_letters"), 3);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_dead_letters WHERE error LIKE "
                              "'%boom: poison message 1%' AND consumer = 'inventory' AND msg_id "
                              "IS NOT NULL AND subject = 'inv.commands.Reserve'"),
                     1);
    assert_true(sk_test_wait_until(no_ack_pending, f, 10000));
    /* The dead letter went through the outbox to the dead-letter stream. */
    for (int64_t deadline = sk_time_mono_ms() + 10000; sk_time_mono_ms() < deadline;) {
        jsStreamInfo_Destroy(si);
        si = NULL;
        if (js_GetStreamInfo(&si, sk__bus_js(f->bus), SK_DLQ_STREAM, NULL, NULL) == NATS_OK &&
            si->State.Msgs == 1) {
            break;
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    assert_non_null(si);
    assert_int_equal(si->State.Msgs, 1);
    jsStreamInfo_Destroy(si);
    {
        natsMsg *m = NULL;
        assert_int_equal(js_GetLastMsg(&m, sk__bus_js(f->bus), SK_DLQ_STREAM, "dlq.inventory",
                                       NULL, NULL),
                         NATS_OK);
        assert_non_null(strstr(natsMsg_GetData(m), "boom: poison message 1"));
        assert_non_null(strstr(natsMsg_GetData(m), "\"deliveries\":3"));
        natsMsg_Destroy(m);
    }
    sk_consumer_stop(c);
    sk_relay_stop(relay);
    sk_buf_init(&out, 1 << 20);
    assert_int_equal(sk_metrics_render(metrics, &out), SK_OK);
    assert_non_null(
        strstr(out.data, "sk_consumer_messages_total{consumer=\"inventory\",result=\"dead\"} 1"));
    assert_non_null(
        strstr(out.data, "sk_consumer_messages_total{consumer=\"inventory\",result=\"retry\"} 2"));
    assert_non_null(
        strstr(out.data, "sk_consumer_messages_total{consumer=\"inventory\",result=\"parked\"} 1"));
    sk_buf_fini(&out);
    sk_metrics_destroy(metrics);
}

/* Another instance's writer blocking aggregate z (written here without the consumer). */
static sk_status block_z(sk_tx *tx, void *ctx)
{
    (void)ctx;
    sk_db_value p[1] = { SK_DB_INT_V(sk_time_now_ms() + 3600 * 1000) };
    return sk_tx_exec(tx,
                      "INSERT INTO sk_msg_blocked (consumer, aggregate, head_position, "
                      "dead_letter_id, next_ms, since_ms) VALUES ('" DURABLE "', 'z', NULL, NULL, "
                      "?, 0)",
                      p, 1, NULL);
}

/*
 * A transaction that found no block skips the per-message block lookup; a
 * block committed afterwards by another writer must still park the next
 * message of its aggregate.
 */
static void test_consumer_sees_a_block_committed_by_another_writer(void **state)
{
    fixture *f = *state;
    sk_consumer *c = start(f, 5, 5000, 0);

    publish(f, "Reserve", "y", NULL, NULL, "{\"n\":1}");
    wait_query(f, "SELECT COUNT(*) FROM counts", 1, 10000);
    assert_int_equal(sk_store_run(f->store, block_z, NULL), SK_OK);
    publish(f, "Reserve", "z", NULL, NULL, "{\"n\":2}");
    publish(f, "Reserve", "y", NULL, NULL, "{\"n\":3}");
    wait_query(f, "SELECT COUNT(*) FROM counts", 2, 10000);
    wait_query(f, "SELECT COUNT(*) FROM sk_msg_parked WHERE aggregate = 'z'", 1, 10000);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM counts"), 2);
    assert_int_equal(atomic_load(&f->calls), 2);
    sk_consumer_stop(c);
}

/* An inbox row of @p consumer for a UUIDv7-shaped id made at @p ms. */
static sk_status inbox_row(sk_tx *tx, const char *consumer, int64_t ms, char version, int n,
                           bool is_upper)
{
    char cut[14], id[40];
    sk__inbox_cutoff(ms, cut);
    snprintf(id, sizeof(id), "%s-%c%03x-8000-%012x", cut, version, n & 0xfff, n);
    for (char *p = id; is_upper && *p != '\0'; p++) {
        *p = (char)toupper((unsigned char)*p);
    }
    sk_db_value p[3] = { SK_DB_TEXT_V(consumer), SK_DB_TEXT_V(id), SK_DB_INT_V(ms) };
    return sk_tx_exec(tx, "INSERT INTO sk_inbox (consumer, msg_id, processed_ms) VALUES (?, ?, ?)",
                      p, 3, NULL);
}

#define N_EXPIRED 12000 /* more than one prune unit deletes */

static sk_status inbox_seed(sk_tx *tx, void *ctx)
{
    int64_t now = sk_time_now_ms();
    int64_t old = now - 8LL * 24 * 3600 * 1000;
    sk_status st = SK_OK;
    (void)ctx;

    for (int i = 0; i < N_EXPIRED && st == SK_OK; i++) {
        st = inbox_row(tx, DURABLE, old + i, '7', i, false);
    }
    if (st == SK_OK) {
        st = inbox_row(tx, DURABLE, now - 3600 * 1000, '7', 1, false); /* within the week */
    }
    if (st == SK_OK) {
        st = inbox_row(tx, DURABLE, old, '7', 2, true); /* upper case: not ours, kept */
    }
    if (st == SK_OK) {
        st = inbox_row(tx, DURABLE, old, '4', 3, false); /* not a UUIDv7: no time in it */
    }
    if (st == SK_OK) {
        st = inbox_row(tx, "someone-else", old, '7', 4, false); /* another consumer's */
    }
    return st;
}

static bool inbox_pruned(void *ctx)
{
    q *x = ctx;
    return sk_store_read(x->f->store, q_run, x) == SK_OK && x->got <= x->want;
}

/*
 * The inbox keeps a week: older rows of this consumer go (several units of
 * at most 10,000), newer rows, ids without a time and other consumers' stay.
 */
static void test_consumer_prunes_its_old_inbox_rows(void **state)
{
    fixture *f = *state;
    q x = { .f = f, .sql = "SELECT COUNT(*) FROM sk_inbox WHERE consumer = '" DURABLE "'",
            .want = 3 };

    assert_int_equal(sk_store_run(f->store, inbox_seed, NULL), SK_OK);
    assert_int_equal(query(f, x.sql), N_EXPIRED + 3);
    sk_consumer *c = start(f, 5, 5000, 0);
    if (!sk_test_wait_until(inbox_pruned, &x, 20000)) {
        fail_msg("%s: got %lld, want 3", x.sql, (long long)x.got);
    }
    sk_consumer_stop(c);
    assert_int_equal(query(f, x.sql), 3);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_inbox WHERE consumer = 'someone-else'"), 1);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_inbox WHERE consumer = '" DURABLE
                              "' AND substr(msg_id, 15, 1) = '7' AND msg_id = lower(msg_id)"),
                     1);
}

static void test_consumer_malformed_dead_lettered_at_once(void **state)
{
    fixture *f = *state;
    sk_consumer *c;

    publish_raw(f, "{\"no\":\"envelope\"}");
    publish(f, "Reserve", "m1", NULL, NULL, "not json");
    publish(f, "Reserve", "m2", NULL, NULL, "[1,2]");
    publish(f, "Bad", "m3", NULL, NULL, "{\"n\":5}");
    publish(f, "Reserve", "m4", NULL, NULL, "{\"n\":8}");
    c = start(f, 5, 30000, 0);
    wait_query(f, "SELECT COUNT(*) FROM sk_dead_letters", 4, 10000);
    wait_query(f, "SELECT COUNT(*) FROM counts", 1, 5000);
    assert_true(sk_test_wait_until(no_ack_pending, f, 10000));
    sk_consumer_stop(c);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_dead_letters WHERE deliveries <> 1"), 0);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_dead_letters WHERE msg_id IS NULL AND "
                              "error LIKE '%invalid envelope%' AND error LIKE '%no headers%'"),
                     1);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_dead_letters WHERE error LIKE "
                              "'%invalid data%'"),
                     2);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_dead_letters WHERE error LIKE "
                              "'%field sku missing%'"),
                     1);
    /* The dead letters are queued for the dead-letter stream. */
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_outbox WHERE subject = 'dlq.inventory'"),
                     4);
}

/*
 * Read from @p p until @p want messages came (acking each) or, with want
 * INT32_MAX, @p p has no open request. Each must be delivery number
 * @p n_delivered and, with @p last_seq, come after *last_seq in the stream.
 */
static int
pull_read(sk__pull *p, natsConnection *nc, int want, uint64_t n_delivered, uint64_t *last_seq)
{
    int n = 0;

    for (int64_t t0 = sk_time_mono_ms(); n < want && sk_time_mono_ms() - t0 < 10000;) {
        natsMsg *m = NULL;
        assert_int_equal(sk__pull_next(p, &m, 100), SK_OK);
        if (m == NULL) {
            if (!sk__pull_is_open(p) && want == INT32_MAX) {
                break;
            }
            continue;
        }
        uint64_t delivered = 0, seq = 0;
        assert_true(sk__js_ack_parse(natsMsg_GetReply(m), &delivered, &seq));
        assert_int_equal(delivered, n_delivered);
        if (last_seq != NULL) {
            assert_true(seq > *last_seq); /* in stream order */
            *last_seq = seq;
        }
        assert_int_equal(sk__js_ack(nc, m, SK__JS_ACK, 0), NATS_OK);
        natsMsg_Destroy(m);
        n++;
    }
    return n;
}

static void publish_leftovers(jsCtx *js, int n)
{
    jsErrCode jerr = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(js_Publish(NULL, js, "inv.commands.Leftover", "x", 1, NULL, &jerr),
                         NATS_OK);
    }
}

static bool leftovers_settled(void *ctx)
{
    jsConsumerInfo *ci = NULL;
    bool settled = js_GetConsumerInfo(&ci, ctx, STREAM, "leftovers", NULL, NULL) == NATS_OK &&
                   ci->NumAckPending == 0 && ci->NumPending == 0;
    jsConsumerInfo_Destroy(ci);
    return settled;
}

/*
 * The consumer's own pull requests against a real server: a filled request
 * ends without a status, a forgotten one (as after a reconnect) still
 * delivers, an expired one ends with its status (not by being counted lost),
 * whether it got part of its batch or nothing, and closing gives back what
 * had arrived, so it comes again at once rather than after AckWait.
 */
static void test_pull_requests_stand_and_end(void **state)
{
    fixture *f = *state;
    sk__bus_link *link = sk__bus_link_acquire(f->bus);
    jsConsumerConfig cc;
    jsErrCode jerr = 0;
    sk__pull p;
    uint64_t last_seq = 0;

    publish_leftovers(link->js, 300);
    jsConsumerConfig_Init(&cc);
    cc.Durable = "leftovers";
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = 60LL * 1000 * 1000 * 1000; /* a minute: a message not given back waits that long */
    cc.MaxAckPending = 1000;
    cc.FilterSubject = "inv.commands.Leftover";
    assert_int_equal(js_AddConsumer(NULL, link->js, STREAM, &cc, NULL, &jerr), NATS_OK);
    assert_int_equal(sk__pull_open(&p, link->nc, "_INBOX", STREAM, "leftovers"), SK_OK);

    /* Filled: closed without a status. */
    assert_int_equal(sk__pull_ask(&p, 100, 5000), SK_OK);
    assert_int_equal(sk__pull_ask(&p, 100, 5000), SK_EINVAL); /* one at a time */
    assert_int_equal(pull_read(&p, link->nc, 100, 1, &last_seq), 100);
    assert_false(sk__pull_is_open(&p));
    assert_int_equal(p.n_requested, 0);

    /* Forgotten: its messages arrive all the same, counted against nothing. */
    assert_int_equal(sk__pull_ask(&p, 100, 5000), SK_OK);
    sk__pull_forget(&p);
    assert_int_equal(pull_read(&p, link->nc, 100, 1, &last_seq), 100);
    assert_false(sk__pull_is_open(&p));

    /* Part of its batch, then its end status at expiry. */
    assert_int_equal(sk__pull_ask(&p, 200, 2000), SK_OK);
    assert_int_equal(pull_read(&p, link->nc, INT32_MAX, 1, &last_seq), 100);
    assert_false(sk__pull_is_open(&p));
    assert_int_equal(p.n_lost_in_a_row, 0); /* ended by the server, not given up on */

    /*
     * Nothing at all, then its end status, which returns the read at once:
     * waiting out the minute would count the request lost instead.
     */
    natsMsg *none = NULL;
    assert_int_equal(sk__pull_ask(&p, 10, 200), SK_OK);
    assert_int_equal(sk__pull_next(&p, &none, 60000), SK_OK);
    assert_null(none);
    assert_false(sk__pull_is_open(&p));
    assert_int_equal(p.n_lost_in_a_row, 0);
    assert_true(sk_test_wait_until(leftovers_settled, link->js, 5000));

    /* Arrived but not taken when the pull closes: given back, so it comes again at once. */
    publish_leftovers(link->js, 3);
    assert_int_equal(sk__pull_ask(&p, 10, 5000), SK_OK);
    int n_queued = 0, n_bytes = 0;
    for (int64_t t0 = sk_time_mono_ms(); n_queued < 3 && sk_time_mono_ms() - t0 < 5000;) {
        assert_int_equal(natsSubscription_GetPending(p.sub, &n_queued, &n_bytes), NATS_OK);
        struct timespec ts = { 0, 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(n_queued, 3);
    sk__pull_close(&p);
    assert_int_equal(sk__pull_open(&p, link->nc, "_INBOX", STREAM, "leftovers"), SK_OK);
    assert_int_equal(sk__pull_ask(&p, 10, 5000), SK_OK);
    assert_int_equal(pull_read(&p, link->nc, 3, 2, NULL), 3); /* delivered a second time */
    assert_true(sk_test_wait_until(leftovers_settled, link->js, 5000));
    sk__pull_close(&p);
    sk__bus_link_release(link);
}

/* A request over a limit set on the durable is refused, and that is reported, not asked again. */
static void test_pull_refused_request_is_reported(void **state)
{
    fixture *f = *state;
    sk__bus_link *link = sk__bus_link_acquire(f->bus);
    jsConsumerConfig cc;
    jsErrCode jerr = 0;
    sk__pull p;
    natsMsg *m = NULL;

    jsConsumerConfig_Init(&cc);
    cc.Durable = "limited";
    cc.AckPolicy = js_AckExplicit;
    cc.MaxRequestBatch = 10;
    cc.FilterSubject = "inv.commands.Limited";
    assert_int_equal(js_AddConsumer(NULL, link->js, STREAM, &cc, NULL, &jerr), NATS_OK);
    assert_int_equal(sk__pull_open(&p, link->nc, "_INBOX", STREAM, "limited"), SK_OK);
    assert_int_equal(sk__pull_ask(&p, 100, 5000), SK_OK);
    assert_int_equal(sk__pull_next(&p, &m, 10000), SK_ELIMIT);
    assert_null(m);
    assert_non_null(strstr(sk_error_message(), "MaxRequestBatch"));
    assert_false(sk__pull_is_open(&p));
    sk__pull_close(&p);
    sk__bus_link_release(link);
}

/*
 * Requests for a consumer that does not exist get no answer at all: each is
 * counted lost once overdue, and the second in a row is reported.
 */
static void test_pull_without_a_consumer_goes_unanswered(void **state)
{
    fixture *f = *state;
    sk__bus_link *link = sk__bus_link_acquire(f->bus);
    sk__pull p;
    sk_status st = SK_OK;

    assert_int_equal(sk__pull_open(&p, link->nc, "_INBOX", STREAM, "nobody"), SK_OK);
    for (int64_t t0 = sk_time_mono_ms(); st == SK_OK && sk_time_mono_ms() - t0 < 10000;) {
        natsMsg *m = NULL;
        if (!sk__pull_is_open(&p)) {
            assert_int_equal(sk__pull_ask(&p, 10, 200), SK_OK);
        }
        st = sk__pull_next(&p, &m, 500);
        assert_null(m);
    }
    assert_int_equal(st, SK_ETIMEDOUT);
    assert_int_equal(p.n_lost_in_a_row, 2);
    assert_false(sk__pull_is_open(&p));
    sk__pull_close(&p);
    sk__bus_link_release(link);
}

typedef struct tally {
    atomic_int n;
} tally;

static sk_status tally_handler(sk_tx *tx, const sk_message *m, void *ctx)
{
    tally *t = ctx;
    sk_db_value p[1] = { SK_DB_TEXT_V(m->env.id) };

    atomic_fetch_add(&t->n, 1);
    return sk_tx_exec(tx,
                      "INSERT INTO counts (msg_id, n) VALUES (?, 1) "
                      "ON CONFLICT (msg_id) DO UPDATE SET n = n + 1",
                      p, 1, NULL);
}

/*
 * Two instances sharing the database (two stores on one file) start the same
 * consumer: one consumes everything while the other stands by; once the first
 * stops, the second takes over, and no message has an effect twice.
 */
static void test_consumers_sharing_a_database_take_turns(void **state)
{
    fixture *f = *state;
    sk_store *other = NULL;
    sk_migration mig[8];
    size_t n_mig = 0;
    const sk_migration *msg_mig = sk_msg_migrations(&n_mig);
    char url[128];
    tally ta, tb;

    memcpy(mig, msg_mig, n_mig * sizeof(*mig));
    mig[n_mig++] = test_migration;
    snprintf(url, sizeof(url), "sqlite:%s/db.sqlite", f->dir);
    sk_store_config cfg = { .url = url, .migrations = mig, .n_migrations = n_mig };
    assert_int_equal(sk_store_open(&other, &cfg), SK_OK);
    atomic_init(&ta.n, 0);
    atomic_init(&tb.n, 0);
    sk_consumer *a = start_on(f->bus, f->store, tally_handler, &ta, 0, 0, 0);
    sk_consumer *b = start_on(f->bus, other, tally_handler, &tb, 0, 0, 0);

    for (int i = 1; i <= 50; i++) {
        char data[32];
        snprintf(data, sizeof(data), "{\"n\":%d}", i);
        publish(f, "Reserve", "agg", NULL, NULL, data);
    }
    wait_query(f, "SELECT COUNT(*) FROM counts", 50, 10000);
    int na = atomic_load(&ta.n), nb = atomic_load(&tb.n);
    assert_true((na == 50 && nb == 0) || (na == 0 && nb == 50));

    /* The one consuming goes away; the other takes over. */
    sk_consumer *gone = na == 50 ? a : b;
    sk_consumer *stays = na == 50 ? b : a;
    tally *t_stays = na == 50 ? &tb : &ta;
    sk_consumer_stop(gone);
    for (int i = 51; i <= 70; i++) {
        char data[32];
        snprintf(data, sizeof(data), "{\"n\":%d}", i);
        publish(f, "Reserve", "agg", NULL, NULL, data);
    }
    wait_query(f, "SELECT COUNT(*) FROM counts", 70, 10000);
    assert_int_equal(atomic_load(&t_stays->n), 20);
    assert_int_equal(query(f, "SELECT MAX(n) FROM counts"), 1);
    sk_consumer_stop(stays);
    sk_store_close(other);
}

/*
 * The durable consumer deleted under a running consumer (an operator, a
 * stream restored from a backup): its next fetch fails, so it binds again,
 * which creates the durable anew; the messages that brings back from the
 * stream's start find their inbox rows and have no second effect.
 */
static void test_consumer_recreates_its_deleted_durable(void **state)
{
    fixture *f = *state;
    tally t;

    atomic_init(&t.n, 0);
    sk_consumer *c = start_on(f->bus, f->store, tally_handler, &t, 0, 0, 0);
    publish(f, "Reserve", "agg", NULL, NULL, "{\"n\":1}");
    wait_query(f, "SELECT COUNT(*) FROM counts", 1, 10000);
    assert_int_equal(sk_consumer_delete(f->bus, STREAM, DURABLE), SK_OK);
    publish(f, "Reserve", "agg", NULL, NULL, "{\"n\":2}");
    wait_query(f, "SELECT COUNT(*) FROM counts", 2, 20000);
    assert_int_equal(query(f, "SELECT MAX(n) FROM counts"), 1);
    assert_int_equal(atomic_load(&t.n), 2);
    sk_consumer_stop(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_consumer_exactly_once_under_redelivery, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_consumer_dead_letters_after_max_deliver, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_consumer_sees_a_block_committed_by_another_writer,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_consumer_prunes_its_old_inbox_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_requests_stand_and_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_refused_request_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_without_a_consumer_goes_unanswered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_consumers_sharing_a_database_take_turns, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_consumer_recreates_its_deleted_durable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_consumer_malformed_dead_lettered_at_once, setup,
                                        teardown),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_CloseAndWait(5000);
    sk_shutdown();
    return rc;
}
