/* SPDX-License-Identifier: MIT */
/*
 * Shared parts of bench_relay and bench_consumer: the command line, a
 * private nats-server (mTLS by default, as the services use it), an sk_bus
 * and a raw nats.c connection presenting the same certificate, the
 * ~300-byte payload, the CloudEvents headers the relay sets, CPU time and
 * the report. Benchmark code: single-threaded setup, not a library.
 */
#ifndef BENCH_MSG_COMMON_H
#define BENCH_MSG_COMMON_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <skald/mesh.h>
#include <skald/msg.h>

#include "sk_test_nats.h"
#include "sk_test_pki.h"

/* ---------------------------------------------------------------- options */

typedef struct bmsg_opts {
    size_t n_messages;
    int rounds;
    bool is_tls;
    bool is_json;
} bmsg_opts;

/**
 * Parse `--messages N --rounds R --plain|--tls --json`.
 * @return 0 to go on, 2 after printing the usage (bad arguments or --help).
 */
int bmsg_opts_parse(bmsg_opts *o, int argc, char **argv, const char *prog, size_t default_n);

/* ---------------------------------------------------------------- server and connections */

typedef struct bmsg_env {
    bool is_tls;
    bool has_pki;
    sk_test_pki pki;
    sk_tls_files server; /* nats-server's identity (IP SAN 127.0.0.1) */
    sk_tls_files client; /* the benchmark's identity, used by the bus and the raw connection */
    sk_test_nats *nats;
    char dir[64];        /* fresh /tmp directory for the databases */
} bmsg_env;

/** Start nats-server (JetStream, file storage in a fresh /tmp dir) with or without mTLS. */
SK_NODISCARD sk_status bmsg_env_start(bmsg_env *e, bool is_tls);
/** Stop the server by its PID, remove every directory. Idempotent. */
void bmsg_env_stop(bmsg_env *e);
/** Open an sk_bus on the server and wait (at most 5 s) until it is connected. */
SK_NODISCARD sk_status bmsg_bus_open(bmsg_env *e, const char *name, sk_bus **out);
/** Open a raw nats.c connection with the same TLS files as the bus. */
SK_NODISCARD sk_status bmsg_conn_open(bmsg_env *e, const char *name, natsConnection **out);
/** "mTLS (client certificates)" or "plain TCP". */
const char *bmsg_transport(const bmsg_env *e);

/** Map a nats.c failure to SK_EBUS with its text ("what: text (jetstream error N)"). */
sk_status bmsg_nats_fail(natsStatus s, jsErrCode jerr, const char *what);

/* ---------------------------------------------------------------- messages */

/** Longest payload bmsg_payload writes (with its NUL). */
#define BMSG_PAYLOAD_MAX 400

/**
 * The data of message @p n: a compact JSON order object of ~300 bytes,
 * byte for byte what sk_json_dumps prints for it once parsed.
 * @return its length.
 */
int bmsg_payload(uint64_t n, char *out);

/** One message's envelope, with the strings it points to and its ce-time text. */
typedef struct bmsg_event {
    sk_envelope env;
    char aggregate[32];
    char time[SK_RFC3339_LEN];
} bmsg_event;

/**
 * @p n fresh envelopes (UUIDv7 ids, new traces), type @p type, source
 * "bench", aggregate "ord-<n>". @return owned (sk_free), NULL on out of memory.
 */
bmsg_event *bmsg_events_create(size_t n, const char *type);

/**
 * A message on @p subject with the headers the outbox relay publishes for
 * an envelope (ce-specversion, ce-id, ce-type, ce-source, ce-time,
 * ce-subject, ce-schemaversion, traceparent, Nats-Msg-Id, content-type).
 */
natsStatus bmsg_msg_create(natsMsg **out, const char *subject, const bmsg_event *ev,
                           const char *data, int len);

/**
 * Publish events[0..n) on @p subject with js_PublishMsgAsync (Nats-Msg-Id
 * set, at most @p max_pending in flight, the relay's 5 s stall wait), then
 * js_PublishAsyncComplete. Payload of message i is bmsg_payload(first + i).
 * @param[out] n_acked publishes acknowledged without error.
 */
SK_NODISCARD sk_status bmsg_publish_async(natsConnection *nc, const char *subject,
                                          const bmsg_event *events, size_t n, uint64_t first,
                                          int64_t max_pending, size_t *n_acked);

/** Messages stored in @p stream. */
SK_NODISCARD sk_status bmsg_stream_count(jsCtx *js, const char *stream, uint64_t *out);

/* ---------------------------------------------------------------- measuring */

/**
 * CPU time of the environment's nats-server, in microseconds (from /proc, at
 * clock-tick resolution); -1 when it cannot be read.
 */
int64_t bmsg_server_cpu_us(const bmsg_env *e);

/** Sleep @p ms milliseconds (polling loops outside the measured work). */
void bmsg_sleep_ms(int64_t ms);

/** One contender's figures. */
typedef struct bmsg_result {
    const char *name;
    size_t n;
    double seconds;
    double cpu_us;        /* whole process */
    double server_cpu_us; /* nats-server over the same window; -1: unknown */
} bmsg_result;

/** The clocks a contender's run is measured with: wall, this process's CPU, nats-server's CPU. */
typedef struct bmsg_meter {
    const bmsg_env *e;
    int64_t t0_ns;
    int64_t cpu0_us;
    int64_t server0_us;
} bmsg_meter;

/** Start the clocks (the measured work begins right after). */
void bmsg_meter_start(bmsg_meter *m, const bmsg_env *e);
/** Set @p r's seconds, cpu_us and server_cpu_us from @p m's start to now. */
void bmsg_meter_stop(const bmsg_meter *m, bmsg_result *r);

double bmsg_rate(const bmsg_result *r);
double bmsg_cpu_per_msg(const bmsg_result *r);
/** nats-server's CPU per message; -1 when unknown. */
double bmsg_server_cpu_per_msg(const bmsg_result *r);
/** "NAME: N msgs in S s = R msg/s, CPU C us/msg + nats-server S us/msg" on stdout. */
void bmsg_result_print(const char *indent, const bmsg_result *r);
/**
 * The result as a JSON object {name, messages, seconds, rate, cpu_us_per_msg,
 * server_cpu_us_per_msg (null when unknown)}; NULL on ENOMEM.
 */
json_t *bmsg_result_json(const bmsg_result *r);

/** Print @p j (taken; NULL means json_pack ran out of memory) as one line on stdout. */
sk_status bmsg_json_print(json_t *j);

/** Print "min / median / max" of @p v[0..n) with @p label. */
void bmsg_spread_print(const char *label, const double *v, size_t n);
double bmsg_median(const double *v, size_t n);

/** Remove @p name, @p name-wal and @p name-shm under @p dir (missing files are fine). */
void bmsg_db_remove(const char *dir, const char *name);

#endif /* BENCH_MSG_COMMON_H */
