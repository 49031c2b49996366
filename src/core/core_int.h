/* SPDX-License-Identifier: MIT */
/*
 * core: private declarations shared by the files of src/core and by the unit
 * tests of this module. Nothing here is exported from libskald; other modules
 * use include/skald/core.h only.
 */
#ifndef SK_CORE_INT_H
#define SK_CORE_INT_H

#include <stdio.h>

#include <skald/core.h>

/** Size of the thread-local error message buffer, including the NUL. */
#define SK__ERROR_MAX 1024

/** Source file of the calling thread's last SK_FAIL ("" when none). */
const char *sk__error_file(void);
/** Source line of the calling thread's last SK_FAIL (0 when none). */
int sk__error_line(void);

/**
 * Decode one UTF-8 sequence at @p p (@p len bytes available). Rejects
 * overlong forms, surrogates and code points above U+10FFFF.
 * @param[out] cp the code point, when valid; may be NULL.
 * @return the length of the sequence (1..4), or 0 when it is not valid.
 */
size_t sk__utf8_decode(const uint8_t *p, size_t len, uint32_t *cp);
/**
 * Check that @p s is entirely valid UTF-8.
 * @param[out] bad_offset offset of the first invalid byte; may be NULL.
 */
bool sk__utf8_is_valid(sk_slice s, size_t *bad_offset);

/**
 * Make room in @p b for @p extra more bytes plus the terminator, within its
 * maximum, so that a writer can fill b->data + b->len directly (it then
 * advances b->len and writes the terminator itself).
 * @return SK_OK, SK_ELIMIT (past max_bytes) or SK_ENOMEM.
 */
SK_NODISCARD sk_status sk__buf_reserve(sk_buf *b, size_t extra);

/** Log output format. */
typedef enum sk__log_format { SK__LOG_FORMAT_TEXT = 0, SK__LOG_FORMAT_JSON = 1 } sk__log_format;

/** Set the service name written on every log line (truncated to 63 bytes). */
void sk__log_set_service(const char *service);
void sk__log_set_format(sk__log_format format);
/**
 * Redirect log output (tests); NULL restores stderr. The stream is borrowed
 * and must outlive its use.
 */
void sk__log_set_stream(FILE *stream);
/**
 * Parse a level name ("error", "warn", "info", "debug"; case-insensitive).
 * @return false when @p name is not one of them.
 */
bool sk__log_level_parse(const char *name, sk_log_level *out);

/*
 * JSON lexing shared by the tree parser (json_parse.c) and the flat-object
 * parser (json_flat.c), src/core/json_lex.c. The caller checks UTF-8 first.
 */
typedef struct sk__json_cursor {
    const uint8_t *start; /* the text */
    const uint8_t *p;     /* next byte to read */
    const uint8_t *end;
    char *out;     /* next free byte of the caller's decoding scratch */
    size_t err_at; /* after a false return: the byte offset at fault */
    char err[64];  /* and what is wrong there */
} sk__json_cursor;

static inline size_t sk__json_lex_offset(const sk__json_cursor *c)
{
    return (size_t)(c->p - c->start);
}

static inline void sk__json_lex_space(sk__json_cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

/** Step over whitespace and then @p ch when it is next; false (no error set) when not. */
static inline bool sk__json_lex_take(sk__json_cursor *c, char ch)
{
    sk__json_lex_space(c);
    if (c->p < c->end && *c->p == (uint8_t)ch) {
        c->p++;
        return true;
    }
    return false;
}

/** Record an error at byte @p at in the cursor; returns false. */
bool sk__json_lex_fail(sk__json_cursor *c, size_t at, const char *fmt, ...) SK_PRINTF(3, 4);
/**
 * Decode the string at the cursor (after whitespace) into c->out, escapes
 * resolved, NUL-terminated; c->out moves past the NUL. Refuses control
 * characters, bad escapes, lone surrogates and \u0000.
 * @param[out] out the decoded text (without the NUL), in the scratch.
 */
bool sk__json_lex_string(sk__json_cursor *c, sk_slice *out);

/** "object", "array", "string", "integer", "real number", "boolean" or "null". */
const char *sk__json_type_name(const json_t *v);

/** True when @p s matches [a-z][a-z0-9-]{0,31} (service, context, database names). */
bool sk__system_name_is_valid(const char *s);

#endif /* SK_CORE_INT_H */
