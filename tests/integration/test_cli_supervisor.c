/* SPDX-License-Identifier: MIT */
/*
 * CLI: the supervisor of `skald up` with real child processes (/bin/sh):
 * backoff computation, restart after an exit or a kill, stop order
 * (gateway, services, broker), SIGKILL after the grace period, a signal
 * arriving through the signalfd, and argument errors. Backoff delays are
 * scaled down so the tests take milliseconds, not seconds.
 */
/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sk_test.h"

static void test_cli_backoff_next_sequence(void **state)
{
    (void)state;
    assert_int_equal(cli_backoff_next(0, 0), 250);
    assert_int_equal(cli_backoff_next(250, 10), 500);
    assert_int_equal(cli_backoff_next(500, 10), 1000);
    assert_int_equal(cli_backoff_next(1000, 10), 2000);
    assert_int_equal(cli_backoff_next(2000, 10), 4000);
    assert_int_equal(cli_backoff_next(4000, 10), 8000);
    assert_int_equal(cli_backoff_next(8000, 10), 10000);
    assert_int_equal(cli_backoff_next(10000, 10), 10000);
    /* Reset once the child had run 30 s. */
    assert_int_equal(cli_backoff_next(10000, 29999), 10000);
    assert_int_equal(cli_backoff_next(10000, 30000), 250);
    assert_int_equal(cli_backoff_next(-5, 0), 250);
    assert_int_equal(cli_backoff_next(1, 0), 250);
}

typedef struct fixture {
    char dir[64];
    cli_supervisor *sup;
} fixture;

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    if (f == NULL || sk_test_tmpdir(f->dir, sizeof(f->dir)) != SK_OK ||
        cli_supervisor_create(&f->sup) != SK_OK) {
        sk_free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cli_supervisor_destroy(f->sup);
    sk_test_rmrf(f->dir);
    sk_free(f);
    return 0;
}

static sk_status spawn_sh(fixture *f, const char *name, cli_stop_phase phase, const char *script)
{
    char log[128];
    snprintf(log, sizeof(log), "%s/%s.log", f->dir, name);
    const char *argv[] = { "/bin/sh", "-c", script, name, NULL };
    return cli_supervisor_spawn(f->sup, name, phase, argv, log);
}

/* Poll the supervisor until @p cond holds or @p timeout_ms passes. */
typedef struct waiter {
    fixture *f;
    const char *name;
    unsigned restarts;
} waiter;

static bool restarted(void *ctx)
{
    waiter *w = ctx;
    cli_supervisor_poll(w->f->sup, 5);
    return cli_supervisor_restarts(w->f->sup, w->name) >= w->restarts &&
           cli_supervisor_pid(w->f->sup, w->name) != 0;
}

static void test_cli_supervisor_restarts_exited_child(void **state)
{
    fixture *f = *state;
    char script[256], *log = NULL;

    cli_supervisor_set_backoff_scale(f->sup, 1); /* 250 ms -> 2 ms */
    snprintf(script, sizeof(script), "echo run >> %s/count; exit 3", f->dir);
    assert_int_equal(spawn_sh(f, "crasher", CLI_PHASE_SERVICE, script), SK_OK);
    waiter w = { f, "crasher", 3 };
    assert_true(sk_test_wait_until(restarted, &w, 5000));
    char path[128];
    snprintf(path, sizeof(path), "%s/count", f->dir);
    log = sk_test_read_file(path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "run\nrun\nrun\n"));
    sk_free(log);
}

static void test_cli_supervisor_restarts_killed_child(void **state)
{
    fixture *f = *state;

    cli_supervisor_set_backoff_scale(f->sup, 1);
    assert_int_equal(spawn_sh(f, "victim", CLI_PHASE_SERVICE, "exec sleep 30"), SK_OK);
    pid_t first = cli_supervisor_pid(f->sup, "victim");
    assert_true(first > 0);
    assert_int_equal(cli_supervisor_running(f->sup), 1);
    assert_int_equal(kill(first, SIGKILL), 0);
    waiter w = { f, "victim", 1 };
    assert_true(sk_test_wait_until(restarted, &w, 5000));
    assert_true(cli_supervisor_pid(f->sup, "victim") != first);
    assert_int_equal(cli_supervisor_restarts(f->sup, "victim"), 1);
}

/*
 * Children append their name and the stop signal to a file: the file gives
 * the stop order, and that the broker (nats-server, which exits with status
 * 1 on SIGTERM) gets SIGINT.
 */
static void test_cli_supervisor_stop_order(void **state)
{
    fixture *f = *state;
    char script[512], path[128];

    snprintf(path, sizeof(path), "%s/order", f->dir);
    snprintf(script, sizeof(script),
             "trap 'echo $0 TERM >> %s; exit 0' TERM; trap 'echo $0 INT >> %s; exit 0' INT; "
             "while :; do sleep 0.05; done",
             path, path);
    /* Started in the reverse order, to show the phase decides. */
    assert_int_equal(spawn_sh(f, "broker", CLI_PHASE_BROKER, script), SK_OK);
    assert_int_equal(spawn_sh(f, "svc", CLI_PHASE_SERVICE, script), SK_OK);
    assert_int_equal(spawn_sh(f, "gw", CLI_PHASE_GATEWAY, script), SK_OK);
    assert_int_equal(cli_supervisor_running(f->sup), 3);
    cli_sleep_ms(100); /* let the shells install their traps; the assertion does not depend on it */
    cli_supervisor_stop_all(f->sup, 5000);
    assert_int_equal(cli_supervisor_running(f->sup), 0);
    char *text = sk_test_read_file(path, NULL);
    assert_non_null(text);
    assert_string_equal(text, "gw TERM\nsvc TERM\nbroker INT\n");
    sk_free(text);
    /* Nothing restarts after a stop. */
    cli_supervisor_poll(f->sup, 20);
    assert_int_equal(cli_supervisor_running(f->sup), 0);
}

