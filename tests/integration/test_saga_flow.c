/* SPDX-License-Identifier: MIT */
/*
 * Integration: sagas over a real nats-server. The orchestrator (an engine,
 * its relay and its own SQLite file) drives fake inventory and payment
 * participants, which run as durable consumers on a second SQLite file and
 * answer through sk_saga_reply and their own relay. Covered: the happy path,
 * failure at the first step (nothing compensated), failure at the second
 * command (the reservation released), a timeout (the charge refunded, then
 * the reservation released), a step retried until done, cancellation, and
 * resuming after a crash of the orchestrator (engine, relay, bus and store
 * closed mid-saga, with a command awaiting its reply and another one not
 * even published yet; a new engine on the same file finishes both), one
 * instance whose replies keep failing (dead-lettered, then timed out and
 * compensated) while the others complete, and version pinning (an
 * instance started under v1 finishes under v1 after v2 is deployed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <skald/saga.h>

#include "sk_test.h"
#include "sk_test_nats.h"

#define WAIT_MS 20000

/* ---------------------------------------------------------------- orchestrator's saga */

static sk_status build_copy(const json_t *data, json_t **out, void *ctx)
{
    (void)ctx;
    *out = json_deep_copy(data);
    return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "copy");
}

static sk_status verdict_of(const char *ok_type,
                            const char *reply_type,
                            const json_t *reply,
                            sk_saga_verdict *verdict,
                            char reason[SK_SAGA_MAX_REASON])
{
    const char *r = json_string_value(json_object_get(reply, "reason"));
    *verdict = strcmp(reply_type, ok_type) == 0 ? SK_SAGA_STEP_OK : SK_SAGA_STEP_FAILED;
    if (*verdict == SK_SAGA_STEP_FAILED) {
        snprintf(reason, SK_SAGA_MAX_REASON, "%s", r != NULL ? r : "");
    }
    return SK_OK;
}

static sk_status on_reserve(json_t *data,
                            const char *reply_type,
                            const json_t *reply,
                            sk_saga_verdict *verdict,
                            char reason[SK_SAGA_MAX_REASON],
                            void *ctx)
{
    json_t *price = json_object_get(reply, "price");
    (void)ctx;
    if (json_is_true(json_object_get(data, "bad_reply"))) {
        /* A bug in this instance's reply handling: fails on every delivery. */
        return SK_FAIL(SK_EUNAVAILABLE, "cannot read the reservation of this order");
    }
    if (price != NULL && json_object_set(data, "price", price) != 0) {
        return SK_FAIL(SK_ENOMEM, "set");
    }
    return verdict_of("StockReserved", reply_type, reply, verdict, reason);
}

static sk_status on_charge(json_t *data,
                           const char *reply_type,
                           const json_t *reply,
                           sk_saga_verdict *verdict,
                           char reason[SK_SAGA_MAX_REASON],
                           void *ctx)
{
    (void)ctx;
    (void)data;
    return verdict_of("CreditCharged", reply_type, reply, verdict, reason);
}

static sk_status on_commit(json_t *data,
                           const char *reply_type,
                           const json_t *reply,
                           sk_saga_verdict *verdict,
                           char reason[SK_SAGA_MAX_REASON],
                           void *ctx)
{
    (void)ctx;
    (void)data;
    return verdict_of("ReservationCommitted", reply_type, reply, verdict, reason);
}

static sk_status local_total(sk_tx *tx,
                             const char *saga_id,
                             json_t *data,
                             sk_saga_verdict *verdict,
                             char reason[SK_SAGA_MAX_REASON],
                             void *ctx)
{
    json_int_t price = json_integer_value(json_object_get(data, "price"));
    (void)tx;
    (void)saga_id;
    (void)reason;
    (void)ctx;
    *verdict = SK_SAGA_STEP_OK;
    return json_object_set_new(data, "total", json_integer(2 * price)) == 0
               ? SK_OK
               : SK_FAIL(SK_ENOMEM, "set");
}

static sk_status record(sk_tx *tx, const char *saga_id, const char *outcome, const char *reason)
{
    sk_db_value p[3] = { SK_DB_TEXT_V(saga_id), SK_DB_TEXT_V(outcome), SK_DB_TEXT_V(reason) };
    return sk_tx_exec(tx, "INSERT INTO results (saga, outcome, reason) VALUES (?, ?, ?)", p, 3,
                      NULL);
}

