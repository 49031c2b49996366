/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the SQLite backend (src/store/sqlite_backend.c) through its
 * vtable: URL forms, connection settings, the statement cache, parameter
 * binding and the mapping of SQLite errors; plus the SQL quoting helper.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sk_test.h"
#include "store/store_int.h"

static const sk__store_backend *be = &sk__store_sqlite_backend;

static void test_url_parse_forms(void **state)
{
    char *t = NULL;
    char *t2 = NULL;
    (void)state;

    assert_int_equal(be->url_parse("sqlite:/tmp/x.db", &t), SK_OK);
    assert_string_equal(t, "/tmp/x.db");
    sk_free(t);
    assert_int_equal(be->url_parse("sqlite:///var/y.db", &t), SK_OK);
    assert_string_equal(t, "/var/y.db");
    sk_free(t);
    assert_int_equal(be->url_parse("sqlite:rel/z.db", &t), SK_OK);
    assert_string_equal(t, "rel/z.db");
    sk_free(t);
    assert_int_equal(be->url_parse("data/plain.db", &t), SK_OK);
    assert_string_equal(t, "data/plain.db");
    sk_free(t);

    assert_int_equal(be->url_parse("sqlite::memory:", &t), SK_OK);
    assert_non_null(strstr(t, "vfs=memdb"));
    assert_int_equal(be->url_parse(":memory:", &t2), SK_OK);
    assert_string_not_equal(t, t2); /* every store its own database */
    sk_free(t);
    sk_free(t2);

    SK_TEST_ASSERT_ERR(be->url_parse("sqlite:", &t), SK_EINVAL, "expected sqlite:PATH");
    assert_null(t);
    assert_int_equal(be->url_parse("postgresql://u@h/db", &t), SK_ENOTFOUND);
    assert_null(t);
}

static void test_url_parse_alloc_failure(void **state)
{
    char *t = NULL;
    (void)state;

    sk_test_fail_alloc_at(0);
    SK_TEST_ASSERT_ERR(be->url_parse("sqlite:/tmp/a.db", &t), SK_ENOMEM, "out of memory");
    sk_test_fail_alloc_at(-1);
    assert_null(t);
}

static void test_sql_quote(void **state)
{
    char out[SK__STORE_SQL_QUOTE_MAX + 8];
    char longsql[300];
    (void)state;

    sk__store_sql_quote("  SELECT a,\n\t  b\r\nFROM t  ", out, sizeof(out));
    assert_string_equal(out, "SELECT a, b FROM t");
    sk__store_sql_quote(NULL, out, sizeof(out));
    assert_string_equal(out, "");

    memset(longsql, 'x', sizeof(longsql) - 1);
    longsql[sizeof(longsql) - 1] = '\0';
    sk__store_sql_quote(longsql, out, sizeof(out));
    assert_int_equal(strlen(out), SK__STORE_SQL_QUOTE_MAX + 3);
    assert_string_equal(out + SK__STORE_SQL_QUOTE_MAX, "...");

    /* Exactly the limit: no ellipsis. */
    longsql[SK__STORE_SQL_QUOTE_MAX] = '\0';
    sk__store_sql_quote(longsql, out, sizeof(out));
    assert_int_equal(strlen(out), SK__STORE_SQL_QUOTE_MAX);

    /* Multi-byte characters are never cut in half, even in a small buffer. */
    sk__store_sql_quote("\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc", out, 9);
    assert_string_equal(out, "\xc3\xbc\xc3\xbc...");
    sk__store_sql_quote("abc", out, 2);
    assert_string_equal(out, "");
}

static sk__db_conn *open_writer(char *dir, size_t dir_len)
{
    char path[128];
    sk__db_conn *c = NULL;

    assert_int_equal(sk_test_tmpdir(dir, dir_len), SK_OK);
    snprintf(path, sizeof(path), "%s/b.db", dir);
    if (be->conn_open(path, true, &c) != SK_OK) {
        fail_msg("conn_open: %s", sk_error_message());
    }
    return c;
}

static int64_t query_int(sk__db_conn *c, const char *sql)
{
    sk_rows *rows = NULL;
    int64_t v;

    assert_int_equal(be->prepare(c, sql, &rows), SK_OK);
    assert_int_equal(be->bind(rows, NULL, 0, false), SK_OK);
    assert_int_equal(be->step(rows), SK_OK);
    v = be->column_int(rows, 0);
    be->reset(rows);
    return v;
}

