/* SPDX-License-Identifier: MIT */
/*
 * svc_watchdog.c: the heartbeat to skald up's supervisor, on a real pipe.
 * What the environment may name (only a pipe open for writing is taken),
 * the pace of the beats, the beat withheld while the store writer is stuck
 * in one batch or the gateway's loop does not come round, a full pipe
 * (never blocks), a supervisor that is gone, and the thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "svc_int.h"

/* Bytes waiting in the pipe's read end (non-blocking). */
static size_t drain(int fd)
{
    char buf[4096];
    size_t total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        total += (size_t)n;
    }
    return total;
}

static void make_pipe(int fds[2])
{
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
}

/* A watchdog on a new pipe's write end, as skald up hands it over; fds[0] is ours to read. */
static void open_on_pipe(svc_watchdog *w, int fds[2], int64_t now_ms)
{
    char text[32];
    make_pipe(fds);
    snprintf(text, sizeof(text), "%d", fds[1]);
    svc__watchdog_open(w, text, now_ms);
    assert_int_equal(w->fd, fds[1]);
}

static void test_svc_watchdog_takes_only_a_pipe_for_writing(void **state)
{
    (void)state;
    svc_watchdog w;
    int fds[2];
    char text[32];

    svc__watchdog_open(&w, NULL, 0); /* not started by skald up */
    assert_int_equal(w.fd, -1);
    assert_false(svc__watchdog_tick(&w, 5000, 0, 0, 0));
    svc__watchdog_open(&w, "", 0);
    assert_int_equal(w.fd, -1);
    const char *bad[] = { "abc", "3x", "-4", "2", "0", "99999999999999999999", " 5" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        svc__watchdog_open(&w, bad[i], 0);
        assert_int_equal(w.fd, -1);
    }
    /* A descriptor that is not open, one that is a file, and a pipe's read end. */
    svc__watchdog_open(&w, "1000", 0);
    assert_int_equal(w.fd, -1);
    FILE *f = tmpfile();
    assert_non_null(f);
    snprintf(text, sizeof(text), "%d", fileno(f));
    svc__watchdog_open(&w, text, 0);
    assert_int_equal(w.fd, -1);
    fclose(f);
    make_pipe(fds);
    snprintf(text, sizeof(text), "%d", fds[0]);
    svc__watchdog_open(&w, text, 0);
    assert_int_equal(w.fd, -1);
    /* The write end is taken, made non-blocking and close-on-exec. */
    snprintf(text, sizeof(text), "%d", fds[1]);
    svc__watchdog_open(&w, text, 0);
    assert_int_equal(w.fd, fds[1]);
    assert_true(fcntl(fds[1], F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
    svc__watchdog_close(&w);
    assert_int_equal(w.fd, -1);
    assert_int_equal(fcntl(fds[1], F_GETFD), -1); /* closed */
    svc__watchdog_close(&w);                      /* twice: nothing */
    close(fds[0]);
}

static void test_svc_watchdog_beats_every_second_unless_stuck(void **state)
{
    (void)state;
    svc_watchdog w;
    int fds[2];

    open_on_pipe(&w, fds, 10000);
    /* The first tick beats at once, so the supervisor starts watching early. */
    assert_true(svc__watchdog_tick(&w, 10000, 0, 0, 0));
    assert_int_equal(drain(fds[0]), 1);
    assert_false(svc__watchdog_tick(&w, 10000 + SVC__WATCHDOG_BEAT_MS - 1, 0, 0, 0));
    assert_int_equal(drain(fds[0]), 0);
    assert_true(svc__watchdog_tick(&w, 10000 + SVC__WATCHDOG_BEAT_MS, 0, 0, 0));
    assert_int_equal(drain(fds[0]), 1);
    /* A writer busy in one batch, but not for long: still sound. */
    assert_true(svc__watchdog_tick(&w, 12000, SVC__WATCHDOG_STALL_MS, 0, 0));
    assert_int_equal(drain(fds[0]), 1);
    /* Stuck: no beat, however much time passes. */
    for (int64_t t = 13000; t < 30000; t += 1000) {
        assert_false(svc__watchdog_tick(&w, t, SVC__WATCHDOG_STALL_MS + t, 0, 0));
    }
    assert_int_equal(drain(fds[0]), 0);
    assert_true(w.is_withheld);
    /* It moved on: the beats come back at once. */
    assert_true(svc__watchdog_tick(&w, 30000, 0, 0, 0));
    assert_false(w.is_withheld);
    assert_int_equal(drain(fds[0]), 1);
    /* The gateway's loop stuck: the same. */
    assert_true(svc__watchdog_tick(&w, 31000, 0, SVC__WATCHDOG_STALL_MS, 0));
    assert_int_equal(drain(fds[0]), 1);
    assert_false(svc__watchdog_tick(&w, 32000, 0, SVC__WATCHDOG_STALL_MS + 1, 0));
    assert_true(w.is_withheld);
    assert_int_equal(drain(fds[0]), 0);
    assert_true(svc__watchdog_tick(&w, 33000, 0, 900, 0));
    assert_int_equal(drain(fds[0]), 1);
    /* A thread of the HTTP server stuck in one request: the same. */
    assert_true(svc__watchdog_tick(&w, 34000, 0, 0, SVC__WATCHDOG_STALL_MS));
    assert_int_equal(drain(fds[0]), 1);
    assert_false(svc__watchdog_tick(&w, 35000, 0, 0, SVC__WATCHDOG_STALL_MS + 1));
    assert_true(w.is_withheld);
    assert_int_equal(drain(fds[0]), 0);
    assert_true(svc__watchdog_tick(&w, 36000, 0, 0, 0));
    assert_int_equal(drain(fds[0]), 1);
    svc__watchdog_close(&w);
    close(fds[0]);
}

static void test_svc_watchdog_full_pipe_and_gone_supervisor(void **state)
{
    (void)state;
    svc_watchdog w;
    int fds[2];

    open_on_pipe(&w, fds, 0);
    /* Nobody reads: the pipe fills, and a tick neither blocks nor gives up. */
    int64_t t = 0;
    for (int i = 0; i < 200000 && w.fd >= 0; i++, t += SVC__WATCHDOG_BEAT_MS) {
        if (!svc__watchdog_tick(&w, t, 0, 0, 0)) {
            break; /* full */
        }
    }
    assert_int_equal(w.fd, fds[1]);
    assert_false(svc__watchdog_tick(&w, t + SVC__WATCHDOG_BEAT_MS, 0, 0, 0));
    assert_int_equal(w.fd, fds[1]);
    assert_true(drain(fds[0]) > 0);
    assert_true(svc__watchdog_tick(&w, t + 2 * SVC__WATCHDOG_BEAT_MS, 0, 0, 0));
    /* The supervisor is gone (its end closed): the heartbeat stops, quietly (SIGPIPE is ignored
     * in services, as here). */
    close(fds[0]);
    assert_false(svc__watchdog_tick(&w, t + 3 * SVC__WATCHDOG_BEAT_MS, 0, 0, 0));
    assert_int_equal(w.fd, -1);
    assert_false(svc__watchdog_tick(&w, t + 4 * SVC__WATCHDOG_BEAT_MS, 0, 0, 0));
}

/* Started, the sk-watchdog thread beats at once and then every second; stopped, it closes the pipe.
 */
static void test_svc_watchdog_thread_beats_and_closes(void **state)
{
    (void)state;
    svc_watchdog w;
    int fds[2];
    char buf[16];

    open_on_pipe(&w, fds, sk_time_mono_ms());
    assert_int_equal(fcntl(fds[0], F_SETFL, 0), 0); /* blocking reads from here on */
    svc__watchdog_start(&w);
    assert_true(w.has_thread);
    svc__watchdog_watch(&w, NULL, NULL, NULL);
    assert_int_equal(read(fds[0], buf, 1), 1);
    int64_t t0 = sk_time_mono_ms();
    assert_int_equal(read(fds[0], buf, 1), 1); /* the next one, about a second later */
    int64_t took = sk_time_mono_ms() - t0;
    assert_true(took >= SVC__WATCHDOG_BEAT_MS / 2);
    svc__watchdog_stop(&w);
    assert_false(w.has_thread);
    assert_int_equal(w.fd, -1);
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof(buf))) > 0) {
        /* what it wrote meanwhile */
    }
    assert_int_equal(n, 0); /* EOF: its end is closed */
    close(fds[0]);
    /* Unwatched: start and stop do nothing. */
    svc__watchdog_open(&w, NULL, 0);
    svc__watchdog_start(&w);
    assert_false(w.has_thread);
    svc__watchdog_stop(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svc_watchdog_takes_only_a_pipe_for_writing),
        cmocka_unit_test(test_svc_watchdog_beats_every_second_unless_stuck),
        cmocka_unit_test(test_svc_watchdog_full_pipe_and_gone_supervisor),
        cmocka_unit_test(test_svc_watchdog_thread_beats_and_closes),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