static sk_status on_completed(sk_tx *tx, const char *saga_id, const json_t *data, void *ctx)
{
    (void)data;
    (void)ctx;
    return record(tx, saga_id, "completed", "");
}

static sk_status
on_failed(sk_tx *tx, const char *saga_id, const json_t *data, const char *reason, void *ctx)
{
    (void)data;
    (void)ctx;
    return record(tx, saga_id, "failed", reason);
}

static const sk_saga_step order_steps[] = {
    {
        .name = "reserve_stock",
        .command_subject = "inventory.commands.ReserveStock",
        .command_type = "ReserveStock",
        .build = build_copy,
        .on_reply = on_reserve,
        .compensation_subject = "inventory.commands.ReleaseReservation",
        .compensation_type = "ReleaseReservation",
        .build_compensation = build_copy,
        /* Well above the consumer's retry chain (0.25+0.5+1+2 s before the
         * fifth delivery), so a reply that keeps failing is dead-lettered
         * before its step times out, even on a slow machine. */
        .deadline_ms = 10000,
    },
    { .name = "compute_total", .local = local_total },
    {
        .name = "charge_credit",
        .command_subject = "payment.commands.ChargeCredit",
        .command_type = "ChargeCredit",
        .build = build_copy,
        .on_reply = on_charge,
        .compensation_subject = "payment.commands.RefundCredit",
        .compensation_type = "RefundCredit",
        .build_compensation = build_copy,
        .deadline_ms = 1500,
    },
    {
        .name = "commit_reservation",
        .command_subject = "inventory.commands.CommitReservation",
        .command_type = "CommitReservation",
        .build = build_copy,
        .on_reply = on_commit,
        .is_retried_until_done = true,
        .deadline_ms = 800,
    },
};

static const sk_saga_def order_def = {
    .type = "CreateOrderSaga",
    .version = 1,
    .reply_subject = "order.replies.CreateOrderSaga",
    .steps = order_steps,
    .n_steps = sizeof(order_steps) / sizeof(order_steps[0]),
    .on_completed = on_completed,
    .on_failed = on_failed,
};

/* Version 2 of the saga: the charge is gone (e.g. payment moved to checkout). */
static const sk_saga_step order_steps_v2[] = {
    {
        .name = "reserve_stock",
        .command_subject = "inventory.commands.ReserveStock",
        .command_type = "ReserveStock",
        .build = build_copy,
        .on_reply = on_reserve,
        .compensation_subject = "inventory.commands.ReleaseReservation",
        .compensation_type = "ReleaseReservation",
        .build_compensation = build_copy,
        .deadline_ms = 5000,
    },
    {
        .name = "commit_reservation",
        .command_subject = "inventory.commands.CommitReservation",
        .command_type = "CommitReservation",
        .build = build_copy,
        .on_reply = on_commit,
        .is_retried_until_done = true,
        .deadline_ms = 800,
    },
};

static const sk_saga_def order_def_v2 = {
    .type = "CreateOrderSaga",
    .version = 2,
    .reply_subject = "order.replies.CreateOrderSaga",
    .steps = order_steps_v2,
    .n_steps = sizeof(order_steps_v2) / sizeof(order_steps_v2[0]),
    .on_completed = on_completed,
    .on_failed = on_failed,
};

static const sk_migration order_migration = {
    "test_order", 1, "CREATE TABLE results (saga TEXT PRIMARY KEY, outcome TEXT, reason TEXT)"
};
static const sk_migration parts_migration = {
    "test_parts", 1,
    "CREATE TABLE seen (n INTEGER PRIMARY KEY AUTOINCREMENT, saga TEXT NOT NULL, type TEXT NOT "
    "NULL)"
};

/* ---------------------------------------------------------------- participants */

/* Flags in the saga data decide how the fake participants answer. */
static bool has_flag(const sk_message *m, const char *flag)
{
    return json_is_true(json_object_get(m->json, flag));
}

static sk_status seen_count(sk_tx *tx, const sk_message *m, int64_t *n)
{
    sk_db_value p[2] = { SK_DB_TEXT_V(m->env.subject), SK_DB_TEXT_V(m->env.type) };
    return sk_tx_query_int(tx, "SELECT COUNT(*) FROM seen WHERE saga = ? AND type = ?", p, 2, n);
}

