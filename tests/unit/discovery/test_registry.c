/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the registry (src/discovery/registry.c) over an in-memory
 * fake of the KV API of msg.h, defined in this file: the fake delivers watch
 * events synchronously, in order, on the thread that puts, and can be told
 * to fail. Real-server behaviour is covered by tests/integration/test_discovery_nats.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "discovery/discovery_int.h"
#include "sk_test.h"

#define TTL_MS  150
#define WAIT_MS 3000

/* ---------------------------------------------------------------- fake KV */

#define FAKE_MAX 64

typedef struct fake_entry {
    char *key;
    char *value;
    size_t len;
} fake_entry;

struct sk_kv_watch {
    sk_kv_watch_fn fn;
    void *ctx;
    bool is_active;
};

static struct {
    pthread_mutex_t mu; /* protects everything here; held while delivering events */
    fake_entry entries[FAKE_MAX];
    size_t n;
    struct sk_kv_watch watches[8];
    size_t n_watches;
    int n_open;
    int64_t ttl_ms;
    unsigned n_puts;
    bool is_muted; /* puts and deletes are stored but not delivered to watches */
    sk_status fail_open, fail_put, fail_delete, fail_watch;
} fake = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Any non-NULL pointer will do: the fake never looks at the bus. */
static int bus_token;
#define BUS ((sk_bus *)(void *)&bus_token)

static void fake_reset(void)
{
    pthread_mutex_lock(&fake.mu);
    for (size_t i = 0; i < fake.n; i++) {
        sk_free(fake.entries[i].key);
        sk_free(fake.entries[i].value);
    }
    fake.n = 0;
    fake.n_watches = 0;
    fake.n_puts = 0;
    fake.is_muted = false;
    fake.fail_open = fake.fail_put = fake.fail_delete = fake.fail_watch = SK_OK;
    pthread_mutex_unlock(&fake.mu);
}

static void fake_notify(const char *key, const char *value, size_t len, bool is_deleted)
{
    for (size_t i = 0; i < fake.n_watches && !fake.is_muted; i++) {
        if (fake.watches[i].is_active) {
            fake.watches[i].fn(key, (sk_slice){ (const uint8_t *)value, len }, is_deleted,
                               fake.watches[i].ctx);
        }
    }
}

sk_status sk_kv_open(sk_kv **out, sk_bus *bus, const char *name, int64_t ttl_ms)
{
    assert_non_null(bus);
    assert_string_equal(name, SK_DISCOVERY_BUCKET);
    *out = NULL;
    if (fake.fail_open != SK_OK) {
        return SK_FAIL(fake.fail_open, "fake kv_open failure");
    }
    pthread_mutex_lock(&fake.mu);
    fake.n_open++;
    fake.ttl_ms = ttl_ms;
    pthread_mutex_unlock(&fake.mu);
    *out = (sk_kv *)(void *)&fake;
    return SK_OK;
}

void sk_kv_close(sk_kv *kv)
{
    if (kv == NULL) {
        return;
    }
    pthread_mutex_lock(&fake.mu);
    fake.n_open--;
    pthread_mutex_unlock(&fake.mu);
}

/* sk_kv_put with fake.mu held. */
static sk_status fake_put_locked(const char *key, sk_slice value)
{
    sk_status st = SK_OK;

    if (fake.fail_put != SK_OK) {
        st = SK_FAIL(fake.fail_put, "fake kv_put failure");
        goto out;
    }
    fake_entry *e = NULL;
    for (size_t i = 0; i < fake.n; i++) {
        if (strcmp(fake.entries[i].key, key) == 0) {
            e = &fake.entries[i];
        }
    }
    /* Allocation failures injected by the tests reach the fake too: report them. */
    char *copy = sk_strndup((const char *)value.ptr, value.len);
    if (copy == NULL) {
        st = SK_FAIL(SK_ENOMEM, "fake kv_put: copying the value");
        goto out;
    }
    if (e == NULL) {
        char *k = sk_strdup(key);
        if (k == NULL) {
            sk_free(copy);
            st = SK_FAIL(SK_ENOMEM, "fake kv_put: copying the key");
            goto out;
        }
        assert_true(fake.n < FAKE_MAX);
        e = &fake.entries[fake.n++];
        e->key = k;
    } else {
        sk_free(e->value);
    }
    e->value = copy;
    e->len = value.len;
    fake.n_puts++;
    fake_notify(key, e->value, e->len, false);
out:
    return st;
}

sk_status sk_kv_put(sk_kv *kv, const char *key, sk_slice value)
{
    assert_non_null(kv);
    pthread_mutex_lock(&fake.mu);
    sk_status st = fake_put_locked(key, value);
    pthread_mutex_unlock(&fake.mu);
    return st;
}

sk_status sk_kv_delete(sk_kv *kv, const char *key)
{
    sk_status st = SK_OK;

    assert_non_null(kv);
    pthread_mutex_lock(&fake.mu);
    if (fake.fail_delete != SK_OK) {
        st = SK_FAIL(fake.fail_delete, "fake kv_delete failure");
        goto out;
    }
    for (size_t i = 0; i < fake.n; i++) {
        if (strcmp(fake.entries[i].key, key) == 0) {
            sk_free(fake.entries[i].key);
            sk_free(fake.entries[i].value);
            fake.entries[i] = fake.entries[--fake.n];
            break;
        }
    }
    fake_notify(key, NULL, 0, true);
out:
    pthread_mutex_unlock(&fake.mu);
    return st;
}

