/* SPDX-License-Identifier: MIT */
/*
 * psp: a simulated external payment provider. POST /captures answers 201
 * with a capture id; the same Idempotency-Key gets the same capture id.
 * Latency and errors are injected by the mesh's inbound fault injection.
 */
#ifndef PSP_H
#define PSP_H

#include <pthread.h>

#include "svc.h"

/* Captures remembered for idempotent retries (payment retries within seconds). */
#define PSP_MAX_REMEMBERED 65536

/*
 * A remembered capture: the Idempotency-Key as a 128-bit fingerprint (two
 * independent 64-bit hashes) instead of its text, so the table stays at
 * 3.5 MB when full instead of 31 MB; a false match needs a 128-bit collision.
 */
typedef struct psp_capture {
    uint64_t key_hash[2]; /* both 0: an empty slot */
    char capture_id[SK_UUID_LEN];
} psp_capture;

typedef struct psp_state {
    pthread_mutex_t mu;    /* protects captures */
    psp_capture *captures; /* hash table of recent captures, PSP_MAX_REMEMBERED slots */
} psp_state;

sk_status psp_validate_capture(const json_t *payload, void *ctx);
void psp_handle_capture(sk_call *call, void *ctx);

sk_status psp_provider_create(sk_di *di, void **out, void *ctx);
void psp_provider_destroy(void *obj, void *ctx);

#endif /* PSP_H */
