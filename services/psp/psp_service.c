/* SPDX-License-Identifier: MIT */
/* psp: captures, remembered in memory for idempotent retries. */
#include <stdio.h>
#include <string.h>

#include "psp.h"

sk_status psp_validate_capture(const json_t *payload, void *ctx)
{
    const char *order_id = NULL;
    int64_t amount = 0;
    (void)ctx;
    sk_status st = sk_json_get_string(payload, "order_id", 1, 100, &order_id);
    if (st == SK_OK) {
        st = sk_json_get_int(payload, "amount_cents", 0, 1000000000000000000LL, &amount);
    }
    return st;
}

/* Two independent 64-bit hashes of @p key (FNV-1a forwards, and backwards from another basis). */
static void key_fingerprint(const char *key, uint64_t out[2])
{
    size_t n = strlen(key);
    uint64_t a = 1469598103934665603ULL, b = 0x9e3779b97f4a7c15ULL;

    for (size_t i = 0; i < n; i++) {
        a = (a ^ (uint8_t)key[i]) * 1099511628211ULL;
        b = (b ^ (uint8_t)key[n - 1 - i]) * 0x100000001b3ULL;
        b ^= b >> 29;
    }
    out[0] = a | 1; /* never both zero: zero marks an empty slot */
    out[1] = b;
}

void psp_handle_capture(sk_call *call, void *ctx)
{
    psp_state *psp = ctx;
    const sk_request *req = sk_call_request(call);
    const char *order_id = json_string_value(json_object_get(req->payload, "order_id"));
    char key[SVC_ID_MAX + 32];
    char capture_id[SK_UUID_LEN] = "";
    const char *given = req->idempotency_key != NULL ? req->idempotency_key : order_id;
    if (strlen(given) >= sizeof(key)) {
        sk_call_fail(call, SK_EPROTO, "Idempotency-Key: expected at most %zu bytes", sizeof(key) - 1);
        return;
    }
    snprintf(key, sizeof(key), "%s", given);

    /* Open addressing over a fixed table: a full probe window overwrites the oldest home slot. */
    uint64_t h[2];
    key_fingerprint(key, h);
    pthread_mutex_lock(&psp->mu);
    size_t home = (size_t)(h[0] % PSP_MAX_REMEMBERED);
    psp_capture *slot = NULL;
    for (size_t i = 0; i < 64; i++) {
        psp_capture *c = &psp->captures[(home + i) % PSP_MAX_REMEMBERED];
        bool is_empty = c->key_hash[0] == 0 && c->key_hash[1] == 0;
        if (!is_empty && c->key_hash[0] == h[0] && c->key_hash[1] == h[1]) {
            memcpy(capture_id, c->capture_id, sizeof(capture_id));
            break;
        }
        if (is_empty && slot == NULL) {
            slot = c;
        }
    }
    if (capture_id[0] == '\0') {
        if (slot == NULL) {
            slot = &psp->captures[home];
        }
        sk_uuid7(capture_id);
        slot->key_hash[0] = h[0];
        slot->key_hash[1] = h[1];
        memcpy(slot->capture_id, capture_id, sizeof(capture_id));
    }
    pthread_mutex_unlock(&psp->mu);

    json_t *body = json_pack("{s:s, s:s, s:O}", "capture_id", capture_id, "order_id", order_id, "amount_cents",
                             json_object_get(req->payload, "amount_cents"));
    if (body == NULL) {
        sk_call_fail(call, SK_ENOMEM, "out of memory");
        return;
    }
    sk_call_complete(call, 201, body, NULL);
}

sk_status psp_provider_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    sk_cqrs_bus *commands = NULL;
    psp_state *psp = sk_calloc(1, sizeof(*psp));
    sk_status st = SK_OK;
    if (psp == NULL || (psp->captures = sk_calloc(PSP_MAX_REMEMBERED, sizeof(*psp->captures))) == NULL) {
        sk_free(psp);
        return SK_FAIL(SK_ENOMEM, "psp");
    }
    pthread_mutex_init(&psp->mu, NULL);
    st = sk_di_resolve(di, "commands", (void **)&commands);
    if (st == SK_OK) {
        st = sk_cqrs_bus_register(commands, "Capture", psp_validate_capture, psp_handle_capture, psp);
    }
    if (st == SK_OK) {
        st = svc_route_command(app, "POST", "/captures", "Capture");
    }
    if (st != SK_OK) {
        psp_provider_destroy(psp, NULL);
        return st;
    }
    *out = psp;
    return SK_OK;
}

void psp_provider_destroy(void *obj, void *ctx)
{
    psp_state *psp = obj;
    (void)ctx;
    if (psp == NULL) {
        return;
    }
    pthread_mutex_destroy(&psp->mu);
    sk_free(psp->captures);
    sk_free(psp);
}
