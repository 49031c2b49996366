/* SPDX-License-Identifier: MIT */
/*
 * msg: messaging over NATS JetStream.
 *  - bus: one NATS connection (optionally mTLS) with its JetStream context;
 *  - envelope: CloudEvents 1.0 in binary mode over NATS headers, JSON data;
 *  - outbox: messages written in the same transaction as the state change,
 *    published in order by an asynchronous relay (Nats-Msg-Id = ce-id, so
 *    JetStream drops duplicate publishes);
 *  - consumer: durable pull consumer (a standing pull request of its own,
 *    each message handed on as it arrives), handler run inside a
 *    unit of work together with an inbox row (idempotent consumption),
 *    acknowledged only once that transaction is durable, bounded redelivery
 *    with backoff, then a dead letter;
 *  - kv: a JetStream key-value bucket (used by discovery).
 * Broker failures: SK_ETIMEDOUT for a timeout, SK_EUNAVAILABLE for one that
 * clears up by itself (no responders, a connection being re-established,
 * JetStream electing: wait and try again), SK_EBUS for the others.
 */
#ifndef SK_MSG_H
#define SK_MSG_H

#include <skald/core.h>
#include <skald/obs.h>
#include <skald/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- bus */

/** A connection to NATS. Thread-safe. */
typedef struct sk_bus sk_bus;

typedef struct sk_bus_config {
    const char *servers;      /* "tls://127.0.0.1:4222[,tls://...]" or nats:// */
    const char *ca_file;      /* NULL for plain connections */
    const char *cert_file;    /* client certificate (mTLS) */
    const char *key_file;
    const char *name;         /* connection name, e.g. "order-1" */
    const char *inbox_prefix; /* e.g. "_INBOX.order"; NULL for the default */
    int replicas; /* copies of the KV buckets created through this bus (sk_kv_open); 0 = 1.
                     Set it to the system file's broker.replicas. */
} sk_bus_config;

/**
 * Connect. When the server is not reachable yet the connection keeps
 * retrying in the background and this returns SK_OK; sk_bus_is_connected
 * tells the state (readiness checks use it).
 * @return SK_OK, SK_EINVAL, SK_ETLS (certificate files), SK_EBUS, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_bus_open(sk_bus **out, const sk_bus_config *cfg);
/** Drain subscriptions and close. NULL-safe. Never call from a bus callback. */
SK_API void sk_bus_close(sk_bus *bus);
SK_API bool sk_bus_is_connected(sk_bus *bus);
/**
 * Re-read the CA, certificate and key files (certificate rotation, e.g. on
 * SIGHUP) and move onto a new connection that presents them. The new
 * connection must come up first; when the files are bad or the server
 * refuses them the current connection is kept and an error returned.
 * Consumers, the relay, KV handles and watchers move over at their next
 * step (a consumer once its in-flight messages are acknowledged); the old
 * connection closes when the last of them has left it. A plain (non-TLS)
 * bus has nothing to re-read: SK_OK.
 * @return SK_OK, SK_EINVAL, SK_ETLS, SK_EBUS, SK_ETIMEDOUT, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_bus_reload_tls(sk_bus *bus);

typedef struct sk_stream_config {
    const char *name;                 /* e.g. "ORDER_EVENTS" */
    const char *const *subjects;      /* e.g. {"order.events.>"} */
    size_t n_subjects;
    int replicas;                     /* 0 = 1 */
    int64_t duplicate_window_ms;      /* 0 = 2 minutes */
} sk_stream_config;

/** Create the stream, or update it when it exists with another config. File storage. */
SK_API SK_NODISCARD sk_status sk_bus_stream_ensure(sk_bus *bus, const sk_stream_config *cfg);

/**
 * Name of a context's stream of one kind: the context upper-cased with '-'
 * as '_', then "_" and @p kind_upper ("ORDER_EVENTS", "ORDER_COMMANDS",
 * "ORDER_REPLIES"). Truncated to @p out_len.
 */
SK_API void sk_stream_name(const char *context, const char *kind_upper, char *out, size_t out_len);
/** True when @p svc owns streams: every service with a database except the gateway. */
SK_API bool sk_system_service_has_streams(const sk_sys_service *svc);
/**
 * Ensure every stream of the system: <context>.events.>, .commands.> and
 * .replies.> of each service that owns streams, and the dead-letter stream.
 * The one definition `skald up` creates them with and services check them by.
 */
