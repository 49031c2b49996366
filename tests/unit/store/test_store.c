/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the store front (src/store/store.c) on SQLite: migrations,
 * the writer with group commit and per-unit savepoints, hooks, sk_store_run,
 * read snapshots, statements and parameters, queue limits and closing.
 * Conditions are awaited with deadlines, never with sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sk_test.h"
#include "store/store_int.h"
#include <skald/store.h>

#define WAIT_MS 10000

static const sk_migration base_migrations[] = {
    { "test", 1, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);" },
};

static sk_store *open_mem(size_t max_queue)
{
    sk_store *s = NULL;
    sk_store_config cfg = { .url = "sqlite::memory:",
                            .migrations = base_migrations,
                            .n_migrations = 1,
                            .max_queue = max_queue };
    sk_status st = sk_store_open(&s, &cfg);
    if (st != SK_OK) {
        fail_msg("sk_store_open: %s", sk_error_message());
    }
    return s;
}

/* ---------------------------------------------------------------- helpers */

typedef struct counter_wait {
    atomic_int *counter;
    int want;
} counter_wait;

static bool counter_reached(void *ctx)
{
    counter_wait *w = ctx;
    return atomic_load(w->counter) >= w->want;
}

static void wait_counter(atomic_int *counter, int want)
{
    counter_wait w = { counter, want };
    assert_true(sk_test_wait_until(counter_reached, &w, WAIT_MS));
}

/* A unit that blocks the writer until released, so later units queue up together. */
typedef struct gate {
    atomic_int is_running;
    atomic_int is_open;
} gate;

static bool gate_is_open(void *ctx)
{
    gate *g = ctx;
    return atomic_load(&g->is_open) != 0;
}

static sk_status gate_work(sk_tx *tx, void *ctx)
{
    gate *g = ctx;
    (void)tx;
    atomic_store(&g->is_running, 1);
    /* Polls with a deadline; the test thread opens the gate. */
    if (!sk_test_wait_until(gate_is_open, g, WAIT_MS)) {
        return SK_FAIL(SK_ETIMEDOUT, "gate never opened");
    }
    return SK_OK;
}

static bool gate_is_running(void *ctx)
{
    gate *g = ctx;
    return atomic_load(&g->is_running) != 0;
}

static void gate_close_writer(sk_store *s, gate *g)
{
    atomic_store(&g->is_running, 0);
    atomic_store(&g->is_open, 0);
    assert_int_equal(sk_store_submit(s, gate_work, NULL, g), SK_OK);
    assert_true(sk_test_wait_until(gate_is_running, g, WAIT_MS));
}

/* Insert (id, v) given through a small struct. */
typedef struct row_unit {
    int64_t id;
    const char *v;
    sk_status fail_with; /* after inserting, return this (SK_OK to keep) */
    atomic_int *n_done;
    sk_status done_st;
    char done_msg[256];
} row_unit;

static sk_status row_work(sk_tx *tx, void *ctx)
{
    row_unit *u = ctx;
    sk_db_value p[2] = { SK_DB_INT_V(u->id), SK_DB_TEXT_V(u->v != NULL ? u->v : "x") };
    sk_status st = sk_tx_exec(tx, "INSERT INTO t (id, v) VALUES (?, ?)", p, 2, NULL);
    if (st != SK_OK) {
        return st;
    }
    if (u->fail_with != SK_OK) {
        return SK_FAIL(u->fail_with, "unit %lld refused on purpose", (long long)u->id);
    }
    return SK_OK;
}

static void row_done(sk_status st, const char *message, void *ctx)
{
    row_unit *u = ctx;
    u->done_st = st;
    snprintf(u->done_msg, sizeof(u->done_msg), "%s", message);
    atomic_fetch_add(u->n_done, 1);
}

typedef struct count_ctx {
    const char *sql;
    int64_t n;
} count_ctx;

static sk_status count_read(sk_tx *tx, void *ctx)
{
    count_ctx *c = ctx;
    return sk_tx_query_int(tx, c->sql, NULL, 0, &c->n);
}

static int64_t count_rows(sk_store *s, const char *sql)
{
    count_ctx c = { sql, -1 };
    sk_status st = sk_store_read(s, count_read, &c);
    if (st != SK_OK) {
        fail_msg("count %s: %s", sql, sk_error_message());
    }
    return c.n;
}

static bool row_exists(sk_store *s, int64_t id)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE id = %lld", (long long)id);
    return count_rows(s, sql) == 1;
}

/* ---------------------------------------------------------------- open */

static void test_sk_store_open_null_and_invalid_args(void **state)
{
    sk_store *s = (sk_store *)&s;
    sk_store_config cfg = { .url = "sqlite::memory:" };
    sk_migration bad[2] = { { "a", 1, "SELECT 1" }, { "a", 1, "SELECT 2" } };
    (void)state;

    SK_TEST_ASSERT_ERR(sk_store_open(NULL, &cfg), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_store_open(&s, NULL), SK_EINVAL, "cfg");
    assert_null(s);
    cfg.url = NULL;
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EINVAL, "cfg->url");
    cfg.url = "";
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EINVAL, "cfg->url");
    cfg.url = "sqlite:";
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EINVAL, "sqlite:PATH");
    cfg.url = "postgresql://app:s3cret@db.example/x";
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EINVAL, "no backend for scheme \"postgresql\"");
    assert_null(strstr(sk_error_message(), "s3cret"));

    cfg.url = "sqlite::memory:";
    cfg.n_migrations = 1;
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EINVAL, "cfg->migrations is NULL");
    cfg.migrations = bad;
    bad[0].component = "";
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EINVAL, "migrations[0].component");
    bad[0].component = "a";
    bad[0].version = 0;
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EINVAL, "migrations[0].version must be >= 1");
    bad[0].version = 1;
    bad[0].sql = NULL;
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EINVAL, "migrations[0].sql");
    bad[0].sql = "SELECT 1";
    cfg.n_migrations = 2;
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EINVAL, "migration a v1 is listed twice");
    assert_null(s);
}

static void test_sk_store_open_bad_path(void **state)
{
    sk_store *s = NULL;
    sk_store_config cfg = { .url = "sqlite:/nonexistent-dir-skald/x/y.db" };
    (void)state;

    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EDB, "unable to open");
    assert_null(s);
}

typedef struct mig_row_ctx {
    char got[256];
    int64_t applied_at_min;
} mig_row_ctx;

static sk_status list_migrations(sk_tx *tx, void *ctx)
{
    mig_row_ctx *c = ctx;
    sk_rows *rows = NULL;
    sk_status st =
        sk_tx_query(tx, "SELECT component, version, applied_at FROM sk_migrations ORDER BY rowid",
                    NULL, 0, &rows);
    size_t n = 0;

    c->got[0] = '\0';
    c->applied_at_min = INT64_MAX;
    if (st != SK_OK) {
        return st;
    }
    while ((st = sk_rows_next(rows)) == SK_OK) {
        n += (size_t)snprintf(c->got + n, sizeof(c->got) - n, "%s%s:%lld", n > 0 ? "," : "",
                              sk_rows_text(rows, 0, NULL), (long long)sk_rows_int(rows, 1));
        if (sk_rows_int(rows, 2) < c->applied_at_min) {
            c->applied_at_min = sk_rows_int(rows, 2);
        }
    }
    sk_rows_close(rows);
    return st == SK_ENOTFOUND ? SK_OK : st;
}

