/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/saga/machine.c: the saga state machine on an in-memory
 * store, without a bus. Replies are fake messages fed to the reply handler,
 * deadlines are driven with an explicit clock, and every case checks the
 * outbox rows (subject, ce-type, ce-sagastep) the engine wrote.
 *
 * The sample saga: reserve stock (command, compensated by a release) ->
 * compute total (local) -> charge credit (command, compensated by a refund)
 * -> commit reservation (command, retried until done, no compensation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "saga/saga_int.h"
#include "sk_test.h"

#define SUBJ_RESERVE "inventory.commands.ReserveStock"
#define SUBJ_RELEASE "inventory.commands.ReleaseReservation"
#define SUBJ_CHARGE  "payment.commands.ChargeCredit"
#define SUBJ_REFUND  "payment.commands.RefundCredit"
#define SUBJ_COMMIT  "inventory.commands.CommitReservation"
#define REPLY_SUBJ   "order.replies.OrderSaga"
#define T0           1700000000000LL
#define TRACE        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

typedef struct fx {
    sk_store *store;
    sk_metrics *metrics;
    sk_saga_engine *e;
    sk_saga_def def;
    int64_t now_ms;
    /* Recorded by the definition's callbacks. */
    int n_completed;
    int n_failed;
    char failed_reason[SK_SAGA_MAX_REASON];
    json_t *final_data; /* data passed to on_completed / on_failed */
    bool is_local_failing;
    bool is_build_bad;   /* the charge builder returns a non-object */
    bool is_build_error; /* the charge builder fails */
} fx;

/* ---------------------------------------------------------------- definition */

static sk_status build_copy(const json_t *data, json_t **out, void *ctx)
{
    (void)ctx;
    *out = json_deep_copy(data);
    return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "copy");
}

static sk_status build_charge(const json_t *data, json_t **out, void *ctx)
{
    fx *f = ctx;
    if (f->is_build_error) {
        return SK_FAIL(SK_EPROTO, "no customer in data");
    }
    if (f->is_build_bad) {
        *out = json_integer(1);
        return SK_OK;
    }
    *out = json_pack("{s:O?}", "total", json_object_get(data, "total"));
    return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "pack");
}

/* Success when the reply type is @p ok_type, else failure with the reply's "reason". */
static sk_status reply_verdict(const char *ok_type,
                               const char *reply_type,
                               const json_t *reply,
                               sk_saga_verdict *verdict,
                               char reason[SK_SAGA_MAX_REASON])
{
    const char *r;

    if (strcmp(reply_type, ok_type) == 0) {
        *verdict = SK_SAGA_STEP_OK;
        return SK_OK;
    }
    *verdict = SK_SAGA_STEP_FAILED;
    r = json_string_value(json_object_get(reply, "reason"));
    snprintf(reason, SK_SAGA_MAX_REASON, "%s", r != NULL ? r : "");
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
    if (price != NULL && json_object_set(data, "price", price) != 0) {
        return SK_FAIL(SK_ENOMEM, "set");
    }
    return reply_verdict("StockReserved", reply_type, reply, verdict, reason);
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
    if (strcmp(reply_type, "Explode") == 0) {
        return SK_FAIL(SK_EIO, "on_charge exploded");
    }
    if (strcmp(reply_type, "BadVerdict") == 0) {
        *verdict = (sk_saga_verdict)7;
        return SK_OK;
    }
    return reply_verdict("CreditCharged", reply_type, reply, verdict, reason);
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
    return reply_verdict("ReservationCommitted", reply_type, reply, verdict, reason);
}

static sk_status local_total(sk_tx *tx,
                             const char *saga_id,
                             json_t *data,
                             sk_saga_verdict *verdict,
                             char reason[SK_SAGA_MAX_REASON],
                             void *ctx)
{
    fx *f = ctx;
    json_int_t qty, price;

    (void)tx;
    (void)saga_id;
    if (f->is_local_failing) {
        *verdict = SK_SAGA_STEP_FAILED;
        snprintf(reason, SK_SAGA_MAX_REASON, "%s", "TOTAL_TOO_HIGH");
        return SK_OK;
    }
    qty = json_integer_value(json_object_get(data, "qty"));
    price = json_integer_value(json_object_get(data, "price"));
    if (json_object_set_new(data, "total", json_integer(qty * price)) != 0) {
        return SK_FAIL(SK_ENOMEM, "set");
    }
    *verdict = SK_SAGA_STEP_OK;
    return SK_OK;
}

static void keep_final(fx *f, const json_t *data)
{
    json_decref(f->final_data);
    f->final_data = json_deep_copy(data);
}

static sk_status on_completed(sk_tx *tx, const char *saga_id, const json_t *data, void *ctx)
{
    fx *f = ctx;
    (void)tx;
    (void)saga_id;
    f->n_completed++;
    keep_final(f, data);
    return SK_OK;
}

static sk_status
on_failed(sk_tx *tx, const char *saga_id, const json_t *data, const char *reason, void *ctx)
{
    fx *f = ctx;
    (void)tx;
    (void)saga_id;
    f->n_failed++;
    snprintf(f->failed_reason, sizeof(f->failed_reason), "%s", reason);
    keep_final(f, data);
    return SK_OK;
}

static const sk_saga_step order_steps[] = {
    {
        .name = "reserve_stock",
        .command_subject = SUBJ_RESERVE,
        .command_type = "ReserveStock",
        .build = build_copy,
        .on_reply = on_reserve,
        .compensation_subject = SUBJ_RELEASE,
        .compensation_type = "ReleaseReservation",
        .build_compensation = build_copy,
        .deadline_ms = 1000,
    },
    { .name = "compute_total", .local = local_total },
    {
        .name = "charge_credit",
        .command_subject = SUBJ_CHARGE,
        .command_type = "ChargeCredit",
        .build = build_charge,
        .on_reply = on_charge,
        .compensation_subject = SUBJ_REFUND,
        .compensation_type = "RefundCredit",
        .deadline_ms = 2000,
    },
    {
        .name = "commit_reservation",
        .command_subject = SUBJ_COMMIT,
        .command_type = "CommitReservation",
        .on_reply = on_commit,
        .is_retried_until_done = true, /* deadline 0: the default */
    },
};

