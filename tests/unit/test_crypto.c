/*
 * test_crypto.c - the handshake: both trust modes, wrong and unauthorized
 * keys, version refusal, malformed, truncated, mutated and replayed frames;
 * and that the session keys it derives work with sr_seal/sr_open (whose own
 * tests are in test_crypto_seal.c; key files are in test_crypto_keys.c).
 *
 * Node keys live under one temporary directory, removed at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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
#include "sr/wire.h"

static char tmpdir[256];

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
put_str(const char *name, const char *s, mode_t mode)
{
	int fd = open(tpath(name), O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t) strlen(s));
	close(fd);
}

static bool
contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (memcmp(hay + i, needle, m) == 0)
			return (true);
	return (false);
}

struct hs {
	struct sr_hs *a, *c;
	uint8_t *init, *reply, *confirm, *last;
	size_t ninit, nreply, nconfirm, nlast;
};

static void
hs_begin(struct hs *x, const struct sr_trust *ta, const struct sr_trust *tc)
{
	memset(x, 0, sizeof(*x));
	assert_int_equal(sr_hs_new(&x->a, ta, SR_ROLE_AGENT), 0);
	assert_int_equal(sr_hs_new(&x->c, tc, SR_ROLE_COORDINATOR), 0);
	assert_int_equal(sr_hs_start(x->a, &x->init, &x->ninit), 0);
}

static int
hs_reply(struct hs *x)
{
	return (sr_hs_recv(x->c, x->init, x->ninit, &x->reply, &x->nreply));
}

static int
hs_confirm(struct hs *x)
{
	return (
	    sr_hs_recv(x->a, x->reply, x->nreply, &x->confirm, &x->nconfirm));
}

static int
hs_finish(struct hs *x)
{
	return (sr_hs_recv(x->c, x->confirm, x->nconfirm, &x->last, &x->nlast));
}

static void
hs_end(struct hs *x)
{
	sr_hs_free(x->a);
	sr_hs_free(x->c);
	free(x->init);
	free(x->reply);
	free(x->confirm);
	free(x->last);
}

static void
handshake(const struct sr_trust *ta, const struct sr_trust *tc,
          struct sr_session *sa, struct sr_session *sc)
{
	struct hs x;

	hs_begin(&x, ta, tc);
	assert_int_equal(hs_reply(&x), 0);
	assert_non_null(x.reply);
	assert_false(sr_hs_done(x.c));
	assert_int_equal(hs_confirm(&x), 0);
	assert_non_null(x.confirm);
	assert_true(sr_hs_done(x.a));
	assert_int_equal(hs_finish(&x), 0);
	assert_null(x.last);
	assert_true(sr_hs_done(x.c));
	assert_string_equal(sr_hs_reason(x.c), "");
	assert_int_equal(sr_hs_session(x.a, sa), 0);
	assert_int_equal(sr_hs_session(x.c, sc), 0);
	hs_end(&x);
}

static Shardrun__Handshake *
unpack(const uint8_t *f, size_t n)
{
	Shardrun__Handshake *m;

	assert_true(n >= 1 && f[0] == 'H');
	m = shardrun__handshake__unpack(NULL, n - 1, f + 1);
	assert_non_null(m);
	return (m);
}

static void
repack(const Shardrun__Handshake *m, uint8_t **out, size_t *outlen)
{
	size_t n = shardrun__handshake__get_packed_size(m);

	*out = malloc(n + 1);
	(*out)[0] = 'H';
	shardrun__handshake__pack(m, *out + 1);
	*outlen = n + 1;
}

/* The reason of a refusal frame (step 9), checked and copied. */
static char *
refusal_reason(const uint8_t *f, size_t n)
{
	Shardrun__Handshake *m = unpack(f, n);
	char *r;

	assert_int_equal(m->step, 9);
	assert_int_equal(m->major, SR_PROTO_MAJOR);
	r = strdup(m->reason);
	shardrun__handshake__free_unpacked(m, NULL);
	return (r);
}