static void test_sk_store_open_migrations_in_order(void **state)
{
    /* Given out of order; b v2 only works after b v1. */
    static const sk_migration migs[] = {
        { "b", 2, "ALTER TABLE b ADD COLUMN extra TEXT; CREATE INDEX b_extra ON b(extra);" },
        { "b", 1, "CREATE TABLE b (id INTEGER PRIMARY KEY);" },
        { "a", 1, "CREATE TABLE a (id INTEGER PRIMARY KEY);" },
    };
    sk_store *s = NULL;
    sk_store_config cfg = { .url = "sqlite::memory:", .migrations = migs, .n_migrations = 3 };
    mig_row_ctx c;
    (void)state;

    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    assert_int_equal(sk_store_read(s, list_migrations, &c), SK_OK);
    assert_string_equal(c.got, "a:1,b:1,b:2");
    assert_true(c.applied_at_min > 1600000000000LL); /* epoch milliseconds */
    assert_int_equal(count_rows(s, "SELECT count(*) FROM pragma_table_info('b')"), 2);
    sk_store_close(s);
}

static sk_status pragma_unit(sk_tx *tx, void *ctx)
{
    int64_t *out = ctx;
    sk_status st = sk_tx_query_int(tx, "PRAGMA synchronous", NULL, 0, &out[0]);
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "PRAGMA foreign_keys", NULL, 0, &out[1]);
    }
    return st;
}

typedef struct text_ctx {
    const char *sql;
    char got[64];
} text_ctx;

static sk_status text_read(sk_tx *tx, void *ctx)
{
    text_ctx *c = ctx;
    sk_rows *rows = NULL;
    sk_status st = sk_tx_query(tx, c->sql, NULL, 0, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_OK) {
        snprintf(c->got, sizeof(c->got), "%s", sk_rows_text(rows, 0, NULL));
    }
    sk_rows_close(rows);
    return st;
}

static void test_sk_store_open_file_reopen_not_reapplied(void **state)
{
    static const sk_migration v1[] = {
        { "order", 1,
          "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'seed');" },
    };
    static const sk_migration v12[] = {
        { "order", 2, "INSERT INTO t VALUES (2, 'second');" },
        { "order", 1,
          "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'seed');" },
    };
    char dir[64];
    char url[128];
    char wal[128];
    struct stat sb;
    sk_store *s = NULL;
    sk_store_config cfg = { .url = url, .migrations = v1, .n_migrations = 1 };
    int64_t prag[2] = { -1, -1 };
    text_ctx jm = { .sql = "PRAGMA journal_mode" };
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/store.db", dir);
    snprintf(wal, sizeof(wal), "%s/store.db-wal", dir);

    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    assert_int_equal(stat(wal, &sb), 0); /* WAL mode on a file */
    assert_int_equal(sk_store_read(s, text_read, &jm), SK_OK);
    assert_string_equal(jm.got, "wal");
    assert_int_equal(sk_store_run(s, pragma_unit, prag), SK_OK);
    assert_int_equal(prag[0], 2); /* synchronous=FULL */
    assert_int_equal(prag[1], 1); /* foreign_keys=ON */
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 1);
    sk_store_close(s);

    /* Reopen (a plain path this time) with one more migration: v1 is not applied again. */
    snprintf(url, sizeof(url), "%s/store.db", dir);
    cfg.migrations = v12;
    cfg.n_migrations = 2;
    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 2);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM sk_migrations"), 2);
    sk_store_close(s);

    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 2);
    sk_store_close(s);
    sk_test_rmrf(dir);
}

static void test_sk_store_open_failing_migration(void **state)
{
    static const sk_migration migs[] = {
        { "order", 1, "CREATE TABLE t (id INTEGER PRIMARY KEY);" },
        /* The first statement works; the second fails; neither must remain. */
        { "order", 2, "CREATE TABLE half (a INTEGER); INSERT INTO missing VALUES (1);" },
    };
    char dir[64];
    char url[128];
    sk_store *s = NULL;
    sk_store_config cfg = { .url = url, .migrations = migs, .n_migrations = 2 };
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/m.db", dir);
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EDB, "migration order v2 failed");
    assert_null(s);
    assert_non_null(strstr(sk_error_message(), "no such table: missing"));
    assert_non_null(strstr(sk_error_message(), "(in: CREATE TABLE half"));

    /* v1 stayed applied, v2 left nothing behind. */
    cfg.n_migrations = 1;
    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM sqlite_master WHERE name = 'half'"), 0);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM sk_migrations"), 1);
    sk_store_close(s);

    static const sk_migration syntax[] = { { "x", 1, "CREAT TABLE oops (a);" } };
    cfg.migrations = syntax;
    SK_TEST_ASSERT_ERR(sk_store_open(&s, &cfg), SK_EDB, "migration x v1 failed");
    assert_non_null(strstr(sk_error_message(), "syntax error"));
    sk_test_rmrf(dir);
}

static void test_sk_store_open_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_store *s = NULL;
        sk_store_config cfg = {
            .url = "sqlite::memory:", .migrations = base_migrations, .n_migrations = 1
        };
        sk_test_fail_alloc_at(n);
        sk_status st = sk_store_open(&s, &cfg);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_store_close(s);
            assert_true(n > 3);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(s);
    }
}

/* ---------------------------------------------------------------- submit */

typedef struct order_log {
    pthread_mutex_t mu;
    int seen[100];
    int n;
    atomic_int n_done;
} order_log;

typedef struct order_unit {
    order_log *log;
    int i;
} order_unit;

static sk_status order_work(sk_tx *tx, void *ctx)
{
    order_unit *u = ctx;
    sk_db_value p[2] = { SK_DB_INT_V(u->i), SK_DB_TEXT_V("o") };
    return sk_tx_exec(tx, "INSERT INTO t (id, v) VALUES (?, ?)", p, 2, NULL);
}

static void order_done(sk_status st, const char *message, void *ctx)
{
    order_unit *u = ctx;
    assert_int_equal(st, SK_OK);
    assert_string_equal(message, "");
    pthread_mutex_lock(&u->log->mu);
    u->log->seen[u->log->n++] = u->i;
    pthread_mutex_unlock(&u->log->mu);
    atomic_fetch_add(&u->log->n_done, 1);
}

static void test_sk_store_submit_done_in_order(void **state)
{
    sk_store *s = open_mem(0);
    order_log log = { .n = 0 };
    order_unit units[100];
    (void)state;

    pthread_mutex_init(&log.mu, NULL);
    atomic_init(&log.n_done, 0);
    for (int i = 0; i < 100; i++) {
        units[i] = (order_unit){ &log, i };
        assert_int_equal(sk_store_submit(s, order_work, order_done, &units[i]), SK_OK);
    }
    wait_counter(&log.n_done, 100);
    pthread_mutex_lock(&log.mu);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(log.seen[i], i);
    }
    pthread_mutex_unlock(&log.mu);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 100);
    sk_store_close(s);
    pthread_mutex_destroy(&log.mu);
}

static void test_sk_store_submit_failing_unit_rolls_back_alone(void **state)
{
    sk_store *s = open_mem(0);
    gate g;
    atomic_int n_done;
    row_unit a = { .id = 1, .v = "a", .n_done = &n_done };
    row_unit b = { .id = 2, .v = "b", .fail_with = SK_ECONFLICT, .n_done = &n_done };
    row_unit dup = { .id = 1, .v = "dup", .n_done = &n_done }; /* unique violation */
    row_unit c = { .id = 3, .v = "c", .n_done = &n_done };
    uint64_t n_units = 0;
    uint64_t n_batches = 0;
    (void)state;

    atomic_init(&n_done, 0);
    gate_close_writer(s, &g);
    assert_int_equal(sk_store_submit(s, row_work, row_done, &a), SK_OK);
    assert_int_equal(sk_store_submit(s, row_work, row_done, &b), SK_OK);
    assert_int_equal(sk_store_submit(s, row_work, row_done, &dup), SK_OK);
    assert_int_equal(sk_store_submit(s, row_work, row_done, &c), SK_OK);
    atomic_store(&g.is_open, 1);
    wait_counter(&n_done, 4);

    assert_int_equal(a.done_st, SK_OK);
    assert_string_equal(a.done_msg, "");
    assert_int_equal(b.done_st, SK_ECONFLICT);
    assert_string_equal(b.done_msg, "unit 2 refused on purpose");
    assert_int_equal(dup.done_st, SK_EEXIST);
    assert_non_null(strstr(dup.done_msg, "UNIQUE constraint failed: t.id"));
    assert_int_equal(c.done_st, SK_OK);

    assert_true(row_exists(s, 1));
    assert_false(row_exists(s, 2));
    assert_true(row_exists(s, 3));
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t WHERE v = 'dup'"), 0);
    /* The gate's batch, then a, b, dup and c together in one transaction. */
    sk_store_stats(s, &n_units, &n_batches);
    assert_int_equal(n_batches, 2);
    assert_int_equal(n_units, 3);
    sk_store_close(s);
}

