/* SPDX-License-Identifier: MIT */
/*
 * store front, independent of the database: the bounded job queue, the
 * writer thread with group commit (one transaction per batch of queued
 * units, one savepoint per unit), done callbacks and hooks, read snapshots
 * on pooled read-only connections, migrations and statement helpers. Only
 * the writer thread touches the write connection once the store is open.
 */
#include "store/store_int.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim */
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_BATCH 256
#define DEFAULT_MAX_QUEUE 65536
/* Most after-commit hooks one batch may register (a runaway loop, not a real need). */
#define MAX_HOOKS_PER_BATCH (1u << 20)

/* A queued unit of work. */
typedef struct job {
    sk_uow_fn work;
    sk_uow_done_fn done;
    void *ctx;
    sk_status status; /* the unit's fate, set by the writer */
    char *message;    /* owned copy of the failure text, or NULL */
    struct job *next;
} job;

typedef struct hook {
    void (*fn)(void *ctx);
    void (*discard)(void *ctx); /* when the unit does not commit; may be NULL */
    void *ctx;
} hook;

/* An idle read-only connection. */
typedef struct read_conn {
    sk__db_conn *conn;
    struct read_conn *next;
} read_conn;

/*
 * Lock order: `mu` and `read_mu` are never held together, and no callback
 * ever runs with either held.
 */
struct sk_store {
    const sk__store_backend *be;
    char *target; /* backend location, immutable after open */
    size_t max_batch;
    size_t max_queue;

    /* The write connection: the opening thread during open, then the writer thread only. */
    sk__db_conn *wconn;
    pthread_t writer;
    bool has_writer;

    /* mu protects head, tail, n_queued, is_closing, commit_hook and commit_hook_ctx. */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the writer waits on it for jobs or closing */
    job *head;
    job *tail;
    size_t n_queued;
    bool is_closing;
    sk_store_commit_hook_fn commit_hook;
    void *commit_hook_ctx;

    /* read_mu protects read_idle (connections not in use by any reader). */
    pthread_mutex_t read_mu;
    read_conn *read_idle;

    /* Writer thread only: a batch ran since the writer last gave memory back (memory_release). */
    bool is_memory_held;

    /* Writer thread only: after-commit hooks of the running batch, in order. */
    hook *hooks;
    size_t n_hooks;
    size_t cap_hooks;
    bool is_commit_hook_wanted; /* a unit of the running batch asked for commit_hook */

    _Atomic uint64_t n_units;
    _Atomic uint64_t n_batches;
    _Atomic uint64_t n_memory_releases; /* memory_release calls (tests) */
    /* Monotonic ms at which the writer began its batch; 0 from its commit (or rollback) on and
     * while it waits for work (sk_store_busy_ms). */
    _Atomic int64_t batch_started_ms;
};

/* Every backend, tried in order by sk_store_open. */
static const sk__store_backend *const backends[] = { &sk__store_sqlite_backend };

/* ---------------------------------------------------------------- small helpers */

/* pthread mutex and condition errors mean a corrupted program: abort (STYLE 5). */
static void check_pthread(int rc, const char *what)
{
    if (rc != 0) {
        sk_log_write(SK_LOG_LEVEL_ERROR, SK_LOG_MODULE, "%s: %s", what, strerror(rc));
        abort();
    }
}

static void lock(pthread_mutex_t *m)
{
    check_pthread(pthread_mutex_lock(m), "pthread_mutex_lock");
}

static void unlock(pthread_mutex_t *m)
{
    check_pthread(pthread_mutex_unlock(m), "pthread_mutex_unlock");
}

static bool is_writer_thread(const sk_store *s)
{
    return s->has_writer && pthread_equal(pthread_self(), s->writer);
}

void sk__store_sql_quote(const char *sql, char *out, size_t out_size)
{
    const unsigned char *p = (const unsigned char *)(sql == NULL ? "" : sql);
    size_t n = 0;
    size_t n_chars = 0;
    bool is_cut = false;

    if (out_size < 4) {
        if (out_size > 0) {
            out[0] = '\0';
        }
        return;
    }
    while (*p != '\0') {
        size_t l = 1;
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            p++;
            if (n > 0 && out[n - 1] != ' ' && *p != '\0') {
                if (n_chars >= SK__STORE_SQL_QUOTE_MAX || n + 1 + 4 > out_size) {
                    is_cut = true;
                    break;
                }
                out[n++] = ' ';
                n_chars++;
            }
            continue;
        }
        /* Keep UTF-8 sequences whole. */
        while ((p[l] & 0xC0) == 0x80 && l < 4) {
            l++;
        }
        if (n_chars >= SK__STORE_SQL_QUOTE_MAX || n + l + 4 > out_size) {
            is_cut = true;
            break;
        }
        memcpy(out + n, p, l);
        n += l;
        n_chars++;
        p += l;
    }
    while (n > 0 && out[n - 1] == ' ') {
        n--;
    }
    if (is_cut) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* A copy of the calling thread's error text, or of @p st's description when empty. */
