/* SPDX-License-Identifier: MIT */
/*
 * order: owns orders and the saga instances that drive them.
 * CreateOrder stores the order, its OrderCreated event, its idempotency key
 * and the CreateOrderSaga instance with its first command in one unit of
 * work. CancelOrder cancels a running saga or, for an approved order, starts
 * CancelOrderSaga.
 */
#ifndef ORDER_H
#define ORDER_H

#include "svc.h"

#define ORDER_MAX_ITEMS 100
#define ORDER_MAX_QUANTITY 10000
/** Idempotency keys are kept this long (the contract promises at least 24 hours). */
#define ORDER_IDEM_KEEP_MS (48LL * 3600 * 1000)
/** How often the unit of a CreateOrder also deletes expired keys. */
#define ORDER_IDEM_EXPIRE_EVERY_MS (3600LL * 1000)

typedef struct order_deps {
    svc_app *app;
    svc_platform platform;
    sk_saga_engine *sagas;
    svc_tx_handler create_order;
    svc_tx_handler cancel_order;
    int64_t idem_expired_ms; /* last expiry of idempotency keys; store writer thread only */
    sk_saga_def create_saga; /* definitions with ctx = this struct */
    sk_saga_def cancel_saga;
} order_deps;

extern const sk_migration order_migrations[];
extern const size_t order_n_migrations;

/** Fill deps->create_saga and deps->cancel_saga (order_sagas.c), with ctx = @p deps. */
void order_sagas_init(order_deps *deps);

sk_status order_validate_create(const json_t *payload, void *ctx);
/** CreateOrder in a unit of work: 202 + consistency token; replays an Idempotency-Key, 422 on reuse with another body. */
sk_status order_create_tx(sk_tx *tx, svc_txcall *tc);
sk_status order_validate_cancel(const json_t *payload, void *ctx);
/** CancelOrder in a unit of work: 202; 404 unknown; 409 already REJECTED or CANCELLED. */
sk_status order_cancel_tx(sk_tx *tx, svc_txcall *tc);

/** Set status (and reason), bump the version and emit @p event_type with @p extra merged in. */
sk_status order_transition(sk_tx *tx,
                           order_deps *deps,
                           const char *order_id,
                           const char *status,
                           const char *reason,
                           const char *event_type,
                           json_t *extra);

sk_status order_provider_create(sk_di *di, void **out, void *ctx);
void order_provider_destroy(void *obj, void *ctx);

#endif /* ORDER_H */
