/* SPDX-License-Identifier: MIT */
/*
 * discovery internals shared by the files of src/discovery and their tests:
 * the pure codec of a registry entry's value (JSON object <-> sk_instance),
 * which a fuzz target can call without a server, the validators of names
 * and addresses, and test hooks of the registry.
 */
#ifndef SK_DISCOVERY_INT_H
#define SK_DISCOVERY_INT_H

#include <skald/discovery.h>

/** Largest entry value accepted from the bucket, in bytes. */
#define SK__DISCOVERY_MAX_VALUE 4096
/** Most entries a registry keeps in its table; further ones are ignored with a warning. */
#define SK__DISCOVERY_MAX_ENTRIES 4096

/**
 * True when @p s (@p len bytes, not necessarily NUL-terminated) is a valid
 * service or instance name: [a-z0-9-]{1,SK_DISCOVERY_MAX_NAME}. Pure.
 */
bool sk__discovery_name_is_valid(const char *s, size_t len);

/**
 * True when @p s (@p len bytes) is "host:port": host is a DNS name or IPv4
 * address ([A-Za-z0-9._-]+) or an IPv6 address in brackets ("[::1]"), port a
 * decimal 1..65535 without sign or leading zero, at most
 * SK_DISCOVERY_MAX_ADDRESS bytes in all. Pure.
 */
bool sk__discovery_address_is_valid(const char *s, size_t len);

/**
 * Check an instance before it is registered: names, address, pid >= 0.
 * heartbeat_ms is not checked (the heartbeat sets it).
 * @return SK_OK or SK_EINVAL naming the field.
 */
sk_status sk__instance_validate(const sk_instance *inst);

/**
 * Encode @p inst as the entry value: a compact JSON object
 * {"service","instance","address","ready","pid","heartbeat_ms"}.
 * @param[out] out owned, NUL-terminated, sk_free; NULL on failure.
 * @param[out] len its length in bytes.
 * @return SK_OK, SK_EINVAL (NULL argument or invalid field), SK_ENOMEM.
 */
sk_status sk__instance_encode(const sk_instance *inst, char **out, size_t *len);

/**
 * Decode an entry value. Every field is required and checked (names
 * [a-z0-9-]{1,64}, address host:port with port 1..65535, "ready" a boolean,
 * "pid" 1..INT_MAX, "heartbeat_ms" 0..INT64_MAX); unknown fields are ignored.
 * @param value at most SK__DISCOVERY_MAX_VALUE bytes; any bytes (never
 *        assumed NUL-terminated).
 * @param[out] out on success its strings are owned (release with
 *        sk__instance_fini); on failure every field is zeroed.
 * @return SK_OK, SK_EINVAL (NULL out), SK_EPROTO (naming the field),
 *         SK_ELIMIT (too large), SK_ENOMEM.
 * Pure; thread-safe.
 */
sk_status sk__instance_decode(sk_slice value, sk_instance *out);

/** Deep-copy @p src into @p dst (strings owned). @return SK_OK or SK_ENOMEM (dst zeroed). */
sk_status sk__instance_copy(sk_instance *dst, const sk_instance *src);

/** Free the strings of an instance filled by decode or copy and zero it. NULL-safe, idempotent. */
void sk__instance_fini(sk_instance *inst);

/**
 * Test hook: stop @p r's heartbeat thread WITHOUT deleting its key, as a
 * crashed process would. sk_registry_register may be called again later.
 */
void sk__registry_test_stop_heartbeat(sk_registry *r);

/** The registry's entry TTL in milliseconds (after defaulting). */
int64_t sk__registry_ttl_ms(const sk_registry *r);

#endif /* SK_DISCOVERY_INT_H */