static char *copy_message(sk_status st)
{
    const char *m = sk_error_message();
    return sk_strdup(m[0] != '\0' ? m : sk_status_text(st));
}

static void job_set_fate(job *j, sk_status st, char *message_taken)
{
    j->status = st;
    sk_free(j->message);
    j->message = message_taken;
}

/* Close what a callback left open, so the statements can be reused. */
static void tx_close_rows(sk_tx *tx)
{
    if (tx->open_rows != NULL) {
        SK_LOG_WARN("a %s callback returned with query rows still open; closing them",
                    tx->is_write ? "unit of work" : "read");
    }
    while (tx->open_rows != NULL) {
        sk_rows_close(tx->open_rows);
    }
}

/* ---------------------------------------------------------------- writer */

/*
 * One transaction for the whole batch; a savepoint per unit so a failing
 * unit rolls back alone. If a savepoint cannot be released or rolled back
 * the transaction state is unknown, so the whole batch is rolled back.
 */

/* Forget the hooks from index @p from on, letting each release its context. */
static void hooks_discard(sk_store *s, size_t from)
{
    for (size_t i = from; i < s->n_hooks; i++) {
        if (s->hooks[i].discard != NULL) {
            s->hooks[i].discard(s->hooks[i].ctx);
        }
    }
    s->n_hooks = from;
}

static void run_batch(sk_store *s, job *batch)
{
    const sk__store_backend *be = s->be;
    sk_tx tx = { .store = s, .be = be, .conn = s->wconn, .is_write = true, .open_rows = NULL };
    size_t n_ok = 0;
    bool is_broken = false;
    char *fail_msg = NULL;
    sk_status st;

    atomic_store_explicit(&s->batch_started_ms, sk_time_mono_ms(), memory_order_relaxed);
    s->n_hooks = 0;
    sk_error_clear();
    st = be->begin(s->wconn, true);
    if (st != SK_OK) {
        is_broken = true;
        fail_msg = sk_asprintf("begin failed: %s", sk_error_message());
    }
    for (job *j = batch; j != NULL && !is_broken; j = j->next) {
        size_t hooks_mark = s->n_hooks;
        sk_status ust;

        st = be->savepoint(s->wconn);
        if (st != SK_OK) {
            is_broken = true;
            fail_msg = sk_asprintf("savepoint failed: %s", sk_error_message());
            break;
        }
        sk_error_clear();
        ust = j->work(&tx, j->ctx);
        if (ust != SK_OK) {
            /* Copy now: the text is thread-local and the next call may replace it. */
            job_set_fate(j, ust, copy_message(ust));
        }
        tx_close_rows(&tx);
        if (ust == SK_OK) {
            st = be->release(s->wconn);
            if (st == SK_OK) {
                j->status = SK_OK;
                n_ok++;
                continue;
            }
            job_set_fate(j, st, copy_message(st));
        }
        hooks_discard(s, hooks_mark); /* this unit's hooks never run */
        if (be->rollback_to(s->wconn) != SK_OK || be->release(s->wconn) != SK_OK) {
            is_broken = true;
            fail_msg = sk_asprintf("rolling back a unit failed: %s", sk_error_message());
        }
    }
    if (!is_broken && n_ok == 0) {
        be->rollback(s->wconn); /* nothing to keep: save the fsync */
    } else if (!is_broken) {
        st = be->commit(s->wconn);
        if (st != SK_OK) {
            is_broken = true;
            fail_msg = sk_asprintf("commit failed: %s", sk_error_message());
        }
    }
    /* The database's part is done: the hooks and done callbacks that follow hand the results on
     * (acks, replies), which sk_store_busy_ms does not count. */
    atomic_store_explicit(&s->batch_started_ms, 0, memory_order_relaxed);
    if (is_broken) {
        be->rollback(s->wconn);
        hooks_discard(s, 0);
        for (job *j = batch; j != NULL; j = j->next) {
            /* Units that failed on their own keep their status and message. */
            if (j->status == SK_OK) {
                job_set_fate(j, SK_EDB, fail_msg != NULL ? sk_strdup(fail_msg) : NULL);
            }
        }
        SK_LOG_ERROR("batch of units failed: %s", fail_msg != NULL ? fail_msg : "out of memory");
    } else if (n_ok > 0) {
        sk_store_commit_hook_fn commit_hook;
        void *commit_hook_ctx;

        atomic_fetch_add_explicit(&s->n_units, n_ok, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->n_batches, 1, memory_order_relaxed);
        for (size_t i = 0; i < s->n_hooks; i++) {
            s->hooks[i].fn(s->hooks[i].ctx);
        }
        lock(&s->mu);
        commit_hook = s->commit_hook;
        commit_hook_ctx = s->commit_hook_ctx;
        unlock(&s->mu);
        if (commit_hook != NULL && s->is_commit_hook_wanted) {
            commit_hook(commit_hook_ctx);
        }
    }
    s->n_hooks = 0;
    s->is_commit_hook_wanted = false;
    sk_free(fail_msg);
    while (batch != NULL) {
        job *j = batch;
        batch = j->next;
        if (j->done != NULL) {
            const char *m = j->message;
            if (m == NULL) {
                m = j->status == SK_OK ? "" : sk_status_text(j->status);
            }
            j->done(j->status, m, j->ctx);
        }
        sk_free(j->message);
        sk_free(j);
    }
}

