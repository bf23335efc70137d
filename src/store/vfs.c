/*
 * vfs.c: page checksums and a fault seam, as a shim over SQLite's "unix"
 * VFS (see vfs.h for what each does and why).
 *
 * Every file SQLite opens gets a vfile: our methods in front, the unix
 * VFS's own file right behind it in the same allocation. Only the main
 * database file carries checksums: its pages are written there by
 * checkpoints, backups and vacuums, always whole and page-aligned, so
 * "a write of one page at a page boundary" is exactly when to sign, and
 * "a read of one page" exactly when to check. Pages in the WAL are left
 * alone: SQLite's frame checksums cover them, and rewriting bytes there
 * would break those.
 *
 * With memory-mapped I/O SQLite reads pages through xFetch, not xRead;
 * they are checked there too, so mmap stays on. A mapped page is not kept
 * in SQLite's page cache: it is fetched again every time a statement
 * visits it (a list of 100 documents visits some 300), and checking each
 * of those was 42% of a list query's CPU. So a connection remembers, page
 * by page, when it last checked one: a page is checked again once the
 * database file has been written since (any page of any database file:
 * `writes` below) or a second has passed. That is what a connection
 * reading through xRead gets from its page cache, with external changes
 * to the file found within a second besides.
 */
#include "vfs.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../util/log.h"
#include "../util/util.h"

/* When each page was last checked: (writes << 32 | second), 0 never; in
 * chunks of STAMP_CHUNK pages, made as pages are fetched. */
#define STAMP_CHUNK 1024
typedef struct stamps {
    uint64_t **chunk;
    uint32_t nchunks;
} stamps;

typedef struct vfile {
    sqlite3_file base;
    sqlite3_file *real; /* the unix VFS's file, right behind this struct */
    const char *name;   /* SQLite keeps it valid until xClose */
    bool main_db;
    bool cksum; /* pages of this file carry checksums */
    uint32_t page_size;
    stamps checked; /* pages fetched through the mapping (one thread at a time) */
    /* A WAL's writes gathered (see v_write), and where they go. */
    bool wal;
    unsigned char *gather;
    size_t glen;
    sqlite3_int64 goff;
} vfile;

/* SQLite writes a WAL frame as two pwrite()s, header and page, and a
 * commit as all its frames in a row: gathered, they are one pwrite() a
 * commit (up to this many bytes; the unix VFS refuses one write past
 * 0x1ffff bytes). They are written before the WAL is synced, read,
 * truncated, measured or closed, and before a write elsewhere in it. */
#define GATHER_MAX (120 * 1024)

/* Pages written to database files, ever (by any connection). */
static _Atomic uint64_t writes;

static sqlite3_vfs *root;              /* SQLite's own default VFS */
static sqlite3_vfs shim;               /* ours, in front of it */
static sqlite3_io_methods methods;     /* for every file ours opens */
static const volatile char *faults;    /* LIVEDB_FAULTS mapped, or NULL */
static _Atomic uint64_t failures;
static _Thread_local uint64_t sync_failures; /* this thread's failed fsyncs */

uint64_t vfs_thread_sync_failures(void) { return sync_failures; }

uint64_t vfs_checksum_failures(void) { return atomic_load(&failures); }

static bool fault(int at, char c) { return faults && faults[at] == c; }

static void map_faults(void);
static pthread_once_t faults_once = PTHREAD_ONCE_INIT;

/* Also for stores that never open SQLite (PostgreSQL's write seam). */
bool vfs_fault(int at, char c)
{
    pthread_once(&faults_once, map_faults);
    return fault(at, c);
}

/* ------------------------------------------------------------------ checksum */

/* Two multiply-add lanes over 64-bit words (one step is a bijection, so a
 * change in one word always reaches the result), seeded with the page
 * number so that a page written to another place does not verify, and
 * never 0 for a zeroed page. */