/* Nodes "<p>a" and "<p>c", each authorizing the other or nobody. */
static void
node_pair(const char *p, struct sr_trust *ta, struct sr_trust *tc,
          bool a_trusts_c, bool c_trusts_a)
{
	struct sr_trust *t[2] = {ta, tc};
	bool trusts[2] = {a_trusts_c, c_trusts_a};
	char line[2][256], dir[2][64], auth[80];

	for (int i = 0; i < 2; i++) {
		snprintf(dir[i], sizeof(dir[i]), "%s%c", p, "ac"[i]);
		assert_int_equal(sr_keygen_node(tpath(dir[i]), line[i], 256),
		                 0);
	}
	for (int i = 0; i < 2; i++) {
		snprintf(auth, sizeof(auth), "%s.auth", dir[i]);
		put_str(auth, trusts[i] ? line[1 - i] : "# nobody\n", 0644);
		assert_int_equal(
		    sr_trust_nodes(t[i], tpath(dir[i]), tpath(auth)), 0);
	}
}

static void
assert_pair(const struct sr_session *sa, const struct sr_session *sc)
{
	assert_memory_equal(sa->tx_key, sc->rx_key, SR_KEY_BYTES);
	assert_memory_equal(sa->rx_key, sc->tx_key, SR_KEY_BYTES);
	assert_memory_not_equal(sa->tx_key, sa->rx_key, SR_KEY_BYTES);
	assert_int_equal(sa->tx_seq + sa->rx_max + sa->rx_window, 0);
	assert_int_equal(sc->tx_seq + sc->rx_max + sc->rx_window, 0);
}

static void
test_handshake_cluster(void **state)
{
	static const uint8_t zeros[SR_KEY_BYTES];
	struct sr_trust t = {0};
	struct sr_session sa, sc, sa2, sc2;
	Shardrun__Handshake *m;
	struct hs x;

	(void) state;
	sr_trust_cluster_random(&t);
	hs_begin(&x, &t, &t);
	m = unpack(x.init, x.ninit);
	assert_int_equal(m->major, SR_PROTO_MAJOR);
	assert_int_equal(m->step, 1);
	assert_int_equal(m->role, SHARDRUN__ROLE__ROLE_AGENT);
	assert_int_equal(m->eph_pk.len, 32);
	assert_int_equal(m->nonce.len, 32);
	assert_int_equal(m->static_pk.len + m->tag.len, 0);
	shardrun__handshake__free_unpacked(m, NULL);
	hs_end(&x);

	handshake(&t, &t, &sa, &sc);
	assert_pair(&sa, &sc);
	assert_memory_equal(sa.peer_static, zeros, SR_KEY_BYTES);
	handshake(&t, &t, &sa2, &sc2); /* fresh keys every session */
	assert_memory_not_equal(sa.tx_key, sa2.tx_key, SR_KEY_BYTES);
	sr_trust_clear(&t);
}

static void
test_handshake_nodes(void **state)
{
	struct sr_trust ta = {0}, tc = {0};
	struct sr_session sa, sc;

	(void) state;
	node_pair("hn", &ta, &tc, true, true);
	handshake(&ta, &tc, &sa, &sc);
	assert_pair(&sa, &sc);
	assert_memory_equal(sa.peer_static, tc.static_pk, SR_KEY_BYTES);
	assert_memory_equal(sc.peer_static, ta.static_pk, SR_KEY_BYTES);
	sr_trust_clear(&ta);
	sr_trust_clear(&tc);
}

static void
test_wrong_cluster_key(void **state)
{
	struct sr_trust ta = {0}, tc = {0};
	char *why;
	struct hs x;

	(void) state;
	sr_trust_cluster_random(&ta);
	sr_trust_cluster_random(&tc);
	hs_begin(&x, &ta, &tc);
	assert_int_equal(hs_reply(&x), 0); /* it cannot know yet */
	assert_int_equal(hs_confirm(&x), SR_EAUTH);
	assert_false(sr_hs_done(x.a));
	assert_non_null(x.confirm); /* the refusal */
	why = refusal_reason(x.confirm, x.nconfirm);
	assert_non_null(strstr(why, "authentication failed"));
	assert_int_equal(hs_finish(&x), SR_EAUTH);
	assert_string_equal(sr_hs_reason(x.c), why);
	assert_false(sr_hs_done(x.c));
	free(why);
	hs_end(&x);
	sr_trust_clear(&ta);
	sr_trust_clear(&tc);
}

