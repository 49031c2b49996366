/* SPDX-License-Identifier: MIT */
/* Thread names for profiles and top -H. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <pthread.h>
#include <string.h>

#include "core/core_int.h"

void sk_thread_name(const char *name)
{
    char cut[16]; /* the kernel keeps 15 bytes and the NUL */

    if (name == NULL) {
        return;
    }
    strncpy(cut, name, sizeof(cut) - 1);
    cut[sizeof(cut) - 1] = '\0';
    (void)pthread_setname_np(pthread_self(), cut);
}

void sk_thread_name_get(char out[16])
{
    if (pthread_getname_np(pthread_self(), out, 16) != 0) {
        out[0] = '\0';
    }
}
