/* SPDX-License-Identifier: MIT */
/*
 * Connection-pool limits of one upstream in one calling process (Envoy's
 * per-cluster circuit breakers as Istio configures them). Over HTTP/1.1 a
 * connection carries one request at a time, so tcp.maxConnections caps the
 * requests in flight; up to http1MaxPendingRequests more wait for a slot;
 * beyond that a request overflows at once. Pure and caller-serialized.
 */
#include "mesh/mesh_int.h"

void sk__pool_init(sk__pool *p, const sk__pool_policy *policy)
{
    p->max_active = policy != NULL ? policy->max_connections : UINT32_MAX;
    p->max_pending = policy != NULL ? policy->max_pending : UINT32_MAX;
    if (p->max_active == 0) {
        p->max_active = 1; /* Istio requires >= 1; parse refuses 0, keep the invariant anyway */
    }
    p->n_active = 0;
    p->n_pending = 0;
    p->n_overflows = 0;
}

sk__pool_verdict sk__pool_admit(sk__pool *p)
{
    /* A waiting request goes first: never let a newcomer overtake the queue. */
    if (p->n_active < p->max_active && p->n_pending == 0) {
        p->n_active++;
        return SK__POOL_GO;
    }
    if (p->n_pending < p->max_pending) {
        p->n_pending++;
        return SK__POOL_QUEUE;
    }
    p->n_overflows++;
    return SK__POOL_OVERFLOW;
}

bool sk__pool_release(sk__pool *p)
{
    if (p->n_pending > 0 && p->n_active <= p->max_active) {
        p->n_pending--;
        return true; /* the slot moves to the head of the queue */
    }
    if (p->n_active > 0) {
        p->n_active--;
    }
    return false;
}

void sk__pool_unqueue(sk__pool *p)
{
    if (p->n_pending > 0) {
        p->n_pending--;
    }
}
