/* SPDX-License-Identifier: MIT */
/*
 * Persisted idempotency keys: the schema of the cqrs tables, the canonical
 * request hash (SHA-256 of the compact, key-sorted JSON), and lookup / save /
 * expire inside the caller's transaction. A key is bound to the hash of the
 * first request that used it: the same request replays the first answer,
 * another request with the same key is a conflict.
 */
/*
 * Hide OpenSSL's deprecated names: its stack.h would otherwise define sk_free
 * as OPENSSL_sk_free and clash with ours.
 */
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "cqrs/cqrs_int.h"

static const sk_migration migrations[] = {
    { "sk_cqrs", 1,
      "CREATE TABLE sk_idempotency ("
      " scope TEXT NOT NULL,"
      " key TEXT NOT NULL,"
      " request_hash TEXT NOT NULL,"
      " http_status INTEGER NOT NULL,"
      " body TEXT,"
      " created_ms INTEGER NOT NULL,"
      " PRIMARY KEY (scope, key));"
      "CREATE INDEX sk_idempotency_created ON sk_idempotency (created_ms);"
      "CREATE TABLE sk_checkpoints ("
      " projection TEXT PRIMARY KEY,"
      " stream_seq INTEGER NOT NULL,"
      " updated_ms INTEGER NOT NULL)" },
    /* Versioned read models (readmodel.c): the version queries read, the one a replay builds. */
    { "sk_cqrs", 2,
      "CREATE TABLE sk_readmodels ("
      " name TEXT PRIMARY KEY,"
      " live_version INTEGER NOT NULL,"
      " building_version INTEGER NOT NULL,"
      " started_ms INTEGER NOT NULL)" },
    /*
     * The version a switch left to retire, until its tables, checkpoints,
     * inbox rows and durable consumers are gone (0: none), so that a
     * process ending between the two finishes the job at the next start.
     */
    { "sk_cqrs", 3,
      "ALTER TABLE sk_readmodels ADD COLUMN retiring_version INTEGER NOT NULL DEFAULT 0" },
};

const sk_migration *sk_cqrs_migrations(size_t *n)
{
    if (n != NULL) {
        *n = sizeof(migrations) / sizeof(migrations[0]);
    }
    return migrations;
}

/* ---------------------------------------------------------------- hash */

/* Record the OpenSSL error queue (drained) as the message of @p st. */
static sk_status openssl_fail(sk_status st, const char *what)
{
    unsigned long e = ERR_get_error();
    char text[256] = "no OpenSSL error";

    if (e != 0) {
        ERR_error_string_n(e, text, sizeof(text));
    }
    ERR_clear_error();
    return SK_FAIL(st, "%s: %s", what, text);
}

static int hash_chunk(const char *buffer, size_t size, void *data)
{
    return EVP_DigestUpdate((EVP_MD_CTX *)data, buffer, size) == 1 ? 0 : -1;
}

sk_status sk_idem_hash(const json_t *payload, char out[SK_IDEM_HASH_LEN])
{
    static const char hex[] = "0123456789abcdef";
    sk_status st = SK_OK;
    EVP_MD_CTX *md = NULL;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_idem_hash: out must not be NULL");
    }
    out[0] = '\0';
    if (payload == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_idem_hash: payload must not be NULL");
    }
    md = EVP_MD_CTX_new();
    if (md == NULL) {
        st = openssl_fail(SK_ENOMEM, "sk_idem_hash: EVP_MD_CTX_new");
        goto out;
    }
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        st = openssl_fail(SK_EINTERNAL, "sk_idem_hash: EVP_DigestInit_ex(sha256)");
        goto out;
    }
    /* Streamed straight into the digest: the canonical text is never held whole. */
    if (json_dump_callback(payload, hash_chunk, md,
                           JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) != 0) {
        st = SK_FAIL(SK_ENOMEM, "sk_idem_hash: serialising the payload failed");
        ERR_clear_error();
        goto out;
    }
    if (EVP_DigestFinal_ex(md, digest, &digest_len) != 1 || digest_len != 32) {
        st = openssl_fail(SK_EINTERNAL, "sk_idem_hash: EVP_DigestFinal_ex");
        goto out;
    }
    for (unsigned int i = 0; i < digest_len; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[2 * digest_len] = '\0';
out:
    EVP_MD_CTX_free(md);
    return st;
}

/* ---------------------------------------------------------------- keys */

static sk_status check_key(const char *key)
{
    size_t n = 0;

    if (key == NULL) {
        return SK_FAIL(SK_EPROTO,
                       "Idempotency-Key: expected 1..%d printable ASCII characters, "
                       "got none",
                       SK__IDEM_KEY_MAX);
    }
    for (; key[n] != '\0'; n++) {
        unsigned char c = (unsigned char)key[n];
        if (c < 0x20 || c > 0x7e) {
            return SK_FAIL(SK_EPROTO,
                           "Idempotency-Key: expected printable ASCII characters, got byte 0x%02x "
                           "at offset %zu",
                           c, n);
        }
        if (n >= SK__IDEM_KEY_MAX) {
            return SK_FAIL(SK_EPROTO, "Idempotency-Key: expected at most %d characters, got more",
                           SK__IDEM_KEY_MAX);
        }
    }
    if (n == 0) {
        return SK_FAIL(SK_EPROTO,
                       "Idempotency-Key: expected 1..%d printable ASCII characters, "
                       "got an empty key",
                       SK__IDEM_KEY_MAX);
    }
    return SK_OK;
}