sk_status sk_kv_get(sk_kv *kv, const char *key, char **out, size_t *len)
{
    sk_status st = SK_ENOTFOUND;

    (void)kv;
    *out = NULL;
    *len = 0;
    pthread_mutex_lock(&fake.mu);
    for (size_t i = 0; i < fake.n; i++) {
        if (strcmp(fake.entries[i].key, key) == 0) {
            *out = sk_strndup(fake.entries[i].value, fake.entries[i].len);
            *len = fake.entries[i].len;
            st = *out != NULL ? SK_OK : SK_ENOMEM;
        }
    }
    pthread_mutex_unlock(&fake.mu);
    if (st == SK_ENOTFOUND) {
        return SK_FAIL(st, "fake: %s not found", key);
    }
    return st;
}

sk_status
sk_kv_watch_start(sk_kv_watch **out, sk_kv *kv, const char *pattern, sk_kv_watch_fn fn, void *ctx)
{
    assert_non_null(kv);
    assert_string_equal(pattern, ">");
    *out = NULL;
    if (fake.fail_watch != SK_OK) {
        return SK_FAIL(fake.fail_watch, "fake watch failure");
    }
    pthread_mutex_lock(&fake.mu);
    assert_true(fake.n_watches < 8);
    struct sk_kv_watch *w = &fake.watches[fake.n_watches++];
    w->fn = fn;
    w->ctx = ctx;
    w->is_active = true;
    for (size_t i = 0; i < fake.n; i++) {
        fn(fake.entries[i].key,
           (sk_slice){ (const uint8_t *)fake.entries[i].value, fake.entries[i].len }, false, ctx);
    }
    pthread_mutex_unlock(&fake.mu);
    *out = w;
    return SK_OK;
}

void sk_kv_watch_stop(sk_kv_watch *w)
{
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&fake.mu);
    w->is_active = false;
    pthread_mutex_unlock(&fake.mu);
}

/* Put a raw value as another process would. */
static void raw_put(const char *key, const char *value)
{
    sk_kv *kv = (sk_kv *)(void *)&fake;
    assert_int_equal(sk_kv_put(kv, key, sk_slice_from_str(value)), SK_OK);
}

/*
 * Unmute the fake, put encoded instances @p names of service "order" as
 * other processes would, in one go (no heartbeat of ours between them), and
 * then mute the fake again when @p is_mute.
 */
static void others_put(const char *const *names, size_t n, bool is_mute)
{
    pthread_mutex_lock(&fake.mu);
    fake.is_muted = false;
    for (size_t k = 0; k < n; k++) {
        sk_instance i = { "order", names[k], "10.0.0.9:80", true, 77, sk_time_now_ms() };
        char *text = NULL;
        size_t len = 0;
        char key[160];
        assert_int_equal(sk__instance_encode(&i, &text, &len), SK_OK);
        snprintf(key, sizeof(key), "order.%s", names[k]);
        assert_int_equal(fake_put_locked(key, (sk_slice){ (const uint8_t *)text, len }), SK_OK);
        sk_free(text);
    }
    fake.is_muted = is_mute;
    pthread_mutex_unlock(&fake.mu);
}

/* Put an encoded instance as another process would. */
static void other_put(const char *service, const char *instance, const char *address, bool ready)
{
    sk_instance i = { service, instance, address, ready, 77, sk_time_now_ms() };
    char *text = NULL;
    size_t len = 0;
    char key[160];

    assert_int_equal(sk__instance_encode(&i, &text, &len), SK_OK);
    snprintf(key, sizeof(key), "%s.%s", service, instance);
    raw_put(key, text);
    sk_free(text);
}

static void other_delete(const char *key)
{
    assert_int_equal(sk_kv_delete((sk_kv *)(void *)&fake, key), SK_OK);
}

/* Decode the fake's current value of @p key into @p out; false when absent. */
static bool fake_lookup(const char *key, sk_instance *out)
{
    char *v = NULL;
    size_t len = 0;

    if (sk_kv_get((sk_kv *)(void *)&fake, key, &v, &len) != SK_OK) {
        sk_error_clear();
        return false;
    }
    sk_status st = sk__instance_decode((sk_slice){ (const uint8_t *)v, len }, out);
    sk_free(v);
    assert_int_equal(st, SK_OK);
    return true;
}

static unsigned fake_puts(void)
{
    pthread_mutex_lock(&fake.mu);
    unsigned n = fake.n_puts;
    pthread_mutex_unlock(&fake.mu);
    return n;
}

static bool puts_reached(void *ctx)
{
    return fake_puts() >= *(const unsigned *)ctx;
}

/* Wait until the fake has seen @p more further puts. */
static void wait_puts(unsigned more)
{
    unsigned target = fake_puts() + more;
    assert_true(sk_test_wait_until(puts_reached, &target, WAIT_MS));
}

static bool self_not_ready(void *ctx)
{
    sk_instance got;
    bool ok = false;

    (void)ctx;
    if (fake_lookup("order.order-1", &got)) {
        ok = !got.is_ready;
        sk__instance_fini(&got);
    }
    return ok;
}

/* ---------------------------------------------------------------- watch recorder */

#define MAX_EVENTS 256

typedef struct event {
    char service[SK_DISCOVERY_MAX_NAME + 1];
    size_t n;
    char names[8][SK_DISCOVERY_MAX_NAME + 1]; /* instance names, in order */
    bool ready[8];
} event;

typedef struct recorder {
    pthread_mutex_t mu;
    event events[MAX_EVENTS];
    size_t n_events;
    sk_registry *list_from; /* when set, the callback also calls sk_registry_list */
    size_t n_listed;
} recorder;

static recorder rec;

static void on_watch(const char *service, const sk_instance *instances, size_t n, void *ctx)
{
    recorder *r = ctx;

    pthread_mutex_lock(&r->mu);
    if (r->n_events < MAX_EVENTS) {
        event *e = &r->events[r->n_events++];
        snprintf(e->service, sizeof(e->service), "%s", service);
        e->n = n;
        for (size_t i = 0; i < n && i < 8; i++) {
            assert_string_equal(instances[i].service, service);
            snprintf(e->names[i], sizeof(e->names[i]), "%s", instances[i].instance);
            e->ready[i] = instances[i].is_ready;
        }
    }
    sk_registry *from = r->list_from;
    pthread_mutex_unlock(&r->mu);
    if (from != NULL) {
        /* Callbacks run without the registry lock: calling back in must not deadlock. */
        sk_instance *list = NULL;
        size_t nl = 0;
        assert_int_equal(sk_registry_list(from, &list, &nl), SK_OK);
        sk_registry_list_free(list, nl);
        pthread_mutex_lock(&r->mu);
        r->n_listed++;
        pthread_mutex_unlock(&r->mu);
    }
}

