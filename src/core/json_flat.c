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
 * parsers agree). Decoded text is never longer than its JSON form (an
 * escape shrinks, a closing quote becomes the NUL), so text.len + 1 bytes
 * of scratch always suffice.
 */
#include <string.h>

#include "core/core_int.h"

typedef struct cursor {
    const uint8_t *start;
    const uint8_t *p;
    const uint8_t *end;
    char *out; /* next free byte of the caller's scratch (big enough: see the top) */
} cursor;

static size_t offset_of(const cursor *c)
{
    return (size_t)(c->p - c->start);
}

static void skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

/* Expect @p ch at the cursor (after whitespace) and step over it. */
static bool take(cursor *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == (uint8_t)ch) {
        c->p++;
        return true;
    }
    return false;
}

/* Read the four hex digits of a \u escape (the cursor is past the 'u'). */
static bool read_hex4(cursor *c, uint32_t *out)
{
    uint32_t v = 0;

    if (c->end - c->p < 4) {
        return false;
    }
    for (int i = 0; i < 4; i++) {
        int h = sk_hex_value(c->p[i]);
        if (h < 0) {
            return false;
        }
        v = v << 4 | (uint32_t)h;
    }
    c->p += 4;
    *out = v;
    return true;
}

static void put_utf8(cursor *c, uint32_t cp)
{
    if (cp < 0x80) {
        *c->out++ = (char)cp;
    } else if (cp < 0x800) {
        *c->out++ = (char)(0xC0 | cp >> 6);
        *c->out++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *c->out++ = (char)(0xE0 | cp >> 12);
        *c->out++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *c->out++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *c->out++ = (char)(0xF0 | cp >> 18);
        *c->out++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *c->out++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *c->out++ = (char)(0x80 | (cp & 0x3F));
    }
}

/* Decode the \u escape at the cursor (past the 'u'), a surrogate pair included. */
static sk_status unicode_escape(cursor *c)
{
    size_t at = offset_of(c) - 2; /* the backslash */
    uint32_t cp = 0, low = 0;

    if (!read_hex4(c, &cp)) {
        return SK_FAIL(SK_EPROTO, "JSON at byte %zu: expected four hex digits after \\u", at);
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return SK_FAIL(SK_EPROTO, "JSON at byte %zu: a low surrogate without a high one", at);
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') {
            return SK_FAIL(SK_EPROTO, "JSON at byte %zu: a high surrogate without a low one", at);
        }
        c->p += 2;
        if (!read_hex4(c, &low) || low < 0xDC00 || low > 0xDFFF) {
            return SK_FAIL(SK_EPROTO, "JSON at byte %zu: a high surrogate without a low one", at);
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    if (cp == 0) {
        return SK_FAIL(SK_EPROTO, "JSON at byte %zu: \\u0000 in a string", at);
    }
    put_utf8(c, cp);
    return SK_OK;
}

/* Decode the string at the cursor (after whitespace) into scratch, NUL-terminated. */
static sk_status read_string(cursor *c, sk_slice *out)
{
    char *begin = c->out;

    skip_space(c);
    if (c->p >= c->end || *c->p != '"') {
        return SK_FAIL(SK_EPROTO, "JSON at byte %zu: expected a string", offset_of(c));
    }
    c->p++;
    for (;;) {
        if (c->p >= c->end) {
            return SK_FAIL(SK_EPROTO, "JSON at byte %zu: unterminated string", offset_of(c));
        }
        uint8_t ch = *c->p++;
        if (ch == '"') {
            break;
        }
        if (ch < 0x20) {
            return SK_FAIL(SK_EPROTO, "JSON at byte %zu: control character in a string",
                           offset_of(c) - 1);
        }
        if (ch != '\\') {
            *c->out++ = (char)ch;
            continue;
        }
        if (c->p >= c->end) {
            return SK_FAIL(SK_EPROTO, "JSON at byte %zu: unterminated string", offset_of(c));
        }
        ch = *c->p++;
        switch (ch) {
        case '"':
        case '\\':
        case '/':
            *c->out++ = (char)ch;
            break;
        case 'b':
            *c->out++ = '\b';
            break;
        case 'f':
            *c->out++ = '\f';
            break;
        case 'n':
            *c->out++ = '\n';
            break;
        case 'r':
            *c->out++ = '\r';
            break;
        case 't':
            *c->out++ = '\t';
            break;
        case 'u': {
            sk_status st = unicode_escape(c);
            if (st != SK_OK) {
                return st;
            }
            break;
        }
        default:
            return SK_FAIL(SK_EPROTO, "JSON at byte %zu: invalid escape \\%c", offset_of(c) - 2,
                           ch >= 0x20 && ch < 0x7F ? ch : '?');
        }
    }
    *c->out++ = '\0';
    *out = (sk_slice){ (const uint8_t *)begin, (size_t)(c->out - begin - 1) };
    return SK_OK;
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
    sk_status st;

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
    cursor c = { text.ptr, text.ptr, text.ptr + text.len, scratch };
    if (!take(&c, '{')) {
        return SK_FAIL(SK_EPROTO, "JSON at byte %zu: expected an object", offset_of(&c));
    }
    if (!take(&c, '}')) {
        for (;;) {
            sk_json_member m;
            if ((st = read_string(&c, &m.name)) != SK_OK) {
                return st;
            }
            if (!take(&c, ':')) {
                return SK_FAIL(SK_EPROTO, "JSON at byte %zu: expected ':'", offset_of(&c));
            }
            skip_space(&c);
            if (c.p >= c.end || *c.p != '"') {
                return SK_FAIL(SK_EPROTO, "%.64s: expected a string", (const char *)m.name.ptr);
            }
            if ((st = read_string(&c, &m.value)) != SK_OK) {
                return st;
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
            if (take(&c, '}')) {
                break;
            }
            if (!take(&c, ',')) {
                return SK_FAIL(SK_EPROTO, "JSON at byte %zu: expected ',' or '}'", offset_of(&c));
            }
        }
    }
    skip_space(&c);
    if (c.p != c.end) {
        return SK_FAIL(SK_EPROTO, "JSON at byte %zu: data after the object", offset_of(&c));
    }
    *n_members = n;
    return SK_OK;
}
