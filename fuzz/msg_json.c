/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: JSON that reaches a service through NATS and the outbox:
 * an outbox row's headers column (sk__headers_json_apply onto a natsMsg made
 * without a connection, then sk__envelope_from_msg reading them back), the
 * JSON form of an envelope (sk__envelope_from_json) and a discovery instance
 * record from the KV bucket (sk__instance_decode). Properties: what
 * from_json accepts, from_msg accepts too, with the same attributes; an
 * accepted instance re-encodes and decodes to the same record.
 */
#include <string.h>

#include "discovery/discovery_int.h"
#include "fuzz.h"
#include "msg/msg_int.h"

static void check_same(const sk_envelope *a, const sk_envelope *b)
{
    SK_FUZZ_CHECK(strcmp(a->id, b->id) == 0);
    SK_FUZZ_CHECK(strcmp(a->type, b->type) == 0);
    SK_FUZZ_CHECK(strcmp(a->source, b->source) == 0);
    SK_FUZZ_CHECK(strcmp(a->subject, b->subject) == 0);
    SK_FUZZ_CHECK(a->time_ms == b->time_ms);
    SK_FUZZ_CHECK(a->schema_version == b->schema_version);
    SK_FUZZ_CHECK(a->saga_step == b->saga_step);
    SK_FUZZ_CHECK((a->reply_to == NULL) == (b->reply_to == NULL));
    SK_FUZZ_CHECK(a->reply_to == NULL || strcmp(a->reply_to, b->reply_to) == 0);
}

static void fuzz_envelope(sk_slice in)
{
    sk_envelope env_json;
    sk_envelope env_msg;
    sk__envelope_buf buf_json;
    sk__envelope_buf buf_msg;
    natsMsg *msg = NULL;

    sk_status st_json = sk__envelope_from_json(in, &env_json, &buf_json);
    if (natsMsg_Create(&msg, "fuzz.subject", NULL, "{}", 2) != NATS_OK) {
        return;
    }
    if (sk__headers_json_apply(in, msg) == SK_OK) {
        sk_status st_msg = sk__envelope_from_msg(msg, &env_msg, &buf_msg);
        /*
         * Header names are matched without regard to case in both, but nats.c
         * keeps "A" and "a" apart as two keys, so from_msg may see a repeat
         * that the JSON object (case-sensitive keys) also holds: the results
         * agree only when from_json succeeded and the other did not fail on
         * something the JSON form cannot express.
         */
        if (st_json == SK_OK && st_msg == SK_OK) {
            check_same(&env_json, &env_msg);
        }
    }
    natsMsg_Destroy(msg);
}

static void fuzz_instance(sk_slice in)
{
    sk_instance inst;
    sk_instance back;
    char *text = NULL;
    size_t len = 0;

    if (sk__instance_decode(in, &inst) != SK_OK) {
        return;
    }
    SK_FUZZ_CHECK(sk__instance_validate(&inst) == SK_OK);
    sk_status st = sk__instance_encode(&inst, &text, &len);
    if (st == SK_OK) {
        SK_FUZZ_CHECK(sk__instance_decode((sk_slice){ (const uint8_t *)text, len }, &back) == SK_OK);
        SK_FUZZ_CHECK(strcmp(back.service, inst.service) == 0);
        SK_FUZZ_CHECK(strcmp(back.instance, inst.instance) == 0);
        SK_FUZZ_CHECK(strcmp(back.address, inst.address) == 0);
        SK_FUZZ_CHECK(back.is_ready == inst.is_ready && back.pid == inst.pid);
        SK_FUZZ_CHECK(back.heartbeat_ms == inst.heartbeat_ms);
        sk__instance_fini(&back);
    } else {
        SK_FUZZ_CHECK(st == SK_ENOMEM);
    }
    sk_free(text);
    sk__instance_fini(&inst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_slice in = { data, size };

    static int is_nats_open;

    sk_fuzz_setup();
    /* natsMsg_Destroy needs the library's state even without a connection. */
    if (!is_nats_open) {
        SK_FUZZ_CHECK(nats_Open(-1) == NATS_OK);
        is_nats_open = 1;
    }
    fuzz_envelope(in);
    fuzz_instance(in);
    sk_error_clear();
    return 0;
}