static size_t rec_count(void)
{
    pthread_mutex_lock(&rec.mu);
    size_t n = rec.n_events;
    pthread_mutex_unlock(&rec.mu);
    return n;
}

static bool count_reached(void *ctx)
{
    return rec_count() >= *(const size_t *)ctx;
}

static event rec_last(void)
{
    pthread_mutex_lock(&rec.mu);
    event e = rec.events[rec.n_events - 1];
    pthread_mutex_unlock(&rec.mu);
    return e;
}

typedef struct wait_last {
    const char *service;
    size_t n;
    const char *first; /* NULL: any */
    int first_ready;   /* -1: any */
} wait_last;

static bool last_matches(void *ctx)
{
    wait_last *w = ctx;
    bool ok = false;

    pthread_mutex_lock(&rec.mu);
    for (size_t i = rec.n_events; i > 0 && !ok; i--) {
        const event *e = &rec.events[i - 1];
        if (strcmp(e->service, w->service) != 0) {
            continue;
        }
        ok = e->n == w->n &&
             (w->first == NULL || (e->n > 0 && strcmp(e->names[0], w->first) == 0)) &&
             (w->first_ready < 0 || (e->n > 0 && e->ready[0] == (w->first_ready == 1)));
        break; /* only the latest event of that service counts */
    }
    pthread_mutex_unlock(&rec.mu);
    return ok;
}

static void wait_for(const char *service, size_t n, const char *first, int first_ready)
{
    wait_last w = { service, n, first, first_ready };
    assert_true(sk_test_wait_until(last_matches, &w, WAIT_MS));
}

static int each_setup(void **state)
{
    (void)state;
    fake_reset();
    pthread_mutex_init(&rec.mu, NULL);
    rec.n_events = 0;
    rec.list_from = NULL;
    rec.n_listed = 0;
    return 0;
}

static int each_teardown(void **state)
{
    (void)state;
    fake_reset();
    pthread_mutex_destroy(&rec.mu);
    return 0;
}

static sk_registry *open_registry(void)
{
    sk_registry *r = NULL;
    assert_int_equal(sk_registry_open(&r, BUS, TTL_MS), SK_OK);
    assert_non_null(r);
    return r;
}

static const sk_instance SELF = { "order", "order-1", "127.0.0.1:41234", false, 0, 0 };

/* ---------------------------------------------------------------- open / close */

static void test_registry_open_success(void **state)
{
    sk_registry *r = NULL;

    (void)state;
    assert_int_equal(sk_registry_open(&r, BUS, 0), SK_OK);
    assert_int_equal(sk__registry_ttl_ms(r), SK_DISCOVERY_DEFAULT_TTL_MS);
    assert_int_equal(fake.ttl_ms, SK_DISCOVERY_DEFAULT_TTL_MS);
    assert_int_equal(fake.n_open, 1);
    sk_registry_close(r);
    assert_int_equal(fake.n_open, 0);
    r = open_registry();
    assert_int_equal(sk__registry_ttl_ms(r), TTL_MS);
    sk_registry_close(r);
    sk_registry_close(NULL); /* NULL-safe */
}

static void test_registry_open_errors(void **state)
{
    sk_registry *r = (sk_registry *)(void *)&bus_token;

    (void)state;
    SK_TEST_ASSERT_ERR(sk_registry_open(NULL, BUS, 0), SK_EINVAL, "out must not be NULL");
    SK_TEST_ASSERT_ERR(sk_registry_open(&r, NULL, 0), SK_EINVAL, "bus must not be NULL");
    assert_null(r);
    SK_TEST_ASSERT_ERR(sk_registry_open(&r, BUS, -1), SK_EINVAL, "ttl_ms");
    SK_TEST_ASSERT_ERR(sk_registry_open(&r, BUS, SK_DISCOVERY_MIN_TTL_MS - 1), SK_EINVAL, "got 99");
    SK_TEST_ASSERT_ERR(sk_registry_open(&r, BUS, SK_DISCOVERY_MAX_TTL_MS + 1), SK_EINVAL, "ttl_ms");
    assert_int_equal(sk_registry_open(&r, BUS, SK_DISCOVERY_MIN_TTL_MS), SK_OK);
    sk_registry_close(r);
    assert_int_equal(sk_registry_open(&r, BUS, SK_DISCOVERY_MAX_TTL_MS), SK_OK);
    sk_registry_close(r);
    fake.fail_open = SK_EBUS;
    SK_TEST_ASSERT_ERR(sk_registry_open(&r, BUS, 0), SK_EBUS, "opening bucket skald_instances");
    assert_null(r);
    fake.fail_open = SK_OK;
}

static void test_registry_open_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_registry *r = NULL;
        sk_test_fail_alloc_at(n);
        sk_status st = sk_registry_open(&r, BUS, TTL_MS);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_registry_close(r);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(r);
    }
    assert_int_equal(fake.n_open, 0);
}

/* ---------------------------------------------------------------- register */

