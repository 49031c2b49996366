/* SPDX-License-Identifier: MIT */
/*
 * Two stores on one SQLite file, as the instances of a service run them
 * (inventory-1 and inventory-2 both open DATA/db/inventory.db). Each
 * sk_store has its own writer connection, and SQLite locks two connections
 * of one process against each other exactly as it locks two processes (its
 * unix VFS keeps per-connection lock state over the per-process POSIX
 * locks), so this test drives the cross-process path: BEGIN IMMEDIATE
 * waiting in the busy handler, group commits taking turns, WAL readers of
 * one store seeing the other's commits.
 *
 * Checked: every unit committed exactly once (done called once with SK_OK,
 * its row present once), no unit waited longer than the busy deadline, both
 * stores committed some. Printed: units/s with one store and with two
 * stores on the same file, and the latency of the slowest unit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sk_test.h"
#include "store/store_int.h"
#include <skald/store.h>

#define WAIT_MS 30000
#define N_THREADS 6
/* Units each submitter thread queues (open loop) and runs one by one (closed loop). */
#define N_FLOOD_PER_THREAD 2000
#define N_RUN_PER_THREAD 150

static const sk_migration migrations[] = {
    { "test", 1,
      "CREATE TABLE u (id INTEGER PRIMARY KEY, store INTEGER NOT NULL, body TEXT NOT NULL);"
      "CREATE TABLE c (k INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
      "INSERT INTO c VALUES (1, 0);" },
};

typedef struct unit {
    int64_t id;
    int store_ix;
    int64_t submit_ns;
    int64_t done_ns;
    atomic_int n_done;
    sk_status st;
    atomic_int *n_total_done;
} unit;

static sk_status unit_work(sk_tx *tx, void *ctx)
{
    unit *u = ctx;
    /* About the size of an order row; plus a shared counter every unit updates. */
    static const char body[] = "{\"customer\":\"c-0001\",\"lines\":[{\"sku\":\"sku-1\",\"qty\":1,"
                               "\"price_cents\":1999}],\"total_cents\":1999,\"state\":\"PENDING\","
                               "\"created_at\":1764000000000,\"padding\":\"xxxxxxxxxxxxxxxxxxxxxx"
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}";
    sk_db_value p[3] = { SK_DB_INT_V(u->id), SK_DB_INT_V(u->store_ix), SK_DB_TEXT_V(body) };
    sk_status st = sk_tx_exec(tx, "INSERT INTO u(id, store, body) VALUES (?, ?, ?)", p, 3, NULL);

    if (st != SK_OK) {
        return st;
    }
    return sk_tx_exec(tx, "UPDATE c SET n = n + 1 WHERE k = 1", NULL, 0, NULL);
}

static void unit_done(sk_status st, const char *message, void *ctx)
{
    unit *u = ctx;

    u->done_ns = sk_time_mono_ns();
    u->st = st;
    if (st != SK_OK) {
        fprintf(stderr, "unit %lld failed: %s\n", (long long)u->id, message);
    }
    atomic_fetch_add(&u->n_done, 1);
    atomic_fetch_add(u->n_total_done, 1);
}

typedef struct run {
    sk_store *stores[2];
    int n_stores;
    unit *units;
    int n_per_thread;
    bool is_closed_loop; /* sk_store_run one at a time, else sk_store_submit all */
    atomic_int n_total_done;
} run;

typedef struct submitter {
    run *r;
    int thread_ix;
    sk_status st;
} submitter;

static void *submitter_main(void *arg)
{
    submitter *s = arg;
    run *r = s->r;

    s->st = SK_OK;
    for (int i = 0; i < r->n_per_thread && s->st == SK_OK; i++) {
        unit *u = &r->units[(size_t)s->thread_ix * (size_t)r->n_per_thread + (size_t)i];
        sk_store *store;

        u->store_ix = (s->thread_ix + i) % r->n_stores;
        store = r->stores[u->store_ix];
        u->submit_ns = sk_time_mono_ns();
        if (r->is_closed_loop) {
            sk_status st = sk_store_run(store, unit_work, u);
            u->done_ns = sk_time_mono_ns();
            u->st = st;
            atomic_fetch_add(&u->n_done, 1);
            atomic_fetch_add(&r->n_total_done, 1);
            if (st != SK_OK) {
                fprintf(stderr, "unit %lld failed: %s\n", (long long)u->id, sk_error_message());
            }
        } else {
            s->st = sk_store_submit(store, unit_work, unit_done, u);
        }
    }
    return NULL;
}

