/* SPDX-License-Identifier: MIT */
/*
 * Status codes shared by every Skald module. The list is append-only: a code,
 * once released, keeps its number and meaning forever.
 */
#ifndef SK_STATUS_H
#define SK_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SK_API        __attribute__((visibility("default")))
#define SK_NODISCARD  __attribute__((warn_unused_result))
#define SK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SK_API
#define SK_NODISCARD
#define SK_PRINTF(f, a)
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SK_STATUS_MAP(X)                                                                           \
    X(OK, "success")                                                                               \
    X(EINVAL, "invalid argument")                                                                  \
    X(ENOMEM, "out of memory")                                                                     \
    X(ENOTFOUND, "not found")                                                                      \
    X(EEXIST, "already exists")                                                                    \
    X(ETIMEDOUT, "timed out")                                                                      \
    X(EIO, "I/O error")                                                                            \
    X(EPROTO, "malformed input")                                                                   \
    X(ELIMIT, "limit exceeded")                                                                    \
    X(ESTATE, "invalid state for this call")                                                       \
    X(EBUS, "message bus error")                                                                   \
    X(EDB, "database error")                                                                       \
    X(ETLS, "TLS error")                                                                           \
    X(EINTERNAL, "internal error")                                                                 \
    X(ECONFLICT, "conflict with the current state")                                               \
    X(EUNAVAILABLE, "service unavailable")                                                         \
    X(EDENIED, "permission denied")                                                                \
    X(ECANCELED, "canceled")

/** Result of every fallible Skald call. */
typedef enum sk_status {
#define SK_X(name, text) SK_##name,
    SK_STATUS_MAP(SK_X)
#undef SK_X
        SK_STATUS_COUNT_
} sk_status;

/** Short symbolic name, e.g. "EINVAL". Never NULL. */
SK_API const char *sk_status_name(sk_status st);
/** One-line description, e.g. "invalid argument". Never NULL. */
SK_API const char *sk_status_text(sk_status st);

/**
 * Record @p st with a formatted message and file:line in the calling
 * thread's error slot, and return @p st. Use at the failure site.
 */
#define SK_FAIL(st, ...) sk_error_set((st), __FILE__, __LINE__, __VA_ARGS__)
/** Prefix the current message with context; returns @p st unchanged. */
#define SK_WRAP(st, ...) sk_error_wrap((st), __VA_ARGS__)
/** Ignore a status on purpose; always add a comment saying why. */
#define SK_IGNORE(expr) ((void)!(expr))

SK_API sk_status sk_error_set(sk_status st, const char *file, int line, const char *fmt, ...)
    SK_PRINTF(4, 5);
SK_API sk_status sk_error_wrap(sk_status st, const char *fmt, ...) SK_PRINTF(2, 3);
/** The calling thread's last error text; never NULL ("" when none). */
SK_API const char *sk_error_message(void);
/** Status recorded with the calling thread's last error (SK_OK when none). */
SK_API sk_status sk_error_status(void);
/** Clear the calling thread's error slot. */
SK_API void sk_error_clear(void);

#ifdef NDEBUG
#define SK_ASSERT(cond)                                                                            \
    ((cond) ? (void)0 : (void)sk_error_set(SK_EINTERNAL, __FILE__, __LINE__, "assertion: %s", #cond))
#else
#define SK_ASSERT(cond) ((cond) ? (void)0 : sk_assert_fail(#cond, __FILE__, __LINE__))
#endif
SK_API void sk_assert_fail(const char *cond, const char *file, int line);

#ifdef __cplusplus
}
#endif
#endif /* SK_STATUS_H */
