/* SPDX-License-Identifier: MIT */
/* Unit tests for src/msg/outbox.c on an in-memory SQLite store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"

typedef struct add_case {
    const char *subject;
    const sk_envelope *env;
    const json_t *data;
    sk_tx *null_tx;
} add_case;

static sk_status add_one(sk_tx *tx, void *ctx)
{
    add_case *c = ctx;
    return sk_outbox_add(c->null_tx != NULL ? NULL : tx, c->subject, c->env, c->data);
}

typedef struct row {
    char subject[64], msg_id[64], headers[1024], data[256];
    int64_t n;
} row;

static sk_status read_row(sk_tx *tx, void *ctx)
{
    row *r = ctx;
    sk_rows *rows = NULL;
    sk_status st = sk_tx_query(tx, "SELECT subject, msg_id, headers, data, created_ms FROM sk_outbox",
                               NULL, 0, &rows);
    if (st != SK_OK) {
        return st;
    }
    r->n = 0;
    while ((st = sk_rows_next(rows)) == SK_OK) {
        size_t len = 0;
        const char *d;
        snprintf(r->subject, sizeof(r->subject), "%s", sk_rows_text(rows, 0, NULL));
        snprintf(r->msg_id, sizeof(r->msg_id), "%s", sk_rows_text(rows, 1, NULL));
        snprintf(r->headers, sizeof(r->headers), "%s", sk_rows_text(rows, 2, NULL));
        d = sk_rows_text(rows, 3, &len);
        snprintf(r->data, sizeof(r->data), "%.*s", (int)len, d);
        assert_true(sk_rows_int(rows, 4) > 0);
        r->n++;
    }
    sk_rows_close(rows);
    return st == SK_ENOTFOUND ? SK_OK : st;
}

static int setup(void **state)
{
    size_t n = 0;
    const sk_migration *m = sk_msg_migrations(&n);
    sk_store_config cfg = { .url = "sqlite::memory:", .migrations = m, .n_migrations = n };
    sk_store *store = NULL;
    assert_int_equal(sk_store_open(&store, &cfg), SK_OK);
    *state = store;
    return 0;
}

static int teardown(void **state)
{
    sk_store_close(*state);
    return 0;
}

static void test_msg_migrations(void **state)
{
    size_t n = 0;
    const sk_migration *m = sk_msg_migrations(&n);
    (void)state;
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(m[i].component, "sk_msg");
        assert_int_equal(m[i].version, (int)i + 1);
    }
    assert_non_null(strstr(m[0].sql, "sk_outbox"));
    assert_non_null(strstr(m[0].sql, "sk_inbox"));
    assert_non_null(strstr(m[0].sql, "sk_dead_letters"));
    assert_non_null(sk_msg_migrations(NULL));
}

static sk_status inbox_fill(sk_tx *tx, void *ctx)
{
    (void)ctx;
    return sk_tx_exec(tx,
                      "INSERT INTO sk_inbox (consumer, msg_id, processed_ms) VALUES "
                      "('c1', 'm1', 1), ('c1', 'm2', 2), ('c2', 'm1', 3)",
                      NULL, 0, NULL);
}

typedef struct inbox_check {
    int64_t n_rows, sum_ms, n_dup_changes;
    sk_status rowid_st;
} inbox_check;

static sk_status inbox_read(sk_tx *tx, void *ctx)
{
    inbox_check *c = ctx;
    sk_status st = sk_tx_query_int(tx, "SELECT COUNT(*) FROM sk_inbox", NULL, 0, &c->n_rows);
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT SUM(processed_ms) FROM sk_inbox", NULL, 0, &c->sum_ms);
    }
    if (st == SK_OK) {
        /* The consumer's insert (consumer.c inbox_insert) still finds a duplicate. */
        st = sk_tx_exec(tx,
                        "INSERT INTO sk_inbox (consumer, msg_id, processed_ms) VALUES ('c1', 'm2', 9) "
                        "ON CONFLICT DO NOTHING",
                        NULL, 0, &c->n_dup_changes);
    }
    if (st == SK_OK) {
        /* A WITHOUT ROWID table has no rowid column. */
        int64_t rowid = 0;
        c->rowid_st = sk_tx_query_int(tx, "SELECT rowid FROM sk_inbox LIMIT 1", NULL, 0, &rowid);
    }
    return st;
}

