/* SPDX-License-Identifier: MIT */
/* skald-orderview: composition root of the orderview service. */
#include "orderview.h"

int main(int argc, char **argv)
{
    svc_app app;
    int rc = svc_app_init(&app, argc, argv, "orderview");
    if (rc == 0 && sk_di_register(app.di, app.args.service, SK_DI_SINGLETON, orderview_provider_create,
                                  orderview_provider_destroy, &app) != SK_OK) {
        rc = 1;
    }
    if (rc == 0) {
        rc = svc_app_run(&app);
    }
    svc_app_fini(&app);
    return rc;
}
