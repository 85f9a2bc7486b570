/*
 * agent.c - the agent node: sessions with coordinators, slot offers,
 * results until acknowledged, heartbeats, and the event loop. What each
 * message does is in handlers.c.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "agent_int.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/node.h"
#include "sr/util.h"

extern char **environ;

/* A Result not acknowledged is sent again after four smoothed round trips
 * (at least RESEND_MIN_S), twice as long each time, at most RESEND_MAX_S:
 * a message lost on the way (pair1 drops one when a pipe's queue is full)
 * costs about a round trip, not seconds. */
#define RESEND_MIN_S 0.2
#define RESEND_MAX_S 2.0
#define HANDSHAKE_S  10.0
#define HANGUPS_MAX  3u /* mid-handshake hang-ups before a CI agent gives up */

/* Results may wait in the outbox up to RESULT_HOLD_S while every slot has
 * at least RESULT_HOLD_QUEUED units queued (see hold_results). */
#define RESULT_HOLD_S      0.01
#define RESULT_HOLD_QUEUED 1u

int
sr_ag_send(struct agent *a, struct session *s, Shardrun__Envelope *e)
{
	s->urgent = true;
	return (sr_node_send(a->node, s->peer, e));
}

void
sr_agent_cfg_init(struct sr_agent_cfg *c)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	memset(c, 0, sizeof(*c));
	c->slots = n > 0 ? (unsigned) n : 1;
	c->kill_grace_s = 5.0;
	c->transient_retries = 4;
	c->backoff_s = 0.5;
	c->lost_s = 15.0;
	c->prepare_timeout_s = 600.0;
	c->forkserver = true;
	sr_strv_init(&c->listen);
	sr_strv_init(&c->connect);
}

/* ---- slots and offers ---- */

static bool
exclusive_running(const struct agent *a)
{
	for (unsigned i = 0; i < a->cfg->slots; i++)
		if (a->slots[i].busy && a->slots[i].exclusive)
			return (true);
	return (false);
}

/* The welcomed session with the fewest slots offered or busy for it. */
static struct session *
least_loaded(struct agent *a)
{
	struct session *best = NULL;
	unsigned best_load = UINT_MAX;

	for (struct session *s = a->sessions; s != NULL; s = s->next) {
		unsigned load = s->offered;

		if (!s->welcomed || s->over)
			continue;
		for (unsigned i = 0; i < a->cfg->slots; i++)
			if (a->slots[i].busy && a->slots[i].owner == s)
				load++;
		if (load < best_load) {
			best = s;
			best_load = load;
		}
	}
	return (best);
}

static void
offer(struct agent *a, unsigned slot)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__WorkRequest w = SHARDRUN__WORK_REQUEST__INIT;
	struct session *s;

	if (a->slots[slot].busy || a->offered[slot] ||
	    sr_slot_start_next(&a->slots[slot], &a->senv) ||
	    exclusive_running(a))
		return;
	if ((s = least_loaded(a)) == NULL)
		return;
	w.slot = slot;
	e.body_case = SHARDRUN__ENVELOPE__BODY_WORK_REQUEST;
	e.work_request = &w;
	a->offered[slot] = true;
	a->offer_to[slot] = s;
	s->offered++;
	(void) sr_ag_send(a, s, &e);
}

void
sr_ag_offer_all(struct agent *a)
{
	for (unsigned i = 0; i < a->cfg->slots; i++)
		offer(a, i);
}

void
sr_ag_withdraw(struct agent *a, unsigned slot)
{
	if (!a->offered[slot])
		return;
	a->offer_to[slot]->offered--;
	a->offered[slot] = false;
	a->offer_to[slot] = NULL;
}

/* ---- results ---- */

static int
pend_add(struct session *s, const Shardrun__Result *r)
{
	struct pending *p;

	if (sr_grow(&s->pend, &s->pcap, s->npend, sizeof(*s->pend), 16) != 0)
		return (SR_ENOMEM);
	p = &s->pend[s->npend];
	p->len = shardrun__result__get_packed_size(r);
	if ((p->packed = malloc(p->len ? p->len : 1)) == NULL)
		return (SR_ENOMEM);
	shardrun__result__pack(r, p->packed);
	p->unit = r->unit;
	p->attempt = r->attempt;
	p->index = r->index;
	p->resent = false;
	p->wait = s->srtt > 0 ? 4 * s->srtt : RESEND_MAX_S;
	p->wait = p->wait < RESEND_MIN_S   ? RESEND_MIN_S
	          : p->wait > RESEND_MAX_S ? RESEND_MAX_S
	                                   : p->wait;
	s->npend++;
	return (0);
}

