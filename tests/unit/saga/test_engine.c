/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/saga/engine.c: creation, registration and validation of
 * definitions, naming of reply consumers, start/stop without a bus, and the
 * deadline scanner (one scan driven by hand, and the scanner thread
 * recovering an instance whose deadline passed) on an in-memory store.
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

#define T0 1700000000000LL

typedef struct fx {
    sk_store *store;
    sk_saga_engine *e;
    _Atomic int64_t now_ms;
    _Atomic int n_failed;
} fx;

static const sk_saga_step good_steps[] = {
    {
        .name = "reserve",
        .command_subject = "inventory.commands.ReserveStock",
        .command_type = "ReserveStock",
        .compensation_subject = "inventory.commands.ReleaseReservation",
        .compensation_type = "ReleaseReservation",
        .deadline_ms = 500,
    },
    {
        .name = "commit",
        .command_subject = "inventory.commands.CommitReservation",
        .command_type = "CommitReservation",
        .is_retried_until_done = true,
    },
};

static sk_status
on_failed(sk_tx *tx, const char *saga_id, const json_t *data, const char *reason, void *ctx)
{
    fx *f = ctx;
    (void)tx;
    (void)saga_id;
    (void)data;
    (void)reason;
    if (f != NULL) {
        f->n_failed++;
    }
    return SK_OK;
}

static sk_saga_def good_def(void)
{
    sk_saga_def d = {
        .type = "ReserveSaga",
        .version = 1,
        .reply_subject = "order.replies.ReserveSaga",
        .steps = good_steps,
        .n_steps = 2,
        .on_failed = on_failed,
    };
    return d;
}

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
    assert_int_equal(sk_saga_engine_create(&f->e, f->store, NULL, NULL, "/skald/order", "ORDER_R"),
                     SK_OK);
    f->now_ms = T0;
    sk__saga_engine_set_clock(f->e, fx_clock, f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sk_saga_engine_destroy(f->e);
    sk_store_close(f->store);
    sk_free(f);
    return 0;
}

/* ---------------------------------------------------------------- create */

static void test_sk_saga_engine_create_ok_and_destroy(void **state)
{
    fx *f = *state;
    sk_saga_engine *e = NULL;
    sk_metrics *m = NULL;

    assert_int_equal(sk_metrics_create(&m), SK_OK);
    assert_int_equal(sk_saga_engine_create(&e, f->store, NULL, m, "/skald/order", "ORDER_REPLIES"),
                     SK_OK);
    assert_non_null(e);
    assert_string_equal(e->durable_base, "order-saga-replies");
    sk_saga_engine_destroy(e);
    sk_metrics_destroy(m);
    sk_saga_engine_destroy(NULL);
}

static void test_sk_saga_engine_create_invalid(void **state)
{
    fx *f = *state;
    sk_saga_engine *e = (sk_saga_engine *)1;
    char long_name[300];

    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    SK_TEST_ASSERT_ERR(sk_saga_engine_create(NULL, f->store, NULL, NULL, "/s", "S"), SK_EINVAL,
                       "out must not be NULL");
    SK_TEST_ASSERT_ERR(sk_saga_engine_create(&e, NULL, NULL, NULL, "/s", "S"), SK_EINVAL,
                       "store must not be NULL");
    assert_null(e);
    SK_TEST_ASSERT_ERR(sk_saga_engine_create(&e, f->store, NULL, NULL, NULL, "S"), SK_EINVAL,
                       "source");
    SK_TEST_ASSERT_ERR(sk_saga_engine_create(&e, f->store, NULL, NULL, "", "S"), SK_EINVAL,
                       "source");
    SK_TEST_ASSERT_ERR(sk_saga_engine_create(&e, f->store, NULL, NULL, long_name, "S"), SK_EINVAL,
                       "source must be 1..256");
    SK_TEST_ASSERT_ERR(sk_saga_engine_create(&e, f->store, NULL, NULL, "/s", NULL), SK_EINVAL,
                       "reply_stream");
    SK_TEST_ASSERT_ERR(sk_saga_engine_create(&e, f->store, NULL, NULL, "/s", ""), SK_EINVAL,
                       "reply_stream");
    SK_TEST_ASSERT_ERR(sk_saga_engine_create(&e, f->store, NULL, NULL, "/s", "A.B"), SK_EINVAL,
                       "reply_stream");
    SK_TEST_ASSERT_ERR(sk_saga_engine_create(&e, f->store, NULL, NULL, "/s", "A B"), SK_EINVAL,
                       "reply_stream");
    assert_null(e);
}