static void test_registry_register_puts_and_heartbeats(void **state)
{
    sk_registry *r = open_registry();
    sk_instance got;

    (void)state;
    int64_t before = sk_time_now_ms();
    assert_int_equal(sk_registry_register(r, &SELF), SK_OK);
    assert_true(fake_lookup("order.order-1", &got));
    assert_string_equal(got.service, "order");
    assert_string_equal(got.instance, "order-1");
    assert_string_equal(got.address, "127.0.0.1:41234");
    assert_false(got.is_ready);
    assert_int_equal(got.pid, (int)getpid()); /* 0 means this process */
    assert_true(got.heartbeat_ms >= before);
    sk__instance_fini(&got);

    /* The heartbeat re-puts every ttl/3: wait for a few more puts. */
    wait_puts(3);
    assert_true(fake_lookup("order.order-1", &got));
    assert_true(got.heartbeat_ms >= before);
    sk__instance_fini(&got);

    sk_registry_close(r);
    /* Closing deletes the key at once. */
    assert_false(fake_lookup("order.order-1", &got));
}

static void test_registry_register_errors(void **state)
{
    sk_registry *r = open_registry();
    sk_instance bad = SELF;
    sk_instance got;

    (void)state;
    SK_TEST_ASSERT_ERR(sk_registry_register(NULL, &SELF), SK_EINVAL, "r must not be NULL");
    SK_TEST_ASSERT_ERR(sk_registry_register(r, NULL), SK_EINVAL, "self must not be NULL");
    bad.service = "Bad";
    SK_TEST_ASSERT_ERR(sk_registry_register(r, &bad), SK_EINVAL, "service: expected");
    bad = SELF;
    bad.instance = "a.b";
    SK_TEST_ASSERT_ERR(sk_registry_register(r, &bad), SK_EINVAL, "instance: expected");
    bad = SELF;
    bad.address = "localhost";
    SK_TEST_ASSERT_ERR(sk_registry_register(r, &bad), SK_EINVAL, "address: expected");
    bad = SELF;
    bad.pid = -4;
    SK_TEST_ASSERT_ERR(sk_registry_register(r, &bad), SK_EINVAL, "pid: expected");
    fake.fail_put = SK_EBUS;
    SK_TEST_ASSERT_ERR(sk_registry_register(r, &SELF), SK_EBUS, "putting order.order-1");
    fake.fail_put = SK_OK;
    assert_false(fake_lookup("order.order-1", &got));
    /* Nothing registered: set_ready does nothing, close deletes nothing. */
    sk_registry_set_ready(r, true);
    assert_false(fake_lookup("order.order-1", &got));
    sk_registry_close(r);
}

static void test_registry_register_replaces(void **state)
{
    sk_registry *r = open_registry();
    sk_instance next = SELF;
    sk_instance got;

    (void)state;
    assert_int_equal(sk_registry_register(r, &SELF), SK_OK);
    next.instance = "order-2";
    next.pid = 99;
    assert_int_equal(sk_registry_register(r, &next), SK_OK);
    assert_false(fake_lookup("order.order-1", &got)); /* the old key is gone */
    assert_true(fake_lookup("order.order-2", &got));
    assert_int_equal(got.pid, 99);
    sk__instance_fini(&got);
    /* A failed re-registration keeps the previous one. */
    fake.fail_put = SK_EBUS;
    next.instance = "order-3";
    SK_TEST_ASSERT_ERR(sk_registry_register(r, &next), SK_EBUS, "order.order-3");
    fake.fail_put = SK_OK;
    sk_registry_set_ready(r, true);
    assert_true(fake_lookup("order.order-2", &got));
    assert_true(got.is_ready);
    sk__instance_fini(&got);
    assert_false(fake_lookup("order.order-3", &got));
    sk_registry_close(r);
    assert_false(fake_lookup("order.order-2", &got));
}

static void test_registry_register_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_registry *r = open_registry();
        sk_instance got;
        sk_test_fail_alloc_at(n);
        sk_status st = sk_registry_register(r, &SELF);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            assert_true(fake_lookup("order.order-1", &got));
            sk__instance_fini(&got);
            sk_registry_close(r);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_false(fake_lookup("order.order-1", &got));
        sk_registry_close(r);
    }
}

static void test_registry_set_ready(void **state)
{
    sk_registry *r = open_registry();
    sk_instance got;

    (void)state;
    sk_registry_set_ready(NULL, true); /* no effect */
    assert_int_equal(sk_registry_register(r, &SELF), SK_OK);
    sk_registry_set_ready(r, true);
    assert_true(fake_lookup("order.order-1", &got)); /* put before returning */
    assert_true(got.is_ready);
    sk__instance_fini(&got);
    /* A failed put is logged and kept for the next heartbeat. */
    fake.fail_put = SK_EBUS;
    sk_registry_set_ready(r, false);
    fake.fail_put = SK_OK;
    assert_true(fake_lookup("order.order-1", &got));
    assert_true(got.is_ready);
    sk__instance_fini(&got);
    assert_true(sk_test_wait_until(self_not_ready, NULL, WAIT_MS));
    sk_registry_close(r);
}

/* ---------------------------------------------------------------- watch / list */

static void test_registry_watch_sees_changes(void **state)
{
    sk_registry *r = open_registry();

    (void)state;
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    other_put("order", "order-2", "10.0.0.2:80", false);
    wait_for("order", 1, "order-2", 0);
    other_put("order", "order-1", "10.0.0.1:80", true);
    wait_for("order", 2, "order-1", 1); /* sorted by instance name */
    event e = rec_last();
    assert_string_equal(e.names[1], "order-2");

    /* A heartbeat alone is no change; a readiness change is. */
    size_t n_before = rec_count();
    other_put("order", "order-2", "10.0.0.2:80", false);
    other_put("order", "order-1", "10.0.0.1:80", false);
    wait_for("order", 2, "order-1", 0);
    assert_int_equal(rec_count(), n_before + 1);

    /* Another service's changes do not reach this watch. */
    other_put("payment", "payment-1", "10.0.0.3:80", true);
    other_delete("order.order-1");
    wait_for("order", 1, "order-2", -1);
    other_delete("order.order-2");
    wait_for("order", 0, NULL, -1);
    pthread_mutex_lock(&rec.mu);
    for (size_t i = 0; i < rec.n_events; i++) {
        assert_string_equal(rec.events[i].service, "order");
    }
    pthread_mutex_unlock(&rec.mu);
    sk_registry_close(r);
}

