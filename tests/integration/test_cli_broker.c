/* SPDX-License-Identifier: MIT */
/*
 * Integration test of how `skald bench` counts JetStream messages per order
 * (cli/bench_broker.c) against a real nats-server: the streams of a system,
 * messages published and delivered since a mark, a consumer added after the
 * mark, a stream that does not exist, and calls out of order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sk_test.h"
#include "sk_test_nats.h"

/* Two contexts with streams (order, stock); the gateway has none. */
static const char system_yaml[] = "system: t\n"
                                  "gateway:\n  port: 8080\n  routes: []\n"
                                  "services:\n"
                                  "  gateway:\n    gateway: true\n    database: none\n"
                                  "  order:\n    commands: [CreateOrder]\n"
                                  "  stock:\n    commands: [Reserve]\n";

typedef struct fixture {
    sk_test_nats *nats;
    sk_system *sys;
    natsConnection *nc;
    jsCtx *js;
    cli_broker k; /* the broker under test, closed by the teardown */
} fixture;

static int teardown(void **state);

/*
 * Per test (cmocka runs the teardown even when an assertion fails, so no
 * nats-server outlives a failed test): nats-server with or without the
 * system's streams, a raw connection and its JetStream context. A setup
 * that fails undoes itself: cmocka runs no teardown after it.
 */
static int fixture_start(void **state, bool has_streams)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    sk_status st = SK_OK;

    *state = f;
    if (f == NULL) {
        return -1;
    }
    if (sk_system_parse(sk_slice_from_str(system_yaml), "t.yaml", &f->sys) != SK_OK ||
        sk_test_nats_start(&f->nats, NULL) != SK_OK) {
        st = SK_EINTERNAL;
    }
    if (st == SK_OK && has_streams) {
        sk_bus *bus = NULL;
        sk_bus_config bc = { .servers = sk_test_nats_url(f->nats), .name = "test-cli-broker" };
        st = sk_bus_open(&bus, &bc);
        if (st == SK_OK) {
            st = sk_bus_system_streams_ensure(bus, f->sys);
        }
        sk_bus_close(bus);
    }
    if (st == SK_OK && (natsConnection_ConnectTo(&f->nc, sk_test_nats_url(f->nats)) != NATS_OK ||
                        natsConnection_JetStream(&f->js, f->nc, NULL) != NATS_OK)) {
        st = SK_EBUS;
    }
    if (st != SK_OK) {
        fprintf(stderr, "test_cli_broker: setup: %s\n", sk_error_message());
        teardown(state);
        *state = NULL;
        return -1;
    }
    return 0;
}

static int setup_with_streams(void **state)
{
    return fixture_start(state, true);
}

static int setup_without_streams(void **state)
{
    return fixture_start(state, false);
}

static int teardown(void **state)
{
    fixture *f = *state;

    if (f != NULL) {
        cli_broker_close(&f->k);
        jsCtx_Destroy(f->js);
        natsConnection_Destroy(f->nc);
        sk_test_nats_stop(f->nats);
        sk_system_destroy(f->sys);
        sk_free(f);
    }
    return 0;
}

static void add_consumer(fixture *f, const char *stream, const char *durable, const char *filter)
{
    jsConsumerConfig cc;
    jsErrCode jerr = 0;

    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.AckPolicy = js_AckExplicit;
    cc.FilterSubject = filter;
    assert_int_equal(js_AddConsumer(NULL, f->js, stream, &cc, NULL, &jerr), NATS_OK);
}

static void publish(fixture *f, const char *subject, int n)
{
    for (int i = 0; i < n; i++) {
        jsErrCode jerr = 0;
        assert_int_equal(js_Publish(NULL, f->js, subject, "{}", 2, NULL, &jerr), NATS_OK);
    }
}

static void test_cli_broker_lists_the_systems_streams(void **state)
{
    static const char *const want[] = { "ORDER_EVENTS", "ORDER_COMMANDS", "ORDER_REPLIES",
                                        "STOCK_EVENTS", "STOCK_COMMANDS", "STOCK_REPLIES" };
    fixture *f = *state;

    assert_int_equal(cli_broker_open(&f->k, f->nc, f->sys), SK_OK);
    assert_int_equal(f->k.n_streams, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(f->k.streams[i].name, want[i]);
    }
    cli_broker_close(&f->k);
    cli_broker_close(&f->k); /* idempotent */
}

