/* SPDX-License-Identifier: MIT */
/*
 * "sk-wal": a thin SQLite VFS over the default (unix) one that writes a
 * commit's WAL frames with one write instead of two per page.
 *
 * Why: SQLite writes each WAL frame as two pwrite calls (the 24-byte frame
 * header, then the page), and the shop's commits write ~45 pages per order
 * over its databases: ~106 pwrite64 per order at 600 orders/s, a fifth of
 * all its system calls, on a VM where every system call is expensive.
 * Here the frames a connection appends are gathered in memory and written
 * at once.
 *
 * Why it keeps every guarantee: SQLite assumes nothing about a write until
 * it syncs, and with synchronous=FULL (the only mode the store runs; see
 * sqlite_backend.c) a commit syncs the WAL before it publishes the new end
 * of the log in the shared wal-index. The gathered frames are written
 * before anything that could need them: any other operation on the WAL
 * file (sync, read, size, truncate, close, file control), so a commit's
 * sync and a connection reading back frames it wrote see them; and every
 * memory barrier on the database file, which SQLite uses to publish the
 * wal-index header.
 *
 * Two more rules keep a failure from going unnoticed or doing harm:
 *  - A write that failed when it was finally made fails the transaction:
 *    SQLite was told earlier that the frames were written, and it may go on
 *    (a failed read is a statement error only) and commit around them. So
 *    after a failed flush every operation on the WAL fails with the same
 *    error until the transaction ends.
 *  - When the connection releases the WAL's write lock (xShmLock on the
 *    database file), the transaction is over: whatever is still gathered
 *    belongs to a transaction that was rolled back after spilling into the
 *    WAL (a commit flushed at its sync), so it is dropped, never written
 *    later over what another connection commits there; the error is
 *    cleared with it.
 *  - The gathering buffer (up to WAL_BUF_MAX) is freed on request between
 *    transactions (SK__SQLITE_FCNTL_RELEASE_WAL_BUFFER, the store's idle
 *    release), and only when no frames wait in it; the next write
 *    allocates it again.
 * This relies on the shared-memory locks, so the store never runs
 * locking_mode=EXCLUSIVE (SQLite then skips them). The database file
 * itself, journals and temporary files are untouched.
 *
 * A database file and its WAL file are paired by the name SQLite opens them
 * with: the WAL's name maps back to the database's through
 * sqlite3_filename_database, which returns the very pointer the database
 * was opened with. A WAL without its database here is written through.
 */
#include "store/store_int.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <string.h>

#define SK_VFS_NAME "sk-wal"
/* Frames gathered beyond this are written; a commit larger than it just takes more writes. */
#define WAL_BUF_MAX   (1024 * 1024)
#define WAL_BUF_FIRST (64 * 1024)
/*
 * The unix VFS writes at most 128 KiB - 1 bytes per call (it masks the
 * length: SQLite itself never writes more than a page), so the gathered
 * frames go out in pieces of 124 KiB (31 frames of 4 KiB pages).
 */
#define WRITE_MAX ((size_t)31 * 4096)

typedef struct shim_file shim_file;
struct shim_file {
    sqlite3_file base;    /* pMethods: main_methods or wal_methods */
    sqlite3_file *real;   /* the default VFS's file, right after this struct */
    const char *name;     /* a database: the name pointer it was opened with */
    shim_file *peer;      /* a database's WAL, a WAL's database (registry_mu) */
    shim_file *next_main; /* open databases (registry_mu) */
    /* A WAL: frames not written yet. buf, buf_off, buf_len and buf_cap belong to
     * the thread using the connection (SQLite's calls and the release file
     * control alike), not to registry_mu. */
    unsigned char *buf;
    sqlite3_int64 buf_off;
    size_t buf_len, buf_cap;
    int err; /* a WAL: the failed flush's error, until the write lock is released */
};