static void test_conn_open_settings(void **state)
{
    char dir[64];
    char path[128];
    sk__db_conn *w = open_writer(dir, sizeof(dir));
    sk__db_conn *r = NULL;
    sk_rows *rows = NULL;
    (void)state;

    assert_int_equal(query_int(w, "PRAGMA synchronous"), 2);
    assert_int_equal(query_int(w, "PRAGMA foreign_keys"), 1);
    /* Our busy handler (busy_wait) replaces SQLite's timer, which then reads 0. */
    assert_int_equal(query_int(w, "PRAGMA busy_timeout"), 0);
    assert_int_equal(be->exec_script(w, "CREATE TABLE t (a INTEGER)"), SK_OK);

    snprintf(path, sizeof(path), "%s/b.db", dir);
    assert_int_equal(be->conn_open(path, false, &r), SK_OK);
    assert_int_equal(be->prepare(r, "INSERT INTO t VALUES (1)", &rows), SK_OK);
    assert_int_equal(be->bind(rows, NULL, 0, false), SK_OK);
    SK_TEST_ASSERT_ERR(be->step(rows), SK_EDB, "readonly");
    be->reset(rows);
    be->conn_close(r);
    be->conn_close(w);
    be->conn_close(NULL);
    sk_test_rmrf(dir);
}

static void test_conn_open_failure(void **state)
{
    sk__db_conn *c = (sk__db_conn *)&c;
    (void)state;

    SK_TEST_ASSERT_ERR(be->conn_open("/nonexistent-skald-dir/q/b.db", true, &c), SK_EDB,
                       "unable to open");
    assert_null(c);
    /* A reader cannot create the file. */
    SK_TEST_ASSERT_ERR(be->conn_open("/tmp/skald-no-such-file-ever.db", false, &c), SK_EDB,
                       "opening");
    assert_null(c);
}

static void test_statement_cache(void **state)
{
    char dir[64];
    sk__db_conn *w = open_writer(dir, sizeof(dir));
    sk_rows *a = NULL;
    sk_rows *b = NULL;
    size_t base;
    (void)state;

    base = sk__sqlite_conn_n_cached(w);
    assert_int_equal(be->prepare(w, "SELECT 1", &a), SK_OK);
    assert_int_equal(be->prepare(w, "SELECT 1", &b), SK_OK);
    assert_ptr_equal(a, b);
    assert_int_equal(sk__sqlite_conn_n_cached(w), base + 1);
    assert_ptr_equal(a->be, be);

    /* Bounded: distinct SQL texts past the limit evict idle statements. */
    for (int i = 0; i < 3 * SK__STORE_STMT_CACHE_MAX; i++) {
        char sql[64];
        sk_rows *r = NULL;
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        assert_int_equal(be->prepare(w, sql, &r), SK_OK);
        if (i == 5) {
            r->is_open = true; /* the front holds this one: never evicted */
            b = r;
        }
    }
    assert_true(sk__sqlite_conn_n_cached(w) <= SK__STORE_STMT_CACHE_MAX);
    assert_int_equal(be->prepare(w, "SELECT 5", &a), SK_OK);
    assert_ptr_equal(a, b);
    b->is_open = false;
    be->conn_close(w);
    sk_test_rmrf(dir);
}

