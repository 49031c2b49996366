/* SPDX-License-Identifier: MIT */
/*
 * psp: a simulated external payment provider. POST /captures answers 201
 * with a capture id; the same Idempotency-Key gets the same capture id.
 * Latency and errors are injected by the mesh's inbound fault injection.
 */
#ifndef PSP_H
#define PSP_H

#include "svc.h"

/*
 * The namespace of capture ids: a capture's id is the UUIDv5 of its
 * Idempotency-Key ("key:<key>") or, without one, of its order id
 * ("order:<id>") in it. So a retry gets the same id however late it comes,
 * after a psp restart too, and psp keeps no table of captures (it held
 * 3.5 MB of them before).
 */
#define PSP_CAPTURE_NAMESPACE "0190a6e4-0c5e-7a3d-8f3e-5c0d3a9b7e21"
/* Longest Idempotency-Key a capture accepts, in bytes: what the services' own commands accept. */
#define PSP_KEY_MAX 255

typedef struct psp_state {
    const char *capture_namespace; /* PSP_CAPTURE_NAMESPACE */
} psp_state;

sk_status psp_validate_capture(const json_t *payload, void *ctx);
void psp_handle_capture(sk_call *call, void *ctx);

sk_status psp_provider_create(sk_di *di, void **out, void *ctx);
void psp_provider_destroy(void *obj, void *ctx);

#endif /* PSP_H */
