/* SPDX-License-Identifier: MIT */
/*
 * Test fixture: a real nats-server with JetStream, started as a child
 * process on a free loopback port with its store in a temporary directory.
 * It can be killed (SIGKILL) and restarted on the same port and store to
 * test crashes. Not thread-safe: drive it from the test's main thread.
 */
#ifndef SK_TEST_NATS_H
#define SK_TEST_NATS_H

#include <stdbool.h>

#include <skald/core.h>

/** TLS settings of the server; all NULL for a plain server. */
typedef struct sk_test_nats_options {
    const char *cert_file; /* server certificate (PEM) */
    const char *key_file;
    const char *ca_file;   /* CA that signs client certificates */
    bool verify;           /* require a client certificate (mTLS) */
    bool no_jetstream;     /* a core-NATS-only server: JetStream requests get no responders */
} sk_test_nats_options;

typedef struct sk_test_nats sk_test_nats;

/**
 * Start nats-server (found on PATH or at /usr/bin/nats-server or
 * /usr/sbin/nats-server) and wait, at most 5 s, until its port accepts
 * connections.
 * @param opt NULL for a plain server.
 * @param[out] out owned, sk_test_nats_stop.
 * @return SK_OK, SK_EINVAL, SK_ENOTFOUND (no nats-server), SK_EIO, SK_ETIMEDOUT, SK_ENOMEM.
 */
SK_NODISCARD sk_status sk_test_nats_start(sk_test_nats **out, const sk_test_nats_options *opt);
/** "nats://127.0.0.1:PORT" or "tls://127.0.0.1:PORT"; borrowed. */
const char *sk_test_nats_url(const sk_test_nats *n);
/** Directory of the server's config, log and JetStream store; borrowed. */
const char *sk_test_nats_dir(const sk_test_nats *n);
/** The server's process id (benchmarks read its CPU time); 0 when it is not running. */
long sk_test_nats_pid(const sk_test_nats *n);
/** SIGTERM, wait for the process, remove the directory. NULL-safe. */
void sk_test_nats_stop(sk_test_nats *n);
/** SIGKILL and wait (a crash); the store stays for sk_test_nats_restart. */
void sk_test_nats_kill(sk_test_nats *n);
/** Start again on the same port with the same store (after kill). */
SK_NODISCARD sk_status sk_test_nats_restart(sk_test_nats *n);

#endif /* SK_TEST_NATS_H */