static sk_status answer(sk_tx *tx,
                        const sk_message *m,
                        const char *source,
                        const char *type,
                        const char *reason,
                        int64_t price)
{
    json_t *data = json_object();
    sk_status st;

    if (data == NULL) {
        return SK_FAIL(SK_ENOMEM, "reply data");
    }
    if ((reason != NULL && json_object_set_new(data, "reason", json_string(reason)) != 0) ||
        (price > 0 && json_object_set_new(data, "price", json_integer(price)) != 0)) {
        json_decref(data);
        return SK_FAIL(SK_ENOMEM, "reply data");
    }
    st = sk_saga_reply(tx, m, source, type, data);
    json_decref(data);
    return st;
}

static sk_status participant(sk_tx *tx, const sk_message *m, void *ctx)
{
    const char *t = m->env.type;
    int64_t n_before = 0;
    sk_db_value p[2] = { SK_DB_TEXT_V(m->env.subject), SK_DB_TEXT_V(t) };
    sk_status st;

    (void)ctx;
    st = seen_count(tx, m, &n_before);
    if (st == SK_OK) {
        st = sk_tx_exec(tx, "INSERT INTO seen (saga, type) VALUES (?, ?)", p, 2, NULL);
    }
    if (st != SK_OK) {
        return st;
    }
    if (strcmp(t, "ReserveStock") == 0) {
        return has_flag(m, "fail_reserve")
                   ? answer(tx, m, "/skald/inventory", "StockReservationFailed", "OUT_OF_STOCK", 0)
                   : answer(tx, m, "/skald/inventory", "StockReserved", NULL, 150);
    }
    if (strcmp(t, "ReleaseReservation") == 0) {
        return answer(tx, m, "/skald/inventory", "ReservationReleased", NULL, 0);
    }
    if (strcmp(t, "CommitReservation") == 0) {
        if (has_flag(m, "drop_commit_once") && n_before == 0) {
            return SK_OK; /* lost: the orchestrator must send it again */
        }
        return answer(tx, m, "/skald/inventory", "ReservationCommitted", NULL, 0);
    }
    if (strcmp(t, "ChargeCredit") == 0) {
        if (has_flag(m, "drop_charge")) {
            return SK_OK; /* never answered: the step times out */
        }
        return has_flag(m, "fail_charge")
                   ? answer(tx, m, "/skald/payment", "CreditChargeFailed", "INSUFFICIENT_CREDIT", 0)
                   : answer(tx, m, "/skald/payment", "CreditCharged", NULL, 0);
    }
    if (strcmp(t, "RefundCredit") == 0) {
        return answer(tx, m, "/skald/payment", "CreditRefunded", NULL, 0);
    }
    return SK_FAIL(SK_EPROTO, "unknown command %s", t);
}

/* ---------------------------------------------------------------- fixture */

typedef struct fixture {
    sk_test_nats *nats;
    char dir[64];
    /* Orchestrator side (what a crash takes down). */
    sk_bus *bus;
    sk_store *store;
    sk_relay *relay;
    sk_saga_engine *engine;
    sk_metrics *metrics;
    /* Participants side. */
    sk_bus *pbus;
    sk_store *pstore;
    sk_relay *prelay;
    sk_consumer *inventory;
    sk_consumer *payment;
    bool has_v2; /* order_up registers version 2 of the saga too */
} fixture;

static void order_store_open(fixture *f)
{
    char url[128];
    sk_migration mig[8];
    size_t n = 0, n_saga = 0;
    const sk_migration *m = sk_msg_migrations(&n);
    const sk_migration *ms = sk_saga_migrations(&n_saga);

    memcpy(mig, m, n * sizeof(*mig));
    memcpy(mig + n, ms, n_saga * sizeof(*mig));
    n += n_saga;
    mig[n++] = order_migration;
    snprintf(url, sizeof(url), "sqlite:%s/order.sqlite", f->dir);
    sk_store_config cfg = { .url = url, .migrations = mig, .n_migrations = n };
    assert_int_equal(sk_store_open(&f->store, &cfg), SK_OK);
}

