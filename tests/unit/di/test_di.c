/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/di/di.c: registration, lifetimes, resolution order,
 * cycles, missing providers, failing create functions, teardown order and
 * allocation failures. Fake providers write "+name" on create and "-name" on
 * destroy into one log, so tests compare exact orders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <skald/core.h>
#include <skald/di.h>

/* ---------------------------------------------------------------- fakes */

#define MAX_DEPS 4

typedef struct fake {
    const char *name;
    const char *deps[MAX_DEPS]; /* resolved in this order, NULL-terminated */
    sk_status fail_st;          /* SK_OK: succeed; otherwise fail with this after the deps */
    bool return_null;           /* succeed without an object (a provider bug) */
    bool is_deps_optional;      /* a dependency that fails is skipped */
    int n_created;
    int n_destroyed;
} fake;

typedef struct obj {
    const fake *f;
    int serial;
} obj;

static char g_log[4096];

static void log_event(char sign, const char *name)
{
    size_t len = strlen(g_log);
    int n = snprintf(g_log + len, sizeof(g_log) - len, "%s%c%s", len > 0 ? " " : "", sign, name);
    assert_true(n > 0 && (size_t)n < sizeof(g_log) - len);
}

static sk_status fake_create(sk_di *di, void **out, void *ctx)
{
    fake *f = ctx;
    obj *o;

    for (size_t i = 0; i < MAX_DEPS && f->deps[i] != NULL; i++) {
        void *dep = NULL;
        sk_status st = sk_di_resolve(di, f->deps[i], &dep);
        if (st != SK_OK && f->is_deps_optional) {
            continue;
        }
        if (st != SK_OK) {
            return st; /* passed on untouched, as most providers do */
        }
        assert_non_null(dep);
    }
    if (f->fail_st != SK_OK) {
        return SK_FAIL(f->fail_st, "%s: injected failure", f->name);
    }
    if (f->return_null) {
        *out = NULL;
        return SK_OK;
    }
    o = sk_malloc(sizeof(*o));
    if (o == NULL) {
        return SK_FAIL(SK_ENOMEM, "%s: allocating", f->name);
    }
    o->f = f;
    o->serial = ++f->n_created;
    log_event('+', f->name);
    *out = o;
    return SK_OK;
}

static void fake_destroy(void *p, void *ctx)
{
    fake *f = ctx;
    obj *o = p;

    assert_ptr_equal(o->f, f);
    f->n_destroyed++;
    log_event('-', f->name);
    sk_free(o);
}

static int setup(void **state)
{
    (void)state;
    g_log[0] = '\0';
    sk_error_clear();
    sk_test_fail_alloc_at(-1);
    return 0;
}

static sk_di *new_di(void)
{
    sk_di *di = NULL;
    assert_int_equal(sk_di_create(&di), SK_OK);
    assert_non_null(di);
    return di;
}

static void reg(sk_di *di, fake *f, sk_di_lifetime lt)
{
    assert_int_equal(sk_di_register(di, f->name, lt, fake_create, fake_destroy, f), SK_OK);
}

static void assert_msg_contains(const char *needle)
{
    const char *msg = sk_error_message();
    if (strstr(msg, needle) == NULL) {
        fail_msg("error message \"%s\" does not contain \"%s\"", msg, needle);
    }
}

/* ---------------------------------------------------------------- create / destroy */

static void test_sk_di_create_null_out(void **state)
{
    (void)state;
    assert_int_equal(sk_di_create(NULL), SK_EINVAL);
    assert_msg_contains("sk_di_create: out must not be NULL");
}

static void test_sk_di_create_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_di *di = (sk_di *)&n; /* must be reset to NULL on failure */
        sk_test_fail_alloc_at(n);
        sk_status st = sk_di_create(&di);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            assert_non_null(di);
            sk_di_destroy(di);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(di);
        assert_msg_contains("sk_di_create");
    }
}

static void test_sk_di_destroy_null(void **state)
{
    (void)state;
    sk_di_destroy(NULL);
}

