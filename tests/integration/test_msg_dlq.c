/* SPDX-License-Identifier: MIT */
/*
 * Integration: dead letters, per-aggregate ordering and upcasting against
 * a real nats-server and SQLite files. A failing message parks the later
 * messages of its aggregate (in order, durably: across a restart too) while
 * other aggregates flow; the dead letter shows in sk_dlq_list_load; a
 * redrive goes through the same path (and upcasting) as live messages and
 * releases the parked ones in order; unknown types, missing upcasters and
 * versions newer than the consumer knows are dead letters with a reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"
#include "sk_test_nats.h"

#define STREAM  "SHOP_EVENTS"
#define DURABLE "shopview"
#define WAIT_MS 15000

static const sk_migration test_migration = {
    "test", 1,
    "CREATE TABLE handled (seq INTEGER PRIMARY KEY AUTOINCREMENT, agg TEXT NOT NULL,"
    " n INTEGER NOT NULL, type TEXT NOT NULL, version INTEGER NOT NULL, name TEXT)"
};

typedef struct fixture {
    sk_test_nats *nats;
    sk_bus *bus;
    sk_store *store;
    sk_relay *relay;
    sk_consumer *consumer;
    char dir[64];
    _Atomic bool is_poisoned; /* type Poison fails while set */
    _Atomic int poison_calls;
} fixture;

static void store_open(fixture *f)
{
    sk_migration mig[8];
    size_t n_mig = 0;
    const sk_migration *msg_mig = sk_msg_migrations(&n_mig);
    char url[128];

    memcpy(mig, msg_mig, n_mig * sizeof(*mig));
    mig[n_mig++] = test_migration;
    snprintf(url, sizeof(url), "sqlite:%s/db.sqlite", f->dir);
    sk_store_config cfg = { .url = url, .migrations = mig, .n_migrations = n_mig };
    assert_int_equal(sk_store_open(&f->store, &cfg), SK_OK);
    assert_int_equal(sk_relay_start(&f->relay, f->store, f->bus, NULL), SK_OK);
}

static void store_close(fixture *f)
{
    sk_relay_stop(f->relay);
    f->relay = NULL;
    sk_store_close(f->store);
    f->store = NULL;
}

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    const char *subjects[] = { "shop.events.>" };
    sk_stream_config sc = { .name = STREAM, .subjects = subjects, .n_subjects = 1 };

    assert_non_null(f);
    assert_int_equal(sk_test_nats_start(&f->nats, NULL), SK_OK);
    sk_bus_config bc = { .servers = sk_test_nats_url(f->nats), .name = "test-dlq" };
    assert_int_equal(sk_bus_open(&f->bus, &bc), SK_OK);
    assert_int_equal(sk_bus_stream_ensure(f->bus, &sc), SK_OK);
    assert_int_equal(sk_test_tmpdir(f->dir, sizeof(f->dir)), SK_OK);
    store_open(f);
    atomic_store(&f->is_poisoned, true);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_consumer_stop(f->consumer);
    store_close(f);
    sk_bus_close(f->bus);
    sk_test_nats_stop(f->nats);
    sk_test_rmrf(f->dir);
    sk_free(f);
    return 0;
}

/* ---------------------------------------------------------------- publishing and handling */

/* Publish an event of @p type for aggregate @p agg with data {"n": n} plus @p extra fields. */
static void
publish_v(fixture *f, const char *type, const char *agg, int n, int version, const char *extra)
{
    sk_envelope env;
    natsMsg *m = NULL;
    char data[256];

    sk_envelope_init(&env, type, "test", agg, NULL);
    env.schema_version = version;
    snprintf(data, sizeof(data), "{\"n\":%d%s%s}", n, extra != NULL ? "," : "",
             extra != NULL ? extra : "");
    assert_int_equal(natsMsg_Create(&m, "shop.events.Test", NULL, data, (int)strlen(data)),
                     NATS_OK);
    assert_int_equal(sk__envelope_encode(&env, m), SK_OK);
    assert_int_equal(js_PublishMsg(NULL, sk__bus_js(f->bus), m, NULL, NULL), NATS_OK);
    natsMsg_Destroy(m);
}

