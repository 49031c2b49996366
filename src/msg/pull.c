/* SPDX-License-Identifier: MIT */
/*
 * Pull requests of our own for a durable JetStream consumer.
 *
 * nats.c 3.4.1's natsSubscription_Fetch sends a pull request, waits until
 * it is answered and returns: the messages are handed on only after the last
 * one arrived, and every fetch ends with a status message for nats.c to read
 * and free on its own threads. Here the server answers into a plain
 * synchronous subscription "<inbox>.<token>.*" (request <id> replies to
 * "<inbox>.<token>.<id>") and the caller takes each message as it arrives,
 * handing it to the store while the rest are on their way.
 *
 * One request is open at a time, for as much as the caller has room for.
 * nats-server 2.9 serves several waiting requests of one consumer in turn,
 * and ends a request it filled without a status, so with more than one open
 * the client could not tell which had ended. With one, every delivery counts
 * against it; it ends when it has delivered its batch, or with a status
 * message to its reply subject (408 when it expired). One that gets neither
 * by a second after its expiry was dropped by the server (usually harmless:
 * an expired request is dropped without a status when a message is ready
 * first; twice in a row means a lost connection, a leader gone without
 * saying so, or no such consumer). A request the server refuses (a limit of
 * the durable's, a bad request) is reported, so the caller backs off.
 *
 * Acknowledgements go straight to a message's reply subject ("$JS.ACK...."):
 * the subscription is not nats.c's JetStream one, so natsMsg_Ack and
 * natsMsg_GetMetaData refuse these messages.
 */
#include "msg/msg_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <skald/core.h>

/* How long after its expiry a request that got no end status counts as lost. */
#define PULL_LOST_GRACE_MS 1000

/* ---------------------------------------------------------------- bookkeeping */

void sk__pull_on_message(sk__pull *p)
{
    p->n_lost_in_a_row = 0;
    /* None open: it is from a request we forgot, and counts against nothing. */
    if (p->n_requested > 0) {
        p->n_requested--; /* at 0 it is filled: the server ends it without a status */
    }
}

bool sk__pull_on_end(sk__pull *p, uint64_t id)
{
    p->n_lost_in_a_row = 0;
    if (!sk__pull_is_open(p) || id != p->last_id) {
        return false; /* a request we gave up on */
    }
    sk__pull_forget(p);
    return true;
}

bool sk__pull_drop_lost(sk__pull *p, int64_t now_ms)
{
    if (!sk__pull_is_open(p) || now_ms < p->lost_after_ms) {
        return false;
    }
    sk__pull_forget(p);
    p->n_lost_in_a_row++;
    return true;
}

void sk__pull_forget(sk__pull *p)
{
    p->n_requested = 0;
}

/* ---------------------------------------------------------------- subscription */

sk_status sk__pull_open(
    sk__pull *p, natsConnection *nc, const char *inbox, const char *stream, const char *durable)
{
    char token[SK_UUID_LEN];
    char subject[sizeof(p->reply_prefix) + 2];
    natsStatus s;
    int n;

    memset(p, 0, sizeof(*p));
    if (strlen(inbox) > SK__PULL_INBOX_MAX) {
        return SK_FAIL(SK_EINVAL, "consumer: the inbox prefix is longer than %d bytes",
                       SK__PULL_INBOX_MAX);
    }
    n = snprintf(p->next_subject, sizeof(p->next_subject), "$JS.API.CONSUMER.MSG.NEXT.%s.%s",
                 stream, durable);
    if (n < 0 || (size_t)n >= sizeof(p->next_subject)) {
        return SK_FAIL(SK_EINVAL, "consumer: stream and durable names are too long");
    }
    sk_uuid7(token);
    snprintf(p->reply_prefix, sizeof(p->reply_prefix), "%s.%s.", inbox, token);
    snprintf(subject, sizeof(subject), "%s*", p->reply_prefix);
    s = natsConnection_SubscribeSync(&p->sub, nc, subject);
    if (s != NATS_OK) {
        p->sub = NULL;
        return sk__nats_fail(s, 0, "subscribing to the consumer's deliveries");
    }
    /* No limit on what may queue: what is asked for bounds it. */
    SK_IGNORE(natsSubscription_SetPendingLimits(p->sub, -1, -1));
    p->nc = nc;
    return SK_OK;
}

