/* SPDX-License-Identifier: MIT */
/*
 * Command-line arguments of a service process. Every value is validated
 * here so the rest of the runtime can trust them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc.h"

static void usage(const char *service)
{
    fprintf(stderr,
            "usage: skald-%s [--service NAME] [--instance NAME-N] [--config FILE] [--data DIR] "
            "[--port N]\n",
            service);
}

static bool is_name(const char *s, size_t max_len)
{
    size_t n = strlen(s);
    if (n == 0 || n > max_len || s[0] < 'a' || s[0] > 'z') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

sk_status svc_args_parse(svc_args *out, int argc, char **argv, const char *service)
{
    memset(out, 0, sizeof(*out));
    out->service = service;
    out->config_path = "skald.yaml";
    out->data_dir = getenv("SKALD_DATA") != NULL ? getenv("SKALD_DATA") : "./var";
    int i = 1;
    while (i < argc) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(service);
            return SK_FAIL(SK_EINVAL, "help requested");
        }
        if (val == NULL || val[0] == '\0') {
            fprintf(stderr, "skald-%s: %s: missing or empty value\n", service, arg);
            usage(service);
            return SK_FAIL(SK_EINVAL, "%s: missing value", arg);
        }
        if (strcmp(arg, "--service") == 0) {
            out->service = val;
        } else if (strcmp(arg, "--instance") == 0) {
            out->instance = val;
        } else if (strcmp(arg, "--config") == 0) {
            out->config_path = val;
        } else if (strcmp(arg, "--data") == 0) {
            out->data_dir = val;
        } else if (strcmp(arg, "--port") == 0) {
            char *end = NULL;
            long port = strtol(val, &end, 10);
            if (end == val || *end != '\0' || port < 0 || port > 65535) {
                fprintf(stderr, "skald-%s: --port: expected 0..65535, got \"%.20s\"\n", service, val);
                return SK_FAIL(SK_EINVAL, "--port: expected 0..65535");
            }
            out->port = (int)port;
        } else {
            fprintf(stderr, "skald-%s: unknown argument \"%.40s\"\n", service, arg);
            usage(service);
            return SK_FAIL(SK_EINVAL, "unknown argument");
        }
        i += 2; /* flag and value */
    }
    if (!is_name(out->service, SK_MESH_MAX_SERVICE)) {
        fprintf(stderr, "skald-%s: --service: expected [a-z][a-z0-9-]{0,31}\n", service);
        return SK_FAIL(SK_EINVAL, "--service: bad name");
    }
    if (out->instance != NULL && !is_name(out->instance, 64)) {
        fprintf(stderr, "skald-%s: --instance: expected [a-z][a-z0-9-]{0,63}\n", service);
        return SK_FAIL(SK_EINVAL, "--instance: bad name");
    }
    return SK_OK;
}
