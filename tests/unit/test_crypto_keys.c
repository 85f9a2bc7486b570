/*
 * test_crypto_keys.c - trust loading and keygen: cluster key files and
 * strings, node key directories, authorized-keys files, file modes.
 *
 * Every test works in its own names under one temporary directory, removed
 * at the end. Messages a test needs to see in the log are captured by
 * pointing stderr at a file for the duration of one call.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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
#include "sr/util.h"

static char tmpdir[256];
static int saved_stderr = -1;

static const char *
tpath(const char *name)
{
	static char buf[4][512];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", tmpdir, name);
	return (p);
}

static void
put_file(const char *name, const void *p, size_t n, mode_t mode)
{
	int fd = open(tpath(name), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t) n);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void
put_str(const char *name, const char *s, mode_t mode)
{
	put_file(name, s, strlen(s), mode);
}

static char *
get_file(const char *path)
{
	char *buf;

	assert_int_equal(sr_read_file(path, 1 << 20, &buf, NULL), 0);
	return (buf);
}

static unsigned
file_mode(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return ((unsigned) (st.st_mode & 0777));
}

static void
capture_begin(void)
{
	int fd = open(tpath("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	saved_stderr = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

/* The captured text; the caller frees it. */
static char *
capture_end(void)
{
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	return (get_file(tpath("stderr.txt")));
}

static void
assert_logged(const char *needle)
{
	char *log = capture_end();

	if (strstr(log, needle) == NULL)
		fail_msg("expected \"%s\" in the log, got: %s", needle, log);
	free(log);
}

static void
node(const char *dir, char *line)
{
	assert_int_equal(sr_keygen_node(tpath(dir), line, 256), 0);
}

static void
load_node(struct sr_trust *t, const char *dir, const char *auth)
{
	assert_int_equal(sr_trust_nodes(t, tpath(dir), tpath(auth)), 0);
	assert_int_equal(t->mode, SR_TRUST_NODES);
}

static void
test_keygen_cluster(void **state)
{
	struct sr_trust t = {0};
	uint8_t key[32];
	char *text, *again;
	mode_t old;

	(void) state;
	old = umask(0277); /* the file is 0600 whatever the umask */
	assert_int_equal(sr_keygen_cluster(tpath("cluster.key")), 0);
	umask(old);
	assert_int_equal(file_mode(tpath("cluster.key")), 0600);
	text = get_file(tpath("cluster.key"));
	assert_int_equal(strlen(text), 65);
	assert_int_equal(text[64], '\n');
	assert_int_equal(strspn(text, "0123456789abcdef"), 64);
	assert_int_equal(sodium_hex2bin(key, 32, text, 64, NULL, NULL, NULL),
	                 0);
	errno = 0;
	assert_int_equal(sr_keygen_cluster(tpath("cluster.key")), SR_EIO);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(sr_trust_cluster_file(&t, tpath("cluster.key")), 0);
	assert_int_equal(t.mode, SR_TRUST_CLUSTER);
	assert_memory_equal(t.cluster_key, key, 32);
	sr_trust_clear(&t);
	again = get_file(tpath("cluster.key")); /* not replaced */
	assert_string_equal(again, text);
	free(again);
	free(text);
}

static void
expect_cluster_file(const char *name, int err, const char *logged)
{
	struct sr_trust t = {.mode = 42};

	capture_begin();
	assert_int_equal(sr_trust_cluster_file(&t, tpath(name)), err);
	if (logged != NULL)
		assert_logged(logged);
	else
		free(capture_end());
	assert_int_equal(t.mode, err ? 42 : SR_TRUST_CLUSTER);
	sr_trust_clear(&t);
}

