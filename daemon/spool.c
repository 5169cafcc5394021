/* spool: length-prefixed, crc32-checked records in one append-only file. */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <zlib.h>

#include "log.h"

#define SPOOL_FILE "audit.spool"
#define SPOOL_HEADER 8
/* A row is a few KiB at most (body limit 1 MiB); a larger length is a
 * corrupt header. */
#define SPOOL_MAX_RECORD (4u * 1024 * 1024)
/* Headroom spool_usable() asks for. */
#define SPOOL_ROOM 65536

enum spool_state {
	/* Appends and syncs work. */
	SPOOL_OK = 0,
	/* A write or sync failed: the file was cut back to its last synced
	 * size; the next append tries again. */
	SPOOL_FAILING,
};

struct spool {
	int fd;
	char *path;
	enum spool_state state;
	size_t max_bytes;
	uint64_t size;         /* bytes written (synced or not) */
	uint64_t synced;       /* bytes known durable */
	size_t rows, synced_rows;
	uint64_t read_off;     /* replay position */
	size_t read_rows;
	/* A write failed since the last spool_sync(): the cut back took the
	 * records appended before it in this group too, so every later
	 * append of the group is refused and the sync that ends the group
	 * fails. */
	bool group_lost;
};

static void spool_set_state(struct spool *s, enum spool_state st)
{
	if (s->state == st)
		return;
	if (st == SPOOL_FAILING)
		log_error("spool=%s: failing; rows are refused until a write "
			  "works again", s->path);
	else
		log_info("spool=%s: writable again", s->path);
	s->state = st;
}

static void spool_put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t spool_get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint32_t spool_crc(const unsigned char *len4, const char *a,
			  size_t alen, const char *b, size_t blen)
{
	uLong c = crc32(0L, Z_NULL, 0);

	c = crc32(c, len4, 4);
	c = crc32(c, (const Bytef *)a, (uInt)alen);
	c = crc32(c, (const Bytef *)"\n", 1);
	c = crc32(c, (const Bytef *)b, (uInt)blen);
	return (uint32_t)c;
}

/* Reads exactly len bytes at off; false at a short read or an error. */
static bool spool_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got,
				  (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	return true;
}

/* The record at off: its payload (malloc'd, NUL-terminated) and length,
 * or NULL when it is torn or corrupt. */
static char *spool_read_record(struct spool *s, uint64_t off, uint64_t end,
			       size_t *len)
{
	unsigned char head[SPOOL_HEADER];
	uint32_t n;
	char *p;

	if (end - off < SPOOL_HEADER || !spool_pread(s->fd, head, 8, off))
		return NULL;
	n = spool_get_u32(head);
	if (n == 0 || n > SPOOL_MAX_RECORD || end - off - SPOOL_HEADER < n)
		return NULL;
	if (!(p = malloc((size_t)n + 1)))
		return NULL;
	if (!spool_pread(s->fd, p, n, off + SPOOL_HEADER)) {
		free(p);
		return NULL;
	}
	p[n] = '\0';
	if ((uint32_t)crc32(crc32(crc32(0L, Z_NULL, 0), head, 4),
			    (const Bytef *)p, n) != spool_get_u32(head + 4)) {
		free(p);
		return NULL;
	}
	*len = n;
	return p;
}