static void test_bind_and_errors(void **state)
{
    char dir[64];
    sk__db_conn *w = open_writer(dir, sizeof(dir));
    sk_rows *rows = NULL;
    sk_db_value blob_no_len[1] = { { .type = SK_DB_BLOB, .s = "x", .len = SIZE_MAX } };
    sk_db_value v[2] = { SK_DB_INT_V(1), SK_DB_NULL_V };
    size_t len = 9;
    (void)state;

    assert_int_equal(be->exec_script(w, "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL);"
                                        "CREATE TABLE u (x BLOB);"),
                     SK_OK);
    assert_int_equal(be->prepare(w, "INSERT INTO u VALUES (?)", &rows), SK_OK);
    SK_TEST_ASSERT_ERR(be->bind(rows, blob_no_len, 1, false), SK_EINVAL, "explicit length");
    be->reset(rows);

    /* NOT NULL: a plain database error quoting the SQL. */
    assert_int_equal(be->prepare(w, "INSERT INTO t (a, b) VALUES (?, ?)", &rows), SK_OK);
    assert_int_equal(be->bind(rows, v, 2, false), SK_OK);
    SK_TEST_ASSERT_ERR(be->step(rows), SK_EDB, "NOT NULL constraint failed: t.b");
    assert_non_null(strstr(sk_error_message(), "sqlite: 1299: "));
    assert_non_null(strstr(sk_error_message(), "(in: INSERT INTO t (a, b) VALUES (?, ?))"));
    be->reset(rows);

    v[1] = SK_DB_TEXT_V("b");
    assert_int_equal(be->bind(rows, v, 2, true), SK_OK);
    assert_int_equal(be->step(rows), SK_ENOTFOUND);
    be->reset(rows);
    assert_int_equal(be->changes(w), 1);
    assert_int_equal(be->bind(rows, v, 2, true), SK_OK);
    SK_TEST_ASSERT_ERR(be->step(rows), SK_EEXIST, "UNIQUE constraint failed: t.a");
    be->reset(rows);

    assert_int_equal(be->prepare(w, "SELECT b, NULL FROM t", &rows), SK_OK);
    assert_int_equal(be->bind(rows, NULL, 0, false), SK_OK);
    assert_int_equal(be->step(rows), SK_OK);
    assert_int_equal(be->column_count(rows), 2);
    assert_string_equal(be->column_text(rows, 0, &len), "b");
    assert_int_equal(len, 1);
    assert_true(be->column_is_null(rows, 1));
    assert_string_equal(be->column_text(rows, 1, &len), "");
    assert_int_equal(len, 0);
    assert_int_equal(be->step(rows), SK_ENOTFOUND);
    be->reset(rows);

    SK_TEST_ASSERT_ERR(be->exec_script(w, "INSERT INTO nowhere VALUES (1)"), SK_EDB,
                       "no such table: nowhere");
    be->conn_close(w);
    sk_test_rmrf(dir);
}

static void test_transactions_and_savepoints(void **state)
{
    char dir[64];
    sk__db_conn *w = open_writer(dir, sizeof(dir));
    (void)state;

    assert_int_equal(be->exec_script(w, "CREATE TABLE t (a INTEGER)"), SK_OK);
    assert_int_equal(be->begin(w, true), SK_OK);
    assert_int_equal(be->savepoint(w), SK_OK);
    assert_int_equal(be->exec_script(w, "INSERT INTO t VALUES (1)"), SK_OK);
    assert_int_equal(be->release(w), SK_OK);
    assert_int_equal(be->savepoint(w), SK_OK);
    assert_int_equal(be->exec_script(w, "INSERT INTO t VALUES (2)"), SK_OK);
    assert_int_equal(be->rollback_to(w), SK_OK);
    assert_int_equal(be->release(w), SK_OK);
    assert_int_equal(be->commit(w), SK_OK);
    assert_int_equal(query_int(w, "SELECT count(*) FROM t"), 1);
    assert_int_equal(query_int(w, "SELECT sum(a) FROM t"), 1);

    SK_TEST_ASSERT_ERR(be->release(w), SK_EDB, "no such savepoint");
    SK_TEST_ASSERT_ERR(be->commit(w), SK_EDB, "no transaction is active");
    be->rollback(w); /* nothing open: a no-op */
    assert_int_equal(be->begin(w, true), SK_OK);
    assert_int_equal(be->exec_script(w, "INSERT INTO t VALUES (3)"), SK_OK);
    be->rollback(w);
    assert_int_equal(query_int(w, "SELECT count(*) FROM t"), 1);
    be->conn_close(w);
    sk_test_rmrf(dir);
}

/* A second writer on the same file (as another instance's process would be). */
static sk__db_conn *open_second_writer(const char *dir)
{
    char path[128];
    sk__db_conn *c = NULL;

    snprintf(path, sizeof(path), "%s/b.db", dir);
    if (be->conn_open(path, true, &c) != SK_OK) {
        fail_msg("conn_open: %s", sk_error_message());
    }
    return c;
}