static sk_status row_work_orphan_child(sk_tx *tx, void *ctx)
{
    sk_db_value p[1] = { SK_DB_INT_V(42) };
    (void)ctx;
    /* Accepted now, refused at COMMIT: the constraint is deferred. */
    return sk_tx_exec(tx, "INSERT INTO child (id, parent_id) VALUES (1, ?)", p, 1, NULL);
}

static void row_done_any(sk_status st, const char *message, void *ctx)
{
    assert_int_equal(st, SK_EDB);
    assert_non_null(strstr(message, "commit failed"));
    atomic_fetch_add((atomic_int *)ctx, 1);
}

/* Every unit of a batch gets SK_EDB when COMMIT fails (here: a deferred foreign key). */
static void test_sk_store_submit_commit_failure_fails_batch(void **state)
{
    static const sk_migration migs[] = {
        { "test", 1,
          "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
          "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
          "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
          "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);" },
    };
    sk_store *s = NULL;
    sk_store_config cfg = { .url = "sqlite::memory:", .migrations = migs, .n_migrations = 1 };
    gate g;
    atomic_int n_done;
    row_unit a = { .id = 1, .v = "a", .n_done = &n_done };
    row_unit after = { .id = 2, .v = "after", .n_done = &n_done };
    (void)state;

    atomic_init(&n_done, 0);
    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    gate_close_writer(s, &g);
    assert_int_equal(sk_store_submit(s, row_work, row_done, &a), SK_OK);
    assert_int_equal(sk_store_submit(s, row_work_orphan_child, row_done_any, &n_done), SK_OK);
    atomic_store(&g.is_open, 1);
    wait_counter(&n_done, 2);
    assert_int_equal(a.done_st, SK_EDB);
    assert_non_null(strstr(a.done_msg, "commit failed"));
    assert_non_null(strstr(a.done_msg, "FOREIGN KEY constraint failed"));
    assert_false(row_exists(s, 1));

    /* The store keeps working. */
    assert_int_equal(sk_store_submit(s, row_work, row_done, &after), SK_OK);
    wait_counter(&n_done, 3);
    assert_int_equal(after.done_st, SK_OK);
    assert_true(row_exists(s, 2));
    sk_store_close(s);
}

/* ---------------------------------------------------------------- group commit */

#define GC_PER_THREAD 500

typedef struct gc_shared {
    sk_store *store;
    atomic_int calls[2 * GC_PER_THREAD];
    atomic_int n_done;
    atomic_int n_failed;
} gc_shared;

typedef struct gc_unit {
    gc_shared *sh;
    int id;
} gc_unit;

static gc_unit gc_units[2 * GC_PER_THREAD];

static sk_status gc_work(sk_tx *tx, void *ctx)
{
    gc_unit *u = ctx;
    sk_db_value p[2] = { SK_DB_INT_V(u->id), SK_DB_TEXT_V("an order row of some length........") };
    return sk_tx_exec(tx, "INSERT INTO t (id, v) VALUES (?, ?)", p, 2, NULL);
}

static void gc_done(sk_status st, const char *message, void *ctx)
{
    gc_unit *u = ctx;
    (void)message;
    if (st != SK_OK) {
        atomic_fetch_add(&u->sh->n_failed, 1);
    }
    atomic_fetch_add(&u->sh->calls[u->id], 1);
    atomic_fetch_add(&u->sh->n_done, 1);
}

typedef struct gc_producer {
    gc_shared *sh;
    int first;
    int n_rejected;
} gc_producer;

static void *gc_produce(void *arg)
{
    gc_producer *p = arg;
    for (int i = 0; i < GC_PER_THREAD; i++) {
        gc_unit *u = &gc_units[p->first + i];
        u->sh = p->sh;
        u->id = p->first + i;
        if (sk_store_submit(p->sh->store, gc_work, gc_done, u) != SK_OK) {
            p->n_rejected++;
        }
    }
    return NULL;
}

