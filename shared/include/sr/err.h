/*
 * err.h - error codes shared by every shardrun module.
 *
 * Functions return 0 on success or one of these codes; out-parameters are
 * written only on success. sr_strerror() never returns NULL. Thread safe.
 */
#ifndef SR_ERR_H
#define SR_ERR_H

enum sr_err {
	SR_OK = 0,
	SR_ENOMEM = 1,    /* allocation failed */
	SR_EINVAL = 2,    /* bad argument or malformed input */
	SR_EPROTO = 3,    /* malformed or unexpected message */
	SR_EAUTH = 4,     /* authentication failed */
	SR_EVERSION = 5,  /* peer speaks another major protocol version */
	SR_EREPLAY = 6,   /* repeated or stale sealed message */
	SR_EIO = 7,       /* system call failed; errno tells more */
	SR_ENOENT = 8,    /* no such file */
	SR_ETOOBIG = 9,   /* input exceeds a fixed limit */
	SR_EPATH = 10,    /* path refused: absolute, escapes, control chars */
	SR_ECLOSED = 11,  /* peer or object closed */
	SR_EAGAIN = 12,   /* nothing available now */
	SR_ETIMEOUT = 13, /* deadline passed */
	SR_EKEY = 14,     /* key missing, unreadable or malformed */
};

const char *sr_strerror(int err);

#endif /* SR_ERR_H */