void
sr_ag_acked(struct session *s, const struct pending *p)
{
	double rtt = sr_now() - p->sent;

	if (p->resent) /* which of its sends is acknowledged is not known */
		return;
	s->srtt = s->srtt > 0 ? 0.875 * s->srtt + 0.125 * rtt : rtt;
}

/* A first send may wait in the outbox (hold_results); a resend may not. */
static void
send_result(struct agent *a, struct session *s, struct pending *p)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Result *r = shardrun__result__unpack(NULL, p->len, p->packed);

	p->sent = sr_now();
	if (r == NULL)
		return;
	e.body_case = SHARDRUN__ENVELOPE__BODY_RESULT;
	e.result = r;
	if (p->resent)
		s->urgent = true;
	else if (s->held_since == 0)
		s->held_since = p->sent;
	(void) sr_node_send(a->node, s->peer, &e);
	shardrun__result__free_unpacked(r, NULL);
}

static struct session *
find_session(struct agent *a, const void *owner)
{
	for (struct session *s = a->sessions; s != NULL; s = s->next)
		if (s == owner)
			return (s);
	return (NULL);
}

/* A slot finished a file (r) or its whole unit (r == NULL). */
static void
on_slot_done(void *arg, struct sr_slot *slot, Shardrun__Result *r)
{
	struct agent *a = arg;
	struct session *s = find_session(a, slot->owner);

	if (r == NULL) {
		sr_slot_release(slot);
		sr_ag_offer_all(a); /* starts a queued unit first */
		return;
	}
	if (s == NULL)
		return; /* the run went away meanwhile */
	if (pend_add(s, r) == 0)
		send_result(a, s, &s->pend[s->npend - 1]);
}

/* ---- sessions ---- */

static struct session *
session_new(struct agent *a, struct sr_peer *p)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return (NULL);
	s->peer = p;
	s->hb_s = 1.0;
	s->lost_s = a->cfg->lost_s;
	s->last_hb = sr_now();
	s->next = a->sessions;
	a->sessions = s;
	p->user = s;
	return (s);
}

static void
session_free(struct agent *a, struct session *s)
{
	struct session **pp;

	sr_ag_kill_session_work(a, s);
	s->peer->hold = false;
	for (pp = &a->sessions; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	for (size_t i = 0; i < s->npend; i++)
		free(s->pend[i].packed);
	free(s->pend);
	sr_wscheck_free(&s->check);
	sr_strv_free(&s->run.preload);
	sr_strv_free(&s->run.dirs);
	free(s);
}

static bool
session_idle(const struct agent *a, const struct session *s)
{
	for (unsigned i = 0; i < a->cfg->slots; i++)
		if (a->slots[i].busy && a->slots[i].owner == s)
			return (false);
	return (s->npend == 0 && s->welcomed);
}

static void
on_down(struct agent *a, struct session *s)
{
	/* A coordinator that closes with nothing owed and nothing running has
	 * finished (its Shutdown may have been lost on the way). */
	bool over = s->over || session_idle(a, s);

	sr_info("coordinator %s gone", s->peer->addr);
	session_free(a, s);
	if (a->cfg->once && !over) {
		sr_error("lost the coordinator before the run was over");
		a->status = SR_ECLOSED;
		a->done = true;
	} else if (a->cfg->once) {
		a->done = true;
	}
}

static void
add_running(Shardrun__Heartbeat *h, Shardrun__Running *run, uint32_t unit,
            uint32_t attempt, unsigned slot)
{
	for (size_t i = 0; i < h->n_running; i++)
		if (h->running[i]->unit == unit &&
		    h->running[i]->attempt == attempt)
			return;
	shardrun__running__init(&run[h->n_running]);
	run[h->n_running].unit = unit;
	run[h->n_running].attempt = attempt;
	run[h->n_running].slot = slot;
	h->running[h->n_running] = &run[h->n_running];
	h->n_running++;
}

/* Everything this run's coordinator must not give up on: units running,
 * queued, or whose results are not acknowledged yet. */
static void
collect_running(struct agent *a, struct session *s, Shardrun__Heartbeat *h,
                Shardrun__Running *run)
{
	for (unsigned i = 0; i < a->cfg->slots; i++) {
		struct sr_slot *sl = &a->slots[i];

		if (sl->busy && sl->owner == s && !sl->cancelled)
			add_running(h, run, sl->unit, sl->attempt, i);
		for (unsigned k = 0; k < sl->nnext; k++)
			if (sl->next[k].owner == s)
				add_running(h, run, sl->next[k].unit,
				            sl->next[k].attempt, i);
	}
	for (size_t i = 0; i < s->npend; i++)
		add_running(h, run, s->pend[i].unit, s->pend[i].attempt, 0);
}

static void
heartbeat(struct agent *a, struct session *s)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Heartbeat h = SHARDRUN__HEARTBEAT__INIT;
	size_t cap = a->cfg->slots * (1 + SR_SLOT_QUEUE) + s->npend + 1;
	uint32_t *free_slots = calloc(a->cfg->slots + 1, sizeof(*free_slots));
	Shardrun__Running *run = calloc(cap, sizeof(*run));
	Shardrun__Running **runp = calloc(cap, sizeof(*runp));

	if (free_slots != NULL && run != NULL && runp != NULL) {
		for (unsigned i = 0; i < a->cfg->slots; i++)
			if (a->offered[i] && a->offer_to[i] == s)
				free_slots[h.n_free_slots++] = i;
		h.free_slots = free_slots;
		h.running = runp;
		collect_running(a, s, &h, run);
		h.seq = ++s->hb_seq;
		e.body_case = SHARDRUN__ENVELOPE__BODY_HEARTBEAT;
		e.heartbeat = &h;
		(void) sr_ag_send(a, s, &e);
	}
	free(free_slots);
	free(run);
	free(runp);
}