static void test_sk_di_destroy_empty(void **state)
{
    (void)state;
    sk_di_destroy(new_di());
}

/* ---------------------------------------------------------------- register */

static void test_sk_di_register_success(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake a = { .name = "a" };

    assert_false(sk_di_has(di, "a"));
    reg(di, &a, SK_DI_SINGLETON);
    assert_true(sk_di_has(di, "a"));
    assert_false(sk_di_has(di, "b"));
    /* Registering does not create anything. */
    assert_int_equal(a.n_created, 0);
    /* A provider without a destroy function is fine. */
    assert_int_equal(sk_di_register(di, "b", SK_DI_TRANSIENT, fake_create, NULL, &a), SK_OK);
    assert_true(sk_di_has(di, "b"));
    sk_di_destroy(di);
    assert_string_equal(g_log, "");
}

static void test_sk_di_register_null_args(void **state)
{
    (void)state;
    sk_di *di = new_di();

    assert_int_equal(sk_di_register(NULL, "a", SK_DI_SINGLETON, fake_create, NULL, NULL),
                     SK_EINVAL);
    assert_msg_contains("sk_di_register: di must not be NULL");
    assert_int_equal(sk_di_register(di, NULL, SK_DI_SINGLETON, fake_create, NULL, NULL), SK_EINVAL);
    assert_msg_contains("sk_di_register: name must not be NULL");
    assert_int_equal(sk_di_register(di, "a", SK_DI_SINGLETON, NULL, NULL, NULL), SK_EINVAL);
    assert_msg_contains("sk_di_register: create must not be NULL");
    assert_int_equal(sk_di_register(di, "a", (sk_di_lifetime)7, fake_create, NULL, NULL),
                     SK_EINVAL);
    assert_msg_contains("lifetime must be SK_DI_SINGLETON or SK_DI_TRANSIENT, got 7");
    assert_false(sk_di_has(di, "a"));
    sk_di_destroy(di);
}

static void test_sk_di_register_name_lengths(void **state)
{
    (void)state;
    sk_di *di = new_di();
    char name[SK_DI_MAX_NAME + 2];

    assert_int_equal(sk_di_register(di, "", SK_DI_SINGLETON, fake_create, NULL, NULL), SK_EINVAL);
    assert_msg_contains("name must not be empty");

    assert_int_equal(sk_di_register(di, "x", SK_DI_SINGLETON, fake_create, NULL, NULL), SK_OK);

    memset(name, 'm', SK_DI_MAX_NAME);
    name[SK_DI_MAX_NAME] = '\0';
    assert_int_equal(sk_di_register(di, name, SK_DI_SINGLETON, fake_create, NULL, NULL), SK_OK);
    assert_true(sk_di_has(di, name));

    memset(name, 'n', SK_DI_MAX_NAME + 1);
    name[SK_DI_MAX_NAME + 1] = '\0';
    assert_int_equal(sk_di_register(di, name, SK_DI_SINGLETON, fake_create, NULL, NULL), SK_EINVAL);
    assert_msg_contains("name must be at most 64 bytes");
    assert_false(sk_di_has(di, name));

    assert_int_equal(sk_di_register(di, "a\nb", SK_DI_SINGLETON, fake_create, NULL, NULL),
                     SK_EINVAL);
    assert_msg_contains("control character at byte 1");
    sk_di_destroy(di);
}

static void test_sk_di_register_duplicate(void **state)
{
    (void)state;
    sk_di *di = new_di();
    int value = 1;

    assert_int_equal(sk_di_register(di, "bus", SK_DI_SINGLETON, fake_create, NULL, NULL), SK_OK);
    assert_int_equal(sk_di_register(di, "bus", SK_DI_TRANSIENT, fake_create, NULL, NULL),
                     SK_EEXIST);
    assert_msg_contains("provider \"bus\" is already registered");
    assert_int_equal(sk_di_register_value(di, "bus", &value), SK_EEXIST);
    assert_msg_contains("sk_di_register_value: provider \"bus\" is already registered");
    assert_int_equal(sk_di_register_value(di, "cfg", &value), SK_OK);
    assert_int_equal(sk_di_register(di, "cfg", SK_DI_SINGLETON, fake_create, NULL, NULL),
                     SK_EEXIST);
    sk_di_destroy(di);
}

