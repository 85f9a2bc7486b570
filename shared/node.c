/*
 * node.c - sessions over an nng pair1 polyamorous socket.
 *
 * nng calls pipe_cb on its own threads; it only appends (event, pipe id) to
 * a locked queue and writes a byte to a wake pipe. Everything else happens in
 * sr_node_poll on the owner's thread, so sessions need no locking.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <sodium.h>
#include <nng/protocol/pair1/pair.h>

#include "sr/err.h"
#include "sr/log.h"
#include "sr/node.h"
#include "sr/util.h"

enum { PIPE_REMOVED = 0, PIPE_STARTED = 1, PIPE_REGISTERED = 2 };

struct pipe_ev {
	int what;
	uint32_t id;
};

struct sr_node {
	nng_socket sock;
	int role;
	struct sr_trust trust;
	struct sr_peer **peers;
	size_t npeers;
	size_t cap;
	struct sr_peer *gone; /* returned with SR_EV_DOWN, freed next poll */
	pthread_mutex_t mtx;
	struct pipe_ev *evq;
	size_t nev;
	size_t evcap;
	int wake[2];
	int recvfd;
	struct sr_node_stats stats;
	void (*tap)(void *, uint32_t, const uint8_t *, size_t);
	void *tap_arg;
	nng_msg *multi; /* a MULTI message being handed up frame by frame */
	size_t multi_off;
};

static void
pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct sr_node *n = arg;
	char one = 1;

	pthread_mutex_lock(&n->mtx);
	if (n->nev == n->evcap) {
		size_t cap = n->evcap ? n->evcap * 2 : 16;
		struct pipe_ev *q = realloc(n->evq, cap * sizeof(*q));

		if (q == NULL) {
			pthread_mutex_unlock(&n->mtx);
			return;
		}
		n->evq = q;
		n->evcap = cap;
	}
	n->evq[n->nev].what = ev == NNG_PIPE_EV_ADD_PRE    ? PIPE_REGISTERED
	                      : ev == NNG_PIPE_EV_ADD_POST ? PIPE_STARTED
	                                                   : PIPE_REMOVED;
	n->evq[n->nev].id = nng_pipe_id(p);
	n->nev++;
	pthread_mutex_unlock(&n->mtx);
	(void) !write(n->wake[1], &one, 1);
}

static int
set_options(struct sr_node *n)
{
	int rv;

	if ((rv = nng_socket_set_int(n->sock, NNG_OPT_RECVBUF, 8192)) != 0 ||
	    (rv = nng_socket_set_int(n->sock, NNG_OPT_SENDBUF, 8192)) != 0 ||
	    (rv = nng_socket_set_size(n->sock, NNG_OPT_RECVMAXSZ,
	                              SR_MAX_FRAME)) != 0 ||
	    (rv = nng_socket_set_ms(n->sock, NNG_OPT_SENDTIMEO, 2000)) != 0 ||
	    (rv = nng_socket_set_ms(n->sock, NNG_OPT_RECONNMINT, 100)) != 0 ||
	    (rv = nng_socket_set_ms(n->sock, NNG_OPT_RECONNMAXT, 2000)) != 0)
		return (rv);
	if ((rv = nng_pipe_notify(n->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, n)) !=
	        0 ||
	    (rv = nng_pipe_notify(n->sock, NNG_PIPE_EV_REM_POST, pipe_cb, n)) !=
	        0)
		return (rv);
	return (nng_socket_get_int(n->sock, NNG_OPT_RECVFD, &n->recvfd));
}