static void publish(fixture *f, const char *type, const char *agg, int n)
{
    publish_v(f, type, agg, n, 1, NULL);
}

static sk_status handler(sk_tx *tx, const sk_message *m, void *ctx)
{
    fixture *f = ctx;
    const char *name = json_string_value(json_object_get(m->json, "name"));
    sk_db_value p[5] = { SK_DB_TEXT_V(m->env.subject),
                         SK_DB_INT_V(json_integer_value(json_object_get(m->json, "n"))),
                         SK_DB_TEXT_V(m->env.type), SK_DB_INT_V(m->env.schema_version),
                         name != NULL ? SK_DB_TEXT_V(name) : SK_DB_NULL_V };

    if (strcmp(m->env.type, "Poison") == 0 && atomic_load(&f->is_poisoned)) {
        atomic_fetch_add(&f->poison_calls, 1);
        return SK_FAIL(SK_EUNAVAILABLE, "poisoned: downstream refuses message %s", m->env.id);
    }
    if (strcmp(m->env.type, "Flaky") == 0 && m->n_delivered < 3) {
        return SK_FAIL(SK_EUNAVAILABLE, "flaky: attempt %llu", (unsigned long long)m->n_delivered);
    }
    if (strcmp(m->env.type, "Named") == 0 && name == NULL) {
        /* The current version of Named has a "name"; version 1 had "title". */
        return SK_FAIL(SK_EPROTO, "Named: field name missing");
    }
    if (strcmp(m->env.type, "Poison") != 0 && strcmp(m->env.type, "Flaky") != 0 &&
        strcmp(m->env.type, "Ok") != 0 && strcmp(m->env.type, "Named") != 0) {
        /* How a handler reports a type it does not know: never retried. */
        return SK_FAIL(SK_EPROTO, "unknown message type %s", m->env.type);
    }
    return sk_tx_exec(
        tx, "INSERT INTO handled (agg, n, type, version, name) VALUES (?, ?, ?, ?, ?)", p, 5, NULL);
}

static void start_with(fixture *f, const sk_upcasters *u, sk_consumer_order order)
{
    sk_consumer_config cfg = {
        .stream = STREAM,
        .durable = DURABLE,
        .filter_subject = "shop.events.>",
        .max_deliver = 3,
        .ack_wait_ms = 5000,
        .batch = 16,
        .handler = handler,
        .ctx = f,
        .upcasters = u,
        .order = order,
    };
    assert_null(f->consumer);
    assert_int_equal(sk_consumer_start(&f->consumer, f->bus, f->store, NULL, &cfg), SK_OK);
}

static void start(fixture *f)
{
    start_with(f, NULL, SK_CONSUMER_ORDER_AGGREGATE);
}

static void stop(fixture *f)
{
    sk_consumer_stop(f->consumer);
    f->consumer = NULL;
}

/* ---------------------------------------------------------------- queries */

typedef struct q {
    fixture *f;
    const char *sql;
    int64_t want;
    int64_t got;
} q;

static sk_status q_run(sk_tx *tx, void *ctx)
{
    q *x = ctx;
    return sk_tx_query_int(tx, x->sql, NULL, 0, &x->got);
}

static int64_t query(fixture *f, const char *sql)
{
    q x = { .f = f, .sql = sql };
    assert_int_equal(sk_store_read(f->store, q_run, &x), SK_OK);
    return x.got;
}

static bool q_reached(void *ctx)
{
    q *x = ctx;
    return sk_store_read(x->f->store, q_run, x) == SK_OK && x->got >= x->want;
}

static void wait_query(fixture *f, const char *sql, int64_t want)
{
    q x = { .f = f, .sql = sql, .want = want };
    if (!sk_test_wait_until(q_reached, &x, WAIT_MS)) {
        fail_msg("%s: got %lld, want %lld", sql, (long long)x.got, (long long)want);
    }
}

/* The order in which aggregate @p agg's messages were handled, as "1,2,3". */
typedef struct order_ctx {
    const char *agg;
    char out[256];
} order_ctx;

