/* SPDX-License-Identifier: MIT */
/*
 * CLI: the NATS users and permissions `skald up` derives from the system
 * file (rendering, the x-sends-commands-to key and its errors), and the
 * real thing: nats-server 2.9 on the rendered config maps each client
 * certificate to its user, accepts what a service needs (JetStream
 * publishes to its own subjects, saga commands and replies, its pull
 * consumers, its discovery key) and refuses the rest (NATS_NOT_PERMITTED).
 */
/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <nats/nats.h>

#include "cli.h"
#include "sk_test.h"

/* Forbidden JetStream requests get no answer; wait this long for one. */
#define JS_WAIT_MS 500

/* The reference shop, reduced to what permissions are derived from. */
static const char shop_yaml[] =
    "system: shop\n"
    "gateway:\n  port: 8080\n  routes: []\n"
    "services:\n"
    "  gateway:\n    gateway: true\n    database: none\n"
    "  customer:\n    commands: [RegisterCustomer]\n    emits: [CustomerRegistered]\n"
    "  inventory:\n    instances: 2\n    commands: [ReserveStock, ReleaseReservation]\n"
    "    emits: [StockReserved, ReservationReleased]\n"
    "  payment:\n    commands: [ChargeCredit]\n    emits: [CreditCharged]\n"
    "    consumes: [CustomerRegistered]\n"
    "  order:\n    commands: [CreateOrder]\n    emits: [OrderCreated]\n"
    "    consumes: [StockReserved, CreditCharged]\n"
    "  orderview:\n    queries: [GetOrder]\n"
    "    consumes: [CustomerRegistered, StockReserved, CreditCharged, OrderCreated]\n"
    "  psp:\n    database: none\n    commands: [Capture]\n";

/* The same with the command targets given explicitly. */
static const char shop_explicit_yaml[] =
    "system: shop\n"
    "gateway:\n  port: 8080\n  routes: []\n"
    "services:\n"
    "  customer:\n    commands: [RegisterCustomer]\n    emits: [CustomerRegistered]\n"
    "    x-sends-commands-to: []\n"
    "  inventory:\n    commands: [ReserveStock]\n    emits: [StockReserved]\n"
    "  payment:\n    commands: [ChargeCredit]\n    emits: [CreditCharged]\n"
    "    consumes: [CustomerRegistered]\n    x-sends-commands-to: []\n"
    "  order:\n    commands: [CreateOrder]\n    emits: [OrderCreated]\n"
    "    consumes: [StockReserved, CreditCharged]\n"
    "    x-sends-commands-to: [inventory, payment]\n";

static sk_system *parse(const char *yaml)
{
    sk_system *sys = NULL;
    assert_int_equal(sk_system_parse(sk_slice_from_str(yaml), "t.yaml", &sys), SK_OK);
    return sys;
}

static sk_status render(const sk_system *sys, sk_buf *b)
{
    cli_nats_conf c = {
        .port = 4222,
        .server_name = "skald",
        .store_dir = "/d/nats",
        .cert_file = "/d/pki/nats-server.pem",
        .key_file = "/d/pki/nats-server.key",
        .ca_file = "/d/pki/ca.pem",
        .sys = sys,
    };
    return cli_nats_conf_render(&c, b);
}

/* The rendered user block of @p name (owned, sk_free), or NULL. */
static char *user_block(const char *conf, const char *name)
{
    char head[128];
    snprintf(head, sizeof(head), "user: \"%s%s\"\n", SK_SPIFFE_PREFIX, name);
    const char *start = strstr(conf, head);
    if (start == NULL) {
        return NULL;
    }
    const char *end = strstr(start, "\n    }\n");
    assert_non_null(end);
    size_t len = (size_t)(end - start);
    char *out = sk_malloc(len + 1);
    assert_non_null(out);
    memcpy(out, start, len);
    out[len] = '\0';
    return out;
}

/* True when @p block allows @p subject ("\"<subject>\"" appears in it). */
static bool allows(const char *block, const char *subject)
{
    char quoted[256];
    snprintf(quoted, sizeof(quoted), "\"%s\"", subject);
    return strstr(block, quoted) != NULL;
}

static char *render_user(const char *yaml, const char *name)
{
    sk_system *sys = parse(yaml);
    sk_buf b;
    sk_buf_init(&b, 256 * 1024);
    assert_int_equal(render(sys, &b), SK_OK);
    char *block = user_block(b.data, name);
    assert_non_null(block);
    sk_buf_fini(&b);
    sk_system_destroy(sys);
    return block;
}