void sk__pull_close(sk__pull *p)
{
    int n_queued = 0, n_bytes = 0, n_taken = 0;
    natsMsg **taken = NULL;

    if (p->sub == NULL) {
        return;
    }
    /*
     * Take what arrived, unsubscribe, then give it back: given back while
     * the open request still had this subscription, it could come straight
     * back here and be lost with it.
     */
    if (natsSubscription_GetPending(p->sub, &n_queued, &n_bytes) == NATS_OK && n_queued > 0) {
        taken = sk_calloc((size_t)n_queued, sizeof(*taken)); /* NULL: they wait for AckWait */
    }
    for (int i = 0; taken != NULL && i < n_queued; i++) {
        natsStatus s = natsSubscription_NextMsg(&taken[n_taken], p->sub, 1);
        if (s == NATS_OK) {
            n_taken++;
        } else if (s == NATS_TIMEOUT) {
            break;
        } /* else a status message (no responders): skip it */
    }
    SK_IGNORE(natsSubscription_Unsubscribe(p->sub)); /* leaving anyway */
    natsSubscription_Destroy(p->sub);
    for (int i = 0; i < n_taken; i++) {
        const char *reply = natsMsg_GetReply(taken[i]);
        if (reply != NULL && strncmp(reply, "$JS.ACK.", 8) == 0) {
            SK_IGNORE(sk__js_ack(p->nc, taken[i], SK__JS_NAK, 0)); /* else back after AckWait */
        }
        natsMsg_Destroy(taken[i]);
    }
    sk_free(taken);
    memset(p, 0, sizeof(*p));
}

sk_status sk__pull_ask(sk__pull *p, int batch, int64_t expires_ms)
{
    char reply[sizeof(p->reply_prefix) + 24];
    char body[96];
    natsStatus s;

    if (sk__pull_is_open(p) || batch < 1) {
        return SK_FAIL(SK_EINVAL, "sk__pull_ask: %s",
                       batch < 1 ? "batch must be at least 1" : "a request is open");
    }
    uint64_t id = p->last_id + 1;
    snprintf(reply, sizeof(reply), "%s%" PRIu64, p->reply_prefix, id);
    /* "expires" is a Go duration: nanoseconds. */
    snprintf(body, sizeof(body), "{\"batch\":%d,\"expires\":%" PRId64 "}", batch,
             expires_ms * 1000000);
    s = natsConnection_PublishRequestString(p->nc, p->next_subject, reply, body);
    if (s != NATS_OK) {
        return sk__nats_fail(s, 0, "sending a pull request");
    }
    p->last_id = id;
    p->n_requested = batch;
    p->lost_after_ms = sk_time_mono_ms() + expires_ms + PULL_LOST_GRACE_MS;
    return SK_OK;
}

/* The request id a status message answers (its reply subject's last token), 0 when not ours. */
static uint64_t status_request_id(const sk__pull *p, const char *subject)
{
    size_t n = strlen(p->reply_prefix);
    uint64_t id = 0;

    if (subject == NULL || strncmp(subject, p->reply_prefix, n) != 0) {
        return 0;
    }
    const char *end = sk__digits_parse(subject + n, UINT64_MAX, &id);
    return end != NULL && *end == '\0' ? id : 0;
}

/*
 * A status message: a request ended (*is_end when it was the open one), or
 * the consumer is gone.
 */
static sk_status status_handle(sk__pull *p, natsMsg *msg, bool *is_end)
{
    const char *code = NULL;
    const char *description = NULL;
    uint64_t id = status_request_id(p, natsMsg_GetSubject(msg));

    *is_end = false;
    SK_IGNORE(natsMsgHeader_Get(msg, "Status", &code)); /* stays NULL when absent */
    SK_IGNORE(natsMsgHeader_Get(msg, "Description", &description));
    if (code != NULL && strcmp(code, "100") == 0) {
        return SK_OK; /* an idle heartbeat; we ask for none */
    }
    *is_end = sk__pull_on_end(p, id);
    /* 408 (expired), 404 (nothing for a no-wait request) and a new leader end a request. */
    if (code == NULL || strcmp(code, "408") == 0 || strcmp(code, "404") == 0 ||
        (description != NULL && strstr(description, "Leadership Change") != NULL)) {
        return SK_OK;
    }
    if (description != NULL && strstr(description, "Consumer Deleted") != NULL) {
        sk__pull_forget(p);
        return SK_FAIL(SK_ENOTFOUND, "the durable consumer was deleted");
    }
    /*
     * The server refused the request ("400 Bad Request", "409 Exceeded
     * MaxRequestBatch", "409 Consumer is push based", ...): asking again at
     * once would only be refused again, so the caller backs off and says why.
     */
    return SK_FAIL(SK_ELIMIT, "pull request refused: %s %s", code,
                   description != NULL ? description : "");
}