static sk_status order_read(sk_tx *tx, void *ctx)
{
    order_ctx *o = ctx;
    sk_db_value p[1] = { SK_DB_TEXT_V(o->agg) };
    sk_rows *rows = NULL;
    sk_status st = sk_tx_query(tx, "SELECT n FROM handled WHERE agg = ? ORDER BY seq", p, 1, &rows);
    size_t len = 0;

    o->out[0] = '\0';
    while (st == SK_OK && (st = sk_rows_next(rows)) == SK_OK) {
        len += (size_t)snprintf(o->out + len, sizeof(o->out) - len, "%s%lld", len > 0 ? "," : "",
                                (long long)sk_rows_int(rows, 0));
    }
    sk_rows_close(rows);
    return st == SK_ENOTFOUND ? SK_OK : st;
}

static void assert_order(fixture *f, const char *agg, const char *want)
{
    order_ctx o = { .agg = agg };
    assert_int_equal(sk_store_read(f->store, order_read, &o), SK_OK);
    assert_string_equal(o.out, want);
}

/* Wait until the dead-letter stream lists @p n dead letters; returns the list (owned). */
typedef struct dlq_wait {
    fixture *f;
    size_t n;
    int n_resolved;
    sk_dlq_list *list;
} dlq_wait;

static bool dlq_reached(void *ctx)
{
    dlq_wait *w = ctx;
    int resolved = 0;
    sk_dlq_list_destroy(w->list);
    w->list = NULL;
    if (sk_dlq_list_load(w->f->bus, &w->list) != SK_OK) {
        return false;
    }
    for (size_t i = 0; i < sk_dlq_list_count(w->list); i++) {
        resolved += sk_dlq_list_at(w->list, i)->state == SK_DEAD_LETTER_RESOLVED;
    }
    return sk_dlq_list_count(w->list) == w->n && resolved >= w->n_resolved;
}

static sk_dlq_list *wait_dlq(fixture *f, size_t n, int n_resolved)
{
    dlq_wait w = { .f = f, .n = n, .n_resolved = n_resolved };
    if (!sk_test_wait_until(dlq_reached, &w, WAIT_MS)) {
        fail_msg("dead-letter stream: %zu entries, want %zu (%d resolved)",
                 sk_dlq_list_count(w.list), n, n_resolved);
    }
    return w.list;
}

/* ---------------------------------------------------------------- tests */

/* A message retried with backoff holds back its aggregate only; order is kept. */
static void test_dlq_retry_parks_aggregate_in_order(void **state)
{
    fixture *f = *state;

    publish(f, "Flaky", "x", 1);
    publish(f, "Ok", "x", 2);
    publish(f, "Ok", "y", 1);
    publish(f, "Ok", "x", 3);
    publish(f, "Ok", "y", 2);
    start(f);
    /* y is not held up by x's retries. */
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'y'", 2);
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'x'", 3);
    assert_order(f, "x", "1,2,3");
    assert_order(f, "y", "1,2");
    wait_query(f, "SELECT COUNT(*) = 0 FROM sk_msg_blocked", 1);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_msg_parked"), 0);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_dead_letters"), 0);
    /* Later messages of x flow again. */
    publish(f, "Ok", "x", 4);
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'x'", 4);
    assert_order(f, "x", "1,2,3,4");
}

/*
 * A message failing for good becomes a dead letter after max_deliver
 * attempts; the later messages of its aggregate stay parked behind it, also
 * across a restart; a redrive handles it and then releases them in order.
 */
