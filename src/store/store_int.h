/* SPDX-License-Identifier: MIT */
/*
 * store internals: the backend vtable that keeps store.c database-neutral,
 * the sk_rows / sk_tx layouts shared by the front and the backends, and the
 * SQLite backend's testable helpers. A backend connection is used by one
 * thread at a time; the front guarantees it.
 */
#ifndef SK_STORE_INT_H
#define SK_STORE_INT_H

#include <skald/store.h>

/** A backend connection (opaque to the front). */
typedef struct sk__db_conn sk__db_conn;
typedef struct sk__store_backend sk__store_backend;

/**
 * The front part of a prepared statement. A backend embeds it as the first
 * member of its own statement type and hands out pointers to it. The front
 * owns the fields below `be`; a statement has at most one open rows at a time.
 */
struct sk_rows {
    const sk__store_backend *be; /* set by the backend */
    sk_tx *tx;                   /* owning transaction while open */
    sk_rows *prev_open;          /* the transaction's list of open rows */
    sk_rows *next_open;
    bool is_open; /* between sk_tx_query and sk_rows_close */
    bool has_row; /* the last sk_rows_next produced a row */
    bool is_done; /* stepping reached the end or failed */
};

/** A transaction or read snapshot on one connection. */
struct sk_tx {
    sk_store *store;
    const sk__store_backend *be;
    sk__db_conn *conn;
    bool is_write;      /* a unit of work on the writer, else a read snapshot */
    sk_rows *open_rows; /* queries not closed yet; closed when the callback returns */
};

/**
 * What a database backend provides. Every function that returns a status
 * sets the thread's error message (SK_FAIL) on failure. Statements returned
 * by prepare are owned by the connection (cached by SQL text) and stay valid
 * until conn_close.
 */
struct sk__store_backend {
    const char *name;
    /**
     * Recognise @p url. @return SK_OK with @p target (owned, sk_free) the
     * backend-specific location, SK_ENOTFOUND when the URL is not this
     * backend's, SK_EINVAL when it is but malformed.
     */
    sk_status (*url_parse)(const char *url, char **target);
    /** True when @p target is a file that other processes may open too (not in memory). */
    bool (*target_is_file)(const char *target);
    /** Open a connection; the writer gets durability settings, readers are read-only. */
    sk_status (*conn_open)(const char *target, bool is_writer, sk__db_conn **out);
    /** Finalize every statement and close. NULL-safe. */
    void (*conn_close)(sk__db_conn *conn);
    /** Start a write transaction (taking the write lock now) or a read snapshot. */
    sk_status (*begin)(sk__db_conn *conn, bool is_write);
    sk_status (*commit)(sk__db_conn *conn);
    /** Roll back the open transaction; never fails visibly (errors are logged). */
    void (*rollback)(sk__db_conn *conn);
    /**
     * Whether the transaction begin opened is still open: a database may
     * end it by itself after an error (SQLite rolls back on a full disk or
     * an I/O error), and what runs after that must not run outside it.
     */
    bool (*is_tx_open)(sk__db_conn *conn);
    sk_status (*savepoint)(sk__db_conn *conn);
    sk_status (*release)(sk__db_conn *conn);
    sk_status (*rollback_to)(sk__db_conn *conn);
    /** Run one or more statements without parameters (migrations). */
    sk_status (*exec_script)(sk__db_conn *conn, const char *sql);
    /** Find or prepare the statement for @p sql (exactly one statement). */
    sk_status (*prepare)(sk__db_conn *conn, const char *sql, sk_rows **out);
    /**
     * Bind every parameter (the count must match the statement's).
     * @param is_copy copy text and blobs (rows outlive the call), else borrow them.
     */
    sk_status (*bind)(sk_rows *rows, const sk_db_value *params, size_t n_params, bool is_copy);
    /** @return SK_OK with a row, SK_ENOTFOUND at the end, or an error. */
    sk_status (*step)(sk_rows *rows);
    /** Make the statement reusable (and drop borrowed bindings). */
    void (*reset)(sk_rows *rows);
    /** Rows changed by the last completed statement on @p conn. */
    int64_t (*changes)(sk__db_conn *conn);
    /**
     * Free what @p conn caches that a later transaction can read again (its
     * page cache); called only between transactions, by the connection's
     * one user.
     */
    void (*release_memory)(sk__db_conn *conn);
    int (*column_count)(sk_rows *rows);
    bool (*column_is_null)(sk_rows *rows, int col);
    int64_t (*column_int)(sk_rows *rows, int col);
    /** Never NULL; @p len may be NULL. */
    const char *(*column_text)(sk_rows *rows, int col, size_t *len);
};

