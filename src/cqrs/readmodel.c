/* SPDX-License-Identifier: MIT */
/*
 * Versioned read models and their replay. Each version has projections of
 * its own (durable consumers, inbox keys and checkpoints named after the
 * version), so a replay builds version live+1 from the first event of every
 * stream next to the live one, and the switch is one transaction that
 * repoints the queries and records the new live version once the new
 * version's checkpoint has reached the live one's on every stream. The new
 * version's projections then continue as the live ones: no checkpoint
 * changes hands, so no event is skipped or applied twice.
 *
 * Several processes may share the read model's database (the instances of
 * one service on one machine): the holder of the database's lock
 * "readmodel-<name>" runs the projections and replays, the others serve
 * queries from the same file and stand by, trying the lock every
 * STANDBY_RETRY_MS; the kernel frees it when the holder's process dies.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cqrs/cqrs_int.h"

/* "<name>-v<version>" fits SK__PROJECTION_NAME_MAX with a name of SK_READMODEL_NAME_MAX. */
#define PNAME_LEN       (SK__PROJECTION_NAME_MAX + 1)
#define DEFAULT_POLL_MS 200
#define STANDBY_RETRY_MS  500
#define STANDBY_LOG_EVERY 20

typedef struct rm_version {
    sk_readmodel *rm;
    int64_t version;
    char pname[PNAME_LEN];
    sk_projection *proj[SK_READMODEL_MAX_STREAMS];
} rm_version;

/*
 * Lock order: ctl_mu, then mu. ctl_mu serialises the control operations
 * (replay, the monitor's switch, stop); mu protects the fields read by
 * status while a control operation changes them.
 */
struct sk_readmodel {
    char *name;
    size_t n_streams;
    char *streams[SK_READMODEL_MAX_STREAMS];
    char *filters[SK_READMODEL_MAX_STREAMS];
    sk_readmodel_apply_fn apply;
    sk_readmodel_schema_fn create;
    sk_readmodel_schema_fn activate;
    sk_readmodel_schema_fn drop;
    void *ctx;
    int64_t poll_ms;
    const sk_upcasters *upcasters;
    sk_bus *bus;
    sk_store *store;
    sk_metrics *metrics;

    pthread_mutex_t ctl_mu;
    pthread_mutex_t mu;  /* protects live, building, the times and counts below, is_stopping */
    pthread_cond_t cond; /* wakes the monitor on stop */
    rm_version *live;
    rm_version *building; /* NULL when no replay runs */
    int64_t last_switch_ms;
    uint64_t n_switches;
    bool is_stopping;
    pthread_t monitor;
    bool has_monitor; /* joined by the next replay or by stop; ctl_mu */
    char *lock_purpose; /* "readmodel-<name>" */
    int lock_fd;        /* the projector lock while this process holds it, else -1 */
    bool is_projecting; /* mu: this process runs the projections (holds the lock, or no file) */
    pthread_t standby;  /* waits for the lock while another process projects */
    bool has_standby;
    _Atomic int64_t live_version;
    _Atomic uint64_t events_applied;
};

static void lock(pthread_mutex_t *mu)
{
    sk__cqrs_pthread_check(pthread_mutex_lock(mu), "pthread_mutex_lock");
}

static void unlock(pthread_mutex_t *mu)
{
    sk__cqrs_pthread_check(pthread_mutex_unlock(mu), "pthread_mutex_unlock");
}

static void pname_format(const char *name, int64_t version, char out[PNAME_LEN])
{
    if (version == 1) {
        snprintf(out, PNAME_LEN, "%s", name);
    } else {
        snprintf(out, PNAME_LEN, "%s-v%lld", name, (long long)version);
    }
}

/* ---------------------------------------------------------------- applying */

static void count_applied(void *ctx)
{
    sk_readmodel *rm = ctx;
    atomic_fetch_add(&rm->events_applied, 1);
}

/* The projection handler of every version: the service's apply with the version. */
static sk_status version_apply(sk_tx *tx, const sk_message *m, void *ctx)
{
    rm_version *v = ctx;
    sk_readmodel *rm = v->rm;
    bool is_live = atomic_load(&rm->live_version) == v->version;
    sk_status st = rm->apply(tx, m, v->version, is_live, rm->ctx);

    if (st == SK_OK && !is_live) {
        /* Counted once durable, so a rolled-back unit does not count. */
        st = sk_tx_after_commit(tx, count_applied, rm);
    }
    return st;
}

