/* SPDX-License-Identifier: MIT */
/*
 * cqrs: command bus and query bus (handlers registered by type, validation,
 * logging and metrics around every dispatch, asynchronous completion),
 * persisted idempotency keys, projections with checkpoints, and consistency
 * tokens that let a query wait until a given write is visible.
 */
#ifndef SK_CQRS_H
#define SK_CQRS_H

#include <skald/core.h>
#include <skald/msg.h>
#include <skald/obs.h>
#include <skald/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- buses */

/** A command bus or a query bus (same machinery, distinct instances). Thread-safe once set up. */
typedef struct sk_cqrs_bus sk_cqrs_bus;
/** One dispatched command or query, in flight until completed. */
typedef struct sk_call sk_call;

typedef enum sk_cqrs_kind {
    SK_CQRS_COMMAND = 0,
    SK_CQRS_QUERY = 1
} sk_cqrs_kind;

/** What a caller sends. Everything borrowed for the dispatch call (the bus copies what it keeps). */
typedef struct sk_request {
    const char *type;            /* "CreateOrder", "GetOrder" */
    const json_t *payload;       /* a JSON object: body fields merged with path and query parameters */
    const char *idempotency_key; /* or NULL */
    const char *consistency_token; /* queries: or NULL */
    const char *traceparent;     /* or NULL */
    const char *request_id;      /* or NULL */
} sk_request;

/** The answer, in HTTP terms because every caller of a bus is an HTTP edge. */
typedef struct sk_result {
    int http_status;          /* 200, 201, 202, 400, 404, 409, 422, 500, 503, 504 ... */
    const json_t *body;       /* success body, or NULL */
    const char *title;        /* errors: short title */
    const char *detail;       /* errors: message naming the field or the rule */
    const char *location;     /* or NULL (Location header) */
} sk_result;

/** Check a payload before the handler runs; SK_EPROTO/SK_ELIMIT with a message naming the field (answered 400). */
typedef sk_status (*sk_validate_fn)(const json_t *payload, void *ctx);
/** Handle a call: complete it now or later, from any thread, exactly once. */
typedef void (*sk_handler_fn)(sk_call *call, void *ctx);
/** Receives the result; runs on the thread that completed the call. */
typedef void (*sk_result_fn)(const sk_result *res, void *ctx);

/**
 * Create a bus. @p metrics (borrowed, may be NULL for none) must outlive the bus.
 * @return SK_OK, SK_EINVAL, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_cqrs_bus_create(sk_cqrs_bus **out, sk_cqrs_kind kind, sk_metrics *metrics);
/** NULL-safe. Every dispatched call must have completed before (pending calls are logged and leaked). */
SK_API void sk_cqrs_bus_destroy(sk_cqrs_bus *bus);

/**
 * Register the handler of @p type (copied; [A-Za-z][A-Za-z0-9]{0,63}). @p validate may be NULL.
 * Set up before the first dispatch.
 * @return SK_OK, SK_EEXIST (type taken), SK_EINVAL, SK_ESTATE (bus already dispatching), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_cqrs_bus_register(sk_cqrs_bus *bus,
                                                   const char *type,
                                                   sk_validate_fn validate,
                                                   sk_handler_fn handler,
                                                   void *ctx);

/**
 * A middleware sees every call before its handler and every result after.
 * @p before may refuse a call by returning an error (answered as such).
 */
typedef struct sk_middleware {
    const char *name;
    sk_status (*before)(const sk_request *req, void *ctx);
    void (*after)(const sk_request *req, const sk_result *res, int64_t elapsed_ns, void *ctx);
    void *ctx;
} sk_middleware;
/**
 * Add a middleware (copied); befores run in the order added, afters in the
 * reverse order (the first added sees the result last). A refused call is
 * answered without its handler; the afters of every middleware still run.
 * Set up before dispatching.
 * @return SK_OK, SK_EINVAL, SK_ESTATE (bus already dispatching), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_cqrs_bus_use(sk_cqrs_bus *bus, const sk_middleware *mw);

/**
 * Dispatch. Validation failures answer 400 with the validator's message
 * (422 for SK_ELIMIT), an unknown type 404; otherwise the handler answers.
 * @p done is called exactly once when this returns SK_OK, possibly before
 * this returns. Logging and metrics (sk_cqrs_requests_total{kind,type,status},
 * sk_cqrs_request_duration_seconds{kind,type}) are built in.
 * @return SK_OK, SK_EINVAL (NULL argument, no type, payload not an object), SK_ENOMEM.
 * Thread-safe.
 */
