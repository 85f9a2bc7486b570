/*
 * crypto_keys.c - trust material: cluster keys, node keys, authorized keys,
 * and `shardrun keygen`. The handshake and sealed frames are in crypto.c;
 * both implement sr/crypto.h.
 *
 * The sr_trust_* loaders overwrite *t whole, and only on success, so t must
 * be new (zeroed) or cleared with sr_trust_clear. Secrets read from files go
 * through stack buffers that are wiped, never through the growable sr_buf
 * (whose reallocations would leave copies behind).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "sr/crypto.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

#define KEYFILE_MAX  1024
#define AUTHFILE_MAX (1024 * 1024)

_Static_assert(crypto_kx_PUBLICKEYBYTES == SR_KEY_BYTES, "x25519 size");
_Static_assert(crypto_kx_SECRETKEYBYTES == SR_KEY_BYTES, "x25519 size");

static bool
is_space(char c)
{
	return (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
	        c == '\f');
}

static void
trim(const char **p, size_t *len)
{
	while (*len > 0 && is_space((*p)[0])) {
		(*p)++;
		(*len)--;
	}
	while (*len > 0 && is_space((*p)[*len - 1]))
		(*len)--;
}

/* Exactly 64 hex digits -> 32 bytes; key is written only on success. */
static int
hex_key(const char *s, size_t len, uint8_t key[SR_KEY_BYTES])
{
	uint8_t tmp[SR_KEY_BYTES];
	const char *end;
	size_t n;
	int rv = SR_EKEY;

	if (len == 2 * SR_KEY_BYTES &&
	    sodium_hex2bin(tmp, sizeof(tmp), s, len, NULL, &n, &end) == 0 &&
	    n == sizeof(tmp) && end == s + len) {
		memcpy(key, tmp, sizeof(tmp));
		rv = 0;
	}
	sodium_memzero(tmp, sizeof(tmp));
	return (rv);
}

static int
check_private(int fd, const char *path)
{
	struct stat st;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		sr_error("key file %s is not a regular file", path);
		return (SR_EKEY);
	}
	if ((st.st_mode & 077) != 0) {
		sr_error("key file %s is accessible by group or others "
		         "(mode %03o) but holds a secret; run: chmod 600 %s",
		         path, (unsigned) (st.st_mode & 0777), path);
		return (SR_EKEY);
	}
	return (0);
}

/* Read a small secret file (owner-only) into buf; the caller wipes buf. */
static int
read_private(const char *path, char *buf, size_t cap, size_t *lenp)
{
	size_t len = 0;
	ssize_t n = -1;
	int fd;
	int rv;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		sr_error("cannot open key file %s: %s", path, strerror(errno));
		return (SR_EKEY);
	}
	if ((rv = check_private(fd, path)) != 0) {
		close(fd);
		return (rv);
	}
	while (len < cap && (n = read(fd, buf + len, cap - len)) != 0) {
		if (n < 0 && errno != EINTR)
			break;
		len += n > 0 ? (size_t) n : 0;
	}
	rv = (len < cap && n == 0) ? 0 : SR_EKEY;
	close(fd);
	if (rv != 0)
		sr_error("cannot read key file %s: %s", path,
		         len >= cap ? "too large" : strerror(errno));
	else
		*lenp = len;
	return (rv);
}

static void
set_cluster(struct sr_trust *t, const uint8_t key[SR_KEY_BYTES])
{
	memset(t, 0, sizeof(*t));
	t->mode = SR_TRUST_CLUSTER;
	memcpy(t->cluster_key, key, SR_KEY_BYTES);
}