SK_API SK_NODISCARD sk_status sk_bus_system_streams_ensure(sk_bus *bus, const sk_system *sys);

/* ---------------------------------------------------------------- envelope */

/** Longest ce-type / ce-source / ce-subject accepted, in bytes. */
#define SK_ENVELOPE_MAX_ATTR 256

/**
 * CloudEvents attributes carried as NATS headers (binary mode):
 * ce-specversion "1.0", ce-id, ce-type, ce-source, ce-time (RFC 3339),
 * ce-subject, ce-schemaversion (extension, integer), traceparent, and for
 * saga commands ce-sagastep (extension) and ce-replyto (extension).
 * Strings are borrowed.
 */
typedef struct sk_envelope {
    char id[SK_UUID_LEN];
    const char *type;
    const char *source;
    const char *subject;
    int64_t time_ms;
    int schema_version; /* >= 1 */
    char traceparent[SK_TRACEPARENT_LEN];
    int saga_step;        /* -1 when not a saga message */
    const char *reply_to; /* NULL when not a saga command */
} sk_envelope;

/**
 * Fill @p env for a new message: fresh UUIDv7 id, current time, schema
 * version 1, a traceparent that continues @p parent_trace (or a new trace
 * when NULL/invalid), no saga fields. Strings are borrowed.
 */
SK_API void sk_envelope_init(sk_envelope *env,
                             const char *type,
                             const char *source,
                             const char *subject,
                             const char *parent_trace);

/** A received message; everything borrowed for the duration of the handler. */
typedef struct sk_message {
    const char *nats_subject;
    sk_envelope env;
    sk_slice data;
    const json_t *json;   /* data parsed as a JSON object */
    uint64_t stream_seq;  /* JetStream stream sequence */
    uint64_t n_delivered; /* 1 on first delivery */
} sk_message;

/* ---------------------------------------------------------------- outbox */

/** Tables of the outbox, the inbox and the dead-letter log; add them to the store's migrations. */
SK_API const sk_migration *sk_msg_migrations(size_t *n);

/**
 * Add a message to the outbox inside @p tx. It is published after the
 * transaction commits, in the order added.
 * @param nats_subject 1..255 bytes, no spaces or wildcards.
 * @param data a JSON object; serialised now.
 * @return SK_OK, SK_EINVAL, SK_ELIMIT (payload over SK_MAX_MSG_PAYLOAD), SK_EDB.
 */
SK_API SK_NODISCARD sk_status sk_outbox_add(sk_tx *tx,
                                            const char *nats_subject,
                                            const sk_envelope *env,
                                            const json_t *data);

/** Publishes committed outbox rows in order. Thread-safe. */
typedef struct sk_relay sk_relay;

/**
 * Start the relay thread: it publishes unsent rows without waiting for
 * each acknowledgement (Nats-Msg-Id = ce-id; JetStream answers on a reply
 * subject the relay reads), deletes rows once acknowledged, retries from the
 * first unacknowledged row on failure. Woken by the store's commit hook
 * (this takes the hook) and by a timer. Relays of several processes on one
 * database file elect one publisher among them (the others pass their
 * commits' wake-ups on to it and take over within half a second when it
 * goes away); an in-memory store's relay always publishes.
 */
SK_API SK_NODISCARD sk_status sk_relay_start(sk_relay **out, sk_store *store, sk_bus *bus, sk_metrics *metrics);
/** Stop after the in-flight publishes settle (unsent rows stay for next time). NULL-safe. */
SK_API void sk_relay_stop(sk_relay *relay);
/** Rows published and acknowledged since start. */
SK_API uint64_t sk_relay_published(sk_relay *relay);

/* ---------------------------------------------------------------- upcasting */

/**
 * Upcasters turn the data of an old schema version of an event type into
 * the current one, one version at a time (v1 -> v2 -> v3). The consumer
 * applies them before the handler, projection replay and redriven dead
 * letters go through the same function (sk_msg_upcast), so a handler only
 * ever sees the current version. Register every upcaster before the
 * registry is used; afterwards it is read-only and thread-safe.
 */
typedef struct sk_upcasters sk_upcasters;

/**
 * Rewrite @p data (a JSON object, owned by the caller, modified in place)
 * from version env->schema_version to env->schema_version + 1 of
 * env->type. Return SK_EPROTO (with a message) when the old data cannot be
 * converted: the message becomes a dead letter. Runs on the consumer's
 * writer thread (or the replaying thread); must not block.
 */