static void test_dlq_dead_letter_parks_then_redrive_releases(void **state)
{
    fixture *f = *state;
    sk_dlq_list *list = NULL;
    const sk_dead_letter *d;
    char id[SK_UUID_LEN];

    publish(f, "Ok", "x", 1);
    publish(f, "Poison", "x", 2);
    publish(f, "Ok", "x", 3);
    publish(f, "Ok", "y", 1);
    publish(f, "Ok", "x", 4);
    start(f);
    wait_query(f, "SELECT COUNT(*) FROM sk_dead_letters", 1);
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'y'", 1);
    list = wait_dlq(f, 1, 0);
    d = sk_dlq_list_at(list, 0);
    assert_non_null(d);
    assert_int_equal(d->state, SK_DEAD_LETTER_OPEN);
    assert_string_equal(d->consumer, DURABLE);
    assert_string_equal(d->nats_subject, "shop.events.Test");
    assert_string_equal(d->type, "Poison");
    assert_string_equal(d->aggregate, "x");
    assert_int_equal(d->deliveries, 3);
    assert_int_equal(d->schema_version, 1);
    assert_true(d->time_ms > 0);
    assert_non_null(strstr(d->error, "poisoned: downstream refuses message"));
    assert_ptr_equal(sk_dlq_list_find(list, d->id), d);
    snprintf(id, sizeof(id), "%s", d->id);
    {
        json_t *j = sk_dead_letter_json(d);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "state")), "open");
        assert_string_equal(json_string_value(json_object_get(j, "aggregate")), "x");
        json_decref(j);
    }
    sk_dlq_list_destroy(list);
    assert_int_equal(atomic_load(&f->poison_calls), 3);
    assert_order(f, "x", "1");
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_msg_parked WHERE aggregate = 'x'"), 2);

    /* A restart keeps x parked: a new message of x waits too. */
    stop(f);
    start(f);
    publish(f, "Ok", "x", 5);
    publish(f, "Ok", "y", 2);
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'y'", 2);
    wait_query(f, "SELECT COUNT(*) FROM sk_msg_parked WHERE aggregate = 'x'", 3);
    assert_order(f, "x", "1");

    /* Fixed downstream, redrive: 2 first, then 3, 4, 5 in order. */
    atomic_store(&f->is_poisoned, false);
    list = wait_dlq(f, 1, 0);
    assert_int_equal(sk_dlq_redrive(f->bus, list, id), SK_OK);
    sk_dlq_list_destroy(list);
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'x'", 5);
    assert_order(f, "x", "1,2,3,4,5");
    wait_query(f, "SELECT COUNT(*) = 0 FROM sk_msg_blocked", 1);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_msg_parked"), 0);
    list = wait_dlq(f, 1, 1);
    assert_int_equal(sk_dlq_list_find(list, id)->state, SK_DEAD_LETTER_RESOLVED);
    /* A second redrive is refused; an unknown id is not found. */
    SK_TEST_ASSERT_ERR(sk_dlq_redrive(f->bus, list, id), SK_ESTATE, "handled already");
    SK_TEST_ASSERT_ERR(sk_dlq_redrive(f->bus, list, "0190a0a0-0000-7000-8000-000000000000"),
                       SK_ENOTFOUND, "no dead letter");
    SK_TEST_ASSERT_ERR(sk_dlq_redrive(NULL, list, id), SK_EINVAL, "must not be NULL");
    sk_dlq_list_destroy(list);
    /* x flows again. */
    publish(f, "Ok", "x", 6);
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'x'", 6);
    assert_order(f, "x", "1,2,3,4,5,6");
}

/* A redrive that fails again becomes a new dead letter that supersedes the old one. */
static void test_dlq_redrive_failing_again_supersedes(void **state)
{
    fixture *f = *state;
    sk_dlq_list *list = NULL;
    char id[SK_UUID_LEN];
    const sk_dead_letter *newer = NULL;

    publish(f, "Poison", "x", 1);
    publish(f, "Ok", "x", 2);
    start(f);
    list = wait_dlq(f, 1, 0);
    snprintf(id, sizeof(id), "%s", sk_dlq_list_at(list, 0)->id);
    assert_int_equal(sk_dlq_redrive(f->bus, list, id), SK_OK);
    /* The same redrive again within the duplicate window is dropped by JetStream. */
    assert_int_equal(sk_dlq_redrive(f->bus, list, id), SK_OK);
    sk_dlq_list_destroy(list);
    list = wait_dlq(f, 2, 0);
    assert_int_equal(sk_dlq_list_find(list, id)->state, SK_DEAD_LETTER_SUPERSEDED);
    for (size_t i = 0; i < sk_dlq_list_count(list); i++) {
        if (strcmp(sk_dlq_list_at(list, i)->id, id) != 0) {
            newer = sk_dlq_list_at(list, i);
        }
    }
    assert_non_null(newer);
    assert_string_equal(newer->redrive_of, id);
    assert_int_equal(newer->state, SK_DEAD_LETTER_OPEN);
    assert_string_equal(sk_dlq_list_find(list, id)->replaced_by, newer->id);
    SK_TEST_ASSERT_ERR(sk_dlq_redrive(f->bus, list, id), SK_ESTATE, "redrive");
    assert_int_equal(atomic_load(&f->poison_calls), 6);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM handled"), 0);
    /* Still parked behind the newer one; redriving that one releases it. */
    atomic_store(&f->is_poisoned, false);
    assert_int_equal(sk_dlq_redrive(f->bus, list, newer->id), SK_OK);
    sk_dlq_list_destroy(list);
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'x'", 2);
    assert_order(f, "x", "1,2");
}

