/* SPDX-License-Identifier: MIT */
/*
 * bench_store: durable units per second through sk_store_submit (two
 * producer threads, group commit) against a raw SQLite loop with the same
 * durability (WAL, synchronous=FULL) and the same units per transaction as
 * the store averaged. A unit is one ~300-byte order row plus one outbox row.
 *
 * Usage: bench_store [SECONDS]   (default 3; files live in a fresh /tmp dir)
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <skald/store.h>

#define N_PRODUCERS 2
/* Units a producer keeps in flight: enough to keep the writer's queue full. */
#define WINDOW_PER_PRODUCER 4096
/* Units whose latency is recorded (the rest are only counted). */
#define MAX_LATENCY_SAMPLES (2u * 1024u * 1024u)

static const char schema[] =
    "CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,"
    " total_cents INTEGER NOT NULL, payload TEXT NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL,"
    " msg_id TEXT NOT NULL, payload TEXT NOT NULL, created_at INTEGER NOT NULL);";

static const char insert_order[] = "INSERT INTO orders (id, customer_id, status, total_cents, "
                                   "payload, created_at) VALUES (?, ?, 'PENDING', ?, ?, ?)";
static const char insert_outbox[] = "INSERT INTO outbox (subject, msg_id, payload, created_at) "
                                    "VALUES ('order.events.OrderCreated', ?, ?, ?)";

/* The data of unit @p n, the same for both contenders. */
typedef struct unit_data {
    char order_id[32];
    char customer_id[32];
    char payload[320];
    int payload_len;
    int64_t total_cents;
} unit_data;

static void unit_fill(unit_data *d, uint64_t n)
{
    snprintf(d->order_id, sizeof(d->order_id), "ord-%016llu", (unsigned long long)n);
    snprintf(d->customer_id, sizeof(d->customer_id), "cus-%08llu", (unsigned long long)(n % 10000));
    d->total_cents = (int64_t)(n % 100000) + 199;
    d->payload_len =
        snprintf(d->payload, sizeof(d->payload),
                 "{\"order_id\":\"%s\",\"customer_id\":\"%s\",\"status\":\"PENDING\",\"items\":["
                 "{\"sku\":\"SKU-%04llu\",\"quantity\":2,\"unit_price_cents\":1999},"
                 "{\"sku\":\"SKU-%04llu\",\"quantity\":1,\"unit_price_cents\":499}],"
                 "\"total_cents\":%lld,\"created_at\":\"2026-11-25T10:00:00.123Z\"}",
                 d->order_id, d->customer_id, (unsigned long long)(n % 1000),
                 (unsigned long long)((n + 7) % 1000), (long long)d->total_cents);
}

/* ---------------------------------------------------------------- the store */

typedef struct bench {
    sk_store *store;
    int64_t end_ns;
    atomic_uint_fast64_t next_id;
    atomic_uint_fast64_t n_done;
    atomic_uint_fast64_t n_failed;
    /*
     * In-flight units per producer. A producer that filled its window sleeps
     * until half of it is durable (one wake-up per half window, not one per
     * unit, so the harness does not dominate what is measured).
     */
    atomic_int inflight[N_PRODUCERS];
    pthread_mutex_t mu[N_PRODUCERS];
    pthread_cond_t cv[N_PRODUCERS];
    int64_t *submit_ns; /* per unit id below MAX_LATENCY_SAMPLES */
    int64_t *latency_ns;
    atomic_uint_fast64_t n_latency;
} bench;

static bench B;

static sk_status unit_work(sk_tx *tx, void *ctx)
{
    uint64_t id = (uint64_t)(uintptr_t)ctx >> 1;
    unit_data d;
    int64_t now = sk_time_now_ms();
    sk_status st;

    unit_fill(&d, id);
    sk_db_value o[5] = { SK_DB_TEXT_V(d.order_id), SK_DB_TEXT_V(d.customer_id),
                         SK_DB_INT_V(d.total_cents),
                         SK_DB_TEXTN_V(d.payload, (size_t)d.payload_len), SK_DB_INT_V(now) };
    sk_db_value m[3] = { SK_DB_TEXT_V(d.order_id), SK_DB_TEXTN_V(d.payload, (size_t)d.payload_len),
                         SK_DB_INT_V(now) };
    st = sk_tx_exec(tx, insert_order, o, 5, NULL);
    if (st == SK_OK) {
        st = sk_tx_exec(tx, insert_outbox, m, 3, NULL);
    }
    return st;
}

static void unit_done(sk_status st, const char *message, void *ctx)
{
    uint64_t id = (uint64_t)(uintptr_t)ctx >> 1;
    int producer = (int)((uintptr_t)ctx & 1u);

    if (st != SK_OK) {
        if (atomic_fetch_add(&B.n_failed, 1) == 0) {
            fprintf(stderr, "bench_store: unit failed: %s\n", message);
        }
    } else if (id < MAX_LATENCY_SAMPLES) {
        uint64_t k = atomic_fetch_add(&B.n_latency, 1);
        B.latency_ns[k] = sk_time_mono_ns() - B.submit_ns[id];
    }
    atomic_fetch_add(&B.n_done, 1);
    if (atomic_fetch_sub(&B.inflight[producer], 1) == WINDOW_PER_PRODUCER / 2 + 1) {
        pthread_mutex_lock(&B.mu[producer]);
        pthread_cond_signal(&B.cv[producer]);
        pthread_mutex_unlock(&B.mu[producer]);
    }
}

