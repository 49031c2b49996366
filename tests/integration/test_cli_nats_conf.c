/* SPDX-License-Identifier: MIT */
/*
 * CLI: the nats-server configuration `skald up` writes (rendering and
 * validation), nats.url parsing, the PKI bootstrap, and the real thing:
 * nats-server 2.9 started by the supervisor on the rendered config accepts
 * an mTLS connection with the CLI's certificate.
 */
/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sk_test.h"

static const char system_yaml[] = "system: t\n"
                                  "gateway:\n  port: 8080\n  routes: []\n"
                                  "services:\n"
                                  "  gateway:\n    gateway: true\n    database: none\n"
                                  "  order:\n    commands: [CreateOrder]\n";

/* The parsed system_yaml, for the renderings (group setup). */
static sk_system *g_sys;

static int group_setup(void **state)
{
    (void)state;
    return sk_system_parse(sk_slice_from_str(system_yaml), "t.yaml", &g_sys) == SK_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    sk_system_destroy(g_sys);
    g_sys = NULL;
    return 0;
}

static cli_nats_conf sample(void)
{
    cli_nats_conf c = {
        .port = 4711,
        .server_name = "skald",
        .store_dir = "/data/nats",
        .cert_file = "/data/pki/nats-server.pem",
        .key_file = "/data/pki/nats-server.key",
        .ca_file = "/data/pki/ca.pem",
        .sys = g_sys,
    };
    return c;
}

static void test_cli_nats_conf_render_success(void **state)
{
    cli_nats_conf c = sample();
    sk_buf b;
    (void)state;

    sk_buf_init(&b, 64 * 1024);
    assert_int_equal(cli_nats_conf_render(&c, &b), SK_OK);
    assert_non_null(strstr(b.data, "listen: \"127.0.0.1:4711\"\n"));
    assert_non_null(strstr(b.data, "server_name: \"skald\"\n"));
    assert_non_null(strstr(b.data, "max_payload: 2097152\n"));
    assert_non_null(strstr(b.data, "write_deadline: \"10s\"\n"));
    assert_non_null(strstr(b.data, "  store_dir: \"/data/nats\"\n"));
    assert_non_null(strstr(b.data, "  max_memory_store: 64MB\n"));
    assert_non_null(strstr(b.data, "  max_file_store: 10GB\n"));
    assert_non_null(strstr(b.data, "  cert_file: \"/data/pki/nats-server.pem\"\n"));
    assert_non_null(strstr(b.data, "  key_file: \"/data/pki/nats-server.key\"\n"));
    assert_non_null(strstr(b.data, "  ca_file: \"/data/pki/ca.pem\"\n"));
    assert_non_null(strstr(b.data, "  verify_and_map: true\n"));
    /* One user per service and one for the CLI (permissions: test_cli_nats_permissions.c). */
    assert_non_null(strstr(b.data, "user: \"spiffe://skald.local/ns/default/sa/gateway\"\n"));
    assert_non_null(strstr(b.data, "user: \"spiffe://skald.local/ns/default/sa/order\"\n"));
    assert_non_null(strstr(b.data, "user: \"spiffe://skald.local/ns/default/sa/skald-cli\"\n"));
    assert_non_null(strstr(b.data, "  timeout: 2\n"));
    /* No monitoring listener. */
    assert_null(strstr(b.data, "http"));
    sk_buf_fini(&b);
}

static void test_cli_nats_conf_render_appends(void **state)
{
    cli_nats_conf c = sample();
    sk_buf b;
    (void)state;

    sk_buf_init(&b, 64 * 1024);
    assert_int_equal(sk_buf_append_str(&b, "# head\n"), SK_OK);
    assert_int_equal(cli_nats_conf_render(&c, &b), SK_OK);
    assert_memory_equal(b.data, "# head\n", 7);
    sk_buf_fini(&b);
}

static void test_cli_nats_conf_render_port_range(void **state)
{
    cli_nats_conf c = sample();
    sk_buf b;
    (void)state;

    sk_buf_init(&b, 64 * 1024);
    c.port = 0;
    SK_TEST_ASSERT_ERR(cli_nats_conf_render(&c, &b), SK_EINVAL, "port: expected 1..65535, got 0");
    c.port = 65536;
    SK_TEST_ASSERT_ERR(cli_nats_conf_render(&c, &b), SK_EINVAL, "got 65536");
    c.port = 1;
    assert_int_equal(cli_nats_conf_render(&c, &b), SK_OK);
    sk_buf_reset(&b);
    c.port = 65535;
    assert_int_equal(cli_nats_conf_render(&c, &b), SK_OK);
    sk_buf_fini(&b);
}

