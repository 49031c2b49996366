/* SPDX-License-Identifier: MIT */
/*
 * Integration: a versioned read model over two streams of a real
 * nats-server, with SQLite files. A replay rebuilds version 2 beside the
 * live version 1 while events keep arriving; every read snapshot taken
 * meanwhile sees one whole version (the one recorded as live in the same
 * snapshot); after the switch the view holds every event exactly once,
 * equal to what the live version had, and keeps following new events.
 * Two stores on one file share the read model: one projects, the other
 * takes over when it stops. A switch whose old version was never retired
 * (the process ended between the two) is retired at the next start.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <skald/cqrs.h>

#include "msg/msg_int.h"

#include "sk_test.h"
#include "sk_test_nats.h"

#define NAME "rmtest-1"

/* Version 1 exists from the migrations; the view "items" is what queries read. */
static const sk_migration view_migration = {
    "test_rm", 1,
    "CREATE TABLE rm_v1 (id TEXT PRIMARY KEY, n_applied INTEGER NOT NULL, version INTEGER NOT NULL,"
    " stream TEXT NOT NULL, seq INTEGER NOT NULL);"
    "CREATE VIEW items AS SELECT * FROM rm_v1"
};

static const sk_readmodel_stream streams[2] = {
    { "A_EVENTS", "a.events.>" },
    { "B_EVENTS", "b.events.>" },
};

typedef struct fixture {
    sk_test_nats *nats;
    sk_bus *bus;
    sk_store *source;
    sk_store *view;
    sk_relay *relay;
    sk_metrics *metrics;
    char dir[64];
} fixture;

