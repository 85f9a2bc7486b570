/*
 * util.c - clock, string vectors, string pools, byte buffers, file
 * helpers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

double
sr_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double) ts.tv_sec + (double) ts.tv_nsec / 1e9);
}

double
sr_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((double) ts.tv_sec + (double) ts.tv_nsec / 1e9);
}

int
sr_grow(void *vp, size_t *cap, size_t n, size_t size, size_t first)
{
	void **p = vp;
	size_t ncap;
	void *np;

	if (n < *cap)
		return (0);
	ncap = *cap ? *cap * 2 : first;
	if (ncap <= n)
		ncap = n + 1;
	if ((np = realloc(*p, ncap * size)) == NULL)
		return (SR_ENOMEM);
	*p = np;
	*cap = ncap;
	return (0);
}

void
sr_strv_init(struct sr_strv *sv)
{
	sv->v = NULL;
	sv->n = 0;
	sv->cap = 0;
}

int
sr_strv_pushn(struct sr_strv *sv, const char *s, size_t len)
{
	char *copy;

	if (sv->n + 2 > sv->cap) {
		size_t cap = sv->cap ? sv->cap * 2 : 8;
		char **nv = realloc(sv->v, cap * sizeof(*nv));

		if (nv == NULL)
			return (SR_ENOMEM);
		sv->v = nv;
		sv->cap = cap;
	}
	if ((copy = malloc(len + 1)) == NULL)
		return (SR_ENOMEM);
	memcpy(copy, s, len);
	copy[len] = '\0';
	sv->v[sv->n++] = copy;
	sv->v[sv->n] = NULL;
	return (0);
}

int
sr_strv_push(struct sr_strv *sv, const char *s)
{
	return (sr_strv_pushn(sv, s, strlen(s)));
}

/* Push every string of a NULL-terminated list. */
int
sr_strv_push_all(struct sr_strv *sv, const char *const *list)
{
	int rv = 0;

	for (; *list != NULL && rv == 0; list++)
		rv = sr_strv_push(sv, *list);
	return (rv);
}

void
sr_strv_free(struct sr_strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sr_strv_init(sv);
}

struct sr_strblk {
	struct sr_strblk *prev;
	size_t used;
	size_t cap;
	char data[];
};

void
sr_strpool_init(struct sr_strpool *p)
{
	p->blk = NULL;
}

/* A new block of at least need bytes, linked in front of the pool's
 * current one unless it is taken whole (the current one stays in use). */
static struct sr_strblk *
strpool_grow(struct sr_strpool *p, size_t need)
{
	size_t cap = need > SR_STRPOOL_BLOCK ? need : SR_STRPOOL_BLOCK;
	struct sr_strblk *b = malloc(sizeof(*b) + cap);

	if (b == NULL)
		return (NULL);
	b->used = 0;
	b->cap = cap;
	if (cap == need && p->blk != NULL) { /* full at once: keep p->blk */
		b->prev = p->blk->prev;
		p->blk->prev = b;
	} else {
		b->prev = p->blk;
		p->blk = b;
	}
	return (b);
}

char *
sr_strpool_add(struct sr_strpool *p, const char *s)
{
	size_t len = strlen(s) + 1;
	struct sr_strblk *b = p->blk;
	char *out;

	if (b == NULL || b->cap - b->used < len)
		if ((b = strpool_grow(p, len)) == NULL)
			return (NULL);
	out = b->data + b->used;
	memcpy(out, s, len);
	b->used += len;
	return (out);
}

void
sr_strpool_free(struct sr_strpool *p)
{
	while (p->blk != NULL) {
		struct sr_strblk *prev = p->blk->prev;

		free(p->blk);
		p->blk = prev;
	}
}

bool
sr_strv_contains(const struct sr_strv *sv, const char *s)
{
	for (size_t i = 0; i < sv->n; i++)
		if (strcmp(sv->v[i], s) == 0)
			return (true);
	return (false);
}

void
sr_buf_init(struct sr_buf *b)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

static int
buf_reserve(struct sr_buf *b, size_t extra)
{
	size_t cap;
	uint8_t *np;

	if (b->len + extra + 1 <= b->cap)
		return (0);
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	if ((np = realloc(b->p, cap)) == NULL)
		return (SR_ENOMEM);
	b->p = np;
	b->cap = cap;
	return (0);
}

