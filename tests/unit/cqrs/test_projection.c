/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of src/cqrs/projection.c without a NATS server: configuration
 * checks, the consumer handler (apply + checkpoint in one unit of work, the
 * checkpoint never moving back, a failed apply rolling back both) and
 * sk_projection_checkpoint_get, on an in-memory SQLite store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cqrs/cqrs_int.h"
#include "sk_test.h"

static const sk_migration test_migrations[] = {
    { "test_view", 1, "CREATE TABLE view_rows (seq INTEGER PRIMARY KEY, subject TEXT NOT NULL)" },
};

static sk_store *open_store(void)
{
    size_t n = 0;
    const sk_migration *cm = sk_cqrs_migrations(&n);
    sk_migration all[4];
    sk_store_config cfg = { .url = "sqlite::memory:", .migrations = all };
    sk_store *store = NULL;

    memcpy(all, cm, n * sizeof(*cm));
    all[n] = test_migrations[0];
    cfg.n_migrations = n + 1;
    assert_int_equal(sk_store_open(&store, &cfg), SK_OK);
    return store;
}

static int setup(void **state)
{
    (void)state;
    return sk_init("test-cqrs") == SK_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sk_shutdown();
    return 0;
}

typedef struct view {
    int n_applied;
    bool is_failing;
} view;

static sk_status apply_row(sk_tx *tx, const sk_message *m, void *ctx)
{
    view *v = ctx;
    const sk_db_value p[] = { SK_DB_INT_V((int64_t)m->stream_seq), SK_DB_TEXT_V(m->nats_subject) };
    sk_status st;

    if (v->is_failing) {
        return SK_FAIL(SK_EUNAVAILABLE, "read model busy");
    }
    st = sk_tx_exec(tx, "INSERT INTO view_rows (seq, subject) VALUES (?, ?)", p, 2, NULL);
    if (st == SK_OK) {
        v->n_applied++;
    }
    return st;
}

/* ---------------------------------------------------------------- configuration */

static void test_sk_projection_build_validates_config(void **state)
{
    view v = { 0 };
    sk_projection *p = (sk_projection *)1;
    char long_name[80];
    sk_projection_config ok = { .name = "orderview",
                                .stream = "ORDER_EVENTS",
                                .filter_subject = "order.events.>",
                                .apply = apply_row,
                                .ctx = &v };
    sk_projection_config c;

    (void)state;
    memset(long_name, 'n', 65);
    long_name[65] = '\0';
    SK_TEST_ASSERT_ERR(sk__projection_build(&p, NULL, NULL), SK_EINVAL, "cfg");
    assert_null(p);
    c = ok;
    c.name = NULL;
    SK_TEST_ASSERT_ERR(sk__projection_build(&p, NULL, &c), SK_EINVAL, "cfg.name");
    c.name = "";
    SK_TEST_ASSERT_ERR(sk__projection_build(&p, NULL, &c), SK_EINVAL, "cfg.name");
    c.name = "order.view";
    SK_TEST_ASSERT_ERR(sk__projection_build(&p, NULL, &c), SK_EINVAL, "cfg.name");
    c.name = long_name;
    SK_TEST_ASSERT_ERR(sk__projection_build(&p, NULL, &c), SK_EINVAL, "cfg.name");
    c = ok;
    c.stream = "ORDER EVENTS";
    SK_TEST_ASSERT_ERR(sk__projection_build(&p, NULL, &c), SK_EINVAL, "cfg.stream");
    c = ok;
    c.filter_subject = "";
    SK_TEST_ASSERT_ERR(sk__projection_build(&p, NULL, &c), SK_EINVAL, "cfg.filter_subject");
    c = ok;
    c.apply = NULL;
    SK_TEST_ASSERT_ERR(sk__projection_build(&p, NULL, &c), SK_EINVAL, "cfg.apply");

    long_name[64] = '\0'; /* 64 bytes: the maximum */
    c = ok;
    c.name = long_name;
    assert_int_equal(sk__projection_build(&p, NULL, &c), SK_OK);
    sk_projection_stop(p);
    assert_int_equal(sk__projection_build(&p, NULL, &ok), SK_OK);
    assert_string_equal(sk__projection_durable(p), "orderview-order_events");
    sk_projection_stop(p);
    sk_projection_stop(NULL);
}