static sk_status check_scope(const char *fn, const char *scope)
{
    size_t n;

    if (scope == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: scope must not be NULL", fn);
    }
    n = strnlen(scope, SK__IDEM_SCOPE_MAX + 1);
    if (n == 0 || n > SK__IDEM_SCOPE_MAX) {
        return SK_FAIL(SK_EINVAL, "%s: scope must be 1..%d bytes", fn, SK__IDEM_SCOPE_MAX);
    }
    return SK_OK;
}

static sk_status check_hash(const char *fn, const char *hash)
{
    size_t n = 0;

    if (hash == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: request_hash must not be NULL", fn);
    }
    for (; n < SK_IDEM_HASH_LEN && hash[n] != '\0'; n++) {
        char c = hash[n];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return SK_FAIL(SK_EINVAL, "%s: request_hash must be 64 lower-case hex digits", fn);
        }
    }
    if (n != SK_IDEM_HASH_LEN - 1) {
        return SK_FAIL(SK_EINVAL, "%s: request_hash must be 64 lower-case hex digits", fn);
    }
    return SK_OK;
}

sk_status sk_idem_lookup(sk_tx *tx,
                         const char *scope,
                         const char *key,
                         const char *request_hash,
                         int *http_status,
                         char **body)
{
    sk_status st = SK_OK;
    sk_rows *rows = NULL;
    char *copy = NULL;
    size_t len = 0;
    const char *text;

    if (http_status == NULL || body == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_idem_lookup: http_status and body must not be NULL");
    }
    *http_status = 0;
    *body = NULL;
    if (tx == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_idem_lookup: tx must not be NULL");
    }
    st = check_scope("sk_idem_lookup", scope);
    if (st == SK_OK) {
        st = check_hash("sk_idem_lookup", request_hash);
    }
    if (st == SK_OK) {
        st = check_key(key);
    }
    if (st != SK_OK) {
        return st;
    }
    {
        const sk_db_value params[] = { SK_DB_TEXT_V(scope), SK_DB_TEXT_V(key) };
        st = sk_tx_query(tx,
                         "SELECT request_hash, http_status, body FROM sk_idempotency"
                         " WHERE scope = ? AND key = ?",
                         params, 2, &rows);
    }
    if (st != SK_OK) {
        st = SK_WRAP(st, "sk_idem_lookup");
        goto out;
    }
    st = sk_rows_next(rows);
    if (st == SK_ENOTFOUND) {
        st = SK_FAIL(SK_ENOTFOUND, "Idempotency-Key: not seen before");
        goto out;
    }
    if (st != SK_OK) {
        st = SK_WRAP(st, "sk_idem_lookup");
        goto out;
    }
    text = sk_rows_text(rows, 0, &len);
    if (len != SK_IDEM_HASH_LEN - 1 || memcmp(text, request_hash, len) != 0) {
        st = SK_FAIL(SK_ECONFLICT, "Idempotency-Key: already used with a different request");
        goto out;
    }
    if (!sk_rows_is_null(rows, 2)) {
        text = sk_rows_text(rows, 2, &len);
        copy = sk_strndup(text, len);
        if (copy == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_idem_lookup: copying the stored body");
            goto out;
        }
    }
    *http_status = (int)sk_rows_int(rows, 1);
    *body = copy;
    copy = NULL;
out:
    sk_rows_close(rows);
    sk_free(copy);
    return st;
}

sk_status sk_idem_save(sk_tx *tx,
                       const char *scope,
                       const char *key,
                       const char *request_hash,
                       int http_status,
                       const char *body)
{
    sk_status st;

    if (tx == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_idem_save: tx must not be NULL");
    }
    st = check_scope("sk_idem_save", scope);
    if (st == SK_OK) {
        st = check_hash("sk_idem_save", request_hash);
    }
    if (st == SK_OK) {
        st = check_key(key);
    }
    if (st != SK_OK) {
        return st;
    }
    if (http_status < 100 || http_status > 599) {
        return SK_FAIL(SK_EINVAL, "sk_idem_save: http_status must be 100..599, got %d",
                       http_status);
    }
    {
        const sk_db_value params[] = {
            SK_DB_TEXT_V(scope),
            SK_DB_TEXT_V(key),
            SK_DB_TEXT_V(request_hash),
            SK_DB_INT_V(http_status),
            body != NULL ? SK_DB_TEXT_V(body) : SK_DB_NULL_V,
            SK_DB_INT_V(sk_time_now_ms()),
        };
        st = sk_tx_exec(tx,
                        "INSERT INTO sk_idempotency (scope, key, request_hash, http_status, body,"
                        " created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                        params, 6, NULL);
    }
    if (st == SK_EEXIST) {
        return SK_FAIL(SK_EEXIST, "Idempotency-Key: already recorded for scope %s", scope);
    }
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_idem_save");
    }
    return SK_OK;
}

sk_status sk_idem_expire(sk_tx *tx, int64_t max_age_ms)
{
    sk_status st;
    int64_t changes = 0;

    if (tx == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_idem_expire: tx must not be NULL");
    }
    if (max_age_ms < 0) {
        return SK_FAIL(SK_EINVAL, "sk_idem_expire: max_age_ms must be >= 0, got %lld",
                       (long long)max_age_ms);
    }
    {
        const sk_db_value params[] = { SK_DB_INT_V(sk_time_now_ms() - max_age_ms) };
        st = sk_tx_exec(tx, "DELETE FROM sk_idempotency WHERE created_ms < ?", params, 1, &changes);
    }
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_idem_expire");
    }
    SK_LOG_DEBUG("idempotency keys expired: %lld", (long long)changes);
    return SK_OK;
}