static void *producer_main(void *arg)
{
    int p = (int)(intptr_t)arg;

    while (sk_time_mono_ns() < B.end_ns) {
        uint64_t id;
        sk_status st;

        if (atomic_load(&B.inflight[p]) >= WINDOW_PER_PRODUCER) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 10 * 1000000L; /* re-check the end time now and then */
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_mutex_lock(&B.mu[p]);
            if (atomic_load(&B.inflight[p]) > WINDOW_PER_PRODUCER / 2) {
                pthread_cond_timedwait(&B.cv[p], &B.mu[p], &until);
            }
            pthread_mutex_unlock(&B.mu[p]);
            continue;
        }
        atomic_fetch_add(&B.inflight[p], 1);
        id = atomic_fetch_add(&B.next_id, 1);
        if (id < MAX_LATENCY_SAMPLES) {
            B.submit_ns[id] = sk_time_mono_ns();
        }
        /* The id and the producer travel in the context pointer: no allocation per unit. */
        st = sk_store_submit(B.store, unit_work, unit_done,
                             (void *)(uintptr_t)((id << 1) | (uint64_t)p));
        if (st != SK_OK) {
            atomic_fetch_sub(&B.inflight[p], 1);
            atomic_fetch_add(&B.n_failed, 1);
            fprintf(stderr, "bench_store: submit: %s\n", sk_error_message());
            break;
        }
    }
    return NULL;
}

/* CPU time of the whole process (every thread), in nanoseconds. */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* @return units per second, or a negative value on failure. */
static double run_store(const char *dir, int seconds, double *avg_batch)
{
    char url[256];
    sk_migration mig = { "bench", 1, schema };
    sk_store_config cfg = { .url = url, .migrations = &mig, .n_migrations = 1 };
    pthread_t th[N_PRODUCERS];
    uint64_t n_units = 0;
    uint64_t n_batches = 0;
    int64_t t0;
    int64_t t1;
    int64_t c0;
    int64_t c1;
    uint64_t n_lat;

    snprintf(url, sizeof(url), "sqlite:%s/store.db", dir);
    if (sk_store_open(&B.store, &cfg) != SK_OK) {
        fprintf(stderr, "bench_store: open: %s\n", sk_error_message());
        return -1;
    }
    for (int i = 0; i < N_PRODUCERS; i++) {
        pthread_mutex_init(&B.mu[i], NULL);
        pthread_cond_init(&B.cv[i], NULL);
    }
    c0 = cpu_ns();
    t0 = sk_time_mono_ns();
    B.end_ns = t0 + (int64_t)seconds * 1000000000LL;
    for (int i = 0; i < N_PRODUCERS; i++) {
        if (pthread_create(&th[i], NULL, producer_main, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "bench_store: pthread_create failed\n");
            exit(1);
        }
    }
    for (int i = 0; i < N_PRODUCERS; i++) {
        pthread_join(th[i], NULL);
    }
    /* Count a unit only once it is durable: wait for the last done callbacks. */
    while (atomic_load(&B.n_done) < atomic_load(&B.next_id) - atomic_load(&B.n_failed) &&
           atomic_load(&B.n_failed) == 0) {
        struct timespec ms = { 0, 1000000L };
        nanosleep(&ms, NULL); /* a poll of the drain, off the measured CPU path */
    }
    t1 = sk_time_mono_ns();
    c1 = cpu_ns();
    sk_store_stats(B.store, &n_units, &n_batches);
    sk_store_close(B.store);
    for (int i = 0; i < N_PRODUCERS; i++) {
        pthread_cond_destroy(&B.cv[i]);
        pthread_mutex_destroy(&B.mu[i]);
    }

    n_lat = atomic_load(&B.n_latency);
    qsort(B.latency_ns, n_lat, sizeof(int64_t), cmp_i64);
    *avg_batch = n_batches > 0 ? (double)n_units / (double)n_batches : 1.0;
    printf("store: %llu units in %.2f s, %llu transactions (%.1f units/tx), "
           "CPU %.1f us/unit, submit->done p50 %.2f ms p99 %.2f ms, %llu failed\n",
           (unsigned long long)n_units, (double)(t1 - t0) / 1e9, (unsigned long long)n_batches,
           *avg_batch, n_units > 0 ? (double)(c1 - c0) / 1e3 / (double)n_units : 0.0,
           n_lat > 0 ? (double)B.latency_ns[n_lat / 2] / 1e6 : 0.0,
           n_lat > 0 ? (double)B.latency_ns[n_lat * 99 / 100] / 1e6 : 0.0,
           (unsigned long long)atomic_load(&B.n_failed));
    if (atomic_load(&B.n_failed) > 0) {
        return -1;
    }
    return (double)n_units / ((double)(t1 - t0) / 1e9);
}

