/* SPDX-License-Identifier: MIT */
/*
 * Integration: envelope through JetStream, outbox -> relay -> stream in
 * order and exactly once, relay restart with rows published but not yet
 * deleted (Nats-Msg-Id dedup), a nats-server crash mid-flight, two
 * instances sharing one database (one publishes, the other takes over),
 * and a row that no stream takes holding back the rows after it.
 * Real nats-server, real SQLite files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "msg/msg_int.h"
#include "sk_test.h"
#include "sk_test_nats.h"

#define STREAM "ORDER_EVENTS"

typedef struct fixture {
    sk_test_nats *nats;
    sk_bus *bus;
    sk_store *store;
    char dir[64];
} fixture;

/* A store on the fixture's database file, as one more instance of a service opens it. */
static sk_store *store_open(const char *dir)
{
    size_t n_mig = 0;
    const sk_migration *mig = sk_msg_migrations(&n_mig);
    sk_store *store = NULL;
    char url[128];

    snprintf(url, sizeof(url), "sqlite:%s/db.sqlite", dir);
    sk_store_config cfg = { .url = url, .migrations = mig, .n_migrations = n_mig };
    assert_int_equal(sk_store_open(&store, &cfg), SK_OK);
    return store;
}

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    const char *subjects[] = { "order.events.>" };
    sk_stream_config sc = { .name = STREAM, .subjects = subjects, .n_subjects = 1 };

    assert_non_null(f);
    assert_int_equal(sk_test_nats_start(&f->nats, NULL), SK_OK);
    sk_bus_config bc = { .servers = sk_test_nats_url(f->nats), .name = "test-relay" };
    assert_int_equal(sk_bus_open(&f->bus, &bc), SK_OK);
    assert_int_equal(sk_bus_stream_ensure(f->bus, &sc), SK_OK);
    assert_int_equal(sk_test_tmpdir(f->dir, sizeof(f->dir)), SK_OK);
    f->store = store_open(f->dir);
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

/* ---------------------------------------------------------------- helpers */

typedef struct add_ctx {
    int first, count;
    bool saga;
    char last_id[SK_UUID_LEN];
} add_ctx;

static sk_status add_rows(sk_tx *tx, void *ctx)
{
    add_ctx *a = ctx;
    for (int i = a->first; i < a->first + a->count; i++) {
        sk_envelope env;
        json_t *data = json_pack("{s:i, s:s}", "n", i, "pad", "0123456789abcdef");
        sk_envelope_init(&env, "OrderCreated", "order", "order-1", NULL);
        if (a->saga) {
            env.saga_step = 3;
            env.reply_to = "order.replies.CreateOrderSaga";
            env.schema_version = 2;
        }
        sk_status st = sk_outbox_add(tx, "order.events.OrderCreated", &env, data);
        json_decref(data);
        if (st != SK_OK) {
            return st;
        }
        memcpy(a->last_id, env.id, SK_UUID_LEN);
    }
    return SK_OK;
}

static void insert_rows(fixture *f, int first, int count)
{
    for (int done = 0; done < count;) {
        add_ctx a = { .first = first + done, .count = count - done > 1000 ? 1000 : count - done };
        assert_int_equal(sk_store_run(f->store, add_rows, &a), SK_OK);
        done += a.count;
    }
}

static uint64_t stream_msgs(fixture *f)
{
    jsStreamInfo *si = NULL;
    uint64_t n = 0;
    if (js_GetStreamInfo(&si, sk__bus_js(f->bus), STREAM, NULL, NULL) == NATS_OK) {
        n = si->State.Msgs;
    }
    jsStreamInfo_Destroy(si);
    return n;
}

typedef struct count_ctx {
    fixture *f;
    sk_relay *relay;
    uint64_t want;
} count_ctx;

static bool relay_reached(void *ctx)
{
    count_ctx *c = ctx;
    return sk_relay_published(c->relay) >= c->want;
}