typedef sk_status (*sk_upcast_fn)(json_t *data, const sk_envelope *env, void *ctx);

/** Most upcasters and declared versions in one registry. */
#define SK_UPCASTERS_MAX 1024

/**
 * @param[out] out owned, sk_upcasters_destroy.
 * @return SK_OK, SK_EINVAL, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_upcasters_create(sk_upcasters **out);
/** NULL-safe. No consumer or replay may still use it. */
SK_API void sk_upcasters_destroy(sk_upcasters *u);

/**
 * Register @p fn as the upcaster of @p type from @p from_version to
 * @p from_version + 1. The current version of @p type becomes at least
 * @p from_version + 1.
 * @param type 1..SK_ENVELOPE_MAX_ATTR bytes; copied.
 * @param from_version 1..999999.
 * @return SK_OK, SK_EINVAL (naming the argument), SK_EEXIST (already one for
 *         this type and version), SK_ELIMIT (SK_UPCASTERS_MAX), SK_ENOMEM.
 * Caller-serialized, before use.
 */
SK_API SK_NODISCARD sk_status sk_upcaster_register(sk_upcasters *u,
                                                   const char *type,
                                                   int from_version,
                                                   sk_upcast_fn fn,
                                                   void *ctx);

/**
 * Declare the current schema version of @p type when no upcaster implies it
 * (e.g. version 2 is current and version 1 never existed). The current
 * version is the highest of what was declared and what the upcasters imply.
 * @return SK_OK, SK_EINVAL, SK_ELIMIT, SK_ENOMEM. Caller-serialized, before use.
 */
SK_API SK_NODISCARD sk_status sk_upcasters_version_set(sk_upcasters *u, const char *type, int version);

/** Current schema version of @p type: 1 for a type the registry knows nothing about (and for NULL). */
SK_API int sk_upcasters_version(const sk_upcasters *u, const char *type);

/**
 * Bring @p m to the current schema version of its type. When it already is
 * (or @p u is NULL) nothing changes and *owned_json is NULL. When it is
 * older, m->json is replaced by an upcast copy (returned in *owned_json:
 * the caller json_decref's it after the handler) and m->env.schema_version
 * is set to the current version; m->data keeps the original bytes.
 * @param m m->json must be a JSON object.
 * @param[out] owned_json NULL or the new data.
 * @return SK_OK; SK_EPROTO when an upcaster is missing ("no upcaster for
 *         OrderPlaced from schema version 1 (current 3)"), when an upcaster
 *         fails, or when the version is newer than the current one (a
 *         producer deployed before this consumer: dead-lettered, to be
 *         redriven once the consumer knows the version); SK_EINVAL (NULL
 *         m or owned_json, m->json not an object); SK_ENOMEM.
 * Thread-safe on a registry that is no longer being registered into.
 */
SK_API SK_NODISCARD sk_status sk_msg_upcast(const sk_upcasters *u, sk_message *m, json_t **owned_json);

/* ---------------------------------------------------------------- consumer */

/**
 * Handle one message inside a unit of work. Return SK_OK to commit (the
 * message is acknowledged once durable). SK_EPROTO means the message can
 * never be processed (dead-lettered at once): return it for a malformed
 * payload and for a message type the handler does not know ("unknown
 * message type X"). Any other error rolls back and the message is retried
 * with backoff, until max_deliver attempts, then dead-lettered. While a
 * message is retried or dead, later messages of its aggregate (ce-subject)
 * are parked behind it (see sk_consumer_order).
 */
typedef sk_status (*sk_msg_handler_fn)(sk_tx *tx, const sk_message *m, void *ctx);

/**
 * Default AckWait. Messages fetched by a process that dies come back only
 * after it, so it bounds how long a crash delays them (saga step deadlines
 * are longer); a slow unit past it is redelivered and dropped by the inbox.
 */
#define SK_CONSUMER_DEFAULT_ACK_WAIT_MS 5000

/**
 * Ordering of a consumer's messages when one fails.
 *
 * SK_CONSUMER_ORDER_AGGREGATE: messages with the same ce-subject (the
 * aggregate) are handled in stream order. When one fails, it and every later
 * message of its aggregate are parked in the consumer's database (tables
 * sk_msg_blocked and sk_msg_parked, so a restart keeps them parked); the
 * failed one is retried with backoff and, after max_deliver attempts (at
 * once for SK_EPROTO), becomes a dead letter. The parked ones stay parked
 * behind it, in order, until it is redriven and handled; then they are
 * released in order. Other aggregates keep flowing all along.
 *
 * SK_CONSUMER_ORDER_NONE: each message is retried and dead-lettered on its
 * own; nothing is parked behind it. For messages correlated otherwise (saga
 * replies carry a sequence number and stale ones are ignored).
 */