/* Open the read model's database, as each process that shares it does. */
static void view_open(const fixture *f, sk_store **out)
{
    sk_migration mig[16];
    size_t n_msg = 0, n_cqrs = 0;
    const sk_migration *msg_mig = sk_msg_migrations(&n_msg);
    const sk_migration *cqrs_mig = sk_cqrs_migrations(&n_cqrs);
    char url[128];

    assert_true(n_msg + n_cqrs + 1 <= 16);
    memcpy(mig, msg_mig, n_msg * sizeof(*mig));
    memcpy(mig + n_msg, cqrs_mig, n_cqrs * sizeof(*mig));
    mig[n_msg + n_cqrs] = view_migration;
    snprintf(url, sizeof(url), "sqlite:%s/view.sqlite", f->dir);
    sk_store_config vc = { .url = url, .migrations = mig, .n_migrations = n_msg + n_cqrs + 1 };
    assert_int_equal(sk_store_open(out, &vc), SK_OK);
}

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    size_t n_msg = 0;
    const sk_migration *msg_mig = sk_msg_migrations(&n_msg);
    char url[128];

    assert_non_null(f);
    assert_int_equal(sk_init("test-cqrs-readmodel"), SK_OK);
    assert_int_equal(sk_metrics_create(&f->metrics), SK_OK);
    assert_int_equal(sk_test_nats_start(&f->nats, NULL), SK_OK);
    sk_bus_config bc = { .servers = sk_test_nats_url(f->nats), .name = "test-readmodel" };
    assert_int_equal(sk_bus_open(&f->bus, &bc), SK_OK);
    for (size_t i = 0; i < 2; i++) {
        const char *subjects[1] = { streams[i].filter_subject };
        sk_stream_config sc = { .name = streams[i].stream, .subjects = subjects, .n_subjects = 1 };
        assert_int_equal(sk_bus_stream_ensure(f->bus, &sc), SK_OK);
    }
    assert_int_equal(sk_test_tmpdir(f->dir, sizeof(f->dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/source.sqlite", f->dir);
    sk_store_config src = { .url = url, .migrations = msg_mig, .n_migrations = n_msg };
    assert_int_equal(sk_store_open(&f->source, &src), SK_OK);
    assert_int_equal(sk_relay_start(&f->relay, f->source, f->bus, f->metrics), SK_OK);
    view_open(f, &f->view);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    sk_relay_stop(f->relay);
    sk_store_close(f->source);
    sk_store_close(f->view);
    sk_bus_close(f->bus);
    sk_test_nats_stop(f->nats);
    sk_metrics_destroy(f->metrics);
    sk_test_rmrf(f->dir);
    sk_free(f);
    sk_shutdown();
    return 0;
}

/* ---------------------------------------------------------------- the read model */

static sk_status rm_apply(sk_tx *tx, const sk_message *m, int64_t version, bool is_live, void *ctx)
{
    char sql[256];
    const char *id = json_string_value(json_object_get(m->json, "id"));
    (void)is_live;
    (void)ctx;
    if (id == NULL) {
        return SK_FAIL(SK_EPROTO, "id: expected a string");
    }
    snprintf(sql, sizeof(sql),
             "INSERT INTO rm_v%lld (id, n_applied, version, stream, seq) VALUES (?, 1, ?, ?, ?)"
             " ON CONFLICT (id) DO UPDATE SET n_applied = rm_v%lld.n_applied + 1",
             (long long)version, (long long)version);
    const sk_db_value p[] = { SK_DB_TEXT_V(id), SK_DB_INT_V(version), SK_DB_TEXT_V(m->nats_subject),
                              SK_DB_INT_V((int64_t)m->stream_seq) };
    return sk_tx_exec(tx, sql, p, 4, NULL);
}

static sk_status rm_create(sk_tx *tx, int64_t version, void *ctx)
{
    char sql[256];
    (void)ctx;
    snprintf(sql, sizeof(sql),
             "CREATE TABLE rm_v%lld (id TEXT PRIMARY KEY, n_applied INTEGER NOT NULL,"
             " version INTEGER NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL)",
             (long long)version);
    return sk_tx_exec(tx, sql, NULL, 0, NULL);
}

static sk_status rm_activate(sk_tx *tx, int64_t version, void *ctx)
{
    char sql[128];
    (void)ctx;
    sk_status st = sk_tx_exec(tx, "DROP VIEW IF EXISTS items", NULL, 0, NULL);
    snprintf(sql, sizeof(sql), "CREATE VIEW items AS SELECT * FROM rm_v%lld", (long long)version);
    return st == SK_OK ? sk_tx_exec(tx, sql, NULL, 0, NULL) : st;
}

static sk_status rm_drop(sk_tx *tx, int64_t version, void *ctx)
{
    char sql[96];
    (void)ctx;
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS rm_v%lld", (long long)version);
    return sk_tx_exec(tx, sql, NULL, 0, NULL);
}

static sk_readmodel_config rm_config(int64_t poll_ms)
{
    sk_readmodel_config c = {
        .name = NAME,
        .streams = streams,
        .n_streams = 2,
        .apply = rm_apply,
        .create = rm_create,
        .activate = rm_activate,
        .drop = rm_drop,
        .poll_ms = poll_ms,
    };
    return c;
}

/* ---------------------------------------------------------------- events */

typedef struct emit {
    int first;
    int count;
} emit;

static sk_status emit_unit(sk_tx *tx, void *ctx)
{
    emit *e = ctx;
    for (int i = e->first; i < e->first + e->count; i++) {
        char id[32];
        sk_envelope env;
        snprintf(id, sizeof(id), "item-%06d", i);
        sk_envelope_init(&env, "ItemAdded", "test", id, NULL);
        json_t *data = json_pack("{s:s, s:i}", "id", id, "i", i);
        if (data == NULL) {
            return SK_FAIL(SK_ENOMEM, "json_pack");
        }
        sk_status st =
            sk_outbox_add(tx, i % 2 == 0 ? "a.events.ItemAdded" : "b.events.ItemAdded", &env, data);
        json_decref(data);
        if (st != SK_OK) {
            return st;
        }
    }
    return SK_OK;
}

static void emit_events(fixture *f, int first, int count)
{
    emit e = { first, count };
    assert_int_equal(sk_store_run(f->source, emit_unit, &e), SK_OK);
}

/* ---------------------------------------------------------------- reading */

/* One read snapshot: what queries see, and the live version recorded in the same snapshot. */
typedef struct snap {
    int64_t live;
    int64_t building;
    int64_t n_rows;
    int64_t min_version;
    int64_t max_version;
    int64_t max_applied;
    int64_t n_v1_tables;
} snap;

static sk_status snap_unit(sk_tx *tx, void *ctx)
{
    snap *s = ctx;
    const sk_db_value p[] = { SK_DB_TEXT_V(NAME) };
    sk_status st = sk_tx_query_int(tx, "SELECT live_version FROM sk_readmodels WHERE name = ?", p,
                                   1, &s->live);
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT building_version FROM sk_readmodels WHERE name = ?", p, 1,
                             &s->building);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT COUNT(*) FROM items", NULL, 0, &s->n_rows);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT COALESCE(MIN(version), 0) FROM items", NULL, 0,
                             &s->min_version);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT COALESCE(MAX(version), 0) FROM items", NULL, 0,
                             &s->max_version);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT COALESCE(MAX(n_applied), 0) FROM items", NULL, 0,
                             &s->max_applied);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'rm_v1'", NULL, 0,
                             &s->n_v1_tables);
    }
    return st;
}

