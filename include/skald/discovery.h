/* SPDX-License-Identifier: MIT */
/*
 * discovery: service instances register themselves in a NATS KV bucket
 * ("skald_instances", key "<service>.<instance>") with a TTL; a heartbeat
 * re-puts the entry, clients watch the bucket and drop an entry whose
 * heartbeat is older than the TTL.
 *
 * Entry value: {"service","instance","address","ready","pid","heartbeat_ms"}.
 * A watcher keeps each entry with the local monotonic time it last saw it
 * put and drops it once that is older than the TTL (nats-server 2.9 sends no
 * watch event when an entry's TTL passes) or when its key is deleted. A
 * registry that registers an instance measures that age by the newest
 * heartbeat its watch has delivered (its own included), not by its local
 * clock, so it expires nothing while its watch delivers nothing (see
 * src/discovery/registry.c).
 */
#ifndef SK_DISCOVERY_H
#define SK_DISCOVERY_H

#include <skald/core.h>
#include <skald/msg.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SK_DISCOVERY_BUCKET "skald_instances"
/** Entry TTL used when sk_registry_open gets 0, and the accepted range. */
#define SK_DISCOVERY_DEFAULT_TTL_MS 6000
#define SK_DISCOVERY_MIN_TTL_MS     100
#define SK_DISCOVERY_MAX_TTL_MS     3600000
/** Longest service or instance name ([a-z0-9-]{1,64}), in bytes. */
#define SK_DISCOVERY_MAX_NAME 64
/** Longest address ("host:port"), in bytes. */
#define SK_DISCOVERY_MAX_ADDRESS 260

/** One registered instance. Strings borrowed (valid during a callback / until the next list). */
typedef struct sk_instance {
    const char *service;
    const char *instance; /* e.g. "order-1" */
    const char *address;  /* "127.0.0.1:41234" of its internal HTTPS listener */
    bool is_ready;
    int pid;
    int64_t heartbeat_ms; /* wall clock of the last heartbeat */
} sk_instance;

/**
 * A registry: registers at most one instance of this process (heartbeat
 * thread) and watches the bucket (one KV watcher plus one discovery thread
 * that expires entries and calls the watch callbacks), both started on
 * demand. Thread-safe, except that sk_registry_close must not race with
 * other calls on the same registry nor be called from a watch callback.
 */
typedef struct sk_registry sk_registry;

/**
 * Open the bucket (created when missing) with entry TTL @p ttl_ms (0 = 6000).
 * @param bus borrowed; must outlive the registry.
 * @param ttl_ms 0 or SK_DISCOVERY_MIN_TTL_MS..SK_DISCOVERY_MAX_TTL_MS.
 * @param[out] out owned, sk_registry_close; NULL on failure.
 * @return SK_OK, SK_EINVAL (NULL argument, TTL out of range), SK_EBUS
 *         (or what sk_kv_open returns), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_registry_open(sk_registry **out, sk_bus *bus, int64_t ttl_ms);
/**
 * Deregister what this process registered (the key is deleted, so watchers
 * drop it at once), stop heartbeats and watches, join the threads. After it
 * returns no callback runs. NULL-safe.
 */
SK_API void sk_registry_close(sk_registry *r);

/**
 * Register this process's instance and heartbeat every ttl/3 on a thread. Strings copied.
 * Calling it again replaces the registration (the old key is deleted when it differs).
 * @param self service and instance [a-z0-9-]{1,64}, address "host:port"
 *        (port 1..65535), pid >= 0 (0 = getpid()); heartbeat_ms is ignored.
 * @return SK_OK, SK_EINVAL (naming the field), SK_EBUS (first put failed;
 *         nothing is registered then), SK_ELIMIT (no thread), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_registry_register(sk_registry *r, const sk_instance *self);
/**
 * Change the readiness this instance announces (sent with the next heartbeat, and now:
 * the put is done before this returns; a failure is logged and the next heartbeat
 * retries). No effect when nothing is registered or @p r is NULL.
 */
SK_API void sk_registry_set_ready(sk_registry *r, bool is_ready);

/**
 * Called with the full current list of live instances of @p service
 * whenever it changes (including when an entry's TTL passes). On a
 * discovery thread.
 * "Changes" means an instance appears or disappears or one of its fields
 * other than heartbeat_ms changes. @p instances is sorted by instance name;
 * it and its strings are borrowed for the call. A newly added watch gets the
 * current list once (when not empty). Callbacks of one registry run one at a
 * time, never with a registry lock held; they may call sk_registry_list,
 * sk_registry_watch and sk_registry_unwatch but not sk_registry_close.
 */
typedef void (*sk_registry_watch_fn)(const char *service,
                                     const sk_instance *instances,
                                     size_t n,
                                     void *ctx);
/**
 * Call @p fn (with @p ctx) whenever the live set of @p service changes, until
 * sk_registry_unwatch or sk_registry_close. Starts the bucket watch on first use.
 * @param service [a-z0-9-]{1,64}; copied.
 * @return SK_OK, SK_EINVAL, SK_EBUS (watch could not start), SK_ELIMIT, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_registry_watch(sk_registry *r,
                                                const char *service,
                                                sk_registry_watch_fn fn,
                                                void *ctx);

/**
 * Remove every watch registered with exactly @p fn and @p ctx (whatever its
 * service). When this returns, no call of @p fn with @p ctx is running and
 * none will start, so @p ctx may be freed: a call in progress on the
 * discovery thread is waited for. Called from inside a watch callback (on
 * the discovery thread) it removes the watches and returns at once without
 * waiting; the callback in progress, including a call of this very watch,
 * runs on to its end. An unknown (@p fn, @p ctx) pair is a no-op. NULL-safe
 * (@p r or @p fn NULL: no effect). Thread-safe; not concurrently with
 * sk_registry_close. Must not be called with a lock that a watch callback
 * of this registry takes, since it may wait for that callback.
 */
SK_API void sk_registry_unwatch(sk_registry *r, sk_registry_watch_fn fn, void *ctx);

/**
 * Snapshot of every live instance, sorted by service then instance name.
 * Starts the bucket watch on first use; that first call may return before
 * the bucket's current entries have arrived (use sk_registry_watch to follow
 * changes).
 * @param[out] out owned array, free with sk_registry_list_free (NULL when empty).
 * @param[out] n number of entries.
 * @return SK_OK, SK_EINVAL, SK_EBUS, SK_ELIMIT, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_registry_list(sk_registry *r, sk_instance **out, size_t *n);
/** Free a list from sk_registry_list. NULL-safe. */
SK_API void sk_registry_list_free(sk_instance *list, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* SK_DISCOVERY_H */