typedef enum sk_consumer_order {
    SK_CONSUMER_ORDER_AGGREGATE = 0,
    SK_CONSUMER_ORDER_NONE = 1
} sk_consumer_order;

typedef struct sk_consumer_config {
    const char *stream;         /* stream to consume */
    const char *durable;        /* durable consumer name, also the inbox key */
    const char *filter_subject; /* e.g. "inventory.commands.>" */
    int max_deliver;            /* 0 = 5 */
    int64_t ack_wait_ms;        /* 0 = SK_CONSUMER_DEFAULT_ACK_WAIT_MS */
    size_t batch;               /* 0 = 128: the least it asks for; 4 x batch in flight at most */
    sk_msg_handler_fn handler;
    void *ctx;
    /* Applied before the handler; borrowed, NULL: versions are not checked. */
    const sk_upcasters *upcasters;
    sk_consumer_order order; /* SK_CONSUMER_ORDER_AGGREGATE (0) by default */
} sk_consumer_config;

typedef struct sk_consumer sk_consumer;

/**
 * Dead letters of durable consumer D are stored in its sk_dead_letters table
 * and published (through the outbox) on SK_DLQ_SUBJECT_PREFIX "D", which
 * stream SK_DLQ_STREAM collects; sk_consumer_start creates that stream
 * when it is missing, so a dead letter never blocks the outbox relay.
 */
#define SK_DLQ_STREAM         "DEAD_LETTERS"
#define SK_DLQ_SUBJECT_PREFIX "dlq."
/**
 * Header of a redriven message: the id of the dead letter it sends back.
 * The consumer that owns that dead letter handles the message as the head
 * of its aggregate (its inbox row is cleared first) and, once it succeeds,
 * releases the messages parked behind it and publishes a
 * "DeadLetterResolved" record on the same dlq subject.
 */
#define SK_DLQ_HDR_REDRIVE "Skald-Redrive"

/** Create (or bind to) the durable consumer and start fetching on a thread of its own. */
SK_API SK_NODISCARD sk_status sk_consumer_start(sk_consumer **out,
                                                sk_bus *bus,
                                                sk_store *store,
                                                sk_metrics *metrics,
                                                const sk_consumer_config *cfg);
/**
 * Stop fetching, wait for handled messages to be acknowledged, give back
 * (NAK) what arrived and was not handled. NULL-safe.
 */
SK_API void sk_consumer_stop(sk_consumer *c);
/**
 * Delete durable consumer @p durable of @p stream on the server (its
 * position and pending messages go with it). Stop any sk_consumer on it
 * first. A consumer that does not exist is not an error.
 * @return SK_OK, SK_EINVAL (names), SK_EBUS, SK_ETIMEDOUT.
 */
SK_API SK_NODISCARD sk_status sk_consumer_delete(sk_bus *bus, const char *stream, const char *durable);

/* ---------------------------------------------------------------- dead letters */

/** What became of a dead letter, as the records in SK_DLQ_STREAM tell. */
typedef enum sk_dead_letter_state {
    SK_DEAD_LETTER_OPEN = 0,      /* waiting to be redriven */
    SK_DEAD_LETTER_RESOLVED = 1,  /* redriven and handled */
    SK_DEAD_LETTER_SUPERSEDED = 2 /* redriven and dead again: a newer dead letter replaces it */
} sk_dead_letter_state;

/** One dead letter; strings borrowed from the list, never NULL ("" when unknown). */
typedef struct sk_dead_letter {
    char id[SK_UUID_LEN];
    const char *consumer;     /* durable name */
    const char *nats_subject; /* subject the message was consumed from */
    const char *type;         /* ce-type */
    const char *aggregate;    /* ce-subject */
    const char *msg_id;       /* ce-id */
    const char *error;        /* why it is dead */
    const char *redrive_of;   /* the dead letter this one replaces (it was a redrive of it) */
    const char *replaced_by;  /* SK_DEAD_LETTER_SUPERSEDED: the newer dead letter */
    int schema_version;       /* 0 when unknown */
    int64_t deliveries;       /* attempts made */
    int64_t time_ms;          /* when it was dead-lettered (epoch ms) */
    sk_dead_letter_state state;
    uint64_t dlq_seq; /* sequence of its record in SK_DLQ_STREAM */
} sk_dead_letter;