static void test_cli_nats_conf_render_order_permissions(void **state)
{
    (void)state;
    char *u = render_user(shop_yaml, "order");
    /* Its own events, dead letters, saga commands to the services whose outcomes it consumes. */
    assert_true(allows(u, "order.events.>"));
    assert_true(allows(u, "dlq.*"));
    assert_true(allows(u, "inventory.commands.>"));
    assert_true(allows(u, "payment.commands.>"));
    assert_false(allows(u, "customer.commands.>"));
    assert_false(allows(u, "order.replies.>"));
    assert_false(allows(u, "inventory.events.>"));
    /* Its saga replies and its commands as pull consumers. */
    assert_true(allows(u, "$JS.API.CONSUMER.CREATE.ORDER_REPLIES.>"));
    assert_true(allows(u, "$JS.API.CONSUMER.INFO.ORDER_REPLIES.*"));
    assert_true(allows(u, "$JS.API.CONSUMER.MSG.NEXT.ORDER_REPLIES.*"));
    assert_true(allows(u, "$JS.ACK.ORDER_REPLIES.>"));
    assert_true(allows(u, "$JS.API.CONSUMER.CREATE.INVENTORY_EVENTS.>"));
    assert_false(allows(u, "$JS.API.CONSUMER.CREATE.CUSTOMER_EVENTS.>"));
    /* Streams: looked up, never created. */
    assert_true(allows(u, "$JS.API.STREAM.INFO.CUSTOMER_EVENTS"));
    assert_true(allows(u, "$JS.API.STREAM.INFO.DEAD_LETTERS"));
    assert_null(strstr(u, "STREAM.CREATE"));
    assert_null(strstr(u, "STREAM.UPDATE"));
    /* Discovery: its own key, reading everyone's; its own inbox only. */
    assert_true(allows(u, "$KV.skald_instances.order.>"));
    assert_false(allows(u, "$KV.skald_instances.>"));
    assert_true(allows(u, "$JS.API.DIRECT.GET.KV_skald_instances.>"));
    assert_true(allows(u, "_INBOX.order-1.>"));
    assert_false(allows(u, "_INBOX.order-2.>"));
    /* Fault injection: watched, never written. */
    assert_true(allows(u, "$JS.API.STREAM.INFO.KV_skald_faults"));
    assert_true(allows(u, "$JS.API.CONSUMER.CREATE.KV_skald_faults"));
    assert_null(strstr(u, "$KV.skald_faults."));
    assert_false(allows(u, "$JS.API.>"));
    sk_free(u);
}

static void test_cli_nats_conf_render_participant_permissions(void **state)
{
    (void)state;
    char *u = render_user(shop_yaml, "inventory");
    assert_true(allows(u, "inventory.events.>"));
    assert_true(allows(u, "order.replies.>"));
    assert_false(allows(u, "inventory.commands.>"));
    assert_false(allows(u, "payment.commands.>"));
    assert_true(allows(u, "$JS.API.CONSUMER.MSG.NEXT.INVENTORY_COMMANDS.*"));
    assert_true(allows(u, "$JS.ACK.INVENTORY_COMMANDS.>"));
    /* instances: 2, so two inboxes. */
    assert_true(allows(u, "_INBOX.inventory-1.>"));
    assert_true(allows(u, "_INBOX.inventory-2.>"));
    assert_false(allows(u, "_INBOX.inventory-3.>"));
    sk_free(u);

    /* Derived rule: payment consumes customer events, so it may command customer. */
    u = render_user(shop_yaml, "payment");
    assert_true(allows(u, "customer.commands.>"));
    assert_true(allows(u, "order.replies.>"));
    assert_true(allows(u, "$JS.API.CONSUMER.CREATE.CUSTOMER_EVENTS.>"));
    sk_free(u);
}

