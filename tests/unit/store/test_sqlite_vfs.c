/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the sk-wal VFS (src/store/sqlite_vfs.c), with raw SQLite
 * connections on real files: what it writes is what the default VFS reads,
 * commits of any size, a rolled-back transaction that spilled into the WAL
 * never overwrites what another connection committed after it, and a
 * process that dies mid-transaction loses only that transaction.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sk_test.h"
#include "store/store_int.h"

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static const char *vfs_name;

static int group_setup(void **state)
{
    (void)state;
    /* Before any connection: the VFS is registered once per process. */
    vfs_name = sk__store_sqlite_vfs_register();
    return vfs_name != NULL && strcmp(vfs_name, "sk-wal") == 0 ? 0 : -1;
}

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/skald-test-vfs-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        sk_free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    const char *suffix[] = { "", "-wal", "-shm" };
    for (size_t i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
    sk_free(f);
    return 0;
}

/* A connection as the store makes one (WAL, synchronous=FULL), through @p vfs (NULL: default). */
static sqlite3 *open_db(const fixture *f, const char *vfs)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fail_msg("%s: %s", sql, err != NULL ? err : "?");
    }
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static void assert_intact(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

/* A new connection through the default VFS finds @p rows rows in t and an intact file. */
static void assert_reads_back(const fixture *f, int64_t rows)
{
    sqlite3 *db = open_db(f, NULL);
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM t"), rows);
    assert_intact(db);
    sqlite3_close(db);
}

/* Insert @p n rows of @p bytes each with values from @p first, in one transaction. */
static void insert_rows(sqlite3 *db, int first, int n, int bytes, bool commit)
{
    sqlite3_stmt *st = NULL;
    exec(db, "BEGIN IMMEDIATE");
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO t (k, v) VALUES (?, zeroblob(?))", -1, &st, NULL),
        SQLITE_OK);
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int(st, 1, first + i);
        sqlite3_bind_int(st, 2, bytes);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    exec(db, commit ? "COMMIT" : "ROLLBACK");
}

