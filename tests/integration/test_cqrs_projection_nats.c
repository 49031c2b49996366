/* SPDX-License-Identifier: MIT */
/*
 * Integration: a projection fed by a real nats-server. Events written to an
 * outbox are published by the relay into a stream; the projection applies
 * each once, its checkpoint reaches the last stream sequence, and after a
 * stop and a restart it resumes with the next event without re-applying
 * anything. Public API only; SQLite files in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <skald/cqrs.h>

#include "sk_test.h"
#include "sk_test_nats.h"

#define STREAM  "ORDER_EVENTS"
#define SUBJECT "order.events.OrderCreated"
#define VIEW    "orderview"

static const sk_migration view_migration = {
    "test_view", 1,
    "CREATE TABLE order_view (order_id TEXT PRIMARY KEY, n_applied INTEGER NOT NULL,"
    " stream_seq INTEGER NOT NULL)"
};

typedef struct fixture {
    sk_test_nats *nats;
    sk_bus *bus;
    sk_store *source; /* the writing service: outbox */
    sk_store *view;   /* the read side: inbox, checkpoints, read model */
    sk_relay *relay;
    sk_metrics *metrics;
    char dir[64];
    atomic_int n_applied;
    atomic_ullong max_seq;
} fixture;

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    const char *subjects[] = { "order.events.>" };
    sk_stream_config sc = { .name = STREAM, .subjects = subjects, .n_subjects = 1 };
    sk_migration mig[16];
    size_t n_msg = 0;
    size_t n_cqrs = 0;
    const sk_migration *msg_mig = sk_msg_migrations(&n_msg);
    const sk_migration *cqrs_mig = sk_cqrs_migrations(&n_cqrs);
    char url[128];

    assert_non_null(f);
    assert_int_equal(sk_init("test-cqrs-projection"), SK_OK);
    assert_true(n_msg + n_cqrs + 1 <= 16);
    atomic_init(&f->n_applied, 0);
    atomic_init(&f->max_seq, 0);
    assert_int_equal(sk_metrics_create(&f->metrics), SK_OK);
    assert_int_equal(sk_test_nats_start(&f->nats, NULL), SK_OK);
    sk_bus_config bc = { .servers = sk_test_nats_url(f->nats), .name = "test-projection" };
    assert_int_equal(sk_bus_open(&f->bus, &bc), SK_OK);
    assert_int_equal(sk_bus_stream_ensure(f->bus, &sc), SK_OK);
    assert_int_equal(sk_test_tmpdir(f->dir, sizeof(f->dir)), SK_OK);

    snprintf(url, sizeof(url), "sqlite:%s/source.sqlite", f->dir);
    sk_store_config src = { .url = url, .migrations = msg_mig, .n_migrations = n_msg };
    assert_int_equal(sk_store_open(&f->source, &src), SK_OK);
    assert_int_equal(sk_relay_start(&f->relay, f->source, f->bus, f->metrics), SK_OK);

    memcpy(mig, msg_mig, n_msg * sizeof(*mig));
    memcpy(mig + n_msg, cqrs_mig, n_cqrs * sizeof(*mig));
    mig[n_msg + n_cqrs] = view_migration;
    snprintf(url, sizeof(url), "sqlite:%s/view.sqlite", f->dir);
    sk_store_config vc = { .url = url, .migrations = mig, .n_migrations = n_msg + n_cqrs + 1 };
    assert_int_equal(sk_store_open(&f->view, &vc), SK_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    sk_relay_stop(f->relay);
    sk_store_close(f->source);
    sk_store_close(f->view);
    sk_bus_close(f->bus);
    sk_test_nats_stop(f->nats);
    sk_metrics_destroy(f->metrics);
    sk_test_rmrf(f->dir);
    sk_free(f);
    sk_shutdown();
    return 0;
}

/* ---------------------------------------------------------------- writing events */

typedef struct emit {
    int first;
    int count;
} emit;

static sk_status emit_unit(sk_tx *tx, void *ctx)
{
    emit *e = ctx;

    for (int i = e->first; i < e->first + e->count; i++) {
        char order_id[32];
        sk_envelope env;
        json_t *data;
        sk_status st;

        snprintf(order_id, sizeof(order_id), "order-%d", i);
        sk_envelope_init(&env, "OrderCreated", "order", order_id, NULL);
        data = json_pack("{s:s,s:i}", "order_id", order_id, "total_cents", 100 * i);
        if (data == NULL) {
            return SK_FAIL(SK_ENOMEM, "json_pack");
        }
        st = sk_outbox_add(tx, SUBJECT, &env, data);
        json_decref(data);
        if (st != SK_OK) {
            return st;
        }
    }
    return SK_OK;
}