static void test_sk_saga_engine_create_every_alloc_failure(void **state)
{
    fx *f = *state;
    sk_metrics *m = NULL;

    assert_int_equal(sk_metrics_create(&m), SK_OK);
    for (long n = 0;; n++) {
        sk_saga_engine *e = NULL;
        sk_test_fail_alloc_at(n);
        sk_status st = sk_saga_engine_create(&e, f->store, NULL, m, "/skald/order", "R");
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_saga_engine_destroy(e);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(e);
        assert_true(n < 1000);
    }
    sk_metrics_destroy(m);
}

/* ---------------------------------------------------------------- register */

static void test_sk_saga_engine_register_ok_find_latest(void **state)
{
    fx *f = *state;
    sk_saga_def v1 = good_def(), v3 = good_def(), v2 = good_def(), other = good_def();

    v3.version = 3;
    v2.version = 2;
    other.type = "OtherSaga";
    assert_int_equal(sk_saga_engine_register(f->e, &v1), SK_OK);
    assert_int_equal(sk_saga_engine_register(f->e, &v3), SK_OK);
    assert_int_equal(sk_saga_engine_register(f->e, &v2), SK_OK);
    assert_int_equal(sk_saga_engine_register(f->e, &other), SK_OK);
    assert_ptr_equal(sk__saga_def_find(f->e, "ReserveSaga", 2), &v2);
    assert_ptr_equal(sk__saga_def_find(f->e, "ReserveSaga", 3), &v3);
    assert_null(sk__saga_def_find(f->e, "ReserveSaga", 4));
    assert_null(sk__saga_def_find(f->e, "Nope", 1));
    assert_ptr_equal(sk__saga_def_latest(f->e, "ReserveSaga"), &v3);
    assert_ptr_equal(sk__saga_def_latest(f->e, "OtherSaga"), &other);
    assert_null(sk__saga_def_latest(f->e, "Nope"));
    SK_TEST_ASSERT_ERR(sk_saga_engine_register(f->e, &v2), SK_EEXIST, "version 2 already");
}

static void test_sk_saga_engine_register_many(void **state)
{
    fx *f = *state;
    sk_saga_def defs[20];

    for (int i = 0; i < 20; i++) {
        defs[i] = good_def();
        defs[i].version = i + 1;
        assert_int_equal(sk_saga_engine_register(f->e, &defs[i]), SK_OK);
    }
    assert_ptr_equal(sk__saga_def_latest(f->e, "ReserveSaga"), &defs[19]);
    assert_ptr_equal(sk__saga_def_find(f->e, "ReserveSaga", 7), &defs[6]);
}

static void test_sk_saga_engine_register_every_alloc_failure(void **state)
{
    fx *f = *state;
    sk_saga_def defs[5];

    for (int i = 0; i < 5; i++) {
        defs[i] = good_def();
        defs[i].version = i + 1;
        for (long n = 0;; n++) {
            sk_test_fail_alloc_at(n);
            sk_status st = sk_saga_engine_register(f->e, &defs[i]);
            sk_test_fail_alloc_at(-1);
            if (st == SK_OK) {
                break;
            }
            SK_TEST_ASSERT_ERR(st, SK_ENOMEM, "registry");
            assert_true(n < 100);
        }
    }
    assert_ptr_equal(sk__saga_def_latest(f->e, "ReserveSaga"), &defs[4]);
}

/* Register @p d and expect EINVAL with @p substr. */
static void expect_invalid(fx *f, const sk_saga_def *d, const char *substr)
{
    SK_TEST_ASSERT_ERR(sk_saga_engine_register(f->e, d), SK_EINVAL, substr);
}

