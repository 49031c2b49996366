/* SPDX-License-Identifier: MIT */
/*
 * sk_test_spawn (tests/support): a server a test starts must not outlive
 * the test process, however that ends. A forked "test process" spawns a
 * long sleep, reports its pid through a pipe and is killed with SIGKILL (no
 * atexit handler runs); the sleep must then end by SIGTERM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sk_test.h"

/* Whether the process in @p ctx runs the program "sleep" yet (it has exec'd). */
static bool is_sleeping(void *ctx)
{
    pid_t pid = *(pid_t *)ctx;
    char path[64], comm[32] = { 0 };
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    size_t n = fread(comm, 1, sizeof(comm) - 1, f);
    fclose(f);
    return n >= 5 && strncmp(comm, "sleep", 5) == 0;
}

static void test_spawned_child_ends_with_the_test_process(void **state)
{
    char dir[64];
    char log[128];
    int fds[2];
    (void)state;

    /* Orphans come to this process, so it can see how the spawned one ended. */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(log, sizeof(log), "%s/sleep.log", dir);
    assert_int_equal(pipe(fds), 0);
    pid_t test_process = fork();
    assert_true(test_process >= 0);
    if (test_process == 0) {
        char *argv[] = { (char *)"sleep", (char *)"60", NULL };
        int pid = 0;
        close(fds[0]);
        if (sk_test_spawn("/bin/sleep", argv, log, &pid) != SK_OK) {
            _exit(1);
        }
        pid_t spawned = (pid_t)pid;
        /* Past its prctl: a test process dying earlier makes the child exit by itself. */
        if (!sk_test_wait_until(is_sleeping, &spawned, 5000) ||
            write(fds[1], &pid, sizeof(pid)) != (ssize_t)sizeof(pid)) {
            _exit(1);
        }
        raise(SIGKILL); /* as a crash or CTest's timeout would: no cleanup runs */
        _exit(2);
    }
    close(fds[1]);
    int pid = 0;
    assert_int_equal(read(fds[0], &pid, sizeof(pid)), (ssize_t)sizeof(pid));
    close(fds[0]);
    assert_true(pid > 0);
    int status = 0;
    assert_int_equal(waitpid(test_process, &status, 0), test_process);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    /* The orphan is ours now: it must end, and by the parent-death signal. */
    pid_t spawned = (pid_t)pid;
    int64_t deadline = sk_time_mono_ms() + 5000;
    pid_t r = 0;
    while ((r = waitpid(spawned, &status, WNOHANG)) == 0 && sk_time_mono_ms() < deadline) {
        struct timespec ts = { 0, 2000000 };
        nanosleep(&ts, NULL);
    }
    if (r != spawned) {
        kill(spawned, SIGKILL); /* do not leave it behind when the assertion fails */
        waitpid(spawned, NULL, 0);
    }
    assert_int_equal(r, spawned);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    sk_test_rmrf(dir);
}

/* A program that cannot be run: the child exits 127 and the spawn itself succeeds. */
static void test_spawn_of_a_missing_program(void **state)
{
    char dir[64];
    char log[128];
    char *argv[] = { (char *)"missing", NULL };
    int pid = 0;
    int status = 0;
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(log, sizeof(log), "%s/missing.log", dir);
    assert_int_equal(sk_test_spawn("/nonexistent/program", argv, log, &pid), SK_OK);
    assert_int_equal(waitpid((pid_t)pid, &status, 0), (pid_t)pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 127);

    snprintf(log, sizeof(log), "%s/no/such/dir/x.log", dir);
    SK_TEST_ASSERT_ERR(sk_test_spawn("/bin/true", argv, log, &pid), SK_EIO, "opening");
    assert_int_equal(pid, 0);
    sk_test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawned_child_ends_with_the_test_process),
        cmocka_unit_test(test_spawn_of_a_missing_program),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
