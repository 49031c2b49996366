/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: CloudEvents binary-mode header decoding (sk__envelope_decode)
 * and RFC 3339 timestamps (sk__rfc3339_parse). The input is read as header
 * lines "name: value\n"; the slices point into the input, which is not
 * NUL-terminated, as headers received from NATS would be. Properties: a
 * decoded envelope passes sk__envelope_validate and survives the JSON round
 * trip (to_json, from_json) unchanged.
 */
#include <string.h>

#include "fuzz.h"
#include "msg/msg_int.h"

#define MAX_HEADERS 80

static void check_round_trip(const sk_envelope *env)
{
    sk_envelope back;
    sk__envelope_buf buf2;
    char *json = NULL;

    SK_FUZZ_CHECK(sk__envelope_validate(env) == SK_OK);
    sk_status st = sk__envelope_to_json(env, &json);
    if (st == SK_ENOMEM) {
        return;
    }
    SK_FUZZ_CHECK(st == SK_OK);
    st = sk__envelope_from_json(sk_slice_from_str(json), &back, &buf2);
    SK_FUZZ_CHECK(st == SK_OK);
    SK_FUZZ_CHECK(strcmp(back.id, env->id) == 0);
    SK_FUZZ_CHECK(strcmp(back.type, env->type) == 0);
    SK_FUZZ_CHECK(strcmp(back.source, env->source) == 0);
    SK_FUZZ_CHECK(strcmp(back.subject, env->subject) == 0);
    SK_FUZZ_CHECK(back.time_ms == env->time_ms);
    SK_FUZZ_CHECK(back.schema_version == env->schema_version);
    SK_FUZZ_CHECK(strcmp(back.traceparent, env->traceparent) == 0);
    SK_FUZZ_CHECK(back.saga_step == env->saga_step);
    SK_FUZZ_CHECK((back.reply_to == NULL) == (env->reply_to == NULL));
    SK_FUZZ_CHECK(back.reply_to == NULL || strcmp(back.reply_to, env->reply_to) == 0);
    sk_free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk__msg_header hdrs[MAX_HEADERS];
    size_t n = 0;
    size_t pos = 0;
    sk_envelope env;
    sk__envelope_buf buf;
    int64_t ms = 0;

    sk_fuzz_setup();

    /* The whole input as a timestamp: the parser must stop at len, not at a NUL. */
    if (sk__rfc3339_parse((sk_slice){ data, size }, &ms) == SK_OK) {
        /* Four-digit years: 0000-01-01 minus 23:59 of offset .. 9999-12-31 plus 23:59. */
        SK_FUZZ_CHECK(ms >= -62167219200000LL - 86400000LL && ms <= 253402300799999LL + 86400000LL);
    }

    while (pos < size && n < MAX_HEADERS) {
        const uint8_t *line = data + pos;
        const uint8_t *nl = memchr(line, '\n', size - pos);
        size_t line_len = nl != NULL ? (size_t)(nl - line) : size - pos;
        const uint8_t *colon = memchr(line, ':', line_len);

        pos += line_len + (nl != NULL ? 1 : 0);
        if (colon == NULL) {
            continue;
        }
        size_t name_len = (size_t)(colon - line);
        size_t vstart = name_len + 1;
        if (vstart < line_len && line[vstart] == ' ') {
            vstart++;
        }
        hdrs[n].name = (sk_slice){ line, name_len };
        hdrs[n].value = (sk_slice){ line + vstart, line_len - vstart };
        n++;
    }

    if (sk__envelope_decode(hdrs, n, &env, &buf) == SK_OK) {
        check_round_trip(&env);
    }
    sk_error_clear();
    return 0;
}