/* sizeof(shim_file) in whole 16-byte units: the real file after it is as aligned as this one. */
#define SHIM_SIZE ((sizeof(shim_file) + 15) & ~(size_t)15)

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static shim_file *registry; /* databases open through sk-wal */
static sqlite3_vfs shim_vfs;

static sqlite3_vfs *real_vfs(void)
{
    return shim_vfs.pAppData;
}

/* ---------------------------------------------------------------- WAL buffer */

/* Write the gathered frames; a failure sticks until the write lock is released. */
static int wal_flush(shim_file *w)
{
    int rc = w->err;

    for (size_t done = 0; done < w->buf_len && rc == SQLITE_OK; done += WRITE_MAX) {
        size_t n = w->buf_len - done < WRITE_MAX ? w->buf_len - done : WRITE_MAX;
        rc = w->real->pMethods->xWrite(w->real, w->buf + done, (int)n,
                                       w->buf_off + (sqlite3_int64)done);
    }
    w->buf_len = 0;
    w->err = rc;
    return rc;
}

static bool wal_reserve(shim_file *w, size_t need)
{
    size_t cap = w->buf_cap == 0 ? WAL_BUF_FIRST : w->buf_cap;
    unsigned char *p;

    if (need <= w->buf_cap) {
        return true;
    }
    while (cap < need) {
        cap *= 2;
    }
    if (cap > WAL_BUF_MAX || (p = sk_realloc(w->buf, cap)) == NULL) {
        return false;
    }
    w->buf = p;
    w->buf_cap = cap;
    return true;
}

/* Before a wal-index header is published: the frames it counts are in the file. */
static void flush_peer_wal(sqlite3_file *f)
{
    shim_file *m = (shim_file *)f;
    if (m->peer != NULL) {
        /* Empty here with synchronous=FULL (the commit's sync flushed); a failure sticks. */
        (void)wal_flush(m->peer);
    }
}

/* The write lock is released: the transaction is over, drop what a rollback left. */
static void end_peer_wal_transaction(sqlite3_file *f)
{
    shim_file *m = (shim_file *)f;
    if (m->peer != NULL) {
        m->peer->buf_len = 0;
        m->peer->err = SQLITE_OK;
    }
}

/* ---------------------------------------------------------------- WAL methods */

static int wal_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off)
{
    shim_file *w = (shim_file *)f;
    size_t n = (size_t)amt;
    int rc;

    if (w->peer == NULL) {
        return w->real->pMethods->xWrite(w->real, data, amt, off);
    }
    if (w->err != SQLITE_OK) {
        return w->err;
    }
    if (w->buf_len > 0 && off == w->buf_off + (sqlite3_int64)w->buf_len &&
        wal_reserve(w, w->buf_len + n)) {
        memcpy(w->buf + w->buf_len, data, n);
        w->buf_len += n;
        return SQLITE_OK;
    }
    if ((rc = wal_flush(w)) != SQLITE_OK) {
        return rc;
    }
    if (!wal_reserve(w, n)) {
        return w->real->pMethods->xWrite(w->real, data, amt, off);
    }
    memcpy(w->buf, data, n);
    w->buf_off = off;
    w->buf_len = n;
    return SQLITE_OK;
}

static int wal_close(sqlite3_file *f)
{
    shim_file *w = (shim_file *)f;
    int rc = wal_flush(w);
    int rc_close;

    pthread_mutex_lock(&registry_mu);
    if (w->peer != NULL) {
        w->peer->peer = NULL;
        w->peer = NULL;
    }
    pthread_mutex_unlock(&registry_mu);
    sk_free(w->buf);
    w->buf = NULL;
    rc_close = w->real->pMethods->xClose(w->real);
    return rc != SQLITE_OK ? rc : rc_close;
}

