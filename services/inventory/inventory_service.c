/* SPDX-License-Identifier: MIT */
/* inventory: schema, handler registration and the saga command consumer. */
#include "inventory.h"

const sk_migration inventory_migrations[] = {
    { "inventory", 1,
      "CREATE TABLE products (sku TEXT PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL,"
      " stock INTEGER NOT NULL, restocked INTEGER NOT NULL, available INTEGER NOT NULL,"
      " reserved INTEGER NOT NULL, sold INTEGER NOT NULL, version INTEGER NOT NULL, created_ms INTEGER NOT NULL);"
      "CREATE TABLE reservation_orders (order_id TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT NOT NULL,"
      " updated_ms INTEGER NOT NULL);"
      "CREATE TABLE reservations (order_id TEXT NOT NULL, line INTEGER NOT NULL, sku TEXT NOT NULL,"
      " quantity INTEGER NOT NULL, unit_price_cents INTEGER NOT NULL, PRIMARY KEY (order_id, line))" },
};
const size_t inventory_n_migrations = sizeof(inventory_migrations) / sizeof(inventory_migrations[0]);

sk_status inventory_provider_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    sk_cqrs_bus *commands = NULL;
    inventory_deps *deps = sk_calloc(1, sizeof(*deps));
    svc_schema schema = { inventory_migrations, inventory_n_migrations, false };

    if (deps == NULL) {
        return SK_FAIL(SK_ENOMEM, "inventory");
    }
    deps->app = app;
    sk_status st = svc_platform_resolve(app, &schema, &deps->platform);
    /* The consumer first: it needs JetStream and may fail for now (start-up then tries
     * again), and nothing may stay registered with the buses after a failure. */
    if (st == SK_OK) {
        sk_consumer_config cc = {
            .stream = "INVENTORY_COMMANDS",
            .durable = "inventory-commands",
            .filter_subject = "inventory.commands.>",
            .handler = inventory_handle_command,
            .ctx = deps,
        };
        st = sk_consumer_start(&deps->commands_consumer, deps->platform.bus, deps->platform.store,
                               deps->platform.metrics, &cc);
    }
    if (st == SK_OK) {
        st = sk_di_resolve(di, "commands", (void **)&commands);
    }
    if (st == SK_OK) {
        deps->create_product = (svc_tx_handler){ deps->platform.store, inventory_create_tx, deps };
        st = sk_cqrs_bus_register(commands, "CreateProduct", inventory_validate_create, svc_tx_handle,
                                  &deps->create_product);
    }
    if (st == SK_OK) {
        deps->restock = (svc_tx_handler){ deps->platform.store, inventory_restock_tx, deps };
        st = sk_cqrs_bus_register(commands, "Restock", inventory_validate_restock, svc_tx_handle, &deps->restock);
    }
    if (st == SK_OK) {
        st = svc_route_command(app, "POST", "/products", "CreateProduct");
    }
    if (st == SK_OK) {
        st = svc_route_command(app, "POST", "/products/{sku}/restock", "Restock");
    }
    if (st != SK_OK) {
        inventory_provider_destroy(deps, NULL);
        return st;
    }
    *out = deps;
    return SK_OK;
}

void inventory_provider_destroy(void *obj, void *ctx)
{
    inventory_deps *deps = obj;
    (void)ctx;
    if (deps == NULL) {
        return;
    }
    sk_consumer_stop(deps->commands_consumer);
    svc_store_flush(deps->platform.store);
    sk_free(deps);
}
