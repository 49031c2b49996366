/* SPDX-License-Identifier: MIT */
/*
 * Byte slices and growable buffers with a hard maximum. A buffer's data is
 * NUL-terminated after every successful append, and len never passes
 * max_bytes; a failed append leaves the buffer as it was.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"

sk_slice sk_slice_from_str(const char *s)
{
    sk_slice out = { NULL, 0 };

    if (s != NULL) {
        out.ptr = (const uint8_t *)s;
        out.len = strlen(s);
    }
    return out;
}

bool sk_slice_eq_str(sk_slice s, const char *str)
{
    size_t n;

    if (str == NULL) {
        return false;
    }
    n = strlen(str);
    if (n != s.len) {
        return false;
    }
    return n == 0 || (s.ptr != NULL && memcmp(s.ptr, str, n) == 0);
}

void sk_buf_init(sk_buf *b, size_t max_bytes)
{
    if (b == NULL) {
        return;
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max_bytes = max_bytes;
}

void sk_buf_fini(sk_buf *b)
{
    if (b == NULL) {
        return;
    }
    sk_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sk_buf_reset(sk_buf *b)
{
    if (b == NULL) {
        return;
    }
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

sk_status sk__buf_reserve(sk_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > b->max_bytes || b->len > b->max_bytes - extra || b->len + extra == SIZE_MAX) {
        return SK_FAIL(SK_ELIMIT, "buffer limit of %zu bytes exceeded (have %zu, adding %zu)",
                       b->max_bytes, b->len, extra);
    }
    need = b->len + extra + 1; /* cannot overflow: len + extra < SIZE_MAX */
    if (need <= b->cap) {
        return SK_OK;
    }
    cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    if (cap > b->max_bytes + 1 && b->max_bytes < SIZE_MAX) {
        cap = b->max_bytes + 1 > need ? b->max_bytes + 1 : need;
    }
    p = sk_realloc(b->data, cap);
    if (p == NULL) {
        return SK_FAIL(SK_ENOMEM, "growing a buffer to %zu bytes", cap);
    }
    b->data = p;
    b->cap = cap;
    return SK_OK;
}

sk_status sk_buf_append(sk_buf *b, const void *data, size_t len)
{
    sk_status st;

    if (b == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_buf_append: b must not be NULL");
    }
    if (data == NULL && len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_buf_append: data must not be NULL when len > 0");
    }
    /* Room enough already, the common case of small appends: nothing to reserve. */
    if (b->data == NULL || len >= b->cap - b->len || b->len + len > b->max_bytes) {
        st = sk__buf_reserve(b, len);
        if (st != SK_OK) {
            return st;
        }
    }
    if (len > 0) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    b->data[b->len] = '\0';
    return SK_OK;
}

sk_status sk_buf_append_str(sk_buf *b, const char *s)
{
    if (s == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_buf_append_str: s must not be NULL");
    }
    return sk_buf_append(b, s, strlen(s));
}

sk_status sk_buf_appendf(sk_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    sk_status st;

    if (b == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_buf_appendf: b must not be NULL");
    }
    if (fmt == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_buf_appendf: fmt must not be NULL");
    }
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return SK_FAIL(SK_EINVAL, "sk_buf_appendf: bad format \"%s\"", fmt);
    }
    st = sk__buf_reserve(b, (size_t)n);
    if (st != SK_OK) {
        return st;
    }
    va_start(ap, fmt);
    (void)vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return SK_OK;
}

char *sk_buf_take(sk_buf *b, size_t *len_out)
{
    char *data;

    if (len_out != NULL) {
        *len_out = 0;
    }
    if (b == NULL) {
        return NULL;
    }
    data = b->data;
    if (data == NULL) {
        data = sk_strdup(""); /* callers always get a string; NULL only on out of memory */
        if (data == NULL) {
            return NULL;
        }
    } else if (len_out != NULL) {
        *len_out = b->len;
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return data;
}