/* Heartbeats, result resends, silence detection. */
static void
session_timers(struct agent *a, double now)
{
	struct session *s = a->sessions;

	while (s != NULL) {
		struct session *next = s->next;

		if (s->checking)
			sr_ag_check_step(a, s);
		sr_ag_prepare_tick(a, s, now);
		if ((s->welcomed || s->checking || s->preparing) &&
		    now - s->last_hb >= s->hb_s) {
			s->last_hb = now;
			heartbeat(a, s);
		}
		for (size_t i = 0; i < s->npend; i++) {
			struct pending *p = &s->pend[i];

			if (now - p->sent < p->wait)
				continue;
			p->resent = true;
			p->wait = p->wait * 2 < RESEND_MAX_S ? p->wait * 2
			                                     : RESEND_MAX_S;
			send_result(a, s, p);
		}
		if (now - s->peer->last_rx > s->lost_s) {
			sr_warn("coordinator %s silent for %.0fs: stopping "
			        "its work",
			        s->peer->addr, now - s->peer->last_rx);
			sr_node_drop(a->node, s->peer);
			s->peer->last_rx = now; /* drop once */
		}
		s = next;
	}
}

static void
node_events(struct agent *a)
{
	struct sr_event ev;

	while (!a->done && sr_node_poll(a->node, &ev) == 0) {
		if (ev.type == SR_EV_UP) {
			struct session *s = session_new(a, ev.peer);

			a->ever_up = true;
			if (s != NULL)
				sr_ag_send_hello(a, s);
		} else if (ev.type == SR_EV_DOWN && ev.peer->user != NULL) {
			on_down(a, ev.peer->user);
		} else if (ev.type == SR_EV_MSG) {
			if (ev.peer->user != NULL)
				sr_ag_dispatch(a, ev.peer->user, ev.env);
			sr_wire_free(ev.env);
		}
	}
}