static void test_registry_watch_expires_entries(void **state)
{
    sk_registry *r = open_registry();
    sk_instance *list = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    int64_t t0 = sk_time_mono_ms();
    other_put("order", "order-9", "10.0.0.9:80", true);
    wait_for("order", 1, "order-9", 1);
    /* No delete, no heartbeat: dropped once the TTL passes. */
    wait_for("order", 0, NULL, -1);
    /*
     * Not before the TTL. The registry dates the put by its heartbeat's wall
     * clock time, turned into a monotonic time from two more millisecond
     * readings (one per clock), so it can come out up to 2 ms early.
     */
    assert_in_range(sk_time_mono_ms() - t0, TTL_MS - 2, INT64_MAX);
    assert_int_equal(sk_registry_list(r, &list, &n), SK_OK);
    assert_int_equal(n, 0);
    assert_null(list);
    /* It comes back with the next put. */
    other_put("order", "order-9", "10.0.0.9:80", true);
    wait_for("order", 1, "order-9", 1);
    sk_registry_close(r);
}

static void test_registry_own_entry_stays_with_heartbeat(void **state)
{
    sk_registry *r = open_registry();

    (void)state;
    assert_int_equal(sk_registry_register(r, &SELF), SK_OK);
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    wait_for("order", 1, "order-1", 0);
    /* Across several TTLs the heartbeat keeps it, without further callbacks. */
    size_t n_events = rec_count();
    wait_puts(9);
    assert_int_equal(rec_count(), n_events);
    /* Stop heartbeating without deleting: it expires; re-registering brings it back. */
    sk__registry_test_stop_heartbeat(r);
    wait_for("order", 0, NULL, -1);
    assert_int_equal(sk_registry_register(r, &SELF), SK_OK);
    wait_for("order", 1, "order-1", 0);
    sk_registry_close(r);
}

/* The names sk_registry_list gives, joined with ' '. */
static void list_names(sk_registry *r, char *out, size_t size)
{
    sk_instance *list = NULL;
    size_t n = 0, len = 0;

    assert_int_equal(sk_registry_list(r, &list, &n), SK_OK);
    out[0] = '\0';
    for (size_t i = 0; i < n && len < size; i++) {
        len += (size_t)snprintf(out + len, size - len, "%s%s", i > 0 ? " " : "", list[i].instance);
    }
    sk_registry_list_free(list, n);
}

static void test_registry_keeps_instances_while_watch_is_silent(void **state)
{
    sk_registry *r = open_registry();
    sk_registry *listener = open_registry(); /* registers nothing: expires by its own clock */
    static const char *const peers[] = { "order-8", "order-9" };
    char names[256];

    (void)state;
    assert_int_equal(sk_registry_register(r, &SELF), SK_OK);
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    list_names(listener, names, sizeof(names)); /* starts its watch */

    /* Two peers' last heartbeats, then the watch stops delivering: nobody's
     * heartbeat arrives, ours neither, for three TTLs. */
    others_put(peers, 2, true);
    wait_for("order", 3, "order-1", 0);
    size_t n_events = rec_count();
    struct timespec pause = { 0, 3 * TTL_MS * 1000000L };
    nanosleep(&pause, NULL);
    list_names(r, names, sizeof(names));
    assert_string_equal(names, "order-1 order-8 order-9");
    assert_int_equal(rec_count(), n_events);
    list_names(listener, names, sizeof(names));
    assert_string_equal(names, "");

    /* Puts arrive again: order-8 heartbeats and stays; order-9, silent, expires. */
    others_put(peers, 1, false);
    wait_for("order", 2, "order-1", 0);
    list_names(r, names, sizeof(names));
    assert_string_equal(names, "order-1 order-8");
    sk_registry_close(listener);
    sk_registry_close(r);
}

static void test_registry_watch_initial_list(void **state)
{
    sk_registry *r = open_registry();

    (void)state;
    other_put("order", "order-1", "10.0.0.1:80", true);
    other_put("order", "order-0", "10.0.0.1:81", true);
    /* The first watch starts the bucket watch and gets the current entries. */
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    wait_for("order", 2, "order-0", 1);
    /* A later watch of the same service gets the current list too. */
    size_t n_events = rec_count();
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    size_t target = n_events + 1;
    assert_true(sk_test_wait_until(count_reached, &target, WAIT_MS));
    assert_int_equal(rec_count(), n_events + 1);
    assert_int_equal(rec_last().n, 2);
    /* A watch of a service with no instances is not called until one appears. */
    assert_int_equal(sk_registry_watch(r, "payment", on_watch, &rec), SK_OK);
    other_put("payment", "p-1", "10.0.0.5:80", true);
    wait_for("payment", 1, "p-1", 1);
    sk_registry_close(r);
}

static bool has_listed(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&rec.mu);
    bool listed = rec.n_listed >= 1;
    pthread_mutex_unlock(&rec.mu);
    return listed;
}

static void test_registry_watch_callback_may_list(void **state)
{
    sk_registry *r = open_registry();

    (void)state;
    rec.list_from = r;
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    other_put("order", "order-1", "10.0.0.1:80", true);
    wait_for("order", 1, "order-1", 1);
    /* The callback records its event before it calls back in: wait for the list to finish. */
    assert_true(sk_test_wait_until(has_listed, NULL, WAIT_MS));
    sk_registry_close(r);
}

