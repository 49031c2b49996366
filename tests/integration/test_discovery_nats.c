/* SPDX-License-Identifier: MIT */
/*
 * Integration: discovery over a real nats-server with a short TTL. Three
 * registries on three connections play three processes: two register
 * instances, the third watches. Covers fields seen by the watcher, readiness
 * changes, removal at once on close, expiry of an instance that stops
 * heartbeating without deregistering, and its return when re-registered.
 * Every wait polls with a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "discovery/discovery_int.h"
#include "sk_test.h"
#include "sk_test_nats.h"

#define TTL_MS  600
#define WAIT_MS 5000

typedef struct fixture {
    sk_test_nats *nats;
    sk_bus *bus[3];
} fixture;

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(sk_test_nats_start(&f->nats, NULL), SK_OK);
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "test-discovery-%d", i);
        sk_bus_config bc = { .servers = sk_test_nats_url(f->nats), .name = name };
        assert_int_equal(sk_bus_open(&f->bus[i], &bc), SK_OK);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    for (int i = 0; i < 3; i++) {
        sk_bus_close(f->bus[i]);
    }
    sk_test_nats_stop(f->nats);
    sk_free(f);
    return 0;
}

/* ---------------------------------------------------------------- watch recorder */

#define MAX_SEEN 8

/* The latest list a watch callback received, deep-copied. */
typedef struct view {
    pthread_mutex_t mu;
    size_t n_calls;
    size_t n;
    sk_instance items[MAX_SEEN]; /* owned strings */
} view;

static void view_init(view *v)
{
    memset(v, 0, sizeof(*v));
    pthread_mutex_init(&v->mu, NULL);
}

static void view_fini(view *v)
{
    for (size_t i = 0; i < v->n; i++) {
        sk__instance_fini(&v->items[i]);
    }
    pthread_mutex_destroy(&v->mu);
}

static void on_watch(const char *service, const sk_instance *instances, size_t n, void *ctx)
{
    view *v = ctx;

    (void)service;
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->n; i++) {
        sk__instance_fini(&v->items[i]);
    }
    v->n = 0;
    for (size_t i = 0; i < n && i < MAX_SEEN; i++) {
        if (sk__instance_copy(&v->items[v->n], &instances[i]) == SK_OK) {
            v->n++;
        }
    }
    v->n_calls++;
    pthread_mutex_unlock(&v->mu);
}

/* What the view must look like: instance names in order, with their readiness. */
typedef struct expect {
    view *v;
    size_t n;
    const char *names[MAX_SEEN];
    bool ready[MAX_SEEN];
} expect;

static bool view_matches(void *ctx)
{
    expect *e = ctx;
    bool ok;

    pthread_mutex_lock(&e->v->mu);
    ok = e->v->n_calls > 0 && e->v->n == e->n;
    for (size_t i = 0; ok && i < e->n; i++) {
        ok = strcmp(e->v->items[i].instance, e->names[i]) == 0 &&
             e->v->items[i].is_ready == e->ready[i];
    }
    pthread_mutex_unlock(&e->v->mu);
    return ok;
}

typedef struct calls_at {
    view *v;
    size_t n_calls;
} calls_at;

static bool calls_changed(void *ctx)
{
    calls_at *c = ctx;

    pthread_mutex_lock(&c->v->mu);
    bool changed = c->v->n_calls != c->n_calls;
    pthread_mutex_unlock(&c->v->mu);
    return changed;
}

static sk_registry *open_registry(sk_bus *bus)
{
    sk_registry *r = NULL;

    assert_int_equal(sk_registry_open(&r, bus, TTL_MS), SK_OK);
    return r;
}

/* Wait until the instance list of @p r (sk_registry_list) has @p n entries of @p service. */
typedef struct list_wait {
    sk_registry *r;
    const char *service;
    size_t n;
} list_wait;

static bool list_has(void *ctx)
{
    list_wait *w = ctx;
    sk_instance *list = NULL;
    size_t n = 0, count = 0;

    assert_int_equal(sk_registry_list(w->r, &list, &n), SK_OK);
    for (size_t i = 0; i < n; i++) {
        count += strcmp(list[i].service, w->service) == 0;
    }
    sk_registry_list_free(list, n);
    return count == w->n;
}

