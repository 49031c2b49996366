/* SPDX-License-Identifier: MIT */
/*
 * `skald bench`: its libcurl multi handle driven by epoll (libcurl's
 * "multi_socket" interface). libcurl says which sockets it wants watched and
 * when its next timeout falls; the loop waits on exactly those and hands
 * libcurl only the sockets that are ready. curl_multi_perform followed by
 * curl_multi_poll, used before, checked every transfer's socket with a
 * poll() of its own on every wake-up: at 700 orders/s and 64 connections
 * that was a third of the benchmark client's CPU.
 *
 * Another thread (the NATS callback) wakes the loop through an eventfd.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cli.h"

/* Ready sockets taken per epoll_wait; more wait for the next round. */
#define LOOP_EVENTS 64

static int64_t mono_us(void)
{
    return sk_time_mono_ns() / 1000;
}

/* libcurl: watch @p s for @p what, or stop watching it (CURL_POLL_REMOVE). */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    cli_curl_loop *l = userp;
    struct epoll_event ev = { 0 };
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        /* The socket may be closed already, which took it out of the set. */
        (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    ev.events =
        ((what & CURL_POLL_IN) != 0 ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) != 0 ? EPOLLOUT : 0);
    ev.data.fd = s;
    /* socketp is set once the socket is in the set (libcurl forgets it on REMOVE). */
    int op = socketp != NULL ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(l->epfd, op, s, &ev) != 0) {
        op = errno == EEXIST ? EPOLL_CTL_MOD : errno == ENOENT ? EPOLL_CTL_ADD : -1;
        if (op < 0 || epoll_ctl(l->epfd, op, s, &ev) != 0) {
            /* Not -1: libcurl 7.88 would mark the whole multi handle dead. The transfers on
             * this socket never see it ready and end at their CURLOPT_TIMEOUT_MS instead. */
            return 0;
        }
    }
    if (socketp == NULL) {
        curl_multi_assign(l->multi, s, l);
    }
    return 0;
}

/* libcurl: call back with CURL_SOCKET_TIMEOUT in @p timeout_ms (-1: no timer). */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    cli_curl_loop *l = userp;
    (void)multi;
    l->timer_due_us = timeout_ms < 0 ? -1 : mono_us() + (int64_t)timeout_ms * 1000;
    return 0;
}

sk_status cli_curl_loop_init(cli_curl_loop *l, CURLM *multi)
{
    struct epoll_event ev = { .events = EPOLLIN };

    l->multi = multi;
    l->timer_due_us = -1;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ev.data.fd = l->wakefd;
    if (l->epfd < 0 || l->wakefd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) != 0) {
        sk_status st = SK_FAIL(SK_EIO, "bench: setting up epoll: %s", strerror(errno));
        cli_curl_loop_fini(l);
        return st;
    }
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, l);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, l);
    return SK_OK;
}

void cli_curl_loop_fini(cli_curl_loop *l)
{
    if (l->multi != NULL) {
        curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, NULL);
        curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, NULL);
        l->multi = NULL;
    }
    if (l->epfd >= 0) {
        close(l->epfd);
    }
    if (l->wakefd >= 0) {
        close(l->wakefd);
    }
    l->epfd = l->wakefd = -1;
}

void cli_curl_loop_run(cli_curl_loop *l, int wait_ms)
{
    struct epoll_event ev[LOOP_EVENTS];
    int running = 0;

    if (l->timer_due_us >= 0) {
        int64_t until = l->timer_due_us - mono_us();
        int until_ms = until <= 0 ? 0 : (int)((until + 999) / 1000);
        wait_ms = until_ms < wait_ms ? until_ms : wait_ms;
    }
    int n = epoll_wait(l->epfd, ev, LOOP_EVENTS, wait_ms);
    for (int i = 0; i < n; i++) {
        if (ev[i].data.fd == l->wakefd) {
            uint64_t count;
            while (read(l->wakefd, &count, sizeof(count)) > 0) {
            }
            continue;
        }
        int flags = ((ev[i].events & EPOLLIN) != 0 ? CURL_CSELECT_IN : 0) |
                    ((ev[i].events & EPOLLOUT) != 0 ? CURL_CSELECT_OUT : 0) |
                    ((ev[i].events & (EPOLLERR | EPOLLHUP)) != 0 ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(l->multi, ev[i].data.fd, flags, &running);
    }
    /* The timer may have been moved by the actions above; a due one runs now. */
    if (l->timer_due_us >= 0 && mono_us() >= l->timer_due_us) {
        l->timer_due_us = -1;
        curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

void cli_curl_loop_wake(cli_curl_loop *l)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is full, so a wake-up is pending anyway. */
    ssize_t n = write(l->wakefd, &one, sizeof(one));
    (void)n;
}