static int wal_read(sqlite3_file *f, void *out, int amt, sqlite3_int64 off)
{
    shim_file *w = (shim_file *)f;
    int rc = wal_flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xRead(w->real, out, amt, off);
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    shim_file *w = (shim_file *)f;
    int rc = wal_flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xTruncate(w->real, size);
}

static int wal_sync(sqlite3_file *f, int flags)
{
    shim_file *w = (shim_file *)f;
    int rc = wal_flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int wal_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    shim_file *w = (shim_file *)f;
    int rc = wal_flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xFileSize(w->real, size);
}

static int wal_file_control(sqlite3_file *f, int op, void *arg)
{
    shim_file *w = (shim_file *)f;
    int rc = wal_flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xFileControl(w->real, op, arg);
}

static int wal_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
    shim_file *w = (shim_file *)f;
    int rc = wal_flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xFetch(w->real, off, amt, pp);
}

/* ---------------------------------------------------------------- forwarded methods */

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((shim_file *)f)->real;
}

static int fwd_read(sqlite3_file *f, void *out, int amt, sqlite3_int64 off)
{
    return real_of(f)->pMethods->xRead(real_of(f), out, amt, off);
}

static int fwd_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off)
{
    return real_of(f)->pMethods->xWrite(real_of(f), data, amt, off);
}

static int fwd_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return real_of(f)->pMethods->xTruncate(real_of(f), size);
}

static int fwd_sync(sqlite3_file *f, int flags)
{
    return real_of(f)->pMethods->xSync(real_of(f), flags);
}

static int fwd_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return real_of(f)->pMethods->xFileSize(real_of(f), size);
}

static int fwd_lock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xLock(real_of(f), level);
}

static int fwd_unlock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xUnlock(real_of(f), level);
}

static int fwd_check_reserved_lock(sqlite3_file *f, int *out)
{
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

static int fwd_file_control(sqlite3_file *f, int op, void *arg)
{
    return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}

static int fwd_sector_size(sqlite3_file *f)
{
    return real_of(f)->pMethods->xSectorSize(real_of(f));
}

static int fwd_device_characteristics(sqlite3_file *f)
{
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

static int fwd_shm_map(sqlite3_file *f, int page, int page_size, int extend, void volatile **pp)
{
    return real_of(f)->pMethods->xShmMap(real_of(f), page, page_size, extend, pp);
}

static int fwd_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return real_of(f)->pMethods->xShmUnmap(real_of(f), delete_flag);
}

static int fwd_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
    return real_of(f)->pMethods->xFetch(real_of(f), off, amt, pp);
}

static int fwd_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

static void fwd_shm_barrier(sqlite3_file *f)
{
    real_of(f)->pMethods->xShmBarrier(real_of(f));
}

static int fwd_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}

/* ---------------------------------------------------------------- database methods */

/* WAL lock 0 is SQLite's WAL_WRITE_LOCK (wal.c); offset and n count locks. */
static int main_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    if ((flags & SQLITE_SHM_UNLOCK) && (flags & SQLITE_SHM_EXCLUSIVE) && offset == 0 && n >= 1) {
        end_peer_wal_transaction(f);
    }
    return fwd_shm_lock(f, offset, n, flags);
}

static void main_shm_barrier(sqlite3_file *f)
{
    flush_peer_wal(f);
    fwd_shm_barrier(f);
}

static int main_close(sqlite3_file *f)
{
    shim_file *m = (shim_file *)f;

    pthread_mutex_lock(&registry_mu);
    for (shim_file **p = &registry; *p != NULL; p = &(*p)->next_main) {
        if (*p == m) {
            *p = m->next_main;
            break;
        }
    }
    if (m->peer != NULL) {
        /* SQLite closes the WAL first; should it not, the WAL writes through from now on. */
        (void)wal_flush(m->peer);
        m->peer->peer = NULL;
        m->peer = NULL;
    }
    pthread_mutex_unlock(&registry_mu);
    return m->real->pMethods->xClose(m->real);
}

