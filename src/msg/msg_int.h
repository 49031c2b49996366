/* SPDX-License-Identifier: MIT */
/*
 * msg internals shared by the files of src/msg and their unit tests: the
 * nats error mapping, the bus internals, and the pure envelope codec (header
 * pairs <-> sk_envelope), which a fuzz target can call without a server.
 */
#ifndef SK_MSG_INT_H
#define SK_MSG_INT_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>

#include <skald/msg.h>

/* ---------------------------------------------------------------- bus */

/*
 * One NATS connection with its JetStream context. A bus has one current
 * link; sk_bus_reload_tls replaces it with a new one that presents the
 * re-read certificate. Whoever keeps nats objects made from a link
 * (subscriptions, contexts, kv stores, watchers) holds a reference on it,
 * moves to the current link when sk__bus_link_is_current says it changed,
 * then releases the old one; the last release closes that connection.
 */
/** Most servers in sk_bus_config.servers. */
#define SK__BUS_MAX_SERVERS 16

typedef struct sk__bus_link {
    sk_bus *bus;
    natsConnection *nc;
    jsCtx *js;
    uint64_t generation; /* 1 for the first link, +1 per reload */
    _Atomic int refs;
    _Atomic uint64_t n_reconnects; /* bumped by the reconnected callback */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool has_sync;  /* mu and cond initialised */
    bool is_closed; /* mu: the closed callback ran; no callback follows it */
} sk__bus_link;

struct sk_bus {
    /* Copies of the config: every link is built from them. */
    char *servers_copy;
    const char *servers[SK__BUS_MAX_SERVERS]; /* point into servers_copy */
    int n_servers;
    char *ca_file;
    char *cert_file;
    char *key_file;
    char *name; /* connection name for log lines ("" when none) */
    char *inbox_prefix;
    int replicas; /* sk_bus_config.replicas, at least 1 */

    _Atomic int64_t last_warn_ms; /* rate limit for connection event logs */
    _Atomic uint64_t n_disconnects;
    _Atomic bool is_closing; /* sk_bus_close started: connection events are expected */
    _Atomic uint64_t generation; /* of the current link */
    pthread_mutex_t mu;       /* guards link */
    bool has_mu;
    sk__bus_link *link;       /* current link; the bus holds one reference */
    pthread_mutex_t swap_mu;  /* serialises replacing the link (reload, failover) */
    bool has_swap_mu;

    /* The JetStream probe (clusters only: more than one server). */
    pthread_t probe_thread;
    bool has_probe;
    pthread_mutex_t probe_mu;
    pthread_cond_t probe_cond;
    bool has_probe_sync;
    bool probe_stop; /* probe_mu */
};

/**
 * The current link with one more reference (never NULL on an open bus).
 * Release it with sk__bus_link_release. Thread-safe.
 */
sk__bus_link *sk__bus_link_acquire(sk_bus *bus);
/** One more reference on a link the caller already holds. */
void sk__bus_link_retain(sk__bus_link *link);
/**
 * Drop a reference; the last one closes the connection (it waits for the
 * closed callback, so never call this from a nats callback). NULL-safe.
 */
void sk__bus_link_release(sk__bus_link *link);
/**
 * The current link's connection and JetStream context, borrowed: valid
 * until the next sk_bus_reload_tls. For tests and tools that never reload;
 * long-lived users hold a link instead.
 */
natsConnection *sk__bus_conn(sk_bus *bus);
jsCtx *sk__bus_js(sk_bus *bus);
/** sk_bus_config.replicas of @p bus, at least 1. */
int sk__bus_replicas(sk_bus *bus);
/** False once the bus moved to a newer link than @p link (cheap: one atomic load). */
bool sk__bus_link_is_current(sk_bus *bus, const sk__bus_link *link);

/* ---------------------------------------------------------------- locking */

/** How often one source of repeated failure logs writes a line, at most. */
#define SK__LOG_INTERVAL_MS 5000

