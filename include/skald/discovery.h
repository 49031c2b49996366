/* SPDX-License-Identifier: MIT */
/*
 * discovery: service instances register themselves in a NATS KV bucket
 * ("skald_instances", key "<service>.<instance>") with a TTL; a heartbeat
 * re-puts the entry, clients watch the bucket and drop an entry whose
 * heartbeat is older than the TTL.
 */
#ifndef SK_DISCOVERY_H
#define SK_DISCOVERY_H

#include <skald/core.h>
#include <skald/msg.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SK_DISCOVERY_BUCKET "skald_instances"

/** One registered instance. Strings borrowed (valid during a callback / until the next list). */
typedef struct sk_instance {
    const char *service;
    const char *instance; /* e.g. "order-1" */
    const char *address;  /* "127.0.0.1:41234" of its internal HTTPS listener */
    bool is_ready;
    int pid;
    int64_t heartbeat_ms; /* wall clock of the last heartbeat */
} sk_instance;

typedef struct sk_registry sk_registry;

/** Open the bucket (created when missing) with entry TTL @p ttl_ms (0 = 6000). */
SK_API SK_NODISCARD sk_status sk_registry_open(sk_registry **out, sk_bus *bus, int64_t ttl_ms);
/** Deregister what this process registered, stop heartbeats and watches. NULL-safe. */
SK_API void sk_registry_close(sk_registry *r);

/** Register this process's instance and heartbeat every ttl/3 on a thread. Strings copied. */
SK_API SK_NODISCARD sk_status sk_registry_register(sk_registry *r, const sk_instance *self);
/** Change the readiness this instance announces (sent with the next heartbeat, and now). */
SK_API void sk_registry_set_ready(sk_registry *r, bool is_ready);

/**
 * Called with the full current list of live instances of @p service
 * whenever it changes (including when an entry's TTL passes). On a
 * discovery thread.
 */
typedef void (*sk_registry_watch_fn)(const char *service, const sk_instance *instances, size_t n, void *ctx);
SK_API SK_NODISCARD sk_status sk_registry_watch(sk_registry *r, const char *service, sk_registry_watch_fn fn, void *ctx);

/**
 * Snapshot of every live instance.
 * @param[out] out owned array, free with sk_registry_list_free.
 */
SK_API SK_NODISCARD sk_status sk_registry_list(sk_registry *r, sk_instance **out, size_t *n);
SK_API void sk_registry_list_free(sk_instance *list, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* SK_DISCOVERY_H */
