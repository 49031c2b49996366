/* SPDX-License-Identifier: MIT */
/* customer: owns customers (name, credit limit); emits CustomerRegistered. */
#ifndef CUSTOMER_H
#define CUSTOMER_H

#include "svc.h"

/** What the customer handlers need; given to them, never taken from globals. */
typedef struct customer_deps {
    svc_app *app; /* for svc_emit (ce-source, context) */
    svc_platform platform;
    svc_tx_handler register_customer;
} customer_deps;

extern const sk_migration customer_migrations[];
extern const size_t customer_n_migrations;

/** Validate a RegisterCustomer payload (name 1..200 characters, credit_limit_cents 0..10^12). */
sk_status customer_validate_register(const json_t *payload, void *ctx);
/** RegisterCustomer: insert the customer and its event in the unit of work; answer 201. */
sk_status customer_register_tx(sk_tx *tx, svc_txcall *tc);

/** The service's DI provider: registers handlers and routes. */
sk_status customer_provider_create(sk_di *di, void **out, void *ctx);
void customer_provider_destroy(void *obj, void *ctx);

#endif /* CUSTOMER_H */