static snap snapshot(fixture *f)
{
    snap s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(sk_store_read(f->view, snap_unit, &s), SK_OK);
    return s;
}

typedef struct wait_rows {
    fixture *f;
    int64_t n;
    int64_t live;
} wait_rows;

static bool has_rows(void *ctx)
{
    wait_rows *w = ctx;
    snap s = snapshot(w->f);
    return s.n_rows >= w->n && (w->live == 0 || (s.live == w->live && s.building == 0));
}

static void wait_for(fixture *f, int64_t n, int64_t live)
{
    wait_rows w = { f, n, live };
    assert_true(sk_test_wait_until(has_rows, &w, 20000));
}

static bool v1_dropped(void *ctx)
{
    return snapshot(ctx).n_v1_tables == 0;
}

/* ---------------------------------------------------------------- tests */

/* After a switch to version 2: its rows, version 1's checkpoints and inbox rows, the mark. */
typedef struct retire_state {
    int64_t n_v2_rows;
    int64_t n_v1_checkpoints;
    int64_t n_v1_inbox;
    int64_t retiring;
} retire_state;

static sk_status retire_state_unit(sk_tx *tx, void *ctx)
{
    retire_state *r = ctx;
    const sk_db_value p[] = { SK_DB_TEXT_V(NAME) };
    sk_status st = sk_tx_query_int(tx, "SELECT COUNT(*) FROM rm_v2", NULL, 0, &r->n_v2_rows);
    if (st == SK_OK) {
        st = sk_tx_query_int(tx,
                             "SELECT COUNT(*) FROM sk_checkpoints"
                             " WHERE projection IN ('" NAME ":A_EVENTS', '" NAME ":B_EVENTS')",
                             NULL, 0, &r->n_v1_checkpoints);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx,
                             "SELECT COUNT(*) FROM sk_inbox"
                             " WHERE consumer IN ('" NAME "-a_events', '" NAME "-b_events')",
                             NULL, 0, &r->n_v1_inbox);
    }
    if (st == SK_OK) {
        st = sk_tx_query_int(tx, "SELECT retiring_version FROM sk_readmodels WHERE name = ?", p, 1,
                             &r->retiring);
    }
    return st;
}

static retire_state retire_state_read(fixture *f)
{
    retire_state r = { 0 };
    assert_int_equal(sk_store_read(f->view, retire_state_unit, &r), SK_OK);
    return r;
}

/* Version 1's durable consumers are gone from the server. */
static bool v1_durables_deleted(void *ctx)
{
    /* A projection's durable: its name, then the stream in lower case. */
    static const char *const durables[2] = { NAME "-a_events", NAME "-b_events" };
    fixture *f = ctx;
    for (size_t i = 0; i < 2; i++) {
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetConsumerInfo(&ci, sk__bus_js(f->bus), streams[i].stream, durables[i],
                                          NULL, &jerr);
        jsConsumerInfo_Destroy(ci);
        if (s != NATS_NOT_FOUND) {
            return false;
        }
    }
    return true;
}