int
sr_trust_cluster_file(struct sr_trust *t, const char *path)
{
	char buf[KEYFILE_MAX];
	uint8_t key[SR_KEY_BYTES];
	const char *p = buf;
	size_t len;
	int rv;

	if ((rv = read_private(path, buf, sizeof(buf), &len)) != 0)
		return (rv);
	if (len == SR_KEY_BYTES) {
		memcpy(key, buf, SR_KEY_BYTES); /* raw bytes */
	} else {
		trim(&p, &len);
		if ((rv = hex_key(p, len, key)) != 0)
			sr_error("cluster key file %s: expected 64 hex "
			         "characters or 32 raw bytes",
			         path);
	}
	sodium_memzero(buf, sizeof(buf));
	if (rv == 0)
		set_cluster(t, key);
	sodium_memzero(key, sizeof(key));
	return (rv);
}

int
sr_trust_cluster_hex(struct sr_trust *t, const char *hex)
{
	uint8_t key[SR_KEY_BYTES];
	size_t len;

	if (hex == NULL)
		return (SR_EKEY);
	len = strlen(hex);
	trim(&hex, &len);
	if (hex_key(hex, len, key) != 0) {
		sr_error("cluster key: expected 64 hex characters");
		return (SR_EKEY);
	}
	set_cluster(t, key);
	sodium_memzero(key, sizeof(key));
	return (0);
}

void
sr_trust_cluster_random(struct sr_trust *t)
{
	uint8_t key[SR_KEY_BYTES];

	sr_random(key, sizeof(key));
	set_cluster(t, key);
	sodium_memzero(key, sizeof(key));
}

/*
 * One line of an authorized-keys file (or a node.pub written as one):
 * "shardrun-x25519 HEX [comment]". *blank is set for blank and '#' lines.
 */
static int
parse_line(const char *p, size_t len, uint8_t pk[SR_KEY_BYTES], bool *blank)
{
	size_t lab = strlen(SR_PUBKEY_LABEL);
	size_t k = 0;

	trim(&p, &len);
	*blank = (len == 0 || p[0] == '#');
	if (*blank)
		return (0);
	if (len <= lab || memcmp(p, SR_PUBKEY_LABEL, lab) != 0 ||
	    !is_space(p[lab]))
		return (SR_EKEY);
	p += lab;
	len -= lab;
	trim(&p, &len);
	while (k < len && !is_space(p[k]))
		k++;
	return (hex_key(p, k, pk));
}

static int
push_key(uint8_t (**keys)[SR_KEY_BYTES], size_t *n, size_t *cap,
         const uint8_t pk[SR_KEY_BYTES])
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		uint8_t(*nk)[SR_KEY_BYTES] = realloc(*keys, ncap * sizeof(*nk));

		if (nk == NULL)
			return (SR_ENOMEM);
		*keys = nk;
		*cap = ncap;
	}
	memcpy((*keys)[(*n)++], pk, SR_KEY_BYTES);
	return (0);
}

static int
parse_authorized(const char *path, const char *buf, size_t len,
                 uint8_t (**keysp)[SR_KEY_BYTES], size_t *np)
{
	uint8_t(*keys)[SR_KEY_BYTES] = NULL;
	size_t n = 0, cap = 0, lineno = 0;
	const char *p = buf, *end = buf + len;
	uint8_t pk[SR_KEY_BYTES];
	bool blank;
	int rv = 0;

	while (rv == 0 && p < end) {
		const char *nl = memchr(p, '\n', (size_t) (end - p));
		size_t ll = nl != NULL ? (size_t) (nl - p) : (size_t) (end - p);

		lineno++;
		if ((rv = parse_line(p, ll, pk, &blank)) != 0)
			sr_error("%s:%zu: malformed line, expected "
			         "\"%s HEX [comment]\" with 64 hex digits",
			         path, lineno, SR_PUBKEY_LABEL);
		else if (!blank)
			rv = push_key(&keys, &n, &cap, pk);
		p += ll + 1;
	}
	if (rv != 0) {
		free(keys);
		return (rv);
	}
	if (n == 0)
		sr_warn("%s lists no keys: every peer will be refused", path);
	*keysp = keys;
	*np = n;
	return (0);
}

