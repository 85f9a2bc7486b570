/*
 * crypto.c - the mutual handshake and sealed frames. Trust material and
 * keygen are in crypto_keys.c; both implement sr/crypto.h.
 *
 * Choices the header leaves open, written down here so both ends (and a
 * second implementation) agree:
 *
 * - The transcript hash encodes the major version as 4 bytes big endian and
 *   an absent static key (cluster mode) as 32 zero bytes, so every field has
 *   a fixed width and no two transcripts can be confused. The minor version
 *   is not in it, so it must never change what a peer does: additions
 *   within a major are fields an older peer may ignore (Assignment.bundle),
 *   and anything else takes a new major.
 * - DH(x, y) is X25519 between one side's secret and the other's public key;
 *   both ends compute the same value (the agent gets DH(s_C, e_A) as
 *   X25519(e_A, s_C), the coordinator as X25519(s_C, e_A)). A DH result of
 *   all zeros (a low-order point) ends the handshake.
 * - prk keys BLAKE2b with the cluster key, or 32 zero bytes in node mode,
 *   where the static DH terms carry the authentication instead.
 * - A handshake frame is at most HS_MAX_FRAME bytes (a real one is about
 *   150): a stranger cannot make us parse or copy more before it has proved
 *   anything. Sealed frames are bounded by SR_MAX_FRAME.
 * - An sr_hs borrows its sr_trust: the trust must outlive the handshake.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "sr/crypto.h"
#include "sr/err.h"
#include "sr/util.h"
#include "sr/wire.h"

#define STEP_INIT    1
#define STEP_REPLY   2
#define STEP_CONFIRM 3
#define STEP_REFUSE  9

#define NONCE_BYTES   32
#define TAG_BYTES     crypto_auth_BYTES
#define HDR_BYTES     9 /* 'S' | seq */
#define ABYTES        crypto_aead_xchacha20poly1305_ietf_ABYTES
#define NPUB_BYTES    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define WINDOW        64
#define HS_MAX_FRAME  4096
#define KDF_CTX       "shardrun"
#define KDF_TAG_C     1
#define KDF_TAG_A     2
#define KDF_AGENT_TX  3
#define KDF_COORD_TX  4
#define TRANSCRIPT_ID "shardrun-hs-1"

_Static_assert(crypto_kx_PUBLICKEYBYTES == SR_KEY_BYTES, "x25519 size");
_Static_assert(crypto_scalarmult_BYTES == SR_KEY_BYTES, "x25519 size");
_Static_assert(crypto_kdf_KEYBYTES == SR_KEY_BYTES, "kdf key size");
_Static_assert(crypto_auth_KEYBYTES == SR_KEY_BYTES, "auth key size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == SR_KEY_BYTES,
               "aead key size");
_Static_assert(NPUB_BYTES == 24, "nonce is 16 zero bytes | seq");
_Static_assert(sizeof(KDF_CTX) - 1 == crypto_kdf_CONTEXTBYTES, "kdf ctx");

enum hs_state {
	ST_START,      /* agent, before sr_hs_start */
	ST_WAIT_INIT,  /* coordinator, before INIT */
	ST_SENT_INIT,  /* agent, waiting for REPLY */
	ST_SENT_REPLY, /* coordinator, waiting for CONFIRM */
	ST_DONE,
	ST_DEAD,
};

struct sr_hs {
	const struct sr_trust *t; /* borrowed */
	int role;
	int state;
	uint8_t e_sk[SR_KEY_BYTES]; /* wiped as soon as prk is derived */
	/* Transcript inputs by position: the agent's, then the coordinator's.
	 * Our own are set by sr_hs_new, the peer's when its frame arrives. */
	uint8_t ea[SR_KEY_BYTES], sa[SR_KEY_BYTES], na[NONCE_BYTES];
	uint8_t ec[SR_KEY_BYTES], sc[SR_KEY_BYTES], nc[NONCE_BYTES];
	uint8_t th[crypto_generichash_BYTES];
	uint8_t prk[crypto_kdf_KEYBYTES];
	char reason[256];
};

static void
put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t) v;
}

static uint64_t
get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return (v);
}

/* ---- handshake ---- */

static const char *
role_name(int role)
{
	return (role == SR_ROLE_AGENT ? "agent" : "coordinator");
}

