/* SPDX-License-Identifier: MIT */
/* Umbrella header: every public Skald module. */
#ifndef SK_SKALD_H
#define SK_SKALD_H

#include <skald/status.h>
#include <skald/core.h>
#include <skald/di.h>
#include <skald/obs.h>
#include <skald/store.h>
#include <skald/msg.h>
#include <skald/mesh.h>
#include <skald/discovery.h>
#include <skald/cqrs.h>
#include <skald/saga.h>

#endif /* SK_SKALD_H */
