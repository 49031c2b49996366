/* SPDX-License-Identifier: MIT */
/*
 * SQLite backend of the store: URL parsing, connections with the durability
 * settings (WAL, synchronous=FULL, never relaxed), a per-connection cache of
 * prepared statements keyed by SQL text, and the mapping of SQLite errors to
 * Skald statuses. Every statement is finalized before its connection closes.
 */
#include "store/store_int.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A cached statement; `rows` must stay the first member (the front sees only it). */
typedef struct sqlite_stmt {
    sk_rows rows;
    sqlite3_stmt *st;
    sk__db_conn *conn;
    char *sql;
    uint64_t hash;
    struct sqlite_stmt *next; /* bucket chain */
} sqlite_stmt;

struct sk__db_conn {
    sqlite3 *db;
    sqlite_stmt **buckets; /* hash map SQL text -> statement, chained */
    size_t n_buckets;      /* a power of two */
    size_t n_cached;
    /* Busy handler state (the connection's thread only). */
    int64_t busy_deadline_ms; /* total wait for one lock before SQLITE_BUSY surfaces */
    int64_t busy_start_ns;    /* monotonic start of the current wait */
    bool busy_gave_up;        /* the last wait hit its deadline (for the error text) */
};

/* Distinguishes the in-memory databases of several stores in one process. */
static atomic_uint_fast64_t mem_db_counter;

/* ---------------------------------------------------------------- errors */

/*
 * The one mapping from SQLite errors to statuses: unique and primary key
 * violations are SK_EEXIST, out of memory SK_ENOMEM, oversized values
 * SK_ELIMIT, everything else SK_EDB. The text copies sqlite3_errmsg (which
 * is borrowed from the connection) and quotes the start of the SQL.
 */
static sk_status sqlite_fail(const sk__db_conn *conn, int rc, const char *sql)
{
    sqlite3 *db = conn != NULL ? conn->db : NULL;
    int ext = rc;
    const char *msg = sqlite3_errstr(rc);
    sk_status st = SK_EDB;
    char quoted[SK__STORE_SQL_QUOTE_MAX + 8];

    if (db != NULL) {
        int db_ext = sqlite3_extended_errcode(db);
        /* Prefer the connection's extended code when it describes this failure. */
        if ((db_ext & 0xff) == (rc & 0xff)) {
            ext = db_ext;
        }
        msg = sqlite3_errmsg(db);
    }
    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY) {
        st = SK_EEXIST;
    } else if ((ext & 0xff) == SQLITE_NOMEM) {
        st = SK_ENOMEM;
    } else if ((ext & 0xff) == SQLITE_TOOBIG) {
        st = SK_ELIMIT;
    }
    if ((ext & 0xff) == SQLITE_BUSY && conn != NULL && conn->busy_gave_up) {
        /*
         * Another connection (usually another instance's process sharing
         * this file) held the lock for the whole deadline. SK_EDB like any
         * database failure (store.h promises no other status), but say what
         * happened and for how long.
         */
        sk__store_sql_quote(sql != NULL ? sql : "", quoted, sizeof(quoted));
        return SK_FAIL(st,
                       "sqlite: %d: %s: gave up after waiting %lld ms for a lock held by another "
                       "connection or process on the same database (in: %s)",
                       ext, msg, (long long)conn->busy_deadline_ms, quoted);
    }
    if (sql == NULL) {
        return SK_FAIL(st, "sqlite: %d: %s", ext, msg);
    }
    sk__store_sql_quote(sql, quoted, sizeof(quoted));
    return SK_FAIL(st, "sqlite: %d: %s (in: %s)", ext, msg, quoted);
}

/* ---------------------------------------------------------------- URLs */

static bool is_memory_name(const char *s)
{
    return strcmp(s, ":memory:") == 0;
}

