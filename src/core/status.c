/* SPDX-License-Identifier: MIT */
/*
 * Names and texts of status codes, generated from SK_STATUS_MAP so that the
 * enum and both tables can never drift apart.
 */
#include <skald/status.h>

static const char *const status_names[] = {
#define SK_X(name, text) #name,
    SK_STATUS_MAP(SK_X)
#undef SK_X
};

static const char *const status_texts[] = {
#define SK_X(name, text) text,
    SK_STATUS_MAP(SK_X)
#undef SK_X
};

_Static_assert(sizeof(status_names) / sizeof(status_names[0]) == SK_STATUS_COUNT_,
               "status name table out of sync with SK_STATUS_MAP");
_Static_assert(sizeof(status_texts) / sizeof(status_texts[0]) == SK_STATUS_COUNT_,
               "status text table out of sync with SK_STATUS_MAP");

const char *sk_status_name(sk_status st)
{
    if ((unsigned)st >= (unsigned)SK_STATUS_COUNT_) {
        return "EUNKNOWN";
    }
    return status_names[st];
}

const char *sk_status_text(sk_status st)
{
    if ((unsigned)st >= (unsigned)SK_STATUS_COUNT_) {
        return "unknown status";
    }
    return status_texts[st];
}
