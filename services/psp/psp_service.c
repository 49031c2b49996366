/* SPDX-License-Identifier: MIT */
/* psp: captures, with ids derived from their idempotency keys. */
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

void psp_handle_capture(sk_call *call, void *ctx)
{
    psp_state *psp = ctx;
    const sk_request *req = sk_call_request(call);
    const char *order_id = json_string_value(json_object_get(req->payload, "order_id"));
    char capture_id[SK_UUID_LEN] = "";
    char name[PSP_KEY_MAX + 8];
    /* Keys and order ids name captures in separate halves of the namespace. */
    if (req->idempotency_key != NULL) {
        size_t n = strnlen(req->idempotency_key, PSP_KEY_MAX + 1);
        if (n == 0 || n > PSP_KEY_MAX) {
            sk_call_fail(call, SK_EPROTO, "Idempotency-Key: expected 1..%d bytes, got %s",
                         PSP_KEY_MAX, n == 0 ? "an empty key" : "more");
            return;
        }
        snprintf(name, sizeof(name), "key:%s", req->idempotency_key);
    } else {
        snprintf(name, sizeof(name), "order:%s", order_id); /* 1..100 bytes (validated) */
    }
    if (sk_uuid5(psp->capture_namespace, sk_slice_from_str(name), capture_id) != SK_OK) {
        SK_LOG_ERROR("capture id: %s", sk_error_message());
        sk_call_fail(call, SK_EINTERNAL, "the capture id could not be made");
        return;
    }

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
    if (psp == NULL) {
        return SK_FAIL(SK_ENOMEM, "psp");
    }
    psp->capture_namespace = PSP_CAPTURE_NAMESPACE;
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
    sk_free(psp);
}