static void test_cli_nats_conf_render_read_model_gateway_psp(void **state)
{
    (void)state;
    /* A read model commands nobody and consumes the events it lists. */
    char *u = render_user(shop_yaml, "orderview");
    assert_null(strstr(u, ".commands.>"));
    assert_null(strstr(u, ".replies.>\""));
    assert_true(allows(u, "$JS.API.CONSUMER.CREATE.CUSTOMER_EVENTS.>"));
    assert_true(allows(u, "$JS.API.CONSUMER.CREATE.INVENTORY_EVENTS.>"));
    assert_true(allows(u, "$JS.API.CONSUMER.CREATE.PAYMENT_EVENTS.>"));
    assert_true(allows(u, "$JS.API.CONSUMER.CREATE.ORDER_EVENTS.>"));
    sk_free(u);
    /* No database: no subjects of its own, discovery only. */
    const char *none[] = { "gateway", "psp" };
    for (size_t i = 0; i < 2; i++) {
        char inbox[64], key[64];
        u = render_user(shop_yaml, none[i]);
        snprintf(inbox, sizeof(inbox), "_INBOX.%s-1.>", none[i]);
        snprintf(key, sizeof(key), "$KV.skald_instances.%s.>", none[i]);
        assert_null(strstr(u, ".events.>"));
        assert_null(strstr(u, "dlq."));
        assert_null(strstr(u, "$JS.ACK"));
        assert_true(allows(u, key));
        assert_true(allows(u, inbox));
        sk_free(u);
    }
    /* The CLI creates every stream and the bucket; it reads discovery. */
    u = render_user(shop_yaml, CLI_IDENTITY);
    assert_true(allows(u, "$JS.API.STREAM.CREATE.ORDER_EVENTS"));
    assert_true(allows(u, "$JS.API.STREAM.UPDATE.PAYMENT_COMMANDS"));
    assert_true(allows(u, "$JS.API.STREAM.CREATE.DEAD_LETTERS"));
    assert_true(allows(u, "$JS.API.STREAM.CREATE.KV_skald_instances"));
    assert_true(allows(u, "$JS.API.STREAM.CREATE.KV_skald_faults"));
    assert_true(allows(u, "$KV.skald_faults.>"));
    assert_false(allows(u, "$JS.API.STREAM.CREATE.GATEWAY_EVENTS"));
    assert_null(strstr(u, "$KV.skald_instances."));
    assert_true(allows(u, "_INBOX.skald-cli.>"));
    /* `skald bench` watches orders end with a plain subscription (read only). */
    assert_true(allows(u, "order.events.>"));
    assert_true(allows(u, "payment.events.>"));
    sk_free(u);
}

static void test_cli_nats_conf_render_explicit_command_targets(void **state)
{
    (void)state;
    char *u = render_user(shop_explicit_yaml, "payment");
    assert_false(allows(u, "customer.commands.>"));
    assert_true(allows(u, "order.replies.>"));
    sk_free(u);
    u = render_user(shop_explicit_yaml, "customer");
    assert_false(allows(u, "payment.replies.>"));
    sk_free(u);
    u = render_user(shop_explicit_yaml, "order");
    assert_true(allows(u, "inventory.commands.>"));
    assert_true(allows(u, "payment.commands.>"));
    sk_free(u);
}

static void expect_bad_targets(const char *targets, const char *substr)
{
    char yaml[1024];
    sk_buf b;
    snprintf(yaml, sizeof(yaml),
             "system: t\ngateway:\n  port: 8080\n  routes: []\nservices:\n"
             "  inventory:\n    commands: [ReserveStock]\n"
             "  orderview:\n    queries: [GetOrder]\n"
             "  psp:\n    database: none\n    commands: [Capture]\n"
             "  order:\n    commands: [CreateOrder]\n    x-sends-commands-to: %s\n",
             targets);
    sk_system *sys = parse(yaml);
    sk_buf_init(&b, 256 * 1024);
    SK_TEST_ASSERT_ERR(render(sys, &b), SK_EPROTO, substr);
    assert_int_equal(b.len, 0); /* nothing half-rendered */
    sk_buf_fini(&b);
    sk_system_destroy(sys);
}

static void test_cli_nats_conf_render_bad_command_targets(void **state)
{
    (void)state;
    expect_bad_targets("inventory", "services.order.x-sends-commands-to: expected a list");
    expect_bad_targets("[inventory, 3]", "x-sends-commands-to[1]: expected a service name");
    expect_bad_targets("[nope]", "x-sends-commands-to[0]: no service \"nope\" in the system");
    expect_bad_targets("[order]", "[0]: \"order\" cannot take saga commands from order");
    expect_bad_targets("[inventory, orderview]", "[1]: \"orderview\" cannot take saga commands");
    expect_bad_targets("[psp]", "\"psp\" cannot take saga commands");
}

