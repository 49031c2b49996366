/* SPDX-License-Identifier: MIT */
/*
 * CLI: the supervisor of `skald up` with real child processes (/bin/sh):
 * backoff computation, restart after an exit or a kill, stop order
 * (gateway, services, broker), SIGKILL after the grace period, a signal
 * arriving through the signalfd, the watchdog (a child that stops writing
 * its heartbeat is killed and restarted), and argument errors. Backoff delays are
 * scaled down so the tests take milliseconds, not seconds.
 */
/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
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

/* Heartbeats every 50 ms on the watchdog pipe, as a service's main thread does every second. */
#define BEATING_SCRIPT "while :; do printf . >&$SKALD_WATCHDOG_FD || exit 9; sleep 0.05; done"

static bool watched(void *ctx)
{
    waiter *w = ctx;
    cli_supervisor_poll(w->f->sup, 5);
    return cli_supervisor_is_watched(w->f->sup, w->name);
}

/* Poll the supervisor for @p ms. */
static void poll_for(fixture *f, int64_t ms)
{
    int64_t until = sk_time_mono_ms() + ms;
    while (sk_time_mono_ms() < until) {
        cli_supervisor_poll(f->sup, 10);
    }
}

/* Start child @p w->name beating, with the watchdog's silence cut to @p timeout_ms; @return its pid
 * once watched. */
static pid_t start_beating(waiter *w, int64_t timeout_ms)
{
    cli_supervisor_set_backoff_scale(w->f->sup, 1);
    cli_supervisor_set_watchdog_timeout(w->f->sup, timeout_ms);
    assert_int_equal(spawn_sh(w->f, w->name, CLI_PHASE_SERVICE, BEATING_SCRIPT), SK_OK);
    assert_true(sk_test_wait_until(watched, w, 5000));
    return cli_supervisor_pid(w->f->sup, w->name);
}

/* A child that beats and then stops (SIGSTOP, as a debugger or ^Z would) is killed and restarted.
 */
static void test_cli_supervisor_watchdog_restarts_stopped_child(void **state)
{
    fixture *f = *state;
    waiter w = { f, "beater", 1 };
    pid_t first = start_beating(&w, 1000);

    /* Beating, it is left alone for several timeouts. */
    poll_for(f, 3000);
    assert_int_equal(cli_supervisor_pid(f->sup, "beater"), first);
    assert_int_equal(cli_supervisor_restarts(f->sup, "beater"), 0);
    assert_int_equal(kill(first, SIGSTOP), 0);
    assert_true(sk_test_wait_until(restarted, &w, 5000));
    pid_t second = cli_supervisor_pid(f->sup, "beater");
    assert_true(second != first);
    assert_int_equal(kill(first, 0), -1); /* the stopped one is gone, reaped */
    /* The new one is watched again, and killed again when it stops. */
    assert_true(sk_test_wait_until(watched, &w, 5000));
    assert_int_equal(kill(second, SIGSTOP), 0);
    w.restarts = 2;
    assert_true(sk_test_wait_until(restarted, &w, 5000));
    assert_true(cli_supervisor_pid(f->sup, "beater") != second);
}

/*
 * skald frozen with its children (a paused container, a suspended machine):
 * when it runs again before they do, their silence while frozen is not
 * counted. Here the child is stopped and the supervisor not polled for
 * longer than the timeout; at the first poll nothing is killed, and once
 * the child runs again it beats on.
 */
static void test_cli_supervisor_watchdog_forgives_a_frozen_system(void **state)
{
    fixture *f = *state;
    waiter w = { f, "frozen", 1 };
    pid_t child = start_beating(&w, 1000);

    assert_int_equal(kill(child, SIGSTOP), 0);
    cli_supervisor_poll(f->sup, 0);          /* read what it wrote before it stopped */
    const struct timespec frozen = { 6, 0 }; /* over WATCHDOG_FROZEN_MS (5 s) without a poll */
    assert_int_equal(nanosleep(&frozen, NULL), 0);
    cli_supervisor_poll(f->sup, 0);
    assert_int_equal(cli_supervisor_pid(f->sup, "frozen"), child);
    assert_int_equal(kill(child, SIGCONT), 0);
    poll_for(f, 3000);
    assert_int_equal(cli_supervisor_pid(f->sup, "frozen"), child);
    assert_int_equal(cli_supervisor_restarts(f->sup, "frozen"), 0);
    assert_true(cli_supervisor_is_watched(f->sup, "frozen"));
}

/*
 * A child held by a debugger (here a process of our own that attached with
 * PTRACE_SEIZE, as gdb or strace would) is left alone however long it is
 * silent; once the tracer is gone, the silence counts again.
 */
