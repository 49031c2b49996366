/* SPDX-License-Identifier: MIT */
/*
 * Durable pull consumer with exactly-once effects: a fetch thread hands each
 * message to the store as a unit of work that records (consumer, ce-id) in
 * sk_inbox and runs the handler in the same transaction; the message is
 * acknowledged only from the unit's done callback, i.e. once that is
 * durable. A redelivered message finds its inbox row and is acknowledged
 * with no effect. Messages that fail for good become dead letters.
 */
#include <string.h>
#include <time.h>

#include "msg/msg_int.h"

/* Longest error text kept with a dead letter. */
#define MAX_ERROR_TEXT 1024
/* Delay before redelivering a message whose unit could not be queued. */
#define REQUEUE_DELAY_MS 1000
/* Fetch wait; also bounds how long sk_consumer_stop waits for the fetch thread. */
#define FETCH_WAIT_MS 1000
/* Redelivery backoff: BASE * 2^(n-1), at most MAX. */
#define BACKOFF_BASE_MS 250
#define BACKOFF_MAX_MS  30000
/* Failure logs at most once per this interval. */
#define LOG_INTERVAL_MS 5000
/* The consumer's own MaxDeliver is this much above ours, so we always get to dead-letter. */
#define MAX_DELIVER_SLACK 2

typedef enum result { RES_OK, RES_DUP, RES_RETRY, RES_DEAD, RES_COUNT_ } result;

static const char *const result_names[RES_COUNT_] = { "ok", "duplicate", "retry", "dead" };

/* Lock order: mu only; it is never held while calling nats or the store. */
struct sk_consumer {
    sk_bus *bus;
    sk_store *store;
    char *stream;
    char *durable;
    char *filter;
    char *dlq_subject;
    int max_deliver;
    int64_t ack_wait_ms;
    size_t batch;
    size_t max_outstanding;
    sk_msg_handler_fn handler;
    void *ctx;

    sk__bus_link *link;    /* fetch thread (and start/stop): the connection sub lives on */
    natsSubscription *sub; /* NULL while (re)subscribing failed */
    pthread_t thread;
    bool has_thread;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* Protected by mu. */
    bool is_stopping;
    size_t n_outstanding; /* messages fetched and not yet acked, naked or terminated */

    int64_t last_log_ms; /* fetch thread only */
    sk_counter *m_results[RES_COUNT_];
};

/* One fetched message on its way through the store. Owns msg and json. */
typedef struct job {
    sk_consumer *c;
    natsMsg *msg;
    sk_message m;
    sk__envelope_buf envbuf;
    json_t *json;
    bool has_env;     /* m.env was decoded */
    bool is_dup;      /* the inbox already had the message */
    char error[MAX_ERROR_TEXT];
} job;

static void lock(pthread_mutex_t *mu)
{
    if (pthread_mutex_lock(mu) != 0) {
        sk_assert_fail("pthread_mutex_lock", __FILE__, __LINE__);
    }
}

static void unlock(pthread_mutex_t *mu)
{
    if (pthread_mutex_unlock(mu) != 0) {
        sk_assert_fail("pthread_mutex_unlock", __FILE__, __LINE__);
    }
}

int64_t sk__consumer_backoff_ms(uint64_t n_delivered)
{
    int64_t d = BACKOFF_BASE_MS;

    for (uint64_t i = 1; i < n_delivered && d < BACKOFF_MAX_MS; i++) {
        d *= 2;
    }
    return d > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d;
}

static void count(sk_consumer *c, result r)
{
    if (c->m_results[r] != NULL) {
        sk_counter_add(c->m_results[r], 1);
    }
}

/* Release a job: the message is settled (acked, naked or terminated) by now. */
static void job_finish(job *j)
{
    sk_consumer *c = j->c;

    natsMsg_Destroy(j->msg);
    json_decref(j->json);
    sk_free(j);
    lock(&c->mu);
    c->n_outstanding--;
    pthread_cond_broadcast(&c->cond);
    unlock(&c->mu);
}