typedef struct counter_wait {
    atomic_int *counter;
    int want;
} counter_wait;

static bool counter_reached(void *ctx)
{
    counter_wait *w = ctx;
    return atomic_load(w->counter) >= w->want;
}

static sk_store *open_file_store(const char *path)
{
    sk_store *s = NULL;
    sk_store_config cfg = { .url = path, .migrations = migrations, .n_migrations = 1 };

    if (sk_store_open(&s, &cfg) != SK_OK) {
        fail_msg("sk_store_open: %s", sk_error_message());
    }
    return s;
}

typedef struct check {
    int64_t n_rows;
    int64_t n_distinct;
    int64_t counter;
    int64_t per_store[2];
} check;

static sk_status read_check(sk_tx *tx, void *ctx)
{
    check *c = ctx;
    sk_status st = sk_tx_query_int(tx, "SELECT count(*) FROM u", NULL, 0, &c->n_rows);
    sk_db_value p0[1] = { SK_DB_INT_V(0) };
    sk_db_value p1[1] = { SK_DB_INT_V(1) };

    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT count(DISTINCT id) FROM u", NULL, 0, &c->n_distinct);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT n FROM c WHERE k = 1", NULL, 0, &c->counter);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT count(*) FROM u WHERE store = ?", p0, 1, &c->per_store[0]);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT count(*) FROM u WHERE store = ?", p1, 1, &c->per_store[1]);
    }
    return st;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Drive @p n_stores stores on one new file from N_THREADS threads and check
 * the outcome. @return units/s from the first submit to the last done.
 */