static void test_sk_readmodel_replay_rebuilds_and_switches_atomically(void **state)
{
    fixture *f = *state;
    sk_readmodel *rm = NULL;
    sk_readmodel_config cfg = rm_config(300);
    int64_t version = 0;

    assert_int_equal(sk_readmodel_start(&rm, f->bus, f->view, f->metrics, &cfg), SK_OK);
    assert_int_equal(sk_readmodel_live_version(rm), 1);
    assert_string_equal(sk_readmodel_name(rm), NAME);
    emit_events(f, 0, 300);
    wait_for(f, 300, 1);

    int64_t t0 = sk_time_mono_ms();
    assert_int_equal(sk_readmodel_replay(rm, &version), SK_OK);
    assert_int_equal(version, 2);
    SK_TEST_ASSERT_ERR(sk_readmodel_replay(rm, NULL), SK_ESTATE, "already running");

    /* Queries during the replay: answered from version 1, whole. */
    snap s = snapshot(f);
    assert_int_equal(s.live, 1);
    assert_int_equal(s.building, 2);
    assert_int_equal(s.min_version, 1);
    assert_int_equal(s.max_version, 1);
    assert_int_equal(s.n_rows, 300);

    /* Events arriving during the replay. */
    emit_events(f, 300, 100);
    sk_readmodel_progress p;
    assert_int_equal(sk_readmodel_status(rm, &p), SK_OK);
    assert_int_equal(p.building_version, 2);
    assert_true(p.applied_seq <= p.target_seq);
    json_t *doc = NULL;
    assert_int_equal(sk_readmodel_status_json(rm, &doc), SK_OK);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "replaying");
    json_decref(doc);

    /* Every snapshot until the switch is one whole version: the one recorded as live. */
    int64_t n_snaps = 0;
    for (;;) {
        s = snapshot(f);
        n_snaps++;
        assert_int_equal(s.min_version, s.live);
        assert_int_equal(s.max_version, s.live);
        assert_true(s.max_applied <= 1);
        if (s.live == 2) {
            break;
        }
        assert_true(sk_time_mono_ms() - t0 < 20000);
    }
    wait_for(f, 400, 2);
    s = snapshot(f);
    assert_int_equal(s.n_rows, 400);
    assert_int_equal(s.max_applied, 1);
    assert_int_equal(s.min_version, 2);
    assert_int_equal(sk_readmodel_live_version(rm), 2);
    assert_true(sk_test_wait_until(v1_dropped, f, 10000));
    assert_true(sk_test_wait_until(v1_durables_deleted, f, 10000));
    /* Dropped in the transaction that clears the record of what is left to retire. */
    assert_int_equal(retire_state_read(f).retiring, 0);
    assert_int_equal(retire_state_read(f).n_v1_inbox, 0);
    print_message("replay of 300+100 events switched after %lld ms (%lld snapshots checked)\n",
                  (long long)(sk_time_mono_ms() - t0), (long long)n_snaps);

    /* The new version is the live projection now: later events land once. */
    emit_events(f, 400, 50);
    wait_for(f, 450, 2);
    s = snapshot(f);
    assert_int_equal(s.n_rows, 450);
    assert_int_equal(s.max_applied, 1);
    assert_int_equal(sk_readmodel_status(rm, &p), SK_OK);
    assert_int_equal(p.live_version, 2);
    assert_int_equal(p.building_version, 0);
    assert_int_equal(p.n_switches, 1);
    assert_int_equal(p.applied_seq, p.target_seq);
    sk_readmodel_stop(rm);

    /* A restart continues on version 2 without applying anything again. */
    assert_int_equal(sk_readmodel_start(&rm, f->bus, f->view, f->metrics, &cfg), SK_OK);
    assert_int_equal(sk_readmodel_live_version(rm), 2);
    emit_events(f, 450, 10);
    wait_for(f, 460, 2);
    s = snapshot(f);
    assert_int_equal(s.n_rows, 460);
    assert_int_equal(s.max_applied, 1);
    sk_readmodel_stop(rm);
}

/* No replay is being built (the last one switched). */
static bool replay_done(void *ctx)
{
    sk_readmodel_progress p;
    return sk_readmodel_status(ctx, &p) == SK_OK && p.building_version == 0;
}

static void test_sk_readmodel_replay_resumes_after_restart(void **state)
{
    fixture *f = *state;
    sk_readmodel *rm = NULL;
    sk_readmodel_config slow = rm_config(60000); /* never checks before the stop */
    sk_readmodel_config fast = rm_config(50);

    assert_int_equal(sk_readmodel_start(&rm, f->bus, f->view, NULL, &slow), SK_OK);
    emit_events(f, 0, 100);
    wait_for(f, 100, 1);
    assert_int_equal(sk_readmodel_replay(rm, NULL), SK_OK);
    sk_readmodel_stop(rm);
    snap s = snapshot(f);
    assert_int_equal(s.live, 1);
    assert_int_equal(s.building, 2);

    rm = NULL;
    assert_int_equal(sk_readmodel_start(&rm, f->bus, f->view, NULL, &fast), SK_OK);
    sk_readmodel_progress p;
    assert_int_equal(sk_readmodel_status(rm, &p), SK_OK);
    assert_true(p.building_version == 2 || p.live_version == 2);
    emit_events(f, 100, 20);
    wait_for(f, 120, 2);
    s = snapshot(f);
    assert_int_equal(s.n_rows, 120);
    assert_int_equal(s.max_applied, 1);
    assert_int_equal(s.min_version, 2);

    /* And a second replay, once the resumed one has switched, builds version 3. */
    assert_true(sk_test_wait_until(replay_done, rm, 20000));
    int64_t version = 0;
    assert_int_equal(sk_readmodel_replay(rm, &version), SK_OK);
    assert_int_equal(version, 3);
    wait_for(f, 120, 3);
    s = snapshot(f);
    assert_int_equal(s.n_rows, 120);
    assert_int_equal(s.max_applied, 1);
    sk_readmodel_stop(rm);
}