/**
 * Whether a failure log whose last line went out at *@p last_ms (0: never)
 * may write one now; if so *@p last_ms becomes @p now_ms. Each source of
 * repeated failures keeps a clock of its own, so one cannot hide another.
 */
static inline bool sk__log_is_due(int64_t *last_ms, int64_t now_ms)
{
    if (*last_ms != 0 && now_ms - *last_ms < SK__LOG_INTERVAL_MS) {
        return false;
    }
    *last_ms = now_ms;
    return true;
}

/* Lock or unlock a mutex that cannot fail in a correct program; abort if it does. */
static inline void sk__msg_lock(pthread_mutex_t *mu)
{
    if (pthread_mutex_lock(mu) != 0) {
        sk_assert_fail("pthread_mutex_lock", __FILE__, __LINE__);
    }
}

static inline void sk__msg_unlock(pthread_mutex_t *mu)
{
    if (pthread_mutex_unlock(mu) != 0) {
        sk_assert_fail("pthread_mutex_unlock", __FILE__, __LINE__);
    }
}

/* ---------------------------------------------------------------- reply subjects */

/**
 * Read the decimal number at @p p (digits only, at least one, at most
 * @p max) into *out, as in the tokens of the reply subjects we make and
 * JetStream's "$JS.ACK...." ones. @return the first character after it, or
 * NULL when there is none or it is too large.
 */
static inline const char *sk__digits_parse(const char *p, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = p;

    while (*p >= '0' && *p <= '9') {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (max - d) / 10) {
            return NULL;
        }
        v = v * 10 + d;
        p++;
    }
    *out = v;
    return p == start ? NULL : p;
}

/* ---------------------------------------------------------------- pull requests (pull.c) */

/** Longest inbox prefix: the reply subjects add a token and a request id. */
#define SK__PULL_INBOX_MAX 160

/**
 * A durable pull consumer read through a pull request of our own, answered
 * into a plain synchronous subscription while the caller handles what has
 * arrived (see pull.c). One request is open at a time, so every delivery
 * counts against it. One thread only.
 */
typedef struct sk__pull {
    natsConnection *nc; /* borrowed: the caller's link outlives the pull */
    natsSubscription *sub;
    char next_subject[400]; /* "$JS.API.CONSUMER.MSG.NEXT.<s>.<d>" */
    char reply_prefix[SK__PULL_INBOX_MAX + SK_UUID_LEN + 2]; /* "<inbox>.<token>." */
    uint64_t last_id;      /* of the last request sent: the open one while n_requested > 0 */
    int n_requested;       /* what the open request may still deliver; 0: none is open */
    int64_t lost_after_ms; /* monotonic: the open request counts as lost from then */
    int n_lost_in_a_row;   /* requests lost with nothing delivered or ended since */
} sk__pull;

/**
 * Subscribe on @p nc for the deliveries of @p durable on @p stream, under
 * @p inbox (which the NATS permissions allow). @p p is overwritten.
 * @return SK_OK, SK_EINVAL (names too long), SK_EBUS.
 */
sk_status sk__pull_open(
    sk__pull *p, natsConnection *nc, const char *inbox, const char *stream, const char *durable);
/**
 * Give back what has arrived and was not taken (a NAK: redelivered now, not
 * after AckWait), then unsubscribe. What is still on its way comes back
 * after AckWait. NULL-safe on a pull never opened (zeroed).
 */
void sk__pull_close(sk__pull *p);
/**
 * Ask for up to @p batch messages, the request expiring after @p expires_ms.
 * @return SK_OK, SK_EINVAL (a request is open), SK_EBUS.
 */
sk_status sk__pull_ask(sk__pull *p, int batch, int64_t expires_ms);
/**
 * The next delivered message within @p timeout_ms: *out (the caller's), or
 * NULL when none came or the open request ended (ask again then).
 * @return SK_OK; SK_ENOTFOUND when the server deleted the durable,
 *         SK_ETIMEDOUT when requests went unanswered twice in a row (lost,
 *         or the durable does not exist), SK_EUNAVAILABLE when JetStream
 *         does not answer at all, SK_EBUS.
 */
