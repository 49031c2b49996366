/* SPDX-License-Identifier: MIT */
/* skald-payment: composition root of the payment service. */
#include "payment.h"

int main(int argc, char **argv)
{
    svc_app app;
    int rc = svc_app_init(&app, argc, argv, "payment");
    if (rc == 0 && sk_di_register(app.di, app.args.service, SK_DI_SINGLETON, payment_provider_create,
                                  payment_provider_destroy, &app) != SK_OK) {
        rc = 1;
    }
    if (rc == 0) {
        rc = svc_app_run(&app);
    }
    svc_app_fini(&app);
    return rc;
}