SK_API SK_NODISCARD sk_status sk_cqrs_bus_dispatch(sk_cqrs_bus *bus, const sk_request *req, sk_result_fn done, void *ctx);

/** The call's request (payload and strings valid until the call completes). */
SK_API const sk_request *sk_call_request(const sk_call *call);
SK_API void sk_call_set_user(sk_call *call, void *user);
SK_API void *sk_call_user(const sk_call *call);
/**
 * Map a status to the HTTP status of its answer: EINVAL/EPROTO 400, EDENIED 403,
 * ENOTFOUND 404, EEXIST/ECONFLICT 409, ELIMIT 422, EUNAVAILABLE 503,
 * ETIMEDOUT 504, anything else 500 (SK_OK gives 200).
 */
SK_API int sk_cqrs_http_status(sk_status st);

/*
 * Completion: exactly once per call, from any thread; the call is freed by it.
 * A second completion is a bug: it is logged (SK_LOG_ERROR) and ignored.
 * An answer of 500 carries the detail "internal error"; the real text is logged.
 */
/** Complete with success. @p body taken (may be NULL). @p location copied (may be NULL). */
SK_API void sk_call_complete(sk_call *call, int http_status, json_t *body, const char *location);
/** Complete with an error: HTTP status from sk_status (see sk_cqrs_http_status), detail formatted. */
SK_API void sk_call_fail(sk_call *call, sk_status st, const char *detail_fmt, ...) SK_PRINTF(3, 4);
/** Complete with an explicit HTTP error status and title. */
SK_API void sk_call_fail_http(sk_call *call, int http_status, const char *title, const char *detail_fmt, ...)
    SK_PRINTF(4, 5);

/* ---------------------------------------------------------------- idempotency */

/** Tables of idempotency keys and projection checkpoints (component "sk_cqrs"). */
SK_API const sk_migration *sk_cqrs_migrations(size_t *n);

/** Hex SHA-256 of the canonical form (sorted keys, compact) of a request payload, plus NUL. */
#define SK_IDEM_HASH_LEN 65
SK_API SK_NODISCARD sk_status sk_idem_hash(const json_t *payload, char out[SK_IDEM_HASH_LEN]);

/**
 * Look up an idempotency key (in a read snapshot or inside a unit of work).
 * @param[out] http_status, body: the first answer (body owned, sk_free).
 * @return SK_OK (same request seen: replay the answer), SK_ECONFLICT (key
 *         used with another body: answer 422), SK_ENOTFOUND, SK_EDB.
 */
SK_API SK_NODISCARD sk_status sk_idem_lookup(sk_tx *tx,
                                             const char *scope,
                                             const char *key,
                                             const char *request_hash,
                                             int *http_status,
                                             char **body);
/**
 * Record the answer to a key inside the unit of work that made the change,
 * so the key and the change are durable together. Keys live >= 24 hours.
 * @return SK_OK, SK_EEXIST, SK_EDB.
 */
SK_API SK_NODISCARD sk_status sk_idem_save(sk_tx *tx,
                                           const char *scope,
                                           const char *key,
                                           const char *request_hash,
                                           int http_status,
                                           const char *body);
/** Delete keys older than @p max_age_ms (housekeeping). */
SK_API SK_NODISCARD sk_status sk_idem_expire(sk_tx *tx, int64_t max_age_ms);

/* ---------------------------------------------------------------- projections */

/** Apply one event to a read model inside a unit of work (the checkpoint is written in the same one). */
typedef sk_status (*sk_projection_fn)(sk_tx *tx, const sk_message *m, void *ctx);

typedef struct sk_projection_config {
    const char *name;           /* projection name, e.g. "orderview" */
    const char *stream;         /* e.g. "ORDER_EVENTS" */
    const char *filter_subject; /* e.g. "order.events.>" */
    sk_projection_fn apply;
    void *ctx;
    /** Events older than their type's current schema version are upcast before apply
     *  (sk_msg_upcast); NULL: none. Borrowed: must outlive the projection. */
    const sk_upcasters *upcasters;
} sk_projection_config;

