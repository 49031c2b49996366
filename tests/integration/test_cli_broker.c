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
} fixture;

/* nats-server with the system's streams, a raw connection and its JetStream context. */
static void fixture_start(fixture *f, bool has_streams)
{
    sk_bus *bus = NULL;

    memset(f, 0, sizeof(*f));
    assert_int_equal(sk_system_parse(sk_slice_from_str(system_yaml), "t.yaml", &f->sys), SK_OK);
    assert_int_equal(sk_test_nats_start(&f->nats, NULL), SK_OK);
    if (has_streams) {
        sk_bus_config bc = { .servers = sk_test_nats_url(f->nats), .name = "test-cli-broker" };
        assert_int_equal(sk_bus_open(&bus, &bc), SK_OK);
        assert_int_equal(sk_bus_system_streams_ensure(bus, f->sys), SK_OK);
        sk_bus_close(bus);
    }
    assert_int_equal(natsConnection_ConnectTo(&f->nc, sk_test_nats_url(f->nats)), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&f->js, f->nc, NULL), NATS_OK);
}

static void fixture_stop(fixture *f)
{
    jsCtx_Destroy(f->js);
    natsConnection_Destroy(f->nc);
    sk_test_nats_stop(f->nats);
    sk_system_destroy(f->sys);
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
    fixture f;
    cli_broker k;
    (void)state;

    fixture_start(&f, true);
    assert_int_equal(cli_broker_open(&k, f.nc, f.sys), SK_OK);
    assert_int_equal(k.n_streams, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(k.streams[i].name, want[i]);
    }
    cli_broker_close(&k);
    cli_broker_close(&k); /* idempotent */
    fixture_stop(&f);
}

static void test_cli_broker_counts_since_the_mark(void **state)
{
    fixture f;
    cli_broker k;
    uint64_t published = 1, delivered = 1;
    (void)state;

    fixture_start(&f, true);
    add_consumer(&f, "ORDER_EVENTS", "view-1", "order.events.>");
    add_consumer(&f, "ORDER_EVENTS", "view-2", "order.events.>");
    add_consumer(&f, "STOCK_COMMANDS", "stock", "stock.commands.>");
    publish(&f, "order.events.Before", 4); /* before the mark: not counted */
    assert_int_equal(cli_broker_open(&k, f.nc, f.sys), SK_OK);
    assert_int_equal(cli_broker_mark(&k), SK_OK);
    assert_int_equal(cli_broker_since(&k, &published, &delivered), SK_OK);
    assert_int_equal(published, 0);
    assert_int_equal(delivered, 0);

    publish(&f, "order.events.Happened", 3);  /* 2 consumers */
    publish(&f, "stock.commands.Reserve", 2); /* 1 consumer */
    publish(&f, "order.replies.Saga", 1);     /* no consumer: stored, never delivered */
    assert_int_equal(cli_broker_since(&k, &published, &delivered), SK_OK);
    assert_int_equal(published, 6);
    assert_int_equal(delivered, 3 * 2 + 2 * 1);

    /* A new mark starts again from here. */
    assert_int_equal(cli_broker_mark(&k), SK_OK);
    publish(&f, "stock.commands.Reserve", 1);
    assert_int_equal(cli_broker_since(&k, &published, &delivered), SK_OK);
    assert_int_equal(published, 1);
    assert_int_equal(delivered, 1);
    cli_broker_close(&k);
    fixture_stop(&f);
}

static void test_cli_broker_consumer_added_after_the_mark(void **state)
{
    fixture f;
    cli_broker k;
    uint64_t published = 1, delivered = 1;
    (void)state;

    fixture_start(&f, true);
    add_consumer(&f, "ORDER_EVENTS", "view-1", "order.events.>");
    assert_int_equal(cli_broker_open(&k, f.nc, f.sys), SK_OK);
    assert_int_equal(cli_broker_mark(&k), SK_OK);
    publish(&f, "order.events.Happened", 2);
    add_consumer(&f, "ORDER_EVENTS", "view-2", "order.events.>");
    /* Deliveries per consumer mean nothing when the consumers changed. */
    SK_TEST_ASSERT_ERR(cli_broker_since(&k, &published, &delivered), SK_ECONFLICT,
                       "ORDER_EVENTS: 1 consumers at the mark, 2 now");
    assert_int_equal(published, 0);
    assert_int_equal(delivered, 0);
    cli_broker_close(&k);
    fixture_stop(&f);
}

static void test_cli_broker_errors(void **state)
{
    fixture f;
    cli_broker k;
    uint64_t published = 1, delivered = 1;
    (void)state;

    fixture_start(&f, false); /* the streams were never created */
    SK_TEST_ASSERT_ERR(cli_broker_open(&k, NULL, f.sys), SK_EINVAL, "nc");
    SK_TEST_ASSERT_ERR(cli_broker_open(&k, f.nc, NULL), SK_EINVAL, "sys");
    SK_TEST_ASSERT_ERR(cli_broker_mark(&k), SK_ESTATE, "not open");
    SK_TEST_ASSERT_ERR(cli_broker_since(&k, &published, &delivered), SK_ESTATE, "not open");
    assert_int_equal(published, 0);
    assert_int_equal(delivered, 0);

    assert_int_equal(cli_broker_open(&k, f.nc, f.sys), SK_OK);
    SK_TEST_ASSERT_ERR(cli_broker_since(&k, &published, &delivered), SK_ESTATE, "no mark");
    SK_TEST_ASSERT_ERR(cli_broker_mark(&k), SK_EBUS, "stream ORDER_EVENTS: info");
    assert_false(k.is_marked);
    cli_broker_close(&k);
    fixture_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_broker_lists_the_systems_streams),
        cmocka_unit_test(test_cli_broker_counts_since_the_mark),
        cmocka_unit_test(test_cli_broker_consumer_added_after_the_mark),
        cmocka_unit_test(test_cli_broker_errors),
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