static void test_sk_store_submit_group_commit_batches(void **state)
{
    /* A file, so every commit pays a real fsync while the producers keep queueing. */
    char dir[64];
    char url[128];
    sk_store_config cfg = { .url = url, .migrations = base_migrations, .n_migrations = 1 };
    static gc_shared sh;
    gc_producer prod[2] = { { &sh, 0, 0 }, { &sh, GC_PER_THREAD, 0 } };
    pthread_t th[2];
    uint64_t n_units = 0;
    uint64_t n_batches = 0;
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/gc.db", dir);
    memset(&sh, 0, sizeof(sh));
    assert_int_equal(sk_store_open(&sh.store, &cfg), SK_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, gc_produce, &prod[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
    }
    assert_int_equal(prod[0].n_rejected + prod[1].n_rejected, 0);
    wait_counter(&sh.n_done, 2 * GC_PER_THREAD);
    assert_int_equal(atomic_load(&sh.n_failed), 0);
    for (int i = 0; i < 2 * GC_PER_THREAD; i++) {
        assert_int_equal(atomic_load(&sh.calls[i]), 1);
    }
    sk_store_stats(sh.store, &n_units, &n_batches);
    assert_int_equal(n_units, 2 * GC_PER_THREAD);
    print_message("group commit: %llu units in %llu transactions\n", (unsigned long long)n_units,
                  (unsigned long long)n_batches);
    assert_true(n_batches >= 1);
    assert_true(n_batches * 10 <= n_units);
    assert_int_equal(count_rows(sh.store, "SELECT count(*) FROM t"), 2 * GC_PER_THREAD);
    sk_store_close(sh.store);
    sk_test_rmrf(dir);
}

static void test_sk_store_submit_max_batch(void **state)
{
    sk_store *s = NULL;
    sk_store_config cfg = {
        .url = "sqlite::memory:", .migrations = base_migrations, .n_migrations = 1, .max_batch = 2
    };
    gate g;
    atomic_int n_done;
    row_unit u[5];
    uint64_t n_batches = 0;
    (void)state;

    atomic_init(&n_done, 0);
    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    gate_close_writer(s, &g);
    for (int i = 0; i < 5; i++) {
        u[i] = (row_unit){ .id = i + 1, .v = "m", .n_done = &n_done };
        assert_int_equal(sk_store_submit(s, row_work, row_done, &u[i]), SK_OK);
    }
    atomic_store(&g.is_open, 1);
    wait_counter(&n_done, 5);
    sk_store_stats(s, NULL, &n_batches);
    assert_int_equal(n_batches, 1 + 3); /* the gate, then 2 + 2 + 1 */
    sk_store_close(s);
}

static bool writer_is_idle(void *ctx)
{
    return sk_store_busy_ms(ctx) == 0;
}

/* How long the writer has been in its batch: what the services' watchdog looks at. */
static void test_sk_store_busy_ms(void **state)
{
    sk_store *s = NULL;
    sk_store_config cfg = {
        .url = "sqlite::memory:", .migrations = base_migrations, .n_migrations = 1
    };
    gate g;
    (void)state;

    assert_int_equal(sk_store_busy_ms(NULL), 0);
    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    assert_int_equal(sk_store_busy_ms(s), 0); /* waiting for work */
    gate_close_writer(s, &g);
    int64_t t0 = sk_time_mono_ms();
    const struct timespec step = { 0, 10000000 };
    while (sk_time_mono_ms() - t0 < 150) {
        nanosleep(&step, NULL);
    }
    int64_t busy = sk_store_busy_ms(s);
    assert_true(busy >= 150);
    assert_true(busy <= sk_time_mono_ms() - t0 + WAIT_MS);
    atomic_store(&g.is_open, 1);
    assert_true(sk_test_wait_until(writer_is_idle, s, WAIT_MS));
    sk_store_close(s);
}

/* ---------------------------------------------------------------- hooks */

typedef struct event_log {
    char text[256];
    atomic_int n_done;
} event_log;

static void log_event(event_log *log, const char *ev)
{
    size_t n = strlen(log->text);
    snprintf(log->text + n, sizeof(log->text) - n, "%s%s", n > 0 ? "," : "", ev);
}

static event_log hook_log;

static void hook_h1a(void *ctx)
{
    log_event(ctx, "h1a");
}
static void hook_h1b(void *ctx)
{
    log_event(ctx, "h1b");
}
static void hook_h2(void *ctx)
{
    log_event(ctx, "h2");
}
static void hook_h3(void *ctx)
{
    log_event(ctx, "h3");
}
static void hook_x2(void *ctx)
{
    log_event(ctx, "x2");
}
static void commit_hook(void *ctx)
{
    log_event(ctx, "C");
}

typedef struct hook_unit {
    int n;
} hook_unit;

static sk_status hook_work(sk_tx *tx, void *ctx)
{
    hook_unit *u = ctx;
    sk_status st = SK_OK;
    assert_ptr_equal(sk_tx_store(tx) != NULL, true);
    switch (u->n) {
    case 1:
        sk_tx_want_commit_hook(tx);
        st = sk_tx_after_commit(tx, hook_h1a, &hook_log);
        if (st == SK_OK) {
            st = sk_tx_after_commit(tx, hook_h1b, &hook_log);
        }
        return st;
    case 2:
        st = sk_tx_after_commit_or_discard(tx, hook_h2, hook_x2, &hook_log);
        return st == SK_OK ? SK_FAIL(SK_ECONFLICT, "unit 2 fails") : st;
    default:
        return sk_tx_after_commit(tx, hook_h3, &hook_log);
    }
}

static void hook_done(sk_status st, const char *message, void *ctx)
{
    hook_unit *u = ctx;
    char ev[8];
    (void)message;
    snprintf(ev, sizeof(ev), "D%d%s", u->n, st == SK_OK ? "" : "!");
    log_event(&hook_log, ev);
    atomic_fetch_add(&hook_log.n_done, 1);
}

static void test_sk_tx_after_commit_and_commit_hook_order(void **state)
{
    sk_store *s = open_mem(0);
    gate g;
    hook_unit u[3] = { { 1 }, { 2 }, { 3 } };
    (void)state;

    memset(&hook_log, 0, sizeof(hook_log));
    sk_store_set_commit_hook(s, commit_hook, &hook_log);
    gate_close_writer(s, &g);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sk_store_submit(s, hook_work, hook_done, &u[i]), SK_OK);
    }
    atomic_store(&g.is_open, 1);
    wait_counter(&hook_log.n_done, 3);
    /* The gate's batch commits without the commit hook (no unit of it asked); the failed unit's
     * hook is discarded as it rolls back; then the hooks of units that kept their changes, the
     * commit hook (unit 1 asked), the done calls. */
    assert_string_equal(hook_log.text, "x2,h1a,h1b,h3,C,D1,D2!,D3");

    /* A batch in which no unit asked for it commits without the commit hook. */
    memset(&hook_log, 0, sizeof(hook_log));
    assert_int_equal(sk_store_submit(s, hook_work, hook_done, &u[2]), SK_OK);
    wait_counter(&hook_log.n_done, 1);
    assert_string_equal(hook_log.text, "h3,D3");

    /* Clearing the hook. */
    memset(&hook_log, 0, sizeof(hook_log));
    sk_store_set_commit_hook(s, NULL, NULL);
    assert_int_equal(sk_store_submit(s, hook_work, hook_done, &u[0]), SK_OK);
    wait_counter(&hook_log.n_done, 1);
    assert_string_equal(hook_log.text, "h1a,h1b,D1");
    sk_tx_want_commit_hook(NULL); /* ignored */
    sk_store_close(s);
}

static sk_status read_after_commit(sk_tx *tx, void *ctx)
{
    (void)ctx;
    return sk_tx_after_commit(tx, hook_h3, &hook_log);
}

static void test_sk_tx_after_commit_errors(void **state)
{
    sk_store *s = open_mem(0);
    (void)state;

    SK_TEST_ASSERT_ERR(sk_tx_after_commit(NULL, hook_h3, NULL), SK_EINVAL, "tx");
    SK_TEST_ASSERT_ERR(sk_store_read(s, read_after_commit, NULL), SK_ESTATE, "read snapshot");
    assert_null(sk_tx_store(NULL));
    sk_store_set_commit_hook(NULL, commit_hook, NULL); /* ignored */
    sk_store_close(s);
}

static sk_status null_fn_unit(sk_tx *tx, void *ctx)
{
    (void)ctx;
    return sk_tx_after_commit(tx, NULL, NULL);
}

/* ---------------------------------------------------------------- run */

static sk_status conflict_unit(sk_tx *tx, void *ctx)
{
    (void)tx;
    return SK_FAIL(SK_ECONFLICT, "stock too low for %s", (const char *)ctx);
}

static sk_status nested_run_unit(sk_tx *tx, void *ctx)
{
    sk_status st = sk_store_run(sk_tx_store(tx), conflict_unit, ctx);
    return st == SK_ESTATE ? SK_OK : SK_FAIL(SK_EINTERNAL, "nested run gave %d", (int)st);
}

static void test_sk_store_run_status_and_message(void **state)
{
    sk_store *s = open_mem(0);
    row_unit a = { .id = 7, .v = "seven" };
    row_unit again = { .id = 7, .v = "again" };
    char sku[] = "SKU-1";
    (void)state;

    assert_int_equal(sk_store_run(s, row_work, &a), SK_OK);
    assert_true(row_exists(s, 7));
    SK_TEST_ASSERT_ERR(sk_store_run(s, conflict_unit, sku), SK_ECONFLICT,
                       "stock too low for SKU-1");
    SK_TEST_ASSERT_ERR(sk_store_run(s, row_work, &again), SK_EEXIST, "UNIQUE constraint failed");
    SK_TEST_ASSERT_ERR(sk_store_run(s, null_fn_unit, NULL), SK_EINVAL, "fn must not be NULL");
    /* sk_store_run on the writer thread would wait for itself: refused. */
    assert_int_equal(sk_store_run(s, nested_run_unit, sku), SK_OK);
    SK_TEST_ASSERT_ERR(sk_store_run(NULL, row_work, &a), SK_EINVAL, "store");
    SK_TEST_ASSERT_ERR(sk_store_run(s, NULL, NULL), SK_EINVAL, "work");
    sk_store_close(s);
}

/* ---------------------------------------------------------------- reads */

typedef struct snap_ctx {
    sk_store *store;
    int64_t before;
    int64_t after;
    sk_status run_st;
} snap_ctx;

