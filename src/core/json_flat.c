/* SPDX-License-Identifier: MIT */
/*
 * A JSON object whose members are all strings, parsed without allocating.
 * This is the form of the message headers that the outbox and the parked
 * and dead-lettered messages keep, read once per message by the relay and
 * the consumers: a jansson tree (a hash table and two allocations per
 * member, freed right after) cost more there than reading the row itself.
 *
 * It accepts what sk_json_parse_object accepts for such an object and
 * nothing else: strict UTF-8, no duplicate names, no NUL inside a string,
 * nothing but whitespace after the object (fuzz/json.c checks both
 * parsers agree). Strings are decoded by json_lex.c; decoded text is never
 * longer than its JSON form, so text.len + 1 bytes of scratch suffice.
 */
#include <string.h>

#include "core/core_int.h"

static sk_status lex_fail(const sk__json_cursor *c)
{
    return SK_FAIL(SK_EPROTO, "JSON at byte %zu: %s", c->err_at, c->err);
}

static bool same_name(sk_slice a, sk_slice b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

sk_status sk_json_parse_flat_strings(sk_slice text,
                                     char *scratch,
                                     size_t scratch_len,
                                     sk_json_member *members,
                                     size_t max_members,
                                     size_t *n_members)
{
    size_t bad = 0, n = 0;

    if (scratch == NULL || members == NULL || n_members == NULL ||
        (text.ptr == NULL && text.len > 0)) {
        return SK_FAIL(SK_EINVAL, "sk_json_parse_flat_strings: NULL argument");
    }
    *n_members = 0;
    if (scratch_len <= text.len) {
        return SK_FAIL(SK_EINVAL,
                       "sk_json_parse_flat_strings: scratch of %zu bytes for %zu of JSON",
                       scratch_len, text.len);
    }
    if (text.len == 0) {
        return SK_FAIL(SK_EPROTO, "JSON at byte 0: expected an object"); /* ptr may be NULL */
    }
    if (!sk__utf8_is_valid(text, &bad)) {
        return SK_FAIL(SK_EPROTO, "JSON at byte %zu: invalid UTF-8", bad);
    }
    sk__json_cursor c = {
        .start = text.ptr, .p = text.ptr, .end = text.ptr + text.len, .out = scratch
    };
    if (!sk__json_lex_take(&c, '{')) {
        return SK_FAIL(SK_EPROTO, "JSON at byte %zu: expected an object", sk__json_lex_offset(&c));
    }
    if (!sk__json_lex_take(&c, '}')) {
        for (;;) {
            sk_json_member m;
            if (!sk__json_lex_string(&c, &m.name)) {
                return lex_fail(&c);
            }
            if (!sk__json_lex_take(&c, ':')) {
                return SK_FAIL(SK_EPROTO, "JSON at byte %zu: expected ':'",
                               sk__json_lex_offset(&c));
            }
            sk__json_lex_space(&c);
            if (c.p >= c.end || *c.p != '"') {
                return SK_FAIL(SK_EPROTO, "%.64s: expected a string", (const char *)m.name.ptr);
            }
            if (!sk__json_lex_string(&c, &m.value)) {
                return lex_fail(&c);
            }
            for (size_t i = 0; i < n; i++) {
                if (same_name(members[i].name, m.name)) {
                    return SK_FAIL(SK_EPROTO, "JSON: duplicate name \"%.64s\"",
                                   (const char *)m.name.ptr);
                }
            }
            if (n == max_members) {
                return SK_FAIL(SK_ELIMIT, "JSON: more than %zu members", max_members);
            }
            members[n++] = m;
            if (sk__json_lex_take(&c, '}')) {
                break;
            }
            if (!sk__json_lex_take(&c, ',')) {
                return SK_FAIL(SK_EPROTO, "JSON at byte %zu: expected ',' or '}'",
                               sk__json_lex_offset(&c));
            }
        }
    }
    sk__json_lex_space(&c);
    if (c.p != c.end) {
        return SK_FAIL(SK_EPROTO, "JSON at byte %zu: data after the object",
                       sk__json_lex_offset(&c));
    }
    *n_members = n;
    return SK_OK;
}