/*
 * After a burst of work the connections' page caches (up to 2 MiB each, the
 * writer and every pooled reader), the writer's WAL frame buffer (up to
 * 1 MiB, sqlite_vfs.c) and the heap's free pages stay with the process: an
 * idle service measured 8.5-9.6 MiB PSS after 5 s at 300 orders/s, against
 * ~5 MiB fresh. An idle writer gives them back: the caches (and buffer) of
 * its connection and of the readers not in use, then the heap's free pages.
 * The pool stays locked while its readers release (freeing clean pages, no
 * I/O): a read meanwhile waits for it rather than opening a connection of
 * its own that would stay in the pool for good.
 */
static void memory_release(sk_store *s)
{
    s->be->release_memory(s->wconn);
    lock(&s->read_mu);
    for (read_conn *r = s->read_idle; r != NULL; r = r->next) {
        s->be->release_memory(r->conn);
    }
    unlock(&s->read_mu);
#ifdef __GLIBC__
    (void)malloc_trim(0); /* the whole process's heap; returns 1 when it gave memory back */
#endif
    atomic_fetch_add_explicit(&s->n_memory_releases, 1, memory_order_relaxed);
}

/*
 * Called with mu held: wait for a job or closing. When a batch ran since the
 * last release and nothing comes for SK__STORE_IDLE_RELEASE_MS, give memory back
 * (mu released meanwhile), once.
 */
static void writer_wait(sk_store *s)
{
    struct timespec deadline;

    sk_time_mono_deadline(SK__STORE_IDLE_RELEASE_MS, &deadline);
    while (s->head == NULL && !s->is_closing) {
        if (!s->is_memory_held) {
            check_pthread(pthread_cond_wait(&s->cv, &s->mu), "pthread_cond_wait");
            continue;
        }
        int rc = pthread_cond_timedwait(&s->cv, &s->mu, &deadline);
        if (rc == ETIMEDOUT) {
            s->is_memory_held = false;
            unlock(&s->mu);
            memory_release(s);
            lock(&s->mu);
        } else {
            check_pthread(rc, "pthread_cond_timedwait");
        }
    }
}

/* Take whatever has queued (up to max_batch) each round: that is the group commit. */
static void *writer_main(void *arg)
{
    sk_store *s = arg;

    sk_thread_name("sk-writer");
    for (;;) {
        job *batch;
        job *last;
        size_t n = 1;

        lock(&s->mu);
        writer_wait(s);
        if (s->head == NULL) {
            unlock(&s->mu); /* closing and drained */
            break;
        }
        batch = s->head;
        last = batch;
        while (n < s->max_batch && last->next != NULL) {
            last = last->next;
            n++;
        }
        s->head = last->next;
        if (s->head == NULL) {
            s->tail = NULL;
        }
        s->n_queued -= n;
        last->next = NULL;
        unlock(&s->mu);
        run_batch(s, batch);
        s->is_memory_held = true;
    }
    return NULL;
}

/* ---------------------------------------------------------------- open / close */

static int migration_cmp(const void *a, const void *b)
{
    const sk_migration *x = *(const sk_migration *const *)a;
    const sk_migration *y = *(const sk_migration *const *)b;
    int c = strcmp(x->component, y->component);

    if (c != 0) {
        return c;
    }
    return (x->version > y->version) - (x->version < y->version);
}

static sk_status validate_config(const sk_store_config *cfg)
{
    if (cfg->url == NULL || cfg->url[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "sk_store_open: cfg->url must be a non-empty string");
    }
    if (cfg->n_migrations > 0 && cfg->migrations == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_open: cfg->migrations is NULL but n_migrations is %zu",
                       cfg->n_migrations);
    }
    for (size_t i = 0; i < cfg->n_migrations; i++) {
        const sk_migration *m = &cfg->migrations[i];
        if (m->component == NULL || m->component[0] == '\0') {
            return SK_FAIL(
                SK_EINVAL,
                "sk_store_open: cfg->migrations[%zu].component must be a non-empty string", i);
        }
        if (m->version < 1) {
            return SK_FAIL(SK_EINVAL,
                           "sk_store_open: cfg->migrations[%zu].version must be >= 1, got %d", i,
                           m->version);
        }
        if (m->sql == NULL) {
            return SK_FAIL(SK_EINVAL, "sk_store_open: cfg->migrations[%zu].sql must not be NULL",
                           i);
        }
    }
    return SK_OK;
}

