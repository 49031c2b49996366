/* SPDX-License-Identifier: MIT */
/*
 * A minimal plain-HTTP GET for readiness checks of the gateway's public
 * listener (127.0.0.1 only). Non-blocking socket with poll, so the whole
 * exchange respects one deadline; only the status line is parsed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"

/* Wait until @p fd is ready for @p events or the deadline passes. */
static sk_status wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = events };
        int64_t left = deadline_ms - sk_time_mono_ms();
        if (left <= 0) {
            return SK_FAIL(SK_ETIMEDOUT, "no answer in time");
        }
        int n = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
        if (n > 0) {
            return SK_OK;
        }
        if (n < 0 && errno != EINTR) {
            return SK_FAIL(SK_EIO, "poll: %s", strerror(errno));
        }
    }
}

/* Parse "HTTP/1.x NNN" at the start of @p head. */
static sk_status parse_status_line(const char *head, size_t len, int *status)
{
    if (len < 12 || strncmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ') {
        return SK_FAIL(SK_EPROTO, "not an HTTP/1.x answer");
    }
    int v = 0;
    for (size_t i = 9; i < 12; i++) {
        if (head[i] < '0' || head[i] > '9') {
            return SK_FAIL(SK_EPROTO, "bad HTTP status code");
        }
        v = v * 10 + (head[i] - '0');
    }
    *status = v;
    return SK_OK;
}

sk_status cli_http_get_status(int port, const char *path, int64_t timeout_ms, int *status)
{
    sk_status st = SK_OK;
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    struct sockaddr_in sa;
    char req[512], head[64];
    size_t req_len, sent = 0, got = 0;
    int fd = -1, err = 0;
    socklen_t err_len = sizeof(err);

    if (status == NULL || path == NULL || path[0] != '/' || port < 1 || port > 65535) {
        return SK_FAIL(SK_EINVAL, "cli_http_get_status: bad port, path or status");
    }
    *status = 0;
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: skald-cli\r\n"
                     "Connection: close\r\n\r\n",
                     path, port);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        return SK_FAIL(SK_EINVAL, "cli_http_get_status: path too long");
    }
    req_len = (size_t)n;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return SK_FAIL(SK_EIO, "socket: %s", strerror(errno));
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (errno != EINPROGRESS) {
            st = SK_FAIL(SK_EUNAVAILABLE, "connecting to 127.0.0.1:%d: %s", port, strerror(errno));
            goto out;
        }
        st = wait_fd(fd, POLLOUT, deadline);
        if (st != SK_OK) {
            goto out;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 || err != 0) {
            st = SK_FAIL(SK_EUNAVAILABLE, "connecting to 127.0.0.1:%d: %s", port, strerror(err));
            goto out;
        }
    }
    while (sent < req_len) {
        ssize_t w = send(fd, req + sent, req_len - sent, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            st = wait_fd(fd, POLLOUT, deadline);
            if (st != SK_OK) {
                goto out;
            }
            continue;
        }
        if (w < 0) {
            st = SK_FAIL(SK_EIO, "sending to 127.0.0.1:%d: %s", port, strerror(errno));
            goto out;
        }
        sent += (size_t)w;
    }
    while (got < 12) {
        ssize_t r = recv(fd, head + got, sizeof(head) - 1 - got, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            st = wait_fd(fd, POLLIN, deadline);
            if (st != SK_OK) {
                goto out;
            }
            continue;
        }
        if (r <= 0) {
            st = SK_FAIL(r == 0 ? SK_EPROTO : SK_EIO, "reading from 127.0.0.1:%d: %s", port,
                         r == 0 ? "connection closed before an answer" : strerror(errno));
            goto out;
        }
        got += (size_t)r;
    }
    head[got] = '\0';
    st = parse_status_line(head, got, status);
out:
    if (fd >= 0) {
        close(fd);
    }
    return st;
}