/* A CONFIRM with a tag the coordinator did not derive. */
static void
test_forged_confirm(void **state)
{
	Shardrun__Handshake m = SHARDRUN__HANDSHAKE__INIT;
	struct sr_trust t = {0};
	uint8_t tag[32];
	char *why;
	struct hs x;

	(void) state;
	sr_trust_cluster_random(&t);
	hs_begin(&x, &t, &t);
	assert_int_equal(hs_reply(&x), 0);
	sr_random(tag, sizeof(tag));
	m.major = SR_PROTO_MAJOR;
	m.step = 3;
	m.role = SHARDRUN__ROLE__ROLE_AGENT;
	m.tag.data = tag;
	m.tag.len = sizeof(tag);
	repack(&m, &x.confirm, &x.nconfirm);
	assert_int_equal(hs_finish(&x), SR_EAUTH);
	assert_false(sr_hs_done(x.c));
	why = refusal_reason(x.last, x.nlast);
	assert_non_null(strstr(why, "could not verify the agent"));
	free(why);
	hs_end(&x);
	sr_trust_clear(&t);
}

/* A captured INIT replayed to a new coordinator gets a REPLY under fresh
 * ephemeral keys; the captured CONFIRM does not complete it. */
static void
test_replayed_init(void **state)
{
	struct sr_trust t = {0};
	struct sr_hs *c2;
	uint8_t *r2, *out;
	size_t nr2, nout;
	struct hs x;

	(void) state;
	sr_trust_cluster_random(&t);
	hs_begin(&x, &t, &t);
	assert_int_equal(hs_reply(&x), 0);
	assert_int_equal(hs_confirm(&x), 0);
	assert_int_equal(hs_finish(&x), 0);

	assert_int_equal(sr_hs_new(&c2, &t, SR_ROLE_COORDINATOR), 0);
	assert_int_equal(sr_hs_recv(c2, x.init, x.ninit, &r2, &nr2), 0);
	assert_true(nr2 != x.nreply || memcmp(r2, x.reply, nr2) != 0);
	assert_int_equal(sr_hs_recv(c2, x.confirm, x.nconfirm, &out, &nout),
	                 SR_EAUTH);
	assert_false(sr_hs_done(c2));
	free(out);
	/* and the first coordinator, already done, takes no second CONFIRM */
	assert_int_equal(sr_hs_recv(x.c, x.confirm, x.nconfirm, &out, &nout),
	                 SR_EPROTO);
	assert_null(out);
	free(r2);
	sr_hs_free(c2);
	hs_end(&x);
	sr_trust_clear(&t);
}

static void
test_unauthorized_agent(void **state)
{
	struct sr_trust ta = {0}, tc = {0};
	char hex[65], *why;
	struct hs x;

	(void) state;
	node_pair("ua", &ta, &tc, true, false);
	hs_begin(&x, &ta, &tc);
	assert_int_equal(hs_reply(&x), SR_EAUTH);
	why = refusal_reason(x.reply, x.nreply);
	assert_string_equal(why, "agent key is not authorized");
	sr_hex(ta.static_pk, SR_KEY_BYTES, hex);
	hex[16] = '\0';
	assert_false(contains(x.reply, x.nreply, ta.static_pk, 8));
	assert_false(contains(x.reply, x.nreply, hex, 16));
	assert_non_null(strstr(sr_hs_reason(x.c), hex)); /* local log only */
	assert_int_equal(hs_confirm(&x), SR_EAUTH);
	assert_string_equal(sr_hs_reason(x.a), why);
	assert_null(x.confirm);
	free(why);
	hs_end(&x);
	sr_trust_clear(&ta);
	sr_trust_clear(&tc);
}