static sk_status insert_99(sk_tx *tx, void *ctx)
{
    sk_db_value p[1] = { SK_DB_INT_V(99) };
    (void)ctx;
    return sk_tx_exec(tx, "INSERT INTO t (id, v) VALUES (?, 'late')", p, 1, NULL);
}

static sk_status snapshot_read(sk_tx *tx, void *ctx)
{
    snap_ctx *c = ctx;
    sk_status st = sk_tx_query_int(tx, "SELECT count(*) FROM t", NULL, 0, &c->before);
    if (st != SK_OK) {
        return st;
    }
    /* A commit while the snapshot is open (WAL: the writer does not wait for readers). */
    c->run_st = sk_store_run(c->store, insert_99, NULL);
    return sk_tx_query_int(tx, "SELECT count(*) FROM t", NULL, 0, &c->after);
}

static sk_status failing_read(sk_tx *tx, void *ctx)
{
    (void)tx;
    (void)ctx;
    return SK_FAIL(SK_ENOTFOUND, "order 42 not found");
}

static sk_status nested_read(sk_tx *tx, void *ctx)
{
    count_ctx inner = { "SELECT count(*) FROM t", -1 };
    sk_status st = sk_store_read(sk_tx_store(tx), count_read, &inner);
    *(int64_t *)ctx = inner.n;
    return st;
}

static void test_sk_store_read_snapshot(void **state)
{
    char dir[64];
    char url[128];
    sk_store_config cfg = { .url = url, .migrations = base_migrations, .n_migrations = 1 };
    snap_ctx c = { 0 };
    row_unit a = { .id = 1, .v = "one" };
    int64_t nested = -1;
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/snap.db", dir);
    assert_int_equal(sk_store_open(&c.store, &cfg), SK_OK);
    assert_int_equal(sk_store_run(c.store, row_work, &a), SK_OK);
    assert_int_equal(count_rows(c.store, "SELECT count(*) FROM t"), 1); /* committed data */

    assert_int_equal(sk_store_read(c.store, snapshot_read, &c), SK_OK);
    assert_int_equal(c.run_st, SK_OK);
    assert_int_equal(c.before, 1);
    assert_int_equal(c.after, 1); /* the snapshot did not move */
    assert_int_equal(count_rows(c.store, "SELECT count(*) FROM t"), 2);

    SK_TEST_ASSERT_ERR(sk_store_read(c.store, failing_read, NULL), SK_ENOTFOUND,
                       "order 42 not found");
    assert_int_equal(sk_store_read(c.store, nested_read, &nested), SK_OK);
    assert_int_equal(nested, 2);
    SK_TEST_ASSERT_ERR(sk_store_read(NULL, count_read, NULL), SK_EINVAL, "store");
    SK_TEST_ASSERT_ERR(sk_store_read(c.store, NULL, NULL), SK_EINVAL, "fn");
    sk_store_close(c.store);
    sk_test_rmrf(dir);
}

static void test_sk_store_read_memory_sees_commits(void **state)
{
    sk_store *s = open_mem(0);
    sk_store *other = open_mem(0);
    row_unit a = { .id = 5, .v = "five" };
    (void)state;

    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 0);
    assert_int_equal(sk_store_run(s, row_work, &a), SK_OK);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 1);
    /* Two in-memory stores are two databases. */
    assert_int_equal(count_rows(other, "SELECT count(*) FROM t"), 0);
    sk_store_close(other);
    sk_store_close(s);
}

static bool memory_released_once(void *ctx)
{
    return sk__store_n_memory_releases(ctx) >= 1;
}

static bool memory_released_twice(void *ctx)
{
    return sk__store_n_memory_releases(ctx) >= 2;
}

/*
 * An idle writer gives its connections' caches and its WAL frame buffer
 * back, once per idle spell, and the store works on as before: readers
 * taken out of the pool for it are back, the data is all there.
 */
static void test_sk_store_idle_writer_releases_memory(void **state)
{
    char dir[64];
    char url[128];
    sk_store_config cfg = { .url = url, .migrations = base_migrations, .n_migrations = 1 };
    sk_store *s = NULL;
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/idle.db", dir);
    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    /* Batches of the writer, then a read through a pooled reader: the idle spell releases. */
    for (int i = 1; i <= 200; i++) {
        row_unit u = { .id = i, .v = "a row to cache" };
        assert_int_equal(sk_store_run(s, row_work, &u), SK_OK);
    }
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 200); /* a pooled reader */
    assert_true(sk_test_wait_until(memory_released_once, s, WAIT_MS));
    /* The writer's WAL frame buffer (sk-wal, 64 KiB from the first commit) is gone too. */
    assert_true(sk__store_sqlite_vfs_n_paired() >= 1); /* sk-wal gathers for this store */
    assert_int_equal(sk__store_sqlite_vfs_buffer_bytes(NULL), 0);
    struct timespec idle = { (SK__STORE_IDLE_RELEASE_MS + 500) / 1000,
                             ((SK__STORE_IDLE_RELEASE_MS + 500) % 1000) * 1000000L };
    nanosleep(&idle, NULL);
    assert_int_equal(sk__store_n_memory_releases(s), 1); /* idle on: nothing more to give */

    row_unit more = { .id = 201, .v = "after" };
    assert_int_equal(sk_store_run(s, row_work, &more), SK_OK);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 201);
    assert_true(sk_test_wait_until(memory_released_twice, s, WAIT_MS)); /* a new spell */
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 201);
    sk_store_close(s);
    sk_test_rmrf(dir);
}

static sk_status write_in_read(sk_tx *tx, void *ctx)
{
    (void)ctx;
    return sk_tx_exec(tx, "INSERT INTO t (id, v) VALUES (1000, 'no')", NULL, 0, NULL);
}

static void test_sk_store_read_is_read_only(void **state)
{
    sk_store *s = open_mem(0);
    (void)state;

    SK_TEST_ASSERT_ERR(sk_store_read(s, write_in_read, NULL), SK_EDB, "readonly");
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 0);
    sk_store_close(s);
}

/* ---------------------------------------------------------------- statements and params */

static const sk_migration param_migrations[] = {
    { "test", 1,
      "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
      "CREATE TABLE p (k INTEGER PRIMARY KEY, n INTEGER, i INTEGER, s TEXT, b BLOB, "
      "tn TEXT, u TEXT UNIQUE);" },
};

static const char quoted_text[] =
    "O'Brien said \"hi\"; -- not a comment \xc3\xbc\xe2\x82\xac\xf0\x9f\x98\x80";
static const uint8_t blob_bytes[] = { 0, 1, 0, 2, 0, 255 };
static const char text_with_nul[] = { 'a', 'b', '\0', 'c', 'd' };

static sk_status insert_params(sk_tx *tx, void *ctx)
{
    int64_t changes = -1;
    sk_db_value p[7] = {
        SK_DB_INT_V(1),
        SK_DB_NULL_V,
        SK_DB_INT_V(INT64_MIN),
        SK_DB_TEXT_V(quoted_text),
        SK_DB_BLOB_V(blob_bytes, sizeof(blob_bytes)),
        SK_DB_TEXTN_V(text_with_nul, sizeof(text_with_nul)),
        SK_DB_TEXTN_V("uniqueXXX", 6),
    };
    sk_status st = sk_tx_exec(
        tx, "INSERT INTO p (k, n, i, s, b, tn, u) VALUES (?, ?, ?, ?, ?, ?, ?)", p, 7, &changes);
    (void)ctx;
    if (st != SK_OK) {
        return st;
    }
    assert_int_equal(changes, 1);
    p[0] = SK_DB_INT_V(2);
    p[2] = SK_DB_INT_V(INT64_MAX);
    p[4] = SK_DB_BLOB_V(NULL, 0); /* an empty blob, not NULL */
    p[5] = SK_DB_TEXTN_V("", 0);
    p[6] = SK_DB_TEXT_V("other");
    return sk_tx_exec(tx, "INSERT INTO p (k, n, i, s, b, tn, u) VALUES (?, ?, ?, ?, ?, ?, ?)", p, 7,
                      NULL);
}