/* An unknown type (the handler's SK_EPROTO) is dead at once, with the reason, and parks its
 * aggregate. */
static void test_dlq_unknown_type_dead_at_once(void **state)
{
    fixture *f = *state;

    publish(f, "Mystery", "x", 1);
    publish(f, "Ok", "x", 2);
    publish(f, "Ok", "y", 1);
    start(f);
    wait_query(f, "SELECT COUNT(*) FROM sk_dead_letters", 1);
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'y'", 1);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_dead_letters WHERE deliveries = 1 AND "
                              "error LIKE '%unknown message type Mystery%'"),
                     1);
    wait_query(f, "SELECT COUNT(*) FROM sk_msg_parked WHERE aggregate = 'x'", 1);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'x'"), 0);
}

/* SK_CONSUMER_ORDER_NONE: a dead message parks nothing behind it. */
static void test_dlq_order_none_parks_nothing(void **state)
{
    fixture *f = *state;

    publish(f, "Poison", "x", 1);
    publish(f, "Ok", "x", 2);
    start_with(f, NULL, SK_CONSUMER_ORDER_NONE);
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'x'", 1);
    wait_query(f, "SELECT COUNT(*) FROM sk_dead_letters", 1);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_msg_parked"), 0);
    assert_int_equal(atomic_load(&f->poison_calls), 3);
}

/* ---------------------------------------------------------------- upcasting */

/* Named v1 {"title"} -> v2 {"name"}. */
static sk_status named_v1_to_v2(json_t *data, const sk_envelope *env, void *ctx)
{
    json_t *title = json_object_get(data, "title");
    (void)ctx;
    if (!json_is_string(title)) {
        return SK_FAIL(SK_EPROTO, "%s v1: field title missing", env->type);
    }
    if (json_object_set(data, "name", title) != 0 || json_object_del(data, "title") != 0) {
        return SK_FAIL(SK_ENOMEM, "upcasting");
    }
    return SK_OK;
}

/* Named v2 -> v3: name upper-cased marker, to check the chain runs in order. */
static sk_status named_v2_to_v3(json_t *data, const sk_envelope *env, void *ctx)
{
    const char *name = json_string_value(json_object_get(data, "name"));
    char buf[128];
    (void)env;
    (void)ctx;
    if (name == NULL) {
        return SK_FAIL(SK_EPROTO, "v2: field name missing");
    }
    snprintf(buf, sizeof(buf), "%s!", name);
    return json_object_set_new(data, "name", json_string(buf)) == 0
               ? SK_OK
               : SK_FAIL(SK_ENOMEM, "upcasting");
}