static void
test_unauthorized_coordinator(void **state)
{
	struct sr_trust ta = {0}, tc = {0};
	char *why;
	struct hs x;

	(void) state;
	node_pair("uc", &ta, &tc, false, true);
	hs_begin(&x, &ta, &tc);
	assert_int_equal(hs_reply(&x), 0);
	assert_int_equal(hs_confirm(&x), SR_EAUTH);
	why = refusal_reason(x.confirm, x.nconfirm);
	assert_string_equal(why, "coordinator key is not authorized");
	assert_int_equal(hs_finish(&x), SR_EAUTH);
	free(why);
	hs_end(&x);
	sr_trust_clear(&ta);
	sr_trust_clear(&tc);
}

/* Knowing an authorized public key is not enough without its secret. */
static void
test_stolen_public_key(void **state)
{
	struct sr_trust ta = {0}, tc = {0}, fake;
	struct hs x;

	(void) state;
	node_pair("sp", &ta, &tc, true, true);
	fake = ta;
	sr_random(fake.static_sk, SR_KEY_BYTES);
	hs_begin(&x, &fake, &tc);
	assert_int_equal(hs_reply(&x), 0);
	assert_int_equal(hs_confirm(&x), SR_EAUTH);
	hs_end(&x);
	fake = tc;
	sr_random(fake.static_sk, SR_KEY_BYTES);
	hs_begin(&x, &ta, &fake);
	assert_int_equal(hs_reply(&x), 0);
	assert_int_equal(hs_confirm(&x), SR_EAUTH);
	hs_end(&x);
	sr_trust_clear(&ta);
	sr_trust_clear(&tc);
}

static void
test_version(void **state)
{
	Shardrun__Handshake *m, v;
	struct sr_trust t = {0};
	uint8_t *f;
	size_t nf;
	char *why;
	char want[96];
	struct hs x;

	(void) state;
	sr_trust_cluster_random(&t);
	/* coordinator refuses an INIT of the next major */
	hs_begin(&x, &t, &t);
	m = unpack(x.init, x.ninit);
	v = *m;
	v.major = SR_PROTO_MAJOR + 1;
	repack(&v, &f, &nf);
	assert_int_equal(sr_hs_recv(x.c, f, nf, &x.reply, &x.nreply),
	                 SR_EVERSION);
	why = refusal_reason(x.reply, x.nreply);
	snprintf(want, sizeof(want),
	         "protocol version %u (peer) is not %u (ours)",
	         SR_PROTO_MAJOR + 1, SR_PROTO_MAJOR);
	assert_string_equal(why, want);
	assert_string_equal(sr_hs_reason(x.c), why);
	free(f);
	free(why);
	/* an agent of another major would see that refusal as a version
	 * error */
	v.step = 9;
	v.reason = "protocol version 1 (peer) is not 2 (ours)";
	repack(&v, &f, &nf);
	assert_int_equal(sr_hs_recv(x.a, f, nf, &x.confirm, &x.nconfirm),
	                 SR_EVERSION);
	assert_null(x.confirm);
	assert_string_equal(sr_hs_reason(x.a), v.reason);
	shardrun__handshake__free_unpacked(m, NULL);
	free(f);
	hs_end(&x);

	/* agent refuses a REPLY of major 7 */
	hs_begin(&x, &t, &t);
	assert_int_equal(hs_reply(&x), 0);
	m = unpack(x.reply, x.nreply);
	v = *m;
	v.major = 7;
	repack(&v, &f, &nf);
	assert_int_equal(sr_hs_recv(x.a, f, nf, &x.confirm, &x.nconfirm),
	                 SR_EVERSION);
	why = refusal_reason(x.confirm, x.nconfirm);
	snprintf(want, sizeof(want),
	         "protocol version 7 (peer) is not %u (ours)", SR_PROTO_MAJOR);
	assert_string_equal(why, want);
	free(why);
	shardrun__handshake__free_unpacked(m, NULL);
	free(f);
	hs_end(&x);
	sr_trust_clear(&t);
}