/** The SQLite backend ("sqlite:PATH", "sqlite::memory:", plain paths). */
extern const sk__store_backend sk__store_sqlite_backend;

/** A writer idle this long after a batch gives memory back (store.c memory_release). */
#define SK__STORE_IDLE_RELEASE_MS 2000
/** How many times the idle writer gave memory back (store.c memory_release; tests). */
uint64_t sk__store_n_memory_releases(sk_store *store);
/** True when the store is a file that other processes may share (store.c). */
bool sk__store_is_file(const sk_store *store);
/**
 * Register the "sk-wal" VFS (src/store/sqlite_vfs.c: a commit's WAL frames
 * in one write) over SQLite's default unix VFS; once per process.
 * @return its name for sqlite3_open_v2, or NULL to use the default VFS
 *         (no unix VFS, or registration refused).
 */
const char *sk__store_sqlite_vfs_register(void);
/** Databases open through sk-wal whose WAL is paired with them (tests: the gathering is on). */
size_t sk__store_sqlite_vfs_n_paired(void);
/**
 * File control (sqlite3_file_control on "main") that frees the buffer in
 * which sk-wal gathers the connection's WAL frames, up to 1 MiB after a big
 * commit, when no frames wait in it. Call it between transactions, on the
 * connection's thread; the next commit allocates it again.
 */
#define SK__SQLITE_FCNTL_RELEASE_WAL_BUFFER 0x736b01
/**
 * Bytes allocated for gathering WAL frames over every paired WAL, and in
 * @p gathered (when not NULL) the bytes waiting in them (tests, while no
 * other thread writes).
 */
size_t sk__store_sqlite_vfs_buffer_bytes(size_t *gathered);

/** Most statements cached per connection; older idle ones are dropped past it. */
#define SK__STORE_STMT_CACHE_MAX 256
/** Characters of SQL quoted in error messages. */
#define SK__STORE_SQL_QUOTE_MAX 80
/**
 * How long a connection waits for one lock before failing (ms). Another
 * instance's process may share the database file; a wait this long means
 * that process is stuck, not busy, and the unit fails with SK_EDB.
 */
#define SK__STORE_BUSY_TIMEOUT_MS 5000

/**
 * Copy the first SK__STORE_SQL_QUOTE_MAX characters of @p sql into @p out
 * (whitespace runs folded to one space, cut on a UTF-8 boundary, "..." when
 * cut). @p out holds at least SK__STORE_SQL_QUOTE_MAX + 4 bytes.
 */
void sk__store_sql_quote(const char *sql, char *out, size_t out_size);

/** Statements cached on @p conn (SQLite backend; for tests). */
size_t sk__sqlite_conn_n_cached(const sk__db_conn *conn);

/**
 * Change how long @p conn waits for one lock (default
 * SK__STORE_BUSY_TIMEOUT_MS; 0 fails at once). SQLite backend; for tests.
 * NULL-safe. Only from the thread using the connection.
 */
void sk__sqlite_conn_set_busy_deadline_ms(sk__db_conn *conn, int64_t deadline_ms);

#endif /* SK_STORE_INT_H */
