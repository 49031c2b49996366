/* SPDX-License-Identifier: MIT */
/* Unit tests for src/msg/relay.c: argument checks, and an idle start/stop against a bus that
 * is not connected, the reply subjects it reads acknowledgements from (publishing itself is
 * covered by tests/integration/test_msg_relay.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "msg/msg_int.h"
#include "sk_test.h"

static void test_relay_start_invalid_args(void **state)
{
    sk_relay *r = (sk_relay *)1;
    (void)state;

    SK_TEST_ASSERT_ERR(sk_relay_start(NULL, (sk_store *)1, (sk_bus *)1, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_relay_start(&r, NULL, (sk_bus *)1, NULL), SK_EINVAL, "store and bus");
    assert_null(r);
    SK_TEST_ASSERT_ERR(sk_relay_start(&r, (sk_store *)1, NULL, NULL), SK_EINVAL, "store and bus");
    sk_relay_stop(NULL);
    assert_int_equal(sk_relay_published(NULL), 0);
}

static void test_relay_reply_parse(void **state)
{
    const char *prefix = "_INBOX.svc-1.0011223344556677.";
    uint64_t round = 0;
    size_t row = 0;
    (void)state;

    assert_true(sk__relay_reply_parse("_INBOX.svc-1.0011223344556677.12.0", prefix, &round, &row));
    assert_int_equal(round, 12);
    assert_int_equal(row, 0);
    assert_true(sk__relay_reply_parse("_INBOX.svc-1.0011223344556677.18446744073709551615.4095",
                                      prefix, &round, &row));
    assert_true(round == UINT64_MAX);
    assert_int_equal(row, 4095);
    /* Anything but "<digits>.<digits>" after the prefix, or another prefix, is not ours. */
    static const char *const junk[] = {
        "_INBOX.svc-1.0011223344556677.12.",
        "_INBOX.svc-1.0011223344556677..3",
        "_INBOX.svc-1.0011223344556677.12",
        "_INBOX.svc-1.0011223344556677.+1.3",
        "_INBOX.svc-1.0011223344556677. 1.3",
        "_INBOX.svc-1.0011223344556677.1.-3",
        "_INBOX.svc-1.0011223344556677.1.3.4",
        "_INBOX.svc-1.0011223344556677.1.3x",
        "_INBOX.svc-1.0011223344556677.18446744073709551616.1",
        "_INBOX.svc-1.9911223344556677.1.3",
        "_INBOX.svc-1.0011223344556677",
        "",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        round = 7;
        row = 7;
        assert_false(sk__relay_reply_parse(junk[i], prefix, &round, &row));
        assert_true(round == 7 && row == 7); /* untouched */
    }
    assert_false(sk__relay_reply_parse(NULL, prefix, &round, &row));
    assert_false(sk__relay_reply_parse("_INBOX.x.1.2", NULL, &round, &row));
}

static void test_relay_idle_start_stop(void **state)
{
    size_t n = 0;
    const sk_migration *m = sk_msg_migrations(&n);
    sk_store_config cfg = { .url = "sqlite::memory:", .migrations = m, .n_migrations = n };
    sk_store *store = NULL;
    sk_bus *bus = NULL;
    sk_relay *relay = NULL;
    char url[64];
    (void)state;

    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", sk_test_free_port());
    sk_bus_config bc = { .servers = url };
    assert_int_equal(sk_bus_open(&bus, &bc), SK_OK);
    assert_int_equal(sk_store_open(&store, &cfg), SK_OK);
    assert_int_equal(sk_relay_start(&relay, store, bus, NULL), SK_OK);
    assert_int_equal(sk_relay_published(relay), 0);
    sk_relay_stop(relay);
    sk_store_close(store);
    sk_bus_close(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_start_invalid_args),
        cmocka_unit_test(test_relay_reply_parse),
        cmocka_unit_test(test_relay_idle_start_stop),
    };
    int rc;

    if (sk_init("test") != SK_OK || nats_Open(-1) != NATS_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_CloseAndWait(5000);
    sk_shutdown();
    return rc;
}