static void test_cli_nats_conf_render_bad_strings(void **state)
{
    cli_nats_conf c;
    sk_buf b;
    (void)state;

    sk_buf_init(&b, 64 * 1024);
    c = sample();
    c.store_dir = "/data/\"evil";
    SK_TEST_ASSERT_ERR(cli_nats_conf_render(&c, &b), SK_EINVAL,
                       "store_dir: character 0x22 at offset 6");
    c = sample();
    c.cert_file = "a\\b";
    SK_TEST_ASSERT_ERR(cli_nats_conf_render(&c, &b), SK_EINVAL, "cert_file");
    c = sample();
    c.key_file = "a\nb";
    SK_TEST_ASSERT_ERR(cli_nats_conf_render(&c, &b), SK_EINVAL, "key_file: character 0x0a");
    c = sample();
    c.ca_file = "";
    SK_TEST_ASSERT_ERR(cli_nats_conf_render(&c, &b), SK_EINVAL,
                       "ca_file must be a non-empty string");
    c = sample();
    c.server_name = NULL;
    SK_TEST_ASSERT_ERR(cli_nats_conf_render(&c, &b), SK_EINVAL, "server_name");
    c = sample();
    c.sys = NULL;
    SK_TEST_ASSERT_ERR(cli_nats_conf_render(&c, &b), SK_EINVAL, "conf->sys must not be NULL");
    assert_int_equal(b.len, 0);
    sk_buf_fini(&b);
}

static void test_cli_nats_conf_render_null_and_limit(void **state)
{
    cli_nats_conf c = sample();
    sk_buf b;
    (void)state;

    sk_buf_init(&b, 64);
    SK_TEST_ASSERT_ERR(cli_nats_conf_render(NULL, &b), SK_EINVAL, "conf must not be NULL");
    SK_TEST_ASSERT_ERR(cli_nats_conf_render(&c, NULL), SK_EINVAL, "out must not be NULL");
    assert_int_equal(cli_nats_conf_render(&c, &b), SK_ELIMIT);
    sk_buf_fini(&b);
}

static void test_cli_nats_url_port(void **state)
{
    int port = -1;
    (void)state;

    assert_int_equal(cli_nats_url_port("tls://127.0.0.1:4222", &port), SK_OK);
    assert_int_equal(port, 4222);
    SK_TEST_ASSERT_ERR(cli_nats_url_port("nats://127.0.0.1:4222", &port), SK_EPROTO,
                       "expected \"tls://127.0.0.1:<port>\"");
    assert_int_equal(port, 0);
    SK_TEST_ASSERT_ERR(cli_nats_url_port("tls://127.0.0.1:", &port), SK_EPROTO, "expected a port");
    SK_TEST_ASSERT_ERR(cli_nats_url_port("tls://127.0.0.1:70000", &port), SK_EPROTO, "70000");
    SK_TEST_ASSERT_ERR(cli_nats_url_port("tls://127.0.0.1:42x", &port), SK_EPROTO, "42x");
    SK_TEST_ASSERT_ERR(cli_nats_url_port(NULL, &port), SK_EPROTO, "got \"\"");
    SK_TEST_ASSERT_ERR(cli_nats_url_port("tls://127.0.0.1:1", NULL), SK_EINVAL, "out");
}

