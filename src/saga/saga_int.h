/* SPDX-License-Identifier: MIT */
/*
 * saga internals shared by the files of src/saga and their unit tests: the
 * engine layout, the state machine entry points that the reply consumer and
 * the deadline scanner call inside a unit of work (tests call them directly
 * with a transaction and a fake message), and the naming helpers. Every
 * transition loads the instance row, changes it in memory, adds the outbox
 * rows of the commands it sends and writes the row back, all in one unit of
 * work: a crash at any point leaves either the old or the new state.
 */
#ifndef SK_SAGA_INT_H
#define SK_SAGA_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <skald/saga.h>

/** Deadline of a step whose deadline_ms is 0. */
#define SK__SAGA_DEFAULT_DEADLINE_MS 10000
/** How often the scanner looks for expired deadlines. */
#define SK__SAGA_SCAN_INTERVAL_MS 100
/** Most expired instances handled per scan. */
#define SK__SAGA_SCAN_BATCH 256
/** Longest saga type name (bytes). */
#define SK__SAGA_MAX_TYPE 128
/** Longest saga id: it travels as ce-subject. */
#define SK__SAGA_MAX_ID SK_ENVELOPE_MAX_ATTR
/** Largest sequence number: it travels as ce-sagastep, an int. */
#define SK__SAGA_MAX_SEQ 2147483647
/** Longest JetStream durable consumer name the engine builds. */
#define SK__SAGA_MAX_DURABLE 96

/** Reason codes the engine itself produces. */
#define SK__SAGA_REASON_TIMEOUT   "TIMEOUT"
#define SK__SAGA_REASON_CANCELLED "CANCELLED"
#define SK__SAGA_REASON_FAILED    "FAILED"

/** One reply consumer: every definition whose reply subject starts with the same token. */
typedef struct sk__saga_family {
    char token[SK_ENVELOPE_MAX_ATTR + 1];   /* "order" */
    char filter[SK_ENVELOPE_MAX_ATTR + 16]; /* "order.replies.>" */
    char durable[SK__SAGA_MAX_DURABLE + 1];
    sk_consumer *consumer;
} sk__saga_family;

/**
 * Lock order: mu only (never held while calling into the store, the bus or a
 * definition's callbacks).
 */
struct sk_saga_engine {
    sk_store *store;     /* borrowed */
    sk_bus *bus;         /* borrowed; NULL: no reply consumers */
    sk_metrics *metrics; /* borrowed; NULL: no metrics */
    char *source;
    char *reply_stream;
    char *durable_base; /* "<source name>-saga-replies" */

    /* Registered definitions (borrowed); written before start only, read-only after. */
    const sk_saga_def **defs;
    size_t n_defs;
    size_t cap_defs;
    bool has_started; /* registration is closed once set */

    sk__saga_family *families;
    size_t n_families;

    /* Wall clock used for deadlines; replaced by tests. */
    int64_t (*clock)(void *ctx);
    void *clock_ctx;

    sk_counter *timeouts; /* sk_saga_timeouts_total; NULL without metrics */

    pthread_mutex_t mu;
    pthread_cond_t cond; /* signalled on stop and when n_pending drops */
    /* Protected by mu: */
    bool is_running;      /* scanner and consumers started */
    bool is_stopping;     /* the scanner must exit */
    size_t n_pending;     /* deadline units submitted and not done yet */
    int64_t last_warn_ms; /* rate limit of scanner warnings */
    pthread_t scanner;
};

/** Wall-clock time of the engine (its clock hook, sk_time_now_ms by default). */
int64_t sk__saga_now_ms(const sk_saga_engine *e);

/** Replace the engine's clock (tests). NULL restores sk_time_now_ms. Before any other use. */
void sk__saga_engine_set_clock(sk_saga_engine *e, int64_t (*clock)(void *ctx), void *ctx);

/** Definition registered for (@p type, @p version), or NULL. */
const sk_saga_def *sk__saga_def_find(const sk_saga_engine *e, const char *type, int version);
/** Registered definition of @p type with the highest version, or NULL. */
const sk_saga_def *sk__saga_def_latest(const sk_saga_engine *e, const char *type);

/**
 * Check a definition before registration: type 1..SK__SAGA_MAX_TYPE bytes of
 * [A-Za-z0-9_.-], version >= 1, reply subject "<token>.replies.<...>", at
 * least one step, each step either a command (subject and type) or a local
 * action, compensation subject and type together, deadline_ms >= 0,
 * is_retried_until_done only on command steps.
 * @return SK_OK or SK_EINVAL naming the field.
 */
sk_status sk__saga_def_check(const sk_saga_def *def);

/**
 * First token of @p reply_subject ("order" for "order.replies.X").
 * @return SK_OK or SK_EINVAL when it does not have the form "<token>.replies.<...>".
 */
sk_status sk__saga_reply_token(const char *reply_subject, char *out, size_t out_size);

/**
 * Durable consumer base name for @p source: its last '/'-separated segment
 * (or the whole source when that is empty) with every character outside
 * [A-Za-z0-9_-] replaced by '_', cut to 64 bytes, plus "-saga-replies".
 * "/skald/order" gives "order-saga-replies".
 */
void sk__saga_durable_base(const char *source, char *out, size_t out_size);

/**
 * Consumer handler of the reply subjects (ctx: the engine), run inside a
 * unit of work: correlates the reply to its instance by ce-subject and
 * ce-sagastep and moves the instance on. Replies for unknown or finished
 * instances, and stale ones (sequence not the one awaited), are ignored.
 * @return SK_OK, SK_EPROTO (no ce-subject or ce-sagastep; reply data not a
 *         JSON object), SK_ENOTFOUND (no definition for the instance's type
 *         and version), or the error of a callback or of the store.
 */
sk_status sk__saga_handle_reply(sk_tx *tx, const sk_message *m, void *ctx);

/**
 * Deadline expiry of @p saga_id, as seen by a scan that read it in
 * @p expected_state with sequence @p expected_seq. Does nothing when the
 * instance changed since, or its deadline is not before @p now_ms. Else: a
 * running step that is retried until done gets its command re-sent (new
 * sequence, new deadline); another running step fails with TIMEOUT (itself
 * and the completed steps before it are compensated, since its effect is
 * unknown); a compensating instance gets its compensation re-sent.
 * @return SK_OK, SK_EINVAL, SK_ENOTFOUND (no definition), store or callback errors.
 */
sk_status sk__saga_handle_deadline(sk_tx *tx,
                                   sk_saga_engine *e,
                                   const char *saga_id,
                                   sk_saga_state expected_state,
                                   int64_t expected_seq,
                                   int64_t now_ms);

/**
 * One scan: read (sk_store_read) at most SK__SAGA_SCAN_BATCH instances whose
 * deadline is before @p now_ms and submit a deadline unit for each.
 * @param[out] n_submitted units submitted (may be NULL).
 * @return SK_OK, or the read or submit error (units submitted before it stay).
 */
sk_status sk__saga_scan(sk_saga_engine *e, int64_t now_ms, size_t *n_submitted);

/** Block until every submitted deadline unit is done. */
void sk__saga_wait_pending(sk_saga_engine *e);

#endif /* SK_SAGA_INT_H */