static void test_sk_projection_start_null_args(void **state)
{
    sk_projection *p = (sk_projection *)1;
    sk_projection_config cfg = {
        .name = "v", .stream = "S", .filter_subject = "s.>", .apply = apply_row
    };

    (void)state;
    SK_TEST_ASSERT_ERR(sk_projection_start(NULL, NULL, NULL, NULL, &cfg), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_projection_start(&p, NULL, NULL, NULL, &cfg), SK_EINVAL, "bus");
    assert_null(p);
}

static void test_sk_projection_build_every_alloc_failure(void **state)
{
    sk_metrics *m = NULL;
    sk_projection_config cfg = {
        .name = "v", .stream = "S", .filter_subject = "s.>", .apply = apply_row
    };

    (void)state;
    assert_int_equal(sk_metrics_create(&m), SK_OK);
    for (long n = 0;; n++) {
        sk_projection *p = NULL;
        sk_status st;

        sk_test_fail_alloc_at(n);
        st = sk__projection_build(&p, m, &cfg);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_projection_stop(p);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(p);
        assert_true(n < 100);
    }
    sk_metrics_destroy(m);
}

/* ---------------------------------------------------------------- handler and checkpoint */

typedef struct deliver {
    sk_projection *p;
    uint64_t seq;
    const char *name;
    const char *stream;
    bool use_null_tx;
    sk_status st;
    char message[512];
    uint64_t checkpoint;
    int64_t n_rows;
} deliver;

static sk_status deliver_unit(sk_tx *tx, void *ctx)
{
    deliver *d = ctx;
    sk_message m;

    memset(&m, 0, sizeof(m));
    m.nats_subject = "order.events.OrderCreated";
    m.stream_seq = d->seq;
    m.n_delivered = 1;
    d->st = sk__projection_handle(tx, &m, d->p);
    snprintf(d->message, sizeof(d->message), "%s", sk_error_message());
    return d->st; /* a failure rolls this unit back, as the consumer does */
}

static sk_status read_unit(sk_tx *tx, void *ctx)
{
    deliver *d = ctx;
    sk_status st;

    d->st = sk_projection_checkpoint_get(d->use_null_tx ? NULL : tx, d->name, d->stream,
                                         &d->checkpoint);
    snprintf(d->message, sizeof(d->message), "%s", sk_error_message());
    st = sk_tx_query_int(tx, "SELECT COUNT(*) FROM view_rows", NULL, 0, &d->n_rows);
    return st;
}

static void read_checkpoint(sk_store *store, deliver *d)
{
    assert_int_equal(sk_store_read(store, read_unit, d), SK_OK);
    if (d->st != SK_OK) {
        SK_IGNORE(SK_FAIL(d->st, "%s", d->message));
    }
}