static sk_status sqlite_url_parse(const char *url, char **target)
{
    const char *path = url;
    char *out = NULL;

    *target = NULL;
    if (strncmp(url, "sqlite:", 7) == 0) {
        path = url + 7;
        if (strncmp(path, "//", 2) == 0) {
            path += 2; /* "sqlite:///abs/path" */
        }
        if (path[0] == '\0') {
            return SK_FAIL(SK_EINVAL, "url \"%s\": expected sqlite:PATH or sqlite::memory:", url);
        }
    } else if (strstr(url, "://") != NULL) {
        return SK_ENOTFOUND; /* another backend's URL, e.g. postgresql:// */
    }
    if (is_memory_name(path)) {
        /*
         * A named database of the memdb VFS: every connection of this
         * process opening the same name shares it, so read connections see
         * the writer's commits, and its locks are ordinary SQLite locks that
         * busy_timeout waits on. (A shared-cache ":memory:" database would
         * use table locks, which fail at once with SQLITE_LOCKED instead of
         * waiting.) It lives while one connection is open.
         */
        uint64_t n = atomic_fetch_add(&mem_db_counter, 1);
        out = sk_asprintf("file:/sk_mem_%ld_%llu?vfs=memdb", (long)getpid(), (unsigned long long)n);
    } else {
        out = sk_strdup(path);
    }
    if (out == NULL) {
        return SK_FAIL(SK_ENOMEM, "url \"%s\": out of memory", url);
    }
    *target = out;
    return SK_OK;
}

static bool target_is_memory(const char *target)
{
    return strncmp(target, "file:/sk_mem_", 13) == 0 && strstr(target, "vfs=memdb") != NULL;
}

static bool sqlite_target_is_file(const char *target)
{
    return !target_is_memory(target);
}

/* ---------------------------------------------------------------- statement cache */

/*
 * Hash of the SQL text, eight bytes at a time: every statement a store runs
 * is looked up by its text, and a byte-at-a-time hash over ~200 bytes of
 * SQL was 2.4 % of a writer's CPU in bench_store. The final mix spreads the
 * bits into the low ones, which pick the bucket.
 */
static uint64_t sql_hash(const char *s)
{
    size_t len = strlen(s);
    uint64_t h = 0x9E3779B97F4A7C15ull ^ len;
    uint64_t w;

    for (; len >= 8; s += 8, len -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
    }
    w = 0;
    memcpy(&w, s, len);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 32;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 29;
    return h;
}

static void stmt_free(sqlite_stmt *s)
{
    sqlite3_finalize(s->st); /* repeats the last step error, if any: nothing to do with it */
    sk_free(s->sql);
    sk_free(s);
}

/* Drop every cached statement the front does not hold open (keeps the cache bounded). */
static void cache_evict_idle(sk__db_conn *c)
{
    for (size_t b = 0; b < c->n_buckets; b++) {
        sqlite_stmt **link = &c->buckets[b];
        while (*link != NULL) {
            sqlite_stmt *s = *link;
            if (s->rows.is_open) {
                link = &s->next;
                continue;
            }
            *link = s->next;
            stmt_free(s);
            c->n_cached--;
        }
    }
}

static sk_status cache_grow(sk__db_conn *c)
{
    size_t n = c->n_buckets == 0 ? 32 : c->n_buckets * 2;
    sqlite_stmt **nb = sk_calloc(n, sizeof(*nb));
    if (nb == NULL) {
        return SK_FAIL(SK_ENOMEM, "sqlite: growing the statement cache");
    }
    for (size_t b = 0; b < c->n_buckets; b++) {
        sqlite_stmt *s = c->buckets[b];
        while (s != NULL) {
            sqlite_stmt *next = s->next;
            size_t i = (size_t)(s->hash & (n - 1));
            s->next = nb[i];
            nb[i] = s;
            s = next;
        }
    }
    sk_free(c->buckets);
    c->buckets = nb;
    c->n_buckets = n;
    return SK_OK;
}

/* True when @p tail holds another statement (comments and blanks do not count). */
static bool has_more_statements(sqlite3 *db, const char *tail)
{
    sqlite3_stmt *extra = NULL;
    const char *p = tail;

    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ';') {
        p++;
    }
    if (*p == '\0') {
        return false;
    }
    if (sqlite3_prepare_v2(db, p, -1, &extra, NULL) != SQLITE_OK) {
        return true; /* something that is not a comment follows */
    }
    if (extra == NULL) {
        return false;
    }
    sqlite3_finalize(extra);
    return true;
}