static void version_stop(rm_version *v)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < SK_READMODEL_MAX_STREAMS; i++) {
        sk_projection_stop(v->proj[i]);
        v->proj[i] = NULL;
    }
    sk_free(v);
}

static sk_status version_start(sk_readmodel *rm, int64_t version, rm_version **out)
{
    sk_status st = SK_OK;
    rm_version *v = sk_calloc(1, sizeof(*v));

    *out = NULL;
    if (v == NULL) {
        return SK_FAIL(SK_ENOMEM, "read model %s: allocating version %lld", rm->name,
                       (long long)version);
    }
    v->rm = rm;
    v->version = version;
    pname_format(rm->name, version, v->pname);
    for (size_t i = 0; i < rm->n_streams && st == SK_OK; i++) {
        sk_projection_config pc = {
            .name = v->pname,
            .stream = rm->streams[i],
            .filter_subject = rm->filters[i],
            .apply = version_apply,
            .ctx = v,
            .upcasters = rm->upcasters, /* a replay sees events as the live version does */
        };
        st = sk_projection_start(&v->proj[i], rm->bus, rm->store, rm->metrics, &pc);
    }
    if (st != SK_OK) {
        version_stop(v);
        return SK_WRAP(st, "read model %s: version %lld", rm->name, (long long)version);
    }
    *out = v;
    return SK_OK;
}

/* ---------------------------------------------------------------- state rows */

typedef struct state_row {
    sk_readmodel *rm;
    int64_t live;
    int64_t building;
    int64_t started_ms;
    int64_t retiring; /* a version switched away from whose retirement is not done, or 0 */
} state_row;

static sk_status state_read(sk_tx *tx, state_row *r)
{
    sk_rows *rows = NULL;
    const sk_db_value p[] = { SK_DB_TEXT_V(r->rm->name) };
    sk_status st = sk_tx_query(tx,
                               "SELECT live_version, building_version, started_ms, retiring_version"
                               " FROM sk_readmodels WHERE name = ?",
                               p, 1, &rows);
    if (st == SK_OK) {
        st = sk_rows_next(rows);
    }
    if (st == SK_OK) {
        r->live = sk_rows_int(rows, 0);
        r->building = sk_rows_int(rows, 1);
        r->started_ms = sk_rows_int(rows, 2);
        r->retiring = sk_rows_int(rows, 3);
    }
    sk_rows_close(rows);
    return st;
}

static sk_status state_read_work(sk_tx *tx, void *ctx)
{
    return state_read(tx, ctx);
}

/* Start: make sure the row exists, read it, and point the queries at the live version. */
static sk_status load_work(sk_tx *tx, void *ctx)
{
    state_row *r = ctx;
    const sk_db_value p[] = { SK_DB_TEXT_V(r->rm->name) };
    sk_status st =
        sk_tx_exec(tx,
                   "INSERT INTO sk_readmodels (name, live_version, building_version, started_ms)"
                   " VALUES (?, 1, 0, 0) ON CONFLICT (name) DO NOTHING",
                   p, 1, NULL);
    if (st == SK_OK) {
        st = state_read(tx, r);
    }
    if (st == SK_OK && r->live < 1) {
        st = SK_FAIL(SK_EDB, "sk_readmodels: live_version %lld of %s is not >= 1",
                     (long long)r->live, r->rm->name);
    }
    if (st == SK_OK) {
        st = r->rm->activate(tx, r->live, r->rm->ctx);
    }
    return st;
}

/* Replay: create the next version's tables and record that it is being built. */
static sk_status begin_work(sk_tx *tx, void *ctx)
{
    state_row *r = ctx;
    sk_status st = state_read(tx, r);

    if (st != SK_OK) {
        return st;
    }
    if (r->building != 0) {
        return SK_FAIL(SK_ESTATE, "read model %s: a replay into version %lld is already running",
                       r->rm->name, (long long)r->building);
    }
    if (r->retiring != 0) {
        return SK_FAIL(SK_ESTATE,
                       "read model %s: version %lld is not retired yet (see the log); try again",
                       r->rm->name, (long long)r->retiring);
    }
    r->building = r->live + 1;
    r->started_ms = sk_time_now_ms();
    /* Drop first: a version number is never reused, but be safe against leftovers. */
    st = r->rm->drop(tx, r->building, r->rm->ctx);
    if (st == SK_OK) {
        st = r->rm->create(tx, r->building, r->rm->ctx);
    }
    if (st == SK_OK) {
        const sk_db_value p[] = { SK_DB_INT_V(r->building), SK_DB_INT_V(r->started_ms),
                                  SK_DB_TEXT_V(r->rm->name) };
        st = sk_tx_exec(
            tx, "UPDATE sk_readmodels SET building_version = ?, started_ms = ? WHERE name = ?", p,
            3, NULL);
    }
    return st;
}

