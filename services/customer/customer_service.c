/* SPDX-License-Identifier: MIT */
/*
 * customer service: RegisterCustomer stores the customer and the
 * CustomerRegistered event in one transaction and answers 201 once durable.
 */
#include <stdio.h>
#include <string.h>

#include "customer.h"

#define MAX_CREDIT_CENTS 1000000000000LL

const sk_migration customer_migrations[] = {
    { "customer", 1,
      "CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
      " credit_limit_cents INTEGER NOT NULL, created_ms INTEGER NOT NULL)" },
};
const size_t customer_n_migrations = sizeof(customer_migrations) / sizeof(customer_migrations[0]);

sk_status customer_validate_register(const json_t *payload, void *ctx)
{
    const char *name = NULL;
    int64_t limit = 0;
    (void)ctx;
    sk_status st = sk_json_get_string(payload, "name", 1, 200, &name);
    if (st == SK_OK) {
        st = sk_json_get_int(payload, "credit_limit_cents", 0, MAX_CREDIT_CENTS, &limit);
    }
    return st;
}

sk_status customer_register_tx(sk_tx *tx, svc_txcall *tc)
{
    customer_deps *deps = tc->ctx;
    const char *name = json_string_value(json_object_get(tc->req->payload, "name"));
    json_int_t limit = json_integer_value(json_object_get(tc->req->payload, "credit_limit_cents"));
    char id[SK_UUID_LEN], location[96];

    sk_uuid7(id);
    sk_db_value params[] = { SK_DB_TEXT_V(id), SK_DB_TEXT_V(name), SK_DB_INT_V(limit), SK_DB_INT_V(sk_time_now_ms()) };
    sk_status st = sk_tx_exec(tx, "INSERT INTO customers (id, name, credit_limit_cents, created_ms) VALUES (?, ?, ?, ?)",
                              params, 4, NULL);
    if (st != SK_OK) {
        return st;
    }
    json_t *body = json_pack("{s:s, s:s, s:I}", "customer_id", id, "name", name, "credit_limit_cents", limit);
    if (body == NULL) {
        return SK_FAIL(SK_ENOMEM, "customer body");
    }
    st = svc_emit(deps->app, tx, "CustomerRegistered", id, body, tc->req->traceparent);
    if (st != SK_OK) {
        json_decref(body);
        return st;
    }
    snprintf(location, sizeof(location), "/api/v1/customers/%s", id);
    svc_txcall_answer(tc, 201, body, location);
    return SK_OK;
}

/* ---------------------------------------------------------------- provider */

sk_status customer_provider_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    sk_cqrs_bus *commands = NULL;
    customer_deps *deps = sk_calloc(1, sizeof(*deps));
    svc_schema schema = { customer_migrations, customer_n_migrations, false };

    if (deps == NULL) {
        return SK_FAIL(SK_ENOMEM, "customer");
    }
    deps->app = app;
    sk_status st = svc_platform_resolve(app, &schema, &deps->platform);
    if (st == SK_OK) {
        st = sk_di_resolve(di, "commands", (void **)&commands);
    }
    if (st == SK_OK) {
        deps->register_customer = (svc_tx_handler){ deps->platform.store, customer_register_tx, deps };
        st = sk_cqrs_bus_register(commands, "RegisterCustomer", customer_validate_register, svc_tx_handle,
                                  &deps->register_customer);
    }
    if (st == SK_OK) {
        st = svc_route_command(app, "POST", "/customers", "RegisterCustomer");
    }
    if (st != SK_OK) {
        sk_free(deps);
        return st;
    }
    *out = deps;
    return SK_OK;
}

void customer_provider_destroy(void *obj, void *ctx)
{
    customer_deps *deps = obj;
    (void)ctx;
    if (deps != NULL) {
        svc_store_flush(deps->platform.store);
    }
    sk_free(deps);
}
