/*
 * util.h - small helpers every module uses: a monotonic clock, a growable
 * string vector, a string pool, a growable byte buffer, file reading and
 * atomic writing.
 *
 * Ownership: an sr_strv owns its strings (sr_strv_push copies); an
 * sr_strpool owns every string it returned; an sr_buf owns its bytes.
 * None is thread safe; each belongs to one thread.
 */
#ifndef SR_UTIL_H
#define SR_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Seconds on the monotonic clock. */
double sr_now(void);
/* Seconds since the Unix epoch (wall clock), for reports. */
double sr_wall(void);

struct sr_strv {
	char **v; /* NULL-terminated when n > 0 */
	size_t n;
	size_t cap;
};

void sr_strv_init(struct sr_strv *sv);
int sr_strv_push(struct sr_strv *sv, const char *s); /* copies s */
int sr_strv_pushn(struct sr_strv *sv, const char *s, size_t len);
int sr_strv_push_all(struct sr_strv *sv, const char *const *list);
void sr_strv_free(struct sr_strv *sv);
bool sr_strv_contains(const struct sr_strv *sv, const char *s);

/*
 * A pool of strings freed all at once: copies laid end to end in blocks
 * of SR_STRPOOL_BLOCK bytes (a longer string gets a block of its own).
 * For the many short strings of a large suite: a path of 31 characters
 * costs 32 bytes here, 48 from malloc. Strings cannot be freed one by one.
 */
#define SR_STRPOOL_BLOCK 65536
struct sr_strblk;
struct sr_strpool {
	struct sr_strblk *blk; /* the newest block; it links the older ones */
};

void sr_strpool_init(struct sr_strpool *p);
/* A copy of s, NUL-terminated; NULL when out of memory. */
char *sr_strpool_add(struct sr_strpool *p, const char *s);
void sr_strpool_free(struct sr_strpool *p);

struct sr_buf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

void sr_buf_init(struct sr_buf *b);
int sr_buf_append(struct sr_buf *b, const void *p, size_t n);
int sr_buf_printf(struct sr_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sr_buf_free(struct sr_buf *b);

/*
 * Make room for element n of a growable array: *vp holds *cap elements of
 * `size` bytes. When n == *cap the array doubles (from `first`). On
 * failure the array is unchanged and SR_ENOMEM returned.
 */
int sr_grow(void *vp, size_t *cap, size_t n, size_t size, size_t first);

/* Read a whole file (at most max bytes, else SR_ETOOBIG). *out is NUL
 * terminated and owned by the caller. */
int sr_read_file(const char *path, size_t max, char **out, size_t *len);
/* Read at most the last max bytes of a file. */
int sr_read_tail(const char *path, size_t max, char **out, size_t *len);
/* Write a file atomically: temp file in the same directory, fsync,
 * rename. mode is applied to the new file. */
int sr_write_atomic(const char *path, const void *p, size_t n, int mode);
/* mkdir -p */
int sr_mkdirs(const char *path, int mode);
/* rm -rf, refusing "" and "/". */
int sr_rmtree(const char *path);

/* Hex encoding: out must have room for 2n+1 bytes. */
void sr_hex(const uint8_t *in, size_t n, char *out);
/* Random bytes from libsodium (sodium_init() is called by sr_init()). */
void sr_random(void *p, size_t n);
/* Call once at program start: libsodium, logging defaults. */
int sr_init(const char *progname);

/* Wait-status helpers. Signal name without "SIG" prefix (e.g. "SEGV"). */
const char *sr_signame(int sig);

#endif /* SR_UTIL_H */