/* A replay that could not start: forget the new version. */
static sk_status abort_work(sk_tx *tx, void *ctx)
{
    state_row *r = ctx;
    const sk_db_value p[] = { SK_DB_TEXT_V(r->rm->name) };
    sk_status st = r->rm->drop(tx, r->building, r->rm->ctx);
    if (st == SK_OK) {
        st = sk_tx_exec(
            tx, "UPDATE sk_readmodels SET building_version = 0, started_ms = 0 WHERE name = ?", p,
            1, NULL);
    }
    return st;
}

/* Sum of the checkpoints of version @p pname, and whether each stream reached @p floor's. */
static sk_status checkpoints_read(sk_tx *tx, sk_readmodel *rm, const char *pname, uint64_t *seqs)
{
    for (size_t i = 0; i < rm->n_streams; i++) {
        sk_status st = sk_projection_checkpoint_get(tx, pname, rm->streams[i], &seqs[i]);
        if (st == SK_ENOTFOUND) {
            seqs[i] = 0;
            sk_error_clear();
        } else if (st != SK_OK) {
            return st;
        }
    }
    return SK_OK;
}

typedef struct switch_job {
    sk_readmodel *rm;
    int64_t old_version;
    int64_t new_version;
    bool is_switched;
} switch_job;

static void switched_after_commit(void *ctx)
{
    switch_job *j = ctx;
    /* Now, on the writer thread, so the next unit of the new version already applies as live. */
    atomic_store(&j->rm->live_version, j->new_version);
}

/*
 * The switch: inside one unit of work, compare the checkpoints of both
 * versions; when the new one has reached the live one on every stream,
 * point the queries at it and record it as live. Both versions' handlers
 * run on this same writer thread, so what the comparison sees is exact.
 */
static sk_status switch_work(sk_tx *tx, void *ctx)
{
    switch_job *j = ctx;
    sk_readmodel *rm = j->rm;
    uint64_t live_seqs[SK_READMODEL_MAX_STREAMS], new_seqs[SK_READMODEL_MAX_STREAMS];
    char live_name[PNAME_LEN], new_name[PNAME_LEN];
    sk_status st;

    j->is_switched = false;
    pname_format(rm->name, j->old_version, live_name);
    pname_format(rm->name, j->new_version, new_name);
    st = checkpoints_read(tx, rm, live_name, live_seqs);
    if (st == SK_OK) {
        st = checkpoints_read(tx, rm, new_name, new_seqs);
    }
    if (st != SK_OK) {
        return st;
    }
    for (size_t i = 0; i < rm->n_streams; i++) {
        if (new_seqs[i] < live_seqs[i]) {
            return SK_OK; /* not caught up yet */
        }
    }
    st = rm->activate(tx, j->new_version, rm->ctx);
    if (st == SK_OK) {
        const sk_db_value p[] = { SK_DB_INT_V(j->new_version), SK_DB_INT_V(j->old_version),
                                  SK_DB_TEXT_V(rm->name) };
        st = sk_tx_exec(tx,
                        "UPDATE sk_readmodels SET live_version = ?, building_version = 0,"
                        " started_ms = 0, retiring_version = ? WHERE name = ?",
                        p, 3, NULL);
    }
    if (st == SK_OK) {
        st = sk_tx_after_commit(tx, switched_after_commit, j);
    }
    if (st == SK_OK) {
        j->is_switched = true;
    }
    return st;
}

typedef struct retire_job {
    sk_readmodel *rm;
    int64_t version;
    char durables[SK_READMODEL_MAX_STREAMS][PNAME_LEN + SK__PROJECTION_NAME_MAX + 2];
} retire_job;

/*
 * After the switch and the deletion of its durable consumers: drop the old
 * version's tables, checkpoints and inbox rows, and clear the mark the
 * switch left. Every step may run again (drop is idempotent).
 */
