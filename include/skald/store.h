/* SPDX-License-Identifier: MIT */
/*
 * store: one database per service behind a backend-neutral interface.
 *
 * Writes go through units of work: a function that runs inside a
 * transaction on the store's single writer thread. The writer takes every
 * unit that has queued, runs each inside its own savepoint (a failing unit
 * rolls back alone), commits them together (group commit, SQLite WAL with
 * synchronous=FULL) and only then calls each unit's done callback. So a
 * caller answers its client exactly when the change is durable, and no
 * caller thread ever waits on fsync.
 *
 * Reads run on the calling thread with a read-only connection of their own
 * (in WAL mode readers never wait for the writer).
 *
 * SQL is written once for every backend: `?` placeholders, standard types
 * (INTEGER, TEXT, BLOB), INSERT ... ON CONFLICT, RETURNING.
 */
#ifndef SK_STORE_H
#define SK_STORE_H

#include <skald/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A database. Thread-safe. */
typedef struct sk_store sk_store;
/** A transaction (or read snapshot). Owner-thread-only; valid only inside the callback that received it. */
typedef struct sk_tx sk_tx;
/** Result rows of one query. Owner-thread-only. */
typedef struct sk_rows sk_rows;

typedef enum sk_db_type {
    SK_DB_NULL = 0,
    SK_DB_INT = 1,
    SK_DB_TEXT = 2,
    SK_DB_BLOB = 3
} sk_db_type;

/** A bound parameter. Text and blob bytes are borrowed for the call. */
typedef struct sk_db_value {
    sk_db_type type;
    int64_t i;
    const char *s; /* text or blob bytes */
    size_t len;    /* bytes; SIZE_MAX for NUL-terminated text */
} sk_db_value;

#define SK_DB_INT_V(x)  ((sk_db_value){ .type = SK_DB_INT, .i = (int64_t)(x) })
#define SK_DB_TEXT_V(x) ((sk_db_value){ .type = SK_DB_TEXT, .s = (x), .len = SIZE_MAX })
#define SK_DB_TEXTN_V(x, n) ((sk_db_value){ .type = SK_DB_TEXT, .s = (x), .len = (n) })
#define SK_DB_BLOB_V(x, n) ((sk_db_value){ .type = SK_DB_BLOB, .s = (const char *)(x), .len = (n) })
#define SK_DB_NULL_V    ((sk_db_value){ .type = SK_DB_NULL })

/** A schema step. Applied once, in version order, per component, each in its own transaction. */
typedef struct sk_migration {
    const char *component; /* "order", "sk_msg", ...: versions are per component */
    int version;           /* 1, 2, 3 ... */
    const char *sql;       /* one or more statements separated by ';' */
} sk_migration;

typedef struct sk_store_config {
    /**
     * "sqlite:PATH", "sqlite::memory:" or a plain file path. Each
     * ":memory:" store is its own database, shared by the store's
     * connections; it has no WAL, so there a long read delays commits.
     */
    const char *url;
    /** Migrations of the service and of the modules it uses; order does not matter. */
    const sk_migration *migrations;
    size_t n_migrations;
    /** Most units committed in one transaction (0 = 256). */
    size_t max_batch;
    /** Most units waiting for the writer (0 = 65536); past it submit answers SK_ELIMIT. */
    size_t max_queue;
} sk_store_config;

/**
 * Open the database, apply pending migrations, start the writer thread.
 * @param[out] out owned, sk_store_close.
 * @return SK_OK, SK_EINVAL, SK_EDB (open or migration failed, with the SQL error), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_store_open(sk_store **out, const sk_store_config *cfg);
/**
 * Finish every queued unit, stop the writer, close all connections. NULL-safe.
 * From the moment it starts, sk_store_submit answers SK_ESTATE. No read may
 * be running. Never call it from a store callback (it is then ignored, with
 * an error logged, since the writer cannot wait for itself).
 */
SK_API void sk_store_close(sk_store *store);

