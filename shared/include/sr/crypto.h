/*
 * crypto.h - trust, the mutual handshake, and sealed messages.
 *
 * Everything here is built from libsodium primitives only: X25519
 * (crypto_scalarmult, crypto_kx_keypair), BLAKE2b (crypto_generichash),
 * HMAC-SHA512/256 (crypto_auth), crypto_kdf, and
 * XChaCha20-Poly1305-IETF (crypto_aead_xchacha20poly1305_ietf_*).
 *
 * Trust is either a cluster key (32 random bytes shared by every node of a
 * cluster: ephemeral CI runners) or a per-node X25519 static keypair plus an
 * authorized-keys list (standing fleets). Both sides prove themselves:
 *
 *   agent -> coordinator  INIT    {version, e_A, s_A?, n_A}
 *   coordinator -> agent  REPLY   {version, e_C, s_C?, n_C, tag_C}
 *   agent -> coordinator  CONFIRM {tag_A}
 *
 *   th   = BLAKE2b("shardrun-hs-1" | major | e_A | s_A | n_A | e_C | s_C | n_C)
 *   prk  = BLAKE2b_keyed(K or zeros, th | DH(e_A,e_C) [| DH(s_C,e_A) |
 * DH(e_C,s_A)]) tag_C = crypto_auth(th, kdf(prk, 1)), tag_A = crypto_auth(th,
 * kdf(prk, 2)) key agent->coordinator = kdf(prk, 3), coordinator->agent =
 * kdf(prk, 4)
 *
 * A peer without K (or without an authorized static key) can neither produce
 * a valid tag nor read or forge a sealed frame. The fresh ephemeral keys make
 * a replayed INIT or CONFIRM useless.
 *
 * Frames (first byte is the kind, see wire.h):
 *   handshake: 'H' | protobuf Shardrun__Handshake
 *   sealed:    'S' | seq (u64 big endian) | AEAD ciphertext
 * The AEAD nonce is 16 zero bytes | seq, the associated data is the 9
 * header bytes. seq starts at 1 and grows by one per frame; the receiver's
 * 64-frame replay window rejects repeated and stale sequence numbers.
 *
 * Ownership: an sr_trust owns its key material (wiped by sr_trust_clear);
 * sr_hs owns its ephemeral secrets (wiped by sr_hs_free). Every *out buffer
 * returned is malloc'd and owned by the caller. Nothing here is thread safe
 * except sr_keygen_*; each object belongs to one thread.
 */
#ifndef SR_CRYPTO_H
#define SR_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SR_KEY_BYTES    32
#define SR_MAX_FRAME    (16u * 1024u * 1024u) /* larger frames are dropped */
#define SR_PUBKEY_LABEL "shardrun-x25519"

enum sr_trust_mode {
	SR_TRUST_NONE = 0,
	SR_TRUST_CLUSTER = 1,
	SR_TRUST_NODES = 2,
};

enum sr_role {
	SR_ROLE_COORDINATOR = 1, /* same values as Shardrun__Role */
	SR_ROLE_AGENT = 2,
};

struct sr_trust {
	int mode;
	uint8_t cluster_key[SR_KEY_BYTES];
	uint8_t static_pk[SR_KEY_BYTES];
	uint8_t static_sk[SR_KEY_BYTES];
	uint8_t (*authorized)[SR_KEY_BYTES]; /* malloc'd array */
	size_t nauthorized;
};

/* Cluster key from a file: 64 hex characters (surrounding whitespace
 * allowed) or exactly 32 raw bytes. Refuses a file readable by group or
 * others with SR_EKEY and a logged explanation. */
int sr_trust_cluster_file(struct sr_trust *t, const char *path);
/* Cluster key from a hex string (SHARDRUN_CLUSTER_KEY). */
int sr_trust_cluster_hex(struct sr_trust *t, const char *hex);
/* A fresh random cluster key (local mode: both ends in one process). */
void sr_trust_cluster_random(struct sr_trust *t);
/* Node mode: DIR/node.key (hex secret, mode 0600) and DIR/node.pub, plus an
 * authorized-keys file: lines "shardrun-x25519 HEX [comment]", '#' comments
 * and blank lines ignored; a malformed line is an error naming its number. */
int sr_trust_nodes(struct sr_trust *t, const char *keydir,
                   const char *authorized_file);
/* Wipe key material, free the authorized list; t may be reused. */
void sr_trust_clear(struct sr_trust *t);
bool sr_trust_is_authorized(const struct sr_trust *t, const uint8_t *pk);

/* shardrun keygen --cluster-key FILE: 64 hex chars + newline, mode 0600,
 * refuses to overwrite an existing file (SR_EIO with errno EEXIST). */
int sr_keygen_cluster(const char *path);
/* shardrun keygen --node DIR: creates DIR (0700), node.key (0600) and
 * node.pub; writes the authorized-keys line ("shardrun-x25519 HEX host")
 * into line (NUL terminated). */
int sr_keygen_node(const char *dir, char *line, size_t linesz);

/* A session after a successful handshake. Plain data; may be copied. */
struct sr_session {
	uint8_t tx_key[SR_KEY_BYTES];
	uint8_t rx_key[SR_KEY_BYTES];
	uint64_t tx_seq;    /* last sequence number sent */
	uint64_t rx_max;    /* highest sequence number accepted */
	uint64_t rx_window; /* bit i set: rx_max - i was accepted */
	uint8_t peer_static[SR_KEY_BYTES]; /* node mode: who the peer is */
};

struct sr_hs; /* one handshake in progress */

/* role is our role. Returns SR_ENOMEM or 0. */
int sr_hs_new(struct sr_hs **hp, const struct sr_trust *t, int role);
void sr_hs_free(struct sr_hs *h);
/* Agent only: the INIT frame. */
int sr_hs_start(struct sr_hs *h, uint8_t **out, size_t *outlen);
/*
 * Feed one received handshake frame (starting with 'H'). On success *out may
 * be set to a frame to send back (REPLY or CONFIRM), else NULL. Errors:
 * SR_EVERSION (other major version), SR_EAUTH (bad tag, unauthorized key),
 * SR_EPROTO (malformed, unexpected step). On SR_EVERSION or SR_EAUTH *out
 * may hold a refusal frame explaining why (send it, then close); the
 * handshake is dead after any error. A refusal received from the peer is
 * returned as SR_EAUTH or SR_EVERSION with its reason in sr_hs_reason().
 */
int sr_hs_recv(struct sr_hs *h, const uint8_t *in, size_t inlen, uint8_t **out,
               size_t *outlen);
bool sr_hs_done(const struct sr_hs *h);
const char *sr_hs_reason(const struct sr_hs *h); /* "" when none */
/* After sr_hs_done(): the session keys. */
int sr_hs_session(const struct sr_hs *h, struct sr_session *s);

/* Seal a plaintext into a sealed frame ('S' | seq | ciphertext). */
int sr_seal(struct sr_session *s, const uint8_t *pt, size_t ptlen,
            uint8_t **out, size_t *outlen);
/* Open a sealed frame. SR_EPROTO (short, wrong kind, too big), SR_EAUTH
 * (tampered or wrong key), SR_EREPLAY (seen or older than the window).
 * The replay window moves only after the tag verified. */
int sr_open(struct sr_session *s, const uint8_t *in, size_t inlen,
            uint8_t **out, size_t *outlen);

#endif /* SR_CRYPTO_H */
