/* SPDX-License-Identifier: MIT */
/*
 * sk_json_parse: external JSON (HTTP bodies, message payloads) into a
 * jansson tree, in one pass over the text.
 *
 * Why not json_loadb: jansson reads its input a character at a time through
 * a stream callback and builds every string in a growing buffer; on our
 * order documents that was ~9 µs of the ~10 µs a consumer spent per payload
 * (bench_json), and the biggest single cost of a store writer's message
 * after SQLite. This parser walks the bytes directly and makes the same
 * jansson values, so everything after parsing is unchanged.
 *
 * It accepts exactly what json_loadb(JSON_REJECT_DUPLICATES |
 * JSON_DECODE_ANY) accepts, within our limits: RFC 8259 syntax, strict
 * UTF-8 (checked first, for the byte offset), no duplicate keys, no
 * \u0000, integers within int64 (jansson's json_int_t), finite reals, at
 * most SK_MAX_JSON_DEPTH levels. fuzz/json.c checks the verdicts and trees
 * against json_loadb on every input.
 */
#define _GNU_SOURCE /* strtod_l: the C locale's decimal point whatever the process's locale */
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

/* Text up to this size gets its decoding scratch on the stack. */
#define STACK_SCRATCH 1024

typedef struct parser {
    sk__json_cursor c;
    int depth;
    sk_status st; /* SK_EPROTO, SK_ELIMIT or SK_ENOMEM once a step failed */
} parser;

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_make(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* Record a failure at byte @p at (the parse stops there). */
static void fail(parser *ps, sk_status st, size_t at, const char *what)
{
    ps->st = st;
    (void)sk__json_lex_fail(&ps->c, at, "%s", what);
}

/* @p v, or a recorded failure when a jansson constructor returned NULL. */
static json_t *made(parser *ps, json_t *v)
{
    if (v == NULL) {
        fail(ps, SK_ENOMEM, sk__json_lex_offset(&ps->c), "out of memory");
    }
    return v;
}

static bool is_digit(const parser *ps)
{
    return ps->c.p < ps->c.end && *ps->c.p >= '0' && *ps->c.p <= '9';
}

static void skip_digits(parser *ps)
{
    while (is_digit(ps)) {
        ps->c.p++;
    }
}

/* An integer token [s, e) with no fraction or exponent, within int64. */
static json_t *integer(parser *ps, const uint8_t *s, const uint8_t *e)
{
    bool is_negative = *s == '-';
    uint64_t limit = is_negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;

    for (const uint8_t *d = s + is_negative; d < e; d++) {
        uint64_t digit = (uint64_t)(*d - '0');
        if (v > (limit - digit) / 10) {
            fail(ps, SK_EPROTO, (size_t)(s - ps->c.start),
                 is_negative ? "too big negative integer" : "too big integer");
            return NULL;
        }
        v = v * 10 + digit;
    }
    int64_t n = is_negative ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return made(ps, json_integer((json_int_t)n));
}

/* A real number token [s, e): strtod in the C locale on a NUL-terminated copy. */
static json_t *real(parser *ps, const uint8_t *s, const uint8_t *e)
{
    char *copy = ps->c.out; /* the scratch has room: the token is part of the text */
    double d;

    memcpy(copy, s, (size_t)(e - s));
    copy[e - s] = '\0';
    pthread_once(&c_locale_once, c_locale_make);
    if (c_locale == (locale_t)0) {
        return made(ps, NULL);
    }
    d = strtod_l(copy, NULL, c_locale);
    if (isinf(d)) {
        fail(ps, SK_EPROTO, (size_t)(s - ps->c.start), "real number overflow");
        return NULL;
    }
    return made(ps, json_real(d));
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static json_t *number(parser *ps)
{
    const uint8_t *s = ps->c.p;
    bool is_real = false;

    if (*ps->c.p == '-') {
        ps->c.p++;
    }
    if (ps->c.p < ps->c.end && *ps->c.p == '0') {
        ps->c.p++;
    } else if (is_digit(ps)) {
        skip_digits(ps);
    } else {
        fail(ps, SK_EPROTO, sk__json_lex_offset(&ps->c), "invalid number");
        return NULL;
    }
    if (ps->c.p < ps->c.end && *ps->c.p == '.') {
        ps->c.p++;
        if (!is_digit(ps)) {
            fail(ps, SK_EPROTO, sk__json_lex_offset(&ps->c),
                 "expected a digit after the decimal point");
            return NULL;
        }
        skip_digits(ps);
        is_real = true;
    }
    if (ps->c.p < ps->c.end && (*ps->c.p == 'e' || *ps->c.p == 'E')) {
        ps->c.p++;
        if (ps->c.p < ps->c.end && (*ps->c.p == '+' || *ps->c.p == '-')) {
            ps->c.p++;
        }
        if (!is_digit(ps)) {
            fail(ps, SK_EPROTO, sk__json_lex_offset(&ps->c), "expected a digit in the exponent");
            return NULL;
        }
        skip_digits(ps);
        is_real = true;
    }
    return is_real ? real(ps, s, ps->c.p) : integer(ps, s, ps->c.p);
}

/* true, false or null. */
static json_t *literal(parser *ps, const char *word, json_t *value)
{
    size_t len = strlen(word);

    if ((size_t)(ps->c.end - ps->c.p) < len || memcmp(ps->c.p, word, len) != 0) {
        fail(ps, SK_EPROTO, sk__json_lex_offset(&ps->c), "invalid token");
        return NULL;
    }
    ps->c.p += len;
    return value;
}

static json_t *string(parser *ps)
{
    char *mark = ps->c.out;
    sk_slice s;

    if (!sk__json_lex_string(&ps->c, &s)) {
        ps->st = SK_EPROTO;
        return NULL;
    }
    json_t *j = json_stringn_nocheck((const char *)s.ptr, s.len); /* UTF-8 checked up front */
    ps->c.out = mark;                                             /* jansson copied it */
    return made(ps, j);
}

static json_t *value(parser *ps);

/* One more level of nesting at the '[' or '{' under the cursor. */
static bool enter(parser *ps)
{
    if (++ps->depth > SK_MAX_JSON_DEPTH) {
        fail(ps, SK_ELIMIT, sk__json_lex_offset(&ps->c), "nested too deep");
        return false;
    }
    ps->c.p++;
    return true;
}

static json_t *array(parser *ps)
{
    json_t *arr;

    if (!enter(ps)) {
        return NULL;
    }
    if ((arr = made(ps, json_array())) == NULL) {
        return NULL;
    }
    if (!sk__json_lex_take(&ps->c, ']')) {
        for (;;) {
            json_t *v = value(ps);
            if (v != NULL && json_array_append_new(arr, v) != 0) {
                v = made(ps, NULL); /* append_new freed v */
            }
            if (v == NULL) {
                json_decref(arr);
                return NULL;
            }
            if (sk__json_lex_take(&ps->c, ']')) {
                break;
            }
            if (!sk__json_lex_take(&ps->c, ',')) {
                json_decref(arr);
                fail(ps, SK_EPROTO, sk__json_lex_offset(&ps->c), "',' or ']' expected");
                return NULL;
            }
        }
    }
    ps->depth--;
    return arr;
}

/* The next member of an object, the cursor at its key. */
static bool member(parser *ps, json_t *obj)
{
    char *mark = ps->c.out;
    size_t at;
    sk_slice key;
    json_t *v;

    sk__json_lex_space(&ps->c);
    at = sk__json_lex_offset(&ps->c);
    if (!sk__json_lex_string(&ps->c, &key)) {
        ps->st = SK_EPROTO;
        return false;
    }
    if (json_object_getn(obj, (const char *)key.ptr, key.len) != NULL) {
        fail(ps, SK_EPROTO, at, "duplicate object key");
        return false;
    }
    if (!sk__json_lex_take(&ps->c, ':')) {
        fail(ps, SK_EPROTO, sk__json_lex_offset(&ps->c), "':' expected");
        return false;
    }
    if ((v = value(ps)) == NULL) {
        return false;
    }
    /* The key stays in the scratch below the value's strings until it is stored. */
    if (json_object_setn_new_nocheck(obj, (const char *)key.ptr, key.len, v) != 0) {
        made(ps, NULL); /* setn_new freed v */
        return false;
    }
    ps->c.out = mark;
    return true;
}

static json_t *object(parser *ps)
{
    json_t *obj;

    if (!enter(ps)) {
        return NULL;
    }
    if ((obj = made(ps, json_object())) == NULL) {
        return NULL;
    }
    if (!sk__json_lex_take(&ps->c, '}')) {
        for (;;) {
            if (!member(ps, obj)) {
                json_decref(obj);
                return NULL;
            }
            if (sk__json_lex_take(&ps->c, '}')) {
                break;
            }
            if (!sk__json_lex_take(&ps->c, ',')) {
                json_decref(obj);
                fail(ps, SK_EPROTO, sk__json_lex_offset(&ps->c), "',' or '}' expected");
                return NULL;
            }
        }
    }
    ps->depth--;
    return obj;
}

static json_t *value(parser *ps)
{
    sk__json_lex_space(&ps->c);
    if (ps->c.p >= ps->c.end) {
        fail(ps, SK_EPROTO, sk__json_lex_offset(&ps->c), "unexpected end of input");
        return NULL;
    }
    switch (*ps->c.p) {
    case '{':
        return object(ps);
    case '[':
        return array(ps);
    case '"':
        return string(ps);
    case 't':
        return literal(ps, "true", json_true());
    case 'f':
        return literal(ps, "false", json_false());
    case 'n':
        return literal(ps, "null", json_null());
    default:
        if (*ps->c.p == '-' || (*ps->c.p >= '0' && *ps->c.p <= '9')) {
            return number(ps);
        }
        fail(ps, SK_EPROTO, sk__json_lex_offset(&ps->c), "invalid token");
        return NULL;
    }
}

/* 1-based line and column (in characters) of byte @p at. */
static void line_column(sk_slice text, size_t at, int *line, int *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < at && i < text.len; i++) {
        if (text.ptr[i] == '\n') {
            (*line)++;
            *column = 1;
        } else if ((text.ptr[i] & 0xC0) != 0x80) { /* not a continuation byte */
            (*column)++;
        }
    }
}

sk_status sk_json_parse(sk_slice text, json_t **out)
{
    char stack[STACK_SCRATCH];
    char *scratch = stack;
    size_t off = 0;
    json_t *root = NULL;
    int line, column;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_json_parse: out must not be NULL");
    }
    *out = NULL;
    if (text.ptr == NULL && text.len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_json_parse: text.ptr must not be NULL when len > 0");
    }
    if (!sk__utf8_is_valid(text, &off)) {
        return SK_FAIL(SK_EPROTO, "offset %zu: invalid UTF-8", off);
    }
    if (text.len >= sizeof(stack) && (scratch = sk_malloc(text.len + 1)) == NULL) {
        return SK_FAIL(SK_ENOMEM, "JSON: no memory for %zu bytes of scratch", text.len + 1);
    }
    parser ps = {
        .c = { .start = text.ptr, .p = text.ptr, .end = text.ptr + text.len, .out = scratch }
    };
    if (text.len == 0) {
        ps.c.start = ps.c.p = ps.c.end = (const uint8_t *)"";
    }
    root = value(&ps);
    if (root != NULL) {
        sk__json_lex_space(&ps.c);
        if (ps.c.p != ps.c.end) {
            json_decref(root);
            root = NULL;
            fail(&ps, SK_EPROTO, sk__json_lex_offset(&ps.c), "end of file expected");
        }
    }
    if (scratch != stack) {
        sk_free(scratch);
    }
    if (root != NULL) {
        *out = root;
        return SK_OK;
    }
    switch (ps.st) {
    case SK_ELIMIT:
        return SK_FAIL(SK_ELIMIT, "offset %zu: JSON nested deeper than %d levels", ps.c.err_at,
                       SK_MAX_JSON_DEPTH);
    case SK_ENOMEM:
        return SK_FAIL(SK_ENOMEM, "JSON: out of memory");
    default:
        line_column(text, ps.c.err_at, &line, &column);
        return SK_FAIL(SK_EPROTO, "line %d, column %d: %s", line, column, ps.c.err);
    }
}

sk_status sk_json_parse_object(sk_slice text, json_t **out)
{
    json_t *root = NULL;
    sk_status st;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_json_parse_object: out must not be NULL");
    }
    *out = NULL;
    st = sk_json_parse(text, &root);
    if (st != SK_OK) {
        return st;
    }
    if (!json_is_object(root)) {
        st = SK_FAIL(SK_EPROTO, "expected a JSON object, got %s", sk__json_type_name(root));
        json_decref(root);
        return st;
    }
    *out = root;
    return SK_OK;
}