static void test_sk_projection_handle_applies_and_checkpoints(void **state)
{
    sk_store *store = open_store();
    sk_metrics *metrics = NULL;
    view v = { 0 };
    sk_projection *p = NULL;
    sk_projection_config cfg = { .name = "orderview",
                                 .stream = "ORDER_EVENTS",
                                 .filter_subject = "order.events.>",
                                 .apply = apply_row,
                                 .ctx = &v };
    deliver d;
    sk_buf out;

    (void)state;
    assert_int_equal(sk_metrics_create(&metrics), SK_OK);
    assert_int_equal(sk__projection_build(&p, metrics, &cfg), SK_OK);

    d = (deliver){ .name = "orderview", .stream = "ORDER_EVENTS" };
    read_checkpoint(store, &d);
    SK_TEST_ASSERT_ERR(d.st, SK_ENOTFOUND, "no checkpoint");
    assert_int_equal(d.checkpoint, 0);

    for (uint64_t seq = 1; seq <= 3; seq++) {
        d = (deliver){ .p = p, .seq = seq };
        assert_int_equal(sk_store_run(store, deliver_unit, &d), SK_OK);
    }
    d = (deliver){ .name = "orderview", .stream = "ORDER_EVENTS" };
    read_checkpoint(store, &d);
    assert_int_equal(d.st, SK_OK);
    assert_int_equal(d.checkpoint, 3);
    assert_int_equal(d.n_rows, 3);
    assert_int_equal(v.n_applied, 3);

    /* A failing apply rolls back, and the checkpoint stays. */
    v.is_failing = true;
    d = (deliver){ .p = p, .seq = 4 };
    assert_int_equal(sk_store_run(store, deliver_unit, &d), SK_EUNAVAILABLE);
    assert_non_null(strstr(d.message, "projection orderview: applying stream sequence 4"));
    assert_non_null(strstr(d.message, "read model busy"));
    v.is_failing = false;
    d = (deliver){ .name = "orderview", .stream = "ORDER_EVENTS" };
    read_checkpoint(store, &d);
    assert_int_equal(d.checkpoint, 3);

    /* Out of order (a redelivery after a later event): applied, checkpoint not moved back. */
    d = (deliver){ .p = p, .seq = 9 };
    assert_int_equal(sk_store_run(store, deliver_unit, &d), SK_OK);
    d = (deliver){ .p = p, .seq = 4 };
    assert_int_equal(sk_store_run(store, deliver_unit, &d), SK_OK);
    d = (deliver){ .name = "orderview", .stream = "ORDER_EVENTS" };
    read_checkpoint(store, &d);
    assert_int_equal(d.checkpoint, 9);
    assert_int_equal(d.n_rows, 5);

    /* Checkpoints are per projection and stream. */
    d = (deliver){ .name = "orderview", .stream = "OTHER" };
    read_checkpoint(store, &d);
    assert_int_equal(d.st, SK_ENOTFOUND);

    sk_buf_init(&out, 1u << 20);
    assert_int_equal(sk_metrics_render(metrics, &out), SK_OK);
    assert_non_null(strstr(out.data, "sk_projection_events_applied_total{projection=\"orderview\","
                                     "stream=\"ORDER_EVENTS\"} 5"));
    sk_buf_fini(&out);
    sk_projection_stop(p);
    sk_store_close(store);
    sk_metrics_destroy(metrics);
}

static void test_sk_projection_checkpoint_get_bad_args(void **state)
{
    sk_store *store = open_store();
    uint64_t seq = 7;
    deliver d;

    (void)state;
    SK_TEST_ASSERT_ERR(sk_projection_checkpoint_get(NULL, "v", "S", NULL), SK_EINVAL, "stream_seq");
    SK_TEST_ASSERT_ERR(sk_projection_checkpoint_get(NULL, "v", "S", &seq), SK_EINVAL, "tx");
    assert_int_equal(seq, 0);
    d = (deliver){ .name = "v", .stream = "S", .use_null_tx = true };
    read_checkpoint(store, &d);
    SK_TEST_ASSERT_ERR(d.st, SK_EINVAL, "tx");
    d = (deliver){ .name = "v.x", .stream = "S" };
    read_checkpoint(store, &d);
    SK_TEST_ASSERT_ERR(d.st, SK_EINVAL, "name and stream");
    d = (deliver){ .name = "v", .stream = NULL };
    read_checkpoint(store, &d);
    SK_TEST_ASSERT_ERR(d.st, SK_EINVAL, "name and stream");
    sk_store_close(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_projection_build_validates_config),
        cmocka_unit_test(test_sk_projection_start_null_args),
        cmocka_unit_test(test_sk_projection_build_every_alloc_failure),
        cmocka_unit_test(test_sk_projection_handle_applies_and_checkpoints),
        cmocka_unit_test(test_sk_projection_checkpoint_get_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