/* Old versions are upcast before the handler; newer ones and gaps are dead letters. */
static void test_dlq_upcast_on_consumption(void **state)
{
    fixture *f = *state;
    sk_upcasters *u = NULL;

    assert_int_equal(sk_upcasters_create(&u), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Named", 1, named_v1_to_v2, NULL), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Named", 2, named_v2_to_v3, NULL), SK_OK);
    /* Ok is at version 3, but there is no way from 1 to 3. */
    assert_int_equal(sk_upcasters_version_set(u, "Ok", 3), SK_OK);
    publish_v(f, "Named", "a", 1, 1, "\"title\":\"one\"");
    publish_v(f, "Named", "b", 2, 2, "\"name\":\"two\"");
    publish_v(f, "Named", "c", 3, 3, "\"name\":\"three\"");
    publish_v(f, "Named", "d", 4, 4, "\"name\":\"four\"");
    publish_v(f, "Ok", "e", 5, 1, NULL);
    publish_v(f, "Ok", "g", 6, 3, NULL);
    start_with(f, u, SK_CONSUMER_ORDER_AGGREGATE);
    wait_query(f, "SELECT COUNT(*) FROM handled", 4);
    wait_query(f, "SELECT COUNT(*) FROM sk_dead_letters", 2);
    /* The handler saw every Named at version 3. */
    assert_int_equal(query(f, "SELECT COUNT(*) FROM handled WHERE type = 'Named' AND version = 3 "
                              "AND ((agg = 'a' AND name = 'one!') OR (agg = 'b' AND name = 'two!') "
                              "OR (agg = 'c' AND name = 'three'))"),
                     3);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'g' AND version = 3"), 1);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_dead_letters WHERE deliveries = 1 AND error "
                              "LIKE '%schema version 4 of Named is newer than this consumer knows "
                              "(3)%'"),
                     1);
    assert_int_equal(query(f, "SELECT COUNT(*) FROM sk_dead_letters WHERE error LIKE '%no "
                              "upcaster for Ok from schema version 1 (current 3)%'"),
                     1);
    stop(f);
    sk_upcasters_destroy(u);
}

/* A v1 message dead-lettered by a consumer that did not know v1 is upcast when redriven. */
static void test_dlq_upcast_on_redrive(void **state)
{
    fixture *f = *state;
    sk_upcasters *u = NULL;
    sk_dlq_list *list = NULL;
    char id[SK_UUID_LEN];

    publish_v(f, "Named", "a", 1, 1, "\"title\":\"old\"");
    publish_v(f, "Named", "a", 2, 2, "\"name\":\"new\"");
    start(f); /* no upcasters: the handler refuses v1's shape */
    list = wait_dlq(f, 1, 0);
    assert_non_null(strstr(sk_dlq_list_at(list, 0)->error, "field name missing"));
    snprintf(id, sizeof(id), "%s", sk_dlq_list_at(list, 0)->id);
    stop(f);

    /* Deploy: the consumer now has the v1 -> v2 upcaster. */
    assert_int_equal(sk_upcasters_create(&u), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Named", 1, named_v1_to_v2, NULL), SK_OK);
    start_with(f, u, SK_CONSUMER_ORDER_AGGREGATE);
    assert_int_equal(sk_dlq_redrive(f->bus, list, id), SK_OK);
    sk_dlq_list_destroy(list);
    wait_query(f, "SELECT COUNT(*) FROM handled WHERE agg = 'a'", 2);
    assert_order(f, "a", "1,2");
    assert_int_equal(query(f, "SELECT COUNT(*) FROM handled WHERE version = 2 AND "
                              "name IN ('old', 'new')"),
                     2);
    list = wait_dlq(f, 1, 1);
    sk_dlq_list_destroy(list);
    stop(f);
    sk_upcasters_destroy(u);
}

/* Listing with no dead-letter stream at all gives an empty list. */
static void test_dlq_list_empty(void **state)
{
    fixture *f = *state;
    sk_dlq_list *list = NULL;

    SK_IGNORE(js_DeleteStream(sk__bus_js(f->bus), SK_DLQ_STREAM, NULL, NULL)); /* may not exist */
    assert_int_equal(sk_dlq_list_load(f->bus, &list), SK_OK);
    assert_int_equal(sk_dlq_list_count(list), 0);
    assert_null(sk_dlq_list_at(list, 0));
    assert_null(sk_dlq_list_find(list, "x"));
    sk_dlq_list_destroy(list);
    SK_TEST_ASSERT_ERR(sk_dlq_list_load(f->bus, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_dlq_list_load(NULL, &list), SK_EINVAL, "bus");
    assert_null(list);
    assert_int_equal(sk_dlq_list_count(NULL), 0);
    assert_null(sk_dead_letter_json(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dlq_retry_parks_aggregate_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlq_dead_letter_parks_then_redrive_releases, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dlq_redrive_failing_again_supersedes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlq_unknown_type_dead_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlq_order_none_parks_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlq_upcast_on_consumption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlq_upcast_on_redrive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlq_list_empty, setup, teardown),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_CloseAndWait(5000);
    sk_shutdown();
    return rc;
}