/* ---------------------------------------------------------------- raw SQLite */

static int raw_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "bench_store: raw: %s: %s\n", sql, err != NULL ? err : "?");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

static double run_raw(const char *dir, int seconds, int batch)
{
    char path[256];
    sqlite3 *db = NULL;
    sqlite3_stmt *so = NULL;
    sqlite3_stmt *sm = NULL;
    uint64_t n = 0;
    uint64_t n_tx = 0;
    int64_t t0;
    int64_t end;
    int64_t t1;
    int64_t c0;
    double rate = -1;

    snprintf(path, sizeof(path), "%s/raw.db", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK ||
        raw_exec(db, "PRAGMA journal_mode=WAL") != 0 ||
        raw_exec(db, "PRAGMA synchronous=FULL") != 0 || raw_exec(db, schema) != 0 ||
        sqlite3_prepare_v2(db, insert_order, -1, &so, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, insert_outbox, -1, &sm, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench_store: raw setup: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    c0 = cpu_ns();
    t0 = sk_time_mono_ns();
    end = t0 + (int64_t)seconds * 1000000000LL;
    while (sk_time_mono_ns() < end) {
        if (raw_exec(db, "BEGIN IMMEDIATE") != 0) {
            goto out;
        }
        for (int k = 0; k < batch; k++, n++) {
            unit_data d;
            int64_t now = sk_time_now_ms();
            unit_fill(&d, n);
            sqlite3_bind_text(so, 1, d.order_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(so, 2, d.customer_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(so, 3, d.total_cents);
            sqlite3_bind_text(so, 4, d.payload, d.payload_len, SQLITE_STATIC);
            sqlite3_bind_int64(so, 5, now);
            sqlite3_bind_text(sm, 1, d.order_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(sm, 2, d.payload, d.payload_len, SQLITE_STATIC);
            sqlite3_bind_int64(sm, 3, now);
            if (sqlite3_step(so) != SQLITE_DONE || sqlite3_step(sm) != SQLITE_DONE) {
                fprintf(stderr, "bench_store: raw insert: %s\n", sqlite3_errmsg(db));
                goto out;
            }
            sqlite3_reset(so);
            sqlite3_reset(sm);
        }
        if (raw_exec(db, "COMMIT") != 0) {
            goto out;
        }
        n_tx++;
    }
    t1 = sk_time_mono_ns();
    rate = (double)n / ((double)(t1 - t0) / 1e9);
    printf("raw:   %llu units in %.2f s, %llu transactions (%d units/tx), CPU %.1f us/unit\n",
           (unsigned long long)n, (double)(t1 - t0) / 1e9, (unsigned long long)n_tx, batch,
           n > 0 ? (double)(cpu_ns() - c0) / 1e3 / (double)n : 0.0);
out:
    sqlite3_finalize(so);
    sqlite3_finalize(sm);
    sqlite3_close(db);
    return rate;
}

static void remove_db(const char *dir, const char *name)
{
    static const char *const suffixes[] = { "", "-wal", "-shm" };
    char path[300];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s%s", dir, name, suffixes[i]);
        unlink(path); /* missing files are fine */
    }
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/skald-bench-XXXXXX";
    int seconds = 3;
    double avg_batch = 1;
    double store_rate;
    double raw_rate;
    int batch;
    int rc = 1;

    if (argc > 2 ||
        (argc == 2 && (sscanf(argv[1], "%d", &seconds) != 1 || seconds < 1 || seconds > 600))) {
        fprintf(stderr, "usage: bench_store [SECONDS 1..600]\n");
        return 2;
    }
    if (sk_init("bench_store") != SK_OK) {
        fprintf(stderr, "bench_store: %s\n", sk_error_message());
        return 1;
    }
    if (mkdtemp(dir) == NULL) {
        perror("bench_store: mkdtemp");
        return 1;
    }
    B.submit_ns = sk_calloc(MAX_LATENCY_SAMPLES, sizeof(int64_t));
    B.latency_ns = sk_calloc(MAX_LATENCY_SAMPLES, sizeof(int64_t));
    if (B.submit_ns == NULL || B.latency_ns == NULL) {
        fprintf(stderr, "bench_store: out of memory\n");
        goto out;
    }
    printf("unit: INSERT ~300-byte order row + outbox row; WAL, synchronous=FULL; %d s each; %s\n",
           seconds, dir);
    store_rate = run_store(dir, seconds, &avg_batch);
    if (store_rate < 0) {
        goto out;
    }
    batch = (int)(avg_batch + 0.5);
    if (batch < 1) {
        batch = 1;
    }
    raw_rate = run_raw(dir, seconds, batch);
    if (raw_rate < 0) {
        goto out;
    }
    printf("store %.0f units/s, raw %.0f units/s, ratio store/raw %.2f\n", store_rate, raw_rate,
           store_rate / raw_rate);
    rc = 0;
out:
    remove_db(dir, "store.db");
    remove_db(dir, "raw.db");
    rmdir(dir);
    sk_free(B.submit_ns);
    sk_free(B.latency_ns);
    sk_shutdown();
    return rc;
}