static void test_cli_supervisor_watchdog_spares_a_traced_child(void **state)
{
    fixture *f = *state;
    waiter w = { f, "traced", 1 };
    pid_t child = start_beating(&w, 1000);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t tracer = fork();
    assert_true(tracer >= 0);
    if (tracer == 0) {
        char ok = ptrace(PTRACE_SEIZE, child, NULL, NULL) == 0 ? 'y' : 'n';
        (void)!write(ready[1], &ok, 1);
        for (;;) {
            pause(); /* holds the child until killed */
        }
    }
    close(ready[1]);
    char ok = 0;
    assert_int_equal(read(ready[0], &ok, 1), 1);
    close(ready[0]);
    if (ok != 'y') {
        kill(tracer, SIGKILL);
        waitpid(tracer, NULL, 0);
        fprintf(stderr,
                "skipped: PTRACE_SEIZE of a sibling is not allowed here (Yama ptrace_scope?)\n");
        skip();
    }
    assert_int_equal(kill(child, SIGSTOP), 0);
    poll_for(f, 3000); /* three timeouts */
    assert_int_equal(cli_supervisor_pid(f->sup, "traced"), child);
    assert_int_equal(cli_supervisor_restarts(f->sup, "traced"), 0);
    /* The tracer ends; the child is still stopped and silent: killed and restarted. */
    assert_int_equal(kill(tracer, SIGKILL), 0);
    assert_int_equal(waitpid(tracer, NULL, 0), tracer);
    assert_true(sk_test_wait_until(restarted, &w, 5000));
    assert_true(cli_supervisor_pid(f->sup, "traced") != child);
}

/*
 * Only a child that has written is watched: one that never writes (a program
 * that knows nothing of the pipe) and one that closed its end (a service
 * stopping on purpose) run on. nats-server's phase gets neither the pipe nor
 * the variable.
 */
static void test_cli_supervisor_watchdog_only_watches_writers(void **state)
{
    fixture *f = *state;
    char script[512], path[160];

    cli_supervisor_set_watchdog_timeout(f->sup, 1000);
    assert_int_equal(spawn_sh(f, "silent", CLI_PHASE_SERVICE, "exec sleep 30"), SK_OK);
    assert_int_equal(spawn_sh(f, "closer", CLI_PHASE_SERVICE,
                              "printf . >&$SKALD_WATCHDOG_FD; exec 3>&-; exec sleep 30"),
                     SK_OK);
    snprintf(path, sizeof(path), "%s/broker.env", f->dir);
    /* Its descriptor 3 is what this process has there, if inherited (ctest may leave one open), not
     * a pipe of ours. (No command substitution: its own pipe would be the shell's descriptor 3.) */
    snprintf(script, sizeof(script),
             "echo \"var=${SKALD_WATCHDOG_FD:-none}\" > %s; "
             "readlink /proc/$$/fd/3 >> %s; exec sleep 30",
             path, path);
    assert_int_equal(spawn_sh(f, "broker", CLI_PHASE_BROKER, script), SK_OK);
    pid_t silent = cli_supervisor_pid(f->sup, "silent");
    pid_t closer = cli_supervisor_pid(f->sup, "closer");
    pid_t broker = cli_supervisor_pid(f->sup, "broker");
    poll_for(f, 3000);
    assert_int_equal(cli_supervisor_pid(f->sup, "silent"), silent);
    assert_int_equal(cli_supervisor_pid(f->sup, "closer"), closer);
    assert_int_equal(cli_supervisor_pid(f->sup, "broker"), broker);
    assert_false(cli_supervisor_is_watched(f->sup, "silent"));
    assert_false(cli_supervisor_is_watched(f->sup, "closer"));
    char own_fd3[256] = "";
    int own_flags = fcntl(3, F_GETFD);
    ssize_t n = readlink("/proc/self/fd/3", own_fd3, sizeof(own_fd3) - 1);
    own_fd3[n > 0 ? n : 0] = '\0';
    bool is_inherited = own_flags >= 0 && (own_flags & FD_CLOEXEC) == 0;
    char expected[320];
    snprintf(expected, sizeof(expected), "var=none\n%s%s", is_inherited ? own_fd3 : "",
             is_inherited ? "\n" : "");
    char *text = sk_test_read_file(path, NULL);
    assert_non_null(text);
    assert_string_equal(text, expected);
    sk_free(text);
}

/* The variable names descriptor 3 even when skald itself was started with another value. */
static void test_cli_supervisor_watchdog_environment(void **state)
{
    fixture *f = *state;
    char script[512], path[160];

    assert_int_equal(setenv("SKALD_WATCHDOG_FD", "7", 1), 0);
    snprintf(path, sizeof(path), "%s/env", f->dir);
    snprintf(script, sizeof(script),
             "env | grep -c '^SKALD_WATCHDOG_FD=' > %s; echo \"$SKALD_WATCHDOG_FD\" >> %s", path,
             path);
    assert_int_equal(spawn_sh(f, "env", CLI_PHASE_GATEWAY, script), SK_OK);
    assert_int_equal(unsetenv("SKALD_WATCHDOG_FD"), 0);
    char *text = NULL;
    for (int i = 0; i < 500 && (text == NULL || strchr(text, '\n') == strrchr(text, '\n')); i++) {
        sk_free(text);
        poll_for(f, 10);
        text = sk_test_read_file(path, NULL);
    }
    assert_non_null(text);
    assert_string_equal(text, "1\n3\n");
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
        cmocka_unit_test_setup_teardown(test_cli_supervisor_watchdog_restarts_stopped_child, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_watchdog_only_watches_writers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_watchdog_spares_a_traced_child, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_watchdog_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_supervisor_watchdog_forgives_a_frozen_system,
                                        setup, teardown),
    };
    if (sk_init("test-cli") != SK_OK) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