sk_status sk__pull_next(sk__pull *p, natsMsg **out, int64_t timeout_ms);
/** Whether a request is open: request last_id, for n_requested more messages. */
static inline bool sk__pull_is_open(const sk__pull *p)
{
    return p->n_requested > 0;
}
/** Forget the open request (after a reconnect it may be gone). */
void sk__pull_forget(sk__pull *p);
/** Bookkeeping, exposed for unit tests: a message arrived. */
void sk__pull_on_message(sk__pull *p);
/** Bookkeeping: an end status for request @p id arrived; true when it was the open one. */
bool sk__pull_on_end(sk__pull *p, uint64_t id);
/** Bookkeeping: drop the open request when its end is overdue at @p now_ms; true if dropped. */
bool sk__pull_drop_lost(sk__pull *p, int64_t now_ms);

typedef enum sk__js_ack_kind { SK__JS_ACK, SK__JS_TERM, SK__JS_NAK } sk__js_ack_kind;

/**
 * Acknowledge a JetStream message on @p nc: done, terminated (never
 * redelivered), or redeliver after @p delay_ms (SK__JS_NAK only).
 */
natsStatus sk__js_ack(natsConnection *nc, natsMsg *msg, sk__js_ack_kind kind, int64_t delay_ms);
/**
 * The delivery count and stream sequence in a JetStream message's reply
 * subject ("$JS.ACK...."). @return false when it is not one.
 */
bool sk__js_ack_parse(const char *reply, uint64_t *n_delivered, uint64_t *stream_seq);

/* ---------------------------------------------------------------- message reaper */

/** Finished messages held before they are destroyed together (reaper.c). */
#define SK__REAPER_BATCH 256
/** ... or once their data add up to this many bytes. */
#define SK__REAPER_MAX_BYTES (256u * 1024u)
/** ... or, at sk__reaper_flush_stale, once the first of them was held this long. */
#define SK__REAPER_MAX_AGE_MS 1000

typedef struct sk__reaper {
    pthread_mutex_t mu;
    bool has_mu;
    natsMsg *held[SK__REAPER_BATCH]; /* mu */
    size_t n;                        /* mu */
    size_t bytes;                    /* mu: data bytes of the held messages */
    int64_t first_ms;                /* mu: when the first held message came (monotonic) */
} sk__reaper;

/** Ready an embedded reaper. @return SK_OK or SK_ENOMEM. */
sk_status sk__reaper_init(sk__reaper *r);
/**
 * Take @p msg (settled: acked, naked or published) and destroy it with the
 * others of its batch. NULL-safe; thread-safe. A reaper that was never
 * initialised destroys at once.
 */
void sk__reaper_add(sk__reaper *r, natsMsg *msg);
/** Destroy every held message now (thread-safe). */
void sk__reaper_flush(sk__reaper *r);
/**
 * Destroy the held messages when the first came SK__REAPER_MAX_AGE_MS ago
 * or more (thread-safe): the owner's thread calls it from its loop, in every
 * state, a few times a second at least, so that a quiet consumer or relay
 * does not keep a batch's memory.
 */
void sk__reaper_flush_stale(sk__reaper *r);
/** Flush and release; safe on a reaper that was never initialised. */
void sk__reaper_fini(sk__reaper *r);

/**
 * Map a nats failure to SK_EBUS (or SK_ETIMEDOUT / SK_ENOMEM / SK_ETLS),
 * recording "<what>: <status text>[: <last error text>][ (jetstream error N)]".
 * @param jerr JetStream error code, 0 when none.
 */
sk_status sk__nats_fail(natsStatus s, jsErrCode jerr, const char *what);

/**
 * True for failures that clear up by themselves: timeouts, no responders
 * (also "JetStream not enabled", 10076, and "JetStream system temporarily
 * unavailable", 10008, during a leader election), a connection being
 * re-established. sk__nats_fail reports them as SK_EUNAVAILABLE (timeouts
 * as SK_ETIMEDOUT).
 */
bool sk__nats_is_retryable(natsStatus s, jsErrCode jerr);