static sk_status count_outbox(sk_tx *tx, void *ctx)
{
    return sk_tx_query_int(tx, "SELECT COUNT(*) FROM sk_outbox", NULL, 0, ctx);
}

static bool outbox_empty(void *ctx)
{
    count_ctx *c = ctx;
    int64_t n = -1;
    return sk_store_read(c->f->store, count_outbox, &n) == SK_OK && n == 0;
}

static bool stream_has(void *ctx)
{
    count_ctx *c = ctx;
    return stream_msgs(c->f) >= c->want;
}

/* Read the stream from seq 1 and check data.n runs 0..n-1 in order. */
static void check_stream_order(fixture *f, int n)
{
    for (int i = 0; i < n; i++) {
        natsMsg *m = NULL;
        json_t *data = NULL;
        assert_int_equal(js_GetMsg(&m, sk__bus_js(f->bus), STREAM, (uint64_t)i + 1, NULL, NULL),
                         NATS_OK);
        assert_int_equal(sk_json_parse_object((sk_slice){ (const uint8_t *)natsMsg_GetData(m),
                                                          (size_t)natsMsg_GetDataLength(m) },
                                              &data),
                         SK_OK);
        assert_int_equal(json_integer_value(json_object_get(data, "n")), i);
        json_decref(data);
        natsMsg_Destroy(m);
    }
}

/* ---------------------------------------------------------------- tests */

static void test_envelope_round_trip_through_jetstream(void **state)
{
    fixture *f = *state;
    add_ctx a = { .first = 0, .count = 1, .saga = true };
    sk__envelope_buf buf;
    sk_envelope env;
    sk_relay *relay = NULL;
    natsMsg *m = NULL;
    const char *v = NULL;

    assert_int_equal(sk_store_run(f->store, add_rows, &a), SK_OK);
    assert_int_equal(sk_relay_start(&relay, f->store, f->bus, NULL), SK_OK);
    count_ctx c = { .f = f, .relay = relay, .want = 1 };
    assert_true(sk_test_wait_until(relay_reached, &c, 10000));
    sk_relay_stop(relay);

    assert_int_equal(js_GetMsg(&m, sk__bus_js(f->bus), STREAM, 1, NULL, NULL), NATS_OK);
    assert_int_equal(sk__envelope_from_msg(m, &env, &buf), SK_OK);
    assert_string_equal(env.id, a.last_id);
    assert_string_equal(env.type, "OrderCreated");
    assert_string_equal(env.source, "order");
    assert_string_equal(env.subject, "order-1");
    assert_int_equal(env.schema_version, 2);
    assert_int_equal(env.saga_step, 3);
    assert_string_equal(env.reply_to, "order.replies.CreateOrderSaga");
    assert_int_equal(natsMsgHeader_Get(m, "Nats-Msg-Id", &v), NATS_OK);
    assert_string_equal(v, a.last_id);
    assert_int_equal(natsMsgHeader_Get(m, "content-type", &v), NATS_OK);
    assert_string_equal(v, "application/json");
    assert_int_equal(natsMsgHeader_Get(m, "ce-specversion", &v), NATS_OK);
    assert_string_equal(v, "1.0");
    assert_non_null(strstr(natsMsg_GetData(m), "\"n\":0"));
    natsMsg_Destroy(m);
}

/* One outbox row on @p subject. */
static sk_status add_one(sk_tx *tx, void *ctx)
{
    sk_envelope env;
    json_t *data = json_pack("{s:s}", "what", "audit");
    sk_envelope_init(&env, "Logged", "audit", "audit-1", NULL);
    sk_status st = sk_outbox_add(tx, ctx, &env, data);
    json_decref(data);
    return st;
}

/* The value of a counter in the metrics' text, or -1. */
static long long metric_value(sk_metrics *m, const char *name)
{
    sk_buf b;
    long long v = -1;
    sk_buf_init(&b, 1 << 20);
    if (sk_metrics_render(m, &b) == SK_OK) {
        char key[128];
        snprintf(key, sizeof(key), "\n%s ", name);
        const char *at = strstr(b.data, key);
        if (at != NULL) {
            v = strtoll(at + strlen(key), NULL, 10);
        }
    }
    sk_buf_fini(&b);
    return v;
}