int
sr_node_open(struct sr_node **np, int role, const struct sr_trust *t)
{
	struct sr_node *n;
	int rv;

	if ((n = calloc(1, sizeof(*n))) == NULL)
		return (SR_ENOMEM);
	n->role = role;
	n->trust = *t;
	n->trust.authorized = NULL;
	n->trust.nauthorized = 0;
	if (t->nauthorized > 0) {
		size_t sz = t->nauthorized * SR_KEY_BYTES;

		if ((n->trust.authorized = malloc(sz)) == NULL) {
			free(n);
			return (SR_ENOMEM);
		}
		memcpy(n->trust.authorized, t->authorized, sz);
		n->trust.nauthorized = t->nauthorized;
	}
	pthread_mutex_init(&n->mtx, NULL);
	if (pipe2(n->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		sr_trust_clear(&n->trust);
		free(n);
		return (SR_EIO);
	}
	if ((rv = nng_pair1_open_poly(&n->sock)) != 0 ||
	    (rv = set_options(n)) != 0) {
		sr_error("cannot open socket: %s", nng_strerror(rv));
		sr_node_close(n);
		return (SR_EIO);
	}
	*np = n;
	return (0);
}

static void
peer_free(struct sr_peer *p)
{
	if (p == NULL)
		return;
	sr_hs_free(p->hs);
	sodium_memzero(&p->sess, sizeof(p->sess));
	sr_buf_free(&p->out);
	free(p);
}

void
sr_node_close(struct sr_node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->npeers; i++)
		n->peers[i]->hold = false;
	sr_node_flush(n);
	if (n->multi != NULL)
		nng_msg_free(n->multi);
	if (nng_socket_id(n->sock) > 0)
		nng_close(n->sock);
	for (size_t i = 0; i < n->npeers; i++)
		peer_free(n->peers[i]);
	peer_free(n->gone);
	free(n->peers);
	free(n->evq);
	close(n->wake[0]);
	close(n->wake[1]);
	pthread_mutex_destroy(&n->mtx);
	sr_trust_clear(&n->trust);
	free(n);
}

/* Where url leaves the TCP port to the system (0, or none), say the one
 * the listener got, as a URL a peer on this host can dial: scripts read
 * it from this line. A wildcard host is said as the loopback address. */
static void
say_bound_port(nng_listener l, const char *url)
{
	const char *host;
	nng_url *u;
	int port;

	if (nng_url_parse(&u, url) != 0)
		return;
	if (u->u_hostname == NULL || u->u_port == NULL) { /* inproc, ipc */
		nng_url_free(u);
		return;
	}
	host = u->u_hostname;
	if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 ||
	    strcmp(host, "*") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	if (strspn(u->u_port, "0") == strlen(u->u_port) &&
	    nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
		sr_notice("listening on %s://%s%s%s:%d%s", u->u_scheme,
		          strchr(host, ':') ? "[" : "", host,
		          strchr(host, ':') ? "]" : "", port,
		          u->u_path != NULL ? u->u_path : "");
	nng_url_free(u);
}

int
sr_node_listen(struct sr_node *n, const char *url)
{
	nng_listener l;
	int rv;

	if ((rv = nng_listen(n->sock, url, &l, 0)) != 0) {
		sr_error("cannot listen on %s: %s", url, nng_strerror(rv));
		return (SR_EIO);
	}
	say_bound_port(l, url);
	return (0);
}

int
sr_node_dial(struct sr_node *n, const char *url)
{
	int rv;

	if ((rv = nng_dial(n->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		sr_error("cannot dial %s: %s", url, nng_strerror(rv));
		return (SR_EIO);
	}
	return (0);
}

void
sr_node_fds(struct sr_node *n, int fds[2])
{
	fds[0] = n->recvfd;
	fds[1] = n->wake[0];
}

const struct sr_node_stats *
sr_node_stats(const struct sr_node *n)
{
	return (&n->stats);
}

void
sr_node_set_tap(struct sr_node *n,
                void (*tap)(void *, uint32_t, const uint8_t *, size_t),
                void *arg)
{
	n->tap = tap;
	n->tap_arg = arg;
}

static struct sr_peer *
peer_find(struct sr_node *n, uint32_t id, size_t *idx)
{
	for (size_t i = 0; i < n->npeers; i++) {
		if (n->peers[i]->id == id) {
			if (idx != NULL)
				*idx = i;
			return (n->peers[i]);
		}
	}
	return (NULL);
}

static void
peer_addr(uint32_t id, char *out, size_t outsz)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;
	nng_sockaddr sa;

	p.id = id;
	snprintf(out, outsz, "pipe %u", id);
	if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET) {
		char ip[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof(ip));
		snprintf(out, outsz, "%s:%u", ip, ntohs(sa.s_in.sa_port));
	} else if (sa.s_family == NNG_AF_INET6) {
		char ip[INET6_ADDRSTRLEN];

		inet_ntop(AF_INET6, sa.s_in6.sa_addr, ip, sizeof(ip));
		snprintf(out, outsz, "[%s]:%u", ip, ntohs(sa.s_in6.sa_port));
	} else if (sa.s_family == NNG_AF_INPROC) {
		snprintf(out, outsz, "inproc");
	}
}

static int
raw_send(struct sr_node *n, uint32_t id, const uint8_t *f, size_t len)
{
	nng_msg *m;
	nng_pipe p = NNG_PIPE_INITIALIZER;
	int rv;

	if ((rv = nng_msg_alloc(&m, 0)) != 0)
		return (SR_ENOMEM);
	if ((rv = nng_msg_append(m, f, len)) != 0) {
		nng_msg_free(m);
		return (SR_ENOMEM);
	}
	p.id = id;
	nng_msg_set_pipe(m, p);
	if ((rv = nng_sendmsg(n->sock, m, 0)) != 0) {
		nng_msg_free(m);
		return (rv == NNG_ECLOSED ? SR_ECLOSED : SR_EIO);
	}
	n->stats.messages_out++;
	return (0);
}

int
sr_node_send_raw(struct sr_node *n, uint32_t pipe, const void *p, size_t len)
{
	return (raw_send(n, pipe, p, len));
}

/* A pipe we dialed: stop redialing its address (the peer refused us, or
 * we refused it; dialing again would only repeat that, many times a
 * second). A pipe from a listener is just closed. */
static void
forget_dialer(uint32_t id)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;
	nng_dialer d;

	p.id = id;
	d = nng_pipe_dialer(p);
	if (nng_dialer_id(d) > 0) {
		sr_warn("no longer dialing that peer");
		nng_dialer_close(d);
	}
}