/* Apply one migration unless recorded, in its own transaction with its record. */
static sk_status migrate_one(sk_store *s, const sk_migration *m)
{
    const sk__store_backend *be = s->be;
    sk_tx tx = { .store = s, .be = be, .conn = s->wconn, .is_write = true, .open_rows = NULL };
    sk_db_value key[3] = { SK_DB_TEXT_V(m->component), SK_DB_INT_V(m->version),
                           SK_DB_INT_V(sk_time_now_ms()) };
    int64_t n = 0;
    sk_status st = be->begin(s->wconn, true);

    if (st != SK_OK) {
        return st;
    }
    st = sk_tx_query_int(
        &tx, "SELECT count(*) FROM sk_migrations WHERE component = ? AND version = ?", key, 2, &n);
    if (st != SK_OK || n > 0) {
        goto out;
    }
    SK_LOG_INFO("applying migration %s v%d", m->component, m->version);
    st = be->exec_script(s->wconn, m->sql);
    if (st != SK_OK) {
        goto out;
    }
    st = sk_tx_exec(&tx,
                    "INSERT INTO sk_migrations(component, version, applied_at) VALUES (?, ?, ?)",
                    key, 3, NULL);
    if (st != SK_OK) {
        goto out;
    }
    st = be->commit(s->wconn);
out:
    if (st != SK_OK || n > 0) {
        be->rollback(s->wconn); /* keeps the thread's error text unless it fails itself */
    }
    return st;
}

static sk_status migrate(sk_store *s, const sk_store_config *cfg)
{
    sk_status st = SK_OK;
    const sk_migration **sorted = NULL;

    st = s->be->exec_script(s->wconn, "CREATE TABLE IF NOT EXISTS sk_migrations ("
                                      "component TEXT NOT NULL, version INTEGER NOT NULL, "
                                      "applied_at INTEGER NOT NULL, "
                                      "PRIMARY KEY (component, version))");
    if (st != SK_OK) {
        return SK_WRAP(st, "creating sk_migrations");
    }
    if (cfg->n_migrations == 0) {
        return SK_OK;
    }
    sorted = sk_calloc(cfg->n_migrations, sizeof(*sorted));
    if (sorted == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_store_open: sorting migrations");
    }
    for (size_t i = 0; i < cfg->n_migrations; i++) {
        sorted[i] = &cfg->migrations[i];
    }
    qsort(sorted, cfg->n_migrations, sizeof(*sorted), migration_cmp);
    for (size_t i = 1; i < cfg->n_migrations; i++) {
        if (migration_cmp(&sorted[i - 1], &sorted[i]) == 0) {
            st = SK_FAIL(SK_EINVAL, "sk_store_open: migration %s v%d is listed twice",
                         sorted[i]->component, sorted[i]->version);
            goto out;
        }
    }
    for (size_t i = 0; i < cfg->n_migrations; i++) {
        st = migrate_one(s, sorted[i]);
        if (st != SK_OK) {
            /* Copy the text first: SK_FAIL rewrites the buffer it lives in. */
            char *why = sk_strdup(sk_error_message());
            st = SK_FAIL(st == SK_ENOMEM ? SK_ENOMEM : SK_EDB, "migration %s v%d failed: %s",
                         sorted[i]->component, sorted[i]->version,
                         why != NULL ? why : "out of memory");
            sk_free(why);
            goto out;
        }
    }
out:
    sk_free(sorted);
    return st;
}

/* Free a store that has no writer thread running (half-built or stopped). */
static void store_free(sk_store *s)
{
    while (s->read_idle != NULL) {
        read_conn *r = s->read_idle;
        s->read_idle = r->next;
        s->be->conn_close(r->conn);
        sk_free(r);
    }
    if (s->be != NULL) {
        s->be->conn_close(s->wconn);
    }
    sk_free(s->hooks);
    sk_free(s->target);
    check_pthread(pthread_cond_destroy(&s->cv), "pthread_cond_destroy");
    check_pthread(pthread_mutex_destroy(&s->read_mu), "pthread_mutex_destroy");
    check_pthread(pthread_mutex_destroy(&s->mu), "pthread_mutex_destroy");
    sk_free(s);
}

/* Name only the scheme of an unknown URL: the rest may hold credentials. */
static sk_status fail_unknown_url(const char *url)
{
    const char *colon = strchr(url, ':');
    int n = colon == NULL ? 0 : (int)(colon - url);

    if (n > 32) {
        n = 32;
    }
    return SK_FAIL(SK_EINVAL,
                   "sk_store_open: cfg->url: no backend for scheme \"%.*s\" "
                   "(expected sqlite:PATH, sqlite::memory: or a file path)",
                   n, url);
}