typedef struct sk_projection sk_projection;

/**
 * Start a projection: a durable consumer "<name>-<stream lower-cased>" whose
 * handler applies the event and advances the checkpoint (sk_checkpoints,
 * key "<name>:<stream>") in the same transaction; duplicates are dropped by
 * the inbox. The store needs sk_cqrs_migrations and sk_msg_migrations.
 * @param cfg name and stream 1..64 bytes of [A-Za-z0-9_-]; copied.
 * @param metrics may be NULL.
 * @return SK_OK, SK_EINVAL, SK_ENOMEM, or what sk_consumer_start returns.
 */
SK_API SK_NODISCARD sk_status sk_projection_start(sk_projection **out,
                                                  sk_bus *bus,
                                                  sk_store *store,
                                                  sk_metrics *metrics,
                                                  const sk_projection_config *cfg);
/** Stop the consumer (waits for handled events to be acknowledged). NULL-safe. */
SK_API void sk_projection_stop(sk_projection *p);
/**
 * Read the checkpoint of projection @p name on @p stream: the highest stream
 * sequence applied so far.
 * @return SK_OK, SK_ENOTFOUND (nothing applied yet; *stream_seq = 0), SK_EINVAL, SK_EDB.
 */
SK_API SK_NODISCARD sk_status sk_projection_checkpoint_get(sk_tx *tx,
                                                           const char *name,
                                                           const char *stream,
                                                           uint64_t *stream_seq);

/* ---------------------------------------------------------------- consistency */

/** Longest token text, including the NUL. */
#define SK_CTOKEN_MAX 164

/**
 * Encode "aggregate @p id reached @p version" as an opaque URL-safe token.
 * @param id 1..100 bytes of [A-Za-z0-9._:-].
 * @param version 1..2^53.
 * @return SK_OK, SK_EINVAL (bad id or version, NULL).
 */
SK_API SK_NODISCARD sk_status sk_ctoken_encode(const char *id, int64_t version, char out[SK_CTOKEN_MAX]);
/**
 * Decode; a malformed token is SK_EPROTO ("consistency token: malformed...").
 * @p id_out holds at least SK_CTOKEN_MAX bytes (SK_EINVAL when shorter than the id).
 */
SK_API SK_NODISCARD sk_status sk_ctoken_decode(sk_slice token, char *id_out, size_t id_out_len, int64_t *version);

/** Most waiters pending at once in one sk_waiters; past it sk_waiters_add answers SK_ELIMIT. */
#define SK_WAITERS_MAX 65536
/** Longest wait accepted by sk_waiters_add, in milliseconds. */
#define SK_WAITERS_MAX_TIMEOUT_MS 3600000

/** Queries waiting for a version of an aggregate to become visible. Thread-safe. */
typedef struct sk_waiters sk_waiters;
/** Current visible version of @p id (0 when unknown). */
typedef int64_t (*sk_version_fn)(const char *id, void *ctx);
/** Called once: SK_OK when the version is visible, SK_ETIMEDOUT, or SK_ECANCELED at shutdown. */
typedef void (*sk_waiter_fn)(sk_status st, void *ctx);

SK_API SK_NODISCARD sk_status sk_waiters_create(sk_waiters **out);
/**
 * Cancels every pending waiter (SK_ECANCELED), stops the timer. NULL-safe.
 * Never call it from a waiter callback, nor while another thread is in sk_waiters_add.
 */
SK_API void sk_waiters_destroy(sk_waiters *w);
/**
 * Wait until version(@p id) >= @p version, at most @p timeout_ms. The waiter
 * is registered first and @p current checked after, so a notify that races
 * with this call is never missed. @p fn may run before this returns, on this
 * thread, a notifying thread or the timer thread, never under a lock.
 * @param id 1..100 bytes of [A-Za-z0-9._:-]; copied first (@p fn may free it
 *        while this call runs), and @p current gets the copy.
 * @param version >= 1. @param timeout_ms 0..SK_WAITERS_MAX_TIMEOUT_MS.
 * @param current may be NULL (then only a notify or the timeout completes the wait); with
 *        shared waiters (sk_waiters_share) it is called again to confirm a peer's notify, so
 *        it and @p current_ctx must stay valid until @p fn has been called.
 * @return SK_OK (@p fn will be called exactly once), SK_EINVAL, SK_ELIMIT
 *         (SK_WAITERS_MAX pending), SK_ESTATE (destroying), SK_ENOMEM; on error @p fn is not
 * called.
 */