/* ---------------------------------------------------------------- tests */

static void test_discovery_watch_register_ready_close(void **state)
{
    fixture *f = *state;
    sk_registry *a = open_registry(f->bus[0]);
    sk_registry *b = open_registry(f->bus[1]);
    sk_registry *c = open_registry(f->bus[2]);
    sk_instance ia = { "order", "order-1", "127.0.0.1:41001", false, 0, 0 };
    sk_instance ib = { "order", "order-2", "127.0.0.1:41002", true, 4242, 0 };
    view v;

    view_init(&v);
    int64_t t0 = sk_time_now_ms();
    assert_int_equal(sk_registry_register(a, &ia), SK_OK);
    assert_int_equal(sk_registry_register(b, &ib), SK_OK);
    assert_int_equal(sk_registry_watch(c, "order", on_watch, &v), SK_OK);

    expect both = { &v, 2, { "order-1", "order-2" }, { false, true } };
    assert_true(sk_test_wait_until(view_matches, &both, WAIT_MS));
    pthread_mutex_lock(&v.mu);
    assert_string_equal(v.items[0].service, "order");
    assert_string_equal(v.items[0].address, "127.0.0.1:41001");
    assert_int_equal(v.items[0].pid, (int)getpid());
    assert_true(v.items[0].heartbeat_ms >= t0);
    assert_string_equal(v.items[1].address, "127.0.0.1:41002");
    assert_int_equal(v.items[1].pid, 4242);
    assert_true(v.items[1].heartbeat_ms >= t0);
    pthread_mutex_unlock(&v.mu);

    /* The snapshot shows the same two. */
    list_wait lw = { c, "order", 2 };
    assert_true(sk_test_wait_until(list_has, &lw, WAIT_MS));

    /* Readiness changes reach the watcher. */
    sk_registry_set_ready(a, true);
    expect ready = { &v, 2, { "order-1", "order-2" }, { true, true } };
    assert_true(sk_test_wait_until(view_matches, &ready, WAIT_MS));
    sk_registry_set_ready(b, false);
    expect b_down = { &v, 2, { "order-1", "order-2" }, { true, false } };
    assert_true(sk_test_wait_until(view_matches, &b_down, WAIT_MS));

    /* Closing deletes the key: the instance goes at once, well before its TTL
     * could pass (the last heartbeat was at most ttl/3 ago). */
    int64_t closed_at = sk_time_mono_ms();
    sk_registry_close(b);
    expect only_a = { &v, 1, { "order-1" }, { true } };
    assert_true(sk_test_wait_until(view_matches, &only_a, WAIT_MS));
    assert_true(sk_time_mono_ms() - closed_at < TTL_MS - TTL_MS / 3);

    /* Over several TTLs the heartbeat keeps order-1 alive: the watcher is not
     * called again (this waits the whole period, watching for a change). */
    pthread_mutex_lock(&v.mu);
    calls_at c0 = { &v, v.n_calls };
    pthread_mutex_unlock(&v.mu);
    assert_false(sk_test_wait_until(calls_changed, &c0, 3 * TTL_MS));
    list_wait one = { c, "order", 1 };
    assert_true(list_has(&one));

    sk_registry_close(a);
    expect none = { &v, 0, { NULL }, { false } };
    assert_true(sk_test_wait_until(view_matches, &none, WAIT_MS));
    sk_registry_close(c);
    view_fini(&v);
}

