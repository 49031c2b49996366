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

SK_API SK_NODISCARD sk_status sk_metrics_create(sk_metrics **out);
SK_API void sk_metrics_destroy(sk_metrics *m);

/**
 * Get or create a metric series.
 * @param name  Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), copied.
 * @param help  one-line help text, copied (first registration wins).
 * @param labels NULL or a label set in exposition syntax without braces,
 *        e.g. "route=\"/orders\",status=\"202\""; copied.
 * @return the series, or NULL on bad name or out of memory (message set).
 */
SK_API sk_counter *sk_metrics_counter(sk_metrics *m, const char *name, const char *help, const char *labels);
SK_API sk_gauge *sk_metrics_gauge(sk_metrics *m, const char *name, const char *help, const char *labels);
/** Histogram with fixed latency buckets (seconds): 0.0005 .. 10. */
SK_API sk_histogram *sk_metrics_histogram(sk_metrics *m, const char *name, const char *help, const char *labels);

SK_API void sk_counter_add(sk_counter *c, uint64_t n);
SK_API void sk_gauge_set(sk_gauge *g, int64_t v);
SK_API void sk_gauge_add(sk_gauge *g, int64_t delta);
SK_API void sk_histogram_observe(sk_histogram *h, double seconds);

/** Append the whole registry in Prometheus text format 0.0.4. */
SK_API SK_NODISCARD sk_status sk_metrics_render(sk_metrics *m, sk_buf *out);

/* ---------------------------------------------------------------- tracing */

/** "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>" plus NUL. */
#define SK_TRACEPARENT_LEN 56
/** A new root traceparent (random trace and span ids, sampled). */
SK_API void sk_trace_new(char out[SK_TRACEPARENT_LEN]);
/** Child of @p parent (same trace id, new span id); a new root when @p parent is invalid. */
SK_API void sk_trace_child(sk_slice parent, char out[SK_TRACEPARENT_LEN]);
/** True when @p s is a well-formed version-00 traceparent. */
SK_API bool sk_trace_is_valid(sk_slice s);

/* ---------------------------------------------------------------- health */

/** Readiness checks. Thread-safe. */
typedef struct sk_health sk_health;
/** Return true when ready; otherwise write the reason into @p reason (NUL-terminated). */
typedef bool (*sk_health_check_fn)(char *reason, size_t reason_len, void *ctx);

SK_API SK_NODISCARD sk_status sk_health_create(sk_health **out);
SK_API void sk_health_destroy(sk_health *h);
/** Add a named check; @p name copied. */
SK_API SK_NODISCARD sk_status sk_health_add(sk_health *h, const char *name, sk_health_check_fn fn, void *ctx);
/**
 * Run every check. Appends a JSON object {"status":"ready"|"not ready",
 * "checks":{name:{"ok":bool,"reason":...}}} to @p out.
 * @return true when all checks pass.
 */
SK_API bool sk_health_evaluate(sk_health *h, sk_buf *out);

#ifdef __cplusplus
}
#endif
#endif /* SK_OBS_H */