typedef struct failing_ctx {
    sk_metrics *metrics;
} failing_ctx;

static bool rounds_failed(void *ctx)
{
    return metric_value(((failing_ctx *)ctx)->metrics, "sk_outbox_publish_errors_total") >= 3;
}

/*
 * A row whose subject no stream takes is refused at once (the server's "no
 * responders" answer, not a timeout), it and the rows after it stay in the
 * outbox, and once a stream takes the subject they go out, each once.
 */
static void test_relay_holds_rows_behind_one_no_stream_takes(void **state)
{
    fixture *f = *state;
    sk_metrics *metrics = NULL;
    sk_relay *relay = NULL;
    int64_t n = -1;

    assert_int_equal(sk_metrics_create(&metrics), SK_OK);
    char audit_subject[] = "audit.events.Logged";
    assert_int_equal(sk_store_run(f->store, add_one, audit_subject), SK_OK);
    insert_rows(f, 0, 5);
    assert_int_equal(sk_relay_start(&relay, f->store, f->bus, metrics), SK_OK);
    /* Rounds fail every 0.1, 0.2, 0.4 ... s: three within 1.5 s, where one timeout takes 10 s. */
    failing_ctx fc = { metrics };
    assert_true(sk_test_wait_until(rounds_failed, &fc, 1500));
    assert_int_equal(sk_relay_published(relay), 0);
    assert_int_equal(sk_store_read(f->store, count_outbox, &n), SK_OK);
    assert_int_equal(n, 6);

    const char *subjects[] = { "audit.events.>" };
    sk_stream_config sc = { .name = "AUDIT_EVENTS", .subjects = subjects, .n_subjects = 1 };
    assert_int_equal(sk_bus_stream_ensure(f->bus, &sc), SK_OK);
    count_ctx c = { .f = f, .relay = relay, .want = 6 };
    assert_true(sk_test_wait_until(relay_reached, &c, 10000));
    assert_true(sk_test_wait_until(outbox_empty, &c, 10000));
    sk_relay_stop(relay);
    /* The five published ahead while the first was refused were stored once (Nats-Msg-Id). */
    assert_int_equal(stream_msgs(f), 5);
    check_stream_order(f, 5);
    sk_metrics_destroy(metrics);
}

static void test_relay_publishes_10000_in_order_once(void **state)
{
    fixture *f = *state;
    sk_relay *relay = NULL;
    sk_metrics *metrics = NULL;
    sk_buf out;

    insert_rows(f, 0, 10000);
    assert_int_equal(sk_metrics_create(&metrics), SK_OK);
    int64_t t0 = sk_time_mono_ms();
    assert_int_equal(sk_relay_start(&relay, f->store, f->bus, metrics), SK_OK);
    count_ctx c = { .f = f, .relay = relay, .want = 10000 };
    assert_true(sk_test_wait_until(relay_reached, &c, 20000));
    print_message("relay: 10000 rows in %lld ms\n", (long long)(sk_time_mono_ms() - t0));
    assert_true(sk_test_wait_until(outbox_empty, &c, 5000));
    assert_int_equal(sk_relay_published(relay), 10000);
    sk_relay_stop(relay);
    assert_int_equal(stream_msgs(f), 10000);
    check_stream_order(f, 10000);

    sk_buf_init(&out, 1 << 20);
    assert_int_equal(sk_metrics_render(metrics, &out), SK_OK);
    assert_non_null(strstr(out.data, "sk_outbox_published_total 10000"));
    assert_non_null(strstr(out.data, "sk_outbox_lag 0"));
    sk_buf_fini(&out);
    sk_metrics_destroy(metrics);
}

static sk_status backup_outbox(sk_tx *tx, void *ctx)
{
    (void)ctx;
    return sk_tx_exec(tx, "CREATE TABLE bak AS SELECT * FROM sk_outbox", NULL, 0, NULL);
}