static void test_registry_watch_errors(void **state)
{
    sk_registry *r = open_registry();

    (void)state;
    SK_TEST_ASSERT_ERR(sk_registry_watch(NULL, "order", on_watch, &rec), SK_EINVAL,
                       "r must not be NULL");
    SK_TEST_ASSERT_ERR(sk_registry_watch(r, NULL, on_watch, &rec), SK_EINVAL, "service");
    SK_TEST_ASSERT_ERR(sk_registry_watch(r, "", on_watch, &rec), SK_EINVAL, "service");
    SK_TEST_ASSERT_ERR(sk_registry_watch(r, "or.der", on_watch, &rec), SK_EINVAL, "service");
    SK_TEST_ASSERT_ERR(sk_registry_watch(r, "order", NULL, &rec), SK_EINVAL, "fn must not be NULL");
    fake.fail_watch = SK_EBUS;
    SK_TEST_ASSERT_ERR(sk_registry_watch(r, "order", on_watch, &rec), SK_EBUS,
                       "watching bucket skald_instances");
    sk_instance *list = (sk_instance *)(void *)&bus_token;
    size_t n = 5;
    SK_TEST_ASSERT_ERR(sk_registry_list(r, &list, &n), SK_EBUS, "sk_registry_list");
    assert_null(list);
    assert_int_equal(n, 0);
    /* The failure is not sticky. */
    fake.fail_watch = SK_OK;
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    sk_registry_close(r);
}

static void test_registry_watch_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_registry *r = open_registry();
        sk_test_fail_alloc_at(n);
        sk_status st = sk_registry_watch(r, "order", on_watch, &rec);
        sk_test_fail_alloc_at(-1);
        sk_registry_close(r);
        if (st == SK_OK) {
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
    }
}

static void test_registry_list_snapshot(void **state)
{
    sk_registry *r = open_registry();
    sk_instance *list = NULL;
    size_t n = 0;

    (void)state;
    other_put("payment", "p-2", "10.0.0.6:80", false);
    other_put("order", "order-2", "10.0.0.2:80", true);
    other_put("order", "order-1", "10.0.0.1:80", false);
    /* The fake delivers current entries while the watch starts, so the first list sees them. */
    assert_int_equal(sk_registry_list(r, &list, &n), SK_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].service, "order");
    assert_string_equal(list[0].instance, "order-1");
    assert_false(list[0].is_ready);
    assert_string_equal(list[1].instance, "order-2");
    assert_true(list[1].is_ready);
    assert_string_equal(list[1].address, "10.0.0.2:80");
    assert_int_equal(list[1].pid, 77);
    assert_string_equal(list[2].service, "payment");
    /* Deep copies: still valid after the entries change. */
    other_delete("order.order-1");
    other_delete("order.order-2");
    assert_string_equal(list[0].address, "10.0.0.1:80");
    sk_registry_list_free(list, n);
    assert_int_equal(sk_registry_list(r, &list, &n), SK_OK);
    assert_int_equal(n, 1);
    sk_registry_list_free(list, n);
    sk_registry_list_free(NULL, 3); /* NULL-safe */
    sk_registry_close(r);
}

static void test_registry_list_errors(void **state)
{
    sk_registry *r = open_registry();
    sk_instance *list = NULL;
    size_t n = 0;

    (void)state;
    SK_TEST_ASSERT_ERR(sk_registry_list(NULL, &list, &n), SK_EINVAL, "r must not be NULL");
    SK_TEST_ASSERT_ERR(sk_registry_list(r, NULL, &n), SK_EINVAL, "out must not be NULL");
    SK_TEST_ASSERT_ERR(sk_registry_list(r, &list, NULL), SK_EINVAL, "n must not be NULL");
    other_put("order", "order-1", "10.0.0.1:80", false);
    /* Start the watch first, so that the loop fails the snapshot's allocations only. */
    assert_int_equal(sk_registry_list(r, &list, &n), SK_OK);
    sk_registry_list_free(list, n);
    for (long k = 0;; k++) {
        sk_test_fail_alloc_at(k);
        sk_status st = sk_registry_list(r, &list, &n);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            assert_int_equal(n, 1);
            sk_registry_list_free(list, n);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(list);
        assert_int_equal(n, 0);
    }
    sk_registry_close(r);
}

static void test_registry_ignores_bad_entries(void **state)
{
    sk_registry *r = open_registry();
    sk_instance *list = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    other_put("order", "order-1", "10.0.0.1:80", true);
    wait_for("order", 1, "order-1", 1);
    raw_put("nodot", "{}");
    raw_put("Order.x", "{}");
    raw_put("order.order-2", "garbage \xff");
    /* Value naming another instance than its key: refused. */
    raw_put("order.order-3", "{\"service\":\"order\",\"instance\":\"order-4\",\"address\":"
                             "\"h:1\",\"ready\":true,\"pid\":1,\"heartbeat_ms\":1}");
    assert_int_equal(sk_registry_list(r, &list, &n), SK_OK);
    assert_int_equal(n, 1);
    sk_registry_list_free(list, n);
    /* A bad value replacing a good one removes the instance. */
    raw_put("order.order-1", "{\"service\":\"order\"}");
    wait_for("order", 0, NULL, -1);
    sk_registry_close(r);
}

static void test_registry_close_stops_callbacks(void **state)
{
    sk_registry *r = open_registry();

    (void)state;
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    other_put("order", "order-1", "10.0.0.1:80", true);
    wait_for("order", 1, "order-1", 1);
    sk_registry_close(r);
    size_t n = rec_count();
    other_put("order", "order-2", "10.0.0.1:80", true); /* nobody listens any more */
    assert_int_equal(rec_count(), n);
}

/* ---------------------------------------------------------------- unwatch */

/* Counts the calls of a watch; used as a second watcher to know the discovery thread went on. */
typedef struct counter {
    pthread_mutex_t mu;
    size_t calls;
    size_t last_n;
} counter;

static void on_count(const char *service, const sk_instance *instances, size_t n, void *ctx)
{
    counter *c = ctx;

    (void)service;
    (void)instances;
    pthread_mutex_lock(&c->mu);
    c->calls++;
    c->last_n = n;
    pthread_mutex_unlock(&c->mu);
}