static void emit_events(fixture *f, int first, int count)
{
    emit e = { .first = first, .count = count };
    assert_int_equal(sk_store_run(f->source, emit_unit, &e), SK_OK);
}

/* ---------------------------------------------------------------- the projection */

static sk_status apply_order_created(sk_tx *tx, const sk_message *m, void *ctx)
{
    fixture *f = ctx;
    const char *order_id = json_string_value(json_object_get(m->json, "order_id"));
    unsigned long long prev;
    sk_status st;

    if (order_id == NULL) {
        return SK_FAIL(SK_EPROTO, "order_id: expected a string");
    }
    {
        const sk_db_value p[] = { SK_DB_TEXT_V(order_id), SK_DB_INT_V((int64_t)m->stream_seq) };
        st =
            sk_tx_exec(tx,
                       "INSERT INTO order_view (order_id, n_applied, stream_seq) VALUES (?, 1, ?)"
                       " ON CONFLICT (order_id) DO UPDATE SET n_applied = order_view.n_applied + 1",
                       p, 2, NULL);
    }
    if (st == SK_OK) {
        atomic_fetch_add(&f->n_applied, 1);
        prev = atomic_load(&f->max_seq);
        while (m->stream_seq > prev &&
               !atomic_compare_exchange_weak(&f->max_seq, &prev, m->stream_seq)) {
        }
    }
    return st;
}

static sk_projection *start_projection(fixture *f)
{
    sk_projection_config cfg = { .name = VIEW,
                                 .stream = STREAM,
                                 .filter_subject = "order.events.>",
                                 .apply = apply_order_created,
                                 .ctx = f };
    sk_projection *p = NULL;

    assert_int_equal(sk_projection_start(&p, f->bus, f->view, f->metrics, &cfg), SK_OK);
    assert_non_null(p);
    return p;
}

/* ---------------------------------------------------------------- reading the view */

typedef struct snapshot {
    int64_t n_rows;
    int64_t sum_applied;
    int64_t max_applied;
    uint64_t checkpoint;
    sk_status checkpoint_st;
} snapshot;

static sk_status snapshot_unit(sk_tx *tx, void *ctx)
{
    snapshot *s = ctx;
    sk_status st;

    st = sk_tx_query_int(tx, "SELECT COUNT(*) FROM order_view", NULL, 0, &s->n_rows);
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT COALESCE(SUM(n_applied), 0) FROM order_view", NULL, 0,
                             &s->sum_applied);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT COALESCE(MAX(n_applied), 0) FROM order_view", NULL, 0,
                             &s->max_applied);
    }
    if (st == SK_OK) {
        s->checkpoint_st = sk_projection_checkpoint_get(tx, VIEW, STREAM, &s->checkpoint);
    }
    return st;
}

static snapshot take_snapshot(fixture *f)
{
    snapshot s;

    memset(&s, 0, sizeof(s));
    assert_int_equal(sk_store_read(f->view, snapshot_unit, &s), SK_OK);
    return s;
}

typedef struct want {
    fixture *f;
    int64_t n_rows;
    uint64_t checkpoint;
} want;

static bool view_reached(void *ctx)
{
    want *w = ctx;
    snapshot s;

    memset(&s, 0, sizeof(s));
    if (sk_store_read(w->f->view, snapshot_unit, &s) != SK_OK) {
        return false;
    }
    return s.n_rows >= w->n_rows && s.checkpoint_st == SK_OK && s.checkpoint >= w->checkpoint;
}

static void wait_view(fixture *f, int64_t n_rows, uint64_t checkpoint)
{
    want w = { .f = f, .n_rows = n_rows, .checkpoint = checkpoint };

    if (!sk_test_wait_until(view_reached, &w, 30000)) {
        snapshot s = take_snapshot(f);
        fail_msg("view: %lld rows, checkpoint %llu (%s); want %lld rows, checkpoint %llu",
                 (long long)s.n_rows, (unsigned long long)s.checkpoint,
                 sk_status_name(s.checkpoint_st), (long long)n_rows,
                 (unsigned long long)checkpoint);
    }
}

/* ---------------------------------------------------------------- tests */

