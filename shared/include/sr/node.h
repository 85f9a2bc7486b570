/*
 * node.h - one endpoint of the shardrun protocol.
 *
 * A node is an nng pair1 socket in polyamorous mode: it may listen, dial, or
 * both, and holds one session per connection (nng pipe). Each session starts
 * with the mutual handshake of crypto.h; until it completes, nothing but
 * handshake frames is accepted from that pipe, and nothing is decoded as a
 * command. After it, every frame is sealed, and sr_node_poll hands up
 * decoded envelopes.
 *
 * nng's pair1 polyamorous mode drops a message when a pipe's small send
 * queue (two messages) is full rather than blocking every peer. So sealed
 * frames are not sent one by one: sr_node_send puts them in the peer's
 * outbox, and sr_node_flush sends each outbox as one nng message (a
 * SR_FRAME_MULTI frame: 'M', then per frame a 4-byte big-endian length and
 * the sealed frame; a lone frame goes as it is). An owner flushes once per
 * turn of its loop, so a peer gets at most one message per turn. Drops stay
 * possible under load, and shardrun tolerates them by design: the agent's
 * heartbeat carries its whole state (free slots, running units), results
 * are resent until acknowledged, and every message is idempotent, so a lost
 * message is reconciled within one heartbeat.
 *
 * The node is driven from one thread: poll sr_node_fds() for readability,
 * then call sr_node_poll() until it returns SR_EAGAIN, do the turn's work,
 * then sr_node_flush(). nng's own threads only queue connection events.
 * Ownership: the node owns its peers; a peer pointer stays valid until its
 * SR_EV_DOWN event has been returned and the next sr_node_poll call. Envelopes
 * in events are owned by the caller (sr_wire_free).
 */
#ifndef SR_NODE_H
#define SR_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "sr/crypto.h"
#include "sr/util.h"
#include "sr/wire.h"

enum sr_ev_type {
	SR_EV_UP = 1,   /* session authenticated */
	SR_EV_DOWN = 2, /* an authenticated session ended */
	SR_EV_MSG = 3,  /* an envelope arrived on an authenticated session */
};

struct sr_peer {
	uint32_t id;    /* nng pipe id */
	bool up;        /* handshake complete */
	double since;   /* monotonic time the pipe appeared */
	double last_rx; /* monotonic time of the last valid frame */
	char addr[96];  /* remote address, for logs */
	void *user;     /* the owner's per-peer state */
	bool hold;      /* owner: sr_node_flush leaves this outbox for later */
	/* private to node.c */
	struct sr_hs *hs;
	struct sr_session sess;
	bool dead;
	bool started;      /* ADD_POST seen: the agent has sent its INIT */
	bool forget;       /* when closing: stop dialing its address too */
	double close_at;   /* close the pipe then (after a refusal) */
	struct sr_buf out; /* sealed frames waiting for sr_node_flush */
	unsigned nout;
};

struct sr_event {
	int type;
	struct sr_peer *peer;
	Shardrun__Envelope *env; /* SR_EV_MSG only */
};

/* Counters of refused input, and of the messages that came and went;
 * read them for logs, reports and tests. */
struct sr_node_stats {
	uint64_t bad_frames;         /* garbage, truncated, wrong kind */
	uint64_t auth_failures;      /* handshake refused, tampered frames */
	uint64_t replays;            /* repeated or stale sealed frames */
	uint64_t versions;           /* other major protocol version */
	uint64_t unauth_drops;       /* sealed frames before the handshake */
	uint64_t oversized;          /* frames over SR_MAX_FRAME */
	uint64_t handshake_failures; /* handshakes that failed, any reason */
	uint64_t handshake_hangups;  /* the peer closed during the handshake */
	uint64_t messages_in;        /* nng messages received (one may carry
	                              * several frames, sr_node_flush) */
	uint64_t messages_out;       /* nng messages sent */
};

struct sr_node;

/* role: SR_ROLE_AGENT or SR_ROLE_COORDINATOR. trust is copied. */
int sr_node_open(struct sr_node **np, int role, const struct sr_trust *t);
/* Sends what the outboxes hold, then closes. */
void sr_node_close(struct sr_node *n);
int sr_node_listen(struct sr_node *n, const char *url);
/* Dial in the background; nng reconnects after a loss. */
int sr_node_dial(struct sr_node *n, const char *url);
/* Two fds to poll for POLLIN: nng's receive fd and the event queue. */
void sr_node_fds(struct sr_node *n, int fds[2]);
/* Next event, or SR_EAGAIN when none is ready. Never blocks. */
int sr_node_poll(struct sr_node *n, struct sr_event *ev);
/* Seal one envelope for an authenticated peer, into its outbox. */
int sr_node_send(struct sr_node *n, struct sr_peer *p, Shardrun__Envelope *e);
/* Send every peer's outbox not held (sr_peer.hold): one message per peer.
 * Once per loop turn. */
void sr_node_flush(struct sr_node *n);
/* Close a peer's connection (its outbox is sent first; its SR_EV_DOWN
 * follows). */
void sr_node_drop(struct sr_node *n, struct sr_peer *p);
/* Close it and, if we dialed it, stop dialing its address. */
void sr_node_forget(struct sr_node *n, struct sr_peer *p);
/* Close connections whose handshake did not finish within limit_s, and
 * refused ones whose refusal has had time to leave. Call it often. */
void sr_node_expire(struct sr_node *n, double now, double limit_s);
const struct sr_node_stats *sr_node_stats(const struct sr_node *n);
/* Send raw bytes to a pipe, bypassing sealing (tests only: replays). */
int sr_node_send_raw(struct sr_node *n, uint32_t pipe, const void *p,
                     size_t len);
/* Install a tap that sees every sealed frame sent (tests only). */
void sr_node_set_tap(struct sr_node *n,
                     void (*tap)(void *arg, uint32_t pipe, const uint8_t *f,
                                 size_t len),
                     void *arg);

#endif /* SR_NODE_H */
