/* SPDX-License-Identifier: MIT */
/*
 * A libcurl multi handle driven by epoll (libcurl's "multi_socket"
 * interface). libcurl says which sockets it wants watched and when its next
 * timeout falls; the loop waits on exactly those and hands libcurl only the
 * sockets that are ready. curl_multi_perform followed by curl_multi_poll,
 * used before, checked every transfer's socket with a poll() of its own on
 * every wake-up: at 700 orders/s and 64 connections that was a third of the
 * benchmark client's CPU, and at 1,000 orders/s 17 poll() and 14 recvfrom()
 * calls per order on the gateway's thread.
 *
 * Another thread wakes the loop through an eventfd.
 */
#include "mesh/curl_loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Ready descriptors taken per epoll_wait; more wait for the next round. */
#define LOOP_EVENTS 64

static int64_t mono_us(void)
{
    return sk_time_mono_ns() / 1000;
}

/* libcurl: watch @p s for @p what, or stop watching it (CURL_POLL_REMOVE). */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    sk__curl_loop *l = userp;
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
    sk__curl_loop *l = userp;
    (void)multi;
    l->timer_due_us = timeout_ms < 0 ? -1 : mono_us() + (int64_t)timeout_ms * 1000;
    return 0;
}

sk_status sk__curl_loop_init(sk__curl_loop *l, CURLM *multi)
{
    struct epoll_event ev = { .events = EPOLLIN };

    l->multi = multi;
    l->timer_due_us = -1;
    l->guest_fd = -1;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ev.data.fd = l->wakefd;
    if (l->epfd < 0 || l->wakefd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) != 0) {
        sk_status st = SK_FAIL(SK_EIO, "setting up the HTTP client's epoll: %s", strerror(errno));
        sk__curl_loop_fini(l);
        return st;
    }
    if (curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, l) != CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
        curl_multi_setopt(multi, CURLMOPT_TIMERDATA, l) != CURLM_OK) {
        sk__curl_loop_fini(l);
        return SK_FAIL(SK_EINTERNAL, "setting libcurl's socket and timer callbacks");
    }
    return SK_OK;
}

void sk__curl_loop_fini(sk__curl_loop *l)
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
    l->epfd = l->wakefd = l->guest_fd = -1;
}

sk_status sk__curl_loop_watch(sk__curl_loop *l, int fd)
{
    struct epoll_event ev = { .events = EPOLLIN };

    if (l->guest_fd >= 0) {
        (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->guest_fd, NULL); /* may be closed already */
        l->guest_fd = -1;
    }
    if (fd < 0) {
        return SK_OK;
    }
    ev.data.fd = fd;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        return SK_FAIL(SK_EIO, "watching descriptor %d: %s", fd, strerror(errno));
    }
    l->guest_fd = fd;
    return SK_OK;
}

bool sk__curl_loop_run(sk__curl_loop *l, int wait_ms)
{
    struct epoll_event ev[LOOP_EVENTS];
    bool is_guest_ready = false;
    int running = 0;

    if (l->timer_due_us >= 0) {
        int64_t until = l->timer_due_us - mono_us();
        int until_ms = until <= 0 ? 0 : (int)((until + 999) / 1000);
        wait_ms = until_ms < wait_ms ? until_ms : wait_ms;
    }
    int n = epoll_wait(l->epfd, ev, LOOP_EVENTS, wait_ms);
    for (int i = 0; i < n; i++) {
        int fd = ev[i].data.fd;
        if (fd == l->wakefd) {
            uint64_t count;
            while (read(l->wakefd, &count, sizeof(count)) > 0) {
            }
            continue;
        }
        if (fd == l->guest_fd) {
            is_guest_ready = true;
            continue;
        }
        int flags = ((ev[i].events & EPOLLIN) != 0 ? CURL_CSELECT_IN : 0) |
                    ((ev[i].events & EPOLLOUT) != 0 ? CURL_CSELECT_OUT : 0) |
                    ((ev[i].events & (EPOLLERR | EPOLLHUP)) != 0 ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(l->multi, fd, flags, &running);
    }
    /* The timer may have been moved by the actions above; a due one runs now. */
    if (l->timer_due_us >= 0 && mono_us() >= l->timer_due_us) {
        l->timer_due_us = -1;
        curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    return is_guest_ready;
}

void sk__curl_loop_wake(sk__curl_loop *l)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is full, so a wake-up is pending anyway. */
    ssize_t n = write(l->wakefd, &one, sizeof(one));
    (void)n;
}