uint64_t vfs_page_checksum(const unsigned char *page, int size, uint32_t pgno)
{
    const uint64_t k1 = 0x9E3779B97F4A7C15ull, k2 = 0xC2B2AE3D27D4EB4Full;
    uint64_t a = k1 ^ pgno, b = k2 + pgno;
    int words = (size - VFS_RESERVE) / 8;
    int i = 0;
    for (; i + 1 < words; i += 2) {
        uint64_t w0, w1;
        memcpy(&w0, page + 8 * i, 8);
        memcpy(&w1, page + 8 * i + 8, 8);
        a = (a + w0) * k2;
        b = (b + w1) * k1;
    }
    if (i < words) {
        uint64_t w;
        memcpy(&w, page + 8 * i, 8);
        a = (a + w) * k2;
    }
    uint64_t h = a ^ (b << 31 | b >> 33);
    h ^= h >> 29;
    h *= k1;
    h ^= h >> 32;
    return h;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Page 1 starts with the database header: learn the page size and whether
 * pages keep our 8 reserved bytes. */
static void read_header(vfile *f, const unsigned char *h)
{
    if (memcmp(h, "SQLite format 3", 16) != 0)
        return;
    uint32_t ps = (uint32_t)h[16] << 8 | h[17];
    if (ps == 1)
        ps = 65536;
    f->page_size = ps;
    f->cksum = h[20] == VFS_RESERVE;
}

static bool is_page(const vfile *f, int amt, sqlite3_int64 off)
{
    return f->cksum && f->page_size && (uint32_t)amt == f->page_size &&
           off % f->page_size == 0;
}

static int verify(vfile *f, const unsigned char *page, sqlite3_int64 off)
{
    uint32_t pgno = (uint32_t)(off / f->page_size) + 1;
    uint64_t want = vfs_page_checksum(page, (int)f->page_size, pgno);
    if (get_le64(page + f->page_size - VFS_RESERVE) == want)
        return SQLITE_OK;
    atomic_fetch_add(&failures, 1);
    log_msg(LOG_ERROR, "page %u of %s fails its checksum: the file was changed or damaged",
            pgno, f->name ? f->name : "the database");
    return SQLITE_IOERR_DATA;
}

/* ------------------------------------------------------------------ file methods */

#define REAL(f) (((vfile *)(f))->real)

static int g_flush(vfile *f)
{
    if (!f->glen)
        return SQLITE_OK;
    int rc = f->real->pMethods->xWrite(f->real, f->gather, (int)f->glen, f->goff);
    f->glen = 0;
    return rc;
}

static int v_close(sqlite3_file *file)
{
    vfile *f = (vfile *)file;
    int frc = g_flush(f);
    free(f->gather);
    f->gather = NULL;
    for (uint32_t i = 0; i < f->checked.nchunks; i++)
        free(f->checked.chunk[i]);
    free(f->checked.chunk);
    f->checked = (stamps){0};
    int rc = f->real->pMethods->xClose(f->real);
    f->base.pMethods = NULL;
    return frc != SQLITE_OK ? frc : rc;
}

static int v_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
    vfile *f = (vfile *)file;
    if (fault(2, 'R'))
        return SQLITE_IOERR_READ;
    int rc = g_flush(f);
    if (rc != SQLITE_OK)
        return rc;
    rc = f->real->pMethods->xRead(f->real, buf, amt, off);
    if (rc != SQLITE_OK || !f->main_db)
        return rc;
    if (off == 0 && amt >= 100)
        read_header(f, buf);
    if (is_page(f, amt, off))
        rc = verify(f, buf, off);
    return rc;
}

static int v_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
    vfile *f = (vfile *)file;
    if (fault(0, 'F'))
        return SQLITE_FULL;
    if (f->wal) {
        if (f->glen && off == f->goff + (sqlite3_int64)f->glen && f->glen + (size_t)amt <= GATHER_MAX) {
            memcpy(f->gather + f->glen, buf, (size_t)amt);
            f->glen += (size_t)amt;
            return SQLITE_OK;
        }
        int rc = g_flush(f);
        if (rc != SQLITE_OK || (size_t)amt > GATHER_MAX)
            return rc != SQLITE_OK ? rc : f->real->pMethods->xWrite(f->real, buf, amt, off);
        if (!f->gather)
            f->gather = xmalloc(GATHER_MAX);
        memcpy(f->gather, buf, (size_t)amt);
        f->glen = (size_t)amt;
        f->goff = off;
        return SQLITE_OK;
    }
    if (f->main_db) {
        if (off == 0 && amt >= 100)
            read_header(f, buf);
        /* The last 8 bytes of a page are reserved for us: SQLite never
         * reads or writes them, so signing in its buffer is safe. */
        atomic_fetch_add_explicit(&writes, 1, memory_order_release);
        if (is_page(f, amt, off)) {
            unsigned char *page = (unsigned char *)buf;
            put_le64(page + amt - VFS_RESERVE,
                     vfs_page_checksum(page, amt, (uint32_t)(off / f->page_size) + 1));
        }
    }
    return f->real->pMethods->xWrite(f->real, buf, amt, off);
}

