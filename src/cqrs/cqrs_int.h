/* SPDX-License-Identifier: MIT */
/*
 * cqrs internals shared by the files of src/cqrs and by their unit tests:
 * name validators, the status -> HTTP mapping with reason phrases, the
 * consistency-token parser on raw bytes, and the pthread helpers. Nothing
 * here is exported from libskald.
 */
#ifndef SK_CQRS_INT_H
#define SK_CQRS_INT_H

#include <pthread.h>

#include <skald/cqrs.h>

/** Longest command or query type name, in bytes. */
#define SK__CQRS_TYPE_MAX 64
/** Longest aggregate id carried by a consistency token, in bytes. */
#define SK__CTOKEN_ID_MAX 100
/** Largest version carried by a consistency token: 2^53 (exact in a JSON number). */
#define SK__CTOKEN_VERSION_MAX 9007199254740992LL
/** Longest idempotency key, in bytes. */
#define SK__IDEM_KEY_MAX 255
/** Longest idempotency scope, in bytes. */
#define SK__IDEM_SCOPE_MAX 255
/** Longest projection or stream name, in bytes. */
#define SK__PROJECTION_NAME_MAX 64

/** True when @p s matches [A-Za-z][A-Za-z0-9]{0,63}. NULL-safe. */
bool sk__cqrs_type_is_valid(const char *s);

/** True when @p s is 1..SK__CTOKEN_ID_MAX bytes of [A-Za-z0-9._:-]. */
bool sk__ctoken_id_is_valid(const char *s, size_t len);


/**
 * Abort on a failed pthread call (STYLE 5: errors from pthread calls abort;
 * they only fail on misuse, which would corrupt state if ignored).
 */
void sk__cqrs_pthread_check(int rc, const char *what);

/** Number of calls dispatched and not yet completed on @p bus (tests, shutdown checks). */
size_t sk__cqrs_bus_pending(sk_cqrs_bus *bus);

/**
 * Validate @p cfg and build a projection without starting its consumer
 * (sk_projection_start = this + sk_consumer_start). Free with sk_projection_stop.
 * @return SK_OK, SK_EINVAL, SK_ENOMEM.
 */
sk_status
sk__projection_build(sk_projection **out, sk_metrics *metrics, const sk_projection_config *cfg);
/** The consumer handler: apply, then advance the checkpoint; @p ctx is the projection. */
sk_status sk__projection_handle(sk_tx *tx, const sk_message *m, void *ctx);
/** The durable consumer name, "<name>-<stream lower-cased>" (borrowed). */
const char *sk__projection_durable(const sk_projection *p);
/**
 * The durable consumer of projection @p name on @p stream:
 * "<name>-<stream in lower case>". Owned; NULL when out of memory.
 */
char *sk__projection_durable_name(const char *name, const char *stream);

/* ---- waiters shared between processes (waiters_share.c) */

/** Most processes that share one key's notifications. */
#define SK__WAITERS_SHARE_SLOTS 8
/** Longest name of shared waiters (sk_waiters_share). */
#define SK__WAITERS_SHARE_NAME_MAX 64

typedef struct sk__waiters_share sk__waiters_share;
/** Hands a notification received from a peer to this process's waiters. */
typedef void (*sk__waiters_deliver_fn)(void *ctx, const char *id, int64_t version);

/**
 * Bind a free slot of @p key and start the thread that passes the peers'
 * notifications to @p deliver. @return SK_OK, SK_ELIMIT (every slot taken),
 * SK_EIO, SK_EINTERNAL, SK_ENOMEM.
 */
sk_status sk__waiters_share_start(sk__waiters_share **out,
                                  const char *key,
                                  sk__waiters_deliver_fn deliver,
                                  void *ctx);
/** Send a notification to every peer (never blocks; dropped when a peer's queue is full). */
void sk__waiters_share_send(sk__waiters_share *s, const char *id, int64_t version);
/** Stop receiving and free; deliver is not called after it returns. NULL-safe. */
void sk__waiters_share_stop(sk__waiters_share *s);
/** The abstract socket name (without the leading NUL) of @p slot of @p key. @return its length. */
int sk__waiters_share_name(const char *key, int slot, char *out, size_t cap);

/** Number of waiters registered and not yet completed (tests). */
size_t sk__waiters_pending(sk_waiters *w);

#endif /* SK_CQRS_INT_H */