static sk_status sqlite_prepare(sk__db_conn *c, const char *sql, sk_rows **out)
{
    sk_status st = SK_OK;
    uint64_t h = sql_hash(sql);
    sqlite_stmt *s = NULL;
    sqlite3_stmt *raw = NULL;
    const char *tail = NULL;
    char quoted[SK__STORE_SQL_QUOTE_MAX + 8];
    int rc;

    *out = NULL;
    if (c->n_buckets > 0) {
        for (s = c->buckets[h & (c->n_buckets - 1)]; s != NULL; s = s->next) {
            if (s->hash == h && strcmp(s->sql, sql) == 0) {
                *out = &s->rows;
                return SK_OK;
            }
        }
    }
    if (c->n_cached >= SK__STORE_STMT_CACHE_MAX) {
        cache_evict_idle(c);
    }
    if (c->n_cached >= c->n_buckets) {
        st = cache_grow(c);
        if (st != SK_OK) {
            goto out;
        }
    }
    rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, &tail);
    if (rc != SQLITE_OK) {
        st = sqlite_fail(c, rc, sql);
        goto out;
    }
    if (raw == NULL) {
        sk__store_sql_quote(sql, quoted, sizeof(quoted));
        st = SK_FAIL(SK_EINVAL, "SQL holds no statement (in: %s)", quoted);
        goto out;
    }
    if (has_more_statements(c->db, tail)) {
        sk__store_sql_quote(sql, quoted, sizeof(quoted));
        st = SK_FAIL(SK_EINVAL, "SQL holds more than one statement; pass one per call (in: %s)",
                     quoted);
        goto out;
    }
    s = sk_calloc(1, sizeof(*s));
    if (s == NULL || (s->sql = sk_strdup(sql)) == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sqlite: caching a statement");
        goto out;
    }
    s->rows.be = &sk__store_sqlite_backend;
    s->st = raw;
    raw = NULL;
    s->conn = c;
    s->hash = h;
    s->next = c->buckets[h & (c->n_buckets - 1)];
    c->buckets[h & (c->n_buckets - 1)] = s;
    c->n_cached++;
    *out = &s->rows;
    s = NULL;
out:
    sqlite3_finalize(raw); /* NULL-safe */
    if (s != NULL) {
        sk_free(s->sql);
        sk_free(s);
    }
    return st;
}

static sqlite_stmt *stmt_of(sk_rows *rows)
{
    return (sqlite_stmt *)(void *)rows; /* rows is the first member */
}

size_t sk__sqlite_conn_n_cached(const sk__db_conn *conn)
{
    return conn == NULL ? 0 : conn->n_cached;
}

/* ---------------------------------------------------------------- statements */

static sk_status
sqlite_bind(sk_rows *rows, const sk_db_value *params, size_t n_params, bool is_copy)
{
    sqlite_stmt *s = stmt_of(rows);
    int expected = sqlite3_bind_parameter_count(s->st);
    char quoted[SK__STORE_SQL_QUOTE_MAX + 8];
    sqlite3_destructor_type keep = is_copy ? SQLITE_TRANSIENT : SQLITE_STATIC;

    if ((size_t)expected != n_params) {
        sk__store_sql_quote(s->sql, quoted, sizeof(quoted));
        return SK_FAIL(SK_EINVAL, "SQL has %d parameter(s), %zu given (in: %s)", expected, n_params,
                       quoted);
    }
    if (n_params > 0 && params == NULL) {
        return SK_FAIL(SK_EINVAL, "params must not be NULL when n_params is %zu", n_params);
    }
    for (size_t i = 0; i < n_params; i++) {
        const sk_db_value *v = &params[i];
        int idx = (int)i + 1;
        int rc;
        switch (v->type) {
        case SK_DB_NULL:
            rc = sqlite3_bind_null(s->st, idx);
            break;
        case SK_DB_INT:
            rc = sqlite3_bind_int64(s->st, idx, (sqlite3_int64)v->i);
            break;
        case SK_DB_TEXT: {
            size_t len = v->len;
            if (v->s == NULL) {
                return SK_FAIL(SK_EINVAL, "param %d: text must not be NULL (use SK_DB_NULL_V)",
                               idx);
            }
            if (len == SIZE_MAX) {
                len = strlen(v->s);
            }
            rc = sqlite3_bind_text64(s->st, idx, v->s, (sqlite3_uint64)len, keep, SQLITE_UTF8);
            break;
        }
        case SK_DB_BLOB:
            if (v->len == 0) {
                rc = sqlite3_bind_zeroblob(s->st, idx, 0); /* a NULL pointer would bind NULL */
            } else if (v->s == NULL || v->len == SIZE_MAX) {
                return SK_FAIL(SK_EINVAL, "param %d: blob needs bytes and an explicit length", idx);
            } else {
                rc = sqlite3_bind_blob64(s->st, idx, v->s, (sqlite3_uint64)v->len, keep);
            }
            break;
        default:
            return SK_FAIL(SK_EINVAL, "param %d: unknown type %d", idx, (int)v->type);
        }
        if (rc != SQLITE_OK) {
            return SK_WRAP(sqlite_fail(s->conn, rc, s->sql), "param %d", idx);
        }
    }
    return SK_OK;
}

