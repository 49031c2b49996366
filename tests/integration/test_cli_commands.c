/* SPDX-License-Identifier: MIT */
/*
 * CLI: the argument and configuration errors of `skald up` and `skald
 * status` (exit 2 for usage and config errors, 1 when the system is not
 * running). Nothing is started: every case fails before the first child.
 * The end-to-end run of `skald up` is a system test.
 */
/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sk_test.h"

/* The commands never write to argv; the cast only fits main's signature. */
#define RUN(fn, ...)                                                          \
    do {                                                                      \
        const char *args_[] = { __VA_ARGS__, NULL };                          \
        rc = fn((int)(sizeof(args_) / sizeof(args_[0])) - 1, (char **)args_); \
    } while (0)

static void test_cli_cmd_up_usage_errors(void **state)
{
    int rc = -1;
    (void)state;

    RUN(cli_cmd_up, "up", "--help");
    assert_int_equal(rc, CLI_EXIT_OK);
    RUN(cli_cmd_up, "up", "--bogus");
    assert_int_equal(rc, CLI_EXIT_USAGE);
    RUN(cli_cmd_up, "up", "--port", "0");
    assert_int_equal(rc, CLI_EXIT_USAGE);
    RUN(cli_cmd_up, "up", "--port=65536");
    assert_int_equal(rc, CLI_EXIT_USAGE);
    RUN(cli_cmd_up, "up", "--port");
    assert_int_equal(rc, CLI_EXIT_USAGE);
    RUN(cli_cmd_up, "up", "--data", "");
    assert_int_equal(rc, CLI_EXIT_USAGE);
    RUN(cli_cmd_up, "up", "--config");
    assert_int_equal(rc, CLI_EXIT_USAGE);
}

static void test_cli_cmd_up_config_errors(void **state)
{
    char dir[64], data[96], cfg[96];
    int rc = -1;
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(cfg, sizeof(cfg), "%s/missing.yaml", dir);
    RUN(cli_cmd_up, "up", "--config", cfg, "--data", data);
    assert_int_equal(rc, CLI_EXIT_USAGE);
    snprintf(cfg, sizeof(cfg), "%s/bad.yaml", dir);
    static const char bad[] = "system: x\nservices:\n  a:\n    instances: 99\n";
    assert_int_equal(sk_test_write_file(cfg, bad, sizeof(bad) - 1), SK_OK);
    RUN(cli_cmd_up, "up", "--config", cfg, "--data", data);
    assert_int_equal(rc, CLI_EXIT_USAGE);
    /* No data dir is created for a config error. */
    assert_int_equal(access(data, F_OK), -1);
    setenv("SKALD_GATEWAY_PORT", "x", 1);
    RUN(cli_cmd_up, "up", "--config", SK_SOURCE_DIR "/skald.yaml", "--data", data);
    unsetenv("SKALD_GATEWAY_PORT");
    assert_int_equal(rc, CLI_EXIT_USAGE);
    sk_test_rmrf(dir);
}

static void test_cli_cmd_status_not_running(void **state)
{
    char dir[64], run[96], url[128];
    int rc = -1, port = 0;
    (void)state;

    RUN(cli_cmd_status, "status", "--bogus");
    assert_int_equal(rc, CLI_EXIT_USAGE);
    RUN(cli_cmd_status, "status", "--help");
    assert_int_equal(rc, CLI_EXIT_OK);
    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    /* No nats.url. */
    RUN(cli_cmd_status, "status", "--data", dir);
    assert_int_equal(rc, CLI_EXIT_FAILURE);
    /* A nats.url but no CLI identity. */
    snprintf(run, sizeof(run), "%s/run", dir);
    assert_int_equal(cli_mkdir(run, 0700), SK_OK);
    assert_true(cli_port_is_free(0, &port));
    snprintf(url, sizeof(url), "%s/nats.url", run);
    char text[64];
    int n = snprintf(text, sizeof(text), "tls://127.0.0.1:%d\n", port);
    assert_int_equal(sk_test_write_file(url, text, (size_t)n), SK_OK);
    RUN(cli_cmd_status, "status", "--data", dir);
    assert_int_equal(rc, CLI_EXIT_FAILURE);
    sk_test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_cmd_up_usage_errors),
        cmocka_unit_test(test_cli_cmd_up_config_errors),
        cmocka_unit_test(test_cli_cmd_status_not_running),
    };
    if (sk_init("test-cli") != SK_OK) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
