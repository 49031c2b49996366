/* SPDX-License-Identifier: MIT */
/*
 * payment: owns credit accounts and charges. Opens an account on
 * CustomerRegistered; as a saga participant it charges credit (holding the
 * amount, then capturing it at the psp over the mesh) and refunds it.
 * Every command is idempotent by order id (the charges row).
 */
#ifndef PAYMENT_H
#define PAYMENT_H

#include <pthread.h>

#include "svc.h"

/**
 * How many deliveries of ChargeCredit wait for the account of a
 * just-registered customer (accounts open asynchronously from
 * CustomerRegistered). Redeliveries back off 0.25, 0.5, 1, 2 s, so the fifth
 * delivery, which answers UNKNOWN_CUSTOMER, comes ~3.75 s after the first
 * (counted from when payment first saw it, not from when it was sent).
 */
#define PAYMENT_ACCOUNT_DELIVERIES 5
/** Deliveries of a payment command before it is dead-lettered (covers the grace above). */
#define PAYMENT_MAX_DELIVER 6

/** A capture on its way to the psp (payment_charges.c). */
typedef struct capture_job capture_job;

typedef struct payment_deps {
    svc_app *app;
    svc_platform platform;
    sk_upstream *psp;
    sk_consumer *customer_events;
    sk_consumer *commands;
    _Atomic int captures_in_flight; /* started and not settled yet: waiting, sent or settling */
    /* The sweeper re-drives unsettled captures. */
    pthread_t sweeper;
    bool has_sweeper;
    /* mu protects is_stopping and the captures waiting for a connection to psp. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool is_stopping;
    capture_job *capture_queue; /* oldest first */
    capture_job *capture_queue_tail;
    size_t captures_sending; /* sent to psp, not answered yet */
} payment_deps;

/**
 * A capture that waited this long for one of psp's connections is not sent
 * but settled as not captured: the charge step's deadline in the order saga
 * (10 s) has passed by then.
 */
#define PAYMENT_CAPTURE_MAX_WAIT_MS 10000

/** Unsettled captures older than this are started again by the sweeper, every PAYMENT_SWEEP_MS. */
#define PAYMENT_RESUME_AFTER_MS 10000
#define PAYMENT_SWEEP_MS 5000

extern const sk_migration payment_migrations[];
extern const size_t payment_n_migrations;

/** customer.events consumer: open an account for a registered customer. */
sk_status payment_handle_customer_event(sk_tx *tx, const sk_message *m, void *ctx);
/** payment.commands consumer: ChargeCredit, RefundCredit. */
sk_status payment_handle_command(sk_tx *tx, const sk_message *m, void *ctx);
/**
 * Start again the captures of charges still unsettled after @p min_age_ms:
 * those in flight when the process stopped, and those whose settling failed.
 * The psp call is idempotent and settling checks the state, so a capture
 * that was merely slow costs a second call, nothing more.
 */
sk_status payment_resume_captures(payment_deps *deps, int64_t min_age_ms);
/**
 * On the way out, once nothing starts captures any more: forget those still
 * waiting for a connection to psp. Their charges stay PENDING, and the next
 * start re-drives them.
 */
void payment_drop_waiting_captures(payment_deps *deps);

sk_status payment_provider_create(sk_di *di, void **out, void *ctx);
void payment_provider_destroy(void *obj, void *ctx);

#endif /* PAYMENT_H */
