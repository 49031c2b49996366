/* SPDX-License-Identifier: MIT */
/*
 * obs: private declarations shared by the files of src/obs and by the unit
 * tests of this module. Nothing here is exported from libskald.
 */
#ifndef SK_OBS_INT_H
#define SK_OBS_INT_H

#include <skald/obs.h>

/** Number of finite histogram buckets (the +Inf bucket comes on top). */
#define SK__HISTOGRAM_N_BUCKETS 14

/** Upper bounds of the finite buckets, in seconds, ascending. */
extern const double sk__histogram_bounds[SK__HISTOGRAM_N_BUCKETS];

/** Room for a number formatted by sk__obs_format_double, including the NUL. */
#define SK__OBS_DOUBLE_LEN 32

/**
 * Format @p v the way Prometheus reads it: the shortest of %.15g..%.17g that
 * reads back as the same double, "NaN", "+Inf" or "-Inf".
 */
void sk__obs_format_double(double v, char out[SK__OBS_DOUBLE_LEN]);

/** True when @p name matches [a-zA-Z_:][a-zA-Z0-9_:]* and is 1..SK_METRICS_MAX_NAME bytes. */
bool sk__metrics_name_is_valid(const char *name);

/**
 * Check a label string (exposition syntax without braces) loosely: at most
 * SK_METRICS_MAX_LABELS bytes, no control characters but tab, quotes
 * balanced (with backslash escapes inside them), no braces outside quotes,
 * and, when @p is_histogram, no label named "le".
 * @return SK_OK or SK_EINVAL with a message naming @p fn and the offset.
 */
sk_status sk__metrics_labels_check(const char *fn, const char *labels, bool is_histogram);

#endif /* SK_OBS_INT_H */