static void test_cli_nats_conf_render_limit_leaves_buffer(void **state)
{
    (void)state;
    sk_system *sys = parse(shop_yaml);
    sk_buf b;
    /* Room for the server settings but not for the users. */
    sk_buf_init(&b, 2048);
    assert_int_equal(render(sys, &b), SK_ELIMIT);
    assert_int_equal(b.len, 0);
    sk_buf_fini(&b);
    sk_system_destroy(sys);
}

static void test_cli_nats_streams_ensure_null(void **state)
{
    (void)state;
    sk_system *sys = parse(shop_yaml);
    SK_TEST_ASSERT_ERR(cli_nats_streams_ensure(NULL, sys), SK_EINVAL, "bus must not be NULL");
    SK_TEST_ASSERT_ERR(cli_nats_streams_ensure((sk_bus *)(void *)sys, NULL), SK_EINVAL,
                       "sys must not be NULL");
    sk_system_destroy(sys);
}

/* ---------------------------------------------------------------- a real nats-server */

/* A raw nats.c connection as one identity, recording asynchronous errors. */
typedef struct client {
    natsConnection *nc;
    jsCtx *js;
    pthread_mutex_t mu;
    natsStatus last_err; /* guarded by mu */
    char last_text[256]; /* guarded by mu */
} client;

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    client *c = closure;
    const char *text = NULL;
    (void)sub;
    (void)natsConnection_GetLastError(nc, &text);
    pthread_mutex_lock(&c->mu);
    c->last_err = err;
    snprintf(c->last_text, sizeof(c->last_text), "%s", text != NULL ? text : "");
    pthread_mutex_unlock(&c->mu);
}

static void client_open(client *c, const char *url, const char *pki, const char *identity)
{
    natsOptions *o = NULL;
    sk_tls_files tls = { 0 };
    char inbox[96];
    jsOptions jo;

    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    assert_int_equal(sk_tls_files_init(&tls, pki, identity), SK_OK);
    snprintf(inbox, sizeof(inbox), "_INBOX.%s-1", identity);
    if (strcmp(identity, CLI_IDENTITY) == 0) {
        snprintf(inbox, sizeof(inbox), "%s", CLI_NATS_INBOX);
    }
    assert_int_equal(natsOptions_Create(&o), NATS_OK);
    assert_int_equal(natsOptions_SetURL(o, url), NATS_OK);
    assert_int_equal(natsOptions_SetSecure(o, true), NATS_OK);
    assert_int_equal(natsOptions_LoadCATrustedCertificates(o, tls.ca_file), NATS_OK);
    assert_int_equal(natsOptions_LoadCertificatesChain(o, tls.cert_file, tls.key_file), NATS_OK);
    assert_int_equal(natsOptions_SetCustomInboxPrefix(o, inbox), NATS_OK);
    assert_int_equal(natsOptions_SetErrorHandler(o, on_error, c), NATS_OK);
    assert_int_equal(natsConnection_Connect(&c->nc, o), NATS_OK);
    natsOptions_Destroy(o);
    sk_tls_files_fini(&tls);
    jsOptions_Init(&jo);
    jo.Wait = JS_WAIT_MS;
    assert_int_equal(natsConnection_JetStream(&c->js, c->nc, &jo), NATS_OK);
}

static void client_close(client *c)
{
    jsCtx_Destroy(c->js);
    natsConnection_Destroy(c->nc);
    pthread_mutex_destroy(&c->mu);
}

static bool has_not_permitted(void *ctx)
{
    client *c = ctx;
    pthread_mutex_lock(&c->mu);
    bool yes = c->last_err == NATS_NOT_PERMITTED;
    pthread_mutex_unlock(&c->mu);
    return yes;
}

/* Wait for the server's permission violation and check its text names @p what. */
static void expect_violation(client *c, const char *what)
{
    assert_true(sk_test_wait_until(has_not_permitted, c, 5000));
    pthread_mutex_lock(&c->mu);
    if (strstr(c->last_text, what) == NULL) {
        fail_msg("violation \"%s\" does not mention \"%s\"", c->last_text, what);
    }
    c->last_err = NATS_OK;
    c->last_text[0] = '\0';
    pthread_mutex_unlock(&c->mu);
}