int
sr_buf_append(struct sr_buf *b, const void *p, size_t n)
{
	int rv;

	if ((rv = buf_reserve(b, n)) != 0)
		return (rv);
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return (0);
}

int
sr_buf_printf(struct sr_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	int rv;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return (SR_EINVAL);
	if ((rv = buf_reserve(b, (size_t) n)) != 0)
		return (rv);
	va_start(ap, fmt);
	vsnprintf((char *) b->p + b->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t) n;
	return (0);
}

void
sr_buf_free(struct sr_buf *b)
{
	free(b->p);
	sr_buf_init(b);
}

static int
read_fd(int fd, size_t max, char **out, size_t *len)
{
	struct sr_buf b;
	char chunk[65536];
	ssize_t n;

	sr_buf_init(&b);
	if (buf_reserve(&b, 0) != 0)
		return (SR_ENOMEM);
	b.p[0] = '\0';
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || b.len + (size_t) n > max) {
			sr_buf_free(&b);
			return (n < 0 ? SR_EIO : SR_ETOOBIG);
		}
		if (sr_buf_append(&b, chunk, (size_t) n) != 0) {
			sr_buf_free(&b);
			return (SR_ENOMEM);
		}
	}
	*out = (char *) b.p;
	if (len != NULL)
		*len = b.len;
	return (0);
}

int
sr_read_file(const char *path, size_t max, char **out, size_t *len)
{
	int fd;
	int rv;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return (errno == ENOENT ? SR_ENOENT : SR_EIO);
	rv = read_fd(fd, max, out, len);
	close(fd);
	return (rv);
}

int
sr_read_tail(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	int fd;
	int rv;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return (errno == ENOENT ? SR_ENOENT : SR_EIO);
	if (fstat(fd, &st) == 0 && (size_t) st.st_size > max)
		(void) lseek(fd, st.st_size - (off_t) max, SEEK_SET);
	rv = read_fd(fd, max, out, len);
	close(fd);
	return (rv);
}

static int
write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return (SR_EIO);
		c += w;
		n -= (size_t) w;
	}
	return (0);
}

int
sr_write_atomic(const char *path, const void *p, size_t n, int mode)
{
	char tmp[4096];
	int fd;
	int rv;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid()) >=
	    (int) sizeof(tmp))
		return (SR_ETOOBIG);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return (SR_EIO);
	if ((rv = write_all(fd, p, n)) != 0 || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return (rv ? rv : SR_EIO);
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return (SR_EIO);
	}
	return (0);
}

int
sr_mkdirs(const char *path, int mode)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return (SR_EINVAL);
	memcpy(buf, path, len + 1);
	for (char *s = buf + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(buf, (mode_t) mode) != 0 && errno != EEXIST)
			return (SR_EIO);
		*s = '/';
	}
	if (mkdir(buf, (mode_t) mode) != 0 && errno != EEXIST)
		return (SR_EIO);
	return (0);
}

int
sr_rmtree(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	char child[4096];

	if (path[0] == '\0' || strcmp(path, "/") == 0)
		return (SR_EINVAL);
	if (lstat(path, &st) != 0)
		return (errno == ENOENT ? 0 : SR_EIO);
	if (!S_ISDIR(st.st_mode))
		return (unlink(path) == 0 ? 0 : SR_EIO);
	if ((d = opendir(path)) == NULL)
		return (SR_EIO);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (snprintf(child, sizeof(child), "%s/%s", path, de->d_name) <
		    (int) sizeof(child))
			(void) sr_rmtree(child);
	}
	closedir(d);
	return (rmdir(path) == 0 ? 0 : SR_EIO);
}

void
sr_hex(const uint8_t *in, size_t n, char *out)
{
	sodium_bin2hex(out, 2 * n + 1, in, n);
}

void
sr_random(void *p, size_t n)
{
	randombytes_buf(p, n);
}

int
sr_init(const char *progname)
{
	sr_log_init(progname);
	if (sodium_init() < 0) {
		sr_error("libsodium failed to initialise");
		return (SR_EIO);
	}
	return (0);
}

const char *
sr_signame(int sig)
{
	const char *abbrev = sigabbrev_np(sig);

	return (abbrev != NULL ? abbrev : "UNKNOWN");
}