static bool v2_caught_up(void *ctx)
{
    return retire_state_read(ctx).n_v2_rows == 50;
}

/* The switch to version 2, made as the read model makes it, by a holder that then ends. */
static sk_status switch_by_hand(sk_tx *tx, void *ctx)
{
    (void)ctx;
    sk_status st = rm_activate(tx, 2, NULL);
    if (st == SK_OK) {
        st = sk_tx_exec(tx,
                        "UPDATE sk_readmodels SET live_version = 2, building_version = 0,"
                        " started_ms = 0, retiring_version = 1 WHERE name = '" NAME "'",
                        NULL, 0, NULL);
    }
    return st;
}

/*
 * A holder that ends between a switch and the retirement of the old
 * version leaves version 1's tables, checkpoints and durable consumers
 * behind; the next holder's start retires them, and version 2 goes on.
 */
static void test_sk_readmodel_start_finishes_an_interrupted_retirement(void **state)
{
    fixture *f = *state;
    sk_readmodel *rm = NULL;
    sk_readmodel_config slow = rm_config(60000); /* never switches by itself */
    sk_readmodel_config fast = rm_config(50);

    assert_int_equal(sk_readmodel_start(&rm, f->bus, f->view, NULL, &slow), SK_OK);
    emit_events(f, 0, 50);
    wait_for(f, 50, 1);
    assert_int_equal(sk_readmodel_replay(rm, NULL), SK_OK);
    assert_true(sk_test_wait_until(v2_caught_up, f, 20000));
    sk_readmodel_stop(rm);
    assert_int_equal(sk_store_run(f->view, switch_by_hand, NULL), SK_OK);
    snap s = snapshot(f);
    assert_int_equal(s.live, 2);
    assert_int_equal(s.n_v1_tables, 1);
    assert_false(v1_durables_deleted(f));
    retire_state before = retire_state_read(f);
    assert_int_equal(before.n_v1_checkpoints, 2);
    assert_int_equal(before.n_v1_inbox, 50);
    assert_int_equal(before.retiring, 1);

    rm = NULL;
    assert_int_equal(sk_readmodel_start(&rm, f->bus, f->view, NULL, &fast), SK_OK);
    s = snapshot(f);
    assert_int_equal(s.n_v1_tables, 0);
    assert_true(v1_durables_deleted(f));
    retire_state r = retire_state_read(f);
    assert_int_equal(r.n_v1_checkpoints, 0);
    assert_int_equal(r.n_v1_inbox, 0);
    assert_int_equal(r.retiring, 0);
    emit_events(f, 50, 10);
    wait_for(f, 60, 2);
    s = snapshot(f);
    assert_int_equal(s.n_rows, 60);
    assert_int_equal(s.max_applied, 1);
    assert_int_equal(s.min_version, 2);
    sk_readmodel_stop(rm);
}

static bool is_projecting(void *ctx)
{
    sk_readmodel_progress p;
    return sk_readmodel_status(ctx, &p) == SK_OK && p.is_projecting;
}

/*
 * Two processes' worth of read models on one database file (two stores, as
 * two instances open it): one projects, the other stands by, serves the
 * same state and refuses replays; when the first stops, the second takes
 * over where it left off, applying nothing twice.
 */