static void
spawner_events(struct agent *a)
{
	struct sr_spawn_ev ev;
	int rv;

	while ((rv = sr_spawner_read(a->cfg->spawner, &ev)) == 0) {
		if (ev.type == SR_SPAWN_DROPPED) {
			for (unsigned i = 0; i < a->cfg->slots; i++)
				sr_slot_on_dropped(&a->slots[i], &a->senv,
				                   ev.id);
			sr_ag_offer_all(a);
			continue;
		}
		for (unsigned i = 0; i < a->cfg->slots; i++) {
			struct sr_slot *s = &a->slots[i];

			/* A chained try that ended before its slot took
			 * it over: take it over now. */
			if (!s->busy && s->nahead > 0 &&
			    s->ahead[0].id == ev.id)
				(void) sr_slot_start_next(s, &a->senv);
			if (s->busy && s->phase == PHASE_RUNNING &&
			    s->spawn_id == ev.id) {
				sr_slot_on_exit(s, &a->senv, &ev);
				sr_ag_offer_all(a);
				break;
			}
		}
		for (unsigned i = 0; i < a->cfg->slots; i++)
			if (a->slots[i].fs.spawn_id == ev.id)
				sr_slot_fs_exited(&a->slots[i], &a->senv);
		for (struct session *s = a->sessions; s != NULL; s = s->next) {
			if (s->preparing && s->prep_id == ev.id) {
				sr_ag_prepare_exit(a, s, &ev);
				break;
			}
		}
	}
	if (rv == SR_ECLOSED) {
		sr_error("the spawner process is gone");
		a->status = SR_EIO;
		a->done = true;
	}
}

/* A CI agent that cannot authenticate gives up with a clear error instead
 * of redialling forever; a fleet agent keeps refusing strangers. A
 * coordinator that hangs up mid-handshake again and again (it uses the other
 * kind of key: it cannot even read our hello) is a refusal too. */
static void
check_refused(struct agent *a)
{
	const struct sr_node_stats *st = sr_node_stats(a->node);

	if (!a->cfg->once || a->ever_up)
		return;
	if (st->handshake_hangups >= HANGUPS_MAX) {
		sr_error("the coordinator closed the connection during the "
		         "handshake %u times: it does not accept this agent's "
		         "credentials (a cluster key on one side and node keys "
		         "on the other?)",
		         HANGUPS_MAX);
		a->status = SR_EAUTH;
		a->done = true;
		return;
	}
	if (st->auth_failures > 0 || st->versions > 0 ||
	    st->handshake_failures > 0) {
		sr_error("the coordinator did not accept this agent's "
		         "credentials (%s): check the cluster key or node keys",
		         st->versions > 0 ? "protocol version"
		                          : "authentication");
		a->status = SR_EAUTH;
		a->done = true;
	}
}

/* The fork servers that have something to say. */
static void
forkserver_events(struct agent *a, const struct pollfd *pfd)
{
	for (unsigned i = 0; i < a->cfg->slots; i++)
		if (pfd[i].fd >= 0 && (pfd[i].revents & (POLLIN | POLLHUP))) {
			sr_slot_fs_event(&a->slots[i], &a->senv);
			sr_ag_offer_all(a);
		}
}

/* Whether every slot is busy with at least RESULT_HOLD_QUEUED units queued
 * behind its own: then the coordinator learning of a result a little later
 * idles nothing. */
static bool
work_ahead(const struct agent *a)
{
	for (unsigned i = 0; i < a->cfg->slots; i++)
		if (!a->slots[i].busy || a->slots[i].nnext < RESULT_HOLD_QUEUED)
			return (false);
	return (true);
}

/*
 * Files of a few milliseconds end faster than messages cross nng's threads
 * cheaply (each message wakes several of them). While every slot has work
 * queued, a turn's first sends of Results wait in the outbox, at most
 * RESULT_HOLD_S, and leave together, with whatever else is sent then.
 * Anything else sent in a turn sends the outbox at its end. The poll
 * timeout for the next turn (ms), at most max_ms.
 */
static int
hold_results(struct agent *a, double now, int max_ms)
{
	bool ahead = work_ahead(a);
	int ms = max_ms;

	for (struct session *s = a->sessions; s != NULL; s = s->next) {
		double left = s->held_since + RESULT_HOLD_S - now;

		s->peer->hold =
		    !s->urgent && s->held_since > 0 && left > 0 && ahead;
		if (!s->peer->hold) {
			s->urgent = false;
			s->held_since = 0;
		} else if (left * 1000 + 1 < ms) {
			ms = (int) (left * 1000) + 1;
		}
	}
	return (ms);
}

