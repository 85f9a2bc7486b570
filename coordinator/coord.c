/*
 * coord.c - the coordinator's sessions, leases and event loop. Dispatch
 * and final results are in coord_units.c, message handlers in coord_msg.c.
 */
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "coord_int.h"
#include "bundle.h"
#include "split.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/node.h"
#include "sr/util.h"

int
sr_co_send(struct coord *c, struct arec *a, Shardrun__Envelope *e)
{
	return (sr_node_send(c->node, a->peer, e));
}

void
sr_coord_cfg_init(struct sr_coord_cfg *c)
{
	memset(c, 0, sizeof(*c));
	sr_strv_init(&c->listen);
	sr_strv_init(&c->agents);
	c->agents_min = 1;
	c->wait_s = 60;
	c->orphan_wait_s = 60;
	c->max_restarts = 2;
	c->heartbeat_s = 1.0;
	c->lease_s = 10.0;
	c->kill_grace_s = 5.0;
}

/* ---- sessions and the loop ---- */

/* One Assignment for a unit assigned this turn (files point into the
 * suite; the files array is the caller's to free). */
static bool
fill_assignment(struct coord *c, struct arec *a, uint32_t id,
                Shardrun__Assignment *as)
{
	struct sr_unit *u = sr_plan_unit(&c->plan, id);
	char **files;

	if (u == NULL || u->state != SR_UNIT_RUNNING || u->agent != a ||
	    (files = malloc(u->nfiles * sizeof(*files))) == NULL)
		return (false);
	for (size_t i = 0; i < u->nfiles; i++)
		files[i] = c->suite->files[sr_unit_file(u, i)].path;
	shardrun__assignment__init(as);
	as->unit = u->id;
	as->attempt = u->attempt;
	as->slot = u->slot;
	as->files = files;
	as->n_files = u->nfiles;
	if (sr_unit_selectors(u) != NULL) {
		as->selectors = sr_unit_selectors(u)->v;
		as->n_selectors = sr_unit_selectors(u)->n;
	}
	/* Per file; a bundle, estimated under --bundle S in all, gets it as
	 * a whole (timed out, its files run alone with their own). */
	as->timeout_ms = c->cfg->timeout_s < 4e6
	                     ? (uint32_t) (c->cfg->timeout_s * 1000)
	                     : 4000000000u;
	as->exclusive = u->exclusive;
	as->bundle = sr_unit_bundle(u);
	as->kill_grace_ms = c->cfg->kill_grace_s < 4e6
	                        ? (uint32_t) (c->cfg->kill_grace_s * 1000) + 1
	                        : 4000000000u;
	return (true);
}

static void
flush_agent(struct coord *c, struct arec *a)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Batch b = SHARDRUN__BATCH__INIT;
	Shardrun__Assignment *as = calloc(a->nout + 1, sizeof(*as));
	Shardrun__Assignment **asp = calloc(a->nout + 1, sizeof(*asp));
	Shardrun__ResultAck **ackp = calloc(a->nacks + 1, sizeof(*ackp));
	Shardrun__Cancel **cancp = calloc(a->ncancels + 1, sizeof(*cancp));

	for (size_t i = 0; as != NULL && asp != NULL && i < a->nout; i++)
		if (fill_assignment(c, a, a->out_units[i],
		                    &as[b.n_assignments]))
			asp[b.n_assignments] = &as[b.n_assignments],
			b.n_assignments++;
	for (size_t i = 0; ackp != NULL && i < a->nacks; i++)
		ackp[b.n_acks++] = &a->acks[i];
	for (size_t i = 0; cancp != NULL && i < a->ncancels; i++)
		cancp[b.n_cancels++] = &a->cancels[i];
	b.assignments = asp;
	b.acks = ackp;
	b.cancels = cancp;
	e.body_case = SHARDRUN__ENVELOPE__BODY_BATCH;
	e.batch = &b;
	if (b.n_assignments + b.n_acks + b.n_cancels > 0)
		(void) sr_co_send(c, a, &e);
	for (size_t i = 0; as != NULL && i < b.n_assignments; i++)
		free(as[i].files);
	free(as);
	free(asp);
	free(ackp);
	free(cancp);
	a->nout = a->nacks = a->ncancels = 0;
}

void
sr_co_flush(struct coord *c)
{
	for (struct arec *a = c->agents; a != NULL; a = a->next)
		if (a->nout + a->nacks + a->ncancels > 0)
			flush_agent(c, a);
}

static struct arec *
arec_new(struct coord *c, struct sr_peer *p)
{
	struct arec *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return (NULL);
	a->peer = p;
	snprintf(a->name, sizeof(a->name), "%s", p->addr);
	a->next = c->agents;
	c->agents = a;
	p->user = a;
	return (a);
}

