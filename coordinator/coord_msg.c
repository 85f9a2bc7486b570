/*
 * coord_msg.c - what the coordinator does with each message from an agent.
 *
 * Messages dispatch through one table {type, handler, needs_hello}; the
 * node layer has already authenticated the session, and a handler that
 * needs the agent's Hello never runs before it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_int.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

/* ---- messages from agents ---- */

static void
send_refuse(struct coord *c, struct arec *a, const char *why)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Refuse r = SHARDRUN__REFUSE__INIT;

	r.reason = (char *) why;
	r.file = "";
	e.body_case = SHARDRUN__ENVELOPE__BODY_REFUSE;
	e.refuse = &r;
	(void) sr_co_send(c, a, &e);
}

/* The workspace fingerprint: the commit and every file's hash, as long
 * as the list fits comfortably in one frame. */
#define FINGERPRINT_MAX_FILES 100000

static void
welcome_fingerprint(struct coord *c, Shardrun__Welcome *w,
                    Shardrun__FileHash *fh, Shardrun__FileHash **fhp)
{
	w->commit = (char *) (c->cfg->commit ? c->cfg->commit : "");
	if (c->cfg->hashes == NULL || c->suite->n > FINGERPRINT_MAX_FILES)
		return;
	for (size_t i = 0; i < c->suite->n; i++) {
		shardrun__file_hash__init(&fh[i]);
		fh[i].path = c->suite->files[i].path;
		fh[i].hash.data = c->cfg->hashes[i];
		fh[i].hash.len = 32;
		fhp[i] = &fh[i];
	}
	w->files = fhp;
	w->n_files = c->suite->n;
}

static void
send_welcome(struct coord *c, struct arec *a)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Welcome w = SHARDRUN__WELCOME__INIT;
	size_t n = c->suite->n ? c->suite->n : 1;
	Shardrun__FileHash *fh = calloc(n, sizeof(*fh));
	Shardrun__FileHash **fhp = calloc(n, sizeof(*fhp));

	w.run_id.data = c->run_id;
	w.run_id.len = sizeof(c->run_id);
	w.heartbeat_ms = (uint32_t) (c->cfg->heartbeat_s * 1000);
	w.lease_ms = (uint32_t) (c->cfg->lease_s * 1000);
	w.profile = (char *) c->cfg->profile->name;
	w.kill_grace_ms = (uint32_t) (c->cfg->kill_grace_s * 1000);
	if (fh != NULL && fhp != NULL)
		welcome_fingerprint(c, &w, fh, fhp);
	w.forkserver = c->cfg->forkserver;
	if (c->cfg->preload != NULL) {
		w.preload = c->cfg->preload->v;
		w.n_preload = c->cfg->preload->n;
		w.preload_dirs = c->cfg->preload_dirs->v;
		w.n_preload_dirs = c->cfg->preload_dirs->n;
	}
	w.configurations = c->cfg->configurations;
	e.body_case = SHARDRUN__ENVELOPE__BODY_WELCOME;
	e.welcome = &w;
	(void) sr_co_send(c, a, &e);
	free(fh);
	free(fhp);
}

/* Names identify agents in reports: make them unique within the run. */
static void
unique_name(struct coord *c, struct arec *a, const char *want)
{
	unsigned n = 1;
	bool clash;

	snprintf(a->name, sizeof(a->name), "%.80s", want[0] ? want : "agent");
	do {
		clash = false;
		for (struct arec *o = c->agents; o != NULL; o = o->next)
			if (o != a && strcmp(o->name, a->name) == 0)
				clash = true;
		if (clash)
			snprintf(a->name, sizeof(a->name), "%.80s#%u",
			         want[0] ? want : "agent", ++n);
	} while (clash);
}

