/*
 * simagents.c - many simulated agents against one coordinator.
 *
 *   sr-simagents -u URL -k KEYFILE [-n AGENTS] [-s SECONDS] [-p PROFILE]
 *
 * Opens AGENTS authenticated sessions to the coordinator at URL (one nng
 * dialer each, so one TCP connection and one handshake each), introduces
 * each as an agent with one slot, asks for work, accepts what it is given
 * and never finishes it (a suite of long files), and heartbeats every
 * second like a real agent. Runs for SECONDS, then prints how many
 * sessions came up and were given work.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sr/crypto.h"
#include "sr/node.h"
#include "sr/util.h"
#include "sr/wire.h"

struct sim {
	bool welcomed;
	uint32_t unit;
	uint32_t attempt;
	double last_hb;
	uint64_t seq;
};

static const char *profile = "generic";

static void
send_env(struct sr_node *n, struct sr_peer *p, Shardrun__Envelope *e)
{
	(void) sr_node_send(n, p, e);
	sr_node_flush(n);
}

static void
hello(struct sr_node *n, struct sr_peer *p, unsigned i)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Hello h = SHARDRUN__HELLO__INIT;
	char name[32];

	snprintf(name, sizeof(name), "sim%u", i);
	h.name = name;
	h.slots = 1;
	h.profile = (char *) profile;
	e.body_case = SHARDRUN__ENVELOPE__BODY_HELLO;
	e.hello = &h;
	send_env(n, p, &e);
}

static void
ask(struct sr_node *n, struct sr_peer *p)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__WorkRequest w = SHARDRUN__WORK_REQUEST__INIT;

	e.body_case = SHARDRUN__ENVELOPE__BODY_WORK_REQUEST;
	e.work_request = &w;
	send_env(n, p, &e);
}

static void
beat(struct sr_node *n, struct sr_peer *p, struct sim *s)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Heartbeat h = SHARDRUN__HEARTBEAT__INIT;
	Shardrun__Running r = SHARDRUN__RUNNING__INIT;
	Shardrun__Running *rp = &r;
	uint32_t free_slot = 0;

	h.seq = ++s->seq;
	if (s->unit != 0) {
		r.unit = s->unit;
		r.attempt = s->attempt;
		h.running = &rp;
		h.n_running = 1;
	} else if (s->welcomed) {
		h.free_slots = &free_slot;
		h.n_free_slots = 1;
	}
	e.body_case = SHARDRUN__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &h;
	send_env(n, p, &e);
}

static void
on_msg(struct sr_node *n, struct sr_peer *p, const Shardrun__Envelope *e,
       unsigned *busy)
{
	struct sim *s = p->user;

	if (e->body_case == SHARDRUN__ENVELOPE__BODY_WELCOME && !s->welcomed) {
		s->welcomed = true;
		ask(n, p);
	} else if (e->body_case == SHARDRUN__ENVELOPE__BODY_ASSIGNMENT &&
	           s->unit == 0) {
		s->unit = e->assignment->unit;
		s->attempt = e->assignment->attempt;
		(*busy)++;
	} else if (e->body_case == SHARDRUN__ENVELOPE__BODY_BATCH &&
	           e->batch->n_assignments > 0 && s->unit == 0) {
		s->unit = e->batch->assignments[0]->unit;
		s->attempt = e->batch->assignments[0]->attempt;
		(*busy)++;
	}
}

int
main(int argc, char **argv)
{
	const char *url = NULL;
	const char *key = NULL;
	unsigned agents = 200;
	unsigned up = 0;
	unsigned busy = 0;
	double secs = 20;
	struct sr_trust t;
	struct sr_node *n;
	struct sr_peer **peers;
	size_t np = 0;
	int c;

	while ((c = getopt(argc, argv, "u:k:n:s:p:")) != -1) {
		if (c == 'u')
			url = optarg;
		else if (c == 'k')
			key = optarg;
		else if (c == 'n')
			agents = (unsigned) atoi(optarg);
		else if (c == 's')
			secs = atof(optarg);
		else if (c == 'p')
			profile = optarg;
	}
	if (url == NULL || key == NULL || sr_init("sr-simagents") != 0 ||
	    sr_trust_cluster_file(&t, key) != 0 ||
	    sr_node_open(&n, SR_ROLE_AGENT, &t) != 0)
		return (2);
	if ((peers = calloc(agents + 1, sizeof(*peers))) == NULL)
		return (2);
	for (unsigned i = 0; i < agents; i++)
		if (sr_node_dial(n, url) != 0)
			return (2);
	for (double end = sr_now() + secs; sr_now() < end;) {
		struct sr_event ev;
		int fds[2];
		struct pollfd pfd[2];

		sr_node_fds(n, fds);
		pfd[0] = (struct pollfd){fds[0], POLLIN, 0};
		pfd[1] = (struct pollfd){fds[1], POLLIN, 0};
		(void) poll(pfd, 2, 50);
		while (sr_node_poll(n, &ev) == 0) {
			if (ev.type == SR_EV_UP && np < agents) {
				ev.peer->user = calloc(1, sizeof(struct sim));
				peers[np++] = ev.peer;
				hello(n, ev.peer, up++);
			} else if (ev.type == SR_EV_MSG) {
				on_msg(n, ev.peer, ev.env, &busy);
				sr_wire_free(ev.env);
			} else if (ev.type == SR_EV_DOWN) {
				for (size_t i = 0; i < np; i++)
					if (peers[i] == ev.peer)
						peers[i] = peers[--np];
				free(ev.peer->user);
				ev.peer->user = NULL;
			}
		}
		for (size_t i = 0; i < np; i++) {
			struct sim *s = peers[i]->user;

			if (s != NULL && sr_now() - s->last_hb >= 1.0) {
				s->last_hb = sr_now();
				beat(n, peers[i], s);
			}
		}
	}
	printf("{\"agents\": %u, \"up\": %u, \"busy\": %u}\n", agents, up,
	       busy);
	sr_node_close(n);
	sr_trust_clear(&t);
	return (0);
}