sk_status sk_store_open(sk_store **out, const sk_store_config *cfg)
{
    sk_status st = SK_OK;
    sk_store *s = NULL;
    int rc;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_open: out must not be NULL");
    }
    *out = NULL;
    if (cfg == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_open: cfg must not be NULL");
    }
    st = validate_config(cfg);
    if (st != SK_OK) {
        return st;
    }
    s = sk_calloc(1, sizeof(*s));
    if (s == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_store_open: allocating the store");
    }
    check_pthread(pthread_mutex_init(&s->mu, NULL), "pthread_mutex_init");
    check_pthread(pthread_mutex_init(&s->read_mu, NULL), "pthread_mutex_init");
    pthread_condattr_t ca;
    check_pthread(pthread_condattr_init(&ca), "pthread_condattr_init");
    /* Timed waits on the monotonic clock: a wall clock jump must not move them. */
    check_pthread(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC), "pthread_condattr_setclock");
    check_pthread(pthread_cond_init(&s->cv, &ca), "pthread_cond_init");
    pthread_condattr_destroy(&ca);
    s->max_batch = cfg->max_batch == 0 ? DEFAULT_MAX_BATCH : cfg->max_batch;
    s->max_queue = cfg->max_queue == 0 ? DEFAULT_MAX_QUEUE : cfg->max_queue;
    atomic_init(&s->n_units, 0);
    atomic_init(&s->n_batches, 0);
    atomic_init(&s->n_memory_releases, 0);
    atomic_init(&s->batch_started_ms, 0);

    st = SK_ENOTFOUND;
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]) && st == SK_ENOTFOUND; i++) {
        st = backends[i]->url_parse(cfg->url, &s->target);
        if (st != SK_ENOTFOUND) {
            s->be = backends[i];
        }
    }
    if (st == SK_ENOTFOUND) {
        st = fail_unknown_url(cfg->url);
        goto out;
    }
    if (st != SK_OK) {
        st = SK_WRAP(st, "sk_store_open: cfg->url");
        goto out;
    }
    st = s->be->conn_open(s->target, true, &s->wconn);
    if (st != SK_OK) {
        goto out;
    }
    st = migrate(s, cfg);
    if (st != SK_OK) {
        goto out;
    }
    rc = pthread_create(&s->writer, NULL, writer_main, s);
    if (rc != 0) {
        st = SK_FAIL(rc == EAGAIN ? SK_ENOMEM : SK_EINTERNAL,
                     "sk_store_open: starting the writer thread: %s", strerror(rc));
        goto out;
    }
    s->has_writer = true;
    *out = s;
    s = NULL;
out:
    if (s != NULL) {
        store_free(s);
    }
    return st;
}

void sk_store_close(sk_store *store)
{
    if (store == NULL) {
        return;
    }
    if (is_writer_thread(store)) {
        /* Joining ourselves would hang forever; leave the store open and say why. */
        SK_LOG_ERROR("sk_store_close called from a store callback on the writer thread; ignored");
        return;
    }
    lock(&store->mu);
    store->is_closing = true;
    check_pthread(pthread_cond_signal(&store->cv), "pthread_cond_signal");
    unlock(&store->mu);
    if (store->has_writer) {
        check_pthread(pthread_join(store->writer, NULL), "pthread_join");
        store->has_writer = false;
    }
    /* Every job ran (the writer exits only with an empty queue). */
    store_free(store);
}

/* ---------------------------------------------------------------- submit / run */

sk_status sk_store_submit(sk_store *store, sk_uow_fn work, sk_uow_done_fn done, void *ctx)
{
    sk_status st = SK_OK;
    job *j;

    if (store == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_submit: store must not be NULL");
    }
    if (work == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_submit: work must not be NULL");
    }
    j = sk_calloc(1, sizeof(*j));
    if (j == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_store_submit: allocating a job");
    }
    j->work = work;
    j->done = done;
    j->ctx = ctx;
    lock(&store->mu);
    if (store->is_closing) {
        st = SK_ESTATE;
    } else if (store->n_queued >= store->max_queue) {
        st = SK_ELIMIT;
    } else {
        if (store->tail != NULL) {
            store->tail->next = j;
        } else {
            store->head = j;
        }
        store->tail = j;
        store->n_queued++;
        j = NULL;
        check_pthread(pthread_cond_signal(&store->cv), "pthread_cond_signal");
    }
    unlock(&store->mu);
    if (j != NULL) {
        sk_free(j);
        if (st == SK_ESTATE) {
            return SK_FAIL(st, "sk_store_submit: the store is closing");
        }
        return SK_FAIL(st, "sk_store_submit: %zu units already queued (max_queue)",
                       store->max_queue);
    }
    return SK_OK;
}

typedef struct run_wait {
    sk_uow_fn work; /* the caller's unit and context, immutable */
    void *ctx;
    pthread_mutex_t mu; /* protects everything below */
    pthread_cond_t cv;
    bool is_done;
    sk_status st;
    char *message; /* owned copy */
} run_wait;