/*
 * SK__SQLITE_FCNTL_RELEASE_WAL_BUFFER: an idle connection gives back its
 * WAL's gathering buffer (it grows to WAL_BUF_MAX with a big commit and
 * would otherwise stay as long as the connection). Gathered frames are
 * never dropped: with frames waiting the buffer stays. registry_mu guards
 * only the peer pointer here (a leaf lock: the store may hold its reader
 * pool's lock around this call).
 */
static int main_file_control(sqlite3_file *f, int op, void *arg)
{
    shim_file *m = (shim_file *)f;

    if (op != SK__SQLITE_FCNTL_RELEASE_WAL_BUFFER) {
        return fwd_file_control(f, op, arg);
    }
    pthread_mutex_lock(&registry_mu);
    shim_file *w = m->peer;
    if (w != NULL && w->buf_len == 0) {
        sk_free(w->buf);
        w->buf = NULL;
        w->buf_cap = 0;
    }
    pthread_mutex_unlock(&registry_mu);
    return SQLITE_OK;
}

static const sqlite3_io_methods main_methods = {
    .iVersion = 3,
    .xClose = main_close,
    .xRead = fwd_read,
    .xWrite = fwd_write,
    .xTruncate = fwd_truncate,
    .xSync = fwd_sync,
    .xFileSize = fwd_file_size,
    .xLock = fwd_lock,
    .xUnlock = fwd_unlock,
    .xCheckReservedLock = fwd_check_reserved_lock,
    .xFileControl = main_file_control,
    .xSectorSize = fwd_sector_size,
    .xDeviceCharacteristics = fwd_device_characteristics,
    .xShmMap = fwd_shm_map,
    .xShmLock = main_shm_lock,
    .xShmBarrier = main_shm_barrier,
    .xShmUnmap = fwd_shm_unmap,
    .xFetch = fwd_fetch,
    .xUnfetch = fwd_unfetch,
};

static const sqlite3_io_methods wal_methods = {
    .iVersion = 3,
    .xClose = wal_close,
    .xRead = wal_read,
    .xWrite = wal_write,
    .xTruncate = wal_truncate,
    .xSync = wal_sync,
    .xFileSize = wal_file_size,
    .xLock = fwd_lock,
    .xUnlock = fwd_unlock,
    .xCheckReservedLock = fwd_check_reserved_lock,
    .xFileControl = wal_file_control,
    .xSectorSize = fwd_sector_size,
    .xDeviceCharacteristics = fwd_device_characteristics,
    .xShmMap = fwd_shm_map,
    .xShmLock = fwd_shm_lock,
    .xShmBarrier = fwd_shm_barrier,
    .xShmUnmap = fwd_shm_unmap,
    .xFetch = wal_fetch,
    .xUnfetch = fwd_unfetch,
};

/* ---------------------------------------------------------------- the VFS */

static int
shim_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out_flags)
{
    sqlite3_vfs *real = real_vfs();
    shim_file *s = (shim_file *)f;
    bool is_main = (flags & SQLITE_OPEN_MAIN_DB) != 0 && name != NULL;
    bool is_wal = (flags & SQLITE_OPEN_WAL) != 0 && name != NULL;
    int rc;

    (void)vfs;
    if (!is_main && !is_wal) {
        return real->xOpen(real, name, f, flags, out_flags); /* f is big enough for it */
    }
    memset(s, 0, SHIM_SIZE);
    s->real = (sqlite3_file *)(void *)((char *)s + SHIM_SIZE);
    rc = real->xOpen(real, name, s->real, flags, out_flags);
    if (rc != SQLITE_OK || s->real->pMethods == NULL || s->real->pMethods->iVersion < 3) {
        if (s->real->pMethods != NULL) {
            s->real->pMethods->xClose(s->real);
        }
        s->base.pMethods = NULL;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    pthread_mutex_lock(&registry_mu);
    if (is_main) {
        s->name = name;
        s->next_main = registry;
        registry = s;
    } else {
        const char *db = sqlite3_filename_database(name);
        for (shim_file *m = registry; m != NULL; m = m->next_main) {
            if (m->name == db && m->peer == NULL) {
                m->peer = s;
                s->peer = m;
                break;
            }
        }
    }
    pthread_mutex_unlock(&registry_mu);
    s->base.pMethods = is_main ? &main_methods : &wal_methods;
    return SQLITE_OK;
}

static int shim_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return real_vfs()->xDelete(real_vfs(), name, sync_dir);
}