static int
load_authorized(const char *path, uint8_t (**keys)[SR_KEY_BYTES], size_t *n)
{
	char *buf;
	size_t len;
	int rv;

	if (path == NULL)
		return (SR_EINVAL);
	if ((rv = sr_read_file(path, AUTHFILE_MAX, &buf, &len)) != 0) {
		sr_error("cannot read authorized keys %s: %s", path,
		         rv == SR_ETOOBIG ? "too large" : strerror(errno));
		return (SR_EKEY);
	}
	rv = parse_authorized(path, buf, len, keys, n);
	free(buf);
	return (rv);
}

/* node.pub is optional, but when present it must match node.key: operators
 * hand node.pub out, and a stale one makes for baffling refusals. */
static int
check_node_pub(const char *path, const uint8_t pk[SR_KEY_BYTES])
{
	uint8_t got[SR_KEY_BYTES];
	const char *p;
	char *buf;
	size_t len;
	bool blank;
	int rv;

	if ((rv = sr_read_file(path, KEYFILE_MAX, &buf, &len)) == SR_ENOENT)
		return (0);
	if (rv != 0) {
		sr_error("cannot read %s", path);
		return (SR_EKEY);
	}
	p = buf;
	trim(&p, &len);
	if (hex_key(p, len, got) != 0 &&
	    (parse_line(p, len, got, &blank) != 0 || blank)) {
		sr_error("%s: expected 64 hex digits", path);
		rv = SR_EKEY;
	} else if (sodium_memcmp(got, pk, SR_KEY_BYTES) != 0) {
		sr_error("%s does not match node.key beside it; regenerate "
		         "the pair with 'shardrun keygen --node'",
		         path);
		rv = SR_EKEY;
	}
	free(buf);
	return (rv);
}

static int
load_node_key(const char *dir, uint8_t sk[SR_KEY_BYTES],
              uint8_t pk[SR_KEY_BYTES])
{
	char path[4096];
	char buf[KEYFILE_MAX];
	const char *p = buf;
	size_t len;
	int rv;

	if (snprintf(path, sizeof(path), "%s/node.key", dir) >=
	    (int) sizeof(path))
		return (SR_EINVAL);
	if ((rv = read_private(path, buf, sizeof(buf), &len)) != 0)
		return (rv);
	trim(&p, &len);
	rv = hex_key(p, len, sk);
	sodium_memzero(buf, sizeof(buf));
	if (rv != 0) {
		sr_error("%s: expected 64 hex digits", path);
		return (rv);
	}
	crypto_scalarmult_base(pk, sk);
	snprintf(path, sizeof(path), "%s/node.pub", dir);
	if ((rv = check_node_pub(path, pk)) != 0)
		sodium_memzero(sk, SR_KEY_BYTES);
	return (rv);
}

int
sr_trust_nodes(struct sr_trust *t, const char *keydir,
               const char *authorized_file)
{
	uint8_t sk[SR_KEY_BYTES], pk[SR_KEY_BYTES];
	uint8_t(*keys)[SR_KEY_BYTES] = NULL;
	size_t n = 0;
	int rv;

	if (keydir == NULL)
		return (SR_EINVAL);
	if ((rv = load_node_key(keydir, sk, pk)) != 0)
		return (rv);
	if ((rv = load_authorized(authorized_file, &keys, &n)) != 0) {
		sodium_memzero(sk, sizeof(sk));
		return (rv);
	}
	memset(t, 0, sizeof(*t));
	t->mode = SR_TRUST_NODES;
	memcpy(t->static_sk, sk, SR_KEY_BYTES);
	memcpy(t->static_pk, pk, SR_KEY_BYTES);
	t->authorized = keys;
	t->nauthorized = n;
	sodium_memzero(sk, sizeof(sk));
	return (0);
}

void
sr_trust_clear(struct sr_trust *t)
{
	free(t->authorized);
	sodium_memzero(t, sizeof(*t));
}