/**
 * Free an array that nats.c allocated and documents as released with
 * free() (natsMsgHeader_Keys / _Values). NULL-safe.
 */
void sk__nats_free(const void *p);

/**
 * Validate a NATS subject for publishing: 1..255 bytes of printable ASCII
 * without spaces, no wildcards unless @p allow_wildcards, no empty token.
 * @return SK_OK or SK_EINVAL naming @p field.
 */
sk_status sk__subject_check(const char *subject, bool allow_wildcards, const char *field);

/* ---------------------------------------------------------------- envelope */

#define SK__HDR_SPECVERSION   "ce-specversion"
#define SK__HDR_ID            "ce-id"
#define SK__HDR_TYPE          "ce-type"
#define SK__HDR_SOURCE        "ce-source"
#define SK__HDR_TIME          "ce-time"
#define SK__HDR_SUBJECT       "ce-subject"
#define SK__HDR_SCHEMAVERSION "ce-schemaversion"
#define SK__HDR_TRACEPARENT   "traceparent"
#define SK__HDR_SAGASTEP      "ce-sagastep"
#define SK__HDR_REPLYTO       "ce-replyto"
#define SK__HDR_MSGID         "Nats-Msg-Id"
#define SK__HDR_CONTENTTYPE   "content-type"

/** Largest schema version and saga step accepted. */
#define SK__MAX_SCHEMA_VERSION 1000000
#define SK__MAX_SAGA_STEP      2147483647 /* saga sequence numbers grow with every re-send */

/**
 * One header as received: name and value, not necessarily NUL-terminated.
 * The shape of a member of a flat JSON object, so parsed headers columns
 * decode as they are.
 */
typedef sk_json_member sk__msg_header;

/** Storage for the strings of a decoded envelope (the sk_envelope points into it). */
typedef struct sk__envelope_buf {
    char type[SK_ENVELOPE_MAX_ATTR + 1];
    char source[SK_ENVELOPE_MAX_ATTR + 1];
    char subject[SK_ENVELOPE_MAX_ATTR + 1];
    char reply_to[SK_ENVELOPE_MAX_ATTR + 1];
} sk__envelope_buf;

/**
 * Decode CloudEvents attributes from header pairs (names matched without
 * regard to case; unknown headers ignored; a repeated attribute refused).
 * Requires ce-specversion "1.0", ce-id (a UUID), ce-type, ce-source,
 * ce-subject (1..SK_ENVELOPE_MAX_ATTR printable ASCII bytes), ce-time
 * (RFC 3339), ce-schemaversion (1..1000000); optional ce-sagastep
 * (0..1000), ce-replyto (like ce-type). An absent or invalid traceparent is
 * replaced by a new one.
 * @param[out] env strings point into @p buf.
 * @return SK_OK, SK_EPROTO naming the header, SK_EINVAL (NULL arguments).
 * Pure; thread-safe.
 */
sk_status sk__envelope_decode(const sk__msg_header *hdrs,
                              size_t n_hdrs,
                              sk_envelope *env,
                              sk__envelope_buf *buf);

/**
 * Check an envelope before it is sent (same rules as decoding, except that
 * the traceparent must be valid).
 * @return SK_OK or SK_EINVAL naming the field.
 */
sk_status sk__envelope_validate(const sk_envelope *env);

/**
 * Parse an RFC 3339 timestamp ("2026-11-25T10:00:00.123Z", offsets
 * allowed, fraction truncated to milliseconds).
 * @return SK_OK or SK_EPROTO.
 */
sk_status sk__rfc3339_parse(sk_slice text, int64_t *epoch_ms);

/**
 * Serialise @p env as a compact JSON object of headers (every header the
 * message will carry, Nats-Msg-Id and content-type included).
 * @param[out] out owned, sk_free.
 * @return SK_OK, SK_EINVAL (invalid envelope), SK_ENOMEM.
 */
sk_status sk__envelope_to_json(const sk_envelope *env, char **out);