static double drive(int n_stores, bool is_closed_loop, const char *label)
{
    char dir[64];
    char path[128];
    run *r = sk_calloc(1, sizeof(*r));
    pthread_t th[N_THREADS];
    submitter subs[N_THREADS];
    int n_per_thread = is_closed_loop ? N_RUN_PER_THREAD : N_FLOOD_PER_THREAD;
    int n_units = N_THREADS * n_per_thread;
    int64_t *lat_ns;
    int64_t t0;
    int64_t t1;
    int64_t first_submit = INT64_MAX;
    int64_t last_done = 0;
    check c[2];
    uint64_t n_committed[2] = { 0, 0 };
    uint64_t n_batches[2] = { 0, 0 };
    double per_s;
    counter_wait w;

    assert_non_null(r);
    lat_ns = sk_calloc((size_t)n_units, sizeof(*lat_ns));
    assert_non_null(lat_ns);
    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(path, sizeof(path), "sqlite:%s/shared.db", dir);
    /* Both open at once like two instances starting: migrations serialise on the lock. */
    for (int i = 0; i < n_stores; i++) {
        r->stores[i] = open_file_store(path);
    }
    r->n_stores = n_stores;
    r->n_per_thread = n_per_thread;
    r->is_closed_loop = is_closed_loop;
    r->units = sk_calloc((size_t)n_units, sizeof(*r->units));
    assert_non_null(r->units);
    for (int i = 0; i < n_units; i++) {
        r->units[i].id = i + 1;
        r->units[i].n_total_done = &r->n_total_done;
        atomic_init(&r->units[i].n_done, 0);
    }
    atomic_init(&r->n_total_done, 0);

    t0 = sk_time_mono_ns();
    for (int i = 0; i < N_THREADS; i++) {
        subs[i] = (submitter){ .r = r, .thread_ix = i, .st = SK_OK };
        assert_int_equal(pthread_create(&th[i], NULL, submitter_main, &subs[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(subs[i].st, SK_OK);
    }
    w = (counter_wait){ &r->n_total_done, n_units };
    assert_true(sk_test_wait_until(counter_reached, &w, WAIT_MS));
    t1 = sk_time_mono_ns();
    (void)t1;

    for (int i = 0; i < n_units; i++) {
        unit *u = &r->units[i];
        assert_int_equal(atomic_load(&u->n_done), 1); /* done exactly once */
        assert_int_equal(u->st, SK_OK);
        lat_ns[i] = u->done_ns - u->submit_ns;
        if (u->submit_ns < first_submit) {
            first_submit = u->submit_ns;
        }
        if (u->done_ns > last_done) {
            last_done = u->done_ns;
        }
    }
    qsort(lat_ns, (size_t)n_units, sizeof(*lat_ns), cmp_i64);
    /* No unit waited as long as a busy deadline (it would have failed with SK_EDB). */
    assert_true(lat_ns[n_units - 1] < (int64_t)SK__STORE_BUSY_TIMEOUT_MS * 1000000LL);

    /* Each store reads the file: every unit's row once, the counter counted each once. */
    for (int i = 0; i < n_stores; i++) {
        assert_int_equal(sk_store_read(r->stores[i], read_check, &c[i]), SK_OK);
        assert_int_equal(c[i].n_rows, n_units);
        assert_int_equal(c[i].n_distinct, n_units);
        assert_int_equal(c[i].counter, n_units);
        sk_store_stats(r->stores[i], &n_committed[i], &n_batches[i]);
    }
    assert_int_equal(n_committed[0] + n_committed[1], (uint64_t)n_units);
    if (n_stores == 2) {
        assert_true(c[0].per_store[0] > 0);
        assert_true(c[0].per_store[1] > 0);
        assert_int_equal((uint64_t)c[0].per_store[0], n_committed[0]);
        assert_int_equal((uint64_t)c[0].per_store[1], n_committed[1]);
    }
    per_s = (double)n_units / ((double)(last_done - first_submit) / 1e9);
    print_message("%-28s %d store(s): %6d units in %6.1f ms: %8.0f units/s; batches %llu+%llu; "
                  "latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                  label, n_stores, n_units, (double)(last_done - first_submit) / 1e6, per_s,
                  (unsigned long long)n_batches[0], (unsigned long long)n_batches[1],
                  (double)lat_ns[n_units / 2] / 1e6, (double)lat_ns[n_units * 99 / 100] / 1e6,
                  (double)lat_ns[n_units - 1] / 1e6);
    (void)t0;

    for (int i = 0; i < n_stores; i++) {
        sk_store_close(r->stores[i]);
    }
    sk_free(r->units);
    sk_free(r);
    sk_free(lat_ns);
    sk_test_rmrf(dir);
    return per_s;
}

static void test_two_stores_one_file_flood(void **state)
{
    (void)state;
    (void)drive(1, false, "flood (submit all)");
    (void)drive(2, false, "flood (submit all)");
}

static void test_two_stores_one_file_closed_loop(void **state)
{
    (void)state;
    (void)drive(1, true, "closed loop (sk_store_run)");
    (void)drive(2, true, "closed loop (sk_store_run)");
}

/* A store opened on a file that another store is writing sees its commits in reads. */
static sk_status count_rows(sk_tx *tx, void *ctx)
{
    return sk_tx_query_int(tx, "SELECT count(*) FROM u", NULL, 0, ctx);
}

static sk_status insert_one(sk_tx *tx, void *ctx)
{
    sk_db_value p[3] = { SK_DB_INT_V(*(int64_t *)ctx), SK_DB_INT_V(0), SK_DB_TEXT_V("x") };
    return sk_tx_exec(tx, "INSERT INTO u(id, store, body) VALUES (?, ?, ?)", p, 3, NULL);
}

static void test_reads_see_other_store_commits(void **state)
{
    char dir[64];
    char path[128];
    sk_store *a;
    sk_store *b;
    int64_t n = -1;
    int64_t id = 7;
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(path, sizeof(path), "%s/shared.db", dir);
    a = open_file_store(path);
    b = open_file_store(path);
    assert_int_equal(sk_store_read(b, count_rows, &n), SK_OK); /* b's read connection is pooled */
    assert_int_equal(n, 0);
    assert_int_equal(sk_store_run(a, insert_one, &id), SK_OK);
    assert_int_equal(sk_store_read(b, count_rows, &n), SK_OK); /* a new snapshot */
    assert_int_equal(n, 1);
    /* The same key from the other store: the unique constraint holds across writers. */
    SK_TEST_ASSERT_ERR(sk_store_run(b, insert_one, &id), SK_EEXIST, "UNIQUE");
    sk_store_close(b);
    sk_store_close(a);
    sk_test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_see_other_store_commits),
        cmocka_unit_test(test_two_stores_one_file_flood),
        cmocka_unit_test(test_two_stores_one_file_closed_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