/* A database made before sk_msg v2 keeps its inbox rows in the WITHOUT ROWID table. */
static void test_msg_migration_2_keeps_the_inbox(void **state)
{
    size_t n = 0;
    const sk_migration *m = sk_msg_migrations(&n);
    char dir[64], url[128];
    sk_store *store = NULL;
    inbox_check c = { 0 };
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/db.sqlite", dir);
    sk_store_config v1 = { .url = url, .migrations = m, .n_migrations = 1 };
    assert_int_equal(sk_store_open(&store, &v1), SK_OK);
    assert_int_equal(sk_store_run(store, inbox_fill, NULL), SK_OK);
    sk_store_close(store);

    sk_store_config v2 = { .url = url, .migrations = m, .n_migrations = n };
    assert_int_equal(sk_store_open(&store, &v2), SK_OK);
    assert_int_equal(sk_store_run(store, inbox_read, &c), SK_OK);
    assert_int_equal(c.n_rows, 3);
    assert_int_equal(c.sum_ms, 6);
    assert_int_equal(c.n_dup_changes, 0);
    assert_int_not_equal(c.rowid_st, SK_OK);
    sk_store_close(store);
    sk_test_rmrf(dir);
}

static void test_outbox_add_success(void **state)
{
    sk_store *store = *state;
    sk_envelope env;
    json_t *data = json_pack("{s:i}", "n", 42);
    row r;

    sk_envelope_init(&env, "OrderCreated", "order", "o-1", NULL);
    add_case c = { .subject = "order.events.OrderCreated", .env = &env, .data = data };
    assert_int_equal(sk_store_run(store, add_one, &c), SK_OK);
    assert_int_equal(sk_store_read(store, read_row, &r), SK_OK);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.subject, "order.events.OrderCreated");
    assert_string_equal(r.msg_id, env.id);
    assert_string_equal(r.data, "{\"n\":42}");
    {
        sk__envelope_buf buf;
        sk_envelope back;
        assert_int_equal(sk__envelope_from_json(sk_slice_from_str(r.headers), &back, &buf), SK_OK);
        assert_string_equal(back.id, env.id);
    }
    json_decref(data);
}

static void test_outbox_add_errors(void **state)
{
    sk_store *store = *state;
    sk_envelope env;
    json_t *data = json_object();
    json_t *arr = json_array();
    (void)state;

    sk_envelope_init(&env, "T", "S", "X", NULL);
    add_case c = { .subject = "a.b", .env = &env, .data = data, .null_tx = (sk_tx *)1 };
    SK_TEST_ASSERT_ERR(sk_store_run(store, add_one, &c), SK_EINVAL, "tx, env and data");
    c.null_tx = NULL;
    c.env = NULL;
    SK_TEST_ASSERT_ERR(sk_store_run(store, add_one, &c), SK_EINVAL, "tx, env and data");
    c.env = &env;
    c.subject = "a.*";
    SK_TEST_ASSERT_ERR(sk_store_run(store, add_one, &c), SK_EINVAL, "nats_subject");
    c.subject = NULL;
    SK_TEST_ASSERT_ERR(sk_store_run(store, add_one, &c), SK_EINVAL, "nats_subject");
    c.subject = "a.b";
    c.data = arr;
    SK_TEST_ASSERT_ERR(sk_store_run(store, add_one, &c), SK_EINVAL, "JSON object");
    c.data = data;
    env.type = "";
    SK_TEST_ASSERT_ERR(sk_store_run(store, add_one, &c), SK_EINVAL, "type");
    json_decref(data);
    json_decref(arr);
}

static void test_outbox_add_payload_limit(void **state)
{
    sk_store *store = *state;
    size_t n = SK_MAX_MSG_PAYLOAD - 8; /* {"p":""} is 8 bytes: exactly the maximum */
    char *big = sk_malloc(n + 2);
    sk_envelope env;
    json_t *data;

    memset(big, 'x', n + 1);
    big[n] = '\0';
    data = json_pack("{s:s}", "p", big);
    sk_envelope_init(&env, "T", "S", "X", NULL);
    add_case c = { .subject = "a.b", .env = &env, .data = data };
    assert_int_equal(sk_store_run(store, add_one, &c), SK_OK);
    json_decref(data);
    big[n] = 'x';
    big[n + 1] = '\0';
    data = json_pack("{s:s}", "p", big);
    c.data = data;
    SK_TEST_ASSERT_ERR(sk_store_run(store, add_one, &c), SK_ELIMIT, "over the limit");
    json_decref(data);
    sk_free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_migrations),
        cmocka_unit_test(test_msg_migration_2_keeps_the_inbox),
        cmocka_unit_test_setup_teardown(test_outbox_add_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_add_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_add_payload_limit, setup, teardown),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    sk_shutdown();
    return rc;
}