static void test_discovery_stopped_heartbeat_expires(void **state)
{
    fixture *f = *state;
    sk_registry *a = open_registry(f->bus[0]);
    sk_registry *b = open_registry(f->bus[1]);
    sk_registry *c = open_registry(f->bus[2]);
    sk_instance ia = { "payment", "payment-1", "127.0.0.1:42001", true, 0, 0 };
    sk_instance ib = { "payment", "payment-2", "[::1]:42002", true, 0, 0 };
    view v, own;

    view_init(&v);
    view_init(&own);
    assert_int_equal(sk_registry_register(a, &ia), SK_OK);
    assert_int_equal(sk_registry_register(b, &ib), SK_OK);
    assert_int_equal(sk_registry_watch(c, "payment", on_watch, &v), SK_OK);
    assert_int_equal(sk_registry_watch(a, "payment", on_watch, &own), SK_OK);
    expect both = { &v, 2, { "payment-1", "payment-2" }, { true, true } };
    assert_true(sk_test_wait_until(view_matches, &both, WAIT_MS));
    expect own_both = { &own, 2, { "payment-1", "payment-2" }, { true, true } };
    assert_true(sk_test_wait_until(view_matches, &own_both, WAIT_MS));

    /* b "crashes": no more heartbeats, and no delete. */
    int64_t stopped_at = sk_time_mono_ms();
    sk__registry_test_stop_heartbeat(b);
    expect only_a = { &v, 1, { "payment-1" }, { true } };
    assert_true(sk_test_wait_until(view_matches, &only_a, WAIT_MS));
    int64_t gone_after = sk_time_mono_ms() - stopped_at;
    /* Not before the last heartbeat is a TTL old (>= ttl - ttl/3 after the stop), and
     * within TTL + one sweep (the sweep runs at each entry's deadline; 300 ms of slack
     * for a loaded machine). */
    assert_true(gone_after >= TTL_MS - TTL_MS / 3 - 10);
    assert_true(gone_after <= TTL_MS + 300);
    expect own_only_a = { &own, 1, { "payment-1" }, { true } };
    assert_true(sk_test_wait_until(view_matches, &own_only_a, WAIT_MS));
    list_wait lw = { c, "payment", 1 };
    assert_true(sk_test_wait_until(list_has, &lw, WAIT_MS));

    /* Registered again, it comes back. */
    ib.is_ready = false;
    assert_int_equal(sk_registry_register(b, &ib), SK_OK);
    expect back = { &v, 2, { "payment-1", "payment-2" }, { true, false } };
    assert_true(sk_test_wait_until(view_matches, &back, WAIT_MS));

    sk_registry_close(a);
    sk_registry_close(b);
    expect none = { &v, 0, { NULL }, { false } };
    assert_true(sk_test_wait_until(view_matches, &none, WAIT_MS));
    sk_registry_close(c);
    view_fini(&v);
    view_fini(&own);
}

static void test_discovery_late_watcher_and_bad_entries(void **state)
{
    fixture *f = *state;
    sk_registry *a = open_registry(f->bus[0]);
    sk_registry *c = open_registry(f->bus[2]);
    sk_kv *kv = NULL;
    sk_instance ia = { "inventory", "inventory-1", "127.0.0.1:43001", true, 0, 0 };
    view v;

    view_init(&v);
    assert_int_equal(sk_registry_register(a, &ia), SK_OK);
    /* Someone else writes garbage into the bucket: ignored, nothing breaks. */
    assert_int_equal(sk_kv_open(&kv, f->bus[1], SK_DISCOVERY_BUCKET, TTL_MS), SK_OK);
    assert_int_equal(sk_kv_put(kv, "inventory.inventory-9", sk_slice_from_str("not json")), SK_OK);
    assert_int_equal(sk_kv_put(kv, "junk", sk_slice_from_str("{}")), SK_OK);
    /* A watch added after the registration gets the current list from the bucket. */
    assert_int_equal(sk_registry_watch(c, "inventory", on_watch, &v), SK_OK);
    expect one = { &v, 1, { "inventory-1" }, { true } };
    assert_true(sk_test_wait_until(view_matches, &one, WAIT_MS));
    assert_int_equal(sk_kv_delete(kv, "inventory.inventory-9"), SK_OK);
    assert_int_equal(sk_kv_delete(kv, "junk"), SK_OK);
    sk_kv_close(kv);
    sk_registry_close(a);
    expect none = { &v, 0, { NULL }, { false } };
    assert_true(sk_test_wait_until(view_matches, &none, WAIT_MS));
    sk_registry_close(c);
    view_fini(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_discovery_watch_register_ready_close),
        cmocka_unit_test(test_discovery_stopped_heartbeat_expires),
        cmocka_unit_test(test_discovery_late_watcher_and_bad_entries),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, setup, teardown);
    sk_shutdown();
    return rc;
}