/* ---------------------------------------------------------------- fixture */

static int64_t fx_clock(void *ctx)
{
    return ((fx *)ctx)->now_ms;
}

static int setup(void **state)
{
    fx *f = sk_calloc(1, sizeof(*f));
    size_t n_msg = 0, n_saga = 0;
    const sk_migration *m_msg = sk_msg_migrations(&n_msg);
    const sk_migration *m_saga = sk_saga_migrations(&n_saga);
    sk_migration all[8];

    assert_non_null(f);
    assert_true(n_msg + n_saga <= 8);
    memcpy(all, m_msg, n_msg * sizeof(*all));
    memcpy(all + n_msg, m_saga, n_saga * sizeof(*all));
    sk_store_config cfg = {
        .url = "sqlite::memory:", .migrations = all, .n_migrations = n_msg + n_saga
    };
    assert_int_equal(sk_store_open(&f->store, &cfg), SK_OK);
    assert_int_equal(sk_metrics_create(&f->metrics), SK_OK);
    assert_int_equal(
        sk_saga_engine_create(&f->e, f->store, NULL, f->metrics, "/skald/order", "ORDER_REPLIES"),
        SK_OK);
    f->now_ms = T0;
    sk__saga_engine_set_clock(f->e, fx_clock, f);
    f->def.type = "OrderSaga";
    f->def.version = 1;
    f->def.reply_subject = REPLY_SUBJ;
    f->def.steps = order_steps;
    f->def.n_steps = sizeof(order_steps) / sizeof(order_steps[0]);
    f->def.on_completed = on_completed;
    f->def.on_failed = on_failed;
    f->def.ctx = f;
    assert_int_equal(sk_saga_engine_register(f->e, &f->def), SK_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sk_saga_engine_destroy(f->e);
    sk_store_close(f->store);
    sk_metrics_destroy(f->metrics);
    json_decref(f->final_data);
    sk_free(f);
    return 0;
}

/* ---------------------------------------------------------------- drivers */

typedef struct call {
    fx *f;
    const char *id;
    const char *type;
    json_t *data;
    const char *trace;
    sk_message m;
    sk_saga_state exp_state;
    int64_t exp_seq;
    int64_t now_ms;
} call;

static sk_status start_uow(sk_tx *tx, void *ctx)
{
    call *c = ctx;
    return sk_saga_start(tx, c->f->e, c->type, c->id, c->data, c->trace);
}

/* Start "OrderSaga" @p id with data {"qty": 2}. */
static sk_status start(fx *f, const char *id)
{
    call c = { .f = f, .id = id, .type = "OrderSaga", .trace = TRACE };
    sk_status st;

    c.data = json_pack("{s:i}", "qty", 2);
    assert_non_null(c.data);
    st = sk_store_run(f->store, start_uow, &c);
    json_decref(c.data);
    return st;
}

static sk_status reply_uow(sk_tx *tx, void *ctx)
{
    call *c = ctx;
    return sk__saga_handle_reply(tx, &c->m, c->f->e);
}

/* Deliver a reply of @p type echoing @p step for saga @p id, with data @p json. */
static sk_status reply(fx *f, const char *id, int step, const char *type, const char *json)
{
    call c = { .f = f };
    json_t *data = NULL;
    sk_status st;

    if (json != NULL) {
        assert_int_equal(sk_json_parse_object(sk_slice_from_str(json), &data), SK_OK);
    }
    sk_envelope_init(&c.m.env, type, "/skald/test", id, NULL);
    c.m.env.saga_step = step;
    c.m.nats_subject = REPLY_SUBJ;
    c.m.json = data;
    c.m.data = sk_slice_from_str(json != NULL ? json : "");
    c.m.n_delivered = 1;
    st = sk_store_run(f->store, reply_uow, &c);
    json_decref(data);
    return st;
}

static sk_status deadline_uow(sk_tx *tx, void *ctx)
{
    call *c = ctx;
    return sk__saga_handle_deadline(tx, c->f->e, c->id, c->exp_state, c->exp_seq, c->now_ms);
}

static sk_status deadline(fx *f, const char *id, sk_saga_state state, int64_t seq, int64_t now)
{
    call c = { .f = f, .id = id, .exp_state = state, .exp_seq = seq, .now_ms = now };
    return sk_store_run(f->store, deadline_uow, &c);
}

static sk_status cancel_uow(sk_tx *tx, void *ctx)
{
    call *c = ctx;
    return sk_saga_cancel(tx, c->f->e, c->id);
}

static sk_status cancel(fx *f, const char *id)
{
    call c = { .f = f, .id = id };
    return sk_store_run(f->store, cancel_uow, &c);
}

/* The instance row as stored. */
typedef struct inst_row {
    int state;
    int step;
    int64_t seq;
    bool has_deadline;
    int64_t deadline_ms;
    bool is_cancel_requested;
    char reason[SK_SAGA_MAX_REASON];
    char data[512];
} inst_row;

typedef struct row_read {
    const char *id;
    inst_row *out;
} row_read;

static sk_status row_uow(sk_tx *tx, void *ctx)
{
    row_read *r = ctx;
    sk_db_value p[1] = { SK_DB_TEXT_V(r->id) };
    sk_rows *rows = NULL;
    sk_status st = sk_tx_query(tx,
                               "SELECT state, step, seq, deadline_ms, cancel_requested, reason, "
                               "data FROM sk_sagas WHERE id = ?",
                               p, 1, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_OK) {
        r->out->state = (int)sk_rows_int(rows, 0);
        r->out->step = (int)sk_rows_int(rows, 1);
        r->out->seq = sk_rows_int(rows, 2);
        r->out->has_deadline = !sk_rows_is_null(rows, 3);
        r->out->deadline_ms = sk_rows_int(rows, 3);
        r->out->is_cancel_requested = sk_rows_int(rows, 4) != 0;
        snprintf(r->out->reason, sizeof(r->out->reason), "%s", sk_rows_text(rows, 5, NULL));
        snprintf(r->out->data, sizeof(r->out->data), "%s", sk_rows_text(rows, 6, NULL));
    }
    sk_rows_close(rows);
    return st;
}

static inst_row get_row(fx *f, const char *id)
{
    inst_row out;
    row_read r = { id, &out };
    memset(&out, 0, sizeof(out));
    assert_int_equal(sk_store_run(f->store, row_uow, &r), SK_OK);
    return out;
}

static sk_status state_uow(sk_tx *tx, void *ctx)
{
    call *c = ctx;
    return sk_saga_get_state(tx, c->id, &c->exp_state);
}

static sk_saga_state get_state(fx *f, const char *id)
{
    call c = { .f = f, .id = id, .exp_state = (sk_saga_state)-1 };
    assert_int_equal(sk_store_run(f->store, state_uow, &c), SK_OK);
    return c.exp_state;
}

/* One outbox row, decoded. */
typedef struct ob_row {
    char subject[128];
    char type[64];
    int step;
    char reply_to[128];
    char ce_subject[128];
    char trace[SK_TRACEPARENT_LEN];
    char data[512];
} ob_row;

typedef struct ob_read {
    int64_t offset;
    int64_t count;
    ob_row *out;
} ob_read;

static void copy_header(const json_t *h, const char *key, char *out, size_t out_size)
{
    const char *v = json_string_value(json_object_get(h, key));
    snprintf(out, out_size, "%s", v != NULL ? v : "");
}

static sk_status ob_uow(sk_tx *tx, void *ctx)
{
    ob_read *r = ctx;
    sk_rows *rows = NULL;
    sk_db_value p[1] = { SK_DB_INT_V(r->offset) };
    json_t *h = NULL;
    sk_status st;

    if (r->out == NULL) {
        return sk_tx_query_int(tx, "SELECT COUNT(*) FROM sk_outbox", NULL, 0, &r->count);
    }
    st = sk_tx_query(tx,
                     "SELECT subject, headers, data FROM sk_outbox ORDER BY seq LIMIT 1 OFFSET ?",
                     p, 1, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_OK) {
        size_t len = 0;
        const char *text;
        snprintf(r->out->subject, sizeof(r->out->subject), "%s", sk_rows_text(rows, 0, NULL));
        text = sk_rows_text(rows, 1, &len);
        st = sk_json_parse_object((sk_slice){ (const uint8_t *)text, len }, &h);
        if (st == SK_OK) {
            char step[16];
            copy_header(h, "ce-type", r->out->type, sizeof(r->out->type));
            copy_header(h, "ce-replyto", r->out->reply_to, sizeof(r->out->reply_to));
            copy_header(h, "ce-subject", r->out->ce_subject, sizeof(r->out->ce_subject));
            copy_header(h, "traceparent", r->out->trace, sizeof(r->out->trace));
            copy_header(h, "ce-sagastep", step, sizeof(step));
            r->out->step = step[0] != '\0' ? (int)strtol(step, NULL, 10) : -1;
            text = sk_rows_text(rows, 2, &len);
            snprintf(r->out->data, sizeof(r->out->data), "%.*s", (int)len, text);
        }
        json_decref(h);
    }
    sk_rows_close(rows);
    return st;
}

static int64_t outbox_count(fx *f)
{
    ob_read r = { 0 };
    assert_int_equal(sk_store_run(f->store, ob_uow, &r), SK_OK);
    return r.count;
}

/* Check outbox row number @p idx (0-based, in publication order). */
static void assert_outbox(
    fx *f, int64_t idx, const char *saga_id, const char *subject, const char *type, int step)
{
    ob_row row;
    ob_read r = { .offset = idx, .out = &row };

    memset(&row, 0, sizeof(row));
    assert_int_equal(sk_store_run(f->store, ob_uow, &r), SK_OK);
    assert_string_equal(row.subject, subject);
    assert_string_equal(row.type, type);
    assert_int_equal(row.step, step);
    assert_string_equal(row.reply_to, REPLY_SUBJ);
    assert_string_equal(row.ce_subject, saga_id);
    /* Commands continue the saga's trace. */
    assert_memory_equal(row.trace, TRACE, 36);
}

static void assert_metrics_contain(fx *f, const char *needle)
{
    sk_buf b;
    sk_buf_init(&b, 1 << 20);
    assert_int_equal(sk_metrics_render(f->metrics, &b), SK_OK);
    if (strstr(b.data, needle) == NULL) {
        print_error("metrics lack \"%s\":\n%s\n", needle, b.data);
        fail();
    }
    sk_buf_fini(&b);
}

/* ---------------------------------------------------------------- tests */

static void test_sk_saga_migrations_count(void **state)
{
    size_t n = 0;
    const sk_migration *m = sk_saga_migrations(&n);
    (void)state;
    assert_int_equal(n, 1);
    assert_string_equal(m[0].component, "sk_saga");
    assert_int_equal(m[0].version, 1);
    assert_non_null(strstr(m[0].sql, "sk_sagas"));
    assert_ptr_equal(sk_saga_migrations(NULL), m);
}

static void test_sk_saga_happy_path(void **state)
{
    fx *f = *state;
    inst_row row;

    assert_int_equal(start(f, "o-1"), SK_OK);
    assert_int_equal(get_state(f, "o-1"), SK_SAGA_RUNNING);
    assert_int_equal(outbox_count(f), 1);
    assert_outbox(f, 0, "o-1", SUBJ_RESERVE, "ReserveStock", 1);
    row = get_row(f, "o-1");
    assert_int_equal(row.step, 0);
    assert_int_equal(row.seq, 1);
    assert_true(row.has_deadline);
    assert_int_equal(row.deadline_ms, T0 + 1000);

    /* The reserve reply stores the price, the local step computes the total. */
    f->now_ms = T0 + 10;
    assert_int_equal(reply(f, "o-1", 1, "StockReserved", "{\"price\": 150}"), SK_OK);
    assert_int_equal(outbox_count(f), 2);
    assert_outbox(f, 1, "o-1", SUBJ_CHARGE, "ChargeCredit", 2);
    row = get_row(f, "o-1");
    assert_int_equal(row.step, 2);
    assert_int_equal(row.deadline_ms, T0 + 10 + 2000);
    assert_non_null(strstr(row.data, "\"total\":300"));

    assert_int_equal(reply(f, "o-1", 2, "CreditCharged", "{}"), SK_OK);
    assert_int_equal(outbox_count(f), 3);
    assert_outbox(f, 2, "o-1", SUBJ_COMMIT, "CommitReservation", 3);
    row = get_row(f, "o-1");
    assert_int_equal(row.deadline_ms, T0 + 10 + SK__SAGA_DEFAULT_DEADLINE_MS);

    assert_int_equal(reply(f, "o-1", 3, "ReservationCommitted", NULL), SK_OK);
    assert_int_equal(outbox_count(f), 3);
    assert_int_equal(get_state(f, "o-1"), SK_SAGA_COMPLETED);
    assert_int_equal(f->n_completed, 1);
    assert_int_equal(f->n_failed, 0);
    assert_int_equal(json_integer_value(json_object_get(f->final_data, "total")), 300);
    row = get_row(f, "o-1");
    assert_false(row.has_deadline);

    assert_metrics_contain(f, "sk_saga_started_total{type=\"OrderSaga\"} 1");
    assert_metrics_contain(f, "sk_saga_completed_total{type=\"OrderSaga\"} 1");
}

static void test_sk_saga_failure_at_step_2_compensates_step_1(void **state)
{
    fx *f = *state;

    assert_int_equal(start(f, "o-2"), SK_OK);
    assert_int_equal(reply(f, "o-2", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    assert_int_equal(
        reply(f, "o-2", 2, "CreditChargeFailed", "{\"reason\": \"INSUFFICIENT_CREDIT\"}"), SK_OK);
    /* No refund (the charge failed), only the release of the reservation. */
    assert_int_equal(outbox_count(f), 3);
    assert_outbox(f, 2, "o-2", SUBJ_RELEASE, "ReleaseReservation", 3);
    assert_int_equal(get_state(f, "o-2"), SK_SAGA_COMPENSATING);
    inst_row row = get_row(f, "o-2");
    assert_int_equal(row.step, 0);
    assert_string_equal(row.reason, "INSUFFICIENT_CREDIT");
    assert_int_equal(row.deadline_ms, T0 + 1000);
    assert_int_equal(f->n_failed, 0);

    assert_int_equal(reply(f, "o-2", 3, "ReservationReleased", "{}"), SK_OK);
    assert_int_equal(get_state(f, "o-2"), SK_SAGA_FAILED);
    assert_int_equal(f->n_failed, 1);
    assert_string_equal(f->failed_reason, "INSUFFICIENT_CREDIT");
    assert_int_equal(outbox_count(f), 3);
    assert_false(get_row(f, "o-2").has_deadline);
    assert_metrics_contain(
        f, "sk_saga_failed_total{type=\"OrderSaga\",reason=\"INSUFFICIENT_CREDIT\"} 1");
}

static void test_sk_saga_failure_at_step_1_compensates_nothing(void **state)
{
    fx *f = *state;

    assert_int_equal(start(f, "o-3"), SK_OK);
    assert_int_equal(reply(f, "o-3", 1, "StockReservationFailed", "{\"reason\": \"OUT_OF_STOCK\"}"),
                     SK_OK);
    assert_int_equal(outbox_count(f), 1);
    assert_int_equal(get_state(f, "o-3"), SK_SAGA_FAILED);
    assert_int_equal(f->n_failed, 1);
    assert_string_equal(f->failed_reason, "OUT_OF_STOCK");
}

static void test_sk_saga_failure_without_reason_is_failed(void **state)
{
    fx *f = *state;

    assert_int_equal(start(f, "o-3b"), SK_OK);
    assert_int_equal(reply(f, "o-3b", 1, "Nope", "{}"), SK_OK);
    assert_int_equal(f->n_failed, 1);
    assert_string_equal(f->failed_reason, "FAILED");
}

static void test_sk_saga_local_failure_compensates_before_it(void **state)
{
    fx *f = *state;

    f->is_local_failing = true;
    assert_int_equal(start(f, "o-4"), SK_OK);
    assert_int_equal(reply(f, "o-4", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    assert_int_equal(outbox_count(f), 2);
    assert_outbox(f, 1, "o-4", SUBJ_RELEASE, "ReleaseReservation", 2);
    assert_string_equal(get_row(f, "o-4").reason, "TOTAL_TOO_HIGH");
    assert_int_equal(reply(f, "o-4", 2, "ReservationReleased", "{}"), SK_OK);
    assert_int_equal(get_state(f, "o-4"), SK_SAGA_FAILED);
    assert_string_equal(f->failed_reason, "TOTAL_TOO_HIGH");
}

static void test_sk_saga_stale_and_duplicate_replies_ignored(void **state)
{
    fx *f = *state;
    inst_row before, after;

    assert_int_equal(start(f, "o-5"), SK_OK);
    assert_int_equal(reply(f, "o-5", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    before = get_row(f, "o-5");
    /* Redelivery of the same reply, a reply from the future, a failure for an old step. */
    assert_int_equal(reply(f, "o-5", 1, "StockReserved", "{\"price\": 99}"), SK_OK);
    assert_int_equal(reply(f, "o-5", 7, "CreditCharged", "{}"), SK_OK);
    assert_int_equal(reply(f, "o-5", 1, "StockReservationFailed", "{\"reason\":\"X\"}"), SK_OK);
    assert_int_equal(reply(f, "o-5", 0, "CreditCharged", "{}"), SK_OK);
    after = get_row(f, "o-5");
    assert_int_equal(after.state, before.state);
    assert_int_equal(after.step, before.step);
    assert_int_equal(after.seq, before.seq);
    assert_string_equal(after.data, before.data);
    assert_int_equal(outbox_count(f), 2);

    /* Unknown saga: acknowledged and ignored. */
    assert_int_equal(reply(f, "nobody", 1, "StockReserved", "{}"), SK_OK);
    /* Replies after the end change nothing. */
    assert_int_equal(reply(f, "o-5", 2, "CreditCharged", "{}"), SK_OK);
    assert_int_equal(reply(f, "o-5", 3, "ReservationCommitted", "{}"), SK_OK);
    assert_int_equal(f->n_completed, 1);
    assert_int_equal(reply(f, "o-5", 3, "ReservationCommitted", "{}"), SK_OK);
    assert_int_equal(f->n_completed, 1);
    assert_int_equal(get_state(f, "o-5"), SK_SAGA_COMPLETED);
}

static void test_sk_saga_reply_malformed(void **state)
{
    fx *f = *state;
    call c = { .f = f };

    assert_int_equal(start(f, "o-6"), SK_OK);
    /* No ce-sagastep: the message can never be correlated. */
    SK_TEST_ASSERT_ERR(reply(f, "o-6", -1, "StockReserved", "{}"), SK_EPROTO, "no ce-sagastep");
    /* No ce-subject. */
    sk_envelope_init(&c.m.env, "StockReserved", "/x", NULL, NULL);
    c.m.env.saga_step = 1;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, &c), SK_EPROTO, "no ce-subject");
    /* Data that is not a JSON object (no parsed json: the handler parses). */
    sk_envelope_init(&c.m.env, "StockReserved", "/x", "o-6", NULL);
    c.m.env.saga_step = 1;
    c.m.data = sk_slice_from_str("[1]");
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, &c), SK_EPROTO, "reply StockReserved");
    assert_int_equal(get_row(f, "o-6").seq, 1);
    /* Raw data without parsed json is accepted. */
    c.m.data = sk_slice_from_str("{\"price\": 5}");
    assert_int_equal(sk_store_run(f->store, reply_uow, &c), SK_OK);
    assert_int_equal(get_row(f, "o-6").seq, 2);
    /* NULL arguments. */
    SK_TEST_ASSERT_ERR(sk__saga_handle_reply(NULL, &c.m, f->e), SK_EINVAL, "tx");
}

static void test_sk_saga_reply_callback_errors_roll_back(void **state)
{
    fx *f = *state;

    assert_int_equal(start(f, "o-7"), SK_OK);
    assert_int_equal(reply(f, "o-7", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    SK_TEST_ASSERT_ERR(reply(f, "o-7", 2, "Explode", "{}"), SK_EIO, "on_charge exploded");
    SK_TEST_ASSERT_ERR(reply(f, "o-7", 2, "BadVerdict", "{}"), SK_EINVAL, "invalid verdict");
    assert_int_equal(get_row(f, "o-7").seq, 2);
    assert_int_equal(get_state(f, "o-7"), SK_SAGA_RUNNING);
    assert_int_equal(outbox_count(f), 2);
}

static void test_sk_saga_build_errors(void **state)
{
    fx *f = *state;

    assert_int_equal(start(f, "o-8"), SK_OK);
    f->is_build_bad = true;
    SK_TEST_ASSERT_ERR(reply(f, "o-8", 1, "StockReserved", "{\"price\": 10}"), SK_EINVAL,
                       "not an object");
    f->is_build_bad = false;
    f->is_build_error = true;
    SK_TEST_ASSERT_ERR(reply(f, "o-8", 1, "StockReserved", "{\"price\": 10}"), SK_EPROTO,
                       "no customer in data");
    /* Rolled back: still awaiting the first reply. */
    assert_int_equal(get_row(f, "o-8").seq, 1);
    assert_int_equal(outbox_count(f), 1);
    f->is_build_error = false;
    assert_int_equal(reply(f, "o-8", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    assert_int_equal(get_row(f, "o-8").seq, 2);
}

static void test_sk_saga_cancel_while_awaiting_reply(void **state)
{
    fx *f = *state;
    inst_row row;

    assert_int_equal(start(f, "o-9"), SK_OK);
    assert_int_equal(cancel(f, "o-9"), SK_OK);
    row = get_row(f, "o-9");
    assert_int_equal(row.state, SK_SAGA_RUNNING);
    assert_true(row.is_cancel_requested);
    assert_int_equal(outbox_count(f), 1);
    /* Cancelling twice is harmless. */
    assert_int_equal(cancel(f, "o-9"), SK_OK);
    /* The reservation succeeded, so it is released too. */
    assert_int_equal(reply(f, "o-9", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    assert_int_equal(outbox_count(f), 2);
    assert_outbox(f, 1, "o-9", SUBJ_RELEASE, "ReleaseReservation", 2);
    assert_int_equal(get_state(f, "o-9"), SK_SAGA_COMPENSATING);
    /* Cancelling while compensating: nothing to do. */
    assert_int_equal(cancel(f, "o-9"), SK_OK);
    assert_int_equal(reply(f, "o-9", 2, "ReservationReleased", "{}"), SK_OK);
    assert_int_equal(get_state(f, "o-9"), SK_SAGA_FAILED);
    assert_string_equal(f->failed_reason, "CANCELLED");
    /* Finished: the caller decides. */
    SK_TEST_ASSERT_ERR(cancel(f, "o-9"), SK_ESTATE, "already failed");
}

static void test_sk_saga_cancel_then_step_fails_keeps_reason(void **state)
{
    fx *f = *state;

    assert_int_equal(start(f, "o-10"), SK_OK);
    assert_int_equal(reply(f, "o-10", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    assert_int_equal(cancel(f, "o-10"), SK_OK);
    assert_int_equal(
        reply(f, "o-10", 2, "CreditChargeFailed", "{\"reason\":\"INSUFFICIENT_CREDIT\"}"), SK_OK);
    assert_outbox(f, 2, "o-10", SUBJ_RELEASE, "ReleaseReservation", 3);
    assert_int_equal(reply(f, "o-10", 3, "ReservationReleased", "{}"), SK_OK);
    assert_string_equal(f->failed_reason, "INSUFFICIENT_CREDIT");
}

static void test_sk_saga_cancel_errors(void **state)
{
    fx *f = *state;

    SK_TEST_ASSERT_ERR(cancel(f, "missing"), SK_ENOTFOUND, "missing");
    SK_TEST_ASSERT_ERR(cancel(f, ""), SK_EINVAL, "saga_id");
    SK_TEST_ASSERT_ERR(sk_saga_cancel(NULL, f->e, "x"), SK_EINVAL, "tx");
    assert_int_equal(start(f, "o-11"), SK_OK);
    assert_int_equal(reply(f, "o-11", 1, "StockReserved", "{\"price\": 1}"), SK_OK);
    assert_int_equal(reply(f, "o-11", 2, "CreditCharged", "{}"), SK_OK);
    assert_int_equal(reply(f, "o-11", 3, "ReservationCommitted", "{}"), SK_OK);
    SK_TEST_ASSERT_ERR(cancel(f, "o-11"), SK_ESTATE, "already completed");
}

static void test_sk_saga_timeout_fails_and_compensates(void **state)
{
    fx *f = *state;
    inst_row row;

    assert_int_equal(start(f, "o-12"), SK_OK);
    assert_int_equal(reply(f, "o-12", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    row = get_row(f, "o-12");
    assert_int_equal(row.deadline_ms, T0 + 2000);
    /* Not expired yet, or the scan saw another state / sequence: nothing happens. */
    assert_int_equal(deadline(f, "o-12", SK_SAGA_RUNNING, 2, T0 + 2000), SK_OK);
    assert_int_equal(deadline(f, "o-12", SK_SAGA_RUNNING, 1, T0 + 5000), SK_OK);
    assert_int_equal(deadline(f, "o-12", SK_SAGA_COMPENSATING, 2, T0 + 5000), SK_OK);
    assert_int_equal(deadline(f, "nobody", SK_SAGA_RUNNING, 1, T0 + 5000), SK_OK);
    assert_int_equal(outbox_count(f), 2);

    /* Expired: the charge's outcome is unknown, so it is refunded, then the stock released. */
    assert_int_equal(deadline(f, "o-12", SK_SAGA_RUNNING, 2, T0 + 2001), SK_OK);
    assert_int_equal(outbox_count(f), 3);
    assert_outbox(f, 2, "o-12", SUBJ_REFUND, "RefundCredit", 3);
    row = get_row(f, "o-12");
    assert_int_equal(row.state, SK_SAGA_COMPENSATING);
    assert_string_equal(row.reason, "TIMEOUT");
    assert_int_equal(row.deadline_ms, T0 + 2001 + 2000);
    /* The late charge reply is stale now. */
    assert_int_equal(reply(f, "o-12", 2, "CreditCharged", "{}"), SK_OK);
    assert_int_equal(get_row(f, "o-12").seq, 3);

    assert_int_equal(reply(f, "o-12", 3, "CreditRefunded", "{}"), SK_OK);
    assert_outbox(f, 3, "o-12", SUBJ_RELEASE, "ReleaseReservation", 4);
    assert_int_equal(reply(f, "o-12", 4, "ReservationReleased", "{}"), SK_OK);
    assert_int_equal(get_state(f, "o-12"), SK_SAGA_FAILED);
    assert_string_equal(f->failed_reason, "TIMEOUT");
    assert_metrics_contain(f, "sk_saga_timeouts_total 1");
    assert_metrics_contain(f, "sk_saga_failed_total{type=\"OrderSaga\",reason=\"TIMEOUT\"} 1");
}

static void test_sk_saga_retried_step_resent_on_timeout(void **state)
{
    fx *f = *state;
    int64_t t;

    assert_int_equal(start(f, "o-13"), SK_OK);
    assert_int_equal(reply(f, "o-13", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    assert_int_equal(reply(f, "o-13", 2, "CreditCharged", "{}"), SK_OK);
    assert_outbox(f, 2, "o-13", SUBJ_COMMIT, "CommitReservation", 3);
    t = get_row(f, "o-13").deadline_ms + 1;
    assert_int_equal(deadline(f, "o-13", SK_SAGA_RUNNING, 3, t), SK_OK);
    assert_int_equal(outbox_count(f), 4);
    assert_outbox(f, 3, "o-13", SUBJ_COMMIT, "CommitReservation", 4);
    inst_row row = get_row(f, "o-13");
    assert_int_equal(row.state, SK_SAGA_RUNNING);
    assert_int_equal(row.step, 3);
    assert_int_equal(row.seq, 4);
    assert_int_equal(row.deadline_ms, t + SK__SAGA_DEFAULT_DEADLINE_MS);
    assert_string_equal(row.reason, "");
    /* The answer to the first attempt is stale; the second completes. */
    assert_int_equal(reply(f, "o-13", 3, "ReservationCommitted", "{}"), SK_OK);
    assert_int_equal(get_state(f, "o-13"), SK_SAGA_RUNNING);
    assert_int_equal(reply(f, "o-13", 4, "ReservationCommitted", "{}"), SK_OK);
    assert_int_equal(get_state(f, "o-13"), SK_SAGA_COMPLETED);
    assert_int_equal(f->n_completed, 1);
}

static void test_sk_saga_compensation_resent_on_timeout(void **state)
{
    fx *f = *state;
    int64_t t;

    assert_int_equal(start(f, "o-14"), SK_OK);
    assert_int_equal(reply(f, "o-14", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    assert_int_equal(reply(f, "o-14", 2, "CreditChargeFailed", "{\"reason\":\"NO\"}"), SK_OK);
    assert_outbox(f, 2, "o-14", SUBJ_RELEASE, "ReleaseReservation", 3);
    t = get_row(f, "o-14").deadline_ms + 1;
    assert_int_equal(deadline(f, "o-14", SK_SAGA_COMPENSATING, 3, t), SK_OK);
    assert_outbox(f, 3, "o-14", SUBJ_RELEASE, "ReleaseReservation", 4);
    t = get_row(f, "o-14").deadline_ms + 1;
    assert_int_equal(deadline(f, "o-14", SK_SAGA_COMPENSATING, 4, t), SK_OK);
    assert_outbox(f, 4, "o-14", SUBJ_RELEASE, "ReleaseReservation", 5);
    assert_int_equal(outbox_count(f), 5);
    inst_row row = get_row(f, "o-14");
    assert_int_equal(row.state, SK_SAGA_COMPENSATING);
    assert_string_equal(row.reason, "NO");
    /* Any answer to the current attempt completes the compensation; older ones are stale. */
    assert_int_equal(reply(f, "o-14", 3, "ReservationReleased", "{}"), SK_OK);
    assert_int_equal(get_state(f, "o-14"), SK_SAGA_COMPENSATING);
    assert_int_equal(reply(f, "o-14", 5, "WhateverType", "{}"), SK_OK);
    assert_int_equal(get_state(f, "o-14"), SK_SAGA_FAILED);
    assert_string_equal(f->failed_reason, "NO");
    assert_metrics_contain(f, "sk_saga_timeouts_total 2");
}

static void test_sk_saga_first_step_timeout_releases_its_own_effect(void **state)
{
    fx *f = *state;

    assert_int_equal(start(f, "o-15"), SK_OK);
    assert_int_equal(deadline(f, "o-15", SK_SAGA_RUNNING, 1, T0 + 1001), SK_OK);
    assert_outbox(f, 1, "o-15", SUBJ_RELEASE, "ReleaseReservation", 2);
    assert_int_equal(reply(f, "o-15", 2, "ReservationReleased", "{}"), SK_OK);
    assert_int_equal(get_state(f, "o-15"), SK_SAGA_FAILED);
    assert_string_equal(f->failed_reason, "TIMEOUT");
}

/* Version 1 above; version 2 only charges. */
static const sk_saga_step v2_steps[] = {
    {
        .name = "charge_only",
        .command_subject = SUBJ_CHARGE,
        .command_type = "ChargeCreditV2",
        .on_reply = on_charge,
    },
};

static void test_sk_saga_version_pinning(void **state)
{
    fx *f = *state;
    sk_saga_def v2 = f->def;

    assert_int_equal(start(f, "o-16"), SK_OK); /* under v1, the only version so far */
    v2.version = 2;
    v2.steps = v2_steps;
    v2.n_steps = 1;
    assert_int_equal(sk_saga_engine_register(f->e, &v2), SK_OK);
    /* New sagas start under v2. */
    assert_int_equal(start(f, "o-17"), SK_OK);
    assert_outbox(f, 1, "o-17", SUBJ_CHARGE, "ChargeCreditV2", 1);
    /* The v1 instance still follows v1: a local step, then ChargeCredit. */
    assert_int_equal(reply(f, "o-16", 1, "StockReserved", "{\"price\": 10}"), SK_OK);
    assert_outbox(f, 2, "o-16", SUBJ_CHARGE, "ChargeCredit", 2);
    assert_non_null(strstr(get_row(f, "o-16").data, "\"total\":20"));
    /* The v2 instance completes after its single step. */
    assert_int_equal(reply(f, "o-17", 1, "CreditCharged", "{}"), SK_OK);
    assert_int_equal(get_state(f, "o-17"), SK_SAGA_COMPLETED);
    assert_int_equal(get_state(f, "o-16"), SK_SAGA_RUNNING);
}

static sk_status drop_v1_uow(sk_tx *tx, void *ctx)
{
    (void)ctx;
    return sk_tx_exec(tx, "UPDATE sk_sagas SET version = 9", NULL, 0, NULL);
}

static void test_sk_saga_unknown_version_is_an_error(void **state)
{
    fx *f = *state;

    assert_int_equal(start(f, "o-18"), SK_OK);
    assert_int_equal(sk_store_run(f->store, drop_v1_uow, NULL), SK_OK);
    SK_TEST_ASSERT_ERR(reply(f, "o-18", 1, "StockReserved", "{}"), SK_ENOTFOUND, "version 9");
    SK_TEST_ASSERT_ERR(deadline(f, "o-18", SK_SAGA_RUNNING, 1, T0 + 5000), SK_ENOTFOUND,
                       "OrderSaga version 9");
}

static void test_sk_saga_start_errors(void **state)
{
    fx *f = *state;
    call c = { .f = f, .id = "o-19", .type = "OrderSaga" };

    assert_int_equal(start(f, "o-19"), SK_OK);
    SK_TEST_ASSERT_ERR(start(f, "o-19"), SK_EEXIST, "o-19 already exists");
    assert_int_equal(outbox_count(f), 1); /* the failed start rolled back its command */
    c.type = "NoSuchSaga";
    c.data = json_object();
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, start_uow, &c), SK_ENOTFOUND, "NoSuchSaga");
    c.type = "OrderSaga";
    c.id = "has space";
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, start_uow, &c), SK_EINVAL, "saga_id");
    c.id = "";
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, start_uow, &c), SK_EINVAL, "saga_id");
    c.id = NULL;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, start_uow, &c), SK_EINVAL, "saga_id");
    c.id = "o-20";
    json_decref(c.data);
    c.data = json_array();
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, start_uow, &c), SK_EINVAL, "data");
    json_decref(c.data);
    c.data = NULL;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, start_uow, &c), SK_EINVAL, "data");
    SK_TEST_ASSERT_ERR(sk_saga_start(NULL, f->e, "OrderSaga", "x", NULL, NULL), SK_EINVAL, "tx");
    SK_TEST_ASSERT_ERR(sk_saga_start((sk_tx *)1, NULL, "OrderSaga", "x", NULL, NULL), SK_EINVAL,
                       "e must not");
    assert_int_equal(outbox_count(f), 1);
}

/* Wrap @p levels - 1 objects around {"qty": 2}: @p levels levels deep. */
static json_t *nested(int levels)
{
    json_t *v = json_pack("{s:i}", "qty", 2);
    for (int i = 1; i < levels && v != NULL; i++) {
        json_t *outer = json_object();
        assert_int_equal(json_object_set_new(outer, "n", v), 0);
        v = outer;
    }
    return v;
}

static void test_sk_saga_start_data_depth_limit(void **state)
{
    fx *f = *state;
    call c = { .f = f, .id = "deep-32", .type = "OrderSaga" };

    /* The deepest data that can be read back is accepted, and it is read back. */
    c.data = nested(SK_MAX_JSON_DEPTH);
    assert_int_equal(sk_store_run(f->store, start_uow, &c), SK_OK);
    json_decref(c.data);
    assert_int_equal(reply(f, "deep-32", 1, "StockReserved", "{\"price\": 1}"), SK_OK);
    assert_int_equal(get_row(f, "deep-32").seq, 2);
    /* One level more is refused at the start, not discovered at the next reply. */
    c.id = "deep-33";
    c.data = nested(SK_MAX_JSON_DEPTH + 1);
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, start_uow, &c), SK_ELIMIT, "nested deeper than 32");
    json_decref(c.data);
    assert_int_equal(outbox_count(f), 2);
}

/* A saga whose first step is local and already fails: it fails inside the start. */
static const sk_saga_step local_first_steps[] = {
    { .name = "check", .local = local_total },
};

static void test_sk_saga_start_local_only(void **state)
{
    fx *f = *state;
    sk_saga_def d = f->def;

    d.type = "LocalSaga";
    d.steps = local_first_steps;
    d.n_steps = 1;
    assert_int_equal(sk_saga_engine_register(f->e, &d), SK_OK);
    call c = { .f = f, .id = "l-1", .type = "LocalSaga" };
    c.data = json_pack("{s:i, s:i}", "qty", 3, "price", 4);
    assert_int_equal(sk_store_run(f->store, start_uow, &c), SK_OK);
    assert_int_equal(get_state(f, "l-1"), SK_SAGA_COMPLETED);
    assert_int_equal(json_integer_value(json_object_get(f->final_data, "total")), 12);
    f->is_local_failing = true;
    c.id = "l-2";
    c.trace = "not a trace";
    assert_int_equal(sk_store_run(f->store, start_uow, &c), SK_OK);
    json_decref(c.data);
    assert_int_equal(get_state(f, "l-2"), SK_SAGA_FAILED);
    assert_string_equal(f->failed_reason, "TOTAL_TOO_HIGH");
    assert_int_equal(outbox_count(f), 0);
}

typedef struct count_call {
    int64_t counts[4];
    const char *id;
    sk_saga_state st;
} count_call;

static sk_status count_uow(sk_tx *tx, void *ctx)
{
    count_call *c = ctx;
    return sk_saga_count(tx, c->counts);
}

static sk_status get_state_uow(sk_tx *tx, void *ctx)
{
    count_call *c = ctx;
    return sk_saga_get_state(tx, c->id, &c->st);
}

static void test_sk_saga_count_and_get_state(void **state)
{
    fx *f = *state;
    count_call c = { .id = "missing" };

    assert_int_equal(sk_store_run(f->store, count_uow, &c), SK_OK);
    assert_int_equal(c.counts[0] + c.counts[1] + c.counts[2] + c.counts[3], 0);
    assert_int_equal(start(f, "c-1"), SK_OK);
    assert_int_equal(start(f, "c-2"), SK_OK);
    assert_int_equal(start(f, "c-3"), SK_OK);
    assert_int_equal(reply(f, "c-2", 1, "StockReservationFailed", "{}"), SK_OK);
    assert_int_equal(reply(f, "c-3", 1, "StockReserved", "{}"), SK_OK);
    assert_int_equal(reply(f, "c-3", 2, "CreditChargeFailed", "{}"), SK_OK);
    assert_int_equal(sk_store_run(f->store, count_uow, &c), SK_OK);
    assert_int_equal(c.counts[SK_SAGA_RUNNING], 1);
    assert_int_equal(c.counts[SK_SAGA_COMPENSATING], 1);
    assert_int_equal(c.counts[SK_SAGA_COMPLETED], 0);
    assert_int_equal(c.counts[SK_SAGA_FAILED], 1);
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, get_state_uow, &c), SK_ENOTFOUND, "missing");
    SK_TEST_ASSERT_ERR(sk_saga_count(NULL, c.counts), SK_EINVAL, "tx");
    SK_TEST_ASSERT_ERR(sk_saga_get_state(NULL, "x", &c.st), SK_EINVAL, "tx");
}

static sk_status exists_uow(sk_tx *tx, void *ctx)
{
    call *c = ctx;
    sk_db_value p[1] = { SK_DB_TEXT_V(c->id) };
    return sk_tx_query_int(tx, "SELECT COUNT(*) FROM sk_sagas WHERE id = ?", p, 1, &c->exp_seq);
}

/*
 * Fail each allocation of a start in turn (ours, the outbox's, the store's):
 * the unit either commits whole (instance running, its command in the
 * outbox) or leaves nothing behind.
 */
static void test_sk_saga_start_every_alloc_failure(void **state)
{
    fx *f = *state;
    char id[32];
    int n_ok = 0;

    for (long n = 0; n < 300; n++) {
        int64_t n_rows = outbox_count(f);
        snprintf(id, sizeof(id), "a-%ld", n);
        call c = { .f = f, .id = id, .type = "OrderSaga", .trace = TRACE };
        c.data = json_pack("{s:i}", "qty", 2);
        assert_non_null(c.data);
        sk_test_fail_alloc_at(n);
        sk_status st = sk_store_run(f->store, start_uow, &c);
        sk_test_fail_alloc_at(-1);
        json_decref(c.data);
        assert_int_not_equal(st, SK_EINTERNAL);
        assert_int_equal(sk_store_run(f->store, exists_uow, &c), SK_OK);
        if (st == SK_OK) {
            n_ok++;
            assert_int_equal(c.exp_seq, 1);
            assert_int_equal(get_state(f, id), SK_SAGA_RUNNING);
            assert_int_equal(outbox_count(f), n_rows + 1);
        } else {
            assert_int_equal(c.exp_seq, 0);
            assert_int_equal(outbox_count(f), n_rows);
        }
    }
    assert_true(n_ok > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_saga_migrations_count),
        cmocka_unit_test_setup_teardown(test_sk_saga_happy_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_failure_at_step_2_compensates_step_1, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_failure_at_step_1_compensates_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_failure_without_reason_is_failed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_local_failure_compensates_before_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_stale_and_duplicate_replies_ignored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_reply_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_reply_callback_errors_roll_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_build_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_cancel_while_awaiting_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_cancel_then_step_fails_keeps_reason, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_cancel_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_timeout_fails_and_compensates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_retried_step_resent_on_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_compensation_resent_on_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_first_step_timeout_releases_its_own_effect,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_version_pinning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_unknown_version_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_start_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_start_local_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_start_data_depth_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_count_and_get_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_start_every_alloc_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