static void test_cli_broker_counts_since_the_mark(void **state)
{
    fixture *f = *state;
    uint64_t published = 1, delivered = 1;

    add_consumer(f, "ORDER_EVENTS", "view-1", "order.events.>");
    add_consumer(f, "ORDER_EVENTS", "view-2", "order.events.>");
    add_consumer(f, "STOCK_COMMANDS", "stock", "stock.commands.>");
    publish(f, "order.events.Before", 4); /* before the mark: not counted */
    assert_int_equal(cli_broker_open(&f->k, f->nc, f->sys), SK_OK);
    assert_int_equal(cli_broker_mark(&f->k), SK_OK);
    assert_int_equal(cli_broker_since(&f->k, &published, &delivered), SK_OK);
    assert_int_equal(published, 0);
    assert_int_equal(delivered, 0);

    publish(f, "order.events.Happened", 3);  /* 2 consumers */
    publish(f, "stock.commands.Reserve", 2); /* 1 consumer */
    publish(f, "order.replies.Saga", 1);     /* no consumer: stored, never delivered */
    assert_int_equal(cli_broker_since(&f->k, &published, &delivered), SK_OK);
    assert_int_equal(published, 6);
    assert_int_equal(delivered, 3 * 2 + 2 * 1);

    /* A new mark starts again from here. */
    assert_int_equal(cli_broker_mark(&f->k), SK_OK);
    publish(f, "stock.commands.Reserve", 1);
    assert_int_equal(cli_broker_since(&f->k, &published, &delivered), SK_OK);
    assert_int_equal(published, 1);
    assert_int_equal(delivered, 1);
}

static void test_cli_broker_consumer_added_after_the_mark(void **state)
{
    fixture *f = *state;
    uint64_t published = 1, delivered = 1;

    add_consumer(f, "ORDER_EVENTS", "view-1", "order.events.>");
    assert_int_equal(cli_broker_open(&f->k, f->nc, f->sys), SK_OK);
    assert_int_equal(cli_broker_mark(&f->k), SK_OK);
    publish(f, "order.events.Happened", 2);
    add_consumer(f, "ORDER_EVENTS", "view-2", "order.events.>");
    /* Deliveries per consumer mean nothing when the consumers changed. */
    SK_TEST_ASSERT_ERR(cli_broker_since(&f->k, &published, &delivered), SK_ECONFLICT,
                       "ORDER_EVENTS: 1 consumers at the mark, 2 now");
    assert_int_equal(published, 0);
    assert_int_equal(delivered, 0);
}

/* The fixture without the system's streams: they were never created. */
static void test_cli_broker_errors(void **state)
{
    fixture *f = *state;
    uint64_t published = 1, delivered = 1;

    SK_TEST_ASSERT_ERR(cli_broker_open(&f->k, NULL, f->sys), SK_EINVAL, "nc");
    SK_TEST_ASSERT_ERR(cli_broker_open(&f->k, f->nc, NULL), SK_EINVAL, "sys");
    SK_TEST_ASSERT_ERR(cli_broker_mark(&f->k), SK_ESTATE, "not open");
    SK_TEST_ASSERT_ERR(cli_broker_since(&f->k, &published, &delivered), SK_ESTATE, "not open");
    assert_int_equal(published, 0);
    assert_int_equal(delivered, 0);

    assert_int_equal(cli_broker_open(&f->k, f->nc, f->sys), SK_OK);
    SK_TEST_ASSERT_ERR(cli_broker_since(&f->k, &published, &delivered), SK_ESTATE, "no mark");
    SK_TEST_ASSERT_ERR(cli_broker_mark(&f->k), SK_EBUS, "stream ORDER_EVENTS: info");
    assert_false(f->k.is_marked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cli_broker_lists_the_systems_streams,
                                        setup_with_streams, teardown),
        cmocka_unit_test_setup_teardown(test_cli_broker_counts_since_the_mark, setup_with_streams,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cli_broker_consumer_added_after_the_mark,
                                        setup_with_streams, teardown),
        cmocka_unit_test_setup_teardown(test_cli_broker_errors, setup_without_streams, teardown),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_CloseAndWait(5000);
    sk_shutdown();
    return rc;
}