static void
test_cluster_file_formats(void **state)
{
	const char *hex = "00112233445566778899aabbccddeeff"
	                  "00112233445566778899AABBCCDDEEFF";
	struct sr_trust t = {0};
	uint8_t raw[32];
	char buf[200];

	(void) state;
	snprintf(buf, sizeof(buf), "  \t%s \n\n", hex);
	put_str("c1.key", buf, 0600);
	assert_int_equal(sr_trust_cluster_file(&t, tpath("c1.key")), 0);
	assert_int_equal(t.cluster_key[1], 0x11);
	assert_int_equal(t.cluster_key[31], 0xff);
	sr_random(raw, sizeof(raw));
	put_file("c2.key", raw, sizeof(raw), 0400);
	assert_int_equal(sr_trust_cluster_file(&t, tpath("c2.key")), 0);
	assert_memory_equal(t.cluster_key, raw, 32);
	sr_trust_clear(&t);

	put_str("c3.key", buf, 0644);
	expect_cluster_file("c3.key", SR_EKEY, "chmod 600");
	put_str("c3.key", buf, 0640);
	expect_cluster_file("c3.key", SR_EKEY, "chmod 600");
	put_str("c3.key", buf, 0602);
	expect_cluster_file("c3.key", SR_EKEY, "group or others");
	put_str("c4.key", "abcd\n", 0600);
	expect_cluster_file("c4.key", SR_EKEY, "64 hex");
	snprintf(buf, sizeof(buf), "%.63s\n", hex);
	put_str("c5.key", buf, 0600);
	expect_cluster_file("c5.key", SR_EKEY, NULL);
	snprintf(buf, sizeof(buf), "%.63sg\n", hex);
	put_str("c6.key", buf, 0600);
	expect_cluster_file("c6.key", SR_EKEY, NULL);
	snprintf(buf, sizeof(buf), "%s0\n", hex);
	put_str("c7.key", buf, 0600);
	expect_cluster_file("c7.key", SR_EKEY, NULL);
	put_str("c8.key", "", 0600);
	expect_cluster_file("c8.key", SR_EKEY, NULL);
	expect_cluster_file("missing.key", SR_EKEY, "missing.key");
	expect_cluster_file("", SR_EKEY, NULL); /* the directory */
}

static void
test_cluster_hex(void **state)
{
	const char *hex = "ffeeddccbbaa99887766554433221100"
	                  "ffeeddccbbaa99887766554433221100";
	struct sr_trust t = {.mode = 42};
	char buf[100];

	(void) state;
	capture_begin();
	assert_int_equal(sr_trust_cluster_hex(&t, NULL), SR_EKEY);
	assert_int_equal(sr_trust_cluster_hex(&t, "ffee"), SR_EKEY);
	snprintf(buf, sizeof(buf), "%.62szz", hex);
	assert_int_equal(sr_trust_cluster_hex(&t, buf), SR_EKEY);
	free(capture_end());
	assert_int_equal(t.mode, 42);
	snprintf(buf, sizeof(buf), " %s\n", hex);
	assert_int_equal(sr_trust_cluster_hex(&t, buf), 0);
	assert_int_equal(t.mode, SR_TRUST_CLUSTER);
	assert_int_equal(t.cluster_key[0], 0xff);
	assert_int_equal(t.cluster_key[31], 0x00);
	sr_trust_clear(&t);
	assert_int_equal(t.mode, SR_TRUST_NONE);
}

