/* SPDX-License-Identifier: MIT */
/*
 * Run-time inbound fault injection: every instance watches its service's
 * key in the SK_FAULT_BUCKET KV bucket (written by `skald fault`) and hands
 * the Istio fault object to its HTTP server; a deleted key clears it.
 */
#include <string.h>

#include "svc.h"
#include "svc_int.h"

/* Bus thread: apply the new setting; a bad value is logged and leaves no fault. */
static void on_fault(const char *key, sk_slice value, bool is_deleted, void *ctx)
{
    svc_app *app = ctx;
    json_t *fault = NULL;
    if (!is_deleted && value.len > 0 && sk_json_parse_object(value, &fault) != SK_OK) {
        SK_LOG_WARN("fault injection for %s: ignoring a malformed setting: %s", key, sk_error_message());
        fault = NULL;
    }
    if (sk_http_server_set_fault(app->server, fault) != SK_OK) {
        SK_LOG_WARN("fault injection for %s: %s", key, sk_error_message());
        SK_IGNORE(sk_http_server_set_fault(app->server, NULL)); /* clearing cannot fail */
    } else {
        SK_LOG_INFO("fault injection for %s: %s", key, fault != NULL ? "set" : "cleared");
    }
    json_decref(fault);
}

sk_status svc__fault_watch_start(svc_app *app, sk_bus *bus)
{
    sk_status st = sk_kv_open(&app->fault_kv, bus, SK_FAULT_BUCKET, 0);
    if (st == SK_OK) {
        st = sk_kv_watch_start(&app->fault_watch, app->fault_kv, app->args.service, on_fault, app);
    }
    if (st != SK_OK) {
        svc__fault_watch_stop(app);
    }
    return st;
}

void svc__fault_watch_stop(svc_app *app)
{
    sk_kv_watch_stop(app->fault_watch);
    app->fault_watch = NULL;
    sk_kv_close(app->fault_kv);
    app->fault_kv = NULL;
}