sk_status sk__pull_next(sk__pull *p, natsMsg **out, int64_t timeout_ms)
{
    int64_t deadline = sk_time_mono_ms() + timeout_ms;

    *out = NULL;
    for (;;) {
        natsMsg *msg = NULL;
        int64_t left = deadline - sk_time_mono_ms();
        natsStatus s = natsSubscription_NextMsg(&msg, p->sub, left < 1 ? 1 : left);

        if (s == NATS_TIMEOUT) {
            /*
             * Twice in a row without an answer: a request gets lost now and
             * then (see the top of this file), repeatedly for a reason.
             */
            if (sk__pull_drop_lost(p, sk_time_mono_ms()) && p->n_lost_in_a_row >= 2) {
                return SK_FAIL(SK_ETIMEDOUT, "pull requests to %s went unanswered %d times",
                               p->next_subject, p->n_lost_in_a_row);
            }
            return SK_OK;
        }
        if (s == NATS_NO_RESPONDERS) {
            /* Nobody serves the consumer's requests: it is gone, or has no leader. */
            sk__pull_forget(p);
            return SK_FAIL(SK_EUNAVAILABLE, "no responders for %s", p->next_subject);
        }
        if (s != NATS_OK) {
            return sk__nats_fail(s, 0, "reading the consumer's deliveries");
        }
        const char *reply = natsMsg_GetReply(msg);
        if (reply != NULL && strncmp(reply, "$JS.ACK.", 8) == 0) {
            sk__pull_on_message(p);
            *out = msg;
            return SK_OK;
        }
        bool is_end = false;
        sk_status st = status_handle(p, msg, &is_end);
        natsMsg_Destroy(msg);
        if (st != SK_OK || is_end || sk_time_mono_ms() >= deadline) {
            return st; /* the open request ended: the caller asks again at once */
        }
    }
}

/* ---------------------------------------------------------------- acknowledgements */

natsStatus sk__js_ack(natsConnection *nc, natsMsg *msg, sk__js_ack_kind kind, int64_t delay_ms)
{
    const char *reply = natsMsg_GetReply(msg);
    char nak[64];

    if (reply == NULL) {
        return NATS_INVALID_ARG;
    }
    switch (kind) {
    case SK__JS_ACK:
        return natsConnection_PublishString(nc, reply, "+ACK");
    case SK__JS_TERM:
        return natsConnection_PublishString(nc, reply, "+TERM");
    case SK__JS_NAK:
        /* The delay is a Go duration: nanoseconds. */
        snprintf(nak, sizeof(nak), "-NAK {\"delay\":%" PRId64 "}", delay_ms * 1000000);
        return natsConnection_PublishString(nc, reply, nak);
    }
    return NATS_INVALID_ARG;
}

/* Parse a decimal token of @p len bytes; false when it is not one. */
static bool token_u64(const char *s, size_t len, uint64_t *out)
{
    return sk__digits_parse(s, UINT64_MAX, out) == s + len;
}

bool sk__js_ack_parse(const char *reply, uint64_t *n_delivered, uint64_t *stream_seq)
{
    /*
     * "$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>"
     * (9 tokens), or with a domain and an account hash after "$JS.ACK" and a
     * random token at the end (12 tokens, or more in later servers).
     */
    const char *start[16];
    size_t len[16];
    int n = 0;
    const char *t = reply;

    if (reply == NULL || strncmp(reply, "$JS.ACK.", 8) != 0) {
        return false;
    }
    for (;;) {
        const char *dot = strchr(t, '.');
        if (n == 16) {
            return false;
        }
        start[n] = t;
        len[n] = dot != NULL ? (size_t)(dot - t) : strlen(t);
        n++;
        if (dot == NULL) {
            break;
        }
        t = dot + 1;
    }
    int first = n == 9 ? 4 : n >= 11 ? 6 : -1; /* index of <delivered> */
    if (first < 0) {
        return false;
    }
    return token_u64(start[first], len[first], n_delivered) &&
           token_u64(start[first + 1], len[first + 1], stream_seq);
}