static sk_status retire_work(sk_tx *tx, void *ctx)
{
    retire_job *j = ctx;
    sk_readmodel *rm = j->rm;
    char pname[PNAME_LEN];
    sk_status st = rm->drop(tx, j->version, rm->ctx);

    pname_format(rm->name, j->version, pname);
    for (size_t i = 0; i < rm->n_streams && st == SK_OK; i++) {
        char key[PNAME_LEN + SK__PROJECTION_NAME_MAX + 2];
        snprintf(key, sizeof(key), "%s:%s", pname, rm->streams[i]);
        const sk_db_value p[] = { SK_DB_TEXT_V(key) };
        st = sk_tx_exec(tx, "DELETE FROM sk_checkpoints WHERE projection = ?", p, 1, NULL);
        if (st == SK_OK) {
            /* The inbox (sk_msg's table, keyed by durable name) of a consumer that is gone. */
            const sk_db_value q[] = { SK_DB_TEXT_V(j->durables[i]) };
            st = sk_tx_exec(tx, "DELETE FROM sk_inbox WHERE consumer = ?", q, 1, NULL);
        }
    }
    if (st == SK_OK) {
        const sk_db_value p[] = { SK_DB_TEXT_V(rm->name), SK_DB_INT_V(j->version) };
        st = sk_tx_exec(tx,
                        "UPDATE sk_readmodels SET retiring_version = 0"
                        " WHERE name = ? AND retiring_version = ?",
                        p, 2, NULL);
    }
    return st;
}

/*
 * Retire @p version, switched away from (its projections stopped): delete
 * its durable consumers first, which would otherwise keep their position
 * and any backlog on the server forever, then its rows. What fails stays
 * recorded (retiring_version) and is tried again at the next start or
 * replay; only space is lost meanwhile, a version that is not live is
 * never read.
 */
static void version_retire(sk_readmodel *rm, int64_t version)
{
    retire_job j = { .rm = rm, .version = version };
    char pname[PNAME_LEN];
    sk_status st = SK_OK;

    pname_format(rm->name, version, pname);
    for (size_t i = 0; i < rm->n_streams && st == SK_OK; i++) {
        char *durable = sk__projection_durable_name(pname, rm->streams[i]);
        if (durable == NULL) {
            st = SK_FAIL(SK_ENOMEM, "naming a durable consumer");
            break;
        }
        snprintf(j.durables[i], sizeof(j.durables[i]), "%s", durable);
        sk_free(durable);
        st = sk_consumer_delete(rm->bus, rm->streams[i], j.durables[i]);
    }
    if (st == SK_OK) {
        st = sk_store_run(rm->store, retire_work, &j);
    }
    if (st != SK_OK) {
        SK_LOG_WARN("read model %s: retiring version %lld (tried again at the next start or "
                    "replay): %s",
                    rm->name, (long long)version, sk_error_message());
        return;
    }
    SK_LOG_INFO("read model %s: version %lld retired", rm->name, (long long)version);
}

/* Wait up to @p ms or until stop. @return false when stopping. */
static bool wait_unless_stopping(sk_readmodel *rm, int64_t ms)
{
    struct timespec ts;
    bool stop;

    sk_time_mono_deadline(ms, &ts);
    lock(&rm->mu);
    if (!rm->is_stopping) {
        SK_IGNORE(pthread_cond_timedwait(&rm->cond, &rm->mu, &ts)); /* timeout or wake-up */
    }
    stop = rm->is_stopping;
    unlock(&rm->mu);
    return !stop;
}

/* Replay thread: poll until the new version has caught up, switch, retire the old version. */
static void *monitor_main(void *arg)
{
    sk_readmodel *rm = arg;
    switch_job sj = { .rm = rm };

    sk_thread_name("sk-rm-monitor");
    lock(&rm->mu);
    sj.old_version = rm->live->version;
    sj.new_version = rm->building->version;
    unlock(&rm->mu);
    while (wait_unless_stopping(rm, rm->poll_ms)) {
        sk_status st = sk_store_run(rm->store, switch_work, &sj);
        if (st != SK_OK) {
            SK_LOG_WARN("read model %s: switching to version %lld: %s (retrying)", rm->name,
                        (long long)sj.new_version, sk_error_message());
            continue;
        }
        if (sj.is_switched) {
            break;
        }
    }
    if (!sj.is_switched) {
        return NULL; /* stopping: the replay resumes at the next start */
    }
    /* The old version's events are no longer read by anyone: stop its projections. */
    lock(&rm->mu);
    rm_version *old = rm->live;
    rm->live = rm->building;
    rm->building = NULL;
    rm->last_switch_ms = sk_time_now_ms();
    rm->n_switches++;
    unlock(&rm->mu);
    SK_LOG_INFO("read model %s: version %lld is live (replay done), retiring version %lld",
                rm->name, (long long)sj.new_version, (long long)sj.old_version);
    version_stop(old);
    version_retire(rm, sj.old_version);
    return NULL;
}