static sk_status sqlite_step(sk_rows *rows)
{
    sqlite_stmt *s = stmt_of(rows);
    int rc;

    s->conn->busy_gave_up = false;
    rc = sqlite3_step(s->st);

    if (rc == SQLITE_ROW) {
        return SK_OK;
    }
    if (rc == SQLITE_DONE) {
        return SK_ENOTFOUND;
    }
    return sqlite_fail(s->conn, rc, s->sql);
}

static void sqlite_reset(sk_rows *rows)
{
    /* The return value repeats the last step's error, already reported. */
    sqlite3_reset(stmt_of(rows)->st);
}

static int64_t sqlite_changes(sk__db_conn *c)
{
    return (int64_t)sqlite3_changes64(c->db);
}

static void sqlite_release_memory(sk__db_conn *c)
{
    (void)sqlite3_db_release_memory(c->db); /* SQLITE_OK, or SQLITE_BUSY for pages in use */
    /* sk-wal's frame buffer (up to 1 MiB); SQLITE_NOTFOUND on another VFS. */
    (void)sqlite3_file_control(c->db, "main", SK__SQLITE_FCNTL_RELEASE_WAL_BUFFER, NULL);
}

static int sqlite_column_count(sk_rows *rows)
{
    return sqlite3_column_count(stmt_of(rows)->st);
}

static bool sqlite_column_is_null(sk_rows *rows, int col)
{
    return sqlite3_column_type(stmt_of(rows)->st, col) == SQLITE_NULL;
}

static int64_t sqlite_column_int(sk_rows *rows, int col)
{
    return (int64_t)sqlite3_column_int64(stmt_of(rows)->st, col);
}

static const char *sqlite_column_text(sk_rows *rows, int col, size_t *len)
{
    sqlite3_stmt *st = stmt_of(rows)->st;
    /* For blobs column_text returns the bytes as they are (plus a NUL). */
    const unsigned char *p = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);

    if (p == NULL) {
        p = (const unsigned char *)"";
        n = 0;
    }
    if (len != NULL) {
        *len = (size_t)n;
    }
    return (const char *)p;
}

/* ---------------------------------------------------------------- simple statements */

/* Run a cached statement without parameters or rows (BEGIN, PRAGMA ...). */
static sk_status run_simple(sk__db_conn *c, const char *sql)
{
    sk_rows *rows = NULL;
    sk_status st = sqlite_prepare(c, sql, &rows);

    if (st != SK_OK) {
        return st;
    }
    do {
        st = sqlite_step(rows);
    } while (st == SK_OK);
    sqlite_reset(rows);
    return st == SK_ENOTFOUND ? SK_OK : st;
}

static sk_status sqlite_begin(sk__db_conn *c, bool is_write)
{
    /* IMMEDIATE takes the write lock now, so a unit never fails half-way on SQLITE_BUSY. */
    return run_simple(c, is_write ? "BEGIN IMMEDIATE" : "BEGIN");
}

