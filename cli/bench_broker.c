/* SPDX-License-Identifier: MIT */
/*
 * `skald bench`: how many JetStream messages an order makes. Each stream of
 * the system is asked for its last sequence number and its number of
 * consumers (STREAM.INFO, which the CLI identity may call) at a mark before
 * a run and again after it. Every consumer Skald creates takes its whole
 * stream (<context>.<kind>.>), so a message stored is delivered once per
 * consumer: published = the growth of the sequence numbers, delivered = each
 * stream's growth times its consumers. Redeliveries are not counted.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* A STREAM.INFO answer comes in well under a millisecond; a missing one must not stall a run. */
#define BROKER_INFO_WAIT_MS 2000

sk_status cli_broker_open(cli_broker *k, natsConnection *nc, const sk_system *sys)
{
    static const char *const kinds[] = { "EVENTS", "COMMANDS", "REPLIES" };
    natsStatus s;

    memset(k, 0, sizeof(*k));
    if (nc == NULL || sys == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_broker_open: %s must not be NULL",
                       nc == NULL ? "nc" : "sys");
    }
    for (size_t i = 0; i < sys->n_services; i++) {
        if (!sk_system_service_has_streams(&sys->services[i])) {
            continue;
        }
        for (size_t j = 0; j < 3; j++) {
            if (k->n_streams == CLI_BROKER_MAX_STREAMS) {
                return SK_FAIL(SK_ELIMIT, "the system has more than %d streams",
                               CLI_BROKER_MAX_STREAMS);
            }
            sk_stream_name(sys->services[i].context, kinds[j], k->streams[k->n_streams].name,
                           sizeof(k->streams[0].name));
            k->n_streams++;
        }
    }
    s = natsConnection_JetStream(&k->js, nc, NULL);
    if (s != NATS_OK) {
        k->js = NULL;
        return SK_FAIL(SK_EBUS, "JetStream context: %s", natsStatus_GetText(s));
    }
    return SK_OK;
}

/* Stream @p name's last sequence number and number of consumers. */
static sk_status stream_state(jsCtx *js, const char *name, uint64_t *last_seq, int64_t *consumers)
{
    jsOptions o;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = jsOptions_Init(&o);

    o.Wait = BROKER_INFO_WAIT_MS;
    if (s == NATS_OK) {
        s = js_GetStreamInfo(&si, js, name, &o, &jerr);
    }
    if (s != NATS_OK) {
        const char *last = nats_GetLastError(NULL);
        return SK_FAIL(SK_EBUS, "stream %s: info: %s (jetstream error %d)%s%s", name,
                       natsStatus_GetText(s), (int)jerr, last != NULL ? ": " : "",
                       last != NULL ? last : "");
    }
    *last_seq = si->State.LastSeq;
    *consumers = si->State.Consumers;
    jsStreamInfo_Destroy(si);
    return SK_OK;
}

sk_status cli_broker_mark(cli_broker *k)
{
    if (k->js == NULL) {
        return SK_FAIL(SK_ESTATE, "cli_broker_mark: not open");
    }
    k->is_marked = false;
    for (size_t i = 0; i < k->n_streams; i++) {
        cli_broker_stream *b = &k->streams[i];
        sk_status st = stream_state(k->js, b->name, &b->last_seq0, &b->consumers0);
        if (st != SK_OK) {
            return st;
        }
    }
    k->is_marked = true;
    return SK_OK;
}

sk_status cli_broker_since(cli_broker *k, uint64_t *published, uint64_t *delivered)
{
    uint64_t n_pub = 0, n_del = 0;

    *published = 0;
    *delivered = 0;
    if (k->js == NULL || !k->is_marked) {
        return SK_FAIL(SK_ESTATE, "cli_broker_since: %s", k->js == NULL ? "not open" : "no mark");
    }
    for (size_t i = 0; i < k->n_streams; i++) {
        const cli_broker_stream *b = &k->streams[i];
        uint64_t last_seq = 0, grown, times;
        int64_t consumers = 0;
        sk_status st = stream_state(k->js, b->name, &last_seq, &consumers);

        if (st != SK_OK) {
            return st;
        }
        if (consumers != b->consumers0) {
            /* Deliveries are counted per consumer: with another set they mean nothing. */
            return SK_FAIL(SK_ECONFLICT, "stream %s: %lld consumers at the mark, %lld now", b->name,
                           (long long)b->consumers0, (long long)consumers);
        }
        if (last_seq < b->last_seq0) {
            return SK_FAIL(SK_ECONFLICT,
                           "stream %s: sequence went back from %llu to %llu (purged?)", b->name,
                           (unsigned long long)b->last_seq0, (unsigned long long)last_seq);
        }
        grown = last_seq - b->last_seq0;
        if (consumers < 0 || __builtin_mul_overflow(grown, (uint64_t)consumers, &times) ||
            __builtin_add_overflow(n_del, times, &n_del) ||
            __builtin_add_overflow(n_pub, grown, &n_pub)) {
            return SK_FAIL(SK_ELIMIT, "stream %s: counts out of range", b->name);
        }
    }
    *published = n_pub;
    *delivered = n_del;
    return SK_OK;
}

void cli_broker_close(cli_broker *k)
{
    jsCtx_Destroy(k->js); /* NULL-safe */
    k->js = NULL;
    k->is_marked = false;
}
