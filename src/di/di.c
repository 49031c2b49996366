/* SPDX-License-Identifier: MIT */
/*
 * Dependency-injection container. Providers are kept in registration order;
 * a resolution stack holds the providers whose create function is running, so
 * a name met again on that stack is a cycle and the stack itself is the chain
 * named in errors. Every object a create function returns (with a destroy
 * function) is recorded in creation order, and teardown walks that record
 * backwards, so an object always dies before the dependencies it was built on.
 */
#include <stdio.h>
#include <string.h>

#include <skald/core.h>
#include <skald/di.h>

typedef struct provider {
    char name[SK_DI_MAX_NAME + 1];
    sk_di_lifetime lifetime;
    sk_di_create_fn create; /* NULL for a value registered with sk_di_register_value */
    sk_di_destroy_fn destroy;
    void *ctx;
    void *instance;    /* the singleton or the value, once there is one */
    bool has_instance; /* instance is set (singletons and values only) */
    bool is_resolving; /* on the resolution stack right now */
} provider;

/* One running create function. */
typedef struct frame {
    provider *p;
    bool has_nested_failure; /* a resolve made by this create function failed */
    sk_status nested_st;     /* ... with this status */
} frame;

/* One created object, for teardown. */
typedef struct created {
    void *obj;
    sk_di_destroy_fn destroy;
    void *ctx;
} created;

struct sk_di {
    provider **providers; /* registration order; each provider allocated on its own */
    size_t n_providers;
    size_t cap_providers;
    /* Resolution stack. A provider is on it at most once (a second time is a
     * cycle), so cap_stack >= n_providers is reserved at registration and
     * resolving never allocates for it. */
    frame *stack;
    size_t depth;
    size_t cap_stack;
    created *records; /* creation order */
    size_t n_records;
    size_t cap_records;
    bool is_closing; /* sk_di_destroy is running */
};

/* Room for the chain or cycle text in an error message; longer ones end in "...". */
#define CHAIN_TEXT_MAX 768

/* Check a provider name: 1..SK_DI_MAX_NAME bytes, no control characters. */
static sk_status check_name(const char *fn, const char *name)
{
    size_t len;

    if (name == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: name must not be NULL", fn);
    }
    len = strnlen(name, SK_DI_MAX_NAME + 1);
    if (len == 0) {
        return SK_FAIL(SK_EINVAL, "%s: name must not be empty", fn);
    }
    if (len > SK_DI_MAX_NAME) {
        return SK_FAIL(SK_EINVAL, "%s: name must be at most %d bytes", fn, SK_DI_MAX_NAME);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f) {
            return SK_FAIL(SK_EINVAL, "%s: name contains a control character at byte %zu", fn, i);
        }
    }
    return SK_OK;
}

static provider *find(const sk_di *di, const char *name)
{
    for (size_t i = 0; i < di->n_providers; i++) {
        if (strcmp(di->providers[i]->name, name) == 0) {
            return di->providers[i];
        }
    }
    return NULL;
}

/* Append @p s to the text in @p out (size CHAIN_TEXT_MAX), ending in "..." when full. */
static void text_add(char *out, size_t *len, const char *s)
{
    size_t room = CHAIN_TEXT_MAX - 1 - *len;
    size_t n = strlen(s);

    if (*len >= CHAIN_TEXT_MAX - 1) {
        return;
    }
    if (n > room) {
        /* Truncate and mark, keeping room for the dots. */
        size_t keep = room > 3 ? room - 3 : 0;
        memcpy(out + *len, s, keep);
        *len += keep;
        memcpy(out + *len, "...", room - keep);
        *len += room - keep;
    } else {
        memcpy(out + *len, s, n);
        *len += n;
    }
    out[*len] = '\0';
}

/* "a -> b -> c": the stack from @p from to the top, then @p last. */
static void chain_text(const sk_di *di, size_t from, const char *last, char out[CHAIN_TEXT_MAX])
{
    size_t len = 0;

    out[0] = '\0';
    for (size_t i = from; i < di->depth; i++) {
        text_add(out, &len, di->stack[i].p->name);
        text_add(out, &len, " -> ");
    }
    text_add(out, &len, last);
}

sk_status sk_di_create(sk_di **out)
{
    sk_di *di;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_di_create: out must not be NULL");
    }
    *out = NULL;
    di = sk_calloc(1, sizeof(*di));
    if (di == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_di_create: allocating the container");
    }
    *out = di;
    return SK_OK;
}

