/* SPDX-License-Identifier: MIT */
/*
 * Stand-in for src/msg/bus.c's sk__nats_fail, so that the envelope parser
 * (src/msg/envelope.c) links into the fuzz targets without the connection,
 * JetStream and consumer code of the msg module. Only the status matters to
 * the targets; the text names the nats.c status.
 */
#include "msg/msg_int.h"

sk_status sk__nats_fail(natsStatus s, jsErrCode jerr, const char *what)
{
    (void)jerr;
    return SK_FAIL(s == NATS_NO_MEMORY ? SK_ENOMEM : SK_EBUS, "%s: %s", what, natsStatus_GetText(s));
}