static void test_busy_deadline_surfaces_as_edb(void **state)
{
    char dir[64];
    sk__db_conn *a = open_writer(dir, sizeof(dir));
    sk__db_conn *b = open_second_writer(dir);
    int64_t t0;
    int64_t waited_ms;
    (void)state;

    assert_int_equal(be->exec_script(a, "CREATE TABLE t (a INTEGER)"), SK_OK);
    assert_int_equal(be->begin(a, true), SK_OK);

    sk__sqlite_conn_set_busy_deadline_ms(b, 150);
    t0 = sk_time_mono_ms();
    SK_TEST_ASSERT_ERR(be->begin(b, true), SK_EDB, "gave up after waiting 150 ms for a lock");
    waited_ms = sk_time_mono_ms() - t0;
    assert_true(waited_ms >= 150);
    assert_true(waited_ms < 2000);
    assert_non_null(strstr(sk_error_message(), "BEGIN IMMEDIATE"));

    /* Deadline 0: no wait at all, the plain SQLite text. */
    sk__sqlite_conn_set_busy_deadline_ms(b, 0);
    SK_TEST_ASSERT_ERR(be->exec_script(b, "INSERT INTO t VALUES (1)"), SK_EDB, "locked");

    /* A plain busy error after a give-up does not repeat the give-up text. */
    be->rollback(a);
    sk__sqlite_conn_set_busy_deadline_ms(b, 1000);
    assert_int_equal(be->begin(b, true), SK_OK);
    assert_int_equal(be->exec_script(b, "INSERT INTO t VALUES (2)"), SK_OK);
    assert_int_equal(be->commit(b), SK_OK);
    assert_int_equal(query_int(a, "SELECT count(*) FROM t"), 1);

    sk__sqlite_conn_set_busy_deadline_ms(NULL, 10); /* NULL-safe */
    be->conn_close(b);
    be->conn_close(a);
    sk_test_rmrf(dir);
}

typedef struct holder {
    sk__db_conn *conn;
    int hold_ms;
    sk_status st;
} holder;

/* Hold the write lock for a fixed time (the other writer's transaction), then commit. */
static void *hold_lock_main(void *arg)
{
    holder *h = arg;
    struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)h->hold_ms * 1000000L };

    nanosleep(&ts, NULL);
    h->st = be->exec_script(h->conn, "INSERT INTO t VALUES (1)");
    if (h->st == SK_OK) {
        h->st = be->commit(h->conn);
    }
    return NULL;
}

static void test_busy_waiter_gets_lock_soon_after_release(void **state)
{
    char dir[64];
    sk__db_conn *a = open_writer(dir, sizeof(dir));
    sk__db_conn *b = open_second_writer(dir);
    sk__db_conn *r = NULL;
    char path[128];
    holder h = { .conn = a, .hold_ms = 40, .st = SK_EINTERNAL };
    pthread_t th;
    int64_t t0;
    int64_t waited_ms;
    (void)state;

    assert_int_equal(be->exec_script(a, "CREATE TABLE t (a INTEGER)"), SK_OK);
    assert_int_equal(be->begin(a, true), SK_OK);
    t0 = sk_time_mono_ms();
    assert_int_equal(pthread_create(&th, NULL, hold_lock_main, &h), 0);
    assert_int_equal(be->begin(b, true), SK_OK); /* waits for a's commit */
    waited_ms = sk_time_mono_ms() - t0;
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(h.st, SK_OK);
    /* Released after ~40 ms; the waiter looks at least every 2 ms (the default handler: 100 ms). */
    print_message("waited %lld ms for a lock held 40 ms\n", (long long)waited_ms);
    assert_true(waited_ms >= 40);
    assert_true(waited_ms < 1000);
    assert_int_equal(query_int(b, "SELECT count(*) FROM t"), 1); /* sees a's commit */
    assert_int_equal(be->exec_script(b, "INSERT INTO t VALUES (2)"), SK_OK);

    /* A reader in WAL mode is not blocked by the open write transaction. */
    snprintf(path, sizeof(path), "%s/b.db", dir);
    assert_int_equal(be->conn_open(path, false, &r), SK_OK);
    assert_int_equal(be->begin(r, false), SK_OK);
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 1);
    assert_int_equal(be->commit(r), SK_OK);
    assert_int_equal(be->commit(b), SK_OK);
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 2);

    be->conn_close(r);
    be->conn_close(b);
    be->conn_close(a);
    sk_test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse_forms),
        cmocka_unit_test(test_url_parse_alloc_failure),
        cmocka_unit_test(test_sql_quote),
        cmocka_unit_test(test_conn_open_settings),
        cmocka_unit_test(test_conn_open_failure),
        cmocka_unit_test(test_statement_cache),
        cmocka_unit_test(test_bind_and_errors),
        cmocka_unit_test(test_transactions_and_savepoints),
        cmocka_unit_test(test_busy_deadline_surfaces_as_edb),
        cmocka_unit_test(test_busy_waiter_gets_lock_soon_after_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
