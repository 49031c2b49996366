/* SPDX-License-Identifier: MIT */
/*
 * saga: orchestrated sagas. A definition lists steps (a participant
 * command and how to read its reply, or a local action), each with a
 * compensation and a deadline. Instances live in the owning service's own
 * database and every state change is written in the same transaction as the
 * commands it sends (through the outbox), so a crash at any point resumes
 * where it stopped. A failure runs the compensations of the completed steps
 * in reverse; an expired deadline is a failure with reason TIMEOUT.
 *
 * Correlation: every command a saga sends carries ce-subject = saga id,
 * ce-replyto = the definition's reply subject and ce-sagastep = a sequence
 * number unique within the instance; the participant echoes both in its
 * reply (sk_saga_reply), and a reply whose sequence is not the one awaited
 * (late, duplicate, from a timed-out attempt) is acknowledged and ignored.
 *
 * Participants' contract (see sk_saga_reply): commands and compensations
 * may arrive more than once (redelivery, re-sends after a deadline), so
 * handle both idempotently. A compensation is re-sent until it is answered
 * and any answer counts as done, so a participant must always answer it,
 * also for a command it never applied (after a timeout the saga cannot know
 * whether the command took effect, so the timed-out step is compensated
 * too): answer success, and remember the compensation so that the command,
 * should it still arrive later, is refused.
 *
 * Threading: the definitions' callbacks run inside units of work, on the
 * store's writer thread; they must not block or call sk_store_run.
 */
#ifndef SK_SAGA_H
#define SK_SAGA_H

#include <skald/core.h>
#include <skald/msg.h>
#include <skald/obs.h>
#include <skald/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Outcome of a step, decided by its reply handler. */
typedef enum sk_saga_verdict {
    SK_SAGA_STEP_OK = 0,
    SK_SAGA_STEP_FAILED = 1
} sk_saga_verdict;

/** Longest failure reason, including the NUL. */
#define SK_SAGA_MAX_REASON 64

typedef struct sk_saga_step {
    const char *name; /* "reserve_stock" */

    /* Forward action, one of: a participant command ... */
    const char *command_subject; /* "inventory.commands.ReserveStock" */
    const char *command_type;    /* ce-type, "ReserveStock" */
    /**
     * Build the command payload (a JSON object) from the saga data. @p out
     * owned by the engine. NULL: the payload is {}. Called again for each
     * re-send.
     */
    sk_status (*build)(const json_t *data, json_t **out, void *ctx);
    /**
     * Read the participant's reply: set @p verdict, on failure write the
     * reason (e.g. "OUT_OF_STOCK"; empty gives "FAILED"); may update @p data
     * (e.g. store prices), which is saved. NULL: every reply is a success.
     * An error status rolls the unit back (the reply is redelivered).
     */
    sk_status (*on_reply)(json_t *data,
                          const char *reply_type,
                          const json_t *reply,
                          sk_saga_verdict *verdict,
                          char reason[SK_SAGA_MAX_REASON],
                          void *ctx);
    /* ... or a local action run inside the saga's transaction (command_subject NULL). */
    sk_status (*local)(sk_tx *tx,
                       const char *saga_id,
                       json_t *data,
                       sk_saga_verdict *verdict,
                       char reason[SK_SAGA_MAX_REASON],
                       void *ctx);

    /*
     * Compensation sent when unwinding past this step after it succeeded, or
     * after its command timed out (NULL: none). Re-sent on each expiry of the
     * step's deadline until answered: participants must apply it
     * idempotently and answer it even for a command they never applied.
     * build_compensation NULL: the payload is {}.
     */
    const char *compensation_subject;
    const char *compensation_type;
    sk_status (*build_compensation)(const json_t *data, json_t **out, void *ctx);

    /**
     * Time allowed for the reply (0 = 10 s). On expiry a command fails with
     * TIMEOUT (this step and the ones before it are compensated);
     * compensations are re-sent on expiry until answered.
     */
    int64_t deadline_ms;
    /**
     * Past the pivot: the step cannot fail any more; on expiry its command is
     * re-sent instead of failing the saga (e.g. CommitReservation).
     */
    bool is_retried_until_done;
} sk_saga_step;

typedef struct sk_saga_def {
    const char *type;          /* "CreateOrderSaga" */
    int version;               /* instances finish under the version they started with */
    const char *reply_subject; /* "order.replies.CreateOrderSaga" */
    const sk_saga_step *steps;
    size_t n_steps;
    /** Every step succeeded. Runs in the transaction of the last step. */
    sk_status (*on_completed)(sk_tx *tx, const char *saga_id, const json_t *data, void *ctx);
    /**
     * Compensations done. @p reason: the failing step's reason, "TIMEOUT",
     * or "CANCELLED" when sk_saga_cancel stopped it.
     */
    sk_status (*on_failed)(sk_tx *tx, const char *saga_id, const json_t *data, const char *reason, void *ctx);
    void *ctx; /* passed to every callback above and in the steps */
} sk_saga_def;

/** Runs the sagas of one service. Thread-safe after start. */
typedef struct sk_saga_engine sk_saga_engine;

/** Tables of saga instances (component "sk_saga"). */
SK_API const sk_migration *sk_saga_migrations(size_t *n);

