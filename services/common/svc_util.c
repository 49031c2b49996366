/* SPDX-License-Identifier: MIT */
/* Small helpers shared by services: store flush, deferred saga replies. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "svc.h"

static sk_status noop(sk_tx *tx, void *ctx)
{
    (void)tx;
    (void)ctx;
    return SK_OK;
}

void svc_store_flush(sk_store *store)
{
    if (store != NULL) {
        /* Units run in order, so when this one is done every earlier one is. Failure means closing. */
        SK_IGNORE(sk_store_run(store, noop, NULL));
    }
}

void svc_reply_addr_from(svc_reply_addr *a, const sk_message *m)
{
    snprintf(a->subject, sizeof(a->subject), "%s", m->env.subject != NULL ? m->env.subject : "");
    snprintf(a->reply_to, sizeof(a->reply_to), "%s", m->env.reply_to != NULL ? m->env.reply_to : "");
    a->saga_step = m->env.saga_step;
}

sk_status svc_reply_to_addr(sk_tx *tx, svc_app *app, const svc_reply_addr *a, const char *type, const json_t *data)
{
    sk_message m;
    memset(&m, 0, sizeof(m));
    m.env.subject = a->subject;
    m.env.reply_to = a->reply_to;
    m.env.saga_step = a->saga_step;
    m.env.type = "deferred";
    m.env.source = app->source;
    return sk_saga_reply(tx, &m, app->source, type, data);
}

void svc_sleep_ms(int64_t ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {
    }
}
