/* SPDX-License-Identifier: MIT */
/*
 * Upcasters: a registry of functions that each turn the data of one event
 * type from schema version N into N + 1, and sk_msg_upcast, which chains
 * them to bring a received message to the current version of its type. The
 * consumer, projection replay and redriven dead letters all go through
 * sk_msg_upcast, so handlers only ever see current versions. The registry
 * is filled before use and read-only afterwards.
 */
#include <string.h>

#include "msg/msg_int.h"

typedef struct entry {
    char *type;
    int from_version; /* 0: a declared current version, no function */
    int version;      /* declared: the current version */
    sk_upcast_fn fn;
    void *ctx;
} entry;

struct sk_upcasters {
    entry *entries;
    size_t n;
    size_t cap;
};

sk_status sk_upcasters_create(sk_upcasters **out)
{
    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upcasters_create: out must not be NULL");
    }
    *out = sk_calloc(1, sizeof(**out));
    if (*out == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_upcasters_create: allocating the registry");
    }
    return SK_OK;
}

void sk_upcasters_destroy(sk_upcasters *u)
{
    if (u == NULL) {
        return;
    }
    for (size_t i = 0; i < u->n; i++) {
        sk_free(u->entries[i].type);
    }
    sk_free(u->entries);
    sk_free(u);
}

static sk_status type_check(const char *type, const char *fn)
{
    size_t len;

    if (type == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: type must not be NULL", fn);
    }
    len = strlen(type);
    if (len == 0 || len > SK_ENVELOPE_MAX_ATTR) {
        return SK_FAIL(SK_EINVAL, "%s: type: expected 1..%d bytes, got %zu", fn,
                       SK_ENVELOPE_MAX_ATTR, len);
    }
    return SK_OK;
}

static sk_status entry_add(sk_upcasters *u, const entry *e, const char *fn)
{
    if (u->n == SK_UPCASTERS_MAX) {
        return SK_FAIL(SK_ELIMIT, "%s: more than %d entries", fn, SK_UPCASTERS_MAX);
    }
    if (u->n == u->cap) {
        size_t cap = u->cap == 0 ? 8 : u->cap * 2;
        entry *grown = sk_realloc(u->entries, cap * sizeof(*grown));
        if (grown == NULL) {
            return SK_FAIL(SK_ENOMEM, "%s: growing the registry", fn);
        }
        u->entries = grown;
        u->cap = cap;
    }
    u->entries[u->n] = *e;
    u->entries[u->n].type = sk_strdup(e->type);
    if (u->entries[u->n].type == NULL) {
        return SK_FAIL(SK_ENOMEM, "%s: copying the type", fn);
    }
    u->n++;
    return SK_OK;
}

sk_status sk_upcaster_register(
    sk_upcasters *u, const char *type, int from_version, sk_upcast_fn fn, void *ctx)
{
    sk_status st;

    if (u == NULL || fn == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upcaster_register: u and fn must not be NULL");
    }
    if ((st = type_check(type, "sk_upcaster_register")) != SK_OK) {
        return st;
    }
    if (from_version < 1 || from_version >= SK__MAX_SCHEMA_VERSION) {
        return SK_FAIL(SK_EINVAL, "sk_upcaster_register: from_version: expected 1..%d, got %d",
                       SK__MAX_SCHEMA_VERSION - 1, from_version);
    }
    for (size_t i = 0; i < u->n; i++) {
        if (u->entries[i].from_version == from_version && strcmp(u->entries[i].type, type) == 0) {
            return SK_FAIL(SK_EEXIST,
                           "sk_upcaster_register: %.80s already has an upcaster from version %d",
                           type, from_version);
        }
    }
    entry e = { .type = (char *)type, .from_version = from_version, .fn = fn, .ctx = ctx };
    return entry_add(u, &e, "sk_upcaster_register");
}