/** Dead letters read from SK_DLQ_STREAM, oldest first. Owner-thread-only. */
typedef struct sk_dlq_list sk_dlq_list;

/** Most records sk_dlq_list_load reads (the newest ones). */
#define SK_DLQ_MAX_RECORDS 100000

/**
 * Read every dead letter of the system from SK_DLQ_STREAM (all consumers of
 * all services publish there) and work out each one's state from the
 * resolution records. Needs read access to the stream (STREAM.INFO and
 * STREAM.MSG.GET of SK_DLQ_STREAM).
 * @param[out] out owned, sk_dlq_list_destroy; empty when there is no stream.
 * @return SK_OK, SK_EINVAL, SK_EBUS, SK_ETIMEDOUT, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_dlq_list_load(sk_bus *bus, sk_dlq_list **out);
/** NULL-safe. */
SK_API void sk_dlq_list_destroy(sk_dlq_list *l);
SK_API size_t sk_dlq_list_count(const sk_dlq_list *l);
/** Borrowed until sk_dlq_list_destroy; NULL past the end. */
SK_API const sk_dead_letter *sk_dlq_list_at(const sk_dlq_list *l, size_t i);
/** The dead letter with id @p id, or NULL. */
SK_API const sk_dead_letter *sk_dlq_list_find(const sk_dlq_list *l, const char *id);
/**
 * The record of a dead letter as a JSON object (id, consumer, subject,
 * type, aggregate, msg_id, error, deliveries, time_ms, state, ...) for
 * `skald dlq list --json`. @return a new reference, NULL on out of memory.
 */
SK_API json_t *sk_dead_letter_json(const sk_dead_letter *d);

/**
 * Send dead letter @p id back to its consumer: the original message (same
 * headers, so the same ce-id, type and schema version, and the same data)
 * is published again on its original subject with Nats-Msg-Id
 * "redrive-<id>" (a repeated redrive within the stream's duplicate window
 * is dropped) and header SK_DLQ_HDR_REDRIVE = @p id. Its consumer upcasts
 * and handles it like a live message, as the head of its aggregate, then
 * releases the messages parked behind it in order; other consumers of the
 * stream find it in their inbox and ignore it.
 * @return SK_OK, SK_EINVAL, SK_ENOTFOUND (no such dead letter), SK_ESTATE
 *         (already resolved or superseded, naming the newer one), SK_EPROTO
 *         (the record lacks the message, e.g. a payload too large to be
 *         kept), SK_EBUS, SK_ETIMEDOUT, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_dlq_redrive(sk_bus *bus, const sk_dlq_list *l, const char *id);

/* ---------------------------------------------------------------- key-value */

/** A JetStream KV bucket. Thread-safe. */
typedef struct sk_kv sk_kv;

/** Open (creating when missing) bucket @p name whose entries expire after @p ttl_ms. */
SK_API SK_NODISCARD sk_status sk_kv_open(sk_kv **out, sk_bus *bus, const char *name, int64_t ttl_ms);
SK_API void sk_kv_close(sk_kv *kv);
SK_API SK_NODISCARD sk_status sk_kv_put(sk_kv *kv, const char *key, sk_slice value);
SK_API SK_NODISCARD sk_status sk_kv_delete(sk_kv *kv, const char *key);
/** @param[out] out owned copy (sk_free), NUL-terminated. @return SK_OK, SK_ENOTFOUND, SK_EBUS. */
SK_API SK_NODISCARD sk_status sk_kv_get(sk_kv *kv, const char *key, char **out, size_t *len);

/** Called for every current entry, then for every change; on a bus thread. */
typedef void (*sk_kv_watch_fn)(const char *key, sk_slice value, bool is_deleted, void *ctx);
typedef struct sk_kv_watch sk_kv_watch;
/** Watch keys matching @p pattern (NATS wildcards, ">" for all). */
SK_API SK_NODISCARD sk_status sk_kv_watch_start(sk_kv_watch **out, sk_kv *kv, const char *pattern, sk_kv_watch_fn fn, void *ctx);
SK_API void sk_kv_watch_stop(sk_kv_watch *w);

#ifdef __cplusplus
}
#endif
#endif /* SK_MSG_H */