static int shim_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return real_vfs()->xAccess(real_vfs(), name, flags, out);
}

static int shim_full_pathname(sqlite3_vfs *vfs, const char *name, int n_out, char *out)
{
    (void)vfs;
    return real_vfs()->xFullPathname(real_vfs(), name, n_out, out);
}

static void *shim_dl_open(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return real_vfs()->xDlOpen(real_vfs(), name);
}

static void shim_dl_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    real_vfs()->xDlError(real_vfs(), n, out);
}

static void (*shim_dl_sym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void)
{
    (void)vfs;
    return real_vfs()->xDlSym(real_vfs(), handle, symbol);
}

static void shim_dl_close(sqlite3_vfs *vfs, void *handle)
{
    (void)vfs;
    real_vfs()->xDlClose(real_vfs(), handle);
}

static int shim_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs()->xRandomness(real_vfs(), n, out);
}

static int shim_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return real_vfs()->xSleep(real_vfs(), us);
}

static int shim_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return real_vfs()->xCurrentTime(real_vfs(), out);
}

static int shim_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs()->xGetLastError(real_vfs(), n, out);
}

static int shim_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return real_vfs()->xCurrentTimeInt64(real_vfs(), out);
}

static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static const char *registered_name;

static void register_vfs(void)
{
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);

    /* Over the unix VFS only: its files have the shared-memory methods the pairing needs. */
    if (real == NULL || real->iVersion < 2 || strncmp(real->zName, "unix", 4) != 0) {
        return;
    }
    shim_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)SHIM_SIZE + real->szOsFile,
        .mxPathname = real->mxPathname,
        .zName = SK_VFS_NAME,
        .pAppData = real,
        .xOpen = shim_open,
        .xDelete = shim_delete,
        .xAccess = shim_access,
        .xFullPathname = shim_full_pathname,
        .xDlOpen = shim_dl_open,
        .xDlError = shim_dl_error,
        .xDlSym = shim_dl_sym,
        .xDlClose = shim_dl_close,
        .xRandomness = shim_randomness,
        .xSleep = shim_sleep,
        .xCurrentTime = shim_current_time,
        .xGetLastError = shim_last_error,
        .xCurrentTimeInt64 = shim_current_time64,
    };
    registered_name = sqlite3_vfs_register(&shim_vfs, 0) == SQLITE_OK ? SK_VFS_NAME : NULL;
}

size_t sk__store_sqlite_vfs_n_paired(void)
{
    size_t n = 0;

    pthread_mutex_lock(&registry_mu);
    for (shim_file *m = registry; m != NULL; m = m->next_main) {
        n += m->peer != NULL;
    }
    pthread_mutex_unlock(&registry_mu);
    return n;
}

size_t sk__store_sqlite_vfs_buffer_bytes(size_t *gathered)
{
    size_t n = 0, waiting = 0;

    pthread_mutex_lock(&registry_mu);
    for (shim_file *m = registry; m != NULL; m = m->next_main) {
        if (m->peer != NULL) {
            n += m->peer->buf_cap;
            waiting += m->peer->buf_len;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    if (gathered != NULL) {
        *gathered = waiting;
    }
    return n;
}

const char *sk__store_sqlite_vfs_register(void)
{
    pthread_once(&register_once, register_vfs);
    return registered_name;
}