static void test_sk_saga_engine_register_invalid(void **state)
{
    fx *f = *state;
    sk_saga_def d = good_def();
    sk_saga_step s[2];

    SK_TEST_ASSERT_ERR(sk_saga_engine_register(NULL, &d), SK_EINVAL, "e must not be NULL");
    expect_invalid(f, NULL, "definition must not be NULL");

    d = good_def();
    d.type = NULL;
    expect_invalid(f, &d, "type must be 1..128");
    d.type = "";
    expect_invalid(f, &d, "type must be 1..128");
    d.type = "Bad Type";
    expect_invalid(f, &d, "type: expected [A-Za-z0-9_.-]");
    d.type = "Bad\"Type";
    expect_invalid(f, &d, "type: expected");

    d = good_def();
    d.version = 0;
    expect_invalid(f, &d, "version must be >= 1, got 0");

    d = good_def();
    d.reply_subject = NULL;
    expect_invalid(f, &d, "reply_subject must not be NULL");
    d.reply_subject = "order.events.X";
    expect_invalid(f, &d, "expected \"<context>.replies.<name>\"");
    d.reply_subject = "order.replies.";
    expect_invalid(f, &d, "reply_subject");
    d.reply_subject = "order.replies.>";
    expect_invalid(f, &d, "without spaces or wildcards");
    d.reply_subject = "order.replies";
    expect_invalid(f, &d, "<context>.replies.<name>");

    d = good_def();
    d.steps = NULL;
    expect_invalid(f, &d, "expected 1..1000 steps, got 0");
    d = good_def();
    d.n_steps = 0;
    expect_invalid(f, &d, "expected 1..1000 steps");

    d = good_def();
    d.steps = s;
    d.n_steps = 2;
    memcpy(s, good_steps, sizeof(s));
    s[1].name = NULL;
    expect_invalid(f, &d, "steps[1].name");
    memcpy(s, good_steps, sizeof(s));
    s[0].command_subject = NULL;
    expect_invalid(f, &d, "steps[0] (reserve): set exactly one of");
    memcpy(s, good_steps, sizeof(s));
    s[0].local =
        (sk_status(*)(sk_tx *, const char *, json_t *, sk_saga_verdict *, char *, void *))1;
    expect_invalid(f, &d, "set exactly one of");
    memcpy(s, good_steps, sizeof(s));
    s[0].command_type = NULL;
    expect_invalid(f, &d, "steps[0].command_type");
    memcpy(s, good_steps, sizeof(s));
    s[0].command_subject = "a.*.c";
    expect_invalid(f, &d, "steps[0].command_subject");
    memcpy(s, good_steps, sizeof(s));
    s[0].command_subject = "a..c";
    expect_invalid(f, &d, "steps[0].command_subject");
    memcpy(s, good_steps, sizeof(s));
    s[0].compensation_type = NULL;
    expect_invalid(f, &d, "compensation_subject and compensation_type go together");
    memcpy(s, good_steps, sizeof(s));
    s[0].compensation_subject = "has space";
    expect_invalid(f, &d, "steps[0].compensation_subject");
    memcpy(s, good_steps, sizeof(s));
    s[0].compensation_type = "";
    expect_invalid(f, &d, "steps[0].compensation_type");
    memcpy(s, good_steps, sizeof(s));
    s[1].build_compensation = (sk_status(*)(const json_t *, json_t **, void *))1;
    expect_invalid(f, &d, "steps[1].build_compensation set without compensation_subject");
    memcpy(s, good_steps, sizeof(s));
    s[1].deadline_ms = -1;
    expect_invalid(f, &d, "steps[1].deadline_ms must be >= 0, got -1");
    memcpy(s, good_steps, sizeof(s));
    s[1].command_subject = NULL;
    s[1].command_type = NULL;
    s[1].local =
        (sk_status(*)(sk_tx *, const char *, json_t *, sk_saga_verdict *, char *, void *))1;
    expect_invalid(f, &d, "steps[1].is_retried_until_done needs a command step");
    assert_null(sk__saga_def_latest(f->e, "ReserveSaga"));
}

static void test_sk_saga_engine_register_after_start(void **state)
{
    fx *f = *state;
    sk_saga_def d = good_def();

    assert_int_equal(sk_saga_engine_start(f->e), SK_OK);
    SK_TEST_ASSERT_ERR(sk_saga_engine_register(f->e, &d), SK_ESTATE, "has started");
    sk_saga_engine_stop(f->e);
    SK_TEST_ASSERT_ERR(sk_saga_engine_register(f->e, &d), SK_ESTATE, "has started");
}

/* ---------------------------------------------------------------- names */

