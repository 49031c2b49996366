/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/saga/participant.c (sk_saga_reply): the outbox row it
 * writes echoes the command's ce-subject and ce-sagastep, goes to its
 * ce-replyto and continues its trace; malformed commands and bad arguments
 * are refused with the field named.
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

#define TRACE "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

typedef struct fx {
    sk_store *store;
    sk_message cmd;
    const char *source;
    const char *reply_type;
    json_t *data;
} fx;

static int setup(void **state)
{
    fx *f = sk_calloc(1, sizeof(*f));
    size_t n_msg = 0;
    const sk_migration *m_msg = sk_msg_migrations(&n_msg);

    assert_non_null(f);
    sk_store_config cfg = { .url = "sqlite::memory:", .migrations = m_msg, .n_migrations = n_msg };
    assert_int_equal(sk_store_open(&f->store, &cfg), SK_OK);
    sk_envelope_init(&f->cmd.env, "ReserveStock", "/skald/order", "order-42", TRACE);
    f->cmd.env.saga_step = 5;
    f->cmd.env.reply_to = "order.replies.CreateOrderSaga";
    f->cmd.nats_subject = "inventory.commands.ReserveStock";
    f->source = "/skald/inventory";
    f->reply_type = "StockReserved";
    f->data = json_pack("{s:i}", "price", 1999);
    assert_non_null(f->data);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sk_store_close(f->store);
    json_decref(f->data);
    sk_free(f);
    return 0;
}

static sk_status reply_uow(sk_tx *tx, void *ctx)
{
    fx *f = ctx;
    return sk_saga_reply(tx, &f->cmd, f->source, f->reply_type, f->data);
}

typedef struct ob_read {
    int64_t count;
    char subject[128];
    json_t *headers;
    char data[256];
} ob_read;

static sk_status ob_uow(sk_tx *tx, void *ctx)
{
    ob_read *r = ctx;
    sk_rows *rows = NULL;
    sk_status st = sk_tx_query_int(tx, "SELECT COUNT(*) FROM sk_outbox", NULL, 0, &r->count);
    if (st != SK_OK || r->count == 0) {
        return st;
    }
    st = sk_tx_query(tx, "SELECT subject, headers, data FROM sk_outbox ORDER BY seq DESC LIMIT 1",
                     NULL, 0, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_OK) {
        size_t len = 0;
        const char *h;
        snprintf(r->subject, sizeof(r->subject), "%s", sk_rows_text(rows, 0, NULL));
        h = sk_rows_text(rows, 1, &len);
        st = sk_json_parse_object((sk_slice){ (const uint8_t *)h, len }, &r->headers);
        snprintf(r->data, sizeof(r->data), "%s", sk_rows_text(rows, 2, NULL));
    }
    sk_rows_close(rows);
    return st;
}

static const char *hdr(const ob_read *r, const char *name)
{
    const char *v = json_string_value(json_object_get(r->headers, name));
    return v != NULL ? v : "";
}

static void test_sk_saga_reply_ok(void **state)
{
    fx *f = *state;
    ob_read r;

    memset(&r, 0, sizeof(r));
    assert_int_equal(sk_store_run(f->store, reply_uow, f), SK_OK);
    assert_int_equal(sk_store_read(f->store, ob_uow, &r), SK_OK);
    assert_int_equal(r.count, 1);
    assert_string_equal(r.subject, "order.replies.CreateOrderSaga");
    assert_string_equal(hdr(&r, "ce-type"), "StockReserved");
    assert_string_equal(hdr(&r, "ce-source"), "/skald/inventory");
    assert_string_equal(hdr(&r, "ce-subject"), "order-42");
    assert_string_equal(hdr(&r, "ce-sagastep"), "5");
    /* A reply is not a command: it has no reply address of its own. */
    assert_string_equal(hdr(&r, "ce-replyto"), "");
    /* Same trace as the command, new span. */
    assert_memory_equal(hdr(&r, "traceparent"), f->cmd.env.traceparent, 36);
    assert_string_not_equal(hdr(&r, "traceparent"), f->cmd.env.traceparent);
    assert_string_equal(r.data, "{\"price\":1999}");
    json_decref(r.headers);
}

static void test_sk_saga_reply_step_zero_ok(void **state)
{
    fx *f = *state;
    ob_read r;

    memset(&r, 0, sizeof(r));
    f->cmd.env.saga_step = 0;
    assert_int_equal(sk_store_run(f->store, reply_uow, f), SK_OK);
    assert_int_equal(sk_store_read(f->store, ob_uow, &r), SK_OK);
    assert_string_equal(hdr(&r, "ce-sagastep"), "0");
    json_decref(r.headers);
}

static void test_sk_saga_reply_not_a_saga_command(void **state)
{
    fx *f = *state;

    f->cmd.env.reply_to = NULL;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EPROTO,
                       "command ReserveStock has no ce-replyto");
    f->cmd.env.reply_to = "";
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EPROTO, "ce-replyto");
    f->cmd.env.reply_to = "order.replies.X";
    f->cmd.env.saga_step = -1;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EPROTO, "has no ce-sagastep");
    f->cmd.env.saga_step = 1;
    f->cmd.env.subject = NULL;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EPROTO, "has no ce-subject");
    f->cmd.env.subject = "x";
    f->cmd.env.reply_to = "order.replies.*";
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EINVAL, "StockReserved to");
}

static void test_sk_saga_reply_invalid_args(void **state)
{
    fx *f = *state;
    char long_attr[SK_ENVELOPE_MAX_ATTR + 2];

    memset(long_attr, 'a', sizeof(long_attr) - 1);
    long_attr[sizeof(long_attr) - 1] = '\0';
    SK_TEST_ASSERT_ERR(sk_saga_reply(NULL, &f->cmd, "/s", "T", f->data), SK_EINVAL,
                       "tx must not be NULL");
    SK_TEST_ASSERT_ERR(sk_saga_reply((sk_tx *)1, NULL, "/s", "T", f->data), SK_EINVAL,
                       "command must not be NULL");
    f->source = NULL;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EINVAL, "source must be 1..256");
    f->source = "";
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EINVAL, "source");
    f->source = long_attr;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EINVAL, "source");
    f->source = "/s";
    f->reply_type = NULL;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EINVAL, "reply_type must be");
    f->reply_type = "";
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EINVAL, "reply_type");
    f->reply_type = long_attr;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EINVAL, "reply_type");
    f->reply_type = "T";
    json_decref(f->data);
    f->data = json_array();
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EINVAL, "data must be a JSON");
    json_decref(f->data);
    f->data = NULL;
    SK_TEST_ASSERT_ERR(sk_store_run(f->store, reply_uow, f), SK_EINVAL, "data");
}

static void test_sk_saga_reply_every_alloc_failure(void **state)
{
    fx *f = *state;
    int64_t expected = 0;
    int n_ok = 0;

    for (long n = 0; n < 100; n++) {
        ob_read r;
        memset(&r, 0, sizeof(r));
        sk_test_fail_alloc_at(n);
        sk_status st = sk_store_run(f->store, reply_uow, f);
        sk_test_fail_alloc_at(-1);
        assert_int_not_equal(st, SK_EINTERNAL);
        if (st == SK_OK) {
            expected++;
            n_ok++;
        }
        assert_int_equal(sk_store_read(f->store, ob_uow, &r), SK_OK);
        json_decref(r.headers);
        assert_int_equal(r.count, expected);
    }
    assert_true(n_ok > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sk_saga_reply_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_reply_step_zero_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_reply_not_a_saga_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_reply_invalid_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_saga_reply_every_alloc_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
