/* SPDX-License-Identifier: MIT */
/*
 * payment: owns credit accounts and charges. Opens an account on
 * CustomerRegistered; as a saga participant it charges credit (holding the
 * amount, then capturing it at the psp over the mesh) and refunds it.
 * Every command is idempotent by order id (the charges row).
 */
#ifndef PAYMENT_H
#define PAYMENT_H

#include "svc.h"

/**
 * How long ChargeCredit waits for the account of a just-registered customer
 * (accounts open asynchronously from CustomerRegistered). The command is
 * redelivered with backoff meanwhile (0.25, 0.5, 1, 2 s: the fifth delivery
 * comes ~3.75 s after the first, past this grace, and answers UNKNOWN_CUSTOMER).
 */
#define PAYMENT_ACCOUNT_GRACE_MS 3000
/** Deliveries of a payment command before it is dead-lettered (covers the grace above). */
#define PAYMENT_MAX_DELIVER 6

typedef struct payment_deps {
    svc_app *app;
    svc_platform platform;
    sk_upstream *psp;
    sk_consumer *customer_events;
    sk_consumer *commands;
    _Atomic int captures_in_flight;
} payment_deps;

extern const sk_migration payment_migrations[];
extern const size_t payment_n_migrations;

/** customer.events consumer: open an account for a registered customer. */
sk_status payment_handle_customer_event(sk_tx *tx, const sk_message *m, void *ctx);
/** payment.commands consumer: ChargeCredit, RefundCredit. */
sk_status payment_handle_command(sk_tx *tx, const sk_message *m, void *ctx);
/** Restart the captures that were in flight when the process stopped. */
sk_status payment_resume_captures(payment_deps *deps);

sk_status payment_provider_create(sk_di *di, void **out, void *ctx);
void payment_provider_destroy(void *obj, void *ctx);

#endif /* PAYMENT_H */