static natsStatus js_pub(client *c, const char *subject, const char **stream)
{
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(&ack, c->js, subject, "{}", 2, NULL, &jerr);
    if (stream != NULL) {
        *stream = NULL;
    }
    if (s == NATS_OK && stream != NULL) {
        static char name[64];
        snprintf(name, sizeof(name), "%s", ack->Stream);
        *stream = name;
    }
    jsPubAck_Destroy(ack);
    return s;
}

static uint64_t stream_msgs(client *cli, const char *stream)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_GetStreamInfo(&si, cli->js, stream, NULL, &jerr), NATS_OK);
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

static bool port_up(void *ctx)
{
    return cli_port_accepts(*(int *)ctx);
}

typedef struct server {
    char dir[64], pki[96], url[64];
    char *bin;
    sk_system *sys;
    cli_supervisor *sup;
} server;

static bool server_start(server *s)
{
    char store[96], conf_path[96], log[96];
    sk_tls_files tls = { 0 };
    sk_buf b;
    int port = 0;

    memset(s, 0, sizeof(*s));
    if (cli_program_find("nats-server", &s->bin) != SK_OK) {
        sk_error_clear();
        return false;
    }
    assert_int_equal(sk_test_tmpdir(s->dir, sizeof(s->dir)), SK_OK);
    snprintf(s->pki, sizeof(s->pki), "%s/pki", s->dir);
    snprintf(store, sizeof(store), "%s/nats", s->dir);
    snprintf(conf_path, sizeof(conf_path), "%s/nats.conf", s->dir);
    snprintf(log, sizeof(log), "%s/nats.log", s->dir);
    assert_int_equal(cli_mkdir(s->pki, 0700), SK_OK);
    s->sys = parse(shop_yaml);
    assert_int_equal(cli_pki_setup(s->pki, s->sys), SK_OK);
    assert_int_equal(sk_tls_files_init(&tls, s->pki, CLI_NATS_IDENTITY), SK_OK);
    assert_true(cli_port_is_free(0, &port));
    cli_nats_conf c = { .port = port,
                        .server_name = "skald",
                        .store_dir = store,
                        .cert_file = tls.cert_file,
                        .key_file = tls.key_file,
                        .ca_file = tls.ca_file,
                        .sys = s->sys };
    sk_buf_init(&b, 256 * 1024);
    assert_int_equal(cli_nats_conf_render(&c, &b), SK_OK);
    assert_int_equal(cli_file_write(conf_path, b.data, 0600), SK_OK);
    sk_buf_fini(&b);
    sk_tls_files_fini(&tls);
    assert_int_equal(cli_supervisor_create(&s->sup), SK_OK);
    const char *argv[] = { s->bin, "-c", conf_path, NULL };
    assert_int_equal(cli_supervisor_spawn(s->sup, "nats-server", CLI_PHASE_BROKER, argv, log),
                     SK_OK);
    assert_true(sk_test_wait_until(port_up, &port, 10000));
    snprintf(s->url, sizeof(s->url), "tls://127.0.0.1:%d", port);
    return true;
}

static void server_stop(server *s)
{
    cli_supervisor_stop_all(s->sup, 5000);
    assert_int_equal(cli_supervisor_running(s->sup), 0);
    cli_supervisor_destroy(s->sup);
    sk_system_destroy(s->sys);
    sk_free(s->bin);
    sk_test_rmrf(s->dir);
}

/* `skald up`'s first step: the CLI identity creates the streams and the bucket. */
static void ensure_streams(server *s)
{
    sk_tls_files tls = { 0 };
    sk_bus *bus = NULL;
    assert_int_equal(sk_tls_files_init(&tls, s->pki, CLI_IDENTITY), SK_OK);
    sk_bus_config bc = { .servers = s->url,
                         .ca_file = tls.ca_file,
                         .cert_file = tls.cert_file,
                         .key_file = tls.key_file,
                         .name = "skald-up",
                         .inbox_prefix = CLI_NATS_INBOX };
    assert_int_equal(sk_bus_open(&bus, &bc), SK_OK);
    int64_t deadline = sk_time_mono_ms() + 10000;
    sk_status st;
    while ((st = cli_nats_streams_ensure(bus, s->sys)) != SK_OK && sk_time_mono_ms() < deadline) {
        cli_supervisor_poll(s->sup, 50); /* not connected yet, or JetStream starting */
    }
    assert_int_equal(st, SK_OK);
    /* Again: everything exists with the same configuration. */
    assert_int_equal(cli_nats_streams_ensure(bus, s->sys), SK_OK);
    sk_bus_close(bus);
    sk_tls_files_fini(&tls);
}