static size_t counter_calls(counter *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->calls;
    pthread_mutex_unlock(&c->mu);
    return n;
}

typedef struct counter_wait {
    counter *c;
    size_t calls;
    size_t last_n;
} counter_wait;

static bool counter_matches(void *ctx)
{
    counter_wait *w = ctx;

    pthread_mutex_lock(&w->c->mu);
    bool ok = w->c->calls >= w->calls && w->c->last_n == w->last_n;
    pthread_mutex_unlock(&w->c->mu);
    return ok;
}

/* Wait until @p c has been called at least @p calls times, the last with @p last_n instances. */
static void counter_wait_for(counter *c, size_t calls, size_t last_n)
{
    counter_wait w = { c, calls, last_n };
    assert_true(sk_test_wait_until(counter_matches, &w, WAIT_MS));
}

static void test_registry_unwatch_stops_deliveries(void **state)
{
    sk_registry *r = open_registry();
    counter other = { .calls = 0 };

    (void)state;
    pthread_mutex_init(&other.mu, NULL);
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    assert_int_equal(sk_registry_watch(r, "payment", on_watch, &rec), SK_OK);
    assert_int_equal(sk_registry_watch(r, "order", on_count, &other), SK_OK);
    other_put("order", "order-1", "10.0.0.1:80", true);
    wait_for("order", 1, "order-1", 1);
    counter_wait_for(&other, 1, 1);

    /* Every watch of (on_watch, &rec) goes, whatever its service; the other stays. */
    sk_registry_unwatch(r, on_watch, &rec);
    size_t n_events = rec_count();
    other_put("order", "order-2", "10.0.0.2:80", true);
    other_put("payment", "payment-1", "10.0.0.3:80", true);
    counter_wait_for(&other, 2, 2);
    /* The discovery thread serves pending watches in the order they were
     * added and starts over after each call, so once the counter has seen
     * this later delete, a watch of rec left behind would have been called. */
    other_delete("order.order-1");
    counter_wait_for(&other, 3, 1);
    assert_int_equal(rec_count(), n_events);

    /* Unwatching twice is harmless; watching again gets the current list at once. */
    sk_registry_unwatch(r, on_watch, &rec);
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    wait_for("order", 1, "order-2", 1);
    assert_int_equal(rec_count(), n_events + 1);
    sk_registry_unwatch(r, on_watch, &rec);
    sk_registry_unwatch(r, on_count, &other);
    sk_registry_close(r);
    pthread_mutex_destroy(&other.mu);
}

/* A watch whose callback blocks until the test releases it. */
typedef struct blocker {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    size_t calls;
    bool is_released;
    bool has_returned; /* set by the callback as the last thing it does */
} blocker;

static void on_block(const char *service, const sk_instance *instances, size_t n, void *ctx)
{
    blocker *b = ctx;

    (void)service;
    (void)instances;
    (void)n;
    pthread_mutex_lock(&b->mu);
    b->calls++;
    b->has_returned = false;
    while (!b->is_released) {
        pthread_cond_wait(&b->cond, &b->mu);
    }
    b->has_returned = true;
    pthread_mutex_unlock(&b->mu);
}

static bool blocker_entered(void *ctx)
{
    blocker *b = ctx;

    pthread_mutex_lock(&b->mu);
    bool ok = b->calls > 0;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

typedef struct unwatcher {
    sk_registry *r;
    blocker *b;
    _Atomic bool is_started;
    _Atomic bool is_done;
    bool saw_returned; /* has_returned of the callback when unwatch returned */
} unwatcher;

static void *unwatch_main(void *arg)
{
    unwatcher *u = arg;

    u->is_started = true;
    sk_registry_unwatch(u->r, on_block, u->b);
    pthread_mutex_lock(&u->b->mu);
    u->saw_returned = u->b->has_returned;
    pthread_mutex_unlock(&u->b->mu);
    u->is_done = true;
    return NULL;
}

static bool unwatcher_started(void *ctx)
{
    return ((unwatcher *)ctx)->is_started;
}

static bool unwatcher_done(void *ctx)
{
    return ((unwatcher *)ctx)->is_done;
}

static void test_registry_unwatch_waits_for_callback_in_progress(void **state)
{
    sk_registry *r = open_registry();
    blocker b = { .calls = 0 };
    unwatcher u = { .r = r, .b = &b };
    pthread_t thread;

    (void)state;
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cond, NULL);
    assert_int_equal(sk_registry_watch(r, "order", on_block, &b), SK_OK);
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    other_put("order", "order-1", "10.0.0.1:80", true);
    assert_true(sk_test_wait_until(blocker_entered, &b, WAIT_MS));

    assert_int_equal(pthread_create(&thread, NULL, unwatch_main, &u), 0);
    assert_true(sk_test_wait_until(unwatcher_started, &u, WAIT_MS));
    /* The callback is still blocked: unwatch must not return within this deadline. */
    assert_false(sk_test_wait_until(unwatcher_done, &u, 200));

    pthread_mutex_lock(&b.mu);
    b.is_released = true;
    pthread_cond_broadcast(&b.cond);
    pthread_mutex_unlock(&b.mu);
    assert_true(sk_test_wait_until(unwatcher_done, &u, WAIT_MS));
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_true(u.saw_returned); /* it returned only after the callback had */

    /* The other watch still works and the blocker is never called again
     * (order-1 may have expired meanwhile: the TTL is short, so put it again). */
    other_put("order", "order-1", "10.0.0.1:80", true);
    other_put("order", "order-2", "10.0.0.2:80", true);
    wait_for("order", 2, "order-1", 1);
    pthread_mutex_lock(&b.mu);
    assert_int_equal(b.calls, 1);
    pthread_mutex_unlock(&b.mu);
    sk_registry_close(r);
    pthread_cond_destroy(&b.cond);
    pthread_mutex_destroy(&b.mu);
}