SK_API SK_NODISCARD sk_status sk_waiters_add(sk_waiters *w,
                                             const char *id,
                                             int64_t version,
                                             int64_t timeout_ms,
                                             sk_version_fn current,
                                             void *current_ctx,
                                             sk_waiter_fn fn,
                                             void *ctx);
/**
 * Announce that @p id is visible at @p version (call after the commit). Invalid ids are ignored.
 * Shared waiters (sk_waiters_share) pass it on to their peers too.
 */
SK_API void sk_waiters_notify(sk_waiters *w, const char *id, int64_t version);
/**
 * Share notifications with the sk_waiters of the other processes on this
 * machine that opened the same database file as @p store and share under the
 * same @p name (instances reading one database that one of them writes): a
 * notify in any of them completes the matching waiters in all, once their
 * version function confirms it (any local process could send one). Up to 8
 * processes share. A store in memory has nobody to share with: SK_OK, and
 * nothing changes. Call once, before the waiters are used.
 * @param name 1..64 bytes of [A-Za-z0-9_-].
 * @return SK_OK, SK_EINVAL, SK_ESTATE (already shared), SK_ELIMIT (8
 *         processes share already), SK_EIO, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_waiters_share(sk_waiters *w,
                                               const sk_store *store,
                                               const char *name);

/* ---------------------------------------------------------------- versioned read models */

/*
 * A read model fed by projections over one or more streams, kept in
 * numbered versions side by side in one store. Queries read the live
 * version (the service points them at it, e.g. with SQL views that its
 * activate function re-creates); a replay builds version live+1 from the
 * first event of every stream with projections of its own (own durable
 * consumers, inbox keys and checkpoints), and once the new version has
 * applied at least what the live one has on every stream it becomes live
 * in one transaction. Its projections then simply continue as the live
 * ones, so no checkpoint is handed over: nothing is skipped or applied
 * twice. The old version's projections are stopped, its durable consumers
 * deleted and its tables dropped; should the process end before that is
 * done, the next start (or replay) finishes it. State (live version,
 * version being built, version being retired) is kept in sk_readmodels.
 *
 * Processes that open the same database file with the same read-model name
 * (the instances of one service on one machine) share the read model: the
 * one holding the lock sk_store_lock_try(store, "readmodel-<name>") runs
 * the projections and replays; the others only serve queries from the file
 * and take over within half a second of the holder's process ending.
 * Processes with a database each need a name each (their durable consumers
 * are named after it).
 */

/** Most streams one read model consumes. */
#define SK_READMODEL_MAX_STREAMS 8
/** Longest read-model name, in bytes (projection names add "-v<version>"). */
#define SK_READMODEL_NAME_MAX 48

/** A versioned read model. Thread-safe. */
typedef struct sk_readmodel sk_readmodel;

/**
 * Apply one event to version @p version inside a unit of work. @p is_live
 * tells whether queries read that version now (do side effects meant for
 * readers, such as waking consistency waiters, only then).
 */
typedef sk_status (*sk_readmodel_apply_fn)(sk_tx *tx, const sk_message *m, int64_t version, bool is_live, void *ctx);
/** A schema step on version @p version of the read model (create, activate or drop). */
typedef sk_status (*sk_readmodel_schema_fn)(sk_tx *tx, int64_t version, void *ctx);

/** One stream a read model consumes. Strings borrowed for sk_readmodel_start (copied). */
typedef struct sk_readmodel_stream {
    const char *stream;         /* "ORDER_EVENTS" */
    const char *filter_subject; /* "order.events.>" */
} sk_readmodel_stream;

