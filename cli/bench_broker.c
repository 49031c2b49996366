/* SPDX-License-Identifier: MIT */
/*
 * `skald bench`: how many JetStream messages an order makes. Each stream of
 * the system is asked for its last sequence number and its number of
 * consumers (STREAM.INFO, which the CLI identity may call) before a run and
 * after it. Every consumer Skald creates takes its whole stream
 * (<context>.<kind>.>), so a message stored is delivered once per consumer:
 * published = the growth of the sequence numbers, delivered = that growth
 * times the consumers. Redeliveries are not counted.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

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
                return SK_FAIL(SK_EINVAL, "the system has more than %d streams",
                               CLI_BROKER_MAX_STREAMS);
            }
            sk_stream_name(sys->services[i].context, kinds[j], k->streams[k->n_streams],
                           sizeof(k->streams[0]));
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

sk_status cli_broker_count(cli_broker *k, uint64_t *published, uint64_t *delivered)
{
    *published = 0;
    *delivered = 0;
    if (k->js == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_broker_count: not open");
    }
    for (size_t i = 0; i < k->n_streams; i++) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetStreamInfo(&si, k->js, k->streams[i], NULL, &jerr);

        if (s != NATS_OK) {
            return SK_FAIL(SK_EBUS, "stream %s: info: %s (jetstream error %d)", k->streams[i],
                           natsStatus_GetText(s), (int)jerr);
        }
        *published += si->State.LastSeq;
        *delivered += si->State.LastSeq * (uint64_t)si->State.Consumers;
        jsStreamInfo_Destroy(si);
    }
    return SK_OK;
}

void cli_broker_close(cli_broker *k)
{
    jsCtx_Destroy(k->js);
    k->js = NULL;
}