static void run_done(sk_status st, const char *message, void *ctx)
{
    run_wait *w = ctx;

    lock(&w->mu);
    w->st = st;
    if (st != SK_OK) {
        w->message = sk_strdup(message);
    }
    w->is_done = true;
    /* Signal under the lock: the waiter frees `w` as soon as it sees is_done. */
    check_pthread(pthread_cond_signal(&w->cv), "pthread_cond_signal");
    unlock(&w->mu);
}

static sk_status run_work(sk_tx *tx, void *ctx)
{
    run_wait *w = ctx;
    return w->work(tx, w->ctx);
}

sk_status sk_store_run(sk_store *store, sk_uow_fn work, void *ctx)
{
    run_wait w = { .work = work, .ctx = ctx, .is_done = false, .st = SK_OK, .message = NULL };
    sk_status st;

    if (store == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_run: store must not be NULL");
    }
    if (work == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_run: work must not be NULL");
    }
    if (is_writer_thread(store)) {
        return SK_FAIL(SK_ESTATE, "sk_store_run: called on the store's writer thread (would "
                                  "wait for itself); use sk_store_submit");
    }
    check_pthread(pthread_mutex_init(&w.mu, NULL), "pthread_mutex_init");
    check_pthread(pthread_cond_init(&w.cv, NULL), "pthread_cond_init");
    st = sk_store_submit(store, run_work, run_done, &w);
    if (st == SK_OK) {
        lock(&w.mu);
        while (!w.is_done) {
            check_pthread(pthread_cond_wait(&w.cv, &w.mu), "pthread_cond_wait");
        }
        unlock(&w.mu);
        st = w.st;
        if (st != SK_OK) {
            /* The unit's text was copied on the writer; set it on this thread. */
            st = SK_FAIL(st, "%s", w.message != NULL ? w.message : sk_status_text(st));
        }
    }
    sk_free(w.message);
    check_pthread(pthread_cond_destroy(&w.cv), "pthread_cond_destroy");
    check_pthread(pthread_mutex_destroy(&w.mu), "pthread_mutex_destroy");
    return st;
}

/* ---------------------------------------------------------------- reads */

static sk_status read_checkout(sk_store *s, read_conn **out)
{
    read_conn *r;
    sk_status st;

    lock(&s->read_mu);
    r = s->read_idle;
    if (r != NULL) {
        s->read_idle = r->next;
    }
    unlock(&s->read_mu);
    if (r != NULL) {
        *out = r;
        return SK_OK;
    }
    r = sk_calloc(1, sizeof(*r));
    if (r == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_store_read: allocating a read connection");
    }
    st = s->be->conn_open(s->target, false, &r->conn);
    if (st != SK_OK) {
        sk_free(r);
        return st;
    }
    *out = r;
    return SK_OK;
}

static void read_checkin(sk_store *s, read_conn *r)
{
    lock(&s->read_mu);
    r->next = s->read_idle;
    s->read_idle = r;
    unlock(&s->read_mu);
}

sk_status sk_store_read(sk_store *store, sk_uow_fn fn, void *ctx)
{
    sk_status st;
    read_conn *r = NULL;
    sk_tx tx;

    if (store == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_read: store must not be NULL");
    }
    if (fn == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_store_read: fn must not be NULL");
    }
    /*
     * Connections come from a pool rather than being tied to threads: no
     * thread-exit hook can outlive the store, and a nested read simply
     * takes a second connection.
     */
    st = read_checkout(store, &r);
    if (st != SK_OK) {
        return SK_WRAP(st == SK_ENOMEM ? st : SK_EDB, "sk_store_read");
    }
    st = store->be->begin(r->conn, false);
    if (st != SK_OK) {
        /* The connection may be unusable: do not return it to the pool. */
        st = SK_WRAP(st == SK_ENOMEM ? st : SK_EDB, "sk_store_read: taking a snapshot");
        store->be->conn_close(r->conn);
        sk_free(r);
        return st;
    }
    tx = (sk_tx){ .store = store, .be = store->be, .conn = r->conn, .is_write = false };
    st = fn(&tx, ctx);
    tx_close_rows(&tx);
    if (st == SK_OK) {
        st = store->be->commit(r->conn);
        if (st != SK_OK) {
            store->be->rollback(r->conn);
        }
    } else {
        store->be->rollback(r->conn);
    }
    read_checkin(store, r);
    return st;
}

/* ---------------------------------------------------------------- hooks and stats */

void sk_store_set_commit_hook(sk_store *store, sk_store_commit_hook_fn fn, void *ctx)
{
    if (store == NULL) {
        return;
    }
    lock(&store->mu);
    store->commit_hook = fn;
    store->commit_hook_ctx = fn != NULL ? ctx : NULL;
    unlock(&store->mu);
}