sk_status sk_upcasters_version_set(sk_upcasters *u, const char *type, int version)
{
    sk_status st;

    if (u == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upcasters_version_set: u must not be NULL");
    }
    if ((st = type_check(type, "sk_upcasters_version_set")) != SK_OK) {
        return st;
    }
    if (version < 1 || version > SK__MAX_SCHEMA_VERSION) {
        return SK_FAIL(SK_EINVAL, "sk_upcasters_version_set: version: expected 1..%d, got %d",
                       SK__MAX_SCHEMA_VERSION, version);
    }
    entry e = { .type = (char *)type, .version = version };
    return entry_add(u, &e, "sk_upcasters_version_set");
}

int sk_upcasters_version(const sk_upcasters *u, const char *type)
{
    int v = 1;

    if (u == NULL || type == NULL) {
        return 1;
    }
    for (size_t i = 0; i < u->n; i++) {
        const entry *e = &u->entries[i];
        if (strcmp(e->type, type) != 0) {
            continue;
        }
        int implied = e->fn != NULL ? e->from_version + 1 : e->version;
        if (implied > v) {
            v = implied;
        }
    }
    return v;
}

static const entry *find(const sk_upcasters *u, const char *type, int from_version)
{
    for (size_t i = 0; i < u->n; i++) {
        const entry *e = &u->entries[i];
        if (e->fn != NULL && e->from_version == from_version && strcmp(e->type, type) == 0) {
            return e;
        }
    }
    return NULL;
}

sk_status sk_msg_upcast(const sk_upcasters *u, sk_message *m, json_t **owned_json)
{
    sk_status st = SK_OK;
    json_t *copy = NULL;
    sk_envelope env;
    int current;

    if (owned_json == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_msg_upcast: owned_json must not be NULL");
    }
    *owned_json = NULL;
    if (m == NULL || m->env.type == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_msg_upcast: m and m->env.type must not be NULL");
    }
    if (!json_is_object(m->json)) {
        return SK_FAIL(SK_EINVAL, "sk_msg_upcast: m->json: expected a JSON object");
    }
    if (u == NULL) {
        return SK_OK;
    }
    current = sk_upcasters_version(u, m->env.type);
    if (m->env.schema_version == current) {
        return SK_OK;
    }
    if (m->env.schema_version > current) {
        return SK_FAIL(SK_EPROTO,
                       "schema version %d of %.80s is newer than this consumer knows (%d): "
                       "deploy a consumer that knows it, then redrive",
                       m->env.schema_version, m->env.type, current);
    }
    if (m->env.schema_version < 1) {
        return SK_FAIL(SK_EPROTO, "schema version %d of %.80s: expected at least 1",
                       m->env.schema_version, m->env.type);
    }
    copy = json_deep_copy(m->json);
    if (copy == NULL) {
        return SK_FAIL(SK_ENOMEM, "upcasting %.80s: copying the data", m->env.type);
    }
    env = m->env;
    while (env.schema_version < current) {
        const entry *e = find(u, env.type, env.schema_version);
        if (e == NULL) {
            st = SK_FAIL(SK_EPROTO, "no upcaster for %.80s from schema version %d (current %d)",
                         env.type, env.schema_version, current);
            goto out;
        }
        st = e->fn(copy, &env, e->ctx);
        if (st != SK_OK) {
            if (sk_error_status() != st) {
                st = SK_FAIL(st, "upcaster returned %s", sk_status_name(st));
            }
            st =
                SK_WRAP(st, "upcasting %.80s from schema version %d", env.type, env.schema_version);
            goto out;
        }
        if (!json_is_object(copy)) {
            st =
                SK_FAIL(SK_EPROTO, "upcasting %.80s from schema version %d: not an object any more",
                        env.type, env.schema_version);
            goto out;
        }
        env.schema_version++;
    }
    m->json = copy;
    m->env.schema_version = current;
    *owned_json = copy;
    copy = NULL;
out:
    json_decref(copy);
    return st;
}