static sk_status sqlite_commit(sk__db_conn *c)
{
    return run_simple(c, "COMMIT");
}

static void sqlite_rollback(sk__db_conn *c)
{
    if (sqlite3_get_autocommit(c->db)) {
        return; /* no transaction open (SQLite may have rolled back on its own) */
    }
    if (run_simple(c, "ROLLBACK") != SK_OK) {
        SK_LOG_ERROR("rollback failed: %s", sk_error_message());
    }
}

static bool sqlite_is_tx_open(sk__db_conn *c)
{
    return !sqlite3_get_autocommit(c->db);
}

static sk_status sqlite_savepoint(sk__db_conn *c)
{
    return run_simple(c, "SAVEPOINT sk_unit");
}

static sk_status sqlite_release(sk__db_conn *c)
{
    return run_simple(c, "RELEASE sk_unit");
}

static sk_status sqlite_rollback_to(sk__db_conn *c)
{
    return run_simple(c, "ROLLBACK TO sk_unit");
}

static sk_status sqlite_exec_script(sk__db_conn *c, const char *sql)
{
    char *errmsg = NULL;
    int rc;
    sk_status st = SK_OK;

    c->busy_gave_up = false;
    rc = sqlite3_exec(c->db, sql, NULL, NULL, &errmsg);

    if (rc != SQLITE_OK) {
        st = sqlite_fail(c, rc, sql);
    }
    sqlite3_free(errmsg); /* the same text as sqlite3_errmsg, already copied */
    return st;
}

/* ---------------------------------------------------------------- locks */

/* Busy waits: this many yields first, then sleeps from BUSY_SLEEP_MIN_NS doubling to BUSY_SLEEP_MAX_NS. */
#define BUSY_N_YIELDS 16
#define BUSY_SLEEP_MIN_NS 50000LL
#define BUSY_SLEEP_MAX_NS 2000000LL

/*
 * The busy handler of every connection (installed instead of
 * sqlite3_busy_timeout). Several processes may share one database file:
 * every instance of a service (inventory-1, inventory-2) opens the same
 * DATA/db/<service>.db, each with its own writer thread. SQLite then
 * serialises the writers with its file locks, and a writer that finds the
 * WAL write lock taken calls this handler until it returns 0. The default
 * handler of sqlite3_busy_timeout sleeps 1, 2, 5, 10 ... 100 ms between
 * tries, while the other writer holds the lock for about one fsync (0.1 to
 * 1 ms per group commit): a waiter sleeps far longer than the holder needs
 * and, since the holder re-takes the lock as soon as its next batch is
 * queued, may miss every short free window in a row. That is where waits of
 * several seconds come from. Here a waiter first yields the CPU a few times
 * (the holder is usually about to commit), then sleeps in steps growing
 * from 50 us to 2 ms, so it looks at the lock at least every 2 ms and most
 * often within a fraction of one commit. A single wait (SQLite counts tries
 * per statement, @p n_prior starting at 0) is bounded by the connection's
 * deadline; then 0 makes SQLITE_BUSY surface, which sqlite_fail reports as
 * SK_EDB with the time waited.
 *
 * Readers install it too: in WAL mode they never wait for writers, but
 * they can meet SQLITE_BUSY briefly while another process recovers the
 * WAL index after a crash, or while a WAL restart is in progress.
 *
 * Runs on the thread using the connection (SQLite calls it from inside
 * sqlite3_step), so the state in @p arg needs no lock.
 */