static void
on_hello(struct coord *c, struct arec *a, const Shardrun__Envelope *env)
{
	const Shardrun__Hello *h = env->hello;

	if (a->hello || a->waiting != NULL)
		return; /* one Hello per session */
	if (h->slots == 0 || h->slots > 4096) {
		send_refuse(c, a, "slot count out of range (1..4096)");
		return;
	}
	if (strcmp(h->profile, c->cfg->profile->name) != 0) {
		sr_error("agent %s runs profile %s, the run needs %s",
		         a->peer->addr, h->profile, c->cfg->profile->name);
		send_refuse(c, a, "the run uses another profile");
		return;
	}
	if ((a->waiting = calloc(h->slots, sizeof(*a->waiting))) == NULL ||
	    (a->depth = calloc(h->slots, sizeof(*a->depth))) == NULL ||
	    (a->last = calloc(h->slots, sizeof(*a->last))) == NULL)
		return;
	/* Affinity: only where fork servers keep configurations. */
	if (c->cfg->forkserver && !h->forkserver_off &&
	    c->cfg->configurations > 1 &&
	    ((a->held = calloc(h->slots, sizeof(*a->held))) == NULL ||
	     (a->freed = calloc(h->slots, sizeof(*a->freed))) == NULL ||
	     (a->waited = calloc(h->slots, sizeof(*a->waited))) == NULL))
		return;
	a->slots = h->slots;
	a->queue = h->queue > 0 ? h->queue : 3;
	a->chains = !(c->cfg->forkserver && !h->forkserver_off &&
	              strcmp(c->cfg->profile->name, "pytest") == 0);
	a->hello = true;
	unique_name(c, a, h->name);
	c->nagents++;
	c->prog.slots += a->slots;
	if (c->prog.slots > c->max_slots)
		c->max_slots = c->prog.slots;
	sr_info("agent %s joined from %s with %u slots%s", a->name,
	        a->peer->addr, a->slots,
	        h->forkserver_off ? ", without fork servers" : "");
	send_welcome(c, a);
}

static void
on_work_request(struct coord *c, struct arec *a, const Shardrun__Envelope *env)
{
	unsigned slot = env->work_request->slot;

	(void) c;
	if (slot >= a->slots)
		return;
	a->waiting[slot] = true;
}

/* Acknowledged in the turn's Batch (sr_co_flush). */
static void
ack(struct coord *c, struct arec *a, const Shardrun__Result *r)
{
	(void) c;
	if (sr_grow(&a->acks, &a->ackcap, a->nacks, sizeof(*a->acks), 16) != 0)
		return; /* the agent resends; the next turn acknowledges it */
	shardrun__result_ack__init(&a->acks[a->nacks]);
	a->acks[a->nacks].unit = r->unit;
	a->acks[a->nacks].attempt = r->attempt;
	a->acks[a->nacks].index = r->index;
	a->nacks++;
}

/* Add the attempt to its file and, if judge, decide what it means. */
static void
record(struct coord *c, struct arec *a, struct sr_unit *u,
       const Shardrun__Result *r, bool judge)
{
	struct sr_attempt at = {0};
	size_t file = sr_unit_file(u, r->index);
	int rv;

	at.outcome = r->outcome;
	at.tries = r->tries;
	at.start_s = u->dispatched - c->t0 + r->start_us / 1e6;
	at.duration_s = r->duration_us / 1e6;
	at.exit_code = r->exit_code;
	at.signal = (int) r->signal;
	at.agent = a->name;
	at.slot = (int) u->slot;
	at.tail = r->output_tail.len ? strndup((char *) r->output_tail.data,
	                                       r->output_tail.len)
	                             : NULL;
	at.junit = r->junit_xml.len ? (char *) r->junit_xml.data : NULL;
	at.junit_len = r->junit_xml.len;
	at.message = r->message[0] ? r->message : NULL;
	at.part = sr_unit_part(u);
	at.bundled = r->bundled && sr_unit_bundle(u); /* else: ran alone */
	at.parse_s = fmin(r->parse_us / 1e6, at.duration_s);
	sr_co_learn_parse(c, c->suite->files[file].config, at.parse_s);
	rv = sr_file_add_attempt(&c->suite->files[file], &at);
	free(at.tail);
	if (rv != 0) {
		sr_error("out of memory recording a result");
		return;
	}
	if (judge)
		sr_co_judge(c, u, file, a);
}

static void
on_result(struct coord *c, struct arec *a, const Shardrun__Envelope *env)
{
	const Shardrun__Result *r = env->result;
	struct sr_unit *u = sr_plan_unit(&c->plan, r->unit);
	bool outlived;

	ack(c, a, r);
	if (u == NULL || u->state != SR_UNIT_RUNNING || u->agent != a ||
	    u->attempt != r->attempt || r->index >= u->nfiles ||
	    *sr_unit_got(u, r->index) ||
	    strcmp(r->file, c->suite->files[sr_unit_file(u, r->index)].path) !=
	        0) {
		sr_debug("late or duplicate result for unit %u ignored",
		         r->unit);
		return;
	}
	*sr_unit_got(u, r->index) = true;
	u->ngot++;
	/* No verdict while its twin runs: u is over, the twin decides. */
	outlived = sr_co_twin_outlives(c, u, r->outcome);
	if (!outlived)
		sr_co_twin_result(c, u, r->outcome);
	record(c, a, u, r, !outlived);
	if (!outlived && u->ngot == u->nfiles)
		sr_co_unit_done(c, u);
}