static int v_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    if (((vfile *)file)->main_db)
        atomic_fetch_add_explicit(&writes, 1, memory_order_release);
    int rc = g_flush((vfile *)file);
    if (rc != SQLITE_OK)
        return rc;
    return REAL(file)->pMethods->xTruncate(REAL(file), size);
}

static int v_sync(sqlite3_file *file, int flags)
{
    int rc = g_flush((vfile *)file); /* a failed write, not a failed fsync */
    if (rc != SQLITE_OK)
        return rc;
    rc = fault(1, 'S') ? SQLITE_IOERR_FSYNC : REAL(file)->pMethods->xSync(REAL(file), flags);
    if (rc != SQLITE_OK)
        sync_failures++;
    return rc;
}

static int v_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    int rc = g_flush((vfile *)file);
    if (rc != SQLITE_OK)
        return rc;
    return REAL(file)->pMethods->xFileSize(REAL(file), size);
}

static int v_lock(sqlite3_file *file, int lock)
{
    return REAL(file)->pMethods->xLock(REAL(file), lock);
}

static int v_unlock(sqlite3_file *file, int lock)
{
    return REAL(file)->pMethods->xUnlock(REAL(file), lock);
}

static int v_check_reserved(sqlite3_file *file, int *out)
{
    return REAL(file)->pMethods->xCheckReservedLock(REAL(file), out);
}

static int v_file_control(sqlite3_file *file, int op, void *arg)
{
    int rc = g_flush((vfile *)file);
    if (rc != SQLITE_OK)
        return rc;
    return REAL(file)->pMethods->xFileControl(REAL(file), op, arg);
}

static int v_sector_size(sqlite3_file *file)
{
    return REAL(file)->pMethods->xSectorSize(REAL(file));
}

static int v_device_characteristics(sqlite3_file *file)
{
    return REAL(file)->pMethods->xDeviceCharacteristics(REAL(file));
}

static int v_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **pp)
{
    return REAL(file)->pMethods->xShmMap(REAL(file), pg, pgsz, extend, pp);
}

static int v_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    return REAL(file)->pMethods->xShmLock(REAL(file), offset, n, flags);
}

static void v_shm_barrier(sqlite3_file *file) { REAL(file)->pMethods->xShmBarrier(REAL(file)); }

static int v_shm_unmap(sqlite3_file *file, int delete_flag)
{
    return REAL(file)->pMethods->xShmUnmap(REAL(file), delete_flag);
}

/* This moment's stamp: the database files' writes so far and the second. */
static uint64_t stamp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t w = atomic_load_explicit(&writes, memory_order_acquire);
    return w << 32 | ((uint64_t)ts.tv_sec & 0xffffffffu);
}

/* Where pgno's stamp is kept (made on first use). */
static uint64_t *stamp_of(stamps *st, uint32_t pgno)
{
    uint32_t c = pgno / STAMP_CHUNK;
    if (c >= st->nchunks) {
        uint32_t n = c + 1 > 2 * st->nchunks ? c + 1 : 2 * st->nchunks;
        st->chunk = xrealloc(st->chunk, n * sizeof *st->chunk);
        memset(st->chunk + st->nchunks, 0, (n - st->nchunks) * sizeof *st->chunk);
        st->nchunks = n;
    }
    if (!st->chunk[c])
        st->chunk[c] = xcalloc(STAMP_CHUNK, sizeof **st->chunk);
    return &st->chunk[c][pgno % STAMP_CHUNK];
}

static int v_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **pp)
{
    vfile *f = (vfile *)file;
    *pp = NULL;
    if (fault(2, 'R'))
        return SQLITE_OK; /* no mapping: SQLite falls back to xRead, which fails */
    int rc = f->real->pMethods->xFetch(f->real, off, amt, pp);
    if (rc != SQLITE_OK || !*pp || !f->main_db || !is_page(f, amt, off))
        return rc;
    uint64_t now = stamp_now();
    uint64_t *st = stamp_of(&f->checked, (uint32_t)(off / f->page_size));
    if (*st == now)
        return SQLITE_OK; /* checked since the file last changed, this second */
    rc = verify(f, *pp, off);
    if (rc != SQLITE_OK) {
        *st = 0;
        f->real->pMethods->xUnfetch(f->real, off, *pp);
        *pp = NULL;
    } else {
        *st = now;
    }
    return rc;
}

