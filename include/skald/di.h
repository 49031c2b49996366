/* SPDX-License-Identifier: MIT */
/*
 * di: dependency-injection container. Named providers with singleton or
 * transient lifetime; resolving a name creates its dependencies first (a
 * provider resolves what it needs from inside its create function), a cycle
 * is an error that names the whole cycle, and teardown destroys everything
 * created in reverse creation order.
 */
#ifndef SK_DI_H
#define SK_DI_H

#include <skald/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Container. Caller-serialized: build and resolve from one thread. */
typedef struct sk_di sk_di;

typedef enum sk_di_lifetime {
    SK_DI_SINGLETON = 0, /* created once, on first resolve */
    SK_DI_TRANSIENT = 1  /* created on every resolve; the container still destroys each at teardown */
} sk_di_lifetime;

/**
 * Create the object for a provider. May call sk_di_resolve (and
 * sk_di_register) on @p di for its dependencies, never sk_di_destroy. On
 * success set *out to a non-NULL object; on failure return a status with
 * SK_FAIL (or the status of a failed sk_di_resolve, unchanged); *out is
 * ignored.
 */
typedef sk_status (*sk_di_create_fn)(sk_di *di, void **out, void *ctx);
/** Destroy an object made by the matching create function. */
typedef void (*sk_di_destroy_fn)(void *obj, void *ctx);

/** Longest provider name, in bytes. */
#define SK_DI_MAX_NAME 64

/** @return SK_OK or SK_ENOMEM. */
SK_API SK_NODISCARD sk_status sk_di_create(sk_di **out);
/**
 * Destroy every created object in reverse creation order, then the container.
 * NULL-safe. Destroy functions must not register or resolve (SK_ESTATE).
 */
SK_API void sk_di_destroy(sk_di *di);

/**
 * Register a provider.
 * @param name 1..SK_DI_MAX_NAME bytes, no control characters, unique; copied.
 * @param destroy may be NULL (nothing to free; the objects are then not tracked).
 * @return SK_OK, SK_EINVAL (bad name, NULL create or unknown lifetime), SK_EEXIST
 *         (name taken), SK_ESTATE (during teardown), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_di_register(sk_di *di,
                                             const char *name,
                                             sk_di_lifetime lifetime,
                                             sk_di_create_fn create,
                                             sk_di_destroy_fn destroy,
                                             void *ctx);
/**
 * Register an object built outside the container (a singleton that the
 * container will not destroy).
 * @param name as for sk_di_register; copied.
 * @param value borrowed, non-NULL; must outlive the container.
 * @return SK_OK, SK_EINVAL, SK_EEXIST, SK_ESTATE, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_di_register_value(sk_di *di, const char *name, void *value);

/**
 * Resolve @p name, creating it (and, through its create function, its
 * dependencies) when needed. A singleton whose create function failed is
 * tried again on the next resolve; objects created before the failure stay
 * in the container and are destroyed at teardown.
 * @param[out] out borrowed; valid until sk_di_destroy; NULL on failure.
 * @return SK_OK; SK_EINVAL (NULL argument or bad name); SK_ENOTFOUND naming
 *         the missing provider and who asked for it ("provider \"bus\" not
 *         found (needed by \"relay\")"); SK_ESTATE for a cycle, with the message
 *         "dependency cycle: a -> b -> a", or during teardown; SK_ENOMEM;
 *         SK_EINTERNAL when a create function returns SK_OK without an object;
 *         or the status of a failing create function, its message wrapped once
 *         with the chain ("resolving app -> relay -> bus: <message>").
 */
SK_API SK_NODISCARD sk_status sk_di_resolve(sk_di *di, const char *name, void **out);

/** True when a provider named @p name is registered. */
SK_API bool sk_di_has(const sk_di *di, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* SK_DI_H */
