/* SPDX-License-Identifier: MIT */
/* Unit tests for src/msg/consumer.c: backoff and argument checks (the flow is in integration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"

static sk_status handler(sk_tx *tx, const sk_message *m, void *ctx)
{
    (void)tx;
    (void)m;
    (void)ctx;
    return SK_OK;
}

static void test_consumer_backoff_ms(void **state)
{
    (void)state;
    assert_int_equal(sk__consumer_backoff_ms(0), 250);
    assert_int_equal(sk__consumer_backoff_ms(1), 250);
    assert_int_equal(sk__consumer_backoff_ms(2), 500);
    assert_int_equal(sk__consumer_backoff_ms(3), 1000);
    assert_int_equal(sk__consumer_backoff_ms(8), 30000);
    assert_int_equal(sk__consumer_backoff_ms(UINT64_MAX), 30000);
}

/* The inbox cutoff is the time prefix of a UUIDv7: ids made earlier sort below it. */
static void test_inbox_cutoff(void **state)
{
    char cut[14], before[14], after[14], id[SK_UUID_LEN];
    int64_t now = sk_time_now_ms();
    (void)state;

    sk__inbox_cutoff(0x0123456789abLL, cut);
    assert_string_equal(cut, "01234567-89ab");
    sk__inbox_cutoff(-5, cut);
    assert_string_equal(cut, "00000000-0000");
    sk__inbox_cutoff(now - 1000, before);
    sk_uuid7(id);
    sk__inbox_cutoff(now + 1000, after);
    assert_true(strcmp(before, id) < 0);
    assert_true(strcmp(id, after) < 0);
}

static void test_consumer_start_invalid_args(void **state)
{
    /* Never dereferenced: validation comes before any use. */
    sk_bus *bus = (sk_bus *)1;
    sk_store *store = (sk_store *)1;
    sk_consumer *c = (sk_consumer *)1;
    sk_consumer_config cfg = { .stream = "S", .durable = "d", .filter_subject = "a.>",
                               .handler = handler };
    (void)state;

    SK_TEST_ASSERT_ERR(sk_consumer_start(NULL, bus, store, NULL, &cfg), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, NULL, store, NULL, &cfg), SK_EINVAL, "bus");
    assert_null(c);
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, NULL, NULL, &cfg), SK_EINVAL, "store");
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, store, NULL, NULL), SK_EINVAL, "cfg");
    cfg.stream = "a.b";
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, store, NULL, &cfg), SK_EINVAL, "cfg->stream");
    cfg.stream = "S";
    cfg.durable = "";
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, store, NULL, &cfg), SK_EINVAL, "cfg->durable");
    cfg.durable = "d";
    cfg.filter_subject = "a b";
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, store, NULL, &cfg), SK_EINVAL,
                       "cfg->filter_subject");
    cfg.filter_subject = "a.>";
    cfg.handler = NULL;
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, store, NULL, &cfg), SK_EINVAL, "cfg->handler");
    cfg.handler = handler;
    cfg.max_deliver = -1;
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, store, NULL, &cfg), SK_EINVAL, "max_deliver");
    cfg.max_deliver = 1001;
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, store, NULL, &cfg), SK_EINVAL, "max_deliver");
    cfg.max_deliver = 0;
    cfg.ack_wait_ms = -5;
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, store, NULL, &cfg), SK_EINVAL, "ack_wait_ms");
    cfg.ack_wait_ms = 0;
    cfg.batch = 4097;
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, store, NULL, &cfg), SK_EINVAL, "batch");
    cfg.batch = 0;
    cfg.order = (sk_consumer_order)2;
    SK_TEST_ASSERT_ERR(sk_consumer_start(&c, bus, store, NULL, &cfg), SK_EINVAL,
                       "cfg->order: expected 0..1, got 2");
    sk_consumer_stop(NULL);
}

/* Failure logs: one line per source per SK__LOG_INTERVAL_MS, each source on its own clock. */
static void test_log_is_due_paces_each_source(void **state)
{
    int64_t pull = 0, subscribe = 0;
    (void)state;

    assert_true(sk__log_is_due(&pull, 1000)); /* never logged: due */
    assert_int_equal(pull, 1000);
    assert_false(sk__log_is_due(&pull, 1000 + SK__LOG_INTERVAL_MS - 1));
    assert_int_equal(pull, 1000);                  /* a line held back does not restart the clock */
    assert_true(sk__log_is_due(&subscribe, 1001)); /* another source is not held back */
    assert_true(sk__log_is_due(&pull, 1000 + SK__LOG_INTERVAL_MS));
    assert_int_equal(pull, 1000 + SK__LOG_INTERVAL_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consumer_backoff_ms),
        cmocka_unit_test(test_inbox_cutoff),
        cmocka_unit_test(test_consumer_start_invalid_args),
        cmocka_unit_test(test_log_is_due_paces_each_source),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    sk_shutdown();
    return rc;
}