static bool
listed_running(const Shardrun__Heartbeat *h, const struct sr_unit *u)
{
	for (size_t i = 0; i < h->n_running; i++)
		if (h->running[i]->unit == u->id &&
		    h->running[i]->attempt == u->attempt)
			return (true);
	return (false);
}

static bool
listed_free(const Shardrun__Heartbeat *h, unsigned slot)
{
	for (size_t i = 0; i < h->n_free_slots; i++)
		if (h->free_slots[i] == slot)
			return (true);
	return (false);
}

/*
 * The agent's heartbeat is its whole state: the units it runs, has queued,
 * or still owes results for, and the slots it offers us. A unit it does not
 * know after a grace period lost its Assignment on the way and is queued
 * again (no restart counted); the offered slots replace what lost or
 * withdrawn WorkRequests left behind.
 */
static void
on_heartbeat(struct coord *c, struct arec *a, const Shardrun__Envelope *env)
{
	const Shardrun__Heartbeat *h = env->heartbeat;
	double now = sr_now();

	for (size_t k = 0; k < a->nrunning;) {
		struct sr_unit *u = sr_plan_unit(&c->plan, a->running[k]);

		if (now - u->dispatched > LOST_ASSIGNMENT_S &&
		    !listed_running(h, u)) {
			sr_info("agent %s does not know unit %u: requeued",
			        a->name, u->id);
			if (!sr_co_twin_drop(c, u)) {
				sr_co_unit_done(c, u); /* off a->running */
				sr_plan_push(&c->plan, u);
			}
			continue;
		}
		k++;
	}
	for (unsigned s = 0; s < a->slots; s++)
		if (a->depth[s] == 0)
			a->waiting[s] = listed_free(h, s);
	sr_co_recancel(c, a, h);
}

/* The agent did not take an assignment (slot busy, invalid). */
static void
on_cancel(struct coord *c, struct arec *a, const Shardrun__Envelope *env)
{
	struct sr_unit *u = sr_plan_unit(&c->plan, env->cancel->unit);

	if (u == NULL || u->state != SR_UNIT_RUNNING || u->agent != a ||
	    u->attempt != env->cancel->attempt || u->ngot > 0)
		return;
	sr_warn("agent %s declined unit %u: requeued", a->name, u->id);
	if (sr_co_twin_drop(c, u))
		return;
	sr_co_unit_done(c, u);
	sr_plan_push(&c->plan, u);
}

static void
on_refuse(struct coord *c, struct arec *a, const Shardrun__Envelope *env)
{
	sr_error("agent %s refused the run: %s%s%s", a->name,
	         env->refuse->reason, env->refuse->file[0] ? ": " : "",
	         env->refuse->file);
	sr_co_agent_lost(c, a, "refused");
	sr_node_forget(c->node, a->peer);
}

typedef void (*handler_fn)(struct coord *, struct arec *,
                           const Shardrun__Envelope *);

static const struct {
	Shardrun__Envelope__BodyCase type;
	handler_fn fn;
	bool needs_hello;
} handlers[] = {
    {SHARDRUN__ENVELOPE__BODY_HELLO, on_hello, false},
    {SHARDRUN__ENVELOPE__BODY_WORK_REQUEST, on_work_request, true},
    {SHARDRUN__ENVELOPE__BODY_RESULT, on_result, true},
    {SHARDRUN__ENVELOPE__BODY_HEARTBEAT, on_heartbeat, true},
    {SHARDRUN__ENVELOPE__BODY_CANCEL, on_cancel, true},
    {SHARDRUN__ENVELOPE__BODY_REFUSE, on_refuse, true},
};

void
sr_co_handle(struct coord *c, struct arec *a, const Shardrun__Envelope *env)
{
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
		if (handlers[i].type != env->body_case)
			continue;
		if (!handlers[i].needs_hello || a->hello)
			handlers[i].fn(c, a, env);
		return;
	}
	sr_debug("unexpected %s from %s dropped", sr_wire_kind(env),
	         a->peer->addr);
}
