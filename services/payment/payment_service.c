/* SPDX-License-Identifier: MIT */
/* payment: schema, consumers and the psp upstream. */
#include <time.h>

#include "payment.h"

const sk_migration payment_migrations[] = {
    { "payment", 1,
      "CREATE TABLE accounts (customer_id TEXT PRIMARY KEY, credit_limit_cents INTEGER NOT NULL,"
      " available_cents INTEGER NOT NULL, version INTEGER NOT NULL);"
      "CREATE TABLE charges (order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, amount_cents INTEGER NOT NULL,"
      " state TEXT NOT NULL, reason TEXT NOT NULL, charge_subject TEXT NOT NULL, charge_reply_to TEXT NOT NULL,"
      " charge_step INTEGER NOT NULL, refund_subject TEXT NOT NULL, refund_reply_to TEXT NOT NULL,"
      " refund_step INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
      "CREATE INDEX charges_pending ON charges (state)" },
};
const size_t payment_n_migrations = sizeof(payment_migrations) / sizeof(payment_migrations[0]);

/* Re-drive captures whose settling was lost (see payment_resume_captures). */
static void *sweep_main(void *arg)
{
    sk_thread_name("sk-pay-sweep");
    payment_deps *deps = arg;
    pthread_mutex_lock(&deps->mu);
    while (!deps->is_stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += PAYMENT_SWEEP_MS / 1000;
        pthread_cond_timedwait(&deps->cond, &deps->mu, &ts);
        if (deps->is_stopping) {
            break;
        }
        if (deps->capture_queue != NULL) {
            /* Captures still wait their turn, maybe these: they go (or expire) first, within
             * PAYMENT_CAPTURE_MAX_WAIT_MS of the backlog's end. */
            continue;
        }
        pthread_mutex_unlock(&deps->mu);
        if (payment_resume_captures(deps, PAYMENT_RESUME_AFTER_MS) != SK_OK) {
            SK_LOG_WARN("capture sweep: %s", sk_error_message());
        }
        pthread_mutex_lock(&deps->mu);
    }
    pthread_mutex_unlock(&deps->mu);
    return NULL;
}

sk_status payment_provider_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    svc_upstreams *ups = NULL;
    payment_deps *deps = sk_calloc(1, sizeof(*deps));
    svc_schema schema = { payment_migrations, payment_n_migrations, false };

    if (deps == NULL) {
        return SK_FAIL(SK_ENOMEM, "payment");
    }
    pthread_mutex_init(&deps->mu, NULL);
    pthread_cond_init(&deps->cond, NULL);
    deps->app = app;
    sk_status st = svc_platform_resolve(app, &schema, &deps->platform);
    if (st == SK_OK) {
        st = sk_di_resolve(di, "upstreams", (void **)&ups);
    }
    if (st == SK_OK) {
        deps->psp = svc_upstreams_get(ups, "psp");
        if (deps->psp == NULL) {
            st = SK_FAIL(SK_EPROTO, "payment: the system file declares no upstream psp");
        }
    }
    if (st == SK_OK) {
        sk_consumer_config cc = {
            .stream = "CUSTOMER_EVENTS",
            .durable = "payment-customer-events",
            .filter_subject = "customer.events.>",
            .handler = payment_handle_customer_event,
            .ctx = deps,
        };
        st = sk_consumer_start(&deps->customer_events, deps->platform.bus, deps->platform.store,
                               deps->platform.metrics, &cc);
    }
    if (st == SK_OK) {
        sk_consumer_config cc = {
            .stream = "PAYMENT_COMMANDS",
            .durable = "payment-commands",
            .filter_subject = "payment.commands.>",
            .max_deliver = PAYMENT_MAX_DELIVER,
            .handler = payment_handle_command,
            .ctx = deps,
        };
        st = sk_consumer_start(&deps->commands, deps->platform.bus, deps->platform.store, deps->platform.metrics,
                               &cc);
    }
    if (st == SK_OK) {
        st = payment_resume_captures(deps, 0); /* everything left by the previous run */
    }
    if (st == SK_OK) {
        if (pthread_create(&deps->sweeper, NULL, sweep_main, deps) != 0) {
            st = SK_FAIL(SK_EINTERNAL, "payment: starting the capture sweeper");
        } else {
            deps->has_sweeper = true;
        }
    }
    if (st != SK_OK) {
        payment_provider_destroy(deps, NULL);
        return st;
    }
    *out = deps;
    return SK_OK;
}

void payment_provider_destroy(void *obj, void *ctx)
{
    payment_deps *deps = obj;
    (void)ctx;
    if (deps == NULL) {
        return;
    }
    /* No capture is sent from now on. */
    pthread_mutex_lock(&deps->mu);
    deps->is_stopping = true;
    pthread_cond_signal(&deps->cond);
    pthread_mutex_unlock(&deps->mu);
    if (deps->has_sweeper) {
        pthread_join(deps->sweeper, NULL);
    }
    sk_consumer_stop(deps->commands);
    sk_consumer_stop(deps->customer_events);
    /* Nothing queues a capture any more. Those still waiting stay PENDING: the next start re-drives
     * them. */
    payment_drop_waiting_captures(deps);
    /* Captures in flight settle through the store; wait for them (bounded by the client timeout). */
    int64_t deadline = sk_time_mono_ms() + 15000;
    while (deps->captures_in_flight > 0 && sk_time_mono_ms() < deadline) {
        svc_sleep_ms(10);
    }
    svc_store_flush(deps->platform.store);
    pthread_cond_destroy(&deps->cond);
    pthread_mutex_destroy(&deps->mu);
    sk_free(deps);
}
