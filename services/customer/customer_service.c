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

typedef struct register_work {
    customer_deps *deps;
    char id[SK_UUID_LEN];
    char *name;
    int64_t limit;
    char *traceparent;
} register_work;

static sk_status register_tx(sk_tx *tx, svc_txcall *tc)
{
    register_work *w = tc->ctx;
    sk_db_value params[] = { SK_DB_TEXT_V(w->id), SK_DB_TEXT_V(w->name), SK_DB_INT_V(w->limit),
                             SK_DB_INT_V(sk_time_now_ms()) };
    sk_status st = sk_tx_exec(tx, "INSERT INTO customers (id, name, credit_limit_cents, created_ms) VALUES (?, ?, ?, ?)",
                              params, 4, NULL);
    if (st != SK_OK) {
        return st;
    }
    json_t *body = json_pack("{s:s, s:s, s:I}", "customer_id", w->id, "name", w->name, "credit_limit_cents",
                             (json_int_t)w->limit);
    if (body == NULL) {
        return SK_FAIL(SK_ENOMEM, "customer body");
    }
    st = svc_emit(w->deps->app, tx, "CustomerRegistered", w->id, body, w->traceparent);
    if (st != SK_OK) {
        json_decref(body);
        return st;
    }
    char location[96];
    snprintf(location, sizeof(location), "/api/v1/customers/%s", w->id);
    svc_txcall_answer(tc, 201, body, location);
    return SK_OK;
}

static void register_work_free(void *ctx)
{
    register_work *w = ctx;
    sk_free(w->name);
    sk_free(w->traceparent);
    sk_free(w);
}

void customer_handle_register(sk_call *call, void *ctx)
{
    customer_deps *deps = ctx;
    const sk_request *req = sk_call_request(call);
    register_work *w = sk_calloc(1, sizeof(*w));
    if (w == NULL) {
        sk_call_fail(call, SK_ENOMEM, "out of memory");
        return;
    }
    w->deps = deps;
    sk_uuid7(w->id);
    w->name = sk_strdup(json_string_value(json_object_get(req->payload, "name")));
    w->limit = json_integer_value(json_object_get(req->payload, "credit_limit_cents"));
    w->traceparent = req->traceparent != NULL ? sk_strdup(req->traceparent) : NULL;
    if (w->name == NULL || (req->traceparent != NULL && w->traceparent == NULL)) {
        register_work_free(w);
        sk_call_fail(call, SK_ENOMEM, "out of memory");
        return;
    }
    svc_txcall_submit(deps->store, call, register_tx, w, register_work_free);
}

/* ---------------------------------------------------------------- provider */

sk_status customer_provider_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    sk_cqrs_bus *commands = NULL;
    customer_deps *deps = NULL;
    sk_status st = SK_OK;
    svc_schema schema = { customer_migrations, customer_n_migrations, false };

    svc_app_set_schema(app, &schema);
    deps = sk_calloc(1, sizeof(*deps));
    if (deps == NULL) {
        return SK_FAIL(SK_ENOMEM, "customer");
    }
    deps->app = app;
    st = sk_di_resolve(di, "store", (void **)&deps->store);
    if (st == SK_OK) {
        /* The relay publishes what the handlers put in the outbox. */
        void *relay = NULL;
        st = sk_di_resolve(di, "relay", &relay);
    }
    if (st == SK_OK) {
        st = sk_di_resolve(di, "commands", (void **)&commands);
    }
    if (st == SK_OK) {
        st = sk_cqrs_bus_register(commands, "RegisterCustomer", customer_validate_register,
                                  customer_handle_register, deps);
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
        svc_store_flush(deps->store);
    }
    sk_free(deps);
}