static void test_sk__saga_reply_token(void **state)
{
    char tok[16];
    (void)state;

    assert_int_equal(sk__saga_reply_token("order.replies.CreateOrderSaga", tok, sizeof(tok)),
                     SK_OK);
    assert_string_equal(tok, "order");
    assert_int_equal(sk__saga_reply_token("o.replies.a.b", tok, sizeof(tok)), SK_OK);
    assert_string_equal(tok, "o");
    SK_TEST_ASSERT_ERR(sk__saga_reply_token("averyveryverylongcontext.replies.X", tok, sizeof(tok)),
                       SK_EINVAL, "first token longer than 15 bytes");
    SK_TEST_ASSERT_ERR(sk__saga_reply_token(".replies.X", tok, sizeof(tok)), SK_EINVAL,
                       "reply_subject");
    SK_TEST_ASSERT_ERR(sk__saga_reply_token("order.replies.X ", tok, sizeof(tok)), SK_EINVAL,
                       "reply_subject");
    SK_TEST_ASSERT_ERR(sk__saga_reply_token("order.replies.X", NULL, 0), SK_EINVAL, "NULL");
    assert_string_equal(tok, "");
}

static void test_sk__saga_durable_base(void **state)
{
    char out[SK__SAGA_MAX_DURABLE + 1];
    char small[8];
    char long_src[200];
    (void)state;

    sk__saga_durable_base("/skald/order", out, sizeof(out));
    assert_string_equal(out, "order-saga-replies");
    sk__saga_durable_base("payment", out, sizeof(out));
    assert_string_equal(out, "payment-saga-replies");
    sk__saga_durable_base("/skald/my.svc x", out, sizeof(out));
    assert_string_equal(out, "my_svc_x-saga-replies");
    sk__saga_durable_base("/skald/", out, sizeof(out));
    assert_string_equal(out, "_skald_-saga-replies");
    sk__saga_durable_base("", out, sizeof(out));
    assert_string_equal(out, "saga-saga-replies");
    memset(long_src, 'x', sizeof(long_src) - 1);
    long_src[sizeof(long_src) - 1] = '\0';
    sk__saga_durable_base(long_src, out, sizeof(out));
    assert_int_equal(strlen(out), 64 + strlen("-saga-replies"));
    /* A buffer too small for the suffix still gets a NUL-terminated string. */
    sk__saga_durable_base("/skald/order", small, sizeof(small));
    assert_true(strlen(small) < sizeof(small));
    sk__saga_durable_base("/x", NULL, 0);
}

/* ---------------------------------------------------------------- start/stop */

static void test_sk_saga_engine_start_stop(void **state)
{
    fx *f = *state;
    sk_saga_def a = good_def(), b = good_def();

    b.type = "PaySaga";
    b.reply_subject = "payment.replies.PaySaga";
    assert_int_equal(sk_saga_engine_register(f->e, &a), SK_OK);
    assert_int_equal(sk_saga_engine_register(f->e, &b), SK_OK);
    assert_int_equal(sk_saga_engine_start(f->e), SK_OK);
    /* Two reply families, each with its own durable. */
    assert_int_equal(f->e->n_families, 2);
    assert_string_equal(f->e->families[0].filter, "order.replies.>");
    assert_string_equal(f->e->families[0].durable, "order-saga-replies-order");
    assert_string_equal(f->e->families[1].filter, "payment.replies.>");
    assert_string_equal(f->e->families[1].durable, "order-saga-replies-payment");
    SK_TEST_ASSERT_ERR(sk_saga_engine_start(f->e), SK_ESTATE, "already started");
    sk_saga_engine_stop(f->e);
    sk_saga_engine_stop(f->e);
    /* It can run again after a stop. */
    assert_int_equal(sk_saga_engine_start(f->e), SK_OK);
    SK_TEST_ASSERT_ERR(sk_saga_engine_start(NULL), SK_EINVAL, "e must not be NULL");
    sk_saga_engine_stop(NULL);
    /* Destroy stops it. */
}

static void test_sk_saga_engine_one_family_durable(void **state)
{
    fx *f = *state;
    sk_saga_def a = good_def(), b = good_def();

    b.type = "CancelSaga";
    b.reply_subject = "order.replies.CancelSaga";
    assert_int_equal(sk_saga_engine_register(f->e, &a), SK_OK);
    assert_int_equal(sk_saga_engine_register(f->e, &b), SK_OK);
    assert_int_equal(sk_saga_engine_start(f->e), SK_OK);
    assert_int_equal(f->e->n_families, 1);
    assert_string_equal(f->e->families[0].durable, "order-saga-replies");
    assert_string_equal(f->e->families[0].filter, "order.replies.>");
}

