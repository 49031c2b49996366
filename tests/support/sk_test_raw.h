/* SPDX-License-Identifier: MIT */
/*
 * Raw client connections for hostile-input tests (header-only): plain TCP or
 * TLS through OpenSSL directly (any protocol version, with or without a
 * client certificate), byte-exact writes, reads with a deadline, and a wait
 * for the peer to close. Every wait is poll(2) with a deadline, never a
 * sleep. Ignore SIGPIPE in the test's main: writes to a closed peer fail.
 */
#ifndef SK_TEST_RAW_H
#define SK_TEST_RAW_H

/* OpenSSL's pre-1.1 stack macros include `sk_free`, which collides with ours: hide them. */
#ifndef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 30000
#endif
#ifndef OPENSSL_NO_DEPRECATED
#define OPENSSL_NO_DEPRECATED
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <skald/core.h>

typedef struct sk_raw {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl; /* NULL: plain */
    bool is_closed;
} sk_raw;

/** Connect to 127.0.0.1:@p port. @return false when the connection failed. */
static inline bool sk_raw_connect(sk_raw *c, int port)
{
    struct sockaddr_in sin;
    struct timeval tv = { 5, 0 };

    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        return false;
    }
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A bound on every blocking call, so that no test can hang on a silent server. */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
}

/**
 * TLS handshake on a connected @p c. @p ca verifies the server (NULL: no
 * verification); @p cert/@p key the client identity (NULL: none);
 * @p min_version/@p max_version e.g. TLS1_VERSION (0: OpenSSL's default).
 * Versions below 1.2 need security level 0 in OpenSSL 3 to be offered at
 * all, so the cipher list drops to it whenever @p max_version is below 1.2.
 * @return true when the handshake succeeded.
 */
static inline bool sk_raw_tls(
    sk_raw *c, const char *ca, const char *cert, const char *key, int min_version, int max_version)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        return false;
    }
    if (ca != NULL) {
        SSL_CTX_load_verify_locations(c->ctx, ca, NULL);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cert != NULL && (SSL_CTX_use_certificate_file(c->ctx, cert, SSL_FILETYPE_PEM) != 1 ||
                         SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1)) {
        return false;
    }
    if (min_version != 0) {
        SSL_CTX_set_min_proto_version(c->ctx, min_version);
    }
    if (max_version != 0) {
        SSL_CTX_set_max_proto_version(c->ctx, max_version);
    }
    if (max_version != 0 && max_version < TLS1_2_VERSION) {
        SSL_CTX_set_security_level(c->ctx, 0);
        SSL_CTX_set_cipher_list(c->ctx, "ALL:@SECLEVEL=0");
    }
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL) {
        return false;
    }
    SSL_set_fd(c->ssl, c->fd);
    bool ok = SSL_connect(c->ssl) == 1;
    ERR_clear_error();
    return ok;
}

/** Write all of @p data. @return false when the peer is gone. */
static inline bool sk_raw_send(sk_raw *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n;
        if (c->ssl != NULL) {
            int k = SSL_write(c->ssl, p, len > 65536 ? 65536 : (int)len);
            ERR_clear_error();
            n = k > 0 ? k : -1;
        } else {
            n = send(c->fd, p, len, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
        }
        if (n <= 0) {
            c->is_closed = true;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static inline bool sk_raw_send_str(sk_raw *c, const char *s)
{
    return sk_raw_send(c, s, strlen(s));
}

/*
 * Read what is there within @p timeout_ms into @p buf (appending at *len,
 * NUL-terminated). Sets c->is_closed on end of file or error.
 * @return false when nothing arrived before the deadline.
 */
static inline bool
sk_raw_read_some(sk_raw *c, char *buf, size_t cap, size_t *len, int64_t timeout_ms)
{
    struct pollfd pfd = { c->fd, POLLIN, 0 };
    ssize_t n;

    if (*len + 1 >= cap) {
        *len = 0; /* discard: the caller only looks for the end */
    }
    if (c->ssl == NULL || SSL_pending(c->ssl) == 0) {
        int rc = poll(&pfd, 1, (int)(timeout_ms < 0 ? 0 : timeout_ms));
        if (rc == 0) {
            return false;
        }
    }
    if (c->ssl != NULL) {
        int k = SSL_read(c->ssl, buf + *len, (int)(cap - 1 - *len));
        ERR_clear_error();
        n = k;
    } else {
        n = recv(c->fd, buf + *len, cap - 1 - *len, 0);
    }
    if (n <= 0) {
        c->is_closed = true;
        buf[*len] = '\0';
        return true;
    }
    *len += (size_t)n;
    buf[*len] = '\0';
    return true;
}

/*
 * Read one HTTP response (headers, then Content-Length bytes) or until the
 * peer closes, within @p timeout_ms. @return the status code, 0 when none.
 */
static inline int sk_raw_response(sk_raw *c, char *buf, size_t cap, int64_t timeout_ms)
{
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    size_t len = 0;

    buf[0] = '\0';
    while (!c->is_closed && sk_time_mono_ms() < deadline) {
        SK_IGNORE(sk_raw_read_some(c, buf, cap, &len, deadline - sk_time_mono_ms()));
        const char *end = strstr(buf, "\r\n\r\n");
        if (end != NULL) {
            const char *cl = strstr(buf, "Content-Length: ");
            size_t want = cl != NULL && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
            if (len - (size_t)(end + 4 - buf) >= want) {
                break;
            }
        }
    }
    int status = 0;
    if (strncmp(buf, "HTTP/1.", 7) == 0 && strlen(buf) > 12) {
        status = atoi(buf + 9);
    }
    return status;
}

/** Wait up to @p timeout_ms for the peer to close, discarding what it sends. @return true when
 * closed. */
static inline bool sk_raw_wait_closed(sk_raw *c, int64_t timeout_ms)
{
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    char buf[4096];
    size_t len = 0;

    while (!c->is_closed && sk_time_mono_ms() < deadline) {
        len = 0;
        SK_IGNORE(sk_raw_read_some(c, buf, sizeof(buf), &len, deadline - sk_time_mono_ms()));
    }
    return c->is_closed;
}

static inline void sk_raw_close(sk_raw *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
    }
    if (c->ctx != NULL) {
        SSL_CTX_free(c->ctx);
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    ERR_clear_error();
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

#endif /* SK_TEST_RAW_H */