static void order_up(fixture *f)
{
    order_store_open(f);
    sk_bus_config bc = { .servers = sk_test_nats_url(f->nats), .name = "test-order" };
    assert_int_equal(sk_bus_open(&f->bus, &bc), SK_OK);
    assert_int_equal(sk_metrics_create(&f->metrics), SK_OK);
    assert_int_equal(sk_saga_engine_create(&f->engine, f->store, f->bus, f->metrics, "/skald/order",
                                           "ORDER_REPLIES"),
                     SK_OK);
    assert_int_equal(sk_saga_engine_register(f->engine, &order_def), SK_OK);
    if (f->has_v2) {
        assert_int_equal(sk_saga_engine_register(f->engine, &order_def_v2), SK_OK);
    }
    assert_int_equal(sk_saga_engine_start(f->engine), SK_OK);
    assert_int_equal(sk_relay_start(&f->relay, f->store, f->bus, f->metrics), SK_OK);
}

/* Take the orchestrator down as a crash would: nothing drained on purpose, the file stays. */
static void order_down(fixture *f)
{
    sk_relay_stop(f->relay);
    f->relay = NULL;
    sk_saga_engine_destroy(f->engine);
    f->engine = NULL;
    sk_bus_close(f->bus);
    f->bus = NULL;
    sk_store_close(f->store);
    f->store = NULL;
    sk_metrics_destroy(f->metrics);
    f->metrics = NULL;
}

static void consumer_up(
    fixture *f, sk_consumer **c, const char *stream, const char *durable, const char *filter)
{
    sk_consumer_config cc = { .stream = stream,
                              .durable = durable,
                              .filter_subject = filter,
                              .handler = participant,
                              .ack_wait_ms = 5000 };
    assert_int_equal(sk_consumer_start(c, f->pbus, f->pstore, NULL, &cc), SK_OK);
}

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    const char *inv[] = { "inventory.commands.>" };
    const char *pay[] = { "payment.commands.>" };
    const char *rep[] = { "order.replies.>" };
    sk_stream_config s1 = { .name = "INVENTORY_COMMANDS", .subjects = inv, .n_subjects = 1 };
    sk_stream_config s2 = { .name = "PAYMENT_COMMANDS", .subjects = pay, .n_subjects = 1 };
    sk_stream_config s3 = { .name = "ORDER_REPLIES", .subjects = rep, .n_subjects = 1 };
    sk_migration mig[8];
    size_t n = 0;
    const sk_migration *m = sk_msg_migrations(&n);
    char url[128];

    assert_non_null(f);
    assert_int_equal(sk_init("test"), SK_OK);
    assert_int_equal(sk_test_nats_start(&f->nats, NULL), SK_OK);
    assert_int_equal(sk_test_tmpdir(f->dir, sizeof(f->dir)), SK_OK);

    memcpy(mig, m, n * sizeof(*mig));
    mig[n++] = parts_migration;
    snprintf(url, sizeof(url), "sqlite:%s/parts.sqlite", f->dir);
    sk_store_config cfg = { .url = url, .migrations = mig, .n_migrations = n };
    assert_int_equal(sk_store_open(&f->pstore, &cfg), SK_OK);
    sk_bus_config bc = { .servers = sk_test_nats_url(f->nats), .name = "test-participants" };
    assert_int_equal(sk_bus_open(&f->pbus, &bc), SK_OK);
    assert_int_equal(sk_bus_stream_ensure(f->pbus, &s1), SK_OK);
    assert_int_equal(sk_bus_stream_ensure(f->pbus, &s2), SK_OK);
    assert_int_equal(sk_bus_stream_ensure(f->pbus, &s3), SK_OK);
    assert_int_equal(sk_relay_start(&f->prelay, f->pstore, f->pbus, NULL), SK_OK);
    consumer_up(f, &f->inventory, "INVENTORY_COMMANDS", "inventory", "inventory.commands.>");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    order_down(f);
    sk_consumer_stop(f->inventory);
    sk_consumer_stop(f->payment);
    sk_relay_stop(f->prelay);
    sk_bus_close(f->pbus);
    sk_store_close(f->pstore);
    sk_test_nats_stop(f->nats);
    sk_test_rmrf(f->dir);
    sk_free(f);
    sk_shutdown();
    return 0;
}

/* ---------------------------------------------------------------- helpers */

typedef struct start_call {
    sk_saga_engine *e;
    const char *id;
    const char *flag; /* NULL or a participant flag */
} start_call;