static void
close_pipe(uint32_t id)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;

	p.id = id;
	nng_pipe_close(p);
}

static struct sr_peer *
peer_add(struct sr_node *n, uint32_t id)
{
	struct sr_peer *p;

	if (n->npeers == n->cap) {
		size_t cap = n->cap ? n->cap * 2 : 16;
		struct sr_peer **v = realloc(n->peers, cap * sizeof(*v));

		if (v == NULL)
			return (NULL);
		n->peers = v;
		n->cap = cap;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return (NULL);
	if (sr_hs_new(&p->hs, &n->trust, n->role) != 0) {
		free(p);
		return (NULL);
	}
	p->id = id;
	p->since = p->last_rx = sr_now();
	peer_addr(id, p->addr, sizeof(p->addr));
	n->peers[n->npeers++] = p;
	return (p);
}

/* The agent speaks first: its INIT opens the handshake. */
static void
peer_start(struct sr_node *n, struct sr_peer *p)
{
	uint8_t *f;
	size_t len;

	if (n->role != SR_ROLE_AGENT)
		return;
	if (sr_hs_start(p->hs, &f, &len) == 0) {
		(void) raw_send(n, p->id, f, len);
		free(f);
	}
}

static void
peer_remove(struct sr_node *n, size_t idx)
{
	n->peers[idx] = n->peers[--n->npeers];
}

/* Apply one queued pipe event; returns a peer that went down, if any. */
static struct sr_peer *
apply_pipe_event(struct sr_node *n, const struct pipe_ev *e)
{
	size_t idx = 0;
	struct sr_peer *p = peer_find(n, e->id, &idx);

	if (e->what == PIPE_REGISTERED) {
		if (p == NULL && peer_add(n, e->id) == NULL)
			close_pipe(e->id);
		return (NULL);
	}
	if (e->what == PIPE_STARTED) {
		if (p == NULL && (p = peer_add(n, e->id)) == NULL) {
			close_pipe(e->id);
			return (NULL);
		}
		peer_addr(e->id, p->addr, sizeof(p->addr));
		if (!p->started) {
			p->started = true;
			peer_start(n, p);
		}
		return (NULL);
	}
	if (p == NULL)
		return (NULL);
	peer_remove(n, idx);
	if (p->up)
		return (p);
	if (!p->dead) {
		n->stats.handshake_hangups++;
		sr_warn("%s closed the connection during the handshake (a "
		        "different key on its side?)",
		        p->addr);
	}
	peer_free(p);
	return (NULL);
}

static bool
next_pipe_event(struct sr_node *n, struct pipe_ev *out)
{
	bool got = false;
	char drain[64];

	pthread_mutex_lock(&n->mtx);
	if (n->nev > 0) {
		*out = n->evq[0];
		memmove(n->evq, n->evq + 1, (n->nev - 1) * sizeof(*n->evq));
		n->nev--;
		got = true;
	}
	if (n->nev == 0)
		while (read(n->wake[0], drain, sizeof(drain)) > 0)
			;
	pthread_mutex_unlock(&n->mtx);
	return (got);
}

static void
count_error(struct sr_node *n, int rv)
{
	switch (rv) {
	case SR_EAUTH:
		n->stats.auth_failures++;
		break;
	case SR_EREPLAY:
		n->stats.replays++;
		break;
	case SR_EVERSION:
		n->stats.versions++;
		break;
	case SR_ETOOBIG:
		n->stats.oversized++;
		break;
	default:
		n->stats.bad_frames++;
		break;
	}
}

/* A handshake frame: feed it, answer, and report a completed session. */
static int
on_handshake(struct sr_node *n, struct sr_peer *p, const uint8_t *f, size_t len,
             struct sr_event *ev)
{
	uint8_t *out = NULL;
	size_t outlen = 0;
	int rv;

	if (p->up || p->dead) {
		n->stats.bad_frames++;
		return (SR_EAGAIN);
	}
	rv = sr_hs_recv(p->hs, f, len, &out, &outlen);
	if (out != NULL) {
		(void) raw_send(n, p->id, out, outlen);
		free(out);
	}
	if (rv != 0) {
		count_error(n, rv);
		n->stats.handshake_failures++;
		sr_warn("handshake with %s refused: %s%s%s", p->addr,
		        sr_strerror(rv), *sr_hs_reason(p->hs) ? ": " : "",
		        sr_hs_reason(p->hs));
		/* Close a moment later, so the refusal leaves first. */
		p->forget = true;
		p->dead = true;
		p->close_at = sr_now() + 0.25;
		return (SR_EAGAIN);
	}
	if (!sr_hs_done(p->hs) || sr_hs_session(p->hs, &p->sess) != 0)
		return (SR_EAGAIN);
	sr_hs_free(p->hs);
	p->hs = NULL;
	p->up = true;
	p->last_rx = sr_now();
	ev->type = SR_EV_UP;
	ev->peer = p;
	ev->env = NULL;
	return (0);
}

static int
on_sealed(struct sr_node *n, struct sr_peer *p, const uint8_t *f, size_t len,
          struct sr_event *ev)
{
	uint8_t *pt;
	size_t ptlen;
	Shardrun__Envelope *env;
	int rv;

	if (!p->up) {
		n->stats.unauth_drops++;
		return (SR_EAGAIN);
	}
	if ((rv = sr_open(&p->sess, f, len, &pt, &ptlen)) != 0) {
		count_error(n, rv);
		sr_debug("frame from %s dropped: %s", p->addr, sr_strerror(rv));
		return (SR_EAGAIN);
	}
	rv = sr_wire_decode(pt, ptlen, &env);
	sodium_memzero(pt, ptlen);
	free(pt);
	if (rv != 0) {
		count_error(n, rv);
		sr_warn("message from %s dropped: %s", p->addr,
		        sr_strerror(rv));
		return (SR_EAGAIN);
	}
	p->last_rx = sr_now();
	ev->type = SR_EV_MSG;
	ev->peer = p;
	ev->env = env;
	return (0);
}

/*
 * A handshake frame from a pipe we have not heard of: nng starts receiving
 * on a new pipe before it runs the ADD_POST callback, so an agent's INIT can
 * be read before the event that announces its pipe is queued. Dropping it
 * would stall the handshake until its timeout. So the coordinator takes the
 * pipe on now if nng still has it; the event, when it comes, finds it.
 */
static struct sr_peer *
early_peer(struct sr_node *n, uint32_t id, const uint8_t *f, size_t len,
           bool inner)
{
	nng_pipe pipe = NNG_PIPE_INITIALIZER;
	nng_sockaddr sa;

	pipe.id = id;
	if (n->role != SR_ROLE_COORDINATOR || inner || len < 1 ||
	    f[0] != SR_FRAME_HANDSHAKE ||
	    nng_pipe_get_addr(pipe, NNG_OPT_LOCADDR, &sa) != 0)
		return (NULL);
	return (peer_add(n, id));
}

/* One frame from pipe id; inner: it came inside a MULTI frame, where only
 * sealed frames belong. */
static int
on_frame(struct sr_node *n, uint32_t id, const uint8_t *f, size_t len,
         bool inner, struct sr_event *ev)
{
	struct sr_peer *p;

	if ((p = peer_find(n, id, NULL)) == NULL &&
	    (p = early_peer(n, id, f, len, inner)) == NULL) {
		n->stats.bad_frames++; /* a pipe already gone */
		return (SR_EAGAIN);
	}
	if (len > SR_MAX_FRAME) {
		n->stats.oversized++;
		return (SR_EAGAIN);
	}
	if (len < 1) {
		n->stats.bad_frames++;
		return (SR_EAGAIN);
	}
	if (f[0] == SR_FRAME_HANDSHAKE && !inner)
		return (on_handshake(n, p, f, len, ev));
	if (f[0] == SR_FRAME_SEALED)
		return (on_sealed(n, p, f, len, ev));
	n->stats.bad_frames++;
	return (SR_EAGAIN);
}

/* The next frame of the MULTI message being handed up: 0 with an event,
 * SR_EAGAIN for a frame that gave none (dropped, counted), SR_ENOENT when
 * the message is used up (or malformed: its rest is dropped). */
static int
multi_next(struct sr_node *n, struct sr_event *ev)
{
	const uint8_t *b = nng_msg_body(n->multi);
	size_t len = nng_msg_len(n->multi);
	uint32_t flen;

	if (n->multi_off + 4 <= len) {
		flen = (uint32_t) b[n->multi_off] << 24 |
		       (uint32_t) b[n->multi_off + 1] << 16 |
		       (uint32_t) b[n->multi_off + 2] << 8 |
		       (uint32_t) b[n->multi_off + 3];
		if (flen > 0 && flen <= len - n->multi_off - 4) {
			const uint8_t *f = b + n->multi_off + 4;

			n->multi_off += 4 + (size_t) flen;
			return (
			    on_frame(n, nng_pipe_id(nng_msg_get_pipe(n->multi)),
			             f, flen, true, ev));
		}
		n->stats.bad_frames++;
	} else if (n->multi_off != len) {
		n->stats.bad_frames++;
	}
	nng_msg_free(n->multi);
	n->multi = NULL;
	return (SR_ENOENT);
}

/* The next event from received messages, SR_EAGAIN when none is ready. */
static int
next_message(struct sr_node *n, struct sr_event *ev)
{
	nng_msg *m;
	int rv;

	for (;;) {
		while (n->multi != NULL)
			if (multi_next(n, ev) == 0)
				return (0);
		if ((rv = nng_recvmsg(n->sock, &m, NNG_FLAG_NONBLOCK)) != 0)
			return (rv == NNG_ECLOSED ? SR_ECLOSED : SR_EAGAIN);
		n->stats.messages_in++;
		if (nng_msg_len(m) > 0 &&
		    *(uint8_t *) nng_msg_body(m) == SR_FRAME_MULTI) {
			n->multi = m;
			n->multi_off = 1;
			continue;
		}
		rv = on_frame(n, nng_pipe_id(nng_msg_get_pipe(m)),
		              nng_msg_body(m), nng_msg_len(m), false, ev);
		nng_msg_free(m);
		if (rv == 0)
			return (0);
	}
}

int
sr_node_poll(struct sr_node *n, struct sr_event *ev)
{
	struct pipe_ev pe;

	peer_free(n->gone);
	n->gone = NULL;
	while (next_pipe_event(n, &pe)) {
		struct sr_peer *down = apply_pipe_event(n, &pe);

		if (down != NULL) {
			n->gone = down;
			ev->type = SR_EV_DOWN;
			ev->peer = down;
			ev->env = NULL;
			return (0);
		}
	}
	return (next_message(n, ev));
}

/* Send what the peer's outbox holds: a lone frame as it is, several as
 * one MULTI frame. */
static int
peer_flush(struct sr_node *n, struct sr_peer *p)
{
	int rv;

	if (p->nout == 0)
		return (0);
	if (p->nout == 1)
		rv = raw_send(n, p->id, p->out.p + 5, p->out.len - 5);
	else
		rv = raw_send(n, p->id, p->out.p, p->out.len);
	p->out.len = 0;
	p->nout = 0;
	return (rv);
}

void
sr_node_flush(struct sr_node *n)
{
	for (size_t i = 0; i < n->npeers; i++)
		if (!n->peers[i]->hold)
			(void) peer_flush(n, n->peers[i]);
}

/* Room for nng's own header: a message over the receiver's limit would
 * cost the connection. */
#define OUTBOX_MAX (SR_MAX_FRAME - 256)

static int
outbox_add(struct sr_node *n, struct sr_peer *p, const uint8_t *f, size_t len)
{
	uint8_t hdr[5] = {SR_FRAME_MULTI, (uint8_t) (len >> 24),
	                  (uint8_t) (len >> 16), (uint8_t) (len >> 8),
	                  (uint8_t) len};
	size_t was;
	int rv;

	if (p->out.len + 4 + len > OUTBOX_MAX && (rv = peer_flush(n, p)) != 0)
		return (rv);
	if (1 + 4 + len > OUTBOX_MAX)
		return (raw_send(n, p->id, f, len)); /* alone, as it is */
	was = p->out.len;
	if ((rv = sr_buf_append(&p->out, p->out.len == 0 ? hdr : hdr + 1,
	                        p->out.len == 0 ? 5 : 4)) != 0 ||
	    (rv = sr_buf_append(&p->out, f, len)) != 0) {
		p->out.len = was; /* not half a frame */
		return (rv);
	}
	p->nout++;
	return (0);
}

int
sr_node_send(struct sr_node *n, struct sr_peer *p, Shardrun__Envelope *e)
{
	uint8_t *pt;
	uint8_t *f;
	size_t ptlen;
	size_t flen;
	int rv;

	if (!p->up || p->dead)
		return (SR_ECLOSED);
	if ((rv = sr_wire_encode(e, &pt, &ptlen)) != 0)
		return (rv);
	rv = sr_seal(&p->sess, pt, ptlen, &f, &flen);
	free(pt);
	if (rv != 0)
		return (rv);
	if (n->tap != NULL)
		n->tap(n->tap_arg, p->id, f, flen);
	rv = outbox_add(n, p, f, flen);
	free(f);
	return (rv);
}

void
sr_node_forget(struct sr_node *n, struct sr_peer *p)
{
	forget_dialer(p->id);
	sr_node_drop(n, p);
}

void
sr_node_drop(struct sr_node *n, struct sr_peer *p)
{
	(void) peer_flush(n, p);
	p->dead = true;
	close_pipe(p->id);
}

void
sr_node_expire(struct sr_node *n, double now, double limit_s)
{
	for (size_t i = 0; i < n->npeers; i++) {
		struct sr_peer *p = n->peers[i];

		if (p->close_at > 0 && now >= p->close_at) {
			p->close_at = 0;
			if (p->forget)
				forget_dialer(p->id);
			close_pipe(p->id);
		}
		if (p->dead && !p->up && now - p->since > 6 * limit_s) {
			/* Its removal event never came: forget it. */
			peer_remove(n, i--);
			peer_free(p);
			continue;
		}
		if (!p->up && !p->dead && now - p->since > limit_s) {
			sr_warn("closing %s: no handshake within %.0fs",
			        p->addr, limit_s);
			p->dead = true;
			close_pipe(p->id);
		}
	}
}