void sk_di_destroy(sk_di *di)
{
    if (di == NULL) {
        return;
    }
    di->is_closing = true;
    for (size_t i = di->n_records; i > 0; i--) {
        created *r = &di->records[i - 1];
        r->destroy(r->obj, r->ctx);
    }
    for (size_t i = 0; i < di->n_providers; i++) {
        sk_free(di->providers[i]);
    }
    sk_free(di->records);
    sk_free(di->stack);
    sk_free(di->providers);
    sk_free(di);
}

/* Make room for one more provider (and its resolution-stack frame). */
static sk_status reserve_provider(sk_di *di, const char *fn)
{
    size_t want = di->n_providers + 1;

    if (want > di->cap_providers) {
        size_t cap = di->cap_providers == 0 ? 8 : di->cap_providers * 2;
        size_t bytes;
        provider **p;

        if (__builtin_mul_overflow(cap, sizeof(*p), &bytes)) {
            return SK_FAIL(SK_ELIMIT, "%s: too many providers", fn);
        }
        p = sk_realloc(di->providers, bytes);
        if (p == NULL) {
            return SK_FAIL(SK_ENOMEM, "%s: growing the provider table", fn);
        }
        di->providers = p;
        di->cap_providers = cap;
    }
    if (want > di->cap_stack) {
        size_t cap = di->cap_providers;
        size_t bytes;
        frame *s;

        if (__builtin_mul_overflow(cap, sizeof(*s), &bytes)) {
            return SK_FAIL(SK_ELIMIT, "%s: too many providers", fn);
        }
        s = sk_realloc(di->stack, bytes);
        if (s == NULL) {
            return SK_FAIL(SK_ENOMEM, "%s: growing the resolution stack", fn);
        }
        di->stack = s;
        di->cap_stack = cap;
    }
    return SK_OK;
}

/*
 * Validate, then add a provider; shared by sk_di_register and
 * sk_di_register_value. Returns the new provider, or NULL with *st set.
 */
static provider *add_provider(sk_di *di, const char *fn, const char *name, sk_status *st)
{
    provider *p;

    if (di == NULL) {
        *st = SK_FAIL(SK_EINVAL, "%s: di must not be NULL", fn);
        return NULL;
    }
    *st = check_name(fn, name);
    if (*st != SK_OK) {
        return NULL;
    }
    if (di->is_closing) {
        *st = SK_FAIL(SK_ESTATE, "%s: the container is being destroyed", fn);
        return NULL;
    }
    if (find(di, name) != NULL) {
        *st = SK_FAIL(SK_EEXIST, "%s: provider \"%s\" is already registered", fn, name);
        return NULL;
    }
    *st = reserve_provider(di, fn);
    if (*st != SK_OK) {
        return NULL;
    }
    p = sk_calloc(1, sizeof(*p));
    if (p == NULL) {
        *st = SK_FAIL(SK_ENOMEM, "%s: allocating provider \"%s\"", fn, name);
        return NULL;
    }
    memcpy(p->name, name, strlen(name) + 1);
    di->providers[di->n_providers++] = p;
    return p;
}

sk_status sk_di_register(sk_di *di,
                         const char *name,
                         sk_di_lifetime lifetime,
                         sk_di_create_fn create,
                         sk_di_destroy_fn destroy,
                         void *ctx)
{
    static const char fn[] = "sk_di_register";
    sk_status st = SK_OK;
    provider *p;

    if (create == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: create must not be NULL", fn);
    }
    if (lifetime != SK_DI_SINGLETON && lifetime != SK_DI_TRANSIENT) {
        return SK_FAIL(SK_EINVAL, "%s: lifetime must be SK_DI_SINGLETON or SK_DI_TRANSIENT, got %d",
                       fn, (int)lifetime);
    }
    p = add_provider(di, fn, name, &st);
    if (p == NULL) {
        return st;
    }
    p->lifetime = lifetime;
    p->create = create;
    p->destroy = destroy;
    p->ctx = ctx;
    return SK_OK;
}

sk_status sk_di_register_value(sk_di *di, const char *name, void *value)
{
    static const char fn[] = "sk_di_register_value";
    sk_status st = SK_OK;
    provider *p;

    if (value == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: value must not be NULL", fn);
    }
    p = add_provider(di, fn, name, &st);
    if (p == NULL) {
        return st;
    }
    p->lifetime = SK_DI_SINGLETON;
    p->instance = value;
    p->has_instance = true;
    return SK_OK;
}

