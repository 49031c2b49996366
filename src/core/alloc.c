/* SPDX-License-Identifier: MIT */
/*
 * Allocation wrappers: the only file in Skald that calls malloc and free.
 * They never abort; a NULL return means out of memory. The fault-injection
 * countdown is always compiled in (a relaxed atomic load on the fast path) so
 * that tests exercise the same library code that ships.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

/* Allocations left before the injected failure; negative means off. */
static _Atomic long fail_countdown = -1;

void sk_test_fail_alloc_at(long n)
{
    atomic_store_explicit(&fail_countdown, n < 0 ? -1 : n, memory_order_relaxed);
}

/* True when this allocation must fail. Exactly one allocation fails per arming. */
static bool inject_failure(void)
{
    if (atomic_load_explicit(&fail_countdown, memory_order_relaxed) < 0) {
        return false;
    }
    long before = atomic_fetch_sub_explicit(&fail_countdown, 1, memory_order_relaxed);
    if (before < 0) {
        /* Another thread consumed the failure first; put the counter back to off. */
        atomic_store_explicit(&fail_countdown, -1, memory_order_relaxed);
        return false;
    }
    return before == 0;
}

void *sk_malloc(size_t n)
{
    if (inject_failure()) {
        return NULL;
    }
    /* malloc(0) may return NULL, which callers would take for out of memory. */
    return malloc(n == 0 ? 1 : n);
}

void *sk_calloc(size_t count, size_t size)
{
    size_t total;

    if (__builtin_mul_overflow(count, size, &total)) {
        return NULL;
    }
    if (inject_failure()) {
        return NULL;
    }
    return calloc(total == 0 ? 1 : count, total == 0 ? 1 : size);
}

void *sk_realloc(void *p, size_t n)
{
    if (inject_failure()) {
        return NULL;
    }
    /* realloc(p, 0) may free p; keep a one-byte block instead. */
    return realloc(p, n == 0 ? 1 : n);
}

char *sk_strdup(const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    return sk_strndup(s, strlen(s));
}

char *sk_strndup(const char *s, size_t n)
{
    size_t len = 0;
    char *copy;

    if (s == NULL) {
        return NULL;
    }
    while (len < n && s[len] != '\0') {
        len++;
    }
    if (len == SIZE_MAX) {
        return NULL;
    }
    copy = sk_malloc(len + 1);
    if (copy == NULL) {
        return NULL;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

void sk_free(void *p)
{
    free(p);
}

char *sk_asprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    int n;
    char *out;

    if (fmt == NULL) {
        return NULL;
    }
    va_start(ap, fmt);
    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return NULL;
    }
    out = sk_malloc((size_t)n + 1);
    if (out != NULL) {
        (void)vsnprintf(out, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    return out;
}