/* Feed f to a fresh coordinator (INIT): expect err, no reply, and a reason
 * containing why. */
static void
expect_init(const struct sr_trust *t, const uint8_t *f, size_t n, int err,
            const char *why)
{
	struct sr_hs *c;
	uint8_t *out;
	size_t nout;

	assert_int_equal(sr_hs_new(&c, t, SR_ROLE_COORDINATOR), 0);
	assert_int_equal(sr_hs_recv(c, f, n, &out, &nout), err);
	assert_null(out);
	assert_false(sr_hs_done(c));
	if (sr_hs_reason(c)[0] == '\0' || strstr(sr_hs_reason(c), why) == NULL)
		fail_msg("reason \"%s\" lacks \"%s\"", sr_hs_reason(c), why);
	sr_hs_free(c);
}

enum mutation {
	SHORT_EPH,
	LONG_NONCE,
	WITH_STATIC,
	WITH_TAG,
	NO_STATIC,
	AS_COORDINATOR,
	AS_CONFIRM,
	ZERO_EPH,
	NO_VERSION,
};

/* The INIT of a fresh agent with one field changed must be refused. */
static void
mutate_init(const struct sr_trust *t, enum mutation mu, const char *why)
{
	static uint8_t junk[64], zeros[32];
	Shardrun__Handshake *m, v;
	struct hs x;
	uint8_t *f;
	size_t nf;

	hs_begin(&x, t, t);
	m = unpack(x.init, x.ninit);
	v = *m;
	switch (mu) {
	case SHORT_EPH:
		v.eph_pk.len = 31;
		break;
	case LONG_NONCE:
		v.nonce = (ProtobufCBinaryData){33, junk};
		break;
	case WITH_STATIC:
		v.static_pk = (ProtobufCBinaryData){32, junk};
		break;
	case WITH_TAG:
		v.tag = (ProtobufCBinaryData){32, junk};
		break;
	case NO_STATIC:
		v.static_pk.len = 0;
		break;
	case AS_COORDINATOR:
		v.role = SHARDRUN__ROLE__ROLE_COORDINATOR;
		break;
	case AS_CONFIRM:
		v.step = 3;
		break;
	case ZERO_EPH:
		v.eph_pk.data = zeros;
		break; /* a low-order point */
	case NO_VERSION:
		v.major = 0;
		break;
	}
	repack(&v, &f, &nf);
	expect_init(t, f, nf, SR_EPROTO, why);
	free(f);
	shardrun__handshake__free_unpacked(m, NULL);
	hs_end(&x);
}

static void
test_bad_fields(void **state)
{
	struct sr_trust t = {0}, ta = {0}, tc = {0};

	(void) state;
	sr_trust_cluster_random(&t);
	mutate_init(&t, SHORT_EPH, "field lengths");
	mutate_init(&t, LONG_NONCE, "field lengths");
	mutate_init(&t, WITH_STATIC, "field lengths"); /* cluster mode */
	mutate_init(&t, WITH_TAG, "field lengths");
	mutate_init(&t, AS_COORDINATOR, "unexpected handshake step");
	mutate_init(&t, AS_CONFIRM, "unexpected handshake step");
	mutate_init(&t, ZERO_EPH, "degenerate key");
	mutate_init(&t, NO_VERSION, "without a protocol version");
	node_pair("bf", &ta, &tc, true, true);
	mutate_init(&tc, NO_STATIC, "field lengths");
	sr_trust_clear(&t);
	sr_trust_clear(&ta);
	sr_trust_clear(&tc);
}

/* A valid INIT followed by an unknown field 15 of pad bytes. */
static uint8_t *
padded(const struct hs *x, size_t pad, size_t *len)
{
	uint8_t *f = calloc(1, x->ninit + pad + 16);
	size_t n = x->ninit, v = pad;

	memcpy(f, x->init, n);
	f[n++] = 0x7a;
	for (; v >= 0x80; v >>= 7)
		f[n++] = (uint8_t) (v | 0x80);
	f[n++] = (uint8_t) v;
	*len = n + pad;
	return (f);
}

