/* SPDX-License-Identifier: MIT */
/*
 * A JetStream key-value bucket (nats.c kvStore) and a watcher thread.
 * Entries that expire by the bucket TTL produce no watch event: a watcher
 * sees puts and deletes only, so users that care about expiry (discovery)
 * track it themselves.
 */
#include <string.h>

#include "msg/msg_int.h"

/* How long one kvWatcher_Next waits; bounds sk_kv_watch_stop. */
#define WATCH_POLL_MS 250
/* Longest key accepted. */
#define MAX_KEY_LEN 255

struct sk_kv {
    sk_bus *bus;
    kvStore *kv;
    char *name;
};

struct sk_kv_watch {
    sk_kv *kv;
    kvWatcher *w;
    sk_kv_watch_fn fn;
    void *ctx;
    pthread_t thread;
    bool has_thread;
    _Atomic bool is_stopping;
};

/* Keys: 1..255 of [-/_=.a-zA-Z0-9], not starting or ending with '.'. */
static sk_status key_check(const char *key, const char *fn)
{
    size_t len;

    if (key == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: key must not be NULL", fn);
    }
    len = strnlen(key, MAX_KEY_LEN + 1);
    if (len == 0 || len > MAX_KEY_LEN || key[0] == '.' || key[len - 1] == '.') {
        return SK_FAIL(SK_EINVAL, "%s: key: expected 1..%d characters, not starting or ending "
                                  "with '.'",
                       fn, MAX_KEY_LEN);
    }
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '/' || c == '_' || c == '=' || c == '.')) {
            return SK_FAIL(SK_EINVAL, "%s: key: invalid character 0x%02x at offset %zu", fn,
                           (unsigned)(unsigned char)c, i);
        }
    }
    return SK_OK;
}

sk_status sk_kv_open(sk_kv **out, sk_bus *bus, const char *name, int64_t ttl_ms)
{
    sk_status st = SK_OK;
    sk_kv *kv = NULL;
    natsStatus s;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_open: out must not be NULL");
    }
    *out = NULL;
    if (bus == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_open: bus must not be NULL");
    }
    if (!sk__msg_name_is_valid(name)) {
        return SK_FAIL(SK_EINVAL, "sk_kv_open: name: expected 1..64 of [A-Za-z0-9_-]");
    }
    if (ttl_ms < 0 || ttl_ms > INT64_MAX / 1000000) {
        return SK_FAIL(SK_EINVAL, "sk_kv_open: ttl_ms: expected 0 (no expiry) or a positive "
                                  "number of milliseconds");
    }
    kv = sk_calloc(1, sizeof(*kv));
    if (kv == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_kv_open: allocating");
    }
    kv->bus = bus;
    kv->name = sk_strdup(name);
    if (kv->name == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_kv_open: copying the name");
        goto out;
    }
    s = js_KeyValue(&kv->kv, sk__bus_js(bus), name);
    if (s == NATS_NOT_FOUND) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = name;
        kc.History = 1;
        kc.TTL = ttl_ms * 1000000; /* nanoseconds */
        kc.StorageType = js_FileStorage;
        s = js_CreateKeyValue(&kv->kv, sk__bus_js(bus), &kc);
        if (s != NATS_OK) {
            st = sk__nats_fail(s, 0, "creating key-value bucket");
            st = SK_WRAP(st, "sk_kv_open: %s", name);
            goto out;
        }
    } else if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "opening key-value bucket");
        st = SK_WRAP(st, "sk_kv_open: %s", name);
        goto out;
    }
    *out = kv;
    kv = NULL;
out:
    sk_kv_close(kv);
    return st;
}

void sk_kv_close(sk_kv *kv)
{
    if (kv == NULL) {
        return;
    }
    kvStore_Destroy(kv->kv);
    sk_free(kv->name);
    sk_free(kv);
}

sk_status sk_kv_put(sk_kv *kv, const char *key, sk_slice value)
{
    sk_status st;
    natsStatus s;

    if (kv == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_put: kv must not be NULL");
    }
    if ((st = key_check(key, "sk_kv_put")) != SK_OK) {
        return st;
    }
    if (value.ptr == NULL && value.len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_kv_put: value.ptr must not be NULL");
    }
    if (value.len > SK_MAX_MSG_PAYLOAD) {
        return SK_FAIL(SK_ELIMIT, "sk_kv_put: value of %zu bytes is over %u bytes", value.len,
                       SK_MAX_MSG_PAYLOAD);
    }
    s = kvStore_Put(NULL, kv->kv, key, value.ptr, (int)value.len);
    if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "kv put");
        return SK_WRAP(st, "%s/%s", kv->name, key);
    }
    return SK_OK;
}