static int busy_wait(void *arg, int n_prior)
{
    sk__db_conn *c = arg;
    int64_t now = sk_time_mono_ns();
    int64_t left_ns;
    int64_t sleep_ns;
    struct timespec ts;

    if (n_prior <= 0) {
        c->busy_start_ns = now;
        c->busy_gave_up = false;
    }
    left_ns = c->busy_deadline_ms * 1000000LL - (now - c->busy_start_ns);
    if (left_ns <= 0) {
        c->busy_gave_up = true;
        return 0;
    }
    if (n_prior < BUSY_N_YIELDS) {
        sched_yield();
        return 1;
    }
    sleep_ns = BUSY_SLEEP_MIN_NS;
    for (int i = BUSY_N_YIELDS; i < n_prior && sleep_ns < BUSY_SLEEP_MAX_NS; i++) {
        sleep_ns *= 2;
    }
    if (sleep_ns > BUSY_SLEEP_MAX_NS) {
        sleep_ns = BUSY_SLEEP_MAX_NS;
    }
    if (sleep_ns > left_ns) {
        sleep_ns = left_ns;
    }
    ts.tv_sec = (time_t)(sleep_ns / 1000000000LL);
    ts.tv_nsec = (long)(sleep_ns % 1000000000LL);
    nanosleep(&ts, NULL); /* EINTR only shortens one step */
    return 1;
}

void sk__sqlite_conn_set_busy_deadline_ms(sk__db_conn *conn, int64_t deadline_ms)
{
    if (conn != NULL) {
        conn->busy_deadline_ms = deadline_ms > 0 ? deadline_ms : 0;
    }
}

/* ---------------------------------------------------------------- connections */

static void sqlite_conn_close(sk__db_conn *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t b = 0; b < c->n_buckets; b++) {
        sqlite_stmt *s = c->buckets[b];
        while (s != NULL) {
            sqlite_stmt *next = s->next;
            stmt_free(s);
            s = next;
        }
    }
    sk_free(c->buckets);
    if (c->db != NULL && sqlite3_close(c->db) != SQLITE_OK) {
        /* Cannot happen with every statement finalized; do not leak the handle anyway. */
        SK_LOG_ERROR("sqlite3_close: %s", sqlite3_errmsg(c->db));
        sqlite3_close_v2(c->db);
    }
    sk_free(c);
}

/* Read a one-row, one-column PRAGMA result as text into @p out. */
static sk_status pragma_text(sk__db_conn *c, const char *sql, char *out, size_t out_size)
{
    sk_rows *rows = NULL;
    sk_status st = sqlite_prepare(c, sql, &rows);

    out[0] = '\0';
    if (st != SK_OK) {
        return st;
    }
    st = sqlite_step(rows);
    if (st == SK_OK) {
        const char *v = sqlite_column_text(rows, 0, NULL);
        size_t n = strlen(v);
        if (n >= out_size) {
            n = out_size - 1;
        }
        memcpy(out, v, n);
        out[n] = '\0';
    } else if (st == SK_ENOTFOUND) {
        st = SK_OK;
    }
    sqlite_reset(rows);
    return st;
}

/*
 * SQLite's memory statistics take a process-wide mutex around every
 * sqlite3_malloc and sqlite3_free (SQLITE_CONFIG_MEMSTATUS, on by default):
 * ~10 % of a store writer's CPU in bench_store, for counters nothing here
 * reads (sqlite3_memory_used, sqlite3_status, the heap limits). Off before
 * SQLite initialises; if something initialised it first, the call is
 * refused and the statistics stay on, which costs speed only.
 */
static pthread_once_t sqlite_config_once = PTHREAD_ONCE_INIT;
static const char *sqlite_vfs; /* "sk-wal", or NULL for the default VFS */

static void sqlite_config_process(void)
{
    int rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);

    if (rc != SQLITE_OK) {
        SK_LOG_DEBUG("sqlite: memory statistics stay on (sqlite3_config: %s)", sqlite3_errstr(rc));
    }
    sqlite_vfs = sk__store_sqlite_vfs_register();
    if (sqlite_vfs == NULL) {
        SK_LOG_WARN("sqlite: the sk-wal VFS is not available; WAL frames are written one by one");
    }
}

