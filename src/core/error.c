/* SPDX-License-Identifier: MIT */
/*
 * The thread-local error slot behind SK_FAIL / SK_WRAP. Each thread has one
 * status, one message of at most SK__ERROR_MAX - 1 bytes (truncated on a
 * UTF-8 boundary, never overflowing) and the file:line of the failure site,
 * kept apart from the text so that messages shown to users stay clean.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

typedef struct error_slot {
    sk_status st;
    const char *file; /* a string literal from __FILE__, never freed */
    int line;
    char msg[SK__ERROR_MAX];
} error_slot;

static _Thread_local error_slot slot;

/* Cut @p len back so that it does not end inside a UTF-8 sequence. */
static size_t utf8_trim(const char *s, size_t len)
{
    size_t end = len;
    size_t back = 0;

    while (end > 0 && back < 4 && ((unsigned char)s[end - 1] & 0xC0) == 0x80) {
        end--;
        back++;
    }
    if (end == 0) {
        return len;
    }
    unsigned char lead = (unsigned char)s[end - 1];
    size_t need = 1;
    if (lead >= 0xF0) {
        need = 4;
    } else if (lead >= 0xE0) {
        need = 3;
    } else if (lead >= 0xC0) {
        need = 2;
    } else {
        return len; /* ASCII, or stray continuation bytes: leave as is */
    }
    if (back + 1 >= need) {
        return len; /* the last sequence is complete */
    }
    return end - 1;
}

/* vsnprintf into @p out (size @p cap >= 1), truncating safely; returns the length. */
static size_t format_into(char *out, size_t cap, const char *fmt, va_list ap) SK_PRINTF(3, 0);

static size_t format_into(char *out, size_t cap, const char *fmt, va_list ap)
{
    int n = vsnprintf(out, cap, fmt, ap);
    size_t len;

    if (n < 0) {
        out[0] = '\0';
        return 0;
    }
    if ((size_t)n < cap) {
        return (size_t)n;
    }
    len = utf8_trim(out, cap - 1);
    out[len] = '\0';
    return len;
}

sk_status sk_error_set(sk_status st, const char *file, int line, const char *fmt, ...)
{
    int saved_errno = errno; /* callers may still want errno after SK_FAIL */
    va_list ap;

    slot.st = st;
    slot.file = file != NULL ? file : "";
    slot.line = line;
    if (fmt == NULL) {
        slot.msg[0] = '\0';
    } else {
        va_start(ap, fmt);
        (void)format_into(slot.msg, sizeof(slot.msg), fmt, ap);
        va_end(ap);
    }
    errno = saved_errno;
    return st;
}

sk_status sk_error_wrap(sk_status st, const char *fmt, ...)
{
    int saved_errno = errno;
    char tmp[SK__ERROR_MAX];
    size_t len = 0;
    va_list ap;

    if (fmt != NULL) {
        va_start(ap, fmt);
        len = format_into(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
    }
    if (slot.msg[0] != '\0' && len + 2 < sizeof(tmp)) {
        size_t old_len = strlen(slot.msg);
        size_t room = sizeof(tmp) - 1 - (len + 2);
        size_t take = old_len < room ? old_len : room;

        tmp[len++] = ':';
        tmp[len++] = ' ';
        memcpy(tmp + len, slot.msg, take);
        len += take;
        if (take < old_len) {
            len = utf8_trim(tmp, len);
        }
        tmp[len] = '\0';
    } else if (fmt == NULL) {
        errno = saved_errno;
        slot.st = st;
        return st; /* nothing to add */
    }
    memcpy(slot.msg, tmp, len + 1);
    slot.st = st;
    errno = saved_errno;
    return st;
}

const char *sk_error_message(void)
{
    return slot.msg;
}

sk_status sk_error_status(void)
{
    return slot.st;
}

void sk_error_clear(void)
{
    slot.st = SK_OK;
    slot.file = NULL;
    slot.line = 0;
    slot.msg[0] = '\0';
}

const char *sk__error_file(void)
{
    return slot.file != NULL ? slot.file : "";
}

int sk__error_line(void)
{
    return slot.line;
}

void sk_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "skald: assertion failed at %s:%d: %s\n", file != NULL ? file : "?", line,
            cond != NULL ? cond : "?");
    fflush(stderr);
    abort();
}