static void job_nak(job *j, int64_t delay_ms)
{
    natsStatus s = natsMsg_NakWithDelay(j->msg, delay_ms, NULL);
    if (s != NATS_OK) {
        /* Not fatal: the server redelivers after AckWait anyway. */
        SK_LOG_DEBUG("consumer %s: nak failed: %s", j->c->durable, natsStatus_GetText(s));
    }
}

/* ---------------------------------------------------------------- dead letters */

/* The received headers as a JSON object of strings (first value of each). */
static json_t *headers_json(natsMsg *msg)
{
    const char **keys = NULL;
    json_t *obj = json_object();
    int n = 0;

    if (obj == NULL) {
        return NULL;
    }
    if (natsMsgHeader_Keys(msg, &keys, &n) != NATS_OK) {
        return obj;
    }
    for (int i = 0; i < n; i++) {
        const char *v = NULL;
        if (natsMsgHeader_Get(msg, keys[i], &v) == NATS_OK && v != NULL) {
            json_t *s = json_string(v);
            /* Header bytes that are not UTF-8 cannot go into JSON as they are. */
            if (s == NULL) {
                s = json_string("<not UTF-8>");
            }
            if (s != NULL && json_object_set_new(obj, keys[i], s) != 0) {
                /* out of memory: keep what we have */
            }
        }
    }
    sk__nats_free(keys);
    return obj;
}

static sk_status dead_work(sk_tx *tx, void *ctx)
{
    job *j = ctx;
    sk_consumer *c = j->c;
    char dl_id[SK_UUID_LEN];
    const char *data = natsMsg_GetData(j->msg);
    int data_len = natsMsg_GetDataLength(j->msg);
    sk_status st = SK_OK;
    json_t *hdrs = NULL, *body = NULL;
    char *hdrs_text = NULL;
    int64_t changes = 0;
    sk_envelope env;

    j->is_dup = false;
    if (j->has_env) {
        sk_db_value p[3] = { SK_DB_TEXT_V(c->durable), SK_DB_TEXT_V(j->m.env.id),
                             SK_DB_INT_V(sk_time_now_ms()) };
        st = sk_tx_exec(tx,
                        "INSERT INTO sk_inbox (consumer, msg_id, processed_ms) VALUES (?, ?, ?) "
                        "ON CONFLICT (consumer, msg_id) DO NOTHING",
                        p, 3, &changes);
        if (st != SK_OK) {
            return SK_WRAP(st, "consumer %s: recording dead letter in the inbox", c->durable);
        }
        if (changes == 0) {
            j->is_dup = true; /* dead-lettered (or processed) before: nothing more to do */
            return SK_OK;
        }
    }
    sk_uuid7(dl_id);
    hdrs = headers_json(j->msg);
    if (hdrs == NULL || (hdrs_text = sk_json_dumps(hdrs)) == NULL) {
        st = SK_FAIL(SK_ENOMEM, "consumer %s: serialising dead letter headers", c->durable);
        goto out;
    }
    {
        sk_db_value p[9] = {
            SK_DB_TEXT_V(dl_id),
            SK_DB_TEXT_V(c->durable),
            SK_DB_TEXT_V(j->m.nats_subject != NULL ? j->m.nats_subject : ""),
            j->has_env ? SK_DB_TEXT_V(j->m.env.id) : SK_DB_NULL_V,
            SK_DB_TEXT_V(hdrs_text),
            SK_DB_BLOB_V(data != NULL ? data : "", data_len > 0 ? (size_t)data_len : 0),
            SK_DB_TEXT_V(j->error),
            SK_DB_INT_V(j->m.n_delivered),
            SK_DB_INT_V(sk_time_now_ms()),
        };
        st = sk_tx_exec(tx,
                        "INSERT INTO sk_dead_letters (id, consumer, subject, msg_id, headers, data, "
                        "error, deliveries, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        p, 9, NULL);
        if (st != SK_OK) {
            st = SK_WRAP(st, "consumer %s: inserting dead letter", c->durable);
            goto out;
        }
    }
    body = json_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:I, s:O}", "id", dl_id, "consumer",
                     c->durable, "nats_subject",
                     j->m.nats_subject != NULL ? j->m.nats_subject : "", "msg_id",
                     j->has_env ? json_string(j->m.env.id) : json_null(), "error", j->error,
                     "deliveries", (json_int_t)j->m.n_delivered, "stream_seq",
                     (json_int_t)j->m.stream_seq, "headers", hdrs);
    if (body == NULL) {
        st = SK_FAIL(SK_ENOMEM, "consumer %s: building the dead letter message", c->durable);
        goto out;
    }
    if (j->json != NULL) {
        SK_IGNORE(json_object_set(body, "data", j->json)); /* out of memory: sent without data */
    } else if (data_len > 0 && (size_t)data_len <= SK_MAX_MSG_PAYLOAD) {
        char *b64 = sk_malloc(4 * (((size_t)data_len + 2) / 3) + 1);
        if (b64 != NULL) {
            sk_base64url_encode(data, (size_t)data_len, b64);
            SK_IGNORE(json_object_set_new(body, "data_base64url", json_string(b64)));
            sk_free(b64);
        }
    }
    sk_envelope_init(&env, "DeadLetter", c->durable, dl_id,
                     j->has_env ? j->m.env.traceparent : NULL);
    st = sk_outbox_add(tx, c->dlq_subject, &env, body);
    if (st == SK_ELIMIT) {
        /* The original payload makes it too large: publish the record without it. */
        json_object_del(body, "data");
        json_object_del(body, "data_base64url");
        SK_IGNORE(json_object_set_new(body, "data_omitted", json_true()));
        st = sk_outbox_add(tx, c->dlq_subject, &env, body);
    }
