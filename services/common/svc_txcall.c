/* SPDX-License-Identifier: MIT */
/*
 * Commands applied in a unit of work: the call is completed from the
 * store's done callback, i.e. exactly when the change (and the outbox rows
 * that go with it) is durable.
 */
#include "svc.h"

typedef struct txjob {
    svc_txcall tc;
    svc_tx_fn fn;
} txjob;

void svc_txcall_answer(svc_txcall *tc, int http_status, json_t *body, const char *location)
{
    json_decref(tc->body);
    sk_free(tc->location);
    tc->http_status = http_status;
    tc->body = body;
    tc->location = location != NULL ? sk_strdup(location) : NULL;
}

void svc_txcall_fail_http(svc_txcall *tc, int http_status)
{
    tc->http_status = http_status;
}

static sk_status txjob_work(sk_tx *tx, void *ctx)
{
    txjob *job = ctx;
    /* A previous answer belongs to nothing now: start clean. */
    svc_txcall_answer(&job->tc, 0, NULL, NULL);
    return job->fn(tx, &job->tc);
}

static void txjob_done(sk_status st, const char *message, void *ctx)
{
    txjob *job = ctx;
    if (st == SK_OK) {
        sk_call_complete(job->tc.call, job->tc.http_status != 0 ? job->tc.http_status : 200, job->tc.body,
                         job->tc.location);
        job->tc.body = NULL;
    } else if (job->tc.http_status >= 400) {
        sk_call_fail_http(job->tc.call, job->tc.http_status, sk_http_reason(job->tc.http_status), "%s", message);
    } else {
        sk_call_fail(job->tc.call, st, "%s", message);
    }
    json_decref(job->tc.body);
    sk_free(job->tc.location);
    sk_free(job);
}

void svc_txcall_submit(sk_store *store, sk_call *call, svc_tx_fn fn, void *ctx)
{
    txjob *job = sk_calloc(1, sizeof(*job));
    if (job == NULL) {
        sk_call_fail(call, SK_ENOMEM, "out of memory");
        return;
    }
    job->tc.call = call;
    job->tc.req = sk_call_request(call);
    job->tc.ctx = ctx;
    job->fn = fn;
    sk_status st = sk_store_submit(store, txjob_work, txjob_done, job);
    if (st != SK_OK) {
        sk_free(job);
        sk_call_fail(call, st == SK_ELIMIT ? SK_EUNAVAILABLE : st, "%s", sk_error_message());
    }
}

void svc_tx_handle(sk_call *call, void *ctx)
{
    const svc_tx_handler *h = ctx;
    svc_txcall_submit(h->store, call, h->fn, h->ctx);
}