static void
test_keygen_node(void **state)
{
	struct sr_trust t = {0};
	char line[256], small[20], host[256] = "";
	char *key, *pub;
	uint8_t sk[32], pk[32], derived[32];

	(void) state;
	node("kg/deep/n1", line);
	assert_int_equal(file_mode(tpath("kg/deep/n1")), 0700);
	assert_int_equal(file_mode(tpath("kg/deep/n1/node.key")), 0600);
	key = get_file(tpath("kg/deep/n1/node.key"));
	pub = get_file(tpath("kg/deep/n1/node.pub"));
	assert_int_equal(strlen(key), 65);
	assert_int_equal(strspn(key, "0123456789abcdef"), 64);
	assert_int_equal(strlen(pub), 65);
	assert_int_equal(pub[64], '\n');
	assert_int_equal(strncmp(line, "shardrun-x25519 ", 16), 0);
	assert_memory_equal(line + 16, pub, 64);
	assert_int_equal(line[80], ' ');
	gethostname(host, sizeof(host) - 1);
	assert_string_equal(line + 81, host);
	sodium_hex2bin(sk, 32, key, 64, NULL, NULL, NULL);
	sodium_hex2bin(pk, 32, pub, 64, NULL, NULL, NULL);
	crypto_scalarmult_base(derived, sk);
	assert_memory_equal(derived, pk, 32);
	put_str("kg.auth", line, 0644);
	load_node(&t, "kg/deep/n1", "kg.auth");
	assert_memory_equal(t.static_pk, pk, 32);
	assert_memory_equal(t.static_sk, sk, 32);
	assert_true(sr_trust_is_authorized(&t, pk));
	sr_trust_clear(&t);

	errno = 0;
	assert_int_equal(sr_keygen_node(tpath("kg/deep/n1"), line, 256),
	                 SR_EIO);
	assert_int_equal(errno, EEXIST);
	free(pub);
	pub = get_file(tpath("kg/deep/n1/node.key"));
	assert_string_equal(pub, key); /* not replaced */
	assert_int_equal(sr_keygen_node(tpath("kg/n2"), small, sizeof(small)),
	                 SR_ETOOBIG);
	assert_int_equal(access(tpath("kg/n2/node.key"), F_OK), -1);
	free(key);
	free(pub);
}

static void
test_node_key_files(void **state)
{
	struct sr_trust t = {.mode = 42};
	char line[256], other[256];

	(void) state;
	node("nk1", line);
	node("nk2", other);
	put_str("nk.auth", "", 0644);
	chmod(tpath("nk1/node.key"), 0644);
	capture_begin();
	assert_int_equal(sr_trust_nodes(&t, tpath("nk1"), tpath("nk.auth")),
	                 SR_EKEY);
	assert_logged("chmod 600");
	chmod(tpath("nk1/node.key"), 0600);
	/* a node.pub that is not node.key's */
	snprintf(other, sizeof(other), "%.64s\n", line + 16);
	other[0] = other[0] == 'a' ? 'b' : 'a';
	put_str("nk1/node.pub", other, 0644);
	capture_begin();
	assert_int_equal(sr_trust_nodes(&t, tpath("nk1"), tpath("nk.auth")),
	                 SR_EKEY);
	assert_logged("does not match");
	assert_int_equal(t.mode, 42);
	/* node.pub as an authorized-keys line, or absent: both fine */
	put_str("nk1/node.pub", line, 0644);
	load_node(&t, "nk1", "nk.auth");
	assert_int_equal(t.nauthorized, 0);
	sr_trust_clear(&t);
	unlink(tpath("nk1/node.pub"));
	load_node(&t, "nk1", "nk.auth");
	sr_trust_clear(&t);
	assert_int_equal(sr_trust_nodes(&t, tpath("nk1"), NULL), SR_EINVAL);
	capture_begin();
	assert_int_equal(sr_trust_nodes(&t, tpath("nk1"), tpath("no.auth")),
	                 SR_EKEY);
	assert_logged("no.auth");
	capture_begin();
	assert_int_equal(sr_trust_nodes(&t, tpath("nk9"), tpath("nk.auth")),
	                 SR_EKEY);
	assert_logged("nk9/node.key");
}

/* Comments, blank lines, CRLF, tabs, trailing comments, no final newline,
 * and more keys than the list's first allocation. */