static sk_status check_params(sk_tx *tx, void *ctx)
{
    sk_rows *rows = NULL;
    size_t len = 99;
    const char *v;
    sk_db_value key[1] = { SK_DB_TEXT_V(quoted_text) };
    sk_status st = sk_tx_query(tx,
                               "SELECT k, n, i, s, b, tn, typeof(b), length(tn), typeof(n) FROM p "
                               "WHERE s = ? ORDER BY k",
                               key, 1, &rows);
    (void)ctx;
    assert_int_equal(st, SK_OK);

    assert_int_equal(sk_rows_next(rows), SK_OK);
    assert_int_equal(sk_rows_int(rows, 0), 1);
    assert_true(sk_rows_is_null(rows, 1));
    assert_string_equal(sk_rows_text(rows, 1, &len), "");
    assert_int_equal(len, 0);
    assert_string_equal(sk_rows_text(rows, 8, NULL), "null");
    assert_true(sk_rows_int(rows, 2) == INT64_MIN);
    v = sk_rows_text(rows, 3, &len);
    assert_int_equal(len, strlen(quoted_text));
    assert_memory_equal(v, quoted_text, len);
    v = sk_rows_text(rows, 4, &len);
    assert_int_equal(len, sizeof(blob_bytes));
    assert_memory_equal(v, blob_bytes, len);
    assert_string_equal(sk_rows_text(rows, 6, NULL), "blob");
    v = sk_rows_text(rows, 5, &len);
    assert_int_equal(len, sizeof(text_with_nul));
    assert_memory_equal(v, text_with_nul, len);

    assert_int_equal(sk_rows_next(rows), SK_OK);
    assert_int_equal(sk_rows_int(rows, 0), 2);
    assert_true(sk_rows_int(rows, 2) == INT64_MAX);
    assert_false(sk_rows_is_null(rows, 4));
    assert_string_equal(sk_rows_text(rows, 6, NULL), "blob");
    assert_string_equal(sk_rows_text(rows, 4, &len), "");
    assert_int_equal(len, 0);
    assert_int_equal(sk_rows_int(rows, 7), 0);
    assert_false(sk_rows_is_null(rows, 5));

    /* Past the end, and staying there. */
    assert_int_equal(sk_rows_next(rows), SK_ENOTFOUND);
    assert_int_equal(sk_rows_next(rows), SK_ENOTFOUND);
    assert_int_equal(sk_rows_int(rows, 0), 0);
    assert_string_equal(sk_rows_text(rows, 0, &len), "");
    sk_rows_close(rows);
    sk_rows_close(rows); /* idempotent */
    return SK_OK;
}

static void test_sk_tx_exec_params_of_every_type(void **state)
{
    sk_store *s = NULL;
    sk_store_config cfg = {
        .url = "sqlite::memory:", .migrations = param_migrations, .n_migrations = 1
    };
    (void)state;

    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    assert_int_equal(sk_store_run(s, insert_params, NULL), SK_OK);
    assert_int_equal(sk_store_read(s, check_params, NULL), SK_OK);
    /* Again: the rows come from cached statements the second time. */
    assert_int_equal(sk_store_read(s, check_params, NULL), SK_OK);
    sk_store_close(s);
}

static sk_status unique_unit(sk_tx *tx, void *ctx)
{
    sk_db_value p[1] = { SK_DB_TEXT_V("dup") };
    sk_status st = sk_tx_exec(tx, "INSERT INTO p (u) VALUES (?)", p, 1, NULL);
    (void)ctx;
    assert_int_equal(st, SK_OK);
    st = sk_tx_exec(tx, "INSERT INTO p (u) VALUES (?)", p, 1, NULL);
    SK_TEST_ASSERT_ERR(st, SK_EEXIST, "UNIQUE constraint failed: p.u");
    assert_non_null(strstr(sk_error_message(), "(in: INSERT INTO p (u) VALUES (?))"));
    st = sk_tx_exec(tx, "INSERT INTO t (id, v) VALUES (1, 'a')", NULL, 0, NULL);
    assert_int_equal(st, SK_OK);
    st = sk_tx_exec(tx, "INSERT INTO t (id, v) VALUES (1, 'b')", NULL, 0, NULL);
    SK_TEST_ASSERT_ERR(st, SK_EEXIST, "UNIQUE constraint failed: t.id"); /* primary key */
    return SK_OK;
}

static void test_sk_tx_exec_unique_is_eexist(void **state)
{
    sk_store *s = NULL;
    sk_store_config cfg = {
        .url = "sqlite::memory:", .migrations = param_migrations, .n_migrations = 1
    };
    (void)state;

    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    assert_int_equal(sk_store_run(s, unique_unit, NULL), SK_OK);
    sk_store_close(s);
}

