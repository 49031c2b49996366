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
    assert_int_equal(n, 1);
    assert_string_equal(m[0].component, "sk_msg");
    assert_int_equal(m[0].version, 1);
    assert_non_null(strstr(m[0].sql, "sk_outbox"));
    assert_non_null(strstr(m[0].sql, "sk_inbox"));
    assert_non_null(strstr(m[0].sql, "sk_dead_letters"));
    assert_non_null(sk_msg_migrations(NULL));
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
