/*
 * wire.h - the envelope: encoding, decoding and version checks.
 *
 * A frame's first byte says what it is: SR_FRAME_HANDSHAKE ('H') or
 * SR_FRAME_SEALED ('S'), see crypto.h for their layouts, or SR_FRAME_MULTI
 * ('M': sealed frames, each behind its 4-byte big-endian length; node.h).
 * The plaintext of a sealed frame is one protobuf Shardrun__Envelope.
 *
 * Decoding never trusts the input: a frame larger than SR_MAX_FRAME is
 * refused before protobuf sees it, and protobuf-c allocates in proportion to
 * the bytes actually received, not to lengths the sender claims.
 * Ownership: sr_wire_encode's *out is malloc'd, the caller frees it;
 * sr_wire_decode's *envp is freed with sr_wire_free. Thread safe.
 */
#ifndef SR_WIRE_H
#define SR_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "shardrun.pb-c.h"

#define SR_PROTO_MAJOR 2 /* 2: several sealed frames per message */
#define SR_PROTO_MINOR 0

#define SR_FRAME_HANDSHAKE 'H'
#define SR_FRAME_SEALED    'S'
#define SR_FRAME_MULTI     'M'

/* Sets env->major and env->minor, then packs it. */
int sr_wire_encode(Shardrun__Envelope *env, uint8_t **out, size_t *outlen);
/* SR_EPROTO on garbage, SR_ETOOBIG over SR_MAX_FRAME, SR_EVERSION when the
 * major version differs (the envelope is not returned then). */
int sr_wire_decode(const uint8_t *buf, size_t len, Shardrun__Envelope **envp);
void sr_wire_free(Shardrun__Envelope *env);
/* Name of the envelope's body ("assignment", ...) for logs. */
const char *sr_wire_kind(const Shardrun__Envelope *env);

#endif /* SR_WIRE_H */