static void
test_malformed_frames(void **state)
{
	/* field 5 claiming 4 GiB of bytes */
	static const uint8_t huge[] = {'H',  0x2a, 0xff, 0xff, 0xff,
	                               0xff, 0x0f, 1,    2};
	static const uint8_t garbage[] = {'H', 0xff, 0xff, 0xff, 0x07};
	struct sr_trust t = {0};
	struct sr_hs *c;
	uint8_t *f, *out;
	size_t n, nout;
	struct hs x;

	(void) state;
	sr_trust_cluster_random(&t);
	expect_init(&t, (const uint8_t *) "", 0, SR_EPROTO, "malformed");
	expect_init(&t, (const uint8_t *) "H", 1, SR_EPROTO, "version");
	expect_init(&t, (const uint8_t *) "Sxxxxxxxxx", 10, SR_EPROTO,
	            "malformed");
	expect_init(&t, garbage, sizeof(garbage), SR_EPROTO, "malformed");
	expect_init(&t, huge, sizeof(huge), SR_EPROTO, "malformed");
	/* unknown fields are fine, a frame larger than a handshake is not */
	hs_begin(&x, &t, &t);
	f = padded(&x, 100, &n);
	assert_int_equal(sr_hs_new(&c, &t, SR_ROLE_COORDINATOR), 0);
	assert_int_equal(sr_hs_recv(c, f, n, &out, &nout), 0);
	free(out);
	free(f);
	sr_hs_free(c);
	x.init[0] = 'S'; /* a valid INIT in a frame of another kind */
	expect_init(&t, x.init, x.ninit, SR_EPROTO, "malformed");
	x.init[0] = 'H';
	f = padded(&x, 5000, &n);
	expect_init(&t, f, n, SR_EPROTO, "malformed");
	free(f);
	f = padded(&x, SR_MAX_FRAME, &n);
	expect_init(&t, f, n, SR_EPROTO, "malformed");
	free(f);
	hs_end(&x);
	sr_trust_clear(&t);
}

/* Every proper prefix of each handshake frame fails at its receiver. */
static void
test_truncated(void **state)
{
	struct sr_trust t = {0};
	struct hs x, y;
	uint8_t *out;
	size_t nout;

	(void) state;
	sr_trust_cluster_random(&t);
	hs_begin(&x, &t, &t);
	assert_int_equal(hs_reply(&x), 0);
	assert_int_equal(hs_confirm(&x), 0);
	for (size_t i = 0; i < x.ninit; i++)
		expect_init(&t, x.init, i, SR_EPROTO, "");
	for (size_t i = 0; i < x.nreply; i++) {
		hs_begin(&y, &t, &t);
		assert_int_not_equal(sr_hs_recv(y.a, x.reply, i, &out, &nout),
		                     0);
		assert_false(sr_hs_done(y.a));
		free(out);
		hs_end(&y);
	}
	for (size_t i = 0; i < x.nconfirm; i++) {
		hs_begin(&y, &t, &t);
		assert_int_equal(hs_reply(&y), 0);
		assert_int_not_equal(sr_hs_recv(y.c, x.confirm, i, &out, &nout),
		                     0);
		assert_false(sr_hs_done(y.c));
		free(out);
		hs_end(&y);
	}
	hs_end(&x);
	sr_trust_clear(&t);
}

/* Random byte flips never crash, and never complete a handshake. */
static void
test_fuzz_handshake(void **state)
{
	struct sr_trust t = {0};
	uint8_t *f, *out;
	size_t n, nout;
	struct hs x;

	(void) state;
	sr_trust_cluster_random(&t);
	for (int i = 0; i < 1000; i++) {
		hs_begin(&x, &t, &t);
		assert_int_equal(hs_reply(&x), 0);
		f = i % 2 ? x.reply : x.init;
		n = i % 2 ? x.nreply : x.ninit;
		for (int k = 1 + (int) randombytes_uniform(4); k > 0; k--)
			f[randombytes_uniform((uint32_t) n)] ^=
			    (uint8_t) (1 + randombytes_uniform(255));
		if (i % 2 == 0) {
			struct sr_hs *c;

			assert_int_equal(sr_hs_new(&c, &t, SR_ROLE_COORDINATOR),
			                 0);
			if (sr_hs_recv(c, x.init, x.ninit, &out, &nout) == 0)
				assert_non_null(out);
			free(out);
			sr_hs_free(c);
		} else {
			(void) hs_confirm(&x);
			if (x.confirm != NULL)
				assert_int_not_equal(hs_finish(&x), 0);
		}
		hs_end(&x);
	}
	sr_trust_clear(&t);
}