static bool file_exists(const char *dir, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

static void test_cli_pki_setup_issues_every_identity(void **state)
{
    char dir[64];
    sk_system *sys = NULL;
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    assert_int_equal(sk_system_parse(sk_slice_from_str(system_yaml), "t.yaml", &sys), SK_OK);
    assert_int_equal(cli_pki_setup(dir, sys), SK_OK);
    const char *names[] = { "ca.pem",          "ca.key",         "gateway.pem",   "gateway.key",
                            "order.pem",       "order.key",      "skald-cli.pem", "skald-cli.key",
                            "nats-server.pem", "nats-server.key" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_true(file_exists(dir, names[i]));
    }
    /* A second start keeps what is there. */
    assert_int_equal(cli_pki_setup(dir, sys), SK_OK);
    SK_TEST_ASSERT_ERR(cli_pki_setup(NULL, sys), SK_EINVAL, "pki_dir");
    SK_TEST_ASSERT_ERR(cli_pki_setup(dir, NULL), SK_EINVAL, "sys");
    sk_system_destroy(sys);
    sk_test_rmrf(dir);
}

static bool nats_up(void *ctx)
{
    return cli_port_accepts(*(int *)ctx);
}

/* The config as `skald up` writes it, run by nats-server, with an mTLS client. */
static void test_cli_nats_conf_real_server(void **state)
{
    char dir[64], pki[96], store[96], conf_path[96], log[96], url[64];
    char *server = NULL;
    sk_system *sys = NULL;
    sk_tls_files srv = { 0 }, cli = { 0 };
    cli_supervisor *sup = NULL;
    sk_bus *bus = NULL;
    sk_buf b;
    int port = 0;
    (void)state;

    if (cli_program_find("nats-server", &server) != SK_OK) {
        skip();
    }
    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(pki, sizeof(pki), "%s/pki", dir);
    snprintf(store, sizeof(store), "%s/nats", dir);
    snprintf(conf_path, sizeof(conf_path), "%s/nats.conf", dir);
    snprintf(log, sizeof(log), "%s/nats.log", dir);
    assert_int_equal(cli_mkdir(pki, 0700), SK_OK);
    assert_int_equal(sk_system_parse(sk_slice_from_str(system_yaml), "t.yaml", &sys), SK_OK);
    assert_int_equal(cli_pki_setup(pki, sys), SK_OK);
    assert_int_equal(sk_tls_files_init(&srv, pki, CLI_NATS_IDENTITY), SK_OK);
    assert_int_equal(sk_tls_files_init(&cli, pki, CLI_IDENTITY), SK_OK);
    assert_true(cli_port_is_free(0, &port));
    cli_nats_conf c = { .port = port,
                        .server_name = "skald",
                        .store_dir = store,
                        .cert_file = srv.cert_file,
                        .key_file = srv.key_file,
                        .ca_file = srv.ca_file,
                        .sys = sys };
    sk_buf_init(&b, 64 * 1024);
    assert_int_equal(cli_nats_conf_render(&c, &b), SK_OK);
    assert_int_equal(cli_file_write(conf_path, b.data, 0600), SK_OK);

    assert_int_equal(cli_supervisor_create(&sup), SK_OK);
    const char *argv[] = { server, "-c", conf_path, NULL };
    assert_int_equal(cli_supervisor_spawn(sup, "nats-server", CLI_PHASE_BROKER, argv, log), SK_OK);
    assert_true(sk_test_wait_until(nats_up, &port, 10000));

    snprintf(url, sizeof(url), "tls://127.0.0.1:%d", port);
    sk_bus_config bc = { .servers = url,
                         .ca_file = cli.ca_file,
                         .cert_file = cli.cert_file,
                         .key_file = cli.key_file,
                         .name = "test-cli",
                         .inbox_prefix = CLI_NATS_INBOX };
    assert_int_equal(sk_bus_open(&bus, &bc), SK_OK);
    int64_t deadline = sk_time_mono_ms() + 5000;
    while (!sk_bus_is_connected(bus) && sk_time_mono_ms() < deadline) {
        cli_supervisor_poll(sup, 10);
    }
    assert_true(sk_bus_is_connected(bus));
    /* JetStream is on: the CLI identity creates the system's streams. */
    const char *subjects[] = { "order.events.>" };
    sk_stream_config sc = { .name = "ORDER_EVENTS", .subjects = subjects, .n_subjects = 1 };
    assert_int_equal(sk_bus_stream_ensure(bus, &sc), SK_OK);
    sk_bus_close(bus);

    cli_supervisor_stop_all(sup, 5000);
    assert_int_equal(cli_supervisor_running(sup), 0);
    cli_supervisor_destroy(sup);
    sk_buf_fini(&b);
    sk_tls_files_fini(&srv);
    sk_tls_files_fini(&cli);
    sk_system_destroy(sys);
    sk_free(server);
    sk_test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_nats_conf_render_success),
        cmocka_unit_test(test_cli_nats_conf_render_appends),
        cmocka_unit_test(test_cli_nats_conf_render_port_range),
        cmocka_unit_test(test_cli_nats_conf_render_bad_strings),
        cmocka_unit_test(test_cli_nats_conf_render_null_and_limit),
        cmocka_unit_test(test_cli_nats_url_port),
        cmocka_unit_test(test_cli_pki_setup_issues_every_identity),
        cmocka_unit_test(test_cli_nats_conf_real_server),
    };
    if (sk_init("test-cli") != SK_OK) {
        return 1;
    }
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