/**
 * @param bus borrowed; NULL runs no reply consumers (tests, or only sk_saga_reply is used).
 * @param metrics borrowed; NULL for none. Series: sk_saga_started_total{type},
 *        sk_saga_completed_total{type}, sk_saga_failed_total{type,reason},
 *        sk_saga_timeouts_total.
 * @param source ce-source of the messages the engine sends ("/skald/order"); copied.
 *        Its last '/' segment names the reply consumers ("order-saga-replies").
 * @param reply_stream stream holding the reply subjects (e.g. "ORDER_REPLIES"); copied.
 * @param[out] out owned, sk_saga_engine_destroy.
 * @return SK_OK, SK_EINVAL (naming the argument), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_saga_engine_create(sk_saga_engine **out,
                                                    sk_store *store,
                                                    sk_bus *bus,
                                                    sk_metrics *metrics,
                                                    const char *source,
                                                    const char *reply_stream);
/** Stop (if started) and free. NULL-safe. */
SK_API void sk_saga_engine_destroy(sk_saga_engine *e);
/**
 * Register a definition (borrowed: keep it alive, usually static). Before start.
 * The reply subject must read "<context>.replies.<name>"; each step is a
 * command (subject and type) or a local action.
 * @return SK_OK, SK_EINVAL (naming the field, e.g. "steps[2].command_type"),
 *         SK_EEXIST (type and version taken), SK_ESTATE (started), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_saga_engine_register(sk_saga_engine *e, const sk_saga_def *def);
/**
 * Start consuming replies of every registered definition and the deadline
 * scanner, which also recovers instances whose deadline passed while the
 * process was down. One durable consumer per reply-subject context on
 * reply_stream, filter "<context>.replies.>".
 * @return SK_OK, SK_EINVAL, SK_ESTATE (already running), or the consumer's error.
 */
SK_API SK_NODISCARD sk_status sk_saga_engine_start(sk_saga_engine *e);
SK_API void sk_saga_engine_stop(sk_saga_engine *e);

/**
 * Start a saga inside the caller's unit of work (latest registered version
 * of @p type): persists the instance and sends the first command.
 * @param saga_id unique, usually the aggregate id; copied.
 * @param data the saga's working data (a JSON object); copied.
 * @param saga_id 1..256 bytes of printable ASCII without spaces (it travels as ce-subject).
 * @param traceparent the saga's trace (NULL or invalid: a new trace).
 * @return SK_OK, SK_EEXIST (id taken), SK_ENOTFOUND (type), SK_EINVAL, SK_EDB,
 *         SK_ENOMEM, or the error of a step's builder or local action.
 */
SK_API SK_NODISCARD sk_status sk_saga_start(sk_tx *tx,
                                            sk_saga_engine *e,
                                            const char *type,
                                            const char *saga_id,
                                            const json_t *data,
                                            const char *traceparent);
/**
 * Ask a running saga to stop: when the awaited reply arrives (or at once if
 * none is awaited), completed steps are compensated and on_failed is called
 * with "CANCELLED" (or the step's own reason if it failed).
 * @return SK_OK (also when already compensating), SK_ENOTFOUND, SK_EINVAL,
 *         SK_ESTATE (already finished: the caller decides what cancelling means then).
 */
SK_API SK_NODISCARD sk_status sk_saga_cancel(sk_tx *tx, sk_saga_engine *e, const char *saga_id);

typedef enum sk_saga_state {
    SK_SAGA_RUNNING = 0,
    SK_SAGA_COMPENSATING = 1,
    SK_SAGA_COMPLETED = 2,
    SK_SAGA_FAILED = 3
} sk_saga_state;
/** Read an instance's state. @return SK_OK, SK_ENOTFOUND, SK_EDB. */
SK_API SK_NODISCARD sk_status sk_saga_get_state(sk_tx *tx, const char *saga_id, sk_saga_state *state);
/** Counts of instances per state (for the dashboard and metrics). */
SK_API SK_NODISCARD sk_status sk_saga_count(sk_tx *tx, int64_t counts[4]);

/**
 * Participant side: answer the saga command @p command inside the unit of
 * work that applied it (outbox row to its ce-replyto, echoing ce-subject and
 * ce-sagastep). @p data is a JSON object.
 *
 * The same command can arrive more than once (redelivery, or a re-send
 * after its deadline, with a new ce-sagastep): apply it idempotently and
 * answer every copy. Compensations are re-sent until answered and must be
 * answered even for a command never applied (see the file comment).
 * @param source ce-source of the reply, 1..256 bytes.
 * @param reply_type ce-type of the reply ("StockReserved"), 1..256 bytes.
 * @return SK_OK, SK_EINVAL, SK_EPROTO (@p command has no ce-replyto,
 *         ce-sagastep or ce-subject: not a saga command), SK_ELIMIT, SK_EDB.
 */
SK_API SK_NODISCARD sk_status sk_saga_reply(sk_tx *tx,
                                            const sk_message *command,
                                            const char *source,
                                            const char *reply_type,
                                            const json_t *data);

#ifdef __cplusplus
}
#endif
#endif /* SK_SAGA_H */
