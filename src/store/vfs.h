/*
 * vfs.h: the SQLite VFS every livedb database is opened through, a thin
 * shim over SQLite's own "unix" VFS that adds two things:
 *
 *   Page checksums. A database made by livedb keeps 8 reserved bytes at
 *   the end of every page (vfs_reserve_pages before its first page is
 *   written). The shim writes a checksum of the page, salted with its page
 *   number, into them whenever a page goes to the database file (by a
 *   checkpoint, a backup, a vacuum), and checks it whenever a page comes
 *   back from the file. A flipped bit, a torn or zeroed page, a page
 *   written to the wrong place: the read fails with SQLITE_IOERR_DATA
 *   instead of serving wrong data. (The WAL has SQLite's own frame
 *   checksums; pages there are checksummed when they are checkpointed.)
 *
 *   A fault seam for tests. With LIVEDB_FAULTS=FILE in the environment
 *   the shim maps FILE and, on each call, looks at its first bytes:
 *     byte 0 'F'  writes fail as if the disk were full (SQLITE_FULL)
 *     byte 1 'S'  fsync fails (SQLITE_IOERR_FSYNC)
 *     byte 2 'R'  reads fail (SQLITE_IOERR_READ)
 *     byte 3 'W'  a server function's second write fails (vfs_fault; the
 *                 writer's way of undoing a call that fails after a write)
 *   so that a test can fill the disk, break fsync or reads, and give them
 *   back, while the server runs. Without the variable it costs nothing.
 */
#ifndef LIVEDB_VFS_H
#define LIVEDB_VFS_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#define VFS_NAME "livedb"
#define VFS_RESERVE 8 /* reserved bytes per page that hold the checksum */

/* Registers the shim as SQLite's default VFS (once; thread-safe). */
void vfs_register(void);

/* Asks a connection to a database that has no pages yet to reserve room
 * for checksums. Must run before the first table is made. */
int vfs_reserve_pages(sqlite3 *db);

/* Whether the connection's main database keeps checksums (8 reserved
 * bytes per page). */
bool vfs_has_checksums(sqlite3 *db);

/* The checksum of one page (exposed for the unit tests). */
uint64_t vfs_page_checksum(const unsigned char *page, int size, uint32_t pgno);

/* Pages that failed their checksum since the process started. */
uint64_t vfs_checksum_failures(void);

/* How many fsyncs failed on the calling thread (the writer watches its
 * own: after one, nothing it wrote since the last good fsync can be
 * trusted to be on disk). */
uint64_t vfs_thread_sync_failures(void);

/* Whether byte at of the LIVEDB_FAULTS file is c (false without it). */
bool vfs_fault(int at, char c);

#endif