static void
test_hs_misuse(void **state)
{
	struct sr_trust t = {0}, none = {0};
	struct sr_session s;
	struct sr_hs *h;
	uint8_t *out;
	size_t nout;
	struct hs x;

	(void) state;
	sr_trust_cluster_random(&t);
	assert_int_equal(sr_hs_new(&h, &none, SR_ROLE_AGENT), SR_EINVAL);
	assert_int_equal(sr_hs_new(&h, &t, 0), SR_EINVAL);
	assert_int_equal(sr_hs_new(&h, &t, SR_ROLE_COORDINATOR), 0);
	assert_int_equal(sr_hs_start(h, &out, &nout), SR_EINVAL);
	assert_int_equal(sr_hs_session(h, &s), SR_EINVAL);
	sr_hs_free(h);
	sr_hs_free(NULL);

	hs_begin(&x, &t, &t);
	assert_int_equal(sr_hs_start(x.a, &out, &nout), SR_EINVAL);
	/* an agent takes no INIT, and is dead after the error */
	assert_int_equal(sr_hs_recv(x.a, x.init, x.ninit, &out, &nout),
	                 SR_EPROTO);
	assert_int_equal(hs_reply(&x), 0);
	assert_int_not_equal(hs_confirm(&x), 0);
	assert_int_equal(sr_hs_session(x.a, &s), SR_EINVAL);
	hs_end(&x);
	sr_trust_clear(&t);
}

static void
test_sessions_talk(void **state)
{
	struct sr_trust ta = {0}, tc = {0};
	struct sr_session sa, sc;
	uint8_t *f, *pt;
	size_t nf, n;

	(void) state;
	node_pair("st", &ta, &tc, true, true);
	handshake(&ta, &tc, &sa, &sc);
	assert_int_equal(sr_seal(&sa, (const uint8_t *) "up", 2, &f, &nf), 0);
	assert_int_equal(sr_open(&sa, f, nf, &pt, &n), SR_EAUTH); /* own */
	assert_int_equal(sr_open(&sc, f, nf, &pt, &n), 0);
	assert_memory_equal(pt, "up", 2);
	free(pt);
	free(f);
	assert_int_equal(sr_seal(&sc, (const uint8_t *) "down", 4, &f, &nf), 0);
	assert_int_equal(sr_open(&sa, f, nf, &pt, &n), 0);
	assert_memory_equal(pt, "down", 4);
	free(pt);
	free(f);
	sr_trust_clear(&ta);
	sr_trust_clear(&tc);
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
	    cmocka_unit_test(test_handshake_cluster),
	    cmocka_unit_test(test_handshake_nodes),
	    cmocka_unit_test(test_sessions_talk),
	    cmocka_unit_test(test_wrong_cluster_key),
	    cmocka_unit_test(test_forged_confirm),
	    cmocka_unit_test(test_replayed_init),
	    cmocka_unit_test(test_unauthorized_agent),
	    cmocka_unit_test(test_unauthorized_coordinator),
	    cmocka_unit_test(test_stolen_public_key),
	    cmocka_unit_test(test_version),
	    cmocka_unit_test(test_bad_fields),
	    cmocka_unit_test(test_malformed_frames),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_fuzz_handshake),
	    cmocka_unit_test(test_hs_misuse),
	};

	if (sr_init("test") != 0)
		return (1);
	umask(022);
	return (cmocka_run_group_tests(tests, setup, teardown));
}