static void test_cli_supervisor_kills_after_deadline(void **state)
{
    fixture *f = *state;

    assert_int_equal(
        spawn_sh(f, "stubborn", CLI_PHASE_SERVICE, "trap '' TERM; while :; do sleep 0.05; done"),
        SK_OK);
    cli_sleep_ms(100);
    int64_t t0 = sk_time_mono_ms();
    cli_supervisor_stop_all(f->sup, 200);
    int64_t took = sk_time_mono_ms() - t0;
    assert_int_equal(cli_supervisor_running(f->sup), 0);
    assert_true(took >= 190);
    assert_true(took < 5000);
}

static void test_cli_supervisor_sigterm_requests_stop(void **state)
{
    fixture *f = *state;

    assert_false(cli_supervisor_is_stopping(f->sup));
    assert_int_equal(kill(getpid(), SIGTERM), 0); /* blocked: read through the signalfd */
    int64_t deadline = sk_time_mono_ms() + 2000;
    while (!cli_supervisor_is_stopping(f->sup) && sk_time_mono_ms() < deadline) {
        cli_supervisor_poll(f->sup, 50);
    }
    assert_true(cli_supervisor_is_stopping(f->sup));
}

static void test_cli_supervisor_exec_failure_is_restarted(void **state)
{
    fixture *f = *state;
    char log[128];

    cli_supervisor_set_backoff_scale(f->sup, 1);
    snprintf(log, sizeof(log), "%s/missing.log", f->dir);
    const char *argv[] = { "/nonexistent/skald-nothing", NULL };
    assert_int_equal(cli_supervisor_spawn(f->sup, "missing", CLI_PHASE_SERVICE, argv, log), SK_OK);
    int64_t deadline = sk_time_mono_ms() + 5000;
    while (cli_supervisor_restarts(f->sup, "missing") < 2 && sk_time_mono_ms() < deadline) {
        cli_supervisor_poll(f->sup, 5);
    }
    assert_true(cli_supervisor_restarts(f->sup, "missing") >= 2);
    cli_supervisor_stop_all(f->sup, 1000);
    char *text = sk_test_read_file(log, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "skald: starting missing: /nonexistent/skald-nothing: cannot "
                                 "execute it (errno 2)")); /* ENOENT */
    sk_free(text);
}

static void test_cli_supervisor_spawn_errors(void **state)
{
    fixture *f = *state;
    char log[128];
    const char *argv[] = { "/bin/true", NULL };
    const char *empty[] = { NULL };

    snprintf(log, sizeof(log), "%s/x.log", f->dir);
    SK_TEST_ASSERT_ERR(cli_supervisor_spawn(NULL, "x", CLI_PHASE_SERVICE, argv, log), SK_EINVAL,
                       "cli_supervisor_spawn");
    SK_TEST_ASSERT_ERR(cli_supervisor_spawn(f->sup, NULL, CLI_PHASE_SERVICE, argv, log), SK_EINVAL,
                       "name");
    SK_TEST_ASSERT_ERR(cli_supervisor_spawn(f->sup, "", CLI_PHASE_SERVICE, argv, log), SK_EINVAL,
                       "name");
    SK_TEST_ASSERT_ERR(cli_supervisor_spawn(f->sup, "x", CLI_PHASE_SERVICE, empty, log), SK_EINVAL,
                       "argv[0]");
    SK_TEST_ASSERT_ERR(cli_supervisor_spawn(f->sup, "x", CLI_PHASE_SERVICE, argv, NULL), SK_EINVAL,
                       "log_path");
    SK_TEST_ASSERT_ERR(cli_supervisor_spawn(f->sup, "x", (cli_stop_phase)7, argv, log), SK_EINVAL,
                       "phase");
    SK_TEST_ASSERT_ERR(
        cli_supervisor_spawn(f->sup, "x", CLI_PHASE_SERVICE, argv, "/nonexistent/dir/x.log"),
        SK_EIO, "opening log /nonexistent/dir/x.log");
    assert_int_equal(cli_supervisor_spawn(f->sup, "x", CLI_PHASE_SERVICE, argv, log), SK_OK);
    SK_TEST_ASSERT_ERR(cli_supervisor_spawn(f->sup, "x", CLI_PHASE_SERVICE, argv, log), SK_EEXIST,
                       "a child named x exists");
    SK_TEST_ASSERT_ERR(cli_supervisor_create(NULL), SK_EINVAL, "out");
    assert_int_equal(cli_supervisor_pid(f->sup, "unknown"), 0);
    assert_int_equal(cli_supervisor_restarts(NULL, "x"), 0);
    assert_int_equal(cli_supervisor_running(NULL), 0);
    cli_supervisor_poll(NULL, 0);
    cli_supervisor_stop_all(NULL, 0);
    cli_supervisor_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_backoff_next_sequence),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_restarts_exited_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_restarts_killed_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_stop_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_kills_after_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_sigterm_requests_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_exec_failure_is_restarted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_spawn_errors, setup, teardown),
    };
    if (sk_init("test-cli") != SK_OK) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