/* ---------------------------------------------------------------- scanning */

typedef struct start_call {
    fx *f;
    const char *id;
} start_call;

static sk_status start_uow(sk_tx *tx, void *ctx)
{
    start_call *c = ctx;
    json_t *data = json_object();
    sk_status st = sk_saga_start(tx, c->f->e, "ReserveSaga", c->id, data, NULL);
    json_decref(data);
    return st;
}

typedef struct row_call {
    const char *id;
    int64_t state;
    int64_t seq;
} row_call;

static sk_status row_uow(sk_tx *tx, void *ctx)
{
    row_call *c = ctx;
    sk_db_value p[1] = { SK_DB_TEXT_V(c->id) };
    sk_status st = sk_tx_query_int(tx, "SELECT state FROM sk_sagas WHERE id = ?", p, 1, &c->state);
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT seq FROM sk_sagas WHERE id = ?", p, 1, &c->seq);
    }
    return st;
}

static row_call get_row(fx *f, const char *id)
{
    row_call c = { .id = id };
    assert_int_equal(sk_store_read(f->store, row_uow, &c), SK_OK);
    return c;
}

static void test_sk__saga_scan_handles_expired(void **state)
{
    fx *f = *state;
    sk_saga_def d = good_def();
    size_t n = 99;

    d.ctx = f;
    assert_int_equal(sk_saga_engine_register(f->e, &d), SK_OK);
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "s-%d", i);
        start_call c = { f, id };
        f->now_ms = T0 + i * 1000;
        assert_int_equal(sk_store_run(f->store, start_uow, &c), SK_OK);
    }
    /* Deadlines: T0+500, T0+1500, T0+2500. */
    assert_int_equal(sk__saga_scan(f->e, T0 + 500, &n), SK_OK);
    assert_int_equal(n, 0);
    assert_int_equal(sk__saga_scan(f->e, T0 + 1600, &n), SK_OK);
    assert_int_equal(n, 2);
    sk__saga_wait_pending(f->e);
    /* Timed out: compensating with the release in flight (seq 2). */
    assert_int_equal(get_row(f, "s-0").state, SK_SAGA_COMPENSATING);
    assert_int_equal(get_row(f, "s-0").seq, 2);
    assert_int_equal(get_row(f, "s-1").state, SK_SAGA_COMPENSATING);
    assert_int_equal(get_row(f, "s-2").state, SK_SAGA_RUNNING);
    SK_TEST_ASSERT_ERR(sk__saga_scan(NULL, 0, &n), SK_EINVAL, "e must not be NULL");
    assert_int_equal(n, 0);
}

static bool is_seq_2(void *ctx)
{
    row_call r = get_row(ctx, "r-1");
    return r.state == SK_SAGA_COMPENSATING && r.seq == 2;
}

static bool is_seq_3(void *ctx)
{
    row_call r = get_row(ctx, "r-1");
    return r.state == SK_SAGA_COMPENSATING && r.seq == 3;
}

/* The scanner thread recovers an instance whose deadline passed "while down". */
static void test_sk_saga_engine_scanner_thread(void **state)
{
    fx *f = *state;
    sk_saga_def d = good_def();
    start_call c = { f, "r-1" };

    d.ctx = f;
    assert_int_equal(sk_saga_engine_register(f->e, &d), SK_OK);
    assert_int_equal(sk_store_run(f->store, start_uow, &c), SK_OK);
    f->now_ms = T0 + 10000; /* the deadline of T0 + 500 passed */
    assert_int_equal(sk_saga_engine_start(f->e), SK_OK);
    /* TIMEOUT: the release is sent (seq 2) with a deadline of now + 500. */
    assert_true(sk_test_wait_until(is_seq_2, f, 5000));
    /* Unanswered: sent again once that deadline passes too. */
    f->now_ms = T0 + 10501;
    assert_true(sk_test_wait_until(is_seq_3, f, 5000));
    sk_saga_engine_stop(f->e);
    assert_int_equal(f->n_failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_create_ok_and_destroy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_create_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_create_every_alloc_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_register_ok_find_latest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_register_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_register_every_alloc_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_register_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_register_after_start, setup, teardown),
        cmocka_unit_test(test_sk__saga_reply_token),
        cmocka_unit_test(test_sk__saga_durable_base),
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_start_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_one_family_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk__saga_scan_handles_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_engine_scanner_thread, setup, teardown),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