const char *sk_store_location(const sk_store *store)
{
    return store == NULL ? NULL : store->target;
}

uint64_t sk__store_n_memory_releases(sk_store *store)
{
    return atomic_load_explicit(&store->n_memory_releases, memory_order_relaxed);
}

bool sk__store_is_file(const sk_store *store)
{
    return store->be->target_is_file(store->target);
}

int64_t sk_store_busy_ms(const sk_store *store)
{
    if (store == NULL) {
        return 0;
    }
    return sk_time_mono_since_ms(
        atomic_load_explicit(&store->batch_started_ms, memory_order_relaxed));
}

void sk_store_stats(sk_store *store, uint64_t *n_units, uint64_t *n_batches)
{
    uint64_t u = 0;
    uint64_t b = 0;

    if (store != NULL) {
        u = atomic_load_explicit(&store->n_units, memory_order_relaxed);
        b = atomic_load_explicit(&store->n_batches, memory_order_relaxed);
    }
    if (n_units != NULL) {
        *n_units = u;
    }
    if (n_batches != NULL) {
        *n_batches = b;
    }
}

sk_status sk_tx_after_commit(sk_tx *tx, void (*fn)(void *ctx), void *ctx)
{
    return sk_tx_after_commit_or_discard(tx, fn, NULL, ctx);
}

void sk_tx_want_commit_hook(sk_tx *tx)
{
    if (tx != NULL && tx->is_write && is_writer_thread(tx->store)) {
        tx->store->is_commit_hook_wanted = true;
    }
}

sk_status sk_tx_after_commit_or_discard(sk_tx *tx,
                                        void (*fn)(void *ctx),
                                        void (*discard)(void *ctx),
                                        void *ctx)
{
    sk_store *s;

    if (tx == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_tx_after_commit: tx must not be NULL");
    }
    if (fn == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_tx_after_commit: fn must not be NULL");
    }
    if (!tx->is_write) {
        return SK_FAIL(SK_ESTATE, "sk_tx_after_commit: a read snapshot never commits");
    }
    s = tx->store;
    if (!is_writer_thread(s)) {
        /* Migrations run on the opening thread and have no hooks to run. */
        return SK_FAIL(SK_ESTATE, "sk_tx_after_commit: only units of work take hooks");
    }
    if (s->n_hooks == s->cap_hooks) {
        size_t cap = s->cap_hooks == 0 ? 16 : s->cap_hooks * 2;
        hook *h;
        if (cap > MAX_HOOKS_PER_BATCH) {
            return SK_FAIL(SK_ELIMIT, "sk_tx_after_commit: more than %u hooks in one batch",
                           MAX_HOOKS_PER_BATCH);
        }
        h = sk_realloc(s->hooks, cap * sizeof(*h));
        if (h == NULL) {
            return SK_FAIL(SK_ENOMEM, "sk_tx_after_commit: growing the hook list");
        }
        s->hooks = h;
        s->cap_hooks = cap;
    }
    s->hooks[s->n_hooks].fn = fn;
    s->hooks[s->n_hooks].discard = discard;
    s->hooks[s->n_hooks].ctx = ctx;
    s->n_hooks++;
    return SK_OK;
}

sk_store *sk_tx_store(sk_tx *tx)
{
    return tx == NULL ? NULL : tx->store;
}

/* ---------------------------------------------------------------- statements */

/* Find the cached statement and bind; the statement must not have open rows. */
static sk_status tx_prepare(sk_tx *tx,
                            const char *fn_name,
                            const char *sql,
                            const sk_db_value *params,
                            size_t n_params,
                            bool is_copy,
                            sk_rows **out)
{
    sk_rows *rows = NULL;
    sk_status st;

    *out = NULL;
    if (tx == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: tx must not be NULL", fn_name);
    }
    if (sql == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: sql must not be NULL", fn_name);
    }
    if (tx->is_write && !tx->be->is_tx_open(tx->conn)) {
        /* Else the statement would run and commit on its own, outside the unit. */
        return SK_FAIL(SK_EDB,
                       "%s: the database rolled this unit's transaction back after an earlier "
                       "error (full disk, I/O); the unit cannot go on",
                       fn_name);
    }
    st = tx->be->prepare(tx->conn, sql, &rows);
    if (st != SK_OK) {
        return st == SK_EINVAL ? SK_WRAP(st, "%s", fn_name) : st;
    }
    if (rows->is_open) {
        char quoted[SK__STORE_SQL_QUOTE_MAX + 8];
        sk__store_sql_quote(sql, quoted, sizeof(quoted));
        return SK_FAIL(SK_ESTATE,
                       "%s: this statement's rows are still open; sk_rows_close them "
                       "first (in: %s)",
                       fn_name, quoted);
    }
    st = tx->be->bind(rows, params, n_params, is_copy);
    if (st != SK_OK) {
        tx->be->reset(rows);
        return st == SK_EINVAL ? SK_WRAP(st, "%s", fn_name) : st;
    }
    *out = rows;
    return SK_OK;
}