static int v_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
    return REAL(file)->pMethods->xUnfetch(REAL(file), off, p);
}

/* ------------------------------------------------------------------ VFS methods */

static int v_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                  int *out_flags)
{
    vfile *f = (vfile *)file;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    int rc = root->xOpen(root, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        f->base.pMethods = NULL;
        return rc;
    }
    f->name = name;
    f->main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
    f->wal = (flags & SQLITE_OPEN_WAL) != 0;
    f->base.pMethods = &methods;
    return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    return root->xDelete(root, name, sync_dir);
}

static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    return root->xAccess(root, name, flags, out);
}

static int v_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    return root->xFullPathname(root, name, n, out);
}

static void *v_dlopen(sqlite3_vfs *vfs, const char *path) { return root->xDlOpen(root, path); }

static void v_dlerror(sqlite3_vfs *vfs, int n, char *msg) { root->xDlError(root, n, msg); }

static void (*v_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    return root->xDlSym(root, h, sym);
}

static void v_dlclose(sqlite3_vfs *vfs, void *h) { root->xDlClose(root, h); }

static int v_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    return root->xRandomness(root, n, out);
}

static int v_sleep(sqlite3_vfs *vfs, int us) { return root->xSleep(root, us); }

static int v_current_time(sqlite3_vfs *vfs, double *out) { return root->xCurrentTime(root, out); }

static int v_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    return root->xGetLastError(root, n, out);
}

static int v_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    return root->xCurrentTimeInt64(root, out);
}

/* ------------------------------------------------------------------ setup */

static void map_faults(void)
{
    const char *path = getenv("LIVEDB_FAULTS");
    if (!path || !*path)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0) {
        log_msg(LOG_ERROR, "LIVEDB_FAULTS=%s cannot be opened; no faults injected", path);
        if (fd >= 0)
            close(fd);
        return;
    }
    void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return;
    faults = p;
    log_msg(LOG_WARN, "fault injection on: storage faults are read from %s (tests only)", path);
}

static void setup(void)
{
    /* Before SQLite starts (the first call below starts it): no memory
     * statistics, which take a global mutex around every allocation of
     * every connection (4.5% of a list query's CPU with 4 readers); livedb
     * reads none of them. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    root = sqlite3_vfs_find(NULL);
    methods = (sqlite3_io_methods){
        .iVersion = 3, .xClose = v_close, .xRead = v_read, .xWrite = v_write,
        .xTruncate = v_truncate, .xSync = v_sync, .xFileSize = v_file_size,
        .xLock = v_lock, .xUnlock = v_unlock, .xCheckReservedLock = v_check_reserved,
        .xFileControl = v_file_control, .xSectorSize = v_sector_size,
        .xDeviceCharacteristics = v_device_characteristics, .xShmMap = v_shm_map,
        .xShmLock = v_shm_lock, .xShmBarrier = v_shm_barrier, .xShmUnmap = v_shm_unmap,
        .xFetch = v_fetch, .xUnfetch = v_unfetch,
    };
    shim = (sqlite3_vfs){
        .iVersion = 2, .szOsFile = (int)sizeof(vfile) + root->szOsFile,
        .mxPathname = root->mxPathname, .zName = VFS_NAME, .xOpen = v_open,
        .xDelete = v_delete, .xAccess = v_access, .xFullPathname = v_full_pathname,
        .xDlOpen = v_dlopen, .xDlError = v_dlerror, .xDlSym = v_dlsym,
        .xDlClose = v_dlclose, .xRandomness = v_randomness, .xSleep = v_sleep,
        .xCurrentTime = v_current_time, .xGetLastError = v_last_error,
        .xCurrentTimeInt64 = v_current_time64,
    };
    pthread_once(&faults_once, map_faults);
    sqlite3_vfs_register(&shim, 1);
}

void vfs_register(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, setup);
}

int vfs_reserve_pages(sqlite3 *db)
{
    int n = VFS_RESERVE;
    return sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, &n);
}

bool vfs_has_checksums(sqlite3 *db)
{
    int n = -1; /* negative: ask, change nothing */
    return sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, &n) == SQLITE_OK &&
           n == VFS_RESERVE;
}