static void test_sk_di_register_every_alloc_failure(void **state)
{
    (void)state;
    /* Enough providers to grow the tables more than once. */
    enum { N = 20 };

    for (long n = 0;; n++) {
        sk_di *di = new_di();
        char name[16];
        sk_status st = SK_OK;
        int i;

        sk_test_fail_alloc_at(n);
        for (i = 0; i < N; i++) {
            snprintf(name, sizeof(name), "p%d", i);
            st = sk_di_register(di, name, SK_DI_SINGLETON, fake_create, NULL, NULL);
            if (st != SK_OK) {
                break;
            }
        }
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_di_destroy(di);
            assert_true(n > 0);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_msg_contains("sk_di_register");
        /* The failed name is not registered, the earlier ones are, and the
         * container still works. */
        assert_false(sk_di_has(di, name));
        for (int j = 0; j < i; j++) {
            snprintf(name, sizeof(name), "p%d", j);
            assert_true(sk_di_has(di, name));
        }
        assert_int_equal(sk_di_register(di, "later", SK_DI_SINGLETON, fake_create, NULL, NULL),
                         SK_OK);
        sk_di_destroy(di);
    }
}

/* ---------------------------------------------------------------- register_value */

static void test_sk_di_register_value_success(void **state)
{
    (void)state;
    sk_di *di = new_di();
    int cfg = 42; /* on the stack: the container must never free it */
    void *got = NULL;

    assert_int_equal(sk_di_register_value(di, "cfg", &cfg), SK_OK);
    assert_true(sk_di_has(di, "cfg"));
    assert_int_equal(sk_di_resolve(di, "cfg", &got), SK_OK);
    assert_ptr_equal(got, &cfg);
    got = NULL;
    assert_int_equal(sk_di_resolve(di, "cfg", &got), SK_OK);
    assert_ptr_equal(got, &cfg);
    sk_di_destroy(di);
    assert_int_equal(cfg, 42);
}

static void test_sk_di_register_value_used_as_dependency(void **state)
{
    (void)state;
    sk_di *di = new_di();
    int cfg = 0;
    fake app = { .name = "app", .deps = { "cfg" } };
    void *got = NULL;

    assert_int_equal(sk_di_register_value(di, "cfg", &cfg), SK_OK);
    reg(di, &app, SK_DI_SINGLETON);
    assert_int_equal(sk_di_resolve(di, "app", &got), SK_OK);
    sk_di_destroy(di);
    /* Only the provider's object is torn down, never the value. */
    assert_string_equal(g_log, "+app -app");
}