static sk_status start_uow(sk_tx *tx, void *ctx)
{
    start_call *c = ctx;
    json_t *data = json_pack("{s:s}", "order_id", c->id);
    sk_status st;

    if (data == NULL) {
        return SK_FAIL(SK_ENOMEM, "data");
    }
    if (c->flag != NULL && json_object_set_new(data, c->flag, json_true()) != 0) {
        json_decref(data);
        return SK_FAIL(SK_ENOMEM, "data");
    }
    st = sk_saga_start(tx, c->e, "CreateOrderSaga", c->id, data, NULL);
    json_decref(data);
    return st;
}

static void start(fixture *f, const char *id, const char *flag)
{
    start_call c = { f->engine, id, flag };
    assert_int_equal(sk_store_run(f->store, start_uow, &c), SK_OK);
}

typedef struct query {
    const char *sql;
    const char *arg;
    char text[256];
    int64_t n;
} query;

static sk_status text_uow(sk_tx *tx, void *ctx)
{
    query *q = ctx;
    sk_db_value p[1] = { SK_DB_TEXT_V(q->arg) };
    sk_rows *rows = NULL;
    sk_status st = sk_tx_query(tx, q->sql, p, 1, &rows);
    q->text[0] = '\0';
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_OK) {
        snprintf(q->text, sizeof(q->text), "%s", sk_rows_text(rows, 0, NULL));
    }
    sk_rows_close(rows);
    return st == SK_ENOTFOUND ? SK_OK : st;
}

/* "completed:" or "failed:REASON", "" while running. */
static void result_of(fixture *f, const char *id, char *out, size_t out_size)
{
    query q = { .sql = "SELECT outcome || ':' || reason FROM results WHERE saga = ?", .arg = id };
    assert_int_equal(sk_store_read(f->store, text_uow, &q), SK_OK);
    snprintf(out, out_size, "%s", q.text);
}

/* Commands the participants saw for @p id, in order: "ReserveStock,ChargeCredit,...". */
static void seen_of(fixture *f, const char *id, char *out, size_t out_size)
{
    query q = { .sql = "SELECT group_concat(type, ',') FROM (SELECT type FROM seen WHERE saga = ? "
                       "ORDER BY n)",
                .arg = id };
    assert_int_equal(sk_store_read(f->pstore, text_uow, &q), SK_OK);
    snprintf(out, out_size, "%s", q.text);
}

typedef struct wait_ctx {
    fixture *f;
    const char *id;
} wait_ctx;

static bool is_finished(void *ctx)
{
    wait_ctx *w = ctx;
    char r[128];
    result_of(w->f, w->id, r, sizeof(r));
    return r[0] != '\0';
}

static void expect_result(fixture *f, const char *id, const char *result, const char *seen)
{
    wait_ctx w = { f, id };
    char got[256];

    if (!sk_test_wait_until(is_finished, &w, WAIT_MS)) {
        seen_of(f, id, got, sizeof(got));
        print_error("saga %s did not finish; participants saw: %s\n", id, got);
        fail();
    }
    result_of(f, id, got, sizeof(got));
    assert_string_equal(got, result);
    seen_of(f, id, got, sizeof(got));
    assert_string_equal(got, seen);
}

typedef struct step_ctx {
    fixture *f;
    const char *id;
    int64_t step;
} step_ctx;

static sk_status step_uow(sk_tx *tx, void *ctx)
{
    step_ctx *s = ctx;
    sk_db_value p[1] = { SK_DB_TEXT_V(s->id) };
    return sk_tx_query_int(tx, "SELECT step FROM sk_sagas WHERE id = ?", p, 1, &s->step);
}

static bool is_at_charge(void *ctx)
{
    step_ctx *s = ctx;
    return sk_store_read(s->f->store, step_uow, s) == SK_OK && s->step == 2;
}

/* ---------------------------------------------------------------- tests */

