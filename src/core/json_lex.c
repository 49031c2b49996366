/* SPDX-License-Identifier: MIT */
/*
 * The pieces of JSON lexing both of our parsers share: the tree parser
 * (json_parse.c, every HTTP body and message payload) and the parser of
 * flat string objects (json_flat.c, message headers). A string is decoded
 * into the caller's scratch, escapes resolved, followed by a NUL; decoded
 * text is never longer than its JSON form (an escape shrinks, the closing
 * quote becomes the NUL). Errors are left in the cursor (where and what) so
 * that each parser words the position its own way.
 */
#include <stdarg.h>
#include <string.h>

#include "core/core_int.h"

bool sk__json_lex_fail(sk__json_cursor *c, size_t at, const char *fmt, ...)
{
    va_list ap;

    c->err_at = at;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return false;
}

/* Read the four hex digits of a \u escape (the cursor is past the 'u'). */
static bool read_hex4(sk__json_cursor *c, uint32_t *out)
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

static void put_utf8(sk__json_cursor *c, uint32_t cp)
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
static bool unicode_escape(sk__json_cursor *c)
{
    size_t at = sk__json_lex_offset(c) - 2; /* the backslash */
    uint32_t cp = 0, low = 0;

    if (!read_hex4(c, &cp)) {
        return sk__json_lex_fail(c, at, "expected four hex digits after \\u");
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return sk__json_lex_fail(c, at, "a low surrogate without a high one");
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') {
            return sk__json_lex_fail(c, at, "a high surrogate without a low one");
        }
        c->p += 2;
        if (!read_hex4(c, &low) || low < 0xDC00 || low > 0xDFFF) {
            return sk__json_lex_fail(c, at, "a high surrogate without a low one");
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    if (cp == 0) {
        return sk__json_lex_fail(c, at, "\\u0000 in a string");
    }
    put_utf8(c, cp);
    return true;
}

/* One escape (the cursor is past the backslash). */
static bool escape(sk__json_cursor *c)
{
    if (c->p >= c->end) {
        return sk__json_lex_fail(c, sk__json_lex_offset(c), "unterminated string");
    }
    uint8_t ch = *c->p++;
    switch (ch) {
    case '"':
    case '\\':
    case '/':
        *c->out++ = (char)ch;
        return true;
    case 'b':
        *c->out++ = '\b';
        return true;
    case 'f':
        *c->out++ = '\f';
        return true;
    case 'n':
        *c->out++ = '\n';
        return true;
    case 'r':
        *c->out++ = '\r';
        return true;
    case 't':
        *c->out++ = '\t';
        return true;
    case 'u':
        return unicode_escape(c);
    default:
        return sk__json_lex_fail(c, sk__json_lex_offset(c) - 2, "invalid escape \\%c",
                                 ch >= 0x20 && ch < 0x7F ? ch : '?');
    }
}

bool sk__json_lex_string(sk__json_cursor *c, sk_slice *out)
{
    char *begin = c->out;

    sk__json_lex_space(c);
    if (c->p >= c->end || *c->p != '"') {
        return sk__json_lex_fail(c, sk__json_lex_offset(c), "expected a string");
    }
    c->p++;
    for (;;) {
        /* The run up to the next quote, backslash or control character is copied as is. */
        const uint8_t *run = c->p;
        while (c->p < c->end && *c->p != '"' && *c->p != '\\' && *c->p >= 0x20) {
            c->p++;
        }
        memcpy(c->out, run, (size_t)(c->p - run));
        c->out += c->p - run;
        if (c->p >= c->end) {
            return sk__json_lex_fail(c, sk__json_lex_offset(c), "unterminated string");
        }
        uint8_t ch = *c->p++;
        if (ch == '"') {
            break;
        }
        if (ch != '\\') {
            return sk__json_lex_fail(c, sk__json_lex_offset(c) - 1,
                                     "control character in a string");
        }
        if (!escape(c)) {
            return false;
        }
    }
    *c->out++ = '\0';
    *out = (sk_slice){ (const uint8_t *)begin, (size_t)(c->out - begin - 1) };
    return true;
}
