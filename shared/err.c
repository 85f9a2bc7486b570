/*
 * err.c - names for the error codes in sr/err.h.
 */
#include <stddef.h>

#include "sr/err.h"

static const char *const names[] = {
    [SR_OK] = "ok",
    [SR_ENOMEM] = "out of memory",
    [SR_EINVAL] = "invalid argument",
    [SR_EPROTO] = "protocol error",
    [SR_EAUTH] = "authentication failed",
    [SR_EVERSION] = "protocol version mismatch",
    [SR_EREPLAY] = "replayed or stale message",
    [SR_EIO] = "input/output error",
    [SR_ENOENT] = "no such file",
    [SR_ETOOBIG] = "too large",
    [SR_EPATH] = "path refused",
    [SR_ECLOSED] = "closed",
    [SR_EAGAIN] = "try again",
    [SR_ETIMEOUT] = "timed out",
    [SR_EKEY] = "bad or missing key",
};

const char *
sr_strerror(int err)
{
	if (err < 0 || (unsigned) err >= sizeof(names) / sizeof(names[0]) ||
	    names[err] == NULL)
		return ("unknown error");
	return (names[err]);
}