static void test_saga_flow_outcomes(void **state)
{
    fixture *f = *state;
    sk_buf b;

    consumer_up(f, &f->payment, "PAYMENT_COMMANDS", "payment", "payment.commands.>");
    order_up(f);
    start(f, "happy", NULL);
    start(f, "no-stock", "fail_reserve");
    start(f, "no-credit", "fail_charge");
    start(f, "charge-lost", "drop_charge");
    start(f, "commit-lost", "drop_commit_once");

    expect_result(f, "happy", "completed:", "ReserveStock,ChargeCredit,CommitReservation");
    expect_result(f, "no-stock", "failed:OUT_OF_STOCK", "ReserveStock");
    expect_result(f, "no-credit", "failed:INSUFFICIENT_CREDIT",
                  "ReserveStock,ChargeCredit,ReleaseReservation");
    /* The charge's outcome is unknown after a timeout: refunded, then the stock released. */
    expect_result(f, "charge-lost", "failed:TIMEOUT",
                  "ReserveStock,ChargeCredit,RefundCredit,ReleaseReservation");
    /* Past the pivot the step is sent again until answered. */
    expect_result(f, "commit-lost",
                  "completed:", "ReserveStock,ChargeCredit,CommitReservation,CommitReservation");

    sk_buf_init(&b, 1 << 20);
    assert_int_equal(sk_metrics_render(f->metrics, &b), SK_OK);
    assert_non_null(strstr(b.data, "sk_saga_started_total{type=\"CreateOrderSaga\"} 5"));
    assert_non_null(strstr(b.data, "sk_saga_completed_total{type=\"CreateOrderSaga\"} 2"));
    assert_non_null(
        strstr(b.data, "sk_saga_failed_total{type=\"CreateOrderSaga\",reason=\"TIMEOUT\"} 1"));
    assert_non_null(strstr(b.data, "sk_saga_timeouts_total"));
    sk_buf_fini(&b);
}

typedef struct cancel_call {
    sk_saga_engine *e;
    const char *id;
} cancel_call;

static sk_status cancel_uow(sk_tx *tx, void *ctx)
{
    cancel_call *c = ctx;
    return sk_saga_cancel(tx, c->e, c->id);
}

static void test_saga_flow_cancel(void **state)
{
    fixture *f = *state;
    step_ctx s = { f, "cancelled", -1 };
    cancel_call c = { NULL, "cancelled" };

    /* No payment participant yet: the saga waits on its charge. */
    order_up(f);
    start(f, "cancelled", NULL);
    assert_true(sk_test_wait_until(is_at_charge, &s, WAIT_MS));
    c.e = f->engine;
    assert_int_equal(sk_store_run(f->store, cancel_uow, &c), SK_OK);
    consumer_up(f, &f->payment, "PAYMENT_COMMANDS", "payment", "payment.commands.>");
    /* The charge succeeded, so it is refunded too. */
    expect_result(f, "cancelled", "failed:CANCELLED",
                  "ReserveStock,ChargeCredit,RefundCredit,ReleaseReservation");
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, cancel_uow, &c), SK_ESTATE, "already failed");
}

static void test_saga_flow_resume_after_restart(void **state)
{
    fixture *f = *state;
    step_ctx s = { f, "crash-1", -1 };

    /* Payment is down: crash-1 stops at its charge, awaiting a reply. */
    order_up(f);
    start(f, "crash-1", NULL);
    assert_true(sk_test_wait_until(is_at_charge, &s, WAIT_MS));
    /* crash-2's first command is committed but never published before the crash. */
    sk_relay_stop(f->relay);
    f->relay = NULL;
    start(f, "crash-2", NULL);
    order_down(f);

    /* While the orchestrator is down, payment comes back and answers crash-1's charge. */
    consumer_up(f, &f->payment, "PAYMENT_COMMANDS", "payment", "payment.commands.>");

    /* A new engine on the same file picks both up. */
    order_up(f);
    expect_result(f, "crash-1", "completed:", "ReserveStock,ChargeCredit,CommitReservation");
    expect_result(f, "crash-2", "completed:", "ReserveStock,ChargeCredit,CommitReservation");
}

static sk_status expire_uow(sk_tx *tx, void *ctx)
{
    sk_db_value p[1] = { SK_DB_INT_V(sk_time_now_ms() - 1) };
    (void)ctx;
    return sk_tx_exec(tx, "UPDATE sk_sagas SET deadline_ms = ? WHERE deadline_ms IS NOT NULL", p, 1,
                      NULL);
}