/* A crash after publishing but before the delete committed: every row is back. */
static sk_status restore_outbox(sk_tx *tx, void *ctx)
{
    (void)ctx;
    return sk_tx_exec(tx,
                      "INSERT INTO sk_outbox SELECT * FROM bak "
                      "WHERE seq NOT IN (SELECT seq FROM sk_outbox)",
                      NULL, 0, NULL);
}

static void test_relay_restart_republishes_without_duplicates(void **state)
{
    fixture *f = *state;
    sk_relay *relay = NULL;

    insert_rows(f, 0, 3000);
    assert_int_equal(sk_store_run(f->store, backup_outbox, NULL), SK_OK);
    assert_int_equal(sk_relay_start(&relay, f->store, f->bus, NULL), SK_OK);
    count_ctx c = { .f = f, .relay = relay, .want = 500 };
    assert_true(sk_test_wait_until(relay_reached, &c, 10000));
    sk_relay_stop(relay); /* mid-flight: some rows published, the rest not */
    relay = NULL;

    assert_int_equal(sk_store_run(f->store, restore_outbox, NULL), SK_OK);
    assert_int_equal(sk_relay_start(&relay, f->store, f->bus, NULL), SK_OK);
    c.relay = relay;
    c.want = 3000; /* the second relay publishes every row again */
    assert_true(sk_test_wait_until(relay_reached, &c, 20000));
    assert_true(sk_test_wait_until(outbox_empty, &c, 5000));
    sk_relay_stop(relay);
    assert_int_equal(stream_msgs(f), 3000);
    check_stream_order(f, 3000);
}

/*
 * Published rows are deleted in batches some time later; a relay that stops
 * deletes what it published first, so the next one does not publish it again.
 */
static void test_relay_stop_deletes_what_it_published(void **state)
{
    fixture *f = *state;
    sk_relay *relay = NULL;
    int64_t n = -1;

    assert_int_equal(sk_relay_start(&relay, f->store, f->bus, NULL), SK_OK);
    count_ctx c = { .f = f, .relay = relay, .want = 0 };
    for (int i = 0; i < 5; i++) {
        insert_rows(f, i * 3, 3);
        c.want += 3;
        assert_true(sk_test_wait_until(relay_reached, &c, 10000));
    }
    sk_relay_stop(relay); /* at once: some of the rows are not due for deleting yet */
    assert_int_equal(sk_store_read(f->store, count_outbox, &n), SK_OK);
    assert_int_equal(n, 0);
    assert_int_equal(stream_msgs(f), 15);
}

static void test_relay_survives_server_crash(void **state)
{
    fixture *f = *state;
    sk_relay *relay = NULL;

    insert_rows(f, 0, 2000);
    assert_int_equal(sk_relay_start(&relay, f->store, f->bus, NULL), SK_OK);
    count_ctx c = { .f = f, .relay = relay, .want = 200 };
    assert_true(sk_test_wait_until(relay_reached, &c, 10000));
    sk_test_nats_kill(f->nats);
    insert_rows(f, 2000, 1000); /* commits while the server is down */
    assert_int_equal(sk_test_nats_restart(f->nats), SK_OK);
    c.want = 3000;
    assert_true(sk_test_wait_until(stream_has, &c, 20000));
    assert_true(sk_test_wait_until(outbox_empty, &c, 10000));
    sk_relay_stop(relay);
    /* Exactly once in the stream, whatever was in flight at the crash. */
    assert_int_equal(stream_msgs(f), 3000);
}

/* Insert rows through @p store (another instance's store on the same file). */
static void insert_rows_via(sk_store *store, int first, int count)
{
    add_ctx a = { .first = first, .count = count };
    assert_int_equal(sk_store_run(store, add_rows, &a), SK_OK);
}

/*
 * Two instances of a service on one database file, each with its relay:
 * only one publishes (every row once, in commit order, whichever instance
 * committed it, woken through the other's notification rather than a poll);
 * when it stops, the other takes over.
 */