out:
    json_decref(hdrs);
    json_decref(body);
    sk_free(hdrs_text);
    return st;
}

static void dead_done(sk_status st, const char *message, void *ctx)
{
    job *j = ctx;

    if (st == SK_OK) {
        /* Term: the server never redelivers it; the dead letter is the record. */
        natsStatus s = j->is_dup ? natsMsg_Ack(j->msg, NULL) : natsMsg_Term(j->msg, NULL);
        if (s != NATS_OK) {
            SK_LOG_DEBUG("consumer %s: term failed: %s", j->c->durable, natsStatus_GetText(s));
        }
        if (!j->is_dup) {
            SK_LOG_WARN("consumer %s: dead letter subject=%s msg_id=%s deliveries=%llu: %s",
                        j->c->durable, j->m.nats_subject ? j->m.nats_subject : "",
                        j->has_env ? j->m.env.id : "-", (unsigned long long)j->m.n_delivered,
                        j->error);
        }
        count(j->c, j->is_dup ? RES_DUP : RES_DEAD);
    } else {
        SK_LOG_WARN("consumer %s: writing a dead letter failed: %s", j->c->durable, message);
        job_nak(j, REQUEUE_DELAY_MS);
        count(j->c, RES_RETRY);
    }
    job_finish(j);
}

/* Queue the dead-letter unit for @p j; settles the job itself when that fails. */
static void dead_letter(job *j, const char *error)
{
    sk_status st;

    snprintf(j->error, sizeof(j->error), "%s", error != NULL ? error : "");
    st = sk_store_submit(j->c->store, dead_work, dead_done, j);
    if (st != SK_OK) {
        job_nak(j, REQUEUE_DELAY_MS);
        count(j->c, RES_RETRY);
        job_finish(j);
    }
}

/* ---------------------------------------------------------------- handling */

static sk_status handle_work(sk_tx *tx, void *ctx)
{
    job *j = ctx;
    sk_consumer *c = j->c;
    sk_db_value p[3] = { SK_DB_TEXT_V(c->durable), SK_DB_TEXT_V(j->m.env.id),
                         SK_DB_INT_V(sk_time_now_ms()) };
    int64_t changes = 0;
    sk_status st;

    j->is_dup = false;
    st = sk_tx_exec(tx,
                    "INSERT INTO sk_inbox (consumer, msg_id, processed_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT (consumer, msg_id) DO NOTHING",
                    p, 3, &changes);
    if (st != SK_OK) {
        return SK_WRAP(st, "consumer %s: recording message %s in the inbox", c->durable,
                       j->m.env.id);
    }
    if (changes == 0) {
        j->is_dup = true;
        return SK_OK;
    }
    st = c->handler(tx, &j->m, c->ctx);
    if (st != SK_OK && sk_error_status() != st) {
        /* A handler that returned a bare status: give it a message. */
        st = SK_FAIL(st, "handler returned %s", sk_status_name(st));
    }
    return st;
}