static void test_sk_di_register_value_null_args(void **state)
{
    (void)state;
    sk_di *di = new_di();
    int v = 0;
    char name[SK_DI_MAX_NAME + 2];

    assert_int_equal(sk_di_register_value(NULL, "v", &v), SK_EINVAL);
    assert_msg_contains("sk_di_register_value: di must not be NULL");
    assert_int_equal(sk_di_register_value(di, NULL, &v), SK_EINVAL);
    assert_msg_contains("sk_di_register_value: name must not be NULL");
    assert_int_equal(sk_di_register_value(di, "v", NULL), SK_EINVAL);
    assert_msg_contains("sk_di_register_value: value must not be NULL");
    assert_int_equal(sk_di_register_value(di, "", &v), SK_EINVAL);
    memset(name, 'v', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(sk_di_register_value(di, name, &v), SK_EINVAL);
    assert_msg_contains("at most 64 bytes");
    assert_false(sk_di_has(di, "v"));
    sk_di_destroy(di);
}

static void test_sk_di_register_value_every_alloc_failure(void **state)
{
    (void)state;
    int v = 0;

    for (long n = 0;; n++) {
        sk_di *di = new_di();
        sk_test_fail_alloc_at(n);
        sk_status st = sk_di_register_value(di, "v", &v);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            assert_true(sk_di_has(di, "v"));
            sk_di_destroy(di);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_false(sk_di_has(di, "v"));
        sk_di_destroy(di);
    }
}

/* ---------------------------------------------------------------- resolve */

static void test_sk_di_resolve_singleton_created_once(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake bus = { .name = "bus" };
    void *a = NULL;
    void *b = NULL;

    reg(di, &bus, SK_DI_SINGLETON);
    assert_int_equal(sk_di_resolve(di, "bus", &a), SK_OK);
    assert_int_equal(sk_di_resolve(di, "bus", &b), SK_OK);
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_int_equal(bus.n_created, 1);
    sk_di_destroy(di);
    assert_int_equal(bus.n_destroyed, 1);
    assert_string_equal(g_log, "+bus -bus");
}

static void test_sk_di_resolve_transient_created_each_time(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake req = { .name = "req" };
    void *a = NULL;
    void *b = NULL;

    reg(di, &req, SK_DI_TRANSIENT);
    assert_int_equal(sk_di_resolve(di, "req", &a), SK_OK);
    assert_int_equal(sk_di_resolve(di, "req", &b), SK_OK);
    assert_ptr_not_equal(a, b);
    assert_int_equal(((obj *)a)->serial, 1);
    assert_int_equal(((obj *)b)->serial, 2);
    sk_di_destroy(di);
    /* The container destroys every transient too. */
    assert_int_equal(req.n_destroyed, 2);
}

static void test_sk_di_resolve_dependency_order_and_teardown(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake bus = { .name = "bus" };
    fake store = { .name = "store" };
    fake relay = { .name = "relay", .deps = { "bus", "store" } };
    fake handler = { .name = "handler", .deps = { "store", "log" } };
    fake logger = { .name = "log" };
    fake app = { .name = "app", .deps = { "relay", "handler", "handler" } };
    void *got = NULL;

    /* Registration order is deliberately not the dependency order. */
    reg(di, &app, SK_DI_SINGLETON);
    reg(di, &handler, SK_DI_TRANSIENT);
    reg(di, &relay, SK_DI_SINGLETON);
    reg(di, &logger, SK_DI_SINGLETON);
    reg(di, &store, SK_DI_SINGLETON);
    reg(di, &bus, SK_DI_SINGLETON);

    assert_int_equal(sk_di_resolve(di, "app", &got), SK_OK);
    assert_ptr_equal(((obj *)got)->f, &app);
    assert_string_equal(g_log, "+bus +store +relay +log +handler +handler +app");
    assert_int_equal(store.n_created, 1);
    assert_int_equal(handler.n_created, 2);

    /* Resolving again creates nothing but a new transient. */
    assert_int_equal(sk_di_resolve(di, "app", &got), SK_OK);
    assert_int_equal(sk_di_resolve(di, "handler", &got), SK_OK);
    assert_string_equal(g_log, "+bus +store +relay +log +handler +handler +app +handler");

    g_log[0] = '\0';
    sk_di_destroy(di);
    assert_string_equal(g_log, "-handler -app -handler -handler -log -relay -store -bus");
    assert_int_equal(handler.n_destroyed, 3);
    assert_int_equal(bus.n_destroyed, 1);
}

static void test_sk_di_resolve_cycle_names_whole_cycle(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake app = { .name = "app", .deps = { "store" } };
    fake store = { .name = "store", .deps = { "relay" } };
    fake relay = { .name = "relay", .deps = { "bus" } };
    fake bus = { .name = "bus", .deps = { "store" } };
    void *got = (void *)&app;

    reg(di, &app, SK_DI_SINGLETON);
    reg(di, &store, SK_DI_SINGLETON);
    reg(di, &relay, SK_DI_TRANSIENT);
    reg(di, &bus, SK_DI_SINGLETON);

    assert_int_equal(sk_di_resolve(di, "app", &got), SK_ESTATE);
    assert_null(got);
    /* The cycle, not the path that led to it, and passed up unchanged. */
    assert_string_equal(sk_error_message(), "dependency cycle: store -> relay -> bus -> store");
    assert_int_equal(sk_error_status(), SK_ESTATE);

    /* Entered from the middle of the cycle, the cycle starts there. */
    assert_int_equal(sk_di_resolve(di, "bus", &got), SK_ESTATE);
    assert_string_equal(sk_error_message(), "dependency cycle: bus -> store -> relay -> bus");
    assert_string_equal(g_log, "");
    sk_di_destroy(di);
    assert_string_equal(g_log, "");
}

static void test_sk_di_resolve_self_cycle(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake self = { .name = "self", .deps = { "self" } };
    void *got = NULL;

    reg(di, &self, SK_DI_SINGLETON);
    assert_int_equal(sk_di_resolve(di, "self", &got), SK_ESTATE);
    assert_string_equal(sk_error_message(), "dependency cycle: self -> self");
    sk_di_destroy(di);
}

static void test_sk_di_resolve_long_cycle_truncated(void **state)
{
    (void)state;
    enum { N = 20 };
    sk_di *di = new_di();
    static char names[N][SK_DI_MAX_NAME + 1];
    fake f[N];
    void *got = NULL;

    memset(f, 0, sizeof(f));
    for (int i = 0; i < N; i++) {
        memset(names[i], 'a' + i, SK_DI_MAX_NAME);
        names[i][SK_DI_MAX_NAME] = '\0';
    }
    for (int i = 0; i < N; i++) {
        f[i].name = names[i];
        f[i].deps[0] = names[(i + 1) % N];
        reg(di, &f[i], SK_DI_SINGLETON);
    }
    assert_int_equal(sk_di_resolve(di, names[0], &got), SK_ESTATE);
    const char *msg = sk_error_message();
    assert_true(strncmp(msg, "dependency cycle: aaaa", 22) == 0);
    assert_string_equal(msg + strlen(msg) - 3, "...");
    sk_di_destroy(di);
}

static void test_sk_di_resolve_missing_names_asker(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake app = { .name = "app", .deps = { "relay" } };
    fake relay = { .name = "relay", .deps = { "store", "bus" } };
    fake store = { .name = "store" };
    void *got = NULL;

    reg(di, &app, SK_DI_SINGLETON);
    reg(di, &relay, SK_DI_SINGLETON);
    reg(di, &store, SK_DI_SINGLETON);

    assert_int_equal(sk_di_resolve(di, "app", &got), SK_ENOTFOUND);
    assert_null(got);
    assert_string_equal(sk_error_message(), "provider \"bus\" not found (needed by \"relay\")");

    /* Asked for directly, there is nobody to name. */
    assert_int_equal(sk_di_resolve(di, "bus", &got), SK_ENOTFOUND);
    assert_string_equal(sk_error_message(), "provider \"bus\" not found");

    /* What was created before the failure is kept and torn down. */
    assert_string_equal(g_log, "+store");
    sk_di_destroy(di);
    assert_string_equal(g_log, "+store -store");
}

static void test_sk_di_resolve_create_failure_wrapped_with_chain(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake app = { .name = "app", .deps = { "store", "relay" } };
    fake store = { .name = "store" };
    fake relay = { .name = "relay", .deps = { "bus" } };
    fake bus = { .name = "bus", .fail_st = SK_EBUS };
    void *got = NULL;

    reg(di, &app, SK_DI_SINGLETON);
    reg(di, &store, SK_DI_SINGLETON);
    reg(di, &relay, SK_DI_SINGLETON);
    reg(di, &bus, SK_DI_SINGLETON);

    assert_int_equal(sk_di_resolve(di, "app", &got), SK_EBUS);
    assert_null(got);
    /* Wrapped once, where it failed, with the whole chain. */
    assert_string_equal(sk_error_message(), "resolving app -> relay -> bus: bus: injected failure");
    assert_int_equal(sk_error_status(), SK_EBUS);

    /* Directly: a chain of one. */
    assert_int_equal(sk_di_resolve(di, "bus", &got), SK_EBUS);
    assert_string_equal(sk_error_message(), "resolving bus: bus: injected failure");

    /* A failed singleton is retried on the next resolve. */
    bus.fail_st = SK_OK;
    assert_int_equal(sk_di_resolve(di, "app", &got), SK_OK);
    assert_string_equal(g_log, "+store +bus +relay +app");
    sk_di_destroy(di);
    assert_string_equal(g_log, "+store +bus +relay +app -app -relay -bus -store");
}

static void test_sk_di_resolve_own_failure_after_swallowed_one(void **state)
{
    (void)state;
    sk_di *di = new_di();
    /* "app" asks for an optional "metrics" (missing) and goes on without it. */
    fake app = { .name = "app", .deps = { "metrics" }, .is_deps_optional = true };
    void *got = NULL;

    reg(di, &app, SK_DI_SINGLETON);
    assert_int_equal(sk_di_resolve(di, "app", &got), SK_OK);
    assert_non_null(got);
    assert_string_equal(g_log, "+app");

    /* Then a transient that swallows a missing dependency and fails itself
     * with another status: its own failure gets the chain. */
    fake job = {
        .name = "job", .deps = { "metrics" }, .is_deps_optional = true, .fail_st = SK_EDB
    };
    reg(di, &job, SK_DI_TRANSIENT);
    assert_int_equal(sk_di_resolve(di, "job", &got), SK_EDB);
    assert_string_equal(sk_error_message(), "resolving job: job: injected failure");
    sk_di_destroy(di);
    assert_string_equal(g_log, "+app -app");
}

static void test_sk_di_resolve_create_without_object(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake bad = { .name = "bad", .return_null = true };
    void *got = NULL;

    reg(di, &bad, SK_DI_SINGLETON);
    assert_int_equal(sk_di_resolve(di, "bad", &got), SK_EINTERNAL);
    assert_null(got);
    assert_msg_contains("\"bad\": create returned SK_OK but no object");
    sk_di_destroy(di);
}

static sk_status bad_status_create(sk_di *di, void **out, void *ctx)
{
    (void)di;
    (void)out;
    (void)ctx;
    return (sk_status)999;
}

static void test_sk_di_resolve_create_unknown_status(void **state)
{
    (void)state;
    sk_di *di = new_di();
    void *got = NULL;

    assert_int_equal(sk_di_register(di, "odd", SK_DI_SINGLETON, bad_status_create, NULL, NULL),
                     SK_OK);
    assert_int_equal(sk_di_resolve(di, "odd", &got), SK_EINTERNAL);
    assert_msg_contains("create returned unknown status 999");
    sk_di_destroy(di);
}

static void test_sk_di_resolve_null_args(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake a = { .name = "a" };
    void *got = (void *)&a;
    char name[SK_DI_MAX_NAME + 2];

    reg(di, &a, SK_DI_SINGLETON);
    assert_int_equal(sk_di_resolve(NULL, "a", &got), SK_EINVAL);
    assert_msg_contains("sk_di_resolve: di must not be NULL");
    assert_null(got);
    got = (void *)&a;
    assert_int_equal(sk_di_resolve(di, NULL, &got), SK_EINVAL);
    assert_msg_contains("sk_di_resolve: name must not be NULL");
    assert_null(got);
    assert_int_equal(sk_di_resolve(di, "a", NULL), SK_EINVAL);
    assert_msg_contains("sk_di_resolve: out must not be NULL");
    assert_int_equal(sk_di_resolve(di, "", &got), SK_EINVAL);
    assert_msg_contains("name must not be empty");
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(sk_di_resolve(di, name, &got), SK_EINVAL);
    assert_msg_contains("at most 64 bytes");
    assert_int_equal(a.n_created, 0);
    sk_di_destroy(di);
}

static void test_sk_di_resolve_without_destroy_fn(void **state)
{
    (void)state;
    sk_di *di = new_di();
    fake a = { .name = "a" };
    void *got = NULL;

    assert_int_equal(sk_di_register(di, "a", SK_DI_TRANSIENT, fake_create, NULL, &a), SK_OK);
    assert_int_equal(sk_di_resolve(di, "a", &got), SK_OK);
    sk_di_destroy(di);
    /* Nothing to destroy it with: it is the provider's to free. */
    assert_string_equal(g_log, "+a");
    sk_free(got);
}

/* Build a graph with transients resolved many times (so the teardown record
 * grows), failing the n-th allocation anywhere in it. */
static void test_sk_di_resolve_every_alloc_failure(void **state)
{
    (void)state;
    enum { N_TRANSIENT = 40 };

    for (long n = 0;; n++) {
        fake bus = { .name = "bus" };
        fake store = { .name = "store" };
        fake relay = { .name = "relay", .deps = { "bus", "store" } };
        fake req = { .name = "req", .deps = { "relay" } };
        sk_di *di = new_di();
        void *got = NULL;
        sk_status st = SK_OK;

        reg(di, &bus, SK_DI_SINGLETON);
        reg(di, &store, SK_DI_SINGLETON);
        reg(di, &relay, SK_DI_SINGLETON);
        reg(di, &req, SK_DI_TRANSIENT);
        g_log[0] = '\0';

        sk_test_fail_alloc_at(n);
        for (int i = 0; i < N_TRANSIENT && st == SK_OK; i++) {
            got = NULL;
            st = sk_di_resolve(di, "req", &got);
        }
        sk_test_fail_alloc_at(-1);
        if (st != SK_OK) {
            assert_int_equal(st, SK_ENOMEM);
            assert_null(got);
        }
        sk_di_destroy(di);
        /* Everything created was destroyed exactly once. */
        assert_int_equal(bus.n_created, bus.n_destroyed);
        assert_int_equal(store.n_created, store.n_destroyed);
        assert_int_equal(relay.n_created, relay.n_destroyed);
        assert_int_equal(req.n_created, req.n_destroyed);
        if (st == SK_OK) {
            assert_int_equal(req.n_created, N_TRANSIENT);
            break;
        }
    }
}

static void test_sk_di_resolve_every_alloc_failure_message(void **state)
{
    (void)state;
    /* The teardown record is the container's own allocation: the failure
     * names the provider and the object is destroyed at once. */
    fake a = { .name = "a" };
    sk_di *di = new_di();
    void *got = NULL;
    sk_status st;

    reg(di, &a, SK_DI_SINGLETON);
    sk_test_fail_alloc_at(1); /* 0: the object, 1: the record */
    st = sk_di_resolve(di, "a", &got);
    sk_test_fail_alloc_at(-1);
    assert_int_equal(st, SK_ENOMEM);
    assert_msg_contains("recording \"a\" for teardown");
    assert_string_equal(g_log, "+a -a");
    assert_int_equal(sk_di_resolve(di, "a", &got), SK_OK);
    sk_di_destroy(di);
    assert_string_equal(g_log, "+a -a +a -a");
}

/* A destroy function that tries to use the container during teardown. */
static sk_status g_teardown_st;

static void resolving_destroy(void *p, void *ctx)
{
    sk_di *di = ctx;
    void *got = NULL;

    g_teardown_st = sk_di_resolve(di, "x", &got);
    sk_free(p);
}

static sk_status plain_create(sk_di *di, void **out, void *ctx)
{
    (void)di;
    (void)ctx;
    *out = sk_malloc(1);
    return *out == NULL ? SK_FAIL(SK_ENOMEM, "plain") : SK_OK;
}

static void test_sk_di_resolve_during_teardown(void **state)
{
    (void)state;
    sk_di *di = new_di();
    void *got = NULL;

    assert_int_equal(sk_di_register(di, "x", SK_DI_SINGLETON, plain_create, resolving_destroy, di),
                     SK_OK);
    assert_int_equal(sk_di_resolve(di, "x", &got), SK_OK);
    g_teardown_st = SK_OK;
    sk_di_destroy(di);
    assert_int_equal(g_teardown_st, SK_ESTATE);
    assert_msg_contains("the container is being destroyed");
}

/* A create function may register further providers. */
static fake g_late = { .name = "late" };

static sk_status registering_create(sk_di *di, void **out, void *ctx)
{
    (void)ctx;
    sk_status st;

    /* Enough registrations to move the resolution stack while it is in use. */
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof(name), "extra%d", i);
        st = sk_di_register(di, name, SK_DI_SINGLETON, plain_create, NULL, NULL);
        if (st != SK_OK) {
            return st;
        }
    }
    st = sk_di_register(di, "late", SK_DI_SINGLETON, fake_create, fake_destroy, &g_late);
    if (st != SK_OK) {
        return st;
    }
    return sk_di_resolve(di, "late", out);
}

