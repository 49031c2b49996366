/* SPDX-License-Identifier: MIT */
/*
 * Health and readiness checks. The check list only grows, under a mutex;
 * an evaluation takes a snapshot (head and count) under the lock and runs the
 * checks without it, which is safe because nodes are never changed or freed
 * before sk_health_destroy.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "obs/obs_int.h"

typedef struct check {
    struct check *next;
    char name[SK_HEALTH_MAX_NAME + 1];
    sk_health_check_fn fn;
    void *ctx;
} check;

struct sk_health {
    pthread_mutex_t mu; /* protects first, last and n_checks */
    check *first;
    check *last;
    size_t n_checks;
};

static void lock(sk_health *h)
{
    if (pthread_mutex_lock(&h->mu) != 0) {
        abort(); /* only possible on a corrupted mutex */
    }
}

static void unlock(sk_health *h)
{
    if (pthread_mutex_unlock(&h->mu) != 0) {
        abort();
    }
}

sk_status sk_health_create(sk_health **out)
{
    sk_health *h;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_health_create: out must not be NULL");
    }
    *out = NULL;
    h = sk_calloc(1, sizeof(*h));
    if (h == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_health_create: allocating");
    }
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        sk_free(h);
        return SK_FAIL(SK_ENOMEM, "sk_health_create: initialising the mutex");
    }
    *out = h;
    return SK_OK;
}

void sk_health_destroy(sk_health *h)
{
    if (h == NULL) {
        return;
    }
    for (check *c = h->first; c != NULL;) {
        check *next = c->next;
        sk_free(c);
        c = next;
    }
    (void)pthread_mutex_destroy(&h->mu);
    sk_free(h);
}

static bool name_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

sk_status sk_health_add(sk_health *h, const char *name, sk_health_check_fn fn, void *ctx)
{
    sk_status st = SK_OK;
    size_t len;
    check *c = NULL;

    if (h == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_health_add: h must not be NULL");
    }
    if (name == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_health_add: name must not be NULL");
    }
    if (fn == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_health_add: fn must not be NULL");
    }
    len = strnlen(name, SK_HEALTH_MAX_NAME + 1);
    if (len == 0 || len > SK_HEALTH_MAX_NAME) {
        return SK_FAIL(SK_EINVAL, "sk_health_add: name must be 1..%d bytes", SK_HEALTH_MAX_NAME);
    }
    for (size_t i = 0; i < len; i++) {
        if (!name_char_ok(name[i])) {
            return SK_FAIL(SK_EINVAL,
                           "sk_health_add: name must use only [A-Za-z0-9_.:-], got byte 0x%02x at "
                           "%zu",
                           (unsigned)(unsigned char)name[i], i);
        }
    }
    c = sk_calloc(1, sizeof(*c));
    if (c == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_health_add: allocating check \"%s\"", name);
    }
    memcpy(c->name, name, len + 1);
    c->fn = fn;
    c->ctx = ctx;

    lock(h);
    for (const check *o = h->first; o != NULL; o = o->next) {
        if (strcmp(o->name, name) == 0) {
            st = SK_FAIL(SK_EEXIST, "sk_health_add: check \"%s\" is already registered", name);
            goto out;
        }
    }
    if (h->n_checks >= SK_HEALTH_MAX_CHECKS) {
        st = SK_FAIL(SK_ELIMIT, "sk_health_add: at most %d checks (adding \"%s\")",
                     SK_HEALTH_MAX_CHECKS, name);
        goto out;
    }
    if (h->last != NULL) {
        h->last->next = c;
    } else {
        h->first = c;
    }
    h->last = c;
    h->n_checks++;
    c = NULL;
out:
    unlock(h);
    sk_free(c);
    return st;
}

/* A JSON string for a check's reason; bytes that are not ASCII become '?'
 * when the text is not valid UTF-8, so a sloppy check cannot break the document. */
static json_t *reason_string(const char *reason)
{
    char clean[SK_HEALTH_REASON_LEN];
    json_t *s;
    size_t i;

    if (reason[0] == '\0') {
        reason = "check failed";
    }
    s = json_string(reason);
    if (s != NULL) {
        return s;
    }
    for (i = 0; i + 1 < sizeof(clean) && reason[i] != '\0'; i++) {
        clean[i] = (char)(((unsigned char)reason[i] & 0x80) != 0 ? '?' : reason[i]);
    }
    clean[i] = '\0';
    return json_string(clean); /* NULL now means out of memory */
}

static int dump_to_buf(const char *buffer, size_t size, void *data)
{
    return sk_buf_append(data, buffer, size) == SK_OK ? 0 : -1;
}

bool sk_health_evaluate(sk_health *h, sk_buf *out)
{
    const check *c;
    size_t n;
    bool is_ready = true;
    bool is_built = true;
    json_t *root = NULL;
    json_t *checks = NULL;
    size_t start = 0;

    if (h == NULL) {
        (void)SK_FAIL(SK_EINVAL, "sk_health_evaluate: h must not be NULL");
        return false;
    }
    lock(h);
    c = h->first;
    n = h->n_checks;
    unlock(h);

    if (out != NULL) {
        start = out->len;
        checks = json_object();
        is_built = checks != NULL;
    }
    /* Every check runs, even after a failure, so the document lists them all. */
    for (size_t i = 0; i < n; i++) {
        char reason[SK_HEALTH_REASON_LEN];
        bool is_ok;
        json_t *item;

        /* Never read the next pointer of the last node of the snapshot: a
         * concurrent sk_health_add may be writing it. */
        if (i > 0) {
            c = c->next;
        }
        reason[0] = '\0';
        is_ok = c->fn(reason, sizeof(reason), c->ctx);
        reason[sizeof(reason) - 1] = '\0'; /* in case the check did not terminate it */
        if (!is_ok) {
            is_ready = false;
        }
        if (!is_built) {
            continue;
        }
        item = json_object();
        if (item == NULL) {
            is_built = false;
            continue;
        }
        if (json_object_set_new(item, "ok", json_boolean(is_ok)) != 0 ||
            (!is_ok && json_object_set_new(item, "reason", reason_string(reason)) != 0)) {
            json_decref(item);
            is_built = false;
            continue;
        }
        /* Steals item, even when it fails. */
        if (json_object_set_new(checks, c->name, item) != 0) {
            is_built = false;
        }
    }
    if (out == NULL) {
        return is_ready;
    }
    if (is_built) {
        const char *status = is_ready ? "ready" : "not ready";

        root = json_object();
        if (root == NULL || json_object_set_new(root, "status", json_string(status)) != 0) {
            is_built = false;
        } else {
            is_built = json_object_set_new(root, "checks", checks) == 0;
            checks = NULL; /* stolen, even on failure */
        }
    }
    if (!is_built) {
        (void)SK_FAIL(SK_ENOMEM, "sk_health_evaluate: building the health document");
    } else if (json_dump_callback(root, dump_to_buf, out, JSON_COMPACT) != 0) {
        /* sk_buf recorded why (its maximum, or out of memory). */
        sk_status st = sk_error_status() == SK_ELIMIT ? SK_ELIMIT : SK_ENOMEM;
        (void)SK_WRAP(st, "sk_health_evaluate: writing the health document");
        is_built = false;
    }
    json_decref(root);
    json_decref(checks);
    if (!is_built) {
        out->len = start;
        if (out->data != NULL) {
            out->data[start] = '\0';
        }
        return false;
    }
    return is_ready;
}
