/* spool: the local append-only file that keeps audit rows durable while
 * PostgreSQL cannot take them.
 *
 * One file, <dir>/audit.spool, of records:
 *
 *   u32 big-endian  payload length
 *   u32 big-endian  zlib crc32 of the 4 length bytes and the payload
 *   payload         the row: "<event JSON>\n<transition JSON>" (either
 *                   part may be empty; JSON text holds no raw newline)
 *
 * Records are appended with write(2) and made durable by spool_sync() (one
 * fsync for all the records appended since the last one: the group fsync).
 * At open the file is scanned: a torn or corrupt tail (kill -9 in the middle
 * of a write, a failed fsync) is cut off at the last good record, so what
 * remains is exactly the records that were synced. Replay reads the records
 * in order with spool_next(); spool_clear() empties the file once every
 * record is in PostgreSQL. The file is locked (flock) so that two daemons
 * never share it. All calls are blocking file I/O on a local disk: the
 * caller batches them (see audit.c). */
#ifndef ALERTD_SPOOL_H
#define ALERTD_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool;

/* Opens (creating dir and file) and scans the spool. NULL with err set
 * when it cannot be used; the daemon then runs without one. */
struct spool *spool_open(const char *dir, size_t max_bytes, char *err,
			 size_t errlen) __attribute__((warn_unused_result));
void spool_close(struct spool *s);

/* Appends one record (not yet durable). false: the spool is full
 * (max_bytes) or the write failed; nothing was appended. The records
 * appended since the last spool_sync() form a group: a failed write cuts
 * the file back to its last synced size, which takes the records appended
 * before it in the group too, so every later append of the group is
 * refused as well and the spool_sync() that ends the group returns false:
 * a group with a failed write is lost as a whole. */
bool spool_append(struct spool *s, const char *ev, size_t ev_len,
		  const char *tr, size_t tr_len)
	__attribute__((warn_unused_result));
/* Makes every appended record durable (fdatasync) and ends the group.
 * false: the records appended since the last good sync are cut off (the
 * fsync failed, or a write of the group failed) and must be considered
 * not written. Call it after every group, even one whose appends all
 * failed: it also ends the refusal after a failed write. */
bool spool_sync(struct spool *s) __attribute__((warn_unused_result));

/* The next record not yet read (in file order), split into its event and
 * transition JSON (malloc'd, NULL when absent). false at the end. A record
 * that cannot be read is skipped with an error log. */
bool spool_next(struct spool *s, char **ev, char **tr);
/* Every synced record has been read. */
bool spool_all_read(const struct spool *s);
/* Empties the file (every record is in PostgreSQL). */
bool spool_clear(struct spool *s) __attribute__((warn_unused_result));
/* Rereads from the start (after a failed replay). */
void spool_rewind(struct spool *s);

void spool_set_max_bytes(struct spool *s, size_t max_bytes);
size_t spool_rows(const struct spool *s);      /* records in the file */
size_t spool_bytes(const struct spool *s);     /* size of the file */
size_t spool_unread(const struct spool *s);    /* records not read yet */
/* Open, the last write/sync worked and there is room for a small row. */
bool spool_usable(const struct spool *s);

#endif