/* Start the monitor of the running replay. ctl_mu held. */
static sk_status monitor_start(sk_readmodel *rm)
{
    if (pthread_create(&rm->monitor, NULL, monitor_main, rm) != 0) {
        return SK_FAIL(SK_EINTERNAL, "read model %s: creating the replay thread", rm->name);
    }
    rm->has_monitor = true;
    return SK_OK;
}

static void monitor_join(sk_readmodel *rm)
{
    if (rm->has_monitor) {
        pthread_join(rm->monitor, NULL);
        rm->has_monitor = false;
    }
}

/* ---------------------------------------------------------------- projecting */

/* Read the state row and point the queries at the live version. */
static sk_status state_load(sk_readmodel *rm, state_row *row)
{
    sk_status st = sk_store_run(rm->store, load_work, row);

    if (st != SK_OK) {
        return SK_WRAP(st, "read model %s: loading its state", rm->name);
    }
    atomic_store(&rm->live_version, row->live);
    return SK_OK;
}

/*
 * Start projecting: load the state, start the live version's projections
 * and resume a replay that was running. ctl_mu held. On failure nothing
 * stays started.
 */
static sk_status projecting_start(sk_readmodel *rm)
{
    state_row row = { .rm = rm };
    rm_version *live = NULL, *building = NULL;
    sk_status st = state_load(rm, &row);

    if (st != SK_OK) {
        return st;
    }
    st = version_start(rm, row.live, &live);
    if (st == SK_OK && row.building != 0) {
        SK_LOG_INFO("read model %s: resuming the replay into version %lld", rm->name,
                    (long long)row.building);
        st = version_start(rm, row.building, &building);
    }
    if (st != SK_OK) {
        version_stop(building);
        version_stop(live);
        return st;
    }
    lock(&rm->mu);
    rm->live = live;
    rm->building = building;
    rm->is_projecting = true;
    unlock(&rm->mu);
    if (building != NULL) {
        st = monitor_start(rm);
        /* Without its monitor the replay resumes at the next start; the live version runs on. */
        if (st != SK_OK) {
            SK_LOG_WARN("read model %s: %s", rm->name, sk_error_message());
        }
    }
    SK_LOG_INFO("read model %s: version %lld live, projected by this process", rm->name,
                (long long)row.live);
    if (row.retiring != 0) {
        /* The last holder switched away from it and ended before it was retired. */
        version_retire(rm, row.retiring);
    }
    return SK_OK;
}

/* Another process projects: take its place once it is gone. */
static void *standby_main(void *arg)
{
    sk_readmodel *rm = arg;
    unsigned n_failed = 0; /* logged on the first failure, then every STANDBY_LOG_EVERY */

    sk_thread_name("sk-rm-standby");
    while (wait_unless_stopping(rm, STANDBY_RETRY_MS)) {
        sk_status st = SK_OK;
        if (rm->lock_fd < 0) {
            st = sk_store_lock_try(rm->store, rm->lock_purpose, &rm->lock_fd);
            if (st == SK_ECONFLICT) {
                sk_error_clear();
                continue;
            }
        }
        if (st == SK_OK) {
            lock(&rm->ctl_mu);
            st = projecting_start(rm);
            unlock(&rm->ctl_mu);
        }
        if (st == SK_OK) {
            SK_LOG_INFO("read model %s: the instance that projected is gone; this one projects now",
                        rm->name);
            break;
        }
        if (n_failed++ % STANDBY_LOG_EVERY == 0) {
            SK_LOG_WARN("read model %s: taking over the projections: %s (retrying every %d ms)",
                        rm->name, sk_error_message(), STANDBY_RETRY_MS);
        }
    }
    return NULL;
}

/* Another process projects: point the queries at the live version and stand by. */
static sk_status standby_start(sk_readmodel *rm)
{
    state_row row = { .rm = rm };
    sk_status st = state_load(rm, &row);

    if (st != SK_OK) {
        return st;
    }
    if (pthread_create(&rm->standby, NULL, standby_main, rm) != 0) {
        return SK_FAIL(SK_EINTERNAL, "read model %s: creating the standby thread", rm->name);
    }
    rm->has_standby = true;
    SK_LOG_INFO("read model %s: version %lld live, projected by another instance sharing the "
                "database; standing by",
                rm->name, (long long)row.live);
    return SK_OK;
}

/* ---------------------------------------------------------------- lifecycle */