static void
arec_free(struct coord *c, struct arec *a)
{
	for (struct arec **pp = &c->agents; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	free(a->waiting);
	free(a->running);
	free(a->depth);
	free(a->last);
	free(a->held);
	free(a->freed);
	free(a->waited);
	free(a->out_units);
	free(a->acks);
	free(a->cancels);
	free(a);
}

static void
node_events(struct coord *c)
{
	struct sr_event ev;

	while (sr_node_poll(c->node, &ev) == 0) {
		struct arec *a = ev.peer->user;

		if (ev.type == SR_EV_UP) {
			(void) arec_new(c, ev.peer);
		} else if (ev.type == SR_EV_DOWN && a != NULL) {
			sr_co_agent_lost(c, a, "connection closed");
			arec_free(c, a);
		} else if (ev.type == SR_EV_MSG) {
			if (a != NULL)
				sr_co_handle(c, a, ev.env);
			sr_wire_free(ev.env);
		}
	}
}

static void
heartbeats(struct coord *c, double now)
{
	static double last;
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Heartbeat h = SHARDRUN__HEARTBEAT__INIT;

	if (now - last < c->cfg->heartbeat_s)
		return;
	last = now;
	e.body_case = SHARDRUN__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &h;
	for (struct arec *a = c->agents; a != NULL; a = a->next) {
		if (a->hello && now - a->peer->last_rx > c->cfg->lease_s) {
			char why[64];

			snprintf(why, sizeof(why), "silent for %.1fs",
			         now - a->peer->last_rx);
			sr_co_agent_lost(c, a, why);
			sr_node_drop(c->node, a->peer);
		} else if (a->hello) {
			(void) sr_co_send(c, a, &e);
		}
	}
}

/* Every file still without a result ends as an error. */
static void
fail_remaining(struct coord *c, const char *why)
{
	for (size_t i = 0; i < c->suite->n; i++) {
		struct sr_file *f = &c->suite->files[i];
		struct sr_attempt at = {0};

		if (f->final != SR_FINAL_PENDING)
			continue;
		at.outcome = SHARDRUN__OUTCOME__ERROR;
		at.exit_code = -1;
		at.message = (char *) why;
		(void) sr_file_add_attempt(f, &at);
		sr_co_set_final(c, f, SR_FINAL_ERROR);
	}
}

/* After dispatch began: with no agent left for orphan_wait_s, give up. */
static void
check_orphaned(struct coord *c, double now)
{
	if (!c->dispatching || c->nagents > 0) {
		c->alone_since = 0;
		return;
	}
	if (c->alone_since == 0)
		c->alone_since = now;
	if (now - c->alone_since < c->cfg->orphan_wait_s)
		return;
	sr_error("no agent left to run the remaining files (waited %.0fs)",
	         c->cfg->orphan_wait_s);
	fail_remaining(c, "no agent left to run it");
	c->status = SR_EIO;
}

static void
start_dispatch(struct coord *c, double now)
{
	if (c->dispatching)
		return;
	if (c->nagents >= c->cfg->agents_min) {
		c->dispatching = true;
	} else if (now >= c->wait_until) {
		if (c->nagents == 0) {
			sr_error("no agent joined within %.0fs",
			         c->cfg->wait_s);
			c->status = SR_ETIMEOUT;
			return;
		}
		sr_warn("only %u of %u agents joined within %.0fs; starting",
		        c->nagents, c->cfg->agents_min, c->cfg->wait_s);
		c->dispatching = true;
	}
	if (!c->dispatching)
		return;
	if (c->cfg->split) {
		struct sr_split_cfg sc = {c->cfg->workspace, c->cfg->python,
		                          c->prog.slots, 5.0, c->cfg->history};

		/* pytest lists the long files' test ids while the slots
		 * start on the other files (sr_split_poll each turn). */
		(void) sr_split_begin(&c->split, &c->plan, c->suite, &sc);
	}
	if (c->cfg->bundle_s > 0)
		(void) sr_bundle_short(&c->plan, c->suite, c->cfg->bundle_s,
		                       c->prog.slots);
	sr_plan_compact(&c->plan);
	c->t0 = c->prog.t0 = sr_now();
}

static void
shutdown_all(struct coord *c, bool done, const char *why)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Shutdown s = SHARDRUN__SHUTDOWN__INIT;

	sr_co_flush(c); /* the last acknowledgements first */
	s.reason = (char *) why;
	s.done = done;
	e.body_case = SHARDRUN__ENVELOPE__BODY_SHUTDOWN;
	e.shutdown = &s;
	for (struct arec *a = c->agents; a != NULL; a = a->next)
		(void) sr_co_send(c, a, &e);
	sr_node_flush(c->node);
}

static void
loop(struct coord *c)
{
	struct pollfd pfd[2];
	int fds[2];

	sr_node_fds(c->node, fds);
	pfd[0] = (struct pollfd){fds[0], POLLIN, 0};
	pfd[1] = (struct pollfd){fds[1], POLLIN, 0};
	while (c->nfinal < c->suite->n && c->status == 0) {
		double now;

		if (c->cfg->interrupted && *c->cfg->interrupted) {
			c->status = SR_ECLOSED;
			break;
		}
		(void) poll(pfd, 2, 20);
		node_events(c);
		now = sr_now();
		start_dispatch(c, now);
		(void) sr_split_poll(&c->split, &c->plan, c->suite);
		heartbeats(c, now);
		check_orphaned(c, now);
		sr_node_expire(c->node, now, HANDSHAKE_S);
		sr_co_dispatch(c);
		sr_co_flush(c);
		sr_node_flush(c->node);
		if (c->dispatching)
			sr_progress_tick(&c->prog, now);
	}
}