sk_status
sk_tx_exec(sk_tx *tx, const char *sql, const sk_db_value *params, size_t n_params, int64_t *changes)
{
    sk_rows *rows = NULL;
    sk_status st;

    if (changes != NULL) {
        *changes = 0;
    }
    /* Parameters are only read while stepping below: borrowing them is safe. */
    st = tx_prepare(tx, "sk_tx_exec", sql, params, n_params, false, &rows);
    if (st != SK_OK) {
        return st;
    }
    /* A statement that returns rows (INSERT ... RETURNING) runs to its end; the rows are dropped.
     */
    do {
        st = tx->be->step(rows);
    } while (st == SK_OK);
    if (st == SK_ENOTFOUND) {
        st = SK_OK;
        if (changes != NULL) {
            *changes = tx->be->changes(tx->conn);
        }
    }
    tx->be->reset(rows);
    return st;
}

sk_status
sk_tx_query(sk_tx *tx, const char *sql, const sk_db_value *params, size_t n_params, sk_rows **out)
{
    sk_rows *rows = NULL;
    sk_status st;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_tx_query: out must not be NULL");
    }
    *out = NULL;
    /* The rows outlive this call, so the backend copies text and blob parameters. */
    st = tx_prepare(tx, "sk_tx_query", sql, params, n_params, true, &rows);
    if (st != SK_OK) {
        return st;
    }
    rows->tx = tx;
    rows->is_open = true;
    rows->has_row = false;
    rows->is_done = false;
    rows->prev_open = NULL;
    rows->next_open = tx->open_rows;
    if (tx->open_rows != NULL) {
        tx->open_rows->prev_open = rows;
    }
    tx->open_rows = rows;
    *out = rows;
    return SK_OK;
}

sk_status sk_rows_next(sk_rows *rows)
{
    sk_status st;

    if (rows == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_rows_next: rows must not be NULL");
    }
    if (!rows->is_open) {
        return SK_FAIL(SK_ESTATE, "sk_rows_next: rows are closed");
    }
    if (rows->is_done) {
        /* Stepping again would restart the statement: stay at the end. */
        rows->has_row = false;
        return SK_ENOTFOUND;
    }
    st = rows->be->step(rows);
    rows->has_row = st == SK_OK;
    rows->is_done = st != SK_OK;
    return st;
}

static bool rows_col_ok(const sk_rows *rows, int col)
{
    return rows != NULL && rows->is_open && rows->has_row && col >= 0 &&
           col < rows->be->column_count((sk_rows *)rows);
}

bool sk_rows_is_null(sk_rows *rows, int col)
{
    return !rows_col_ok(rows, col) || rows->be->column_is_null(rows, col);
}

int64_t sk_rows_int(sk_rows *rows, int col)
{
    return rows_col_ok(rows, col) ? rows->be->column_int(rows, col) : 0;
}

const char *sk_rows_text(sk_rows *rows, int col, size_t *len)
{
    if (!rows_col_ok(rows, col)) {
        if (len != NULL) {
            *len = 0;
        }
        return "";
    }
    return rows->be->column_text(rows, col, len);
}

void sk_rows_close(sk_rows *rows)
{
    sk_tx *tx;

    if (rows == NULL || !rows->is_open) {
        return;
    }
    tx = rows->tx;
    rows->be->reset(rows);
    if (rows->prev_open != NULL) {
        rows->prev_open->next_open = rows->next_open;
    } else if (tx != NULL) {
        tx->open_rows = rows->next_open;
    }
    if (rows->next_open != NULL) {
        rows->next_open->prev_open = rows->prev_open;
    }
    rows->prev_open = NULL;
    rows->next_open = NULL;
    rows->tx = NULL;
    rows->is_open = false;
    rows->has_row = false;
    rows->is_done = false;
}

sk_status sk_tx_query_int(
    sk_tx *tx, const char *sql, const sk_db_value *params, size_t n_params, int64_t *out)
{
    sk_rows *rows = NULL;
    sk_status st;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_tx_query_int: out must not be NULL");
    }
    *out = 0;
    st = tx_prepare(tx, "sk_tx_query_int", sql, params, n_params, false, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = tx->be->step(rows);
    if (st == SK_OK) {
        *out = tx->be->column_count(rows) > 0 ? tx->be->column_int(rows, 0) : 0;
    } else if (st == SK_ENOTFOUND) {
        char quoted[SK__STORE_SQL_QUOTE_MAX + 8];
        sk__store_sql_quote(sql, quoted, sizeof(quoted));
        st = SK_FAIL(SK_ENOTFOUND, "sk_tx_query_int: no row (in: %s)", quoted);
    }
    tx->be->reset(rows);
    return st;
}