static void handle_done(sk_status st, const char *message, void *ctx)
{
    job *j = ctx;
    sk_consumer *c = j->c;

    if (st == SK_OK) {
        natsStatus s = natsMsg_Ack(j->msg, NULL);
        if (s != NATS_OK) {
            /* The redelivery will find the inbox row and be acked then. */
            SK_LOG_DEBUG("consumer %s: ack failed: %s", c->durable, natsStatus_GetText(s));
        }
        count(c, j->is_dup ? RES_DUP : RES_OK);
        job_finish(j);
        return;
    }
    if (st == SK_EPROTO || j->m.n_delivered >= (uint64_t)c->max_deliver) {
        dead_letter(j, message);
        return;
    }
    SK_LOG_INFO("consumer %s: message %s failed (delivery %llu of %d), retrying: %s", c->durable,
                j->m.env.id, (unsigned long long)j->m.n_delivered, c->max_deliver, message);
    job_nak(j, sk__consumer_backoff_ms(j->m.n_delivered));
    count(c, RES_RETRY);
    job_finish(j);
}

/* Fetch thread: turn one message into a job and queue it. Takes @p msg. */
static void process(sk_consumer *c, natsMsg *msg)
{
    jsMsgMetaData *meta = NULL;
    sk_status st;
    const char *data;
    int data_len;
    job *j = sk_calloc(1, sizeof(*j));

    if (j == NULL) {
        /* Let the server redeliver it after a while. */
        SK_IGNORE(natsMsg_NakWithDelay(msg, REQUEUE_DELAY_MS, NULL)); /* best effort */
        natsMsg_Destroy(msg);
        return;
    }
    lock(&c->mu);
    c->n_outstanding++;
    unlock(&c->mu);
    j->c = c;
    j->msg = msg;
    j->m.nats_subject = natsMsg_GetSubject(msg);
    j->m.n_delivered = 1;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        j->m.n_delivered = meta->NumDelivered;
        j->m.stream_seq = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
    }
    data = natsMsg_GetData(msg);
    data_len = natsMsg_GetDataLength(msg);
    j->m.data = (sk_slice){ (const uint8_t *)(data != NULL ? data : ""),
                            data_len > 0 ? (size_t)data_len : 0 };

    st = sk__envelope_from_msg(msg, &j->m.env, &j->envbuf);
    if (st != SK_OK) {
        SK_WRAP(st, "invalid envelope");
        dead_letter(j, sk_error_message());
        return;
    }
    j->has_env = true;
    if (j->m.data.len > SK_MAX_MSG_PAYLOAD) {
        dead_letter(j, "payload over the limit of SK_MAX_MSG_PAYLOAD bytes");
        return;
    }
    st = sk_json_parse_object(j->m.data, &j->json);
    if (st != SK_OK) {
        SK_WRAP(st, "invalid data");
        dead_letter(j, sk_error_message());
        return;
    }
    j->m.json = j->json;
    st = sk_store_submit(c->store, handle_work, handle_done, j);
    if (st != SK_OK) {
        job_nak(j, REQUEUE_DELAY_MS);
        count(c, RES_RETRY);
        job_finish(j);
    }
}

/* Sleep up to @p ms unless stopping. Called with mu held. */
static void wait_ms(sk_consumer *c, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    if (!c->is_stopping) {
        SK_IGNORE(pthread_cond_timedwait(&c->cond, &c->mu, &ts)); /* timeout or wake-up */
    }
}

static sk_status consumer_subscribe(sk_consumer *c);