static void test_cli_nats_permissions_real_server(void **state)
{
    server s;
    client cli, customer, order, inventory, payment;
    const char *stream = NULL;
    (void)state;

    if (!server_start(&s)) {
        skip();
    }
    ensure_streams(&s);
    client_open(&cli, s.url, s.pki, CLI_IDENTITY);
    client_open(&customer, s.url, s.pki, "customer");
    client_open(&order, s.url, s.pki, "order");
    client_open(&inventory, s.url, s.pki, "inventory");
    client_open(&payment, s.url, s.pki, "payment");

    /* Its own events: stored, acknowledged by JetStream. */
    assert_int_equal(js_pub(&customer, "customer.events.CustomerRegistered", &stream), NATS_OK);
    assert_string_equal(stream, "CUSTOMER_EVENTS");
    /* Another context's events: refused by the server, never stored. */
    assert_int_equal(natsConnection_PublishString(customer.nc, "order.events.OrderCreated", "{}"),
                     NATS_OK);
    assert_int_equal(natsConnection_Flush(customer.nc), NATS_OK);
    expect_violation(&customer, "Publish to \"order.events.OrderCreated\"");
    assert_int_not_equal(js_pub(&customer, "order.events.OrderCreated", NULL), NATS_OK);
    expect_violation(&customer, "order.events.OrderCreated");
    assert_int_equal(stream_msgs(&cli, "ORDER_EVENTS"), 0);
    /* Saga commands only to the services it orchestrates, replies only to the orchestrator. */
    assert_int_not_equal(js_pub(&customer, "inventory.commands.ReserveStock", NULL), NATS_OK);
    expect_violation(&customer, "inventory.commands.ReserveStock");
    assert_int_equal(js_pub(&order, "inventory.commands.ReserveStock", &stream), NATS_OK);
    assert_string_equal(stream, "INVENTORY_COMMANDS");
    assert_int_equal(js_pub(&order, "payment.commands.ChargeCredit", &stream), NATS_OK);
    assert_int_equal(js_pub(&inventory, "order.replies.CreateOrderSaga", &stream), NATS_OK);
    assert_string_equal(stream, "ORDER_REPLIES");
    assert_int_not_equal(js_pub(&inventory, "payment.commands.ChargeCredit", NULL), NATS_OK);
    expect_violation(&inventory, "payment.commands.ChargeCredit");

    /* Another service's inbox cannot be read. */
    natsSubscription *spy = NULL;
    assert_int_equal(natsConnection_SubscribeSync(&spy, customer.nc, "_INBOX.order-1.>"), NATS_OK);
    assert_int_equal(natsConnection_Flush(customer.nc), NATS_OK);
    expect_violation(&customer, "Subscription to \"_INBOX.order-1.>\"");
    natsSubscription_Destroy(spy);

    /* A pull consumer on what it consumes: create, fetch, ack. */
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    jsConsumerConfig_Init(&cc);
    cc.Durable = "payment-customer-events";
    cc.AckPolicy = js_AckExplicit;
    cc.FilterSubject = "customer.events.>";
    assert_int_equal(js_AddConsumer(&ci, payment.js, "CUSTOMER_EVENTS", &cc, NULL, &jerr), NATS_OK);
    jsConsumerInfo_Destroy(ci);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "CUSTOMER_EVENTS";
    so.Consumer = "payment-customer-events";
    so.ManualAck = true;
    natsSubscription *pull = NULL;
    assert_int_equal(js_PullSubscribe(&pull, payment.js, "customer.events.>",
                                      "payment-customer-events", NULL, &so, &jerr),
                     NATS_OK);
    natsMsgList list = { 0 };
    assert_int_equal(natsSubscription_Fetch(&list, pull, 1, 5000, &jerr), NATS_OK);
    assert_int_equal(list.Count, 1);
    assert_string_equal(natsMsg_GetSubject(list.Msgs[0]), "customer.events.CustomerRegistered");
    assert_int_equal(natsMsg_AckSync(list.Msgs[0], NULL, &jerr), NATS_OK);
    natsMsgList_Destroy(&list);
    natsSubscription_Destroy(pull);
    /* ... but not on a stream it does not consume. */
    cc.Durable = "payment-order-events";
    cc.FilterSubject = "order.events.>";
    assert_int_not_equal(js_AddConsumer(&ci, payment.js, "ORDER_EVENTS", &cc, NULL, &jerr),
                         NATS_OK);
    expect_violation(&payment, "ORDER_EVENTS.payment-order-events");

    /* Discovery: its own key can be written, everyone's read, nobody else's written. */
    kvStore *kv = NULL;
    kvEntry *e = NULL;
    assert_int_equal(js_KeyValue(&kv, customer.js, SK_DISCOVERY_BUCKET), NATS_OK);
    assert_int_equal(kvStore_PutString(NULL, kv, "customer.customer-1", "{}"), NATS_OK);
    assert_int_equal(kvStore_Get(&e, kv, "customer.customer-1"), NATS_OK);
    kvEntry_Destroy(e);
    assert_int_not_equal(kvStore_PutString(NULL, kv, "order.order-1", "{}"), NATS_OK);
    expect_violation(&customer, "$KV.skald_instances.order.order-1");
    kvStore_Destroy(kv);
    /* The CLI reads it (skald status) without writing. */
    assert_int_equal(js_KeyValue(&kv, cli.js, SK_DISCOVERY_BUCKET), NATS_OK);
    assert_int_equal(kvStore_Get(&e, kv, "customer.customer-1"), NATS_OK);
    kvEntry_Destroy(e);
    kvStore_Destroy(kv);
    /* Fault injection: the CLI writes a service's key, services only read it. */
    assert_int_equal(js_KeyValue(&kv, cli.js, "skald_faults"), NATS_OK);
    assert_int_equal(kvStore_PutString(NULL, kv, "order", "{}"), NATS_OK);
    kvStore_Destroy(kv);
    assert_int_equal(js_KeyValue(&kv, order.js, "skald_faults"), NATS_OK);
    assert_int_equal(kvStore_Get(&e, kv, "order"), NATS_OK);
    kvEntry_Destroy(e);
    assert_int_not_equal(kvStore_PutString(NULL, kv, "customer", "{}"), NATS_OK);
    expect_violation(&order, "$KV.skald_faults.customer");
    kvStore_Destroy(kv);

    client_close(&payment);
    client_close(&inventory);
    client_close(&order);
    client_close(&customer);
    client_close(&cli);
    server_stop(&s);
}