/*
 * Let the shutdown frames leave before the socket closes: until every agent
 * has hung up (each does on its Shutdown), at most limit_s. What arrives
 * meanwhile is dropped: the run is over.
 */
static void
linger(struct coord *c, double limit_s)
{
	double end = sr_now() + limit_s;
	struct pollfd pfd[2];
	int fds[2];

	sr_node_fds(c->node, fds);
	pfd[0] = (struct pollfd){fds[0], POLLIN, 0};
	pfd[1] = (struct pollfd){fds[1], POLLIN, 0};
	for (double now = sr_now(); c->agents != NULL && now < end;
	     now = sr_now()) {
		struct sr_event ev;

		(void) poll(pfd, 2, (int) ((end - now) * 1000) + 1);
		while (sr_node_poll(c->node, &ev) == 0) {
			if (ev.type == SR_EV_DOWN && ev.peer->user != NULL)
				arec_free(c, ev.peer->user);
			else if (ev.type == SR_EV_MSG)
				sr_wire_free(ev.env);
		}
	}
}

static int
coord_open(struct coord *c)
{
	const struct sr_coord_cfg *cfg = c->cfg;
	int rv;

	if ((rv = sr_node_open(&c->node, SR_ROLE_COORDINATOR, cfg->trust)) != 0)
		return (rv);
	for (size_t i = 0; i < cfg->listen.n; i++)
		if ((rv = sr_node_listen(c->node, cfg->listen.v[i])) != 0)
			return (rv);
	for (size_t i = 0; i < cfg->agents.n; i++)
		if ((rv = sr_node_dial(c->node, cfg->agents.v[i])) != 0)
			return (rv);
	return (0);
}

/* The bound over what actually ran: every unit weighs its final attempt's
 * duration (each part of a split file apart), the serial group the sum of
 * its files. */
static double
measured_bound(const struct sr_suite *s, unsigned slots)
{
	size_t cap = s->n + 1;
	double *w = malloc(cap * sizeof(*w));
	double serial = 0, lb;
	size_t n = 0;

	for (size_t i = 0; i < s->n && w != NULL; i++) {
		const struct sr_file *f = &s->files[i];

		uint32_t np = sr_file_nparts(f);

		for (uint32_t p = 0; p < (np ? np : 1); p++) {
			const struct sr_attempt *at =
			    np ? sr_file_part_last(f, p) : sr_file_last(f);
			double d = at != NULL ? at->duration_s : 0;

			if (f->serial)
				serial += d;
			else if (sr_grow(&w, &cap, n, sizeof(*w), 16) == 0)
				w[n++] = d;
		}
	}
	if (w == NULL || sr_grow(&w, &cap, n, sizeof(*w), 16) != 0) {
		free(w);
		return (0);
	}
	w[n++] = serial;
	lb = sr_lower_bound(w, n, slots ? slots : 1);
	free(w);
	return (lb);
}

static void
fill_info(struct coord *c, struct sr_run_info *ri)
{
	double start, end, work;

	ri->makespan_s = 0;
	sr_hex(c->run_id, sizeof(c->run_id), ri->run_id);
	for (size_t i = 0; i < c->suite->n; i++)
		if (sr_file_span(&c->suite->files[i], &start, &end, &work) &&
		    end > ri->makespan_s)
			ri->makespan_s = end;
	ri->slots = c->max_slots;
	ri->lower_bound_s = measured_bound(c->suite, ri->slots);
	ri->interrupted = c->status == SR_ECLOSED;
	ri->backups = c->nbackups;
	ri->backup_wins = c->nbackup_wins;
	ri->messages_in = c->node ? sr_node_stats(c->node)->messages_in : 0;
	ri->messages_out = c->node ? sr_node_stats(c->node)->messages_out : 0;
}

int
sr_coord_run(const struct sr_coord_cfg *cfg, struct sr_run_info *ri)
{
	struct coord c;
	int rv;

	memset(&c, 0, sizeof(c));
	c.cfg = cfg;
	c.suite = cfg->suite;
	sr_random(c.run_id, sizeof(c.run_id));
	sr_plan_init(&c.plan);
	sr_progress_init(&c.prog, cfg->suite, cfg->tty, cfg->color);
	c.wait_until = sr_now() + cfg->wait_s;
	if ((rv = sr_plan_build(&c.plan, c.suite)) == 0 &&
	    (rv = coord_open(&c)) == 0) {
		loop(&c);
		sr_split_stop(&c.split, &c.plan);
		rv = c.status;
		shutdown_all(&c, rv == 0,
		             rv == 0 ? "run complete" : "run aborted");
	}
	sr_progress_end(&c.prog);
	fill_info(&c, ri);
	if (c.node != NULL)
		linger(&c, LINGER_S);
	while (c.agents != NULL)
		arec_free(&c, c.agents);
	sr_node_close(c.node);
	sr_plan_free(&c.plan);
	free(c.twins);
	return (rv);
}