static void readmodel_free(sk_readmodel *rm)
{
    if (rm == NULL) {
        return;
    }
    for (size_t i = 0; i < SK_READMODEL_MAX_STREAMS; i++) {
        sk_free(rm->streams[i]);
        sk_free(rm->filters[i]);
    }
    sk_free(rm->name);
    sk_free(rm->lock_purpose);
    if (rm->lock_fd >= 0) {
        close(rm->lock_fd); /* releases the lock: a standby elsewhere takes over */
    }
    pthread_cond_destroy(&rm->cond);
    pthread_mutex_destroy(&rm->mu);
    pthread_mutex_destroy(&rm->ctl_mu);
    sk_free(rm);
}

/* True when @p name ends in "-v" and digits, the shape of a later version's projection name. */
static bool is_version_shaped(const char *name)
{
    size_t len = strlen(name), i = len;

    while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9') {
        i--;
    }
    return i < len && i >= 2 && name[i - 1] == 'v' && name[i - 2] == '-';
}

static sk_status config_check(const sk_readmodel_config *cfg)
{
    if (!sk_name_is_valid(cfg->name, SK_READMODEL_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_readmodel_start: cfg.name must be 1..%d bytes of [A-Za-z0-9_-]",
                       SK_READMODEL_NAME_MAX);
    }
    /*
     * Version N >= 2 of read model "x" projects as "x-vN": read model
     * "x-v2" would share its durable consumers, checkpoints and inbox rows,
     * and retiring one would delete the other's.
     */
    if (is_version_shaped(cfg->name)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_readmodel_start: cfg.name \"%s\" must not end in -v<digits> (later "
                       "versions of a read model take that suffix)",
                       cfg->name);
    }
    if (cfg->streams == NULL || cfg->n_streams == 0 || cfg->n_streams > SK_READMODEL_MAX_STREAMS) {
        return SK_FAIL(SK_EINVAL,
                       "sk_readmodel_start: cfg.n_streams must be 1..%d (with cfg.streams)",
                       SK_READMODEL_MAX_STREAMS);
    }
    for (size_t i = 0; i < cfg->n_streams; i++) {
        if (!sk_name_is_valid(cfg->streams[i].stream, SK__PROJECTION_NAME_MAX) ||
            cfg->streams[i].filter_subject == NULL || cfg->streams[i].filter_subject[0] == '\0') {
            return SK_FAIL(SK_EINVAL,
                           "sk_readmodel_start: cfg.streams[%zu]: stream must be 1..%d bytes of "
                           "[A-Za-z0-9_-] and filter_subject a non-empty subject",
                           i, SK__PROJECTION_NAME_MAX);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(cfg->streams[k].stream, cfg->streams[i].stream) == 0) {
                return SK_FAIL(SK_EINVAL,
                               "sk_readmodel_start: cfg.streams[%zu]: stream %s listed twice", i,
                               cfg->streams[i].stream);
            }
        }
    }
    if (cfg->apply == NULL || cfg->create == NULL || cfg->activate == NULL || cfg->drop == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_readmodel_start: cfg.apply, cfg.create, cfg.activate and "
                                  "cfg.drop must not be NULL");
    }
    if (cfg->poll_ms < 0 || cfg->poll_ms > 60000) {
        return SK_FAIL(SK_EINVAL, "sk_readmodel_start: cfg.poll_ms: expected 0..60000, got %lld",
                       (long long)cfg->poll_ms);
    }
    return SK_OK;
}

