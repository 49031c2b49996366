/* SPDX-License-Identifier: MIT */
/* skald-gateway: composition root of the gateway service. */
#include "gateway.h"

int main(int argc, char **argv)
{
    svc_app app;
    int rc = svc_app_init(&app, argc, argv, "gateway");
    if (rc == 0 && sk_di_register(app.di, app.args.service, SK_DI_SINGLETON, gateway_provider_create,
                                  gateway_provider_destroy, &app) != SK_OK) {
        rc = 1;
    }
    if (rc == 0) {
        rc = svc_app_run(&app);
    }
    svc_app_fini(&app);
    return rc;
}