/* Record a created object for teardown; on failure the object is destroyed at once. */
static sk_status record_created(sk_di *di, provider *p, void *obj)
{
    if (p->destroy == NULL) {
        return SK_OK; /* nothing to do at teardown */
    }
    if (di->n_records == di->cap_records) {
        size_t cap = di->cap_records == 0 ? 16 : di->cap_records * 2;
        size_t bytes;
        created *r = NULL;

        if (!__builtin_mul_overflow(cap, sizeof(*r), &bytes)) {
            r = sk_realloc(di->records, bytes);
        }
        if (r == NULL) {
            p->destroy(obj, p->ctx);
            return SK_FAIL(SK_ENOMEM, "sk_di_resolve: recording \"%s\" for teardown", p->name);
        }
        di->records = r;
        di->cap_records = cap;
    }
    di->records[di->n_records].obj = obj;
    di->records[di->n_records].destroy = p->destroy;
    di->records[di->n_records].ctx = p->ctx;
    di->n_records++;
    return SK_OK;
}

/* Run @p p's create function with @p p on the resolution stack. */
static sk_status run_create(sk_di *di, provider *p, void **out)
{
    char chain[CHAIN_TEXT_MAX];
    sk_status st;
    frame f;
    void *obj = NULL;

    *out = NULL;
    /* Each provider is on the stack at most once and cap_stack >= n_providers. */
    SK_ASSERT(di->depth < di->cap_stack);
    if (di->depth >= di->cap_stack) {
        return SK_EINTERNAL; /* release builds: SK_ASSERT recorded the message */
    }
    di->stack[di->depth].p = p;
    di->stack[di->depth].has_nested_failure = false;
    di->stack[di->depth].nested_st = SK_OK;
    di->depth++;
    p->is_resolving = true;

    st = p->create(di, &obj, p->ctx);

    p->is_resolving = false;
    di->depth--;
    f = di->stack[di->depth];

    if ((unsigned)st >= (unsigned)SK_STATUS_COUNT_) {
        return SK_FAIL(SK_EINTERNAL, "resolving \"%s\": create returned unknown status %d", p->name,
                       (int)st);
    }
    if (st != SK_OK) {
        /* A failure that came up from a nested resolve already carries its
         * chain (it was wrapped where it happened), so it is passed on as is;
         * a failure of this create function itself gets the chain here. */
        if (!(f.has_nested_failure && f.nested_st == st)) {
            chain_text(di, 0, p->name, chain);
            st = SK_WRAP(st, "resolving %s", chain);
        }
        return st;
    }
    if (obj == NULL) {
        return SK_FAIL(SK_EINTERNAL, "resolving \"%s\": create returned SK_OK but no object",
                       p->name);
    }
    st = record_created(di, p, obj);
    if (st != SK_OK) {
        return st;
    }
    *out = obj;
    return SK_OK;
}

sk_status sk_di_resolve(sk_di *di, const char *name, void **out)
{
    static const char fn[] = "sk_di_resolve";
    char chain[CHAIN_TEXT_MAX];
    sk_status st;
    provider *p;
    void *obj = NULL;

    if (out == NULL) {
        st = SK_FAIL(SK_EINVAL, "%s: out must not be NULL", fn);
        goto out;
    }
    *out = NULL;
    if (di == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: di must not be NULL", fn);
    }
    st = check_name(fn, name);
    if (st != SK_OK) {
        goto out;
    }
    if (di->is_closing) {
        st = SK_FAIL(SK_ESTATE, "%s: the container is being destroyed", fn);
        goto out;
    }
    p = find(di, name);
    if (p == NULL) {
        if (di->depth > 0) {
            st = SK_FAIL(SK_ENOTFOUND, "provider \"%s\" not found (needed by \"%s\")", name,
                         di->stack[di->depth - 1].p->name);
        } else {
            st = SK_FAIL(SK_ENOTFOUND, "provider \"%s\" not found", name);
        }
        goto out;
    }
    if (p->has_instance) {
        *out = p->instance;
        return SK_OK;
    }
    if (p->is_resolving) {
        size_t from = 0;
        while (from < di->depth && di->stack[from].p != p) {
            from++;
        }
        chain_text(di, from, p->name, chain);
        st = SK_FAIL(SK_ESTATE, "dependency cycle: %s", chain);
        goto out;
    }
    st = run_create(di, p, &obj);
    if (st != SK_OK) {
        goto out;
    }
    if (p->lifetime == SK_DI_SINGLETON) {
        p->instance = obj;
        p->has_instance = true;
    }
    *out = obj;
out:
    if (st != SK_OK && di != NULL && di->depth > 0) {
        /* Tell the create function that asked that its failure came from here. */
        di->stack[di->depth - 1].has_nested_failure = true;
        di->stack[di->depth - 1].nested_st = st;
    }
    return st;
}

bool sk_di_has(const sk_di *di, const char *name)
{
    if (di == NULL || name == NULL || strnlen(name, SK_DI_MAX_NAME + 1) > SK_DI_MAX_NAME) {
        return false;
    }
    return find(di, name) != NULL;
}