/* A certificate of an identity that has no user is refused at connect. */
static void test_cli_nats_permissions_unknown_identity(void **state)
{
    server s;
    natsConnection *nc = NULL;
    natsOptions *o = NULL;
    sk_tls_files tls = { 0 };
    (void)state;

    if (!server_start(&s)) {
        skip();
    }
    assert_int_equal(sk_pki_issue(s.pki, "intruder", SK_SPIFFE_PREFIX "intruder", NULL), SK_OK);
    assert_int_equal(sk_tls_files_init(&tls, s.pki, "intruder"), SK_OK);
    assert_int_equal(natsOptions_Create(&o), NATS_OK);
    assert_int_equal(natsOptions_SetURL(o, s.url), NATS_OK);
    assert_int_equal(natsOptions_SetSecure(o, true), NATS_OK);
    assert_int_equal(natsOptions_LoadCATrustedCertificates(o, tls.ca_file), NATS_OK);
    assert_int_equal(natsOptions_LoadCertificatesChain(o, tls.cert_file, tls.key_file), NATS_OK);
    assert_int_equal(natsConnection_Connect(&nc, o), NATS_CONNECTION_AUTH_FAILED);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    sk_tls_files_fini(&tls);
    server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_nats_conf_render_order_permissions),
        cmocka_unit_test(test_cli_nats_conf_render_participant_permissions),
        cmocka_unit_test(test_cli_nats_conf_render_read_model_gateway_psp),
        cmocka_unit_test(test_cli_nats_conf_render_explicit_command_targets),
        cmocka_unit_test(test_cli_nats_conf_render_bad_command_targets),
        cmocka_unit_test(test_cli_nats_conf_render_limit_leaves_buffer),
        cmocka_unit_test(test_cli_nats_streams_ensure_null),
        cmocka_unit_test(test_cli_nats_permissions_real_server),
        cmocka_unit_test(test_cli_nats_permissions_unknown_identity),
    };
    if (sk_init("test-cli") != SK_OK) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
