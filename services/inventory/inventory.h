/* SPDX-License-Identifier: MIT */
/*
 * inventory: owns products, stock and reservations. HTTP commands
 * CreateProduct and Restock; saga commands ReserveStock, CommitReservation
 * and ReleaseReservation, each answered through the outbox.
 * Invariant per product: stock + restocked == available + reserved + sold.
 */
#ifndef INVENTORY_H
#define INVENTORY_H

#include "svc.h"

#define INVENTORY_MAX_PRICE_CENTS 1000000000000LL
#define INVENTORY_MAX_STOCK 1000000000LL
#define INVENTORY_MAX_QUANTITY 10000

typedef struct inventory_deps {
    svc_app *app;
    svc_platform platform;
    svc_tx_handler create_product;
    svc_tx_handler restock;
    sk_consumer *commands_consumer;
} inventory_deps;

/** One product row. */
typedef struct inventory_product {
    char sku[260];
    char name[820];
    int64_t price_cents, stock, restocked, available, reserved, sold, version;
} inventory_product;

extern const sk_migration inventory_migrations[];
extern const size_t inventory_n_migrations;

/** Load a product. @return SK_OK, SK_ENOTFOUND, SK_EDB. */
sk_status inventory_product_load(sk_tx *tx, const char *sku, inventory_product *p);
/** Write the counters back (version incremented) and emit @p event_type with them. */
sk_status inventory_product_save(sk_tx *tx, inventory_deps *deps, inventory_product *p, const char *event_type,
                                 const char *order_id);

sk_status inventory_validate_create(const json_t *payload, void *ctx);
/** CreateProduct in a unit of work: 201, or 409 when the sku exists. */
sk_status inventory_create_tx(sk_tx *tx, svc_txcall *tc);
sk_status inventory_validate_restock(const json_t *payload, void *ctx);
/** Restock in a unit of work: 202, or 404 for an unknown sku. */
sk_status inventory_restock_tx(sk_tx *tx, svc_txcall *tc);

/** Most lines in one ReserveStock command. */
#define INVENTORY_MAX_LINES 100

/** One line of a ReserveStock command; sku borrowed from the command's JSON. */
typedef struct inventory_line {
    const char *sku;
    int64_t quantity;
} inventory_line;

/**
 * Read and check the items of a ReserveStock command's data
 * ({items: [{sku: 1..64 chars, quantity: 1..INVENTORY_MAX_QUANTITY}], 1..INVENTORY_MAX_LINES}).
 * Pure (a fuzz target calls it).
 * @param lines at least INVENTORY_MAX_LINES entries; [out], skus borrowed from @p data.
 * @return SK_OK or SK_EPROTO naming the item.
 */
sk_status inventory_lines_parse(const json_t *data, inventory_line *lines, size_t *n_lines);

/** Saga participant: handles inventory.commands.* inside the consumer's unit of work. */
sk_status inventory_handle_command(sk_tx *tx, const sk_message *m, void *ctx);

sk_status inventory_provider_create(sk_di *di, void **out, void *ctx);
void inventory_provider_destroy(void *obj, void *ctx);

#endif /* INVENTORY_H */