/* Counts the good records; cuts a bad tail off. */
static bool spool_scan(struct spool *s, char *err, size_t errlen)
{
	struct stat st;
	uint64_t off = 0, end;
	size_t len;
	char *p;

	if (fstat(s->fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
		return false;
	}
	end = (uint64_t)st.st_size;
	while (off < end && (p = spool_read_record(s, off, end, &len))) {
		free(p);
		off += SPOOL_HEADER + len;
		s->rows++;
	}
	if (off < end) {
		log_warn("spool=%s: %llu bytes of a torn or corrupt tail after "
			 "%zu good records cut off", s->path,
			 (unsigned long long)(end - off), s->rows);
		if (ftruncate(s->fd, (off_t)off) != 0 || fdatasync(s->fd) != 0) {
			snprintf(err, errlen, "%s: cannot cut the torn tail: %s",
				 s->path, strerror(errno));
			return false;
		}
	}
	s->size = s->synced = off;
	s->synced_rows = s->rows;
	return true;
}

struct spool *spool_open(const char *dir, size_t max_bytes, char *err,
			 size_t errlen)
{
	struct spool *s = calloc(1, sizeof(*s));
	int dfd = -1;

	if (!s || asprintf(&s->path, "%s/%s", dir, SPOOL_FILE) < 0) {
		snprintf(err, errlen, "out of memory");
		free(s);
		return NULL;
	}
	s->fd = -1;
	s->max_bytes = max_bytes;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: cannot create: %s", dir,
			 strerror(errno));
		goto fail;
	}
	s->fd = open(s->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (s->fd < 0) {
		snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
		goto fail;
	}
	if (flock(s->fd, LOCK_EX | LOCK_NB) != 0) {
		snprintf(err, errlen, "%s: locked by another process (%s)",
			 s->path, strerror(errno));
		goto fail;
	}
	/* The file's directory entry must be durable too. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		snprintf(err, errlen, "%s: cannot sync the directory: %s", dir,
			 strerror(errno));
		goto fail;
	}
	close(dfd);
	dfd = -1;
	if (!spool_scan(s, err, errlen))
		goto fail;
	log_info("spool=%s: open, %zu rows (%llu bytes) to replay", s->path,
		 s->rows, (unsigned long long)s->size);
	return s;
fail:
	if (dfd >= 0)
		close(dfd);
	spool_close(s);
	return NULL;
}

void spool_close(struct spool *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	free(s->path);
	free(s);
}

/* Cuts the file back to its last synced size after a failure. */
static void spool_cut_back(struct spool *s)
{
	spool_set_state(s, SPOOL_FAILING);
	if (ftruncate(s->fd, (off_t)s->synced) != 0)
		log_error("spool=%s: cannot cut back to %llu bytes: %s",
			  s->path, (unsigned long long)s->synced,
			  strerror(errno));
	s->size = s->synced;
	s->rows = s->synced_rows;
	if (s->read_off > s->size) {
		s->read_off = 0;
		s->read_rows = 0;
	}
}

bool spool_append(struct spool *s, const char *ev, size_t ev_len,
		  const char *tr, size_t tr_len)
{
	unsigned char head[SPOOL_HEADER];
	size_t n = ev_len + 1 + tr_len;
	struct iovec iov[4];
	ssize_t w;

	if (s->group_lost || n > SPOOL_MAX_RECORD ||
	    s->size + SPOOL_HEADER + n > s->max_bytes)
		return false;
	spool_put_u32(head, (uint32_t)n);
	spool_put_u32(head + 4, spool_crc(head, ev, ev_len, tr, tr_len));
	iov[0] = (struct iovec){head, sizeof(head)};
	iov[1] = (struct iovec){(void *)ev, ev_len};
	iov[2] = (struct iovec){(void *)"\n", 1};
	iov[3] = (struct iovec){(void *)tr, tr_len};
	do
		w = writev(s->fd, iov, 4);
	while (w < 0 && errno == EINTR);
	if (w != (ssize_t)(SPOOL_HEADER + n)) {
		log_error("spool=%s: write failed: %s", s->path,
			  w < 0 ? strerror(errno) : "short write");
		spool_cut_back(s);
		s->group_lost = true;
		return false;
	}
	s->size += SPOOL_HEADER + n;
	s->rows++;
	return true;
}

bool spool_sync(struct spool *s)
{
	if (s->group_lost) {
		/* Cut back already: nothing of the group is in the file. */
		s->group_lost = false;
		return false;
	}
	if (s->synced == s->size)
		return true;
	if (fdatasync(s->fd) != 0) {
		log_error("spool=%s: fdatasync failed: %s", s->path,
			  strerror(errno));
		spool_cut_back(s);
		return false;
	}
	s->synced = s->size;
	s->synced_rows = s->rows;
	spool_set_state(s, SPOOL_OK);
	return true;
}

bool spool_next(struct spool *s, char **ev, char **tr)
{
	size_t len;
	char *p, *nl;

	*ev = *tr = NULL;
	while (s->read_off < s->synced) {
		p = spool_read_record(s, s->read_off, s->synced, &len);
		if (!p) {
			/* Checked at open and written by us since: only a
			 * disk error or memory shortage gets here. */
			log_error("spool=%s: record at %llu unreadable; replay "
				  "stops here until the next start", s->path,
				  (unsigned long long)s->read_off);
			return false;
		}
		s->read_off += SPOOL_HEADER + len;
		s->read_rows++;
		nl = strchr(p, '\n');
		if (!nl) {
			free(p);
			continue;
		}
		*nl = '\0';
		bool has_ev = nl > p, has_tr = nl[1] != '\0';

		*ev = has_ev ? strdup(p) : NULL;
		*tr = has_tr ? strdup(nl + 1) : NULL;
		if ((has_ev && !*ev) || (has_tr && !*tr)) {
			free(p);
			free(*ev);
			free(*tr);
			*ev = *tr = NULL;
			s->read_off -= SPOOL_HEADER + len;
			s->read_rows--;
			return false;
		}
		free(p);
		return true;
	}
	return false;
}

bool spool_all_read(const struct spool *s)
{
	return s->read_off >= s->synced;
}

bool spool_clear(struct spool *s)
{
	if (s->size != s->synced)
		return false;
	if (ftruncate(s->fd, 0) != 0 || fdatasync(s->fd) != 0) {
		log_error("spool=%s: cannot empty: %s", s->path,
			  strerror(errno));
		return false;
	}
	log_info("spool=%s: replayed %zu rows into PostgreSQL; emptied",
		 s->path, s->rows);
	s->size = s->synced = 0;
	s->rows = s->synced_rows = 0;
	s->read_off = 0;
	s->read_rows = 0;
	return true;
}

void spool_rewind(struct spool *s)
{
	s->read_off = 0;
	s->read_rows = 0;
}

void spool_set_max_bytes(struct spool *s, size_t max_bytes)
{
	s->max_bytes = max_bytes;
}

size_t spool_rows(const struct spool *s)
{
	return s->rows;
}

size_t spool_bytes(const struct spool *s)
{
	return (size_t)s->size;
}

size_t spool_unread(const struct spool *s)
{
	return s->synced_rows - s->read_rows;
}

bool spool_usable(const struct spool *s)
{
	return s && s->state == SPOOL_OK &&
	       s->size + SPOOL_ROOM <= s->max_bytes;
}