/* Drop the subscription; bound to the durable, so the durable and its position stay. */
static void consumer_unsubscribe(sk_consumer *c)
{
    if (c->sub != NULL) {
        SK_IGNORE(natsSubscription_Unsubscribe(c->sub)); /* leaving anyway */
        natsSubscription_Destroy(c->sub);
        c->sub = NULL;
    }
}

/*
 * Move to the bus's current connection (after a certificate reload), or
 * subscribe again after a failed attempt. Messages fetched on the old
 * subscription are acknowledged through it, so this first waits for them.
 * @return true when subscribed; false when stopping or subscribing failed.
 */
static bool consumer_move(sk_consumer *c)
{
    lock(&c->mu);
    while (!c->is_stopping && c->n_outstanding > 0) {
        wait_ms(c, 100);
    }
    bool stop = c->is_stopping;
    unlock(&c->mu);
    if (stop) {
        return false;
    }
    if (!sk__bus_link_is_current(c->bus, c->link)) {
        consumer_unsubscribe(c);
        sk__bus_link_release(c->link);
        c->link = sk__bus_link_acquire(c->bus);
    }
    if (c->sub == NULL) {
        if (consumer_subscribe(c) != SK_OK) {
            int64_t now = sk_time_mono_ms();
            if (c->last_log_ms == 0 || now - c->last_log_ms >= LOG_INTERVAL_MS) {
                c->last_log_ms = now;
                SK_LOG_WARN("consumer %s: %s (retrying)", c->durable, sk_error_message());
            }
            return false;
        }
        SK_LOG_INFO("consumer %s: subscribed on connection generation %llu", c->durable,
                    (unsigned long long)c->link->generation);
    }
    return true;
}

static void *fetch_main(void *arg)
{
    sk_consumer *c = arg;
    int64_t backoff = 100;

    for (;;) {
        natsMsgList list = { 0 };
        jsErrCode jerr = 0;
        natsStatus s;

        lock(&c->mu);
        /* Bounded work in flight: wait for the store to catch up before fetching more. */
        while (!c->is_stopping && c->n_outstanding + c->batch > c->max_outstanding) {
            wait_ms(c, 100);
        }
        bool stop = c->is_stopping;
        unlock(&c->mu);
        if (stop) {
            break;
        }
        if ((c->sub == NULL || !sk__bus_link_is_current(c->bus, c->link)) && !consumer_move(c)) {
            lock(&c->mu);
            wait_ms(c, backoff);
            unlock(&c->mu);
            backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
            continue;
        }
        s = natsSubscription_Fetch(&list, c->sub, (int)c->batch, FETCH_WAIT_MS, &jerr);
        if (s == NATS_OK) {
            backoff = 100;
            for (int i = 0; i < list.Count; i++) {
                natsMsg *m = list.Msgs[i];
                list.Msgs[i] = NULL; /* the job owns it now */
                if (m != NULL) {
                    process(c, m);
                }
            }
            natsMsgList_Destroy(&list);
            continue;
        }
        natsMsgList_Destroy(&list);
        if (s == NATS_TIMEOUT) {
            continue; /* nothing to fetch right now */
        }
        {
            int64_t now = sk_time_mono_ms();
            if (!sk__nats_is_retryable(s, jerr) &&
                (c->last_log_ms == 0 || now - c->last_log_ms >= LOG_INTERVAL_MS)) {
                c->last_log_ms = now;
                SK_IGNORE(sk__nats_fail(s, jerr, "fetch")); /* only formats the message */
                SK_LOG_WARN("consumer %s: %s", c->durable, sk_error_message());
            }
        }
        lock(&c->mu);
        wait_ms(c, backoff);
        unlock(&c->mu);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    return NULL;
}

/* ---------------------------------------------------------------- lifecycle */

/* Make sure dead letters have a stream to land in; failures are only logged. */
static void dlq_stream_ensure(sk_bus *bus)
{
    sk__bus_link *link = sk__bus_link_acquire(bus);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, link->js, SK_DLQ_STREAM, NULL, &jerr);

    jsStreamInfo_Destroy(si);
    sk__bus_link_release(link);
    if (s == NATS_OK) {
        return;
    }
    if (s == NATS_NOT_FOUND || jerr == 10059) {
        const char *subjects[1] = { SK_DLQ_SUBJECT_PREFIX ">" };
        sk_stream_config sc = { .name = SK_DLQ_STREAM, .subjects = subjects, .n_subjects = 1 };
        if (sk_bus_stream_ensure(bus, &sc) == SK_OK) {
            return;
        }
    }
    /* Someone else may have created it at the same time, or an operator stream covers dlq.>. */
    SK_LOG_WARN("consumer: could not create stream %s: %s", SK_DLQ_STREAM, sk_error_message());
}