sk_status sk_readmodel_start(sk_readmodel **out,
                             sk_bus *bus,
                             sk_store *store,
                             sk_metrics *metrics,
                             const sk_readmodel_config *cfg)
{
    sk_status st = SK_OK;
    sk_readmodel *rm = NULL;
    bool is_sync_ready = false;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_readmodel_start: out must not be NULL");
    }
    *out = NULL;
    if (bus == NULL || store == NULL || cfg == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_readmodel_start: bus, store and cfg must not be NULL");
    }
    st = config_check(cfg);
    if (st != SK_OK) {
        return st;
    }
    rm = sk_calloc(1, sizeof(*rm));
    if (rm == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_readmodel_start: allocating");
    }
    rm->lock_fd = -1;
    {
        pthread_condattr_t ca;
        if (pthread_condattr_init(&ca) != 0) {
            sk_free(rm);
            return SK_FAIL(SK_ENOMEM, "sk_readmodel_start: condition attributes");
        }
        sk__cqrs_pthread_check(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC),
                               "pthread_condattr_setclock");
        if (pthread_cond_init(&rm->cond, &ca) != 0) {
            pthread_condattr_destroy(&ca);
            sk_free(rm);
            return SK_FAIL(SK_ENOMEM, "sk_readmodel_start: condition variable");
        }
        pthread_condattr_destroy(&ca);
    }
    sk__cqrs_pthread_check(pthread_mutex_init(&rm->mu, NULL), "pthread_mutex_init");
    sk__cqrs_pthread_check(pthread_mutex_init(&rm->ctl_mu, NULL), "pthread_mutex_init");
    is_sync_ready = true;
    atomic_init(&rm->live_version, 0);
    atomic_init(&rm->events_applied, 0);
    rm->bus = bus;
    rm->store = store;
    rm->metrics = metrics;
    rm->apply = cfg->apply;
    rm->create = cfg->create;
    rm->activate = cfg->activate;
    rm->drop = cfg->drop;
    rm->ctx = cfg->ctx;
    rm->poll_ms = cfg->poll_ms == 0 ? DEFAULT_POLL_MS : cfg->poll_ms;
    rm->upcasters = cfg->upcasters;
    rm->n_streams = cfg->n_streams;
    rm->name = sk_strdup(cfg->name);
    st = rm->name != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "sk_readmodel_start: copying the name");
    for (size_t i = 0; i < cfg->n_streams && st == SK_OK; i++) {
        rm->streams[i] = sk_strdup(cfg->streams[i].stream);
        rm->filters[i] = sk_strdup(cfg->streams[i].filter_subject);
        if (rm->streams[i] == NULL || rm->filters[i] == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_readmodel_start: copying the streams");
        }
    }
    if (st != SK_OK) {
        goto out;
    }
    rm->lock_purpose = sk_asprintf("readmodel-%s", rm->name);
    if (rm->lock_purpose == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_readmodel_start: the lock name");
        goto out;
    }
    st = sk_store_lock_try(store, rm->lock_purpose, &rm->lock_fd);
    if (st == SK_OK) {
        lock(&rm->ctl_mu);
        st = projecting_start(rm);
        unlock(&rm->ctl_mu);
    } else if (st == SK_ECONFLICT) {
        sk_error_clear();
        st = standby_start(rm);
    }
    if (st != SK_OK) {
        goto out;
    }
    *out = rm;
    rm = NULL;
out:
    if (rm != NULL && is_sync_ready) {
        readmodel_free(rm);
    }
    return st;
}

void sk_readmodel_stop(sk_readmodel *rm)
{
    if (rm == NULL) {
        return;
    }
    lock(&rm->mu);
    rm->is_stopping = true;
    sk__cqrs_pthread_check(pthread_cond_broadcast(&rm->cond), "pthread_cond_broadcast");
    unlock(&rm->mu);
    if (rm->has_standby) {
        pthread_join(rm->standby, NULL); /* before ctl_mu: a take-over holds it */
        rm->has_standby = false;
    }
    lock(&rm->ctl_mu);
    monitor_join(rm);
    version_stop(rm->building);
    version_stop(rm->live);
    rm->building = NULL;
    rm->live = NULL;
    unlock(&rm->ctl_mu);
    readmodel_free(rm); /* and with it the lock */
}

sk_status sk_readmodel_replay(sk_readmodel *rm, int64_t *version)
{
    sk_status st = SK_OK;
    rm_version *v = NULL;

    if (version != NULL) {
        *version = 0;
    }
    if (rm == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_readmodel_replay: rm must not be NULL");
    }
    lock(&rm->ctl_mu);
    lock(&rm->mu);
    bool busy = rm->building != NULL || rm->is_stopping;
    bool is_projecting = rm->is_projecting;
    int64_t building = rm->building != NULL ? rm->building->version : 0;
    unlock(&rm->mu);
    if (!is_projecting) {
        st = SK_FAIL(SK_ESTATE,
                     "read model %s: not projected by this instance (another one sharing the "
                     "database projects it, and replays run there)",
                     rm->name);
        goto out;
    }
    if (busy) {
        st = building != 0 ? SK_FAIL(SK_ESTATE,
                                     "read model %s: a replay into version %lld is already running",
                                     rm->name, (long long)building)
                           : SK_FAIL(SK_ESTATE, "read model %s: stopping", rm->name);
        goto out;
    }
    monitor_join(rm); /* the previous replay's thread has finished its work */
    state_row row = { .rm = rm };
    if (sk_store_read(rm->store, state_read_work, &row) == SK_OK && row.retiring != 0) {
        version_retire(rm, row.retiring); /* what failed after the last switch, once more */
    }
    st = sk_store_run(rm->store, begin_work, &row);
    if (st != SK_OK) {
        st = SK_WRAP(st, "read model %s: starting a replay", rm->name);
        goto out;
    }
    st = version_start(rm, row.building, &v);
    if (st != SK_OK) {
        if (sk_store_run(rm->store, abort_work, &row) != SK_OK) {
            SK_LOG_WARN("read model %s: forgetting version %lld: %s", rm->name,
                        (long long)row.building, sk_error_message());
        }
        goto out;
    }
    lock(&rm->mu);
    rm->building = v;
    atomic_store(&rm->events_applied, 0);
    unlock(&rm->mu);
    st = monitor_start(rm);
    if (st != SK_OK) {
        /* The version stays recorded as being built: the next start resumes it. */
        goto out;
    }
    SK_LOG_INFO("read model %s: replaying every stream into version %lld", rm->name,
                (long long)row.building);
    if (version != NULL) {
        *version = row.building;
    }
out:
    unlock(&rm->ctl_mu);
    return st;
}