sk_status sk_kv_delete(sk_kv *kv, const char *key)
{
    sk_status st;
    natsStatus s;

    if (kv == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_delete: kv must not be NULL");
    }
    if ((st = key_check(key, "sk_kv_delete")) != SK_OK) {
        return st;
    }
    s = kvStore_Delete(kv->kv, key);
    if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "kv delete");
        return SK_WRAP(st, "%s/%s", kv->name, key);
    }
    return SK_OK;
}

sk_status sk_kv_get(sk_kv *kv, const char *key, char **out, size_t *len)
{
    kvEntry *e = NULL;
    sk_status st = SK_OK;
    natsStatus s;

    if (out != NULL) {
        *out = NULL;
    }
    if (len != NULL) {
        *len = 0;
    }
    if (kv == NULL || out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_get: kv and out must not be NULL");
    }
    if ((st = key_check(key, "sk_kv_get")) != SK_OK) {
        return st;
    }
    s = kvStore_Get(&e, kv->kv, key);
    if (s == NATS_NOT_FOUND) {
        return SK_FAIL(SK_ENOTFOUND, "sk_kv_get: %s/%s: no such key", kv->name, key);
    }
    if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "kv get");
        return SK_WRAP(st, "%s/%s", kv->name, key);
    }
    {
        int n = kvEntry_ValueLen(e);
        size_t vlen = n > 0 ? (size_t)n : 0;
        char *copy = sk_malloc(vlen + 1);
        if (copy == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_kv_get: copying the value");
        } else {
            if (vlen > 0) {
                memcpy(copy, kvEntry_Value(e), vlen);
            }
            copy[vlen] = '\0';
            *out = copy;
            if (len != NULL) {
                *len = vlen;
            }
        }
    }
    kvEntry_Destroy(e);
    return st;
}

/* ---------------------------------------------------------------- watch */

static void *watch_main(void *arg)
{
    sk_kv_watch *w = arg;
    int64_t last_log = 0;

    while (!atomic_load(&w->is_stopping)) {
        kvEntry *e = NULL;
        natsStatus s = kvWatcher_Next(&e, w->w, WATCH_POLL_MS);

        if (s == NATS_TIMEOUT) {
            continue;
        }
        if (s != NATS_OK) {
            int64_t now = sk_time_mono_ms();
            if (atomic_load(&w->is_stopping)) {
                break;
            }
            if (last_log == 0 || now - last_log >= 5000) {
                last_log = now;
                SK_LOG_WARN("kv watch %s: %s", w->kv->name, natsStatus_GetText(s));
            }
            if (s == NATS_ILLEGAL_STATE || s == NATS_INVALID_SUBSCRIPTION) {
                break; /* the watcher is gone; nothing more will come */
            }
            continue;
        }
        if (e == NULL) {
            continue; /* marks the end of the initial values */
        }
        {
            kvOperation op = kvEntry_Operation(e);
            int n = kvEntry_ValueLen(e);
            sk_slice v = { (const uint8_t *)kvEntry_Value(e), n > 0 ? (size_t)n : 0 };
            if (v.ptr == NULL) {
                v.ptr = (const uint8_t *)"";
            }
            w->fn(kvEntry_Key(e), v, op == kvOp_Delete || op == kvOp_Purge, w->ctx);
        }
        kvEntry_Destroy(e);
    }
    return NULL;
}

sk_status sk_kv_watch_start(sk_kv_watch **out, sk_kv *kv, const char *pattern, sk_kv_watch_fn fn, void *ctx)
{
    sk_kv_watch *w = NULL;
    sk_status st = SK_OK;
    natsStatus s;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_watch_start: out must not be NULL");
    }
    *out = NULL;
    if (kv == NULL || fn == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_watch_start: kv and fn must not be NULL");
    }
    if ((st = sk__subject_check(pattern, true, "sk_kv_watch_start: pattern")) != SK_OK) {
        return st;
    }
    w = sk_calloc(1, sizeof(*w));
    if (w == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_kv_watch_start: allocating");
    }
    w->kv = kv;
    w->fn = fn;
    w->ctx = ctx;
    s = kvStore_Watch(&w->w, kv->kv, pattern, NULL);
    if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "kv watch");
        st = SK_WRAP(st, "sk_kv_watch_start: %s", kv->name);
        goto out;
    }
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        st = SK_FAIL(SK_EINTERNAL, "sk_kv_watch_start: creating the watch thread");
        goto out;
    }
    w->has_thread = true;
    *out = w;
    w = NULL;
out:
    sk_kv_watch_stop(w);
    return st;
}

void sk_kv_watch_stop(sk_kv_watch *w)
{
    if (w == NULL) {
        return;
    }
    atomic_store(&w->is_stopping, true);
    if (w->w != NULL) {
        SK_IGNORE(kvWatcher_Stop(w->w)); /* wakes kvWatcher_Next; failure means already stopped */
    }
    if (w->has_thread) {
        pthread_join(w->thread, NULL);
    }
    kvWatcher_Destroy(w->w);
    sk_free(w);
}
