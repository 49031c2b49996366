/* SPDX-License-Identifier: MIT */
/*
 * orderview: denormalised read models built from the events of every
 * context (customers with their available credit, products with their stock
 * counters, orders with names and prices), and the queries over them.
 * The instances share one database; the one holding its read-model lock
 * projects into it (sk_readmodel). Events carry versions, so
 * applying is idempotent and order-safe across streams.
 */
#ifndef ORDERVIEW_H
#define ORDERVIEW_H

#include "svc.h"

#define ORDERVIEW_WAIT_MS 2000

typedef struct orderview_deps {
    svc_app *app;
    svc_platform platform;
    sk_waiters *waiters;
    sk_readmodel *readmodel; /* versioned: tables ov<N>_*, queries read the views *_v */
} orderview_deps;

/** Name under which the read model is replayed (`skald replay orderview`). */
#define ORDERVIEW_READMODEL "orderview"

extern const sk_migration orderview_migrations[];
extern const size_t orderview_n_migrations;

/** Projection: apply one event of any context (dispatch on ce-type) to read-model version @p rm_version. */
sk_status orderview_apply(sk_tx *tx, const sk_message *m, int64_t rm_version, bool is_live, void *ctx);
/** Schema of read-model versions: create the tables, point the views at them, drop them. */
sk_status orderview_version_create(sk_tx *tx, int64_t version, void *ctx);
sk_status orderview_version_activate(sk_tx *tx, int64_t version, void *ctx);
sk_status orderview_version_drop(sk_tx *tx, int64_t version, void *ctx);

/** Queries. */
sk_status orderview_validate_get_order(const json_t *payload, void *ctx);
void orderview_get_order(sk_call *call, void *ctx);
sk_status orderview_validate_list_orders(const json_t *payload, void *ctx);
void orderview_list_orders(sk_call *call, void *ctx);
sk_status orderview_validate_get_customer(const json_t *payload, void *ctx);
void orderview_get_customer(sk_call *call, void *ctx);
sk_status orderview_validate_get_product(const json_t *payload, void *ctx);
void orderview_get_product(sk_call *call, void *ctx);

/** Version of an order in the view (0 when absent); an sk_version_fn. */
int64_t orderview_order_version(const char *id, void *ctx);

sk_status orderview_provider_create(sk_di *di, void **out, void *ctx);
void orderview_provider_destroy(void *obj, void *ctx);

#endif /* ORDERVIEW_H */