/**
 * The inverse of sk__envelope_to_json: decode a JSON object of headers.
 * @return SK_OK, SK_EPROTO, SK_ENOMEM.
 */
sk_status sk__envelope_from_json(sk_slice json, sk_envelope *env, sk__envelope_buf *buf);

/**
 * Set the headers of @p env on @p msg.
 * @return SK_OK, SK_EINVAL (invalid envelope), SK_EBUS, SK_ENOMEM.
 */
sk_status sk__envelope_encode(const sk_envelope *env, natsMsg *msg);

/**
 * Set every member of a JSON object of string headers (an outbox row's
 * headers column) on @p msg.
 * @return SK_OK, SK_EPROTO (not an object of strings), SK_ELIMIT (more than
 *         64 members), SK_EBUS, SK_ENOMEM.
 */
sk_status sk__headers_json_apply(sk_slice json, natsMsg *msg);

/**
 * Decode the envelope of a received message.
 * @return SK_OK, SK_EPROTO, SK_ENOMEM.
 */
sk_status sk__envelope_from_msg(natsMsg *msg, sk_envelope *env, sk__envelope_buf *buf);

/* ---------------------------------------------------------------- outbox */

/** Insert one outbox row with already-serialised headers and data. */
sk_status sk__outbox_insert(sk_tx *tx,
                            const char *nats_subject,
                            const char *msg_id,
                            const char *headers_json,
                            sk_slice data);

/* ---------------------------------------------------------------- relay */

/**
 * Parse the reply subject of a relay's publish, "<prefix><round>.<row>"
 * (digits only). @return false for anything else.
 */
bool sk__relay_reply_parse(const char *subject, const char *prefix, uint64_t *round, size_t *row);

/* ---------------------------------------------------------------- relay ownership */

/*
 * One publishing relay per database file. Instances of a service that share
 * one SQLite file each start a relay; only the one that holds an exclusive
 * flock on "<file>-relay.lock" (created 0600 beside it) publishes, the others
 * tell it when they commit, through an abstract UNIX datagram socket the
 * holder binds (a best-effort hint: without it the holder finds their rows by
 * its idle poll). The kernel drops the lock when the holder's process dies,
 * so another instance takes over within SK__RELAY_OWNER_RETRY_MS without
 * leases or clocks. A store that is no file (in-memory) is always held.
 * Thread-safe.
 */
#define SK__RELAY_OWNER_RETRY_MS 500

typedef struct sk__relay_owner sk__relay_owner;

/**
 * Start trying to hold the relay lock of @p store (sk_store_lock_try, purpose "relay").
 * @p on_wake runs on the owner's thread when this relay becomes the holder
 * and whenever another instance reports a commit.
 */
sk_status sk__relay_owner_start(sk__relay_owner **out,
                                const sk_store *store,
                                void (*on_wake)(void *ctx),
                                void *ctx);
/** True while this relay holds the lock (and so publishes). */
bool sk__relay_owner_is_holder(sk__relay_owner *o);
/** Not the holder: tell the holder rows were committed (never blocks; lost if none). */
void sk__relay_owner_notify(sk__relay_owner *o);
/** Release the lock and stop the thread; on_wake is not called after it returns. NULL-safe. */
void sk__relay_owner_stop(sk__relay_owner *o);
/** The wake-up socket's abstract name for @p store's relay lock (tests). @return its length, or -1.
 */
int sk__relay_owner_wake_name(const sk_store *store, char *out, size_t cap);

/* ---------------------------------------------------------------- consumer */

/** Delay before redelivery number @p n_delivered + 1, in milliseconds. */
int64_t sk__consumer_backoff_ms(uint64_t n_delivered);

/**
 * The text every lower-case UUIDv7 made before @p ms (Unix milliseconds)
 * sorts below: its first 13 characters, "tttttttt-tttt" (inbox pruning).
 */
void sk__inbox_cutoff(int64_t ms, char out[14]);

/** Longest stream, durable and bucket name (sk_name_is_valid). */
#define SK__MSG_NAME_MAX 64

#endif /* SK_MSG_INT_H */