static sk_status sqlite_conn_open(const char *target, bool is_writer, sk__db_conn **out)
{
    sk_status st = SK_OK;
    sk__db_conn *c = NULL;
    bool is_memory = target_is_memory(target);
    int flags = SQLITE_OPEN_NOMUTEX; /* a connection is used by one thread at a time */
    char value[32];
    int rc;

    *out = NULL;
    if (strncmp(target, "file:", 5) == 0) {
        flags |= SQLITE_OPEN_URI;
    }
    flags |= is_writer ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) : SQLITE_OPEN_READONLY;
    c = sk_calloc(1, sizeof(*c));
    if (c == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sqlite: allocating a connection");
        goto out;
    }
    pthread_once(&sqlite_config_once, sqlite_config_process);
    rc = sqlite3_open_v2(target, &c->db, flags, sqlite_vfs);
    if (rc != SQLITE_OK) {
        st = sqlite_fail(c, rc, NULL);
        st = SK_WRAP(st, "opening \"%s\"", is_memory ? ":memory:" : target);
        goto out;
    }
    sqlite3_extended_result_codes(c->db, 1);
    c->busy_deadline_ms = SK__STORE_BUSY_TIMEOUT_MS;
    sqlite3_busy_handler(c->db, busy_wait, c);
    st = run_simple(c, "PRAGMA foreign_keys=ON");
    if (st != SK_OK || !is_writer) {
        goto out;
    }
    /* journal_mode answers the mode in force: WAL is required for files. */
    st = pragma_text(c, "PRAGMA journal_mode=WAL", value, sizeof(value));
    if (st != SK_OK) {
        goto out;
    }
    if (!is_memory && strcmp(value, "wal") != 0) {
        st = SK_FAIL(SK_EDB, "sqlite: \"%s\": journal_mode=WAL refused (mode is \"%s\")", target,
                     value);
        goto out;
    }
    st = run_simple(c, "PRAGMA synchronous=FULL");
    if (st != SK_OK) {
        goto out;
    }
    /*
     * Several processes on one file (the instances of a service), as far as
     * WAL goes:
     * - Readers: each process has its own read connections; WAL snapshots
     *   are per connection, so a read sees every commit made before it
     *   began, by whichever process, and never waits for a writer.
     * - Checkpoints: left to SQLite's automatic PASSIVE checkpoint (every
     *   1000 WAL pages, default wal_autocheckpoint), run by whichever writer
     *   commits past the mark. PASSIVE never calls the busy handler and
     *   never blocks a writer or reader of either process: while the other
     *   process checkpoints it is skipped, and it copies pages only up to
     *   the oldest snapshot still read. It runs after COMMIT released the
     *   write lock, so the other process keeps writing meanwhile; only this
     *   writer's next batch waits for the checkpoint's fsyncs. A long read
     *   in any process holds the WAL from restarting, so it grows until the
     *   read ends: reads here are short point queries. A FULL/RESTART
     *   checkpoint would wait on the other process's writer and readers, so
     *   we run none.
     */
    /*
     * Each unit runs in a savepoint, and SQLite copies the pages a savepoint
     * touches into a statement sub-journal: keep it in memory, not in a
     * temporary file (it is never needed after a crash).
     */
    st = run_simple(c, "PRAGMA temp_store=MEMORY");
    if (st != SK_OK) {
        goto out;
    }
    st = pragma_text(c, "PRAGMA synchronous", value, sizeof(value));
    if (st == SK_OK && strcmp(value, "2") != 0) {
        st = SK_FAIL(SK_EDB, "sqlite: synchronous=FULL refused (value is \"%s\")", value);
    }
out:
    if (st != SK_OK) {
        sqlite_conn_close(c);
        c = NULL;
    }
    *out = c;
    return st;
}

const sk__store_backend sk__store_sqlite_backend = {
    .name = "sqlite",
    .url_parse = sqlite_url_parse,
    .target_is_file = sqlite_target_is_file,
    .conn_open = sqlite_conn_open,
    .conn_close = sqlite_conn_close,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .is_tx_open = sqlite_is_tx_open,
    .savepoint = sqlite_savepoint,
    .release = sqlite_release,
    .rollback_to = sqlite_rollback_to,
    .exec_script = sqlite_exec_script,
    .prepare = sqlite_prepare,
    .bind = sqlite_bind,
    .step = sqlite_step,
    .reset = sqlite_reset,
    .changes = sqlite_changes,
    .release_memory = sqlite_release_memory,
    .column_count = sqlite_column_count,
    .column_is_null = sqlite_column_is_null,
    .column_int = sqlite_column_int,
    .column_text = sqlite_column_text,
};