static const char *
peer_name(const struct sr_hs *h)
{
	return (role_name(h->role == SR_ROLE_AGENT ? SR_ROLE_COORDINATOR
	                                           : SR_ROLE_AGENT));
}

static const uint8_t *
peer_e(const struct sr_hs *h)
{
	return (h->role == SR_ROLE_AGENT ? h->ec : h->ea);
}

static const uint8_t *
peer_s(const struct sr_hs *h)
{
	return (h->role == SR_ROLE_AGENT ? h->sc : h->sa);
}

static void set_reason(struct sr_hs *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
set_reason(struct sr_hs *h, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(h->reason, sizeof(h->reason), fmt, ap);
	va_end(ap);
}

/* Any error kills the handshake and wipes what it derived. */
static int
fail(struct sr_hs *h, int rv)
{
	sodium_memzero(h->e_sk, sizeof(h->e_sk));
	sodium_memzero(h->prk, sizeof(h->prk));
	h->state = ST_DEAD;
	return (rv);
}

static int
pack(const Shardrun__Handshake *m, uint8_t **out, size_t *outlen)
{
	size_t n = shardrun__handshake__get_packed_size(m);
	uint8_t *buf;

	if ((buf = malloc(n + 1)) == NULL)
		return (SR_ENOMEM);
	buf[0] = SR_FRAME_HANDSHAKE;
	shardrun__handshake__pack(m, buf + 1);
	*out = buf;
	*outlen = n + 1;
	return (0);
}

static void
msg_init(Shardrun__Handshake *m, const struct sr_hs *h, uint32_t step)
{
	shardrun__handshake__init(m);
	m->major = SR_PROTO_MAJOR;
	m->minor = SR_PROTO_MINOR;
	m->step = step;
	m->role = (Shardrun__Role) h->role;
}

static void
bin(ProtobufCBinaryData *b, const uint8_t *p, size_t n)
{
	b->data = (uint8_t *) p;
	b->len = n;
}

/* The refusal frame goes out when it can be built; the error stands
 * either way. why must not carry key material. */
static int
refuse(struct sr_hs *h, int rv, const char *why, uint8_t **out, size_t *outlen)
{
	Shardrun__Handshake m;

	if (h->reason[0] == '\0')
		set_reason(h, "%s", why);
	msg_init(&m, h, STEP_REFUSE);
	m.reason = (char *) why;
	(void) pack(&m, out, outlen);
	return (fail(h, rv));
}

/* INIT or REPLY: our ephemeral key, static key (node mode) and nonce. */
static int
pack_keys(const struct sr_hs *h, uint32_t step, const uint8_t *tag,
          uint8_t **out, size_t *outlen)
{
	bool agent = h->role == SR_ROLE_AGENT;
	Shardrun__Handshake m;

	msg_init(&m, h, step);
	bin(&m.eph_pk, agent ? h->ea : h->ec, SR_KEY_BYTES);
	if (h->t->mode == SR_TRUST_NODES)
		bin(&m.static_pk, agent ? h->sa : h->sc, SR_KEY_BYTES);
	bin(&m.nonce, agent ? h->na : h->nc, NONCE_BYTES);
	if (tag != NULL)
		bin(&m.tag, tag, TAG_BYTES);
	return (pack(&m, out, outlen));
}

static void
transcript(struct sr_hs *h)
{
	crypto_generichash_state st;
	uint8_t major[4] = {
	    (SR_PROTO_MAJOR >> 24) & 0xff, (SR_PROTO_MAJOR >> 16) & 0xff,
	    (SR_PROTO_MAJOR >> 8) & 0xff, SR_PROTO_MAJOR & 0xff};

	crypto_generichash_init(&st, NULL, 0, sizeof(h->th));
	crypto_generichash_update(&st, (const uint8_t *) TRANSCRIPT_ID,
	                          strlen(TRANSCRIPT_ID));
	crypto_generichash_update(&st, major, sizeof(major));
	crypto_generichash_update(&st, h->ea, sizeof(h->ea));
	crypto_generichash_update(&st, h->sa, sizeof(h->sa));
	crypto_generichash_update(&st, h->na, sizeof(h->na));
	crypto_generichash_update(&st, h->ec, sizeof(h->ec));
	crypto_generichash_update(&st, h->sc, sizeof(h->sc));
	crypto_generichash_update(&st, h->nc, sizeof(h->nc));
	crypto_generichash_final(&st, h->th, sizeof(h->th));
}

static int
mix_dh(crypto_generichash_state *st, const uint8_t *sk, const uint8_t *pk)
{
	uint8_t dh[crypto_scalarmult_BYTES];
	int rv = 0;

	if (crypto_scalarmult(dh, sk, pk) != 0)
		rv = -1;
	else
		crypto_generichash_update(st, dh, sizeof(dh));
	sodium_memzero(dh, sizeof(dh));
	return (rv);
}

/* th, then prk = BLAKE2b_keyed(K or zeros, th | ee [| s_C.e_A | e_C.s_A]) */
static int
derive(struct sr_hs *h)
{
	static const uint8_t zeros[SR_KEY_BYTES];
	const struct sr_trust *t = h->t;
	bool agent = h->role == SR_ROLE_AGENT;
	crypto_generichash_state st;
	int rv;

	transcript(h);
	crypto_generichash_init(
	    &st, t->mode == SR_TRUST_CLUSTER ? t->cluster_key : zeros,
	    SR_KEY_BYTES, sizeof(h->prk));
	crypto_generichash_update(&st, h->th, sizeof(h->th));
	rv = mix_dh(&st, h->e_sk, peer_e(h));
	if (rv == 0 && t->mode == SR_TRUST_NODES) {
		rv = mix_dh(&st, agent ? h->e_sk : t->static_sk,
		            agent ? peer_s(h) : peer_e(h));
		if (rv == 0)
			rv = mix_dh(&st, agent ? t->static_sk : h->e_sk,
			            agent ? peer_e(h) : peer_s(h));
	}
	crypto_generichash_final(&st, h->prk, sizeof(h->prk));
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(h->e_sk, sizeof(h->e_sk));
	if (rv != 0) {
		set_reason(h, "%s sent a degenerate key", peer_name(h));
		return (fail(h, SR_EPROTO));
	}
	return (0);
}

static void
make_tag(const struct sr_hs *h, uint64_t id, uint8_t tag[TAG_BYTES])
{
	uint8_t k[crypto_auth_KEYBYTES];

	crypto_kdf_derive_from_key(k, sizeof(k), id, KDF_CTX, h->prk);
	crypto_auth(tag, h->th, sizeof(h->th), k);
	sodium_memzero(k, sizeof(k));
}

static bool
tag_ok(const struct sr_hs *h, uint64_t id, const uint8_t *tag)
{
	uint8_t k[crypto_auth_KEYBYTES];
	int rv;

	crypto_kdf_derive_from_key(k, sizeof(k), id, KDF_CTX, h->prk);
	rv = crypto_auth_verify(tag, h->th, sizeof(h->th), k);
	sodium_memzero(k, sizeof(k));
	return (rv == 0);
}

/* Step, sender role and every field length, before anything is used. */
static int
expect(struct sr_hs *h, const Shardrun__Handshake *m, uint32_t step, int role,
       bool keys)
{
	size_t slen = keys && h->t->mode == SR_TRUST_NODES ? SR_KEY_BYTES : 0;
	size_t tlen = step == STEP_INIT ? 0 : TAG_BYTES;

	if (m->step != step || (int) m->role != role) {
		set_reason(h,
		           "unexpected handshake step %u from role %d "
		           "(expected step %u from the %s)",
		           m->step, (int) m->role, step, role_name(role));
		return (fail(h, SR_EPROTO));
	}
	if (m->eph_pk.len != (keys ? SR_KEY_BYTES : 0) ||
	    m->static_pk.len != slen ||
	    m->nonce.len != (keys ? NONCE_BYTES : 0) || m->tag.len != tlen) {
		set_reason(h,
		           "malformed handshake step %u (wrong field "
		           "lengths; cluster key on one side, node keys on "
		           "the other?)",
		           step);
		return (fail(h, SR_EPROTO));
	}
	return (0);
}

static void
take_peer(struct sr_hs *h, const Shardrun__Handshake *m)
{
	bool agent = h->role == SR_ROLE_AGENT;

	memcpy(agent ? h->ec : h->ea, m->eph_pk.data, SR_KEY_BYTES);
	if (m->static_pk.len == SR_KEY_BYTES)
		memcpy(agent ? h->sc : h->sa, m->static_pk.data, SR_KEY_BYTES);
	memcpy(agent ? h->nc : h->na, m->nonce.data, NONCE_BYTES);
}

/* Node mode: the peer's static key must be on our list. The local reason
 * names the key (the operator needs it to authorize the peer); the frame
 * sent to the peer does not. */
static int
check_peer_key(struct sr_hs *h, uint8_t **out, size_t *outlen)
{
	const char *peer = peer_name(h);
	char hex[2 * SR_KEY_BYTES + 1];
	char why[64];

	if (h->t->mode != SR_TRUST_NODES ||
	    sr_trust_is_authorized(h->t, peer_s(h)))
		return (0);
	sr_hex(peer_s(h), SR_KEY_BYTES, hex);
	set_reason(h, "%s key \"%s %s\" is not in the authorized keys", peer,
	           SR_PUBKEY_LABEL, hex);
	snprintf(why, sizeof(why), "%s key is not authorized", peer);
	return (refuse(h, SR_EAUTH, why, out, outlen));
}

/* Coordinator: INIT -> REPLY. */
static int
on_init(struct sr_hs *h, const Shardrun__Handshake *m, uint8_t **out,
        size_t *outlen)
{
	uint8_t tag[TAG_BYTES];
	int rv;

	if ((rv = expect(h, m, STEP_INIT, SR_ROLE_AGENT, true)) != 0)
		return (rv);
	take_peer(h, m);
	if ((rv = check_peer_key(h, out, outlen)) != 0 || (rv = derive(h)) != 0)
		return (rv);
	make_tag(h, KDF_TAG_C, tag);
	if ((rv = pack_keys(h, STEP_REPLY, tag, out, outlen)) != 0)
		return (fail(h, rv));
	h->state = ST_SENT_REPLY;
	return (0);
}

/* Agent: REPLY -> CONFIRM; the agent is done once CONFIRM is out. */
static int
on_reply(struct sr_hs *h, const Shardrun__Handshake *m, uint8_t **out,
         size_t *outlen)
{
	Shardrun__Handshake c;
	uint8_t tag[TAG_BYTES];
	int rv;

	if ((rv = expect(h, m, STEP_REPLY, SR_ROLE_COORDINATOR, true)) != 0)
		return (rv);
	take_peer(h, m);
	if ((rv = check_peer_key(h, out, outlen)) != 0 || (rv = derive(h)) != 0)
		return (rv);
	if (!tag_ok(h, KDF_TAG_C, m->tag.data))
		return (refuse(
		    h, SR_EAUTH,
		    "authentication failed: the agent could not verify the "
		    "coordinator (different cluster key or node keys?)",
		    out, outlen));
	make_tag(h, KDF_TAG_A, tag);
	msg_init(&c, h, STEP_CONFIRM);
	bin(&c.tag, tag, sizeof(tag));
	if ((rv = pack(&c, out, outlen)) != 0)
		return (fail(h, rv));
	h->state = ST_DONE;
	return (0);
}

/* Coordinator: CONFIRM -> done. */
static int
on_confirm(struct sr_hs *h, const Shardrun__Handshake *m, uint8_t **out,
           size_t *outlen)
{
	int rv;

	if ((rv = expect(h, m, STEP_CONFIRM, SR_ROLE_AGENT, false)) != 0)
		return (rv);
	if (!tag_ok(h, KDF_TAG_A, m->tag.data))
		return (refuse(
		    h, SR_EAUTH,
		    "authentication failed: the coordinator could not verify "
		    "the agent (different cluster key or node keys?)",
		    out, outlen));
	h->state = ST_DONE;
	return (0);
}

/* The peer's refusal: kept (printable ASCII only) for the caller's log. A
 * refusal in another major version is about the version. */
static int
peer_refused(struct sr_hs *h, const Shardrun__Handshake *m)
{
	const char *r = m->reason != NULL ? m->reason : "";
	size_t i;

	for (i = 0; r[i] != '\0' && i < sizeof(h->reason) - 1; i++)
		h->reason[i] = (r[i] >= 0x20 && r[i] < 0x7f) ? r[i] : '?';
	h->reason[i] = '\0';
	if (i == 0)
		set_reason(h, "refused by the %s without a reason",
		           peer_name(h));
	return (fail(h, m->major != SR_PROTO_MAJOR ? SR_EVERSION : SR_EAUTH));
}

static int
dispatch(struct sr_hs *h, const Shardrun__Handshake *m, uint8_t **out,
         size_t *outlen)
{
	char why[96];

	if (m->major == 0) {
		set_reason(h, "handshake message without a protocol version");
		return (fail(h, SR_EPROTO));
	}
	if (m->step == STEP_REFUSE)
		return (peer_refused(h, m));
	if (m->major != SR_PROTO_MAJOR) {
		snprintf(why, sizeof(why),
		         "protocol version %u (peer) is not "
		         "%u (ours)",
		         m->major, (unsigned) SR_PROTO_MAJOR);
		return (refuse(h, SR_EVERSION, why, out, outlen));
	}
	switch (h->state) {
	case ST_WAIT_INIT:
		return (on_init(h, m, out, outlen));
	case ST_SENT_INIT:
		return (on_reply(h, m, out, outlen));
	case ST_SENT_REPLY:
		return (on_confirm(h, m, out, outlen));
	default:
		set_reason(h, "unexpected handshake step %u", m->step);
		return (fail(h, SR_EPROTO));
	}
}

int
sr_hs_new(struct sr_hs **hp, const struct sr_trust *t, int role)
{
	bool agent = role == SR_ROLE_AGENT;
	struct sr_hs *h;

	if (t == NULL ||
	    (t->mode != SR_TRUST_CLUSTER && t->mode != SR_TRUST_NODES) ||
	    (role != SR_ROLE_AGENT && role != SR_ROLE_COORDINATOR))
		return (SR_EINVAL);
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return (SR_ENOMEM);
	h->t = t;
	h->role = role;
	h->state = agent ? ST_START : ST_WAIT_INIT;
	crypto_kx_keypair(agent ? h->ea : h->ec, h->e_sk);
	sr_random(agent ? h->na : h->nc, NONCE_BYTES);
	if (t->mode == SR_TRUST_NODES)
		memcpy(agent ? h->sa : h->sc, t->static_pk, SR_KEY_BYTES);
	*hp = h;
	return (0);
}

void
sr_hs_free(struct sr_hs *h)
{
	if (h == NULL)
		return;
	sodium_memzero(h, sizeof(*h));
	free(h);
}

int
sr_hs_start(struct sr_hs *h, uint8_t **out, size_t *outlen)
{
	int rv;

	if (h->role != SR_ROLE_AGENT || h->state != ST_START)
		return (SR_EINVAL);
	if ((rv = pack_keys(h, STEP_INIT, NULL, out, outlen)) != 0)
		return (rv);
	h->state = ST_SENT_INIT;
	return (0);
}

int
sr_hs_recv(struct sr_hs *h, const uint8_t *in, size_t inlen, uint8_t **out,
           size_t *outlen)
{
	Shardrun__Handshake *m;
	int rv;

	*out = NULL;
	*outlen = 0;
	if (h->state == ST_DEAD)
		return (SR_EPROTO);
	if (in == NULL || inlen < 1 || inlen > HS_MAX_FRAME ||
	    in[0] != SR_FRAME_HANDSHAKE ||
	    (m = shardrun__handshake__unpack(NULL, inlen - 1, in + 1)) ==
	        NULL) {
		set_reason(h, "malformed handshake frame (%zu bytes)", inlen);
		return (fail(h, SR_EPROTO));
	}
	rv = dispatch(h, m, out, outlen);
	shardrun__handshake__free_unpacked(m, NULL);
	return (rv);
}

bool
sr_hs_done(const struct sr_hs *h)
{
	return (h->state == ST_DONE);
}

const char *
sr_hs_reason(const struct sr_hs *h)
{
	return (h->reason);
}

int
sr_hs_session(const struct sr_hs *h, struct sr_session *s)
{
	bool agent = h->role == SR_ROLE_AGENT;
	struct sr_session ns;

	if (h->state != ST_DONE)
		return (SR_EINVAL);
	memset(&ns, 0, sizeof(ns));
	crypto_kdf_derive_from_key(ns.tx_key, SR_KEY_BYTES,
	                           agent ? KDF_AGENT_TX : KDF_COORD_TX, KDF_CTX,
	                           h->prk);
	crypto_kdf_derive_from_key(ns.rx_key, SR_KEY_BYTES,
	                           agent ? KDF_COORD_TX : KDF_AGENT_TX, KDF_CTX,
	                           h->prk);
	if (h->t->mode == SR_TRUST_NODES)
		memcpy(ns.peer_static, peer_s(h), SR_KEY_BYTES);
	*s = ns;
	sodium_memzero(&ns, sizeof(ns));
	return (0);
}

/* ---- sealed frames ---- */

static void
frame_nonce(uint8_t nonce[NPUB_BYTES], const uint8_t *hdr)
{
	memset(nonce, 0, NPUB_BYTES - 8);
	memcpy(nonce + NPUB_BYTES - 8, hdr + 1, 8);
}

int
sr_seal(struct sr_session *s, const uint8_t *pt, size_t ptlen, uint8_t **out,
        size_t *outlen)
{
	uint8_t nonce[NPUB_BYTES];
	unsigned long long clen;
	uint8_t *buf;
	uint64_t seq;

	if (ptlen > SR_MAX_FRAME - HDR_BYTES - ABYTES)
		return (SR_ETOOBIG);
	if (s->tx_seq == UINT64_MAX) /* a nonce must never repeat */
		return (SR_EINVAL);
	if ((buf = malloc(HDR_BYTES + ptlen + ABYTES)) == NULL)
		return (SR_ENOMEM);
	seq = s->tx_seq + 1;
	buf[0] = SR_FRAME_SEALED;
	put_be64(buf + 1, seq);
	frame_nonce(nonce, buf);
	crypto_aead_xchacha20poly1305_ietf_encrypt(buf + HDR_BYTES, &clen, pt,
	                                           ptlen, buf, HDR_BYTES, NULL,
	                                           nonce, s->tx_key);
	s->tx_seq = seq;
	*out = buf;
	*outlen = HDR_BYTES + (size_t) clen;
	return (0);
}

static int
replay_check(const struct sr_session *s, uint64_t seq)
{
	uint64_t age;

	if (seq == 0)
		return (SR_EREPLAY);
	if (seq > s->rx_max)
		return (0);
	age = s->rx_max - seq;
	if (age >= WINDOW || ((s->rx_window >> age) & 1) != 0)
		return (SR_EREPLAY);
	return (0);
}

static void
replay_accept(struct sr_session *s, uint64_t seq)
{
	uint64_t shift;

	if (seq > s->rx_max) {
		shift = seq - s->rx_max;
		s->rx_window = shift >= WINDOW ? 0 : s->rx_window << shift;
		s->rx_window |= 1;
		s->rx_max = seq;
	} else {
		s->rx_window |= (uint64_t) 1 << (s->rx_max - seq);
	}
}

int
sr_open(struct sr_session *s, const uint8_t *in, size_t inlen, uint8_t **out,
        size_t *outlen)
{
	uint8_t nonce[NPUB_BYTES];
	unsigned long long plen;
	uint8_t *buf;
	uint64_t seq;
	int rv;

	if (in == NULL || inlen < HDR_BYTES + ABYTES || inlen > SR_MAX_FRAME ||
	    in[0] != SR_FRAME_SEALED)
		return (SR_EPROTO);
	seq = get_be64(in + 1);
	if ((rv = replay_check(s, seq)) != 0)
		return (rv);
	/* sized by the bytes received, never by a claimed length */
	if ((buf = malloc(inlen - HDR_BYTES - ABYTES + 1)) == NULL)
		return (SR_ENOMEM);
	frame_nonce(nonce, in);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
	        buf, &plen, NULL, in + HDR_BYTES, inlen - HDR_BYTES, in,
	        HDR_BYTES, nonce, s->rx_key) != 0) {
		free(buf);
		return (SR_EAUTH);
	}
	replay_accept(s, seq);
	*out = buf;
	*outlen = (size_t) plen;
	return (0);
}