/** Work inside a transaction. Return SK_OK to keep its changes; anything else rolls back this unit only. */
typedef sk_status (*sk_uow_fn)(sk_tx *tx, void *ctx);
/**
 * Called once per unit after its fate is durable: SK_OK when committed,
 * otherwise the unit's status with its message (@p message never NULL).
 * Runs on the writer thread: keep it short, never block, never submit
 * synchronously (sk_store_run) from it.
 */
typedef void (*sk_uow_done_fn)(sk_status st, const char *message, void *ctx);

/**
 * Queue a unit of work. Never blocks on the database.
 * @param done may be NULL.
 * @return SK_OK (done will be called exactly once), SK_ELIMIT (queue full),
 *         SK_ESTATE (store closing), SK_ENOMEM. On error done is not called.
 * Thread-safe.
 */
SK_API SK_NODISCARD sk_status sk_store_submit(sk_store *store, sk_uow_fn work, sk_uow_done_fn done, void *ctx);

/**
 * Queue a unit and wait until it is durable. For start-up, tools and tests;
 * never from a request path or from a done callback.
 * @return the unit's status (message set), or a submit error; SK_ESTATE when
 *         called on the writer thread (from a unit or a callback).
 */
SK_API SK_NODISCARD sk_status sk_store_run(sk_store *store, sk_uow_fn work, void *ctx);

/**
 * Run @p fn with a read-only snapshot on the calling thread.
 * @return what @p fn returned, or SK_EDB if no snapshot could be taken.
 * Thread-safe (each running read has its own connection, taken from a pool
 * that the store owns; a nested read takes a second one).
 */
SK_API SK_NODISCARD sk_status sk_store_read(sk_store *store, sk_uow_fn fn, void *ctx);

/**
 * Called on the writer thread after the durable commit of a batch in which
 * a unit called sk_tx_want_commit_hook (e.g. to wake the outbox relay when
 * rows were added to the outbox). One hook per store; NULL clears it.
 */
typedef void (*sk_store_commit_hook_fn)(void *ctx);
SK_API void sk_store_set_commit_hook(sk_store *store, sk_store_commit_hook_fn fn, void *ctx);

/**
 * Ask for the store's commit hook once this unit's batch commits. A batch
 * in which no unit asked commits without calling it: most commits of a
 * service that only consumes add nothing the hook is for. A unit that asks
 * and then fails still counts (the hook runs if the batch commits, which
 * is harmless). Ignored outside a unit of work and for NULL.
 */
SK_API void sk_tx_want_commit_hook(sk_tx *tx);

/**
 * Units committed (that returned SK_OK and whose batch committed) and batches
 * (committed transactions) so far; for metrics and benchmarks. Either output
 * may be NULL; a NULL store reads as zeros. Thread-safe.
 */
SK_API void sk_store_stats(sk_store *store, uint64_t *n_units, uint64_t *n_batches);

/**
 * How long the writer has been in the batch it is on: from its BEGIN through
 * its units, their lock waits and its COMMIT (or rollback), not the
 * after-commit hooks and done callbacks that follow. A writer busy far longer
 * than any batch takes is stuck (a deadlocked handler, a disk that no longer
 * answers): the services' watchdog stops vouching for the process then.
 * @param store the store, or NULL.
 * @return milliseconds; 0 while the writer waits for work, and for NULL.
 * Thread-safe.
 */
SK_API int64_t sk_store_busy_ms(const sk_store *store);

/**
 * Where the store lives: the SQLite file path as opened (an in-memory
 * database has a name that is no file). Immutable after open; NULL for a
 * NULL store.
 */
SK_API const char *sk_store_location(const sk_store *store);

/** Longest purpose of a store lock, in bytes. */
#define SK_STORE_LOCK_PURPOSE_MAX 160