/* A watch that removes itself (and optionally another watch) from inside its callback. */
typedef struct self_remover {
    sk_registry *r;
    counter *also; /* when set, unwatch (on_count, also) too */
    size_t calls;  /* only touched on the discovery thread until the test reads it after close */
    char service[SK_DISCOVERY_MAX_NAME + 1];
    size_t n;
    char first_address[SK_DISCOVERY_MAX_ADDRESS + 1];
} self_remover;

static void on_self_remove(const char *service, const sk_instance *instances, size_t n, void *ctx)
{
    self_remover *s = ctx;

    s->calls++;
    sk_registry_unwatch(s->r, on_self_remove, s);
    if (s->also != NULL) {
        sk_registry_unwatch(s->r, on_count, s->also);
    }
    /* The arguments stay valid for the rest of the call (ASan checks). */
    snprintf(s->service, sizeof(s->service), "%s", service);
    s->n = n;
    if (n > 0) {
        snprintf(s->first_address, sizeof(s->first_address), "%s", instances[0].address);
    }
}

static void test_registry_unwatch_from_callback(void **state)
{
    sk_registry *r = open_registry();
    counter other = { .calls = 0 };
    self_remover s = { .r = r, .also = &other };

    (void)state;
    pthread_mutex_init(&other.mu, NULL);
    other_put("order", "order-1", "10.0.0.1:80", true);
    /* Pending watches are served in the order they were added: the counter
     * gets the current list, then the self-remover removes itself and the
     * counter, then the recorder is called (and keeps being called). */
    assert_int_equal(sk_registry_watch(r, "order", on_count, &other), SK_OK);
    assert_int_equal(sk_registry_watch(r, "order", on_self_remove, &s), SK_OK);
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    wait_for("order", 1, "order-1", 1);
    other_put("order", "order-2", "10.0.0.2:80", true);
    wait_for("order", 2, "order-1", 1);
    sk_registry_close(r); /* joins the discovery thread: s is ours again */
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.service, "order");
    assert_int_equal(s.n, 1);
    assert_string_equal(s.first_address, "10.0.0.1:80");
    assert_int_equal(counter_calls(&other), 1);
    pthread_mutex_destroy(&other.mu);
}

static void test_registry_unwatch_unknown_is_noop(void **state)
{
    sk_registry *r = open_registry();
    int stranger = 0;

    (void)state;
    /* Before any watch (no discovery thread yet). */
    sk_registry_unwatch(r, on_watch, &rec);
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    /* Same fn with another ctx, another fn with the same ctx: neither matches. */
    sk_registry_unwatch(r, on_watch, &stranger);
    sk_registry_unwatch(r, on_count, &rec);
    sk_registry_unwatch(r, on_watch, NULL);
    other_put("order", "order-1", "10.0.0.1:80", true);
    wait_for("order", 1, "order-1", 1);
    sk_registry_close(r);
}

static _Atomic size_t null_ctx_calls;

static void on_null_ctx(const char *service, const sk_instance *instances, size_t n, void *ctx)
{
    (void)service;
    (void)instances;
    (void)n;
    (void)ctx;
    null_ctx_calls++;
}

static void test_registry_unwatch_null_args(void **state)
{
    sk_registry *r = open_registry();
    counter c = { .calls = 0 };

    (void)state;
    pthread_mutex_init(&c.mu, NULL);
    sk_registry_unwatch(NULL, on_watch, &rec); /* no effect */
    sk_registry_unwatch(NULL, NULL, NULL);
    assert_int_equal(sk_registry_watch(r, "order", on_watch, &rec), SK_OK);
    sk_registry_unwatch(r, NULL, &rec); /* no effect: fn NULL matches nothing */
    other_put("order", "order-1", "10.0.0.1:80", true);
    wait_for("order", 1, "order-1", 1);
    /* A NULL ctx is an ordinary ctx: a watch added with it is removed with it. */
    assert_int_equal(sk_registry_watch(r, "order", on_null_ctx, NULL), SK_OK);
    sk_registry_unwatch(r, on_null_ctx, NULL);
    size_t n_null = null_ctx_calls;
    assert_int_equal(sk_registry_watch(r, "order", on_count, &c), SK_OK);
    other_put("order", "order-2", "10.0.0.2:80", true);
    counter_wait_for(&c, 1, 2); /* the initial list and the put may come as one call */
    assert_int_equal(null_ctx_calls, n_null);
    sk_registry_close(r);
    pthread_mutex_destroy(&c.mu);
}

#define T(f) cmocka_unit_test_setup_teardown(f, each_setup, each_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_registry_open_success),
        T(test_registry_open_errors),
        T(test_registry_open_every_alloc_failure),
        T(test_registry_register_puts_and_heartbeats),
        T(test_registry_register_errors),
        T(test_registry_register_replaces),
        T(test_registry_register_every_alloc_failure),
        T(test_registry_set_ready),
        T(test_registry_watch_sees_changes),
        T(test_registry_watch_expires_entries),
        T(test_registry_own_entry_stays_with_heartbeat),
        T(test_registry_keeps_instances_while_watch_is_silent),
        T(test_registry_watch_initial_list),
        T(test_registry_watch_callback_may_list),
        T(test_registry_watch_errors),
        T(test_registry_watch_every_alloc_failure),
        T(test_registry_list_snapshot),
        T(test_registry_list_errors),
        T(test_registry_ignores_bad_entries),
        T(test_registry_close_stops_callbacks),
        T(test_registry_unwatch_stops_deliveries),
        T(test_registry_unwatch_waits_for_callback_in_progress),
        T(test_registry_unwatch_from_callback),
        T(test_registry_unwatch_unknown_is_noop),
        T(test_registry_unwatch_null_args),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