static void test_sk_readmodel_shared_database_projects_once_and_fails_over(void **state)
{
    fixture *f = *state;
    sk_readmodel *first = NULL, *second = NULL;
    sk_readmodel_config cfg = rm_config(50);
    sk_store *other = NULL;
    sk_readmodel_progress p1, p2;

    view_open(f, &other);

    assert_int_equal(sk_readmodel_start(&first, f->bus, f->view, NULL, &cfg), SK_OK);
    assert_int_equal(sk_readmodel_start(&second, f->bus, other, NULL, &cfg), SK_OK);
    assert_true(is_projecting(first));
    assert_false(is_projecting(second));
    SK_TEST_ASSERT_ERR(sk_readmodel_replay(second, NULL), SK_ESTATE,
                       "not projected by this instance");

    emit_events(f, 0, 100);
    wait_for(f, 100, 1);
    snap s = snapshot(f);
    assert_int_equal(s.n_rows, 100);
    assert_int_equal(s.max_applied, 1);
    /* The standby reports the shared state, not its own. */
    assert_int_equal(sk_readmodel_status(first, &p1), SK_OK);
    assert_int_equal(sk_readmodel_status(second, &p2), SK_OK);
    assert_int_equal(p2.live_version, 1);
    assert_int_equal(p2.applied_seq, 100);
    assert_int_equal(p1.applied_seq, p2.applied_seq);

    sk_readmodel_stop(first);
    assert_true(sk_test_wait_until(is_projecting, second, 10000));
    emit_events(f, 100, 20);
    wait_for(f, 120, 1);
    s = snapshot(f);
    assert_int_equal(s.n_rows, 120);
    assert_int_equal(s.max_applied, 1);

    /* The new holder replays. */
    int64_t version = 0;
    assert_int_equal(sk_readmodel_replay(second, &version), SK_OK);
    assert_int_equal(version, 2);
    wait_for(f, 120, 2);
    assert_int_equal(snapshot(f).max_applied, 1);
    sk_readmodel_stop(second);
    sk_store_close(other);
}

static void test_sk_readmodel_start_invalid(void **state)
{
    fixture *f = *state;
    sk_readmodel *rm = NULL;
    sk_readmodel_config cfg = rm_config(0);

    SK_TEST_ASSERT_ERR(sk_readmodel_start(NULL, f->bus, f->view, NULL, &cfg), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, NULL, f->view, NULL, &cfg), SK_EINVAL,
                       "must not be NULL");
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, NULL, NULL, &cfg), SK_EINVAL,
                       "must not be NULL");
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, f->view, NULL, NULL), SK_EINVAL,
                       "must not be NULL");
    cfg.name = "bad name";
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, f->view, NULL, &cfg), SK_EINVAL, "cfg.name");
    cfg.name = "a123456789a123456789a123456789a123456789a123456789"; /* 50 bytes */
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, f->view, NULL, &cfg), SK_EINVAL, "cfg.name");
    cfg.name = NAME "-v2"; /* version 2's projections of NAME */
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, f->view, NULL, &cfg), SK_EINVAL,
                       "must not end in -v<digits>");
    cfg = rm_config(0);
    cfg.n_streams = 0;
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, f->view, NULL, &cfg), SK_EINVAL,
                       "cfg.n_streams");
    cfg.n_streams = SK_READMODEL_MAX_STREAMS + 1;
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, f->view, NULL, &cfg), SK_EINVAL,
                       "cfg.n_streams");
    sk_readmodel_stream twice[2] = { { "A_EVENTS", "a.events.>" }, { "A_EVENTS", "a.events.>" } };
    cfg = rm_config(0);
    cfg.streams = twice;
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, f->view, NULL, &cfg), SK_EINVAL,
                       "listed twice");
    sk_readmodel_stream bad[1] = { { "A_EVENTS", "" } };
    cfg.streams = bad;
    cfg.n_streams = 1;
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, f->view, NULL, &cfg), SK_EINVAL,
                       "cfg.streams[0]");
    cfg = rm_config(0);
    cfg.drop = NULL;
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, f->view, NULL, &cfg), SK_EINVAL, "cfg.drop");
    cfg = rm_config(-1);
    SK_TEST_ASSERT_ERR(sk_readmodel_start(&rm, f->bus, f->view, NULL, &cfg), SK_EINVAL,
                       "cfg.poll_ms");
    assert_null(rm);

    sk_readmodel_progress p;
    json_t *doc = NULL;
    SK_TEST_ASSERT_ERR(sk_readmodel_replay(NULL, NULL), SK_EINVAL, "rm");
    SK_TEST_ASSERT_ERR(sk_readmodel_status(NULL, &p), SK_EINVAL, "rm");
    SK_TEST_ASSERT_ERR(sk_readmodel_status(rm, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_readmodel_status_json(NULL, &doc), SK_EINVAL, "rm");
    SK_TEST_ASSERT_ERR(sk_readmodel_status_json(NULL, NULL), SK_EINVAL, "out");
    assert_int_equal(sk_readmodel_live_version(NULL), 0);
    assert_string_equal(sk_readmodel_name(NULL), "");
    sk_readmodel_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sk_readmodel_replay_rebuilds_and_switches_atomically,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_readmodel_replay_resumes_after_restart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_sk_readmodel_shared_database_projects_once_and_fails_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_readmodel_start_finishes_an_interrupted_retirement,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_readmodel_start_invalid, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