static void test_projection_applies_once_checkpoints_and_resumes(void **state)
{
    fixture *f = *state;
    sk_projection *p;
    snapshot s;
    sk_buf out;

    /* Nothing applied yet. */
    s = take_snapshot(f);
    assert_int_equal(s.checkpoint_st, SK_ENOTFOUND);

    /* Events published before the projection starts are all applied, once. */
    emit_events(f, 1, 10);
    p = start_projection(f);
    wait_view(f, 10, 10);
    s = take_snapshot(f);
    assert_int_equal(s.n_rows, 10);
    assert_int_equal(s.sum_applied, 10);
    assert_int_equal(s.max_applied, 1);
    /* The stream holds only these events: the checkpoint is the last stream sequence. */
    assert_int_equal(s.checkpoint, 10);
    assert_int_equal(atomic_load(&f->max_seq), 10);
    assert_int_equal(atomic_load(&f->n_applied), 10);

    /* Events published while running. */
    emit_events(f, 11, 5);
    wait_view(f, 15, 15);

    /* Stop, publish while stopped, restart: resumes after the checkpoint, nothing re-applied. */
    sk_projection_stop(p);
    emit_events(f, 16, 7);
    p = start_projection(f);
    wait_view(f, 22, 22);
    s = take_snapshot(f);
    assert_int_equal(s.n_rows, 22);
    assert_int_equal(s.sum_applied, 22);
    assert_int_equal(s.max_applied, 1);
    assert_int_equal(s.checkpoint, 22);
    assert_int_equal(atomic_load(&f->n_applied), 22);

    /* A restart with nothing new applies nothing. */
    sk_projection_stop(p);
    p = start_projection(f);
    emit_events(f, 23, 1);
    wait_view(f, 23, 23);
    sk_projection_stop(p);
    s = take_snapshot(f);
    assert_int_equal(s.sum_applied, 23);
    assert_int_equal(atomic_load(&f->n_applied), 23);

    sk_buf_init(&out, 1u << 20);
    assert_int_equal(sk_metrics_render(f->metrics, &out), SK_OK);
    assert_non_null(strstr(out.data, "sk_projection_events_applied_total{projection=\"orderview\","
                                     "stream=\"ORDER_EVENTS\"} 23"));
    sk_buf_fini(&out);
}

/* ---------------------------------------------------------------- upcasting */

/* OrderCreated v1 -> v2: total_cents becomes {amount_cents, currency}. */
static sk_status order_created_v1_to_v2(json_t *data, const sk_envelope *env, void *ctx)
{
    json_t *total = json_object_get(data, "total_cents");

    (void)env;
    (void)ctx;
    if (!json_is_integer(total)) {
        return SK_FAIL(SK_EPROTO, "total_cents: expected an integer");
    }
    if (json_object_set_new(data, "total", json_pack("{s:O,s:s}", "amount_cents", total,
                                                     "currency", "EUR")) != 0 ||
        json_object_del(data, "total_cents") != 0) {
        return SK_FAIL(SK_ENOMEM, "upcasting OrderCreated");
    }
    return SK_OK;
}

/* A v2 reader: refuses anything but the current shape. */
static sk_status apply_order_created_v2(sk_tx *tx, const sk_message *m, void *ctx)
{
    const json_t *total = json_object_get(m->json, "total");

    if (m->env.schema_version != 2 || !json_is_object(total) ||
        json_object_get(m->json, "total_cents") != NULL) {
        return SK_FAIL(SK_EPROTO, "expected OrderCreated v2, got v%d", m->env.schema_version);
    }
    return apply_order_created(tx, m, ctx);
}

static void test_projection_sees_old_events_upcast(void **state)
{
    fixture *f = *state;
    sk_upcasters *u = NULL;
    sk_projection *p = NULL;

    assert_int_equal(sk_upcasters_create(&u), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "OrderCreated", 1, order_created_v1_to_v2, NULL),
                     SK_OK);
    /* The writer still emits v1 (sk_envelope_init's version). */
    emit_events(f, 1, 5);
    sk_projection_config cfg = { .name = VIEW,
                                 .stream = STREAM,
                                 .filter_subject = "order.events.>",
                                 .apply = apply_order_created_v2,
                                 .ctx = f,
                                 .upcasters = u };
    assert_int_equal(sk_projection_start(&p, f->bus, f->view, f->metrics, &cfg), SK_OK);
    wait_view(f, 5, 5);
    emit_events(f, 6, 3);
    wait_view(f, 8, 8);
    sk_projection_stop(p);
    assert_int_equal(atomic_load(&f->n_applied), 8);
    sk_upcasters_destroy(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_projection_applies_once_checkpoints_and_resumes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_projection_sees_old_events_upcast, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