/* Create or update the durable consumer and bind a pull subscription to it on c->link. */
static sk_status consumer_subscribe(sk_consumer *c)
{
    jsConsumerInfo *ci = NULL;
    jsConsumerConfig cc;
    jsSubOptions so;
    sk_status st = SK_OK;
    jsErrCode jerr = 0;
    jsCtx *js = c->link->js;
    natsStatus s;

    jsConsumerConfig_Init(&cc);
    cc.Durable = c->durable;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.MaxDeliver = c->max_deliver + MAX_DELIVER_SLACK;
    cc.AckWait = c->ack_wait_ms * 1000000; /* nanoseconds */
    cc.MaxAckPending = (int64_t)c->max_outstanding;
    cc.FilterSubject = c->filter;
    s = js_GetConsumerInfo(&ci, js, c->stream, c->durable, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        jerr = 0;
        s = js_AddConsumer(NULL, js, c->stream, &cc, NULL, &jerr);
        if (s != NATS_OK) {
            st = sk__nats_fail(s, jerr, "creating the durable consumer");
            goto out;
        }
    } else if (s == NATS_OK) {
        const jsConsumerConfig *have = ci->Config;
        bool same = have != NULL && have->MaxDeliver == cc.MaxDeliver &&
                    have->AckWait == cc.AckWait && have->MaxAckPending == cc.MaxAckPending &&
                    have->FilterSubject != NULL && strcmp(have->FilterSubject, c->filter) == 0;
        if (!same) {
            jerr = 0;
            s = js_UpdateConsumer(NULL, js, c->stream, &cc, NULL, &jerr);
            if (s != NATS_OK) {
                st = sk__nats_fail(s, jerr, "updating the durable consumer");
                goto out;
            }
        }
    } else {
        st = sk__nats_fail(s, jerr, "looking up the durable consumer");
        goto out;
    }
    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Consumer = c->durable; /* bind: unsubscribing then never deletes the durable */
    so.ManualAck = true;
    jerr = 0;
    s = js_PullSubscribe(&c->sub, js, c->filter, c->durable, NULL, &so, &jerr);
    if (s != NATS_OK) {
        st = sk__nats_fail(s, jerr, "subscribing to the durable consumer");
    }
out:
    jsConsumerInfo_Destroy(ci);
    if (st != SK_OK) {
        st = SK_WRAP(st, "consumer %s on stream %s", c->durable, c->stream);
    }
    return st;
}

