/*
 * wire.c - envelope encoding and decoding with version checks.
 */
#include <stdlib.h>

#include "sr/crypto.h"
#include "sr/err.h"
#include "sr/wire.h"

int
sr_wire_encode(Shardrun__Envelope *env, uint8_t **out, size_t *outlen)
{
	size_t n;
	uint8_t *p;

	env->major = SR_PROTO_MAJOR;
	env->minor = SR_PROTO_MINOR;
	n = shardrun__envelope__get_packed_size(env);
	if (n > SR_MAX_FRAME - 64)
		return (SR_ETOOBIG);
	if ((p = malloc(n ? n : 1)) == NULL)
		return (SR_ENOMEM);
	shardrun__envelope__pack(env, p);
	*out = p;
	*outlen = n;
	return (0);
}

int
sr_wire_decode(const uint8_t *buf, size_t len, Shardrun__Envelope **envp)
{
	Shardrun__Envelope *env;

	if (len > SR_MAX_FRAME)
		return (SR_ETOOBIG);
	env = shardrun__envelope__unpack(NULL, len, buf);
	if (env == NULL)
		return (SR_EPROTO);
	if (env->major != SR_PROTO_MAJOR) {
		shardrun__envelope__free_unpacked(env, NULL);
		return (SR_EVERSION);
	}
	if (env->body_case == SHARDRUN__ENVELOPE__BODY__NOT_SET) {
		shardrun__envelope__free_unpacked(env, NULL);
		return (SR_EPROTO);
	}
	*envp = env;
	return (0);
}

void
sr_wire_free(Shardrun__Envelope *env)
{
	if (env != NULL)
		shardrun__envelope__free_unpacked(env, NULL);
}

const char *
sr_wire_kind(const Shardrun__Envelope *env)
{
	switch (env->body_case) {
	case SHARDRUN__ENVELOPE__BODY_HELLO:
		return ("hello");
	case SHARDRUN__ENVELOPE__BODY_WELCOME:
		return ("welcome");
	case SHARDRUN__ENVELOPE__BODY_WORK_REQUEST:
		return ("work_request");
	case SHARDRUN__ENVELOPE__BODY_ASSIGNMENT:
		return ("assignment");
	case SHARDRUN__ENVELOPE__BODY_RESULT:
		return ("result");
	case SHARDRUN__ENVELOPE__BODY_RESULT_ACK:
		return ("result_ack");
	case SHARDRUN__ENVELOPE__BODY_HEARTBEAT:
		return ("heartbeat");
	case SHARDRUN__ENVELOPE__BODY_SHUTDOWN:
		return ("shutdown");
	case SHARDRUN__ENVELOPE__BODY_REFUSE:
		return ("refuse");
	case SHARDRUN__ENVELOPE__BODY_CANCEL:
		return ("cancel");
	case SHARDRUN__ENVELOPE__BODY_BATCH:
		return ("batch");
	default:
		return ("unknown");
	}
}