static void test_sk_di_register_from_create(void **state)
{
    (void)state;
    sk_di *di = new_di();
    void *got = NULL;

    g_late.n_created = 0;
    g_late.n_destroyed = 0;
    assert_int_equal(sk_di_register(di, "outer", SK_DI_SINGLETON, registering_create, NULL, NULL),
                     SK_OK);
    assert_int_equal(sk_di_resolve(di, "outer", &got), SK_OK);
    assert_ptr_equal(((obj *)got)->f, &g_late);
    assert_true(sk_di_has(di, "extra19"));
    sk_di_destroy(di);
    assert_string_equal(g_log, "+late -late");
}

/* ---------------------------------------------------------------- has */

static void test_sk_di_has_bad_args(void **state)
{
    (void)state;
    sk_di *di = new_di();
    char name[SK_DI_MAX_NAME + 2];

    assert_false(sk_di_has(NULL, "a"));
    assert_false(sk_di_has(di, NULL));
    assert_false(sk_di_has(di, ""));
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_false(sk_di_has(di, name));
    sk_di_destroy(di);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_sk_di_create_null_out, setup),
        cmocka_unit_test_setup(test_sk_di_create_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_di_destroy_null, setup),
        cmocka_unit_test_setup(test_sk_di_destroy_empty, setup),
        cmocka_unit_test_setup(test_sk_di_register_success, setup),
        cmocka_unit_test_setup(test_sk_di_register_null_args, setup),
        cmocka_unit_test_setup(test_sk_di_register_name_lengths, setup),
        cmocka_unit_test_setup(test_sk_di_register_duplicate, setup),
        cmocka_unit_test_setup(test_sk_di_register_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_di_register_from_create, setup),
        cmocka_unit_test_setup(test_sk_di_register_value_success, setup),
        cmocka_unit_test_setup(test_sk_di_register_value_used_as_dependency, setup),
        cmocka_unit_test_setup(test_sk_di_register_value_null_args, setup),
        cmocka_unit_test_setup(test_sk_di_register_value_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_singleton_created_once, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_transient_created_each_time, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_dependency_order_and_teardown, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_cycle_names_whole_cycle, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_self_cycle, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_long_cycle_truncated, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_missing_names_asker, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_create_failure_wrapped_with_chain, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_own_failure_after_swallowed_one, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_create_without_object, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_create_unknown_status, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_null_args, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_without_destroy_fn, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_every_alloc_failure_message, setup),
        cmocka_unit_test_setup(test_sk_di_resolve_during_teardown, setup),
        cmocka_unit_test_setup(test_sk_di_has_bad_args, setup),
    };
    return cmocka_run_group_tests_name("di", tests, NULL, NULL);
}