static void test_relays_sharing_a_database_publish_once(void **state)
{
    fixture *f = *state;
    sk_store *store2 = store_open(f->dir);
    sk_relay *relay1 = NULL, *relay2 = NULL;

    assert_int_equal(sk_relay_start(&relay1, f->store, f->bus, NULL), SK_OK);
    assert_int_equal(sk_relay_start(&relay2, store2, f->bus, NULL), SK_OK);

    /* Alternate commits between the instances, a few rows at a time. */
    for (int i = 0; i < 40; i++) {
        insert_rows_via(i % 2 == 0 ? f->store : store2, i * 25, 25);
    }
    count_ctx c = { .f = f, .want = 1000 };
    assert_true(sk_test_wait_until(stream_has, &c, 20000));
    assert_true(sk_test_wait_until(outbox_empty, &c, 5000));
    /* One relay published everything; the other only stood by. */
    uint64_t p1 = sk_relay_published(relay1), p2 = sk_relay_published(relay2);
    assert_int_equal(p1 + p2, 1000);
    assert_true(p1 == 0 || p2 == 0);
    sk_relay *holder = p1 > 0 ? relay1 : relay2;
    sk_relay *standby = p1 > 0 ? relay2 : relay1;
    sk_store *standby_store = p1 > 0 ? store2 : f->store;

    /* The holder goes away (an instance stops or dies): the other takes over. */
    sk_relay_stop(holder);
    insert_rows_via(standby_store, 1000, 500);
    c.relay = standby;
    c.want = 500;
    assert_true(sk_test_wait_until(relay_reached, &c, 10000));
    c.want = 1500;
    assert_true(sk_test_wait_until(stream_has, &c, 10000));
    assert_true(sk_test_wait_until(outbox_empty, &c, 5000));
    sk_relay_stop(standby);
    assert_int_equal(stream_msgs(f), 1500);
    check_stream_order(f, 1500);
    sk_store_close(store2);
}

/*
 * Another local process holds the wake-up name: publishing is still decided
 * by the lock (readable only by the database's owner), and a standby's rows
 * still go out, found by the holder's idle poll.
 */
static void test_relay_with_its_wake_up_name_taken(void **state)
{
    fixture *f = *state;
    sk_store *store2 = NULL;
    sk_relay *relay1 = NULL, *relay2 = NULL;
    char db[96], lock[128];
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct stat sb;

    snprintf(db, sizeof(db), "%s/db.sqlite", f->dir);
    int n = sk__relay_owner_wake_name(f->store, addr.sun_path + 1, sizeof(addr.sun_path) - 1);
    assert_true(n > 0);
    int squatter = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(squatter >= 0);
    assert_int_equal(bind(squatter, (struct sockaddr *)&addr,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)),
                     0);

    store2 = store_open(f->dir);
    assert_int_equal(sk_relay_start(&relay1, f->store, f->bus, NULL), SK_OK);
    assert_int_equal(sk_relay_start(&relay2, store2, f->bus, NULL), SK_OK);
    insert_rows_via(store2, 0, 50);
    insert_rows_via(f->store, 50, 50);
    count_ctx c = { .f = f, .want = 100 };
    assert_true(sk_test_wait_until(stream_has, &c, 10000));
    assert_true(sk_test_wait_until(outbox_empty, &c, 5000));
    assert_int_equal(sk_relay_published(relay1) + sk_relay_published(relay2), 100);
    check_stream_order(f, 100);

    snprintf(lock, sizeof(lock), "%s-relay.lock", db);
    assert_int_equal(stat(lock, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    sk_relay_stop(relay1);
    sk_relay_stop(relay2);
    sk_store_close(store2);
    close(squatter);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_envelope_round_trip_through_jetstream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_relay_publishes_10000_in_order_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_restart_republishes_without_duplicates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_relay_stop_deletes_what_it_published, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_survives_server_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relays_sharing_a_database_publish_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_relay_with_its_wake_up_name_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_holds_rows_behind_one_no_stream_takes, setup,
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