static void
test_authorized_keys(void **state)
{
	enum { NKEYS = 40 };
	struct sr_trust t = {0};
	uint8_t pk[NKEYS][32], stranger[32];
	char hex[NKEYS][65], text[8192], line[256];
	size_t n;

	(void) state;
	node("ak", line);
	for (int i = 0; i < NKEYS; i++) {
		sr_random(pk[i], 32);
		sr_hex(pk[i], 32, hex[i]);
	}
	n = (size_t) snprintf(text, sizeof(text),
	                      "# authorized agents\n"
	                      "\n"
	                      "   \n"
	                      "shardrun-x25519 %s host-a\n"
	                      "\tshardrun-x25519   %s\r\n"
	                      "shardrun-x25519 %s a comment   with # spaces\n"
	                      "  # indented comment\n",
	                      hex[0], hex[1], hex[2]);
	for (int i = 3; i < NKEYS; i++)
		n += (size_t) snprintf(text + n, sizeof(text) - n,
		                       "shardrun-x25519 %s%s", hex[i],
		                       i + 1 < NKEYS ? "\n" : "");
	put_str("ak.auth", text, 0644);
	load_node(&t, "ak", "ak.auth");
	assert_int_equal(t.nauthorized, NKEYS);
	for (int i = 0; i < NKEYS; i++)
		assert_true(sr_trust_is_authorized(&t, pk[i]));
	sr_random(stranger, 32);
	assert_false(sr_trust_is_authorized(&t, stranger));
	assert_false(sr_trust_is_authorized(&t, NULL));
	sr_trust_clear(&t);
	assert_null(t.authorized);
	assert_int_equal(t.nauthorized + (size_t) t.mode, 0);
	assert_false(sr_trust_is_authorized(&t, pk[0]));
}

/* Two fine lines, then fmt (formatted with hex); the error names line. */
static void
expect_bad_auth(const char *fmt, const char *hex, const char *line)
{
	struct sr_trust t = {.mode = 42};
	char text[512], where[32];
	size_t n;

	n = (size_t) snprintf(text, sizeof(text), "# ok\n\n");
	snprintf(text + n, sizeof(text) - n, fmt, hex);
	put_str("bad.auth", text, 0644);
	snprintf(where, sizeof(where), "bad.auth:%s:", line);
	capture_begin();
	assert_int_equal(sr_trust_nodes(&t, tpath("ak"), tpath("bad.auth")),
	                 SR_EKEY);
	assert_logged(where);
	assert_int_equal(t.mode, 42);
}

static void
test_authorized_bad_lines(void **state)
{
	char hex[65];
	uint8_t pk[32];

	(void) state;
	sr_random(pk, 32);
	sr_hex(pk, 32, hex);
	expect_bad_auth("ssh-ed25519 %s host\n", hex, "3");
	expect_bad_auth("shardrun-x25519\n%s", "", "3");
	expect_bad_auth("shardrun-x25519 %.62s\n", hex, "3");
	expect_bad_auth("shardrun-x25519 %.63sg host\n", hex, "3");
	expect_bad_auth("shardrun-x25519%s\n", hex, "3");
	expect_bad_auth("shardrun-x25519 %sff\n", hex, "3");
	expect_bad_auth("%s\n", hex, "3");
	expect_bad_auth("shardrun-x25519 %s\n# fine\nshardrun-x25519 xx\n", hex,
	                "5");
}

static int
setup(void **state)
{
	(void) state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sr-test-crypto-XXXXXX");
	return (mkdtemp(tmpdir) == NULL ? -1 : 0);
}

static int
teardown(void **state)
{
	(void) state;
	return (sr_rmtree(tmpdir) == 0 ? 0 : -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keygen_cluster),
	    cmocka_unit_test(test_cluster_file_formats),
	    cmocka_unit_test(test_cluster_hex),
	    cmocka_unit_test(test_keygen_node),
	    cmocka_unit_test(test_node_key_files),
	    cmocka_unit_test(test_authorized_keys),
	    cmocka_unit_test(test_authorized_bad_lines),
	};

	if (sr_init("test") != 0)
		return (1);
	umask(022);
	return (cmocka_run_group_tests(tests, setup, teardown));
}