static sk_status misuse_unit(sk_tx *tx, void *ctx)
{
    sk_rows *r1 = NULL;
    sk_rows *r2 = (sk_rows *)tx;
    int64_t n = -1;
    int64_t changes = -1;
    sk_db_value one[1] = { SK_DB_INT_V(1) };
    sk_db_value bad_type[1] = { { .type = (sk_db_type)42 } };
    sk_db_value null_text[1] = { { .type = SK_DB_TEXT, .s = NULL, .len = 3 } };
    (void)ctx;

    SK_TEST_ASSERT_ERR(sk_tx_exec(NULL, "SELECT 1", NULL, 0, NULL), SK_EINVAL, "tx");
    SK_TEST_ASSERT_ERR(sk_tx_exec(tx, NULL, NULL, 0, NULL), SK_EINVAL, "sql");
    SK_TEST_ASSERT_ERR(sk_tx_exec(tx, "INSERT INTO t (id) VALUES (?)", NULL, 0, &changes),
                       SK_EINVAL, "1 parameter(s), 0 given");
    assert_int_equal(changes, 0);
    SK_TEST_ASSERT_ERR(sk_tx_exec(tx, "INSERT INTO t (id) VALUES (?)", NULL, 1, NULL), SK_EINVAL,
                       "params must not be NULL");
    SK_TEST_ASSERT_ERR(sk_tx_exec(tx, "INSERT INTO t (id) VALUES (?)", bad_type, 1, NULL),
                       SK_EINVAL, "param 1: unknown type 42");
    SK_TEST_ASSERT_ERR(sk_tx_exec(tx, "INSERT INTO t (id) VALUES (?)", null_text, 1, NULL),
                       SK_EINVAL, "param 1: text must not be NULL");
    SK_TEST_ASSERT_ERR(sk_tx_exec(tx,
                                  "INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (2)",
                                  NULL, 0, NULL),
                       SK_EINVAL, "more than one statement");
    SK_TEST_ASSERT_ERR(sk_tx_exec(tx, "  ", NULL, 0, NULL), SK_EINVAL, "no statement");
    SK_TEST_ASSERT_ERR(sk_tx_exec(tx, "SELEC 1", NULL, 0, NULL), SK_EDB, "syntax error");
    /* A trailing comment or semicolon is fine. */
    assert_int_equal(sk_tx_exec(tx, "INSERT INTO t (id) VALUES (10); -- done", NULL, 0, &changes),
                     SK_OK);
    assert_int_equal(changes, 1);
    /* Statements returning rows run to the end through exec. */
    assert_int_equal(sk_tx_exec(tx, "SELECT id FROM t", NULL, 0, &changes), SK_OK);
    assert_int_equal(
        sk_tx_exec(tx, "INSERT INTO t (id) VALUES (11) RETURNING id", NULL, 0, &changes), SK_OK);
    assert_int_equal(changes, 1);

    /* One open rows object per statement. */
    assert_int_equal(sk_tx_query(tx, "SELECT id FROM t WHERE id >= ?", one, 1, &r1), SK_OK);
    SK_TEST_ASSERT_ERR(sk_tx_query(tx, "SELECT id FROM t WHERE id >= ?", one, 1, &r2), SK_ESTATE,
                       "still open");
    assert_null(r2);
    SK_TEST_ASSERT_ERR(sk_tx_exec(tx, "SELECT id FROM t WHERE id >= ?", one, 1, NULL), SK_ESTATE,
                       "still open");
    assert_int_equal(sk_rows_next(r1), SK_OK);
    assert_int_equal(sk_rows_int(r1, 0), 10);
    assert_int_equal(sk_rows_int(r1, 1), 0); /* no such column */
    assert_int_equal(sk_rows_int(r1, -1), 0);
    assert_true(sk_rows_is_null(r1, 5));
    sk_rows_close(r1);
    SK_TEST_ASSERT_ERR(sk_rows_next(r1), SK_ESTATE, "closed");
    assert_int_equal(sk_tx_query(tx, "SELECT id FROM t WHERE id >= ?", one, 1, &r2), SK_OK);
    assert_ptr_equal(r1, r2); /* the cached statement again */

    /* Left open on purpose: the store closes it when the unit returns. */
    SK_TEST_ASSERT_ERR(sk_tx_query(tx, "SELECT id FROM t", NULL, 0, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_tx_query(NULL, "SELECT id FROM t", NULL, 0, &r1), SK_EINVAL, "tx");
    assert_null(r1);
    SK_TEST_ASSERT_ERR(sk_tx_query_int(tx, "SELECT id FROM t WHERE id = 12345", NULL, 0, &n),
                       SK_ENOTFOUND, "no row");
    assert_int_equal(n, 0);
    SK_TEST_ASSERT_ERR(sk_tx_query_int(tx, "SELECT 1", NULL, 0, NULL), SK_EINVAL, "out");
    assert_int_equal(sk_tx_query_int(tx, "SELECT max(id) FROM t", NULL, 0, &n), SK_OK);
    assert_int_equal(n, 11);
    return SK_OK;
}

static sk_status reuse_unit(sk_tx *tx, void *ctx)
{
    sk_rows *r = NULL;
    sk_db_value one[1] = { SK_DB_INT_V(11) };
    sk_status st = sk_tx_query(tx, "SELECT id FROM t WHERE id >= ?", one, 1, &r);
    (void)ctx;
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(r);
    assert_int_equal(sk_rows_int(r, 0), 11);
    sk_rows_close(r);
    return st;
}

static void test_sk_tx_statements_misuse(void **state)
{
    sk_store *s = open_mem(0);
    (void)state;

    assert_int_equal(sk_store_run(s, misuse_unit, NULL), SK_OK);
    assert_int_equal(sk_store_run(s, reuse_unit, NULL), SK_OK);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 2);

    SK_TEST_ASSERT_ERR(sk_rows_next(NULL), SK_EINVAL, "rows");
    assert_true(sk_rows_is_null(NULL, 0));
    assert_int_equal(sk_rows_int(NULL, 0), 0);
    assert_string_equal(sk_rows_text(NULL, 0, NULL), "");
    sk_rows_close(NULL);
    sk_store_close(s);
}

/* ---------------------------------------------------------------- limits and closing */

static void noop_done(sk_status st, const char *message, void *ctx)
{
    (void)message;
    assert_int_equal(st, SK_OK);
    atomic_fetch_add((atomic_int *)ctx, 1);
}

static sk_status noop_work(sk_tx *tx, void *ctx)
{
    (void)tx;
    (void)ctx;
    return SK_OK;
}

static void test_sk_store_submit_queue_limit(void **state)
{
    sk_store *s = open_mem(4);
    gate g;
    atomic_int n_done;
    (void)state;

    atomic_init(&n_done, 0);
    gate_close_writer(s, &g); /* the gate left the queue: 4 places are free */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(sk_store_submit(s, noop_work, noop_done, &n_done), SK_OK);
    }
    SK_TEST_ASSERT_ERR(sk_store_submit(s, noop_work, noop_done, &n_done), SK_ELIMIT, "max_queue");
    atomic_store(&g.is_open, 1);
    wait_counter(&n_done, 4);
    assert_int_equal(sk_store_submit(s, noop_work, noop_done, &n_done), SK_OK);
    wait_counter(&n_done, 5);
    sk_store_close(s);
}

typedef struct close_ctx {
    sk_store *store;
    atomic_int n_done;
    atomic_int n_estate_in_done;
} close_ctx;

static void *closer_main(void *arg)
{
    sk_store_close(((close_ctx *)arg)->store);
    return NULL;
}

static void close_done(sk_status st, const char *message, void *ctx)
{
    close_ctx *c = ctx;
    (void)message;
    assert_int_equal(st, SK_OK);
    /* The store is closing: new work is refused, even from a callback. */
    if (sk_store_submit(c->store, noop_work, NULL, NULL) == SK_ESTATE) {
        atomic_fetch_add(&c->n_estate_in_done, 1);
    }
    atomic_fetch_add(&c->n_done, 1);
}

static void test_sk_store_close_drains_and_refuses(void **state)
{
    close_ctx c;
    gate g;
    pthread_t closer;
    int n_queued = 0;
    int64_t deadline;
    sk_status st = SK_OK;
    (void)state;

    c.store = open_mem(0);
    atomic_init(&c.n_done, 0);
    atomic_init(&c.n_estate_in_done, 0);
    gate_close_writer(c.store, &g);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(sk_store_submit(c.store, noop_work, close_done, &c), SK_OK);
        n_queued++;
    }
    assert_int_equal(pthread_create(&closer, NULL, closer_main, &c), 0);
    /* Until the closer flips the flag, submits still queue (and must drain too). */
    deadline = sk_time_mono_ms() + WAIT_MS;
    while (sk_time_mono_ms() < deadline) {
        st = sk_store_submit(c.store, noop_work, close_done, &c);
        if (st != SK_OK) {
            break;
        }
        n_queued++;
    }
    SK_TEST_ASSERT_ERR(st, SK_ESTATE, "closing");
    atomic_store(&g.is_open, 1);
    assert_int_equal(pthread_join(closer, NULL), 0);
    /* Closed: every queued unit ran exactly once. */
    assert_int_equal(atomic_load(&c.n_done), n_queued);
    assert_int_equal(atomic_load(&c.n_estate_in_done), n_queued);
}

static void test_sk_store_null_args(void **state)
{
    sk_store *s = open_mem(0);
    uint64_t u = 7;
    uint64_t b = 7;
    (void)state;

    SK_TEST_ASSERT_ERR(sk_store_submit(NULL, noop_work, NULL, NULL), SK_EINVAL, "store");
    SK_TEST_ASSERT_ERR(sk_store_submit(s, NULL, NULL, NULL), SK_EINVAL, "work");
    sk_store_stats(NULL, &u, &b);
    assert_int_equal(u, 0);
    assert_int_equal(b, 0);
    sk_store_stats(s, NULL, NULL);
    sk_store_close(NULL);
    sk_test_fail_alloc_at(0);
    SK_TEST_ASSERT_ERR(sk_store_submit(s, noop_work, NULL, NULL), SK_ENOMEM, "allocating a job");
    sk_test_fail_alloc_at(-1);
    sk_store_close(s);
}

/* ---------------------------------------------------------------- database ends the transaction */

typedef struct full_disk_unit {
    sk_status first_error;  /* the insert that hit the size limit */
    sk_status after_status; /* the statement the unit tried after it */
} full_disk_unit;