sk_status sk_consumer_start(sk_consumer **out,
                            sk_bus *bus,
                            sk_store *store,
                            sk_metrics *metrics,
                            const sk_consumer_config *cfg)
{
    pthread_condattr_t ca;
    sk_status st = SK_OK;
    sk_consumer *c = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: out must not be NULL");
    }
    *out = NULL;
    if (bus == NULL || store == NULL || cfg == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: bus, store and cfg must not be NULL");
    }
    if (!sk__msg_name_is_valid(cfg->stream)) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: cfg->stream: expected 1..64 of [A-Za-z0-9_-]");
    }
    if (!sk__msg_name_is_valid(cfg->durable)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_consumer_start: cfg->durable: expected 1..64 of [A-Za-z0-9_-]");
    }
    if ((st = sk__subject_check(cfg->filter_subject, true,
                                "sk_consumer_start: cfg->filter_subject")) != SK_OK) {
        return st;
    }
    if (cfg->handler == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: cfg->handler must not be NULL");
    }
    if (cfg->max_deliver < 0 || cfg->max_deliver > 1000) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: cfg->max_deliver: expected 0..1000, got %d",
                       cfg->max_deliver);
    }
    if (cfg->ack_wait_ms < 0 || cfg->ack_wait_ms > 24LL * 3600 * 1000) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: cfg->ack_wait_ms: expected 0..86400000");
    }
    if (cfg->batch > 4096) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: cfg->batch: expected 0..4096, got %zu",
                       cfg->batch);
    }
    c = sk_calloc(1, sizeof(*c));
    if (c == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_consumer_start: allocating the consumer");
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        sk_free(c);
        return SK_FAIL(SK_ENOMEM, "sk_consumer_start: creating a mutex");
    }
    if (pthread_condattr_init(&ca) != 0) {
        pthread_mutex_destroy(&c->mu);
        sk_free(c);
        return SK_FAIL(SK_ENOMEM, "sk_consumer_start: creating a condition variable");
    }
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&c->cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&c->mu);
        sk_free(c);
        return SK_FAIL(SK_ENOMEM, "sk_consumer_start: creating a condition variable");
    }
    pthread_condattr_destroy(&ca);
    c->bus = bus;
    c->store = store;
    c->handler = cfg->handler;
    c->ctx = cfg->ctx;
    c->max_deliver = cfg->max_deliver == 0 ? 5 : cfg->max_deliver;
    c->ack_wait_ms = cfg->ack_wait_ms == 0 ? SK_CONSUMER_DEFAULT_ACK_WAIT_MS : cfg->ack_wait_ms;
    c->batch = cfg->batch == 0 ? 128 : cfg->batch;
    c->max_outstanding = 4 * c->batch;
    c->stream = sk_strdup(cfg->stream);
    c->durable = sk_strdup(cfg->durable);
    c->filter = sk_strdup(cfg->filter_subject);
    c->dlq_subject = sk_asprintf("%s%s", SK_DLQ_SUBJECT_PREFIX, cfg->durable);
    if (c->stream == NULL || c->durable == NULL || c->filter == NULL || c->dlq_subject == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_consumer_start: copying the config");
        goto out;
    }
    if (metrics != NULL) {
        for (int r = 0; r < RES_COUNT_; r++) {
            char *labels = sk_asprintf("consumer=\"%s\",result=\"%s\"", c->durable,
                                       result_names[r]);
            if (labels == NULL) {
                st = SK_FAIL(SK_ENOMEM, "sk_consumer_start: metric labels");
                goto out;
            }
            c->m_results[r] = sk_metrics_counter(metrics, "sk_consumer_messages_total",
                                                 "Messages handled by consumers, by result",
                                                 labels);
            sk_free(labels);
        }
    }
    dlq_stream_ensure(bus);
    c->link = sk__bus_link_acquire(bus);
    if ((st = consumer_subscribe(c)) != SK_OK) {
        goto out;
    }
    if (pthread_create(&c->thread, NULL, fetch_main, c) != 0) {
        st = SK_FAIL(SK_EINTERNAL, "sk_consumer_start: creating the fetch thread");
        goto out;
    }
    c->has_thread = true;
    *out = c;
    c = NULL;
out:
    sk_consumer_stop(c);
    return st;
}

void sk_consumer_stop(sk_consumer *c)
{
    if (c == NULL) {
        return;
    }
    lock(&c->mu);
    c->is_stopping = true;
    pthread_cond_broadcast(&c->cond);
    unlock(&c->mu);
    if (c->has_thread) {
        pthread_join(c->thread, NULL);
    }
    /* Every fetched message is settled by a done callback of the store. */
    lock(&c->mu);
    while (c->n_outstanding > 0) {
        if (pthread_cond_wait(&c->cond, &c->mu) != 0) {
            sk_assert_fail("pthread_cond_wait", __FILE__, __LINE__);
        }
    }
    unlock(&c->mu);
    consumer_unsubscribe(c);
    sk__bus_link_release(c->link);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    sk_free(c->stream);
    sk_free(c->durable);
    sk_free(c->filter);
    sk_free(c->dlq_subject);
    sk_free(c);
}
