/* SPDX-License-Identifier: MIT */
/*
 * Process-wide setup: route jansson's allocations through sk_malloc/sk_free
 * (so fault injection and accounting cover JSON), and configure logging from
 * SK_LOG_LEVEL / SK_LOG_FORMAT. Call sk_init from main before starting
 * threads; it is not thread-safe.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core_int.h"

#define SERVICE_NAME_MAX 63

sk_status sk_init(const char *service)
{
    const char *level_env = getenv("SK_LOG_LEVEL");
    const char *format_env = getenv("SK_LOG_FORMAT");
    sk_log_level level = SK_LOG_LEVEL_INFO;
    sk__log_format format = SK__LOG_FORMAT_TEXT;

    if (service == NULL) {
        service = "skald";
    }
    if (service[0] == '\0' || strlen(service) > SERVICE_NAME_MAX) {
        return SK_FAIL(SK_EINVAL, "sk_init: service must be 1..%d bytes", SERVICE_NAME_MAX);
    }
    for (const char *p = service; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7F) {
            return SK_FAIL(SK_EINVAL,
                           "sk_init: service must not contain spaces or control characters");
        }
    }
    if (level_env != NULL && level_env[0] != '\0' && !sk__log_level_parse(level_env, &level)) {
        return SK_FAIL(SK_EINVAL, "SK_LOG_LEVEL: expected error, warn, info or debug, got \"%.32s\"",
                       level_env);
    }
    if (format_env != NULL && format_env[0] != '\0') {
        if (strcasecmp(format_env, "json") == 0) {
            format = SK__LOG_FORMAT_JSON;
        } else if (strcasecmp(format_env, "text") != 0) {
            return SK_FAIL(SK_EINVAL, "SK_LOG_FORMAT: expected text or json, got \"%.32s\"",
                           format_env);
        }
    }
    /* Values allocated by malloc before this call are still freed correctly: sk_free is free. */
    json_set_alloc_funcs(sk_malloc, sk_free);
    sk_log_set_level(level);
    sk__log_set_format(format);
    sk__log_set_service(service);
    return SK_OK;
}

void sk_shutdown(void)
{
    /* Nothing is allocated by sk_init; restore the defaults so a later sk_init starts clean. */
    sk__log_set_service(NULL);
    sk__log_set_format(SK__LOG_FORMAT_TEXT);
    sk_log_set_level(SK_LOG_LEVEL_INFO);
}
