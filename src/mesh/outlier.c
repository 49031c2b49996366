/* SPDX-License-Identifier: MIT */
/*
 * Outlier detection as Envoy implements Istio's outlierDetection: per-host
 * consecutive 5xx and gateway-error counters eject a host the moment they
 * reach their threshold; a sweep every interval returns hosts whose ejection
 * time (baseEjectionTime x number of ejections, capped at max(300 s, base))
 * has passed and lowers the multiplier of hosts back for at least a base
 * ejection time. At most
 * maxEjectionPercent of the hosts are ejected, but one host always can be;
 * below minHealthPercent healthy hosts the balancer ignores ejections (panic).
 * Pure: time comes in as an argument; the caller serializes calls.
 */
#include "mesh/mesh_int.h"

sk__outcome sk__outcome_of(sk_status st, int http_status)
{
    switch (st) {
    case SK_OK:
        if (http_status >= 502 && http_status <= 504) {
            return SK__OUTCOME_GATEWAY;
        }
        if (http_status >= 500) {
            return SK__OUTCOME_5XX;
        }
        return SK__OUTCOME_SUCCESS;
    /* Locally originated failures count as gateway errors (Envoy maps them to 503/504). */
    case SK_EUNAVAILABLE:
    case SK_ETIMEDOUT:
    case SK_EIO:
    case SK_ETLS:
        return SK__OUTCOME_GATEWAY;
    default:
        return SK__OUTCOME_IGNORED;
    }
}

void sk__outlier_init(sk__outlier *o, const sk__outlier_policy *p, int64_t now_ms)
{
    o->p = *p;
    o->next_sweep_ms = now_ms + (p->interval_ms > 0 ? p->interval_ms : 10000);
}

size_t sk__outlier_n_ejected(sk__outlier_host *const *hosts, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        k += hosts[i]->is_ejected ? 1u : 0u;
    }
    return k;
}

static int64_t ejection_ms(const sk__outlier_policy *p, uint32_t n_ejections)
{
    int64_t cap =
        p->max_ejection_ms > p->base_ejection_ms ? p->max_ejection_ms : p->base_ejection_ms;
    if (n_ejections == 0) {
        n_ejections = 1;
    }
    if (p->base_ejection_ms > 0 && (int64_t)n_ejections > cap / p->base_ejection_ms) {
        return cap;
    }
    return p->base_ejection_ms * (int64_t)n_ejections;
}

/* Eject hosts[i] unless maxEjectionPercent forbids it (one host can always go). */
static bool
try_eject(sk__outlier *o, sk__outlier_host *const *hosts, size_t n, size_t i, int64_t now_ms)
{
    size_t n_ejected = sk__outlier_n_ejected(hosts, n);
    sk__outlier_host *h = hosts[i];

    if (h->is_ejected) {
        return false;
    }
    /* Counting the host about to go, as Envoy does: (ejected + 1) / n <= max%. */
    if (n_ejected > 0 &&
        (uint64_t)(n_ejected + 1) * 100u > (uint64_t)o->p.max_ejection_percent * n) {
        return false;
    }
    if (h->n_ejections < UINT32_MAX) {
        h->n_ejections++;
    }
    h->is_ejected = true;
    h->ejected_until_ms = now_ms + ejection_ms(&o->p, h->n_ejections);
    return true;
}

bool sk__outlier_record(sk__outlier *o,
                        sk__outlier_host *const *hosts,
                        size_t n,
                        size_t i,
                        sk__outcome oc,
                        int64_t now_ms)
{
    sk__outlier_host *h;
    bool is_due = false;

    if (!o->p.is_enabled || hosts == NULL || i >= n) {
        return false;
    }
    h = hosts[i];
    switch (oc) {
    case SK__OUTCOME_SUCCESS:
        h->n_5xx = 0;
        h->n_gateway = 0;
        return false;
    case SK__OUTCOME_5XX:
        h->n_5xx++;
        h->n_gateway = 0;
        break;
    case SK__OUTCOME_GATEWAY:
        /* A gateway error is also a 5xx. */
        h->n_5xx++;
        h->n_gateway++;
        break;
    case SK__OUTCOME_IGNORED:
    default:
        return false;
    }
    if (o->p.consecutive_5xx > 0 && h->n_5xx >= o->p.consecutive_5xx) {
        is_due = true;
    }
    if (o->p.consecutive_gateway > 0 && h->n_gateway >= o->p.consecutive_gateway) {
        is_due = true;
    }
    if (!is_due) {
        return false;
    }
    /* The streak is spent whether or not the percentage cap lets the host go. */
    h->n_5xx = 0;
    h->n_gateway = 0;
    return try_eject(o, hosts, n, i, now_ms);
}

size_t sk__outlier_sweep(sk__outlier *o, sk__outlier_host *const *hosts, size_t n, int64_t now_ms)
{
    size_t n_back = 0;

    if (!o->p.is_enabled || now_ms < o->next_sweep_ms) {
        return 0;
    }
    /* Keep the cadence of a fixed timer even when sweeps are driven by traffic. */
    while (o->next_sweep_ms <= now_ms) {
        o->next_sweep_ms += o->p.interval_ms > 0 ? o->p.interval_ms : 10000;
    }
    for (size_t i = 0; i < n; i++) {
        sk__outlier_host *h = hosts[i];
        if (h->is_ejected) {
            if (now_ms >= h->ejected_until_ms) {
                h->is_ejected = false;
                h->ejected_until_ms = 0;
                h->n_5xx = 0;
                h->n_gateway = 0;
                h->has_been_unejected = true;
                h->unejected_at_ms = now_ms;
                n_back++;
            }
        } else if (h->n_ejections > 0 && h->has_been_unejected &&
                   now_ms - h->unejected_at_ms >= o->p.base_ejection_ms) {
            /* Envoy: healthy for a base ejection time since it came back: lower the multiplier. */
            h->n_ejections--;
        }
    }
    return n_back;
}

bool sk__outlier_is_panic(const sk__outlier *o, sk__outlier_host *const *hosts, size_t n)
{
    size_t n_healthy;

    if (!o->p.is_enabled || o->p.min_health_percent == 0 || n == 0) {
        return false;
    }
    n_healthy = n - sk__outlier_n_ejected(hosts, n);
    return (uint64_t)n_healthy * 100u < (uint64_t)o->p.min_health_percent * n;
}