static void
loop(struct agent *a)
{
	unsigned n = a->cfg->slots;
	struct pollfd *pfd = calloc(3 + n, sizeof(*pfd));
	int fds[2];
	int timeout = 20; /* ms; shorter while Results are held */

	if (pfd == NULL) {
		a->status = SR_ENOMEM;
		return;
	}
	sr_node_fds(a->node, fds);
	pfd[0] = (struct pollfd){fds[0], POLLIN, 0};
	pfd[1] = (struct pollfd){fds[1], POLLIN, 0};
	pfd[2] = (struct pollfd){sr_spawner_fd(a->cfg->spawner), POLLIN, 0};
	while (!a->done && !(a->cfg->stop && *a->cfg->stop)) {
		double now;

		for (unsigned i = 0; i < n; i++)
			pfd[3 + i] = (struct pollfd){
			    sr_forksrv_fd(&a->slots[i].fs), POLLIN, 0};
		(void) poll(pfd, 3 + n, timeout);
		node_events(a);
		spawner_events(a);
		forkserver_events(a, pfd + 3);
		now = sr_now();
		for (unsigned i = 0; i < n; i++)
			sr_slot_tick(&a->slots[i], &a->senv, now);
		session_timers(a, now);
		sr_node_expire(a->node, now, HANDSHAKE_S);
		check_refused(a);
		timeout = hold_results(a, now, 20);
		sr_node_flush(a->node);
	}
	free(pfd);
}

static int
agent_init(struct agent *a, const struct sr_agent_cfg *c)
{
	int rv = 0;

	memset(a, 0, sizeof(*a));
	a->cfg = c;
	a->next_spawn_id = 1;
	a->slots = calloc(c->slots, sizeof(*a->slots));
	a->offered = calloc(c->slots, sizeof(*a->offered));
	a->offer_to = calloc(c->slots, sizeof(*a->offer_to));
	if (a->slots == NULL || a->offered == NULL || a->offer_to == NULL)
		return (SR_ENOMEM);
	for (unsigned i = 0; i < c->slots; i++) {
		a->slots[i].index = i;
		a->slots[i].fs.fd = a->slots[i].fs.lfd = -1;
	}
	sr_strv_init(&a->env);
	/* Tests get the agent's environment, less its secrets. */
	for (char **e = environ; e != NULL && *e != NULL && rv == 0; e++)
		if (strncmp(*e, "SHARDRUN_CLUSTER_KEY=", 21) != 0)
			rv = sr_strv_push(&a->env, *e);
	snprintf(a->tmp_root, sizeof(a->tmp_root), "%s/shardrun-%ld-%p",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long) getpid(),
	         (void *) a);
	if (rv == 0)
		rv = sr_mkdirs(a->tmp_root, 0700);
	a->senv = (struct sr_slot_env){
	    c, a->tmp_root, &a->env, &a->next_spawn_id, on_slot_done, a, {0}};
	sr_slot_hold_mask(c->profile, a->senv.hold);
	return (rv);
}

static void
agent_fini(struct agent *a)
{
	while (a->sessions != NULL)
		session_free(a, a->sessions);
	for (unsigned i = 0; a->slots != NULL && i < a->cfg->slots; i++) {
		sr_slot_fs_stop(&a->slots[i], NULL);
		if (a->slots[i].busy)
			sr_slot_release(&a->slots[i]);
	}
	(void) sr_spawner_sweep(a->cfg->spawner);
	/* Let the last frames (a refusal, final results) leave; after a
	 * completed run the coordinator has everything and waits for none. */
	if (a->node != NULL) {
		sr_node_flush(a->node);
		if (!a->complete)
			nng_msleep(100);
	}
	sr_node_close(a->node);
	if (a->tmp_root[0] != '\0')
		(void) sr_rmtree(a->tmp_root);
	sr_strv_free(&a->env);
	free(a->slots);
	free(a->offered);
	free(a->offer_to);
}

static int
agent_connect(struct agent *a)
{
	const struct sr_agent_cfg *c = a->cfg;
	int rv;

	if ((rv = sr_node_open(&a->node, SR_ROLE_AGENT, c->trust)) != 0)
		return (rv);
	for (size_t i = 0; i < c->listen.n; i++)
		if ((rv = sr_node_listen(a->node, c->listen.v[i])) != 0)
			return (rv);
	for (size_t i = 0; i < c->connect.n; i++)
		if ((rv = sr_node_dial(a->node, c->connect.v[i])) != 0)
			return (rv);
	return (0);
}

int
sr_agent_run(const struct sr_agent_cfg *c)
{
	struct agent a;
	int rv;

	if ((rv = agent_init(&a, c)) == 0 && (rv = agent_connect(&a)) == 0) {
		loop(&a);
		rv = a.status;
	}
	agent_fini(&a);
	return (rv);
}
