/*
 * test_crypto_seal.c - sealed frames: layout, tampering, the replay window.
 *
 * Sessions here are made by hand (struct sr_session is plain data) so the
 * tests exercise sr_seal/sr_open alone; test_crypto.c shows that the keys a
 * handshake derives work with them.
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

/* Two ends of one session, with random per-direction keys. */
static void
pair(struct sr_session *a, struct sr_session *b)
{
	memset(a, 0, sizeof(*a));
	memset(b, 0, sizeof(*b));
	sr_random(a->tx_key, SR_KEY_BYTES);
	sr_random(b->tx_key, SR_KEY_BYTES);
	memcpy(a->rx_key, b->tx_key, SR_KEY_BYTES);
	memcpy(b->rx_key, a->tx_key, SR_KEY_BYTES);
}

static void
open_ok(struct sr_session *s, const uint8_t *f, size_t n)
{
	uint8_t *pt;
	size_t len;

	assert_int_equal(sr_open(s, f, n, &pt, &len), 0);
	free(pt);
}

static int
open_rv(struct sr_session *s, const uint8_t *f, size_t n)
{
	uint8_t *pt = NULL;
	size_t len;
	int rv = sr_open(s, f, n, &pt, &len);

	free(pt);
	return (rv);
}

static void
test_seal_open(void **state)
{
	struct sr_session sa, sc;
	uint8_t nonce[24] = {0};
	uint8_t *f, *pt, big[100000], plain[64];
	unsigned long long plen;
	size_t nf, n;

	(void) state;
	pair(&sa, &sc);
	assert_int_equal(sr_seal(&sa, (const uint8_t *) "hello", 5, &f, &nf),
	                 0);
	assert_int_equal(nf, 9 + 5 + 16);
	assert_int_equal(f[0], 'S');
	assert_memory_equal(f + 1, "\0\0\0\0\0\0\0\1", 8);
	assert_int_equal(sa.tx_seq, 1);
	/* the layout by hand: nonce 16 zeros | seq, AD the 9 header bytes */
	nonce[23] = 1;
	assert_int_equal(
	    crypto_aead_xchacha20poly1305_ietf_decrypt(
	        plain, &plen, NULL, f + 9, nf - 9, f, 9, nonce, sc.rx_key),
	    0);
	assert_memory_equal(plain, "hello", 5);
	assert_int_equal(sr_open(&sa, f, nf, &pt, &n), SR_EAUTH); /* own */
	assert_int_equal(sr_open(&sc, f, nf, &pt, &n), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(pt, "hello", 5);
	assert_int_equal(sc.rx_max, 1);
	assert_int_equal(sc.rx_window, 1);
	free(pt);
	free(f);
	/* the other direction; empty and large plaintexts */
	assert_int_equal(sr_seal(&sc, NULL, 0, &f, &nf), 0);
	assert_int_equal(sr_open(&sa, f, nf, &pt, &n), 0);
	assert_int_equal(n, 0);
	free(pt);
	free(f);
	sr_random(big, sizeof(big));
	assert_int_equal(sr_seal(&sc, big, sizeof(big), &f, &nf), 0);
	assert_int_equal(sr_open(&sa, f, nf, &pt, &n), 0);
	assert_int_equal(n, sizeof(big));
	assert_memory_equal(pt, big, sizeof(big));
	free(pt);
	free(f);
	assert_int_equal(sr_seal(&sc, big, SR_MAX_FRAME, &f, &nf), SR_ETOOBIG);
	sc.tx_seq = UINT64_MAX;
	assert_int_equal(sr_seal(&sc, big, 1, &f, &nf), SR_EINVAL);
}

static void
test_tampered(void **state)
{
	struct sr_session sa, sc, other, unused;
	uint8_t *f, *g;
	size_t nf, ng;

	(void) state;
	pair(&sa, &sc);
	assert_int_equal(sr_seal(&sa, (const uint8_t *) "payload", 7, &f, &nf),
	                 0);
	g = malloc(nf);
	for (size_t i = 9; i < nf; i++) { /* every ciphertext and tag byte */
		memcpy(g, f, nf);
		g[i] ^= 0x01;
		assert_int_equal(open_rv(&sc, g, nf), SR_EAUTH);
	}
	memcpy(g, f, nf);
	g[8] = 2; /* header: seq 1 -> 2 */
	assert_int_equal(open_rv(&sc, g, nf), SR_EAUTH);
	g[8] = 1;
	g[0] = 'H';
	assert_int_equal(open_rv(&sc, g, nf), SR_EPROTO);
	assert_int_equal(sc.rx_max + sc.rx_window, 0); /* window unmoved */
	pair(&other, &unused);
	assert_int_equal(open_rv(&other, f, nf), SR_EAUTH); /* other key */
	open_ok(&sc, f, nf);
	free(g);
	assert_int_equal(sr_seal(&sa, (const uint8_t *) "x", 1, &g, &ng), 0);
	open_ok(&sc, g, ng); /* seq 2 was not burnt by the forgery */
	free(f);
	free(g);
}

static void
test_malformed_sealed(void **state)
{
	struct sr_session sa, sc;
	uint8_t buf[32] = {'S'};
	uint8_t *big;

	(void) state;
	pair(&sa, &sc);
	assert_int_equal(open_rv(&sc, buf, 0), SR_EPROTO);
	assert_int_equal(open_rv(&sc, buf, 1), SR_EPROTO);
	assert_int_equal(open_rv(&sc, buf, 24), SR_EPROTO);
	buf[8] = 1;
	assert_int_equal(open_rv(&sc, buf, 25), SR_EAUTH); /* empty, forged */
	assert_int_equal(open_rv(&sc, buf, 32), SR_EAUTH);
	buf[8] = 0; /* seq 0 never exists */
	assert_int_equal(open_rv(&sc, buf, 32), SR_EREPLAY);
	big = calloc(1, SR_MAX_FRAME + 1);
	big[0] = 'S';
	big[8] = 1;
	assert_int_equal(open_rv(&sc, big, SR_MAX_FRAME + 1), SR_EPROTO);
	free(big);
}

/* n frames from sa, indexed by their sequence number. */
static void
seal_many(struct sr_session *sa, uint8_t **f, size_t *nf, int n)
{
	for (int i = 1; i <= n; i++)
		assert_int_equal(
		    sr_seal(sa, (const uint8_t *) &i, sizeof(i), &f[i], &nf[i]),
		    0);
}

static void
free_many(uint8_t **f, int n)
{
	for (int i = 1; i <= n; i++)
		free(f[i]);
}

static void
test_replay(void **state)
{
	struct sr_session sa, sc;
	uint8_t *f[4];
	size_t nf[4];

	(void) state;
	pair(&sa, &sc);
	seal_many(&sa, f, nf, 3);
	for (int i = 1; i <= 3; i++) {
		open_ok(&sc, f[i], nf[i]);
		assert_int_equal(open_rv(&sc, f[i], nf[i]), SR_EREPLAY);
	}
	assert_int_equal(sc.rx_max, 3);
	assert_int_equal(sc.rx_window, 7);
	free_many(f, 3);
}

static void
test_stale(void **state)
{
	struct sr_session sa, sc;
	uint8_t *f[201];
	size_t nf[201];

	(void) state;
	pair(&sa, &sc);
	seal_many(&sa, f, nf, 200);
	open_ok(&sc, f[1], nf[1]);
	open_ok(&sc, f[100], nf[100]);
	assert_int_equal(open_rv(&sc, f[36], nf[36]), SR_EREPLAY); /* 64 old */
	open_ok(&sc, f[37], nf[37]);                               /* 63 old */
	assert_int_equal(open_rv(&sc, f[37], nf[37]), SR_EREPLAY);
	open_ok(&sc, f[200], nf[200]); /* a jump past the window clears it */
	assert_int_equal(sc.rx_window, 1);
	assert_int_equal(open_rv(&sc, f[100], nf[100]), SR_EREPLAY);
	assert_int_equal(open_rv(&sc, f[136], nf[136]), SR_EREPLAY);
	open_ok(&sc, f[137], nf[137]);
	open_ok(&sc, f[150], nf[150]);
	assert_int_equal(open_rv(&sc, f[150], nf[150]), SR_EREPLAY);
	free_many(f, 200);
}

static void
test_out_of_order(void **state)
{
	static const int order[] = {5, 3, 4, 1, 2, 10, 6, 9};
	struct sr_session sa, sc;
	uint8_t *f[11], *pt;
	size_t nf[11], n;

	(void) state;
	pair(&sa, &sc);
	seal_many(&sa, f, nf, 10);
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		int seq = order[i];

		assert_int_equal(sr_open(&sc, f[seq], nf[seq], &pt, &n), 0);
		assert_memory_equal(pt, &seq, sizeof(seq));
		free(pt);
	}
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		assert_int_equal(open_rv(&sc, f[order[i]], nf[order[i]]),
		                 SR_EREPLAY);
	open_ok(&sc, f[7], nf[7]);
	open_ok(&sc, f[8], nf[8]);
	assert_int_equal(sc.rx_max, 10);
	assert_int_equal(sc.rx_window, 0x3ff);
	free_many(f, 10);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_seal_open),
	    cmocka_unit_test(test_tampered),
	    cmocka_unit_test(test_malformed_sealed),
	    cmocka_unit_test(test_replay),
	    cmocka_unit_test(test_stale),
	    cmocka_unit_test(test_out_of_order),
	};

	if (sr_init("test") != 0)
		return (1);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