/**
 * Take the exclusive lock "<database's real path>-<purpose>.lock" without
 * waiting, so that one of the processes sharing a database file does a job
 * (publish its outbox, run its projections). The kernel releases the lock
 * when the holder's process dies; close(*fd_out) releases it before.
 * @param purpose 1..SK_STORE_LOCK_PURPOSE_MAX bytes of [A-Za-z0-9_-].
 * @return SK_OK with *fd_out >= 0 (held), SK_OK with *fd_out == -1 (the
 *         store is in memory, so nobody can share it), SK_ECONFLICT (held
 *         elsewhere, another open of the same file in this process
 *         included), SK_EIO, SK_EINVAL, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_store_lock_try(const sk_store *store,
                                                const char *purpose,
                                                int *fd_out);
/**
 * The path sk_store_lock_try locks, in @p out (owned, sk_free); SK_OK with
 * *out NULL when the store is in memory. @return SK_OK, SK_EIO, SK_EINVAL, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_store_lock_path(const sk_store *store,
                                                 const char *purpose,
                                                 char **out);

/* ---------------------------------------------------------------- statements */

/**
 * Execute a statement that returns no rows. Statements are prepared once
 * per connection and cached by their SQL text. A statement that returns
 * rows (INSERT ... RETURNING) is run to its end and the rows are dropped.
 * @param sql exactly one statement.
 * @param params n_params values, one per `?`; borrowed for the call.
 * @param[out] changes rows changed (may be NULL).
 * @return SK_OK, SK_EEXIST (unique constraint), SK_EDB (with the SQL error),
 *         SK_EINVAL (NULL argument, not one statement, parameter count or
 *         value), SK_ESTATE (rows of the same SQL are still open).
 */
SK_API SK_NODISCARD sk_status sk_tx_exec(sk_tx *tx,
                                         const char *sql,
                                         const sk_db_value *params,
                                         size_t n_params,
                                         int64_t *changes);

/**
 * Run a query. Step with sk_rows_next; always sk_rows_close (rows left open
 * are closed when the callback returns). One open rows per SQL text at a time.
 * @param params copied; they need not outlive the call.
 * @param[out] out owned by the transaction until sk_rows_close.
 * @return as sk_tx_exec.
 */
SK_API SK_NODISCARD sk_status sk_tx_query(sk_tx *tx,
                                          const char *sql,
                                          const sk_db_value *params,
                                          size_t n_params,
                                          sk_rows **out);
/** @return SK_OK with a row, SK_ENOTFOUND past the last row (and on every later call), SK_EDB, SK_ESTATE (closed). */
SK_API SK_NODISCARD sk_status sk_rows_next(sk_rows *rows);
/** Column accessors (0-based); with no current row or a column out of range: true, 0, "". */
SK_API bool sk_rows_is_null(sk_rows *rows, int col);
SK_API int64_t sk_rows_int(sk_rows *rows, int col);
/** Borrowed until the next sk_rows_next / sk_rows_close; never NULL ("" for NULL). */
SK_API const char *sk_rows_text(sk_rows *rows, int col, size_t *len);
/** Reset the statement for reuse. NULL-safe and idempotent. */
SK_API void sk_rows_close(sk_rows *rows);

/**
 * Convenience: run a query expected to return at most one row and read
 * column 0 as an integer (a NULL value reads as 0).
 * @return SK_OK, SK_ENOTFOUND (no row), SK_EDB.
 */
SK_API SK_NODISCARD sk_status sk_tx_query_int(sk_tx *tx,
                                              const char *sql,
                                              const sk_db_value *params,
                                              size_t n_params,
                                              int64_t *out);

/**
 * Run @p fn on the writer thread after this unit's batch commits durably
 * (before done callbacks), in registration order. Never runs if the unit fails.
 * @return SK_OK, SK_EINVAL, SK_ESTATE (a read snapshot), SK_ELIMIT (2^20 hooks in one batch), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_tx_after_commit(sk_tx *tx, void (*fn)(void *ctx), void *ctx);

/**
 * As sk_tx_after_commit, and when the unit does not commit (it failed, or
 * its batch did) @p discard (may be NULL) is called instead, on the writer
 * thread, so @p ctx can be freed either way. When this returns an error
 * neither is called.
 */
SK_API SK_NODISCARD sk_status sk_tx_after_commit_or_discard(sk_tx *tx,
                                                            void (*fn)(void *ctx),
                                                            void (*discard)(void *ctx),
                                                            void *ctx);

/** The store this transaction belongs to (borrowed). */
SK_API sk_store *sk_tx_store(sk_tx *tx);

#ifdef __cplusplus
}
#endif
#endif /* SK_STORE_H */