typedef struct status_read {
    sk_readmodel *rm;
    sk_readmodel_progress *out;
} status_read;

/* The versions from the state row, which every process sharing the database reads alike. */
static sk_status status_work(sk_tx *tx, void *ctx)
{
    status_read *r = ctx;
    sk_readmodel *rm = r->rm;
    uint64_t live_seqs[SK_READMODEL_MAX_STREAMS], new_seqs[SK_READMODEL_MAX_STREAMS];
    char pname[PNAME_LEN];
    state_row row = { .rm = rm };
    sk_status st = state_read(tx, &row);

    if (st != SK_OK) {
        return st;
    }
    r->out->live_version = row.live;
    r->out->building_version = row.building;
    r->out->started_ms = row.started_ms;
    pname_format(rm->name, row.live, pname);
    st = checkpoints_read(tx, rm, pname, live_seqs);
    if (st == SK_OK && row.building != 0) {
        pname_format(rm->name, row.building, pname);
        st = checkpoints_read(tx, rm, pname, new_seqs);
    }
    if (st != SK_OK) {
        return st;
    }
    for (size_t i = 0; i < rm->n_streams; i++) {
        uint64_t have = row.building != 0 ? new_seqs[i] : live_seqs[i];
        r->out->applied_seq += have;
        r->out->target_seq += have > live_seqs[i] ? have : live_seqs[i];
    }
    return SK_OK;
}

sk_status sk_readmodel_status(sk_readmodel *rm, sk_readmodel_progress *out)
{
    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_readmodel_status: out must not be NULL");
    }
    memset(out, 0, sizeof(*out));
    if (rm == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_readmodel_status: rm must not be NULL");
    }
    status_read r = { .rm = rm, .out = out };
    lock(&rm->mu);
    out->last_switch_ms = rm->last_switch_ms;
    out->n_switches = rm->n_switches;
    out->is_projecting = rm->is_projecting;
    unlock(&rm->mu);
    sk_status st = sk_store_read(rm->store, status_work, &r);
    if (st != SK_OK) {
        return SK_WRAP(st, "read model %s: reading the checkpoints", rm->name);
    }
    /* Counted by the process that projects; another one sharing the database reports none. */
    out->events_applied = out->building_version != 0 ? atomic_load(&rm->events_applied) : 0;
    return SK_OK;
}

sk_status sk_readmodel_status_json(sk_readmodel *rm, json_t **out)
{
    sk_readmodel_progress p;
    sk_status st;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_readmodel_status_json: out must not be NULL");
    }
    *out = NULL;
    st = sk_readmodel_status(rm, &p);
    if (st != SK_OK) {
        return st;
    }
    *out = json_pack(
        "{s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "name", rm->name, "live_version",
        (json_int_t)p.live_version, "building_version", (json_int_t)p.building_version, "state",
        p.building_version != 0 ? "replaying" : "idle", "applied_seq", (json_int_t)p.applied_seq,
        "target_seq", (json_int_t)p.target_seq, "events_applied", (json_int_t)p.events_applied,
        "started_ms", (json_int_t)p.started_ms, "last_switch_ms", (json_int_t)p.last_switch_ms,
        "n_switches", (json_int_t)p.n_switches, "projecting", p.is_projecting);
    if (*out == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_readmodel_status_json: building the document");
    }
    return SK_OK;
}

int64_t sk_readmodel_live_version(sk_readmodel *rm)
{
    return rm != NULL ? atomic_load(&rm->live_version) : 0;
}

const char *sk_readmodel_name(const sk_readmodel *rm)
{
    return rm != NULL ? rm->name : "";
}