bool
sr_trust_is_authorized(const struct sr_trust *t, const uint8_t *pk)
{
	if (pk == NULL)
		return (false);
	for (size_t i = 0; i < t->nauthorized; i++)
		if (sodium_memcmp(t->authorized[i], pk, SR_KEY_BYTES) == 0)
			return (true);
	return (false);
}

/* ---- keygen ---- */

/* Create path (must not exist) with exactly mode and contents p. */
static int
write_excl(const char *path, const void *p, size_t n, mode_t mode)
{
	const char *c = p;
	int fd, err;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	          mode);
	if (fd < 0)
		return (SR_EIO);
	if (fchmod(fd, mode) != 0) /* the umask may have dropped bits */
		goto fail;
	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			goto fail;
		c += w;
		n -= (size_t) w;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) == 0)
		return (0);
	fd = -1;
fail:
	err = errno;
	if (fd >= 0)
		close(fd);
	unlink(path);
	errno = err;
	return (SR_EIO);
}

int
sr_keygen_cluster(const char *path)
{
	uint8_t key[SR_KEY_BYTES];
	char hex[2 * SR_KEY_BYTES + 2];
	int rv;

	sr_random(key, sizeof(key));
	sr_hex(key, sizeof(key), hex);
	hex[2 * SR_KEY_BYTES] = '\n';
	rv = write_excl(path, hex, 2 * SR_KEY_BYTES + 1, 0600);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(hex, sizeof(hex));
	return (rv);
}

static void
hostname(char *host, size_t sz)
{
	if (gethostname(host, sz) != 0 || host[0] == '\0')
		snprintf(host, sz, "unknown");
	host[sz - 1] = '\0';
	for (char *c = host; *c != '\0'; c++)
		if (is_space(*c) || (unsigned char) *c < 0x20)
			*c = '-';
}

/* DIR/node.key (exclusive: never replace a node's identity), then
 * DIR/node.pub; undone if the second write fails. */
static int
write_node(const char *dir, const uint8_t sk[SR_KEY_BYTES], const char *pkhex)
{
	char kpath[4096], ppath[4096];
	char hex[2 * SR_KEY_BYTES + 2];
	int rv;

	if (snprintf(kpath, sizeof(kpath), "%s/node.key", dir) >=
	        (int) sizeof(kpath) ||
	    snprintf(ppath, sizeof(ppath), "%s/node.pub", dir) >=
	        (int) sizeof(ppath))
		return (SR_EINVAL);
	if ((rv = sr_mkdirs(dir, 0700)) != 0)
		return (rv);
	sr_hex(sk, SR_KEY_BYTES, hex);
	hex[2 * SR_KEY_BYTES] = '\n';
	rv = write_excl(kpath, hex, 2 * SR_KEY_BYTES + 1, 0600);
	sodium_memzero(hex, sizeof(hex));
	if (rv != 0)
		return (rv);
	snprintf(hex, sizeof(hex), "%s\n", pkhex);
	if ((rv = sr_write_atomic(ppath, hex, strlen(hex), 0644)) != 0) {
		unlink(kpath);
		return (rv);
	}
	return (0);
}

int
sr_keygen_node(const char *dir, char *line, size_t linesz)
{
	uint8_t pk[SR_KEY_BYTES], sk[SR_KEY_BYTES];
	char pkhex[2 * SR_KEY_BYTES + 1];
	char host[256];
	char ln[512];
	int rv;

	hostname(host, sizeof(host));
	crypto_kx_keypair(pk, sk);
	sr_hex(pk, sizeof(pk), pkhex);
	snprintf(ln, sizeof(ln), "%s %s %s", SR_PUBKEY_LABEL, pkhex, host);
	if (strlen(ln) >= linesz)
		rv = SR_ETOOBIG;
	else
		rv = write_node(dir, sk, pkhex);
	sodium_memzero(sk, sizeof(sk));
	if (rv == 0)
		memcpy(line, ln, strlen(ln) + 1);
	return (rv);
}
