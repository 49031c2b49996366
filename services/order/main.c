/* SPDX-License-Identifier: MIT */
/* skald-order: composition root of the order service. */
#include "order.h"

int main(int argc, char **argv)
{
    svc_app app;
    int rc = svc_app_init(&app, argc, argv, "order");
    if (rc == 0 && sk_di_register(app.di, app.args.service, SK_DI_SINGLETON, order_provider_create,
                                  order_provider_destroy, &app) != SK_OK) {
        rc = 1;
    }
    if (rc == 0) {
        rc = svc_app_run(&app);
    }
    svc_app_fini(&app);
    return rc;
}
