/* SPDX-License-Identifier: MIT */
/* skald-psp: composition root of the simulated payment provider. */
#include "psp.h"

int main(int argc, char **argv)
{
    svc_app app;
    int rc = svc_app_init(&app, argc, argv, "psp");
    if (rc == 0 && sk_di_register(app.di, app.args.service, SK_DI_SINGLETON, psp_provider_create,
                                  psp_provider_destroy, &app) != SK_OK) {
        rc = 1;
    }
    if (rc == 0) {
        rc = svc_app_run(&app);
    }
    svc_app_fini(&app);
    return rc;
}