/* Small and large commits through sk-wal read back through the default VFS, and the reverse. */
static void test_commits_are_read_by_the_default_vfs(void **state)
{
    fixture *f = *state;
    sqlite3 *w = open_db(f, vfs_name);
    sqlite3 *r = open_db(f, NULL);

    exec(w, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
    insert_rows(w, 0, 1, 10, true);
    assert_int_equal(query_int(r, "SELECT COUNT(*) FROM t"), 1);
    assert_int_equal(sk__store_sqlite_vfs_n_paired(), 1); /* w's WAL gathers; r is not ours */
    /* ~3 MB in one commit: more than the gathering buffer, in many pieces. */
    insert_rows(w, 1, 700, 4000, true);
    assert_int_equal(query_int(r, "SELECT COUNT(*) FROM t"), 701);
    assert_int_equal(query_int(r, "SELECT SUM(length(v)) FROM t"), 10 + 700 * 4000);
    insert_rows(r, 1000, 50, 100, true);
    assert_int_equal(query_int(w, "SELECT COUNT(*) FROM t"), 751);
    exec(w, "PRAGMA wal_checkpoint(TRUNCATE)");
    assert_intact(w);
    assert_intact(r);
    sqlite3_close(r);
    sqlite3_close(w);

    /* And from scratch, after the WAL is gone. */
    assert_reads_back(f, 751);
}

/*
 * An idle connection gives back the buffer its WAL frames gather in (it
 * grows to 1 MiB with a big commit): the file control frees it between
 * transactions, keeps it while frames wait in it, and the next commit
 * allocates it again with nothing lost.
 */
static void test_idle_connection_releases_the_wal_buffer(void **state)
{
    fixture *f = *state;
    sqlite3 *w = open_db(f, vfs_name);

    exec(w, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
    insert_rows(w, 0, 200, 4000, true); /* ~800 KiB of frames in one commit */
    assert_true(sk__store_sqlite_vfs_buffer_bytes(NULL) > 64 * 1024);
    assert_int_equal(sqlite3_file_control(w, "main", SK__SQLITE_FCNTL_RELEASE_WAL_BUFFER, NULL),
                     SQLITE_OK);
    assert_int_equal(sk__store_sqlite_vfs_buffer_bytes(NULL), 0);

    /* Frames a spill gathered in an open transaction keep the buffer. */
    size_t gathered = 0;
    exec(w, "PRAGMA cache_size=2");
    exec(w, "BEGIN IMMEDIATE");
    exec(w, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20) "
            "INSERT INTO t (k, v) SELECT 3000 + x, zeroblob(4000) FROM c");
    size_t cap = sk__store_sqlite_vfs_buffer_bytes(&gathered);
    assert_true(gathered > 0);
    assert_int_equal(sqlite3_file_control(w, "main", SK__SQLITE_FCNTL_RELEASE_WAL_BUFFER, NULL),
                     SQLITE_OK);
    size_t gathered_after = 0;
    assert_int_equal(sk__store_sqlite_vfs_buffer_bytes(&gathered_after), cap);
    assert_int_equal(gathered_after, gathered);
    exec(w, "COMMIT");
    assert_int_equal(sqlite3_file_control(w, "main", SK__SQLITE_FCNTL_RELEASE_WAL_BUFFER, NULL),
                     SQLITE_OK);
    assert_int_equal(sk__store_sqlite_vfs_buffer_bytes(NULL), 0);
    insert_rows(w, 4000, 5, 100, true);
    assert_int_equal(query_int(w, "SELECT COUNT(*) FROM t"), 225);
    assert_intact(w);
    sqlite3_close(w);

    assert_reads_back(f, 225);
}

/*
 * A transaction bigger than the page cache spills frames into the WAL
 * before it ends; it is rolled back, and another connection then commits
 * at the same place in the WAL. The spilled frames must have been written
 * (or dropped) before the first connection let go of the write lock, never
 * later over the other's commit.
 */
static void test_rolled_back_spill_never_overwrites_a_later_commit(void **state)
{
    fixture *f = *state;
    sqlite3 *a = open_db(f, vfs_name);
    sqlite3 *b = open_db(f, NULL);

    exec(a, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
    exec(a, "PRAGMA cache_size=8"); /* spill after a few pages */
    for (int round = 0; round < 5; round++) {
        insert_rows(a, 100000 + round * 1000, 200, 3000, false); /* spills, rolled back */
        insert_rows(b, round * 10, 10, 3000, true);
        /* a reads (and would write any frames it still held) */
        assert_int_equal(query_int(a, "SELECT COUNT(*) FROM t"), (round + 1) * 10 + round);
        assert_int_equal(query_int(b, "SELECT COUNT(*) FROM t WHERE k >= 100000"), 0);
        insert_rows(a, 50000 + round, 1, 10, true);
    }
    assert_int_equal(query_int(b, "SELECT COUNT(*) FROM t"), 55);
    assert_intact(a);
    assert_intact(b);
    sqlite3_close(a);
    sqlite3_close(b);
    assert_reads_back(f, 55);
}

/* A process that dies in the middle of a transaction loses that transaction only. */
static void test_process_death_keeps_every_commit(void **state)
{
    fixture *f = *state;
    sqlite3 *setup_db = open_db(f, vfs_name);
    exec(setup_db, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
    sqlite3_close(setup_db);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sqlite3 *db = NULL;
        if (sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, vfs_name) != SQLITE_OK ||
            sqlite3_exec(db, "PRAGMA synchronous=FULL; PRAGMA cache_size=8", NULL, NULL, NULL) !=
                SQLITE_OK) {
            _exit(2);
        }
        for (int i = 0; i < 20; i++) {
            char sql[128];
            snprintf(sql, sizeof(sql),
                     "INSERT INTO t (k, v) VALUES (%d, zeroblob(2000)), (%d, zeroblob(2000))",
                     2 * i, 2 * i + 1);
            if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
                _exit(3);
            }
        }
        /* An unfinished transaction with frames already in the WAL, then death. */
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        for (int i = 0; i < 100; i++) {
            char sql[96];
            snprintf(sql, sizeof(sql), "INSERT INTO t (k, v) VALUES (%d, zeroblob(3000))",
                     1000 + i);
            sqlite3_exec(db, sql, NULL, NULL, NULL);
        }
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    sqlite3 *db = open_db(f, vfs_name);
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM t"), 40);
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM t WHERE k >= 1000"), 0);
    assert_intact(db);
    insert_rows(db, 5000, 3, 10, true); /* and it goes on */
    assert_int_equal(query_int(db, "SELECT COUNT(*) FROM t"), 43);
    sqlite3_close(db);
}

static int64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/*
 * Writes start failing half way through a transaction (the file size
 * limit, as a full disk would). The store's pattern goes on: each unit in
 * a savepoint, a failed unit rolled back to it, then COMMIT. Whatever the
 * transaction reports, the file afterwards is intact and holds exactly
 * what was reported committed: a failed gathered write must not be
 * forgotten while SQLite commits around it.
 */
static void test_failed_write_is_never_committed_around(void **state)
{
    fixture *f = *state;
    sqlite3 *db0 = open_db(f, vfs_name);
    exec(db0, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
    insert_rows(db0, 0, 1, 10, true);
    sqlite3_close(db0);

    for (int64_t room = 40000; room <= 400000; room += 60000) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            char wal[160];
            int64_t committed = 0;
            sqlite3 *db = NULL;
            snprintf(wal, sizeof(wal), "%s-wal", f->path);
            signal(SIGXFSZ, SIG_IGN); /* a write past the limit fails with EFBIG instead */
            if (sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, vfs_name) != SQLITE_OK ||
                sqlite3_exec(db, "PRAGMA synchronous=FULL; PRAGMA cache_size=8", NULL, NULL,
                             NULL) != SQLITE_OK) {
                _exit(2);
            }
            int64_t limit =
                file_size(wal) > file_size(f->path) ? file_size(wal) : file_size(f->path);
            struct rlimit rl = { (rlim_t)(limit + room), (rlim_t)(limit + room) };
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0) {
                _exit(3);
            }
            sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
            for (int u = 0; u < 40; u++) {
                char sql[160];
                sqlite3_exec(db, "SAVEPOINT u", NULL, NULL, NULL);
                snprintf(sql, sizeof(sql),
                         "INSERT INTO t (k, v) VALUES (%d, zeroblob(3000)), (%d, zeroblob(3000))",
                         1000 + 2 * u, 1001 + 2 * u);
                if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK &&
                    sqlite3_exec(db, "SELECT SUM(length(v)) FROM t", NULL, NULL, NULL) ==
                        SQLITE_OK) {
                    sqlite3_exec(db, "RELEASE u", NULL, NULL, NULL);
                    committed += 2;
                } else {
                    sqlite3_exec(db, "ROLLBACK TO u", NULL, NULL, NULL);
                    sqlite3_exec(db, "RELEASE u", NULL, NULL, NULL);
                }
                if (sqlite3_get_autocommit(db)) {
                    break; /* SQLite rolled the whole transaction back on an I/O error */
                }
            }
            if (sqlite3_get_autocommit(db) ||
                sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
                sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
                committed = 0;
            }
            if (write(fds[1], &committed, sizeof(committed)) != sizeof(committed)) {
                _exit(4);
            }
            sqlite3_close(db);
            _exit(0);
        }
        close(fds[1]);
        int64_t committed = -1;
        assert_int_equal(read(fds[0], &committed, sizeof(committed)), sizeof(committed));
        close(fds[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        fprintf(stderr, "[vfs] %lld bytes of room: %lld rows committed\n", (long long)room,
                (long long)committed);
        sqlite3 *db = open_db(f, NULL);
        assert_intact(db);
        int64_t extra = query_int(db, "SELECT COUNT(*) FROM t WHERE k >= 1000");
        if (extra != committed) {
            fail_msg("room %lld: the transaction reported %lld rows committed, the file has %lld",
                     (long long)room, (long long)committed, (long long)extra);
        }
        exec(db, "DELETE FROM t WHERE k >= 1000");
        exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
        sqlite3_close(db);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commits_are_read_by_the_default_vfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_releases_the_wal_buffer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rolled_back_spill_never_overwrites_a_later_commit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_process_death_keeps_every_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_is_never_committed_around, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