/* Inserts 8 KiB rows until one fails, then (as a careless unit might) runs one more statement. */
static sk_status fill_until_error(sk_tx *tx, void *ctx)
{
    full_disk_unit *u = ctx;
    static const char blob[8192];
    for (int i = 0; i < 10000; i++) {
        sk_db_value p[2] = { SK_DB_INT_V(100 + i), SK_DB_BLOB_V(blob, sizeof(blob)) };
        u->first_error = sk_tx_exec(tx, "INSERT INTO t (id, v) VALUES (?, ?)", p, 2, NULL);
        if (u->first_error != SK_OK) {
            break;
        }
    }
    sk_db_value after[2] = { SK_DB_INT_V(1), SK_DB_TEXT_V("after") };
    u->after_status = sk_tx_exec(tx, "INSERT INTO t (id, v) VALUES (?, ?)", after, 2, NULL);
    return u->first_error;
}

/*
 * SQLite rolls a transaction back by itself on a full disk or an I/O
 * error. A statement the unit runs after that must fail, not commit on its
 * own outside the unit (the file size limit stands in for the full disk).
 */
static void test_sk_store_unit_after_database_rollback(void **state)
{
    char dir[64] = "/tmp/skald-test-store-XXXXXX", url[160], path[128];
    int fds[2];
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/full.db", dir);
    snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sk_store *s = NULL;
        sk_store_config cfg = { .url = url, .migrations = base_migrations, .n_migrations = 1 };
        full_disk_unit u = { SK_OK, SK_OK };
        struct stat sb;
        signal(SIGXFSZ, SIG_IGN); /* writes past the limit fail with EFBIG instead */
        if (sk_store_open(&s, &cfg) != SK_OK || stat(path, &sb) != 0) {
            _exit(2);
        }
        struct rlimit rl = { (rlim_t)sb.st_size + 200000, (rlim_t)sb.st_size + 200000 };
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) {
            _exit(3);
        }
        sk_status st = sk_store_run(s, fill_until_error, &u);
        int out[3] = { (int)st, (int)u.first_error, (int)u.after_status };
        if (write(fds[1], out, sizeof(out)) != sizeof(out)) {
            _exit(4);
        }
        sk_store_close(s);
        _exit(0);
    }
    close(fds[1]);
    int got[3] = { -1, -1, -1 };
    assert_int_equal(read(fds[0], got, sizeof(got)), sizeof(got));
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fprintf(stderr, "[full disk] unit %s, first error %s, the statement after it %s\n",
            sk_status_name((sk_status)got[0]), sk_status_name((sk_status)got[1]),
            sk_status_name((sk_status)got[2]));
    assert_int_not_equal(got[1], SK_OK); /* the limit was reached */
    assert_int_not_equal(got[0], SK_OK); /* and the unit failed */
    assert_int_equal(got[2], SK_EDB);    /* the statement after it was refused */

    /* Nothing of the unit is in the file: not its rows, not the one after the error. */
    sk_store *s = NULL;
    sk_store_config cfg = { .url = url, .migrations = base_migrations, .n_migrations = 1 };
    assert_int_equal(sk_store_open(&s, &cfg), SK_OK);
    assert_int_equal(count_rows(s, "SELECT count(*) FROM t"), 0);
    sk_store_close(s);
    const char *suffix[] = { "", "-wal", "-shm", "-relay.lock" };
    for (size_t i = 0; i < 4; i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Locks beside the file: one holder among the stores (processes) sharing it; none in memory. */
static void test_sk_store_lock_try(void **state)
{
    char dir[64], url[128];
    sk_store *a = NULL, *b = NULL;
    sk_store_config cfg = { .url = url, .migrations = base_migrations, .n_migrations = 1 };
    int fd_a = -1, fd_b = -1;
    char *path = NULL;
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/l.db", dir);
    assert_int_equal(sk_store_open(&a, &cfg), SK_OK);
    assert_int_equal(sk_store_open(&b, &cfg), SK_OK);
    assert_int_equal(sk_store_lock_try(a, "Job_1", &fd_a), SK_OK);
    assert_true(fd_a >= 0);
    SK_TEST_ASSERT_ERR(sk_store_lock_try(b, "Job_1", &fd_b), SK_ECONFLICT, "held by another");
    assert_int_equal(fd_b, -1);
    assert_int_equal(sk_store_lock_try(b, "job-2", &fd_b), SK_OK); /* another purpose */
    close(fd_b);
    close(fd_a); /* as the holder's process ending does */
    assert_int_equal(sk_store_lock_try(b, "Job_1", &fd_b), SK_OK);
    assert_true(fd_b >= 0);
    close(fd_b);
    assert_int_equal(sk_store_lock_path(a, "Job_1", &path), SK_OK);
    assert_non_null(path);
    assert_non_null(strstr(path, "/l.db-Job_1.lock"));
    sk_free(path);
    SK_TEST_ASSERT_ERR(sk_store_lock_try(a, "a b", &fd_a), SK_EINVAL, "purpose");
    SK_TEST_ASSERT_ERR(sk_store_lock_try(a, "", &fd_a), SK_EINVAL, "purpose");
    SK_TEST_ASSERT_ERR(sk_store_lock_try(NULL, "x", &fd_a), SK_EINVAL, "store");
    SK_TEST_ASSERT_ERR(sk_store_lock_try(a, "x", NULL), SK_EINVAL, "fd_out");

    sk_store *m = open_mem(0);
    assert_int_equal(sk_store_lock_try(m, "job", &fd_a), SK_OK);
    assert_int_equal(fd_a, -1);
    assert_int_equal(sk_store_lock_path(m, "job", &path), SK_OK);
    assert_null(path);
    sk_store_close(m);
    sk_store_close(b);
    sk_store_close(a);
    sk_test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_store_open_null_and_invalid_args),
        cmocka_unit_test(test_sk_store_busy_ms),
        cmocka_unit_test(test_sk_store_lock_try),
        cmocka_unit_test(test_sk_store_open_bad_path),
        cmocka_unit_test(test_sk_store_open_migrations_in_order),
        cmocka_unit_test(test_sk_store_open_file_reopen_not_reapplied),
        cmocka_unit_test(test_sk_store_open_failing_migration),
        cmocka_unit_test(test_sk_store_open_every_alloc_failure),
        cmocka_unit_test(test_sk_store_submit_done_in_order),
        cmocka_unit_test(test_sk_store_submit_failing_unit_rolls_back_alone),
        cmocka_unit_test(test_sk_store_submit_commit_failure_fails_batch),
        cmocka_unit_test(test_sk_store_submit_group_commit_batches),
        cmocka_unit_test(test_sk_store_submit_max_batch),
        cmocka_unit_test(test_sk_tx_after_commit_and_commit_hook_order),
        cmocka_unit_test(test_sk_tx_after_commit_errors),
        cmocka_unit_test(test_sk_store_run_status_and_message),
        cmocka_unit_test(test_sk_store_read_snapshot),
        cmocka_unit_test(test_sk_store_read_memory_sees_commits),
        cmocka_unit_test(test_sk_store_idle_writer_releases_memory),
        cmocka_unit_test(test_sk_store_read_is_read_only),
        cmocka_unit_test(test_sk_tx_exec_params_of_every_type),
        cmocka_unit_test(test_sk_tx_exec_unique_is_eexist),
        cmocka_unit_test(test_sk_tx_statements_misuse),
        cmocka_unit_test(test_sk_store_submit_queue_limit),
        cmocka_unit_test(test_sk_store_close_drains_and_refuses),
        cmocka_unit_test(test_sk_store_null_args),
        cmocka_unit_test(test_sk_store_unit_after_database_rollback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