typedef struct sk_readmodel_config {
    /** 1..SK_READMODEL_NAME_MAX bytes of [A-Za-z0-9_-], not ending in "-v<digits>"; version 1's
     *  projections use it as their name (compatible with sk_projection_start), version N >= 2's
     *  use "<name>-v<N>". */
    const char *name;
    const sk_readmodel_stream *streams; /* 1..SK_READMODEL_MAX_STREAMS */
    size_t n_streams;
    sk_readmodel_apply_fn apply;
    /** Create the (empty) tables of a new version. Version 1 is expected to exist already (migrations). */
    sk_readmodel_schema_fn create;
    /** Make queries read @p version (runs in the switch transaction, and at start for the live version). */
    sk_readmodel_schema_fn activate;
    /** Drop the tables of a version no longer used. May run again for a version already
     *  dropped (after a crash): drop only what exists (DROP TABLE IF EXISTS). */
    sk_readmodel_schema_fn drop;
    void *ctx;
    /** How often a replay checks whether it has caught up, ms (0 = 200). */
    int64_t poll_ms;
    /** Upcasters applied before apply, live and in replays alike; NULL: none. Borrowed. */
    const sk_upcasters *upcasters;
} sk_readmodel_config;

/** Progress of a read model, as sk_readmodel_status reports it. */
typedef struct sk_readmodel_progress {
    int64_t live_version;
    int64_t building_version;  /* 0 when no replay runs */
    uint64_t applied_seq;      /* sum over streams of the new version's checkpoints */
    uint64_t target_seq;       /* sum over streams of max(live checkpoint, new checkpoint) */
    uint64_t events_applied;   /* events the running replay applied in this process */
    int64_t started_ms;        /* wall clock when the replay started (0 when none) */
    int64_t last_switch_ms;    /* wall clock of the last switch in this process (0 when none) */
    uint64_t n_switches;       /* replays finished in this process */
    bool is_projecting; /* this process runs the projections (others sharing the database stand by)
                         */
} sk_readmodel_progress;

/**
 * Start the live version's projections (and resume a replay that a
 * previous process left unfinished), after calling cfg->activate for the
 * live version; or, when another process sharing the database projects,
 * stand by to take over. The store needs sk_cqrs_migrations and sk_msg_migrations.
 * @return SK_OK, SK_EINVAL (naming the field), SK_ENOMEM, SK_EDB, or what
 *         sk_projection_start returns.
 */
SK_API SK_NODISCARD sk_status sk_readmodel_start(sk_readmodel **out,
                                                 sk_bus *bus,
                                                 sk_store *store,
                                                 sk_metrics *metrics,
                                                 const sk_readmodel_config *cfg);
/** Stop every projection and a running replay's monitor (the replay resumes at the next start). NULL-safe. */
SK_API void sk_readmodel_stop(sk_readmodel *rm);
/**
 * Start a replay: create version live+1, start its projections from the
 * first event of each stream, and switch to it once it has caught up.
 * Returns at once. @param[out] version the version being built (may be NULL).
 * @return SK_OK, SK_EINVAL, SK_ESTATE (a replay is already running, stopping, or another
 *         process sharing the database projects: the replay runs there), SK_EDB, SK_ENOMEM,
 *         or what sk_projection_start returns.
 */
SK_API SK_NODISCARD sk_status sk_readmodel_replay(sk_readmodel *rm, int64_t *version);
/** Current progress (read from the store's state row and checkpoints). @return SK_OK, SK_EINVAL,
 * SK_EDB. */
SK_API SK_NODISCARD sk_status sk_readmodel_status(sk_readmodel *rm, sk_readmodel_progress *out);
/**
 * Progress as JSON {"name","live_version","building_version","state":"idle"|"replaying",
 * "applied_seq","target_seq","events_applied","started_ms","last_switch_ms","n_switches",
 * "projecting"}.
 * @param[out] out owned (json_decref). @return as sk_readmodel_status, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_readmodel_status_json(sk_readmodel *rm, json_t **out);
/** The version queries read now (>= 1), as this process last saw it. */
SK_API int64_t sk_readmodel_live_version(sk_readmodel *rm);
/** The name given at start (borrowed for the read model's life). */
SK_API const char *sk_readmodel_name(const sk_readmodel *rm);

#ifdef __cplusplus
}
#endif
#endif /* SK_CQRS_H */
