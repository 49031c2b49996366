/* SPDX-License-Identifier: MIT */
/*
 * obs: Prometheus metrics (counters, gauges, histograms rendered in the text
 * exposition format), W3C trace context, and health/readiness checks.
 */
#ifndef SK_OBS_H
#define SK_OBS_H

#include <skald/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Metric registry. Thread-safe. */
typedef struct sk_metrics sk_metrics;
/** Handles stay valid until the registry is destroyed; updating is lock-free. */
typedef struct sk_counter sk_counter;
typedef struct sk_gauge sk_gauge;
typedef struct sk_histogram sk_histogram;

/** Longest metric name, in bytes. */
#define SK_METRICS_MAX_NAME 128
/** Longest help text, in bytes. */
#define SK_METRICS_MAX_HELP 1024
/** Longest label string, in bytes. */
#define SK_METRICS_MAX_LABELS 1024
/** Most series one registry holds (a guard against unbounded label values). */
#define SK_METRICS_MAX_SERIES 10000

/** @return SK_OK, SK_EINVAL (NULL out), SK_ENOMEM. */
SK_API SK_NODISCARD sk_status sk_metrics_create(sk_metrics **out);
/** NULL-safe. Every handle from @p m becomes invalid. */
SK_API void sk_metrics_destroy(sk_metrics *m);

/**
 * Get or create a metric series. Series of one name form one family and
 * share its type; look-up is linear, so keep the handle instead of calling
 * this on every request.
 * @param name  Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, at most
 *        SK_METRICS_MAX_NAME bytes), copied.
 * @param help  one-line help text (NULL for none, at most SK_METRICS_MAX_HELP
 *        bytes), copied (first registration wins); backslash and newline are
 *        escaped when rendered.
 * @param labels NULL or a label set in exposition syntax without braces,
 *        e.g. "route=\"/orders\",status=\"202\""; copied. Checked loosely:
 *        at most SK_METRICS_MAX_LABELS bytes, no control character but tab,
 *        balanced quotes, no braces outside quotes; a histogram may not use
 *        the label "le". The string is the series key, byte for byte.
 * @return the series, or NULL with the message set: EINVAL (NULL registry,
 *         bad name, help or labels), EEXIST (name registered with another
 *         type), ELIMIT (SK_METRICS_MAX_SERIES reached), ENOMEM.
 */
SK_API sk_counter *sk_metrics_counter(sk_metrics *m, const char *name, const char *help, const char *labels);
SK_API sk_gauge *sk_metrics_gauge(sk_metrics *m, const char *name, const char *help, const char *labels);
/** Histogram with fixed latency buckets (seconds): 0.0005 .. 10. */
SK_API sk_histogram *sk_metrics_histogram(sk_metrics *m, const char *name, const char *help, const char *labels);

/** Update a series. Lock-free; a NULL handle is ignored. */
SK_API void sk_counter_add(sk_counter *c, uint64_t n);
SK_API void sk_gauge_set(sk_gauge *g, int64_t v);
SK_API void sk_gauge_add(sk_gauge *g, int64_t delta);
/** Record one observation; NaN is ignored. */
SK_API void sk_histogram_observe(sk_histogram *h, double seconds);

/**
 * Append the whole registry in Prometheus text format 0.0.4: families in
 * registration order, each with "# HELP" (when there is help) and "# TYPE",
 * then its series in registration order; histograms as cumulative
 * name_bucket{...,le="..."} lines, name_sum and name_count.
 * @return SK_OK, SK_EINVAL (NULL argument), SK_ELIMIT (out's maximum),
 *         SK_ENOMEM; on failure @p out is left as it was.
 */
SK_API SK_NODISCARD sk_status sk_metrics_render(sk_metrics *m, sk_buf *out);

/* ---------------------------------------------------------------- tracing */

/** "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>" plus NUL. */
#define SK_TRACEPARENT_LEN 56
/** A new root traceparent (random trace and span ids, sampled). No-op when @p out is NULL. */
SK_API void sk_trace_new(char out[SK_TRACEPARENT_LEN]);
/**
 * Child of @p parent (same trace id and flags, new span id); a new root when
 * @p parent is invalid. No-op when @p out is NULL.
 */
SK_API void sk_trace_child(sk_slice parent, char out[SK_TRACEPARENT_LEN]);
/**
 * True when @p s is a well-formed version-00 traceparent: exactly 55 bytes,
 * lower-case hex, trace id and parent id not all zero.
 */
SK_API bool sk_trace_is_valid(sk_slice s);

/* ---------------------------------------------------------------- health */

/** Longest check name, in bytes. */
#define SK_HEALTH_MAX_NAME 64
/** Most checks one sk_health holds. */
#define SK_HEALTH_MAX_CHECKS 64
/** Size of the reason buffer given to a check, including the NUL. */
#define SK_HEALTH_REASON_LEN 256

/** Readiness checks. Thread-safe. */
typedef struct sk_health sk_health;
/**
 * Return true when ready; otherwise write the reason into @p reason
 * (NUL-terminated, at most @p reason_len bytes with the NUL). Called without
 * any lock held, possibly from several threads at once.
 */
typedef bool (*sk_health_check_fn)(char *reason, size_t reason_len, void *ctx);

/** @return SK_OK, SK_EINVAL (NULL out), SK_ENOMEM. */
SK_API SK_NODISCARD sk_status sk_health_create(sk_health **out);
/** NULL-safe. No evaluation may be running. */
SK_API void sk_health_destroy(sk_health *h);
/**
 * Add a named check; @p name copied, 1..SK_HEALTH_MAX_NAME bytes of
 * [A-Za-z0-9_.:-]. Checks run and are listed in the order they were added.
 * @return SK_OK, SK_EINVAL (NULL argument, bad name), SK_EEXIST (name taken),
 *         SK_ELIMIT (SK_HEALTH_MAX_CHECKS reached), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_health_add(sk_health *h, const char *name, sk_health_check_fn fn, void *ctx);
/**
 * Run every check. Appends a compact JSON object {"status":"ready"|"not ready",
 * "checks":{name:{"ok":bool,"reason":...}}} to @p out ("reason" only on a
 * failing check; "check failed" when it gave none). @p out may be NULL when
 * only the answer is wanted. When the document cannot be built or appended
 * (out of memory, @p out's maximum), the answer is false and @p out is left
 * as it was.
 * @return true when all checks pass (and, with @p out, the document was appended).
 */
SK_API bool sk_health_evaluate(sk_health *h, sk_buf *out);

#ifdef __cplusplus
}
#endif
#endif /* SK_OBS_H */