static void test_saga_flow_deadline_passed_while_down(void **state)
{
    fixture *f = *state;
    step_ctx s = { f, "slept", -1 };

    /* The charge is never answered and its deadline passes while the orchestrator is down. */
    order_up(f);
    start(f, "slept", "drop_charge");
    assert_true(sk_test_wait_until(is_at_charge, &s, WAIT_MS));
    order_down(f);
    consumer_up(f, &f->payment, "PAYMENT_COMMANDS", "payment", "payment.commands.>");
    /* Time passes while down: move the stored deadline into the past instead of sleeping. */
    order_store_open(f);
    assert_int_equal(sk_store_run(f->store, expire_uow, NULL), SK_OK);
    sk_store_close(f->store);
    f->store = NULL;
    order_up(f);
    expect_result(f, "slept", "failed:TIMEOUT",
                  "ReserveStock,ChargeCredit,RefundCredit,ReleaseReservation");
}

typedef struct count_ctx {
    sk_store *store;
    const char *sql;
    const char *arg;
    int64_t n;
} count_ctx;

static sk_status count_uow(sk_tx *tx, void *ctx)
{
    count_ctx *c = ctx;
    sk_db_value p[1] = { SK_DB_TEXT_V(c->arg) };
    return sk_tx_query_int(tx, c->sql, p, c->arg != NULL ? 1 : 0, &c->n);
}

static int64_t count_of(sk_store *store, const char *sql, const char *arg)
{
    count_ctx c = { store, sql, arg, -1 };
    assert_int_equal(sk_store_read(store, count_uow, &c), SK_OK);
    return c.n;
}

/*
 * One instance whose reply handling keeps failing: its reply is retried,
 * then dead-lettered; meanwhile the other instances complete; its step
 * then times out and is compensated (the compensation's answer is not held
 * behind the dead reply), so it ends failed with TIMEOUT.
 */
static void test_saga_flow_failing_instance_never_stalls_others(void **state)
{
    fixture *f = *state;
    char r[128];

    consumer_up(f, &f->payment, "PAYMENT_COMMANDS", "payment", "payment.commands.>");
    order_up(f);
    start(f, "stuck", "bad_reply");
    start(f, "fine-1", NULL);
    start(f, "fine-2", NULL);
    expect_result(f, "fine-1", "completed:", "ReserveStock,ChargeCredit,CommitReservation");
    expect_result(f, "fine-2", "completed:", "ReserveStock,ChargeCredit,CommitReservation");
    /* The others finished while "stuck" still waits for its reply to be handled. */
    result_of(f, "stuck", r, sizeof(r));
    assert_string_equal(r, "");
    expect_result(f, "stuck", "failed:TIMEOUT", "ReserveStock,ReleaseReservation");
    assert_int_equal(count_of(f->store,
                              "SELECT COUNT(*) FROM sk_dead_letters WHERE consumer = "
                              "'order-saga-replies' AND error LIKE ? AND deliveries = 5",
                              "%cannot read the reservation of this order%"),
                     1);
    /* Nothing of the saga replies is parked. */
    assert_int_equal(count_of(f->store, "SELECT COUNT(*) FROM sk_msg_parked", NULL), 0);
    /* Later sagas flow as before. */
    start(f, "fine-3", NULL);
    expect_result(f, "fine-3", "completed:", "ReserveStock,ChargeCredit,CommitReservation");
}

/*
 * An instance started under version 1 of the definition finishes under
 * version 1 after a deploy that registers version 2; new instances use
 * version 2.
 */
static void test_saga_flow_version_pinned_across_deploy(void **state)
{
    fixture *f = *state;
    step_ctx s = { f, "old", -1 };

    /* Payment down: "old" (v1) stops at its charge. */
    order_up(f);
    start(f, "old", NULL);
    assert_true(sk_test_wait_until(is_at_charge, &s, WAIT_MS));
    order_down(f);

    /* Deploy: v1 and v2 registered. */
    f->has_v2 = true;
    consumer_up(f, &f->payment, "PAYMENT_COMMANDS", "payment", "payment.commands.>");
    order_up(f);
    start(f, "new", NULL);
    expect_result(f, "old", "completed:", "ReserveStock,ChargeCredit,CommitReservation");
    expect_result(f, "new", "completed:", "ReserveStock,CommitReservation");
    assert_int_equal(count_of(f->store, "SELECT version FROM sk_sagas WHERE id = ?", "old"), 1);
    assert_int_equal(count_of(f->store, "SELECT version FROM sk_sagas WHERE id = ?", "new"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_saga_flow_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saga_flow_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saga_flow_resume_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saga_flow_deadline_passed_while_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saga_flow_failing_instance_never_stalls_others, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_saga_flow_version_pinned_across_deploy, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
