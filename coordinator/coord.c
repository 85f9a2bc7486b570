/*
 * coord.c - the coordinator's event loop: sessions, dispatch, results.
 *
 * Messages from agents dispatch through one table {type, handler,
 * needs_hello}; the node layer has already authenticated the session, and
 * a handler that needs the agent's Hello never runs before it.
 */
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "coord.h"
#include "plan.h"
#include "progress.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/node.h"
#include "sr/util.h"

#define HANDSHAKE_S       10.0
#define LOST_ASSIGNMENT_S 5.0

struct arec {
	struct sr_peer *peer;
	char name[96];
	bool hello;
	unsigned slots;
	bool *waiting;     /* per slot: asked for work */
	uint32_t *running; /* ids of the units running there */
	size_t nrunning;
	size_t runcap;
	bool exclusive; /* an exclusive unit runs there */
	bool draining;  /* takes nothing until idle (for an exclusive) */
	uint8_t *depth; /* per slot: units assigned and not done */
	uint32_t *last; /* per slot: the unit assigned last */
	struct arec *next;
};

/* Units estimated shorter than this may be queued behind a running one. */
#define PREFETCH_S 0.5

struct coord {
	const struct sr_coord_cfg *cfg;
	struct sr_suite *suite;
	struct sr_node *node;
	struct sr_plan plan;
	struct arec *agents;
	unsigned nagents;
	uint8_t run_id[16];
	double t0;
	double wait_until;
	bool dispatching;
	bool serial_running;
	double alone_since; /* no agent connected since then */
	size_t nfinal;
	unsigned max_slots; /* most slots connected at once */
	struct sr_progress prog;
	int status;
};

static int
send_to(struct coord *c, struct arec *a, Shardrun__Envelope *e)
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

/* ---- final results ---- */

static bool
failed_before(const struct sr_file *f)
{
	for (size_t i = 0; i + 1 < f->natt; i++)
		if (f->att[i].outcome != SHARDRUN__OUTCOME__PASSED &&
		    f->att[i].outcome != SHARDRUN__OUTCOME__NO_TESTS)
			return (true);
	return (false);
}

static void
set_final(struct coord *c, struct sr_file *f, int final)
{
	f->final = final;
	c->nfinal++;
	sr_progress_file(&c->prog, f);
}

static void
requeue(struct coord *c, size_t file, bool serial, const char *avoid)
{
	uint32_t id;
	struct sr_unit *u;

	if (sr_plan_add(&c->plan, c->suite, &file, 1, serial, &id) != 0) {
		sr_error("out of memory requeueing %s",
		         c->suite->files[file].path);
		set_final(c, &c->suite->files[file], SR_FINAL_ERROR);
		return;
	}
	u = sr_plan_unit(&c->plan, id);
	if (avoid != NULL)
		u->avoid = strdup(avoid);
}

/* Decide what one attempt means for its file. */
static void
judge(struct coord *c, struct sr_unit *u, size_t file, struct arec *a)
{
	struct sr_file *f = &c->suite->files[file];
	const struct sr_attempt *at = sr_file_last(f);

	switch (at->outcome) {
	case SHARDRUN__OUTCOME__PASSED:
	case SHARDRUN__OUTCOME__NO_TESTS:
		set_final(c, f,
		          failed_before(f) ? SR_FINAL_FLAKY : SR_FINAL_PASSED);
		break;
	case SHARDRUN__OUTCOME__FAILED:
		if (f->reruns < c->cfg->reruns) {
			f->reruns++;
			requeue(c, file, u->serial, NULL);
		} else {
			set_final(c, f, SR_FINAL_FAILED);
		}
		break;
	case SHARDRUN__OUTCOME__CRASHED:
		if (f->restarts < c->cfg->max_restarts) {
			f->restarts++;
			requeue(c, file, u->serial, a->name);
		} else {
			set_final(c, f, SR_FINAL_CRASHED);
		}
		break;
	case SHARDRUN__OUTCOME__TIMEOUT:
		set_final(c, f, SR_FINAL_TIMEOUT);
		break;
	default:
		set_final(c, f, SR_FINAL_ERROR);
		break;
	}
}

/* ---- units and agents ---- */

static void
unit_done(struct coord *c, struct sr_unit *u)
{
	struct arec *a = u->agent;

	u->state = SR_UNIT_DONE;
	u->agent = NULL;
	if (u->serial)
		c->serial_running = false;
	if (a != NULL) {
		for (size_t i = 0; i < a->nrunning; i++) {
			if (a->running[i] == u->id) {
				a->running[i] = a->running[--a->nrunning];
				break;
			}
		}
		if (u->exclusive)
			a->exclusive = false;
		if (a->depth[u->slot] > 0)
			a->depth[u->slot]--;
	}
}

/* The unit's agent is gone: files without a result this attempt go back to
 * the queue. Losing an agent counts as a restart of the file that was
 * running, so a file that kills its agent every time still ends. */
static void
unit_lost(struct coord *c, struct sr_unit *u)
{
	const char *name = ((struct arec *) u->agent)->name;
	bool first = true;

	for (size_t i = 0; i < u->nfiles; i++) {
		struct sr_file *f = &c->suite->files[u->files[i]];

		if (u->got[i] || f->final != SR_FINAL_PENDING)
			continue;
		if (first && f->restarts >= c->cfg->max_restarts) {
			struct sr_attempt at = {0};

			at.outcome = SHARDRUN__OUTCOME__CRASHED;
			at.exit_code = -1;
			at.agent = (char *) name;
			at.message = "its agent was lost on every attempt";
			at.start_s = u->dispatched - c->t0;
			sr_file_add_attempt(f, &at);
			set_final(c, f, SR_FINAL_CRASHED);
		} else {
			if (first)
				f->restarts++;
			requeue(c, u->files[i], u->serial, NULL);
		}
		first = false;
	}
	unit_done(c, u);
}

static void
agent_lost(struct coord *c, struct arec *a, const char *why)
{
	sr_warn("agent %s lost (%s): requeueing its work", a->name, why);
	while (a->nrunning > 0)
		unit_lost(c, sr_plan_unit(&c->plan, a->running[0]));
	if (a->hello) {
		c->nagents--;
		c->prog.slots -= a->slots;
	}
	if (a->waiting != NULL)
		memset(a->waiting, 0, a->slots * sizeof(*a->waiting));
	a->hello = false;
}

struct pick {
	struct coord *c;
	struct arec *a;
};

static bool
eligible(void *arg, const struct sr_unit *u)
{
	struct pick *pk = arg;

	if (u->serial && pk->c->serial_running)
		return (false);
	if (u->avoid != NULL && pk->c->nagents > 1 &&
	    strcmp(u->avoid, pk->a->name) == 0)
		return (false);
	if (u->exclusive && pk->a->nrunning > 0) {
		pk->a->draining = true;
		return (false);
	}
	return (!pk->a->draining || u->exclusive);
}

static int
track_running(struct arec *a, uint32_t id)
{
	if (sr_grow(&a->running, &a->runcap, a->nrunning, sizeof(*a->running),
	            8) != 0)
		return (SR_ENOMEM);
	a->running[a->nrunning++] = id;
	return (0);
}

static void
assign(struct coord *c, struct arec *a, unsigned slot, struct sr_unit *u)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Assignment as = SHARDRUN__ASSIGNMENT__INIT;
	char **files = malloc(u->nfiles * sizeof(*files));

	if (files == NULL || track_running(a, u->id) != 0) {
		free(files);
		sr_plan_push(&c->plan, u);
		return;
	}
	for (size_t i = 0; i < u->nfiles; i++)
		files[i] = c->suite->files[u->files[i]].path;
	u->state = SR_UNIT_RUNNING;
	u->agent = a;
	u->slot = slot;
	u->attempt++;
	u->dispatched = sr_now();
	u->ngot = 0;
	memset(u->got, 0, u->nfiles * sizeof(*u->got));
	a->waiting[slot] = false;
	a->depth[slot]++;
	a->last[slot] = u->id;
	if (u->exclusive) {
		a->exclusive = true;
		a->draining = false;
	}
	if (u->serial)
		c->serial_running = true;
	as.unit = u->id;
	as.attempt = u->attempt;
	as.slot = slot;
	as.files = files;
	as.n_files = u->nfiles;
	as.timeout_ms = c->cfg->timeout_s < 4e6
	                    ? (uint32_t) (c->cfg->timeout_s * 1000)
	                    : 4000000000u;
	as.exclusive = u->exclusive;
	as.kill_grace_ms = c->cfg->kill_grace_s < 4e6
	                       ? (uint32_t) (c->cfg->kill_grace_s * 1000) + 1
	                       : 4000000000u;
	e.body_case = SHARDRUN__ENVELOPE__BODY_ASSIGNMENT;
	e.assignment = &as;
	(void) send_to(c, a, &e);
	free(files);
}

static bool
prefetchable(void *arg, const struct sr_unit *u)
{
	return (u->weight < PREFETCH_S && !u->serial && !u->exclusive &&
	        eligible(arg, u));
}

/*
 * Short units: keep one more queued behind a busy slot's short unit, so
 * the slot does not idle through a round trip after every file. Only while
 * plenty of work is left, so the end of the run stays dynamic.
 */
static void
prefetch(struct coord *c, struct arec *a, struct pick *pk)
{
	const struct sr_unit *top = sr_plan_peek(&c->plan);

	if (a->exclusive || a->draining || top == NULL ||
	    top->weight >= PREFETCH_S ||
	    c->plan.nheap < 2 * (size_t) c->prog.slots + 1)
		return;
	for (unsigned s = 0; s < a->slots; s++) {
		struct sr_unit *cur = sr_plan_unit(&c->plan, a->last[s]);
		struct sr_unit *u;

		if (a->depth[s] != 1 || a->waiting[s] || cur == NULL ||
		    cur->state != SR_UNIT_RUNNING || cur->weight >= PREFETCH_S)
			continue;
		if ((u = sr_plan_take(&c->plan, prefetchable, pk)) == NULL)
			return;
		assign(c, a, s, u);
	}
}

static void
dispatch_agent(struct coord *c, struct arec *a)
{
	struct pick pk = {c, a};

	a->draining = false; /* eligible() sets it again while needed */
	for (unsigned s = 0; s < a->slots; s++) {
		struct sr_unit *u;

		if (!a->waiting[s] || a->exclusive)
			continue;
		if ((u = sr_plan_take(&c->plan, eligible, &pk)) == NULL)
			return;
		assign(c, a, s, u);
	}
	prefetch(c, a, &pk);
}

static void
dispatch(struct coord *c)
{
	if (!c->dispatching)
		return;
	for (struct arec *a = c->agents; a != NULL; a = a->next)
		if (a->hello)
			dispatch_agent(c, a);
}

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
	(void) send_to(c, a, &e);
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
	e.body_case = SHARDRUN__ENVELOPE__BODY_WELCOME;
	e.welcome = &w;
	(void) send_to(c, a, &e);
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
	a->slots = h->slots;
	a->hello = true;
	unique_name(c, a, h->name);
	c->nagents++;
	c->prog.slots += a->slots;
	if (c->prog.slots > c->max_slots)
		c->max_slots = c->prog.slots;
	sr_info("agent %s joined from %s with %u slots", a->name, a->peer->addr,
	        a->slots);
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

static void
ack(struct coord *c, struct arec *a, const Shardrun__Result *r)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__ResultAck k = SHARDRUN__RESULT_ACK__INIT;

	k.unit = r->unit;
	k.attempt = r->attempt;
	k.index = r->index;
	e.body_case = SHARDRUN__ENVELOPE__BODY_RESULT_ACK;
	e.result_ack = &k;
	(void) send_to(c, a, &e);
}

static void
record(struct coord *c, struct arec *a, struct sr_unit *u,
       const Shardrun__Result *r)
{
	struct sr_attempt at = {0};
	size_t file = u->files[r->index];
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
	rv = sr_file_add_attempt(&c->suite->files[file], &at);
	free(at.tail);
	if (rv != 0) {
		sr_error("out of memory recording a result");
		return;
	}
	judge(c, u, file, a);
}

static void
on_result(struct coord *c, struct arec *a, const Shardrun__Envelope *env)
{
	const Shardrun__Result *r = env->result;
	struct sr_unit *u = sr_plan_unit(&c->plan, r->unit);

	ack(c, a, r);
	if (u == NULL || u->state != SR_UNIT_RUNNING || u->agent != a ||
	    u->attempt != r->attempt || r->index >= u->nfiles ||
	    u->got[r->index] ||
	    strcmp(r->file, c->suite->files[u->files[r->index]].path) != 0) {
		sr_debug("late or duplicate result for unit %u ignored",
		         r->unit);
		return;
	}
	u->got[r->index] = true;
	u->ngot++;
	record(c, a, u, r);
	if (u->ngot == u->nfiles)
		unit_done(c, u);
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
			unit_done(c, u); /* removes it from a->running */
			sr_plan_push(&c->plan, u);
			continue;
		}
		k++;
	}
	for (unsigned s = 0; s < a->slots; s++)
		if (a->depth[s] == 0)
			a->waiting[s] = listed_free(h, s);
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
	unit_done(c, u);
	sr_plan_push(&c->plan, u);
}

static void
on_refuse(struct coord *c, struct arec *a, const Shardrun__Envelope *env)
{
	sr_error("agent %s refused the run: %s%s%s", a->name,
	         env->refuse->reason, env->refuse->file[0] ? ": " : "",
	         env->refuse->file);
	agent_lost(c, a, "refused");
	sr_node_drop(c->node, a->peer);
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

static void
handle(struct coord *c, struct arec *a, const Shardrun__Envelope *env)
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

/* ---- sessions and the loop ---- */

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
			agent_lost(c, a, "connection closed");
			arec_free(c, a);
		} else if (ev.type == SR_EV_MSG) {
			if (a != NULL)
				handle(c, a, ev.env);
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
			agent_lost(c, a, why);
			sr_node_drop(c->node, a->peer);
		} else if (a->hello) {
			(void) send_to(c, a, &e);
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
		set_final(c, f, SR_FINAL_ERROR);
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
	if (c->dispatching)
		c->t0 = c->prog.t0 = sr_now();
}

static void
shutdown_all(struct coord *c, bool done, const char *why)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Shutdown s = SHARDRUN__SHUTDOWN__INIT;

	s.reason = (char *) why;
	s.done = done;
	e.body_case = SHARDRUN__ENVELOPE__BODY_SHUTDOWN;
	e.shutdown = &s;
	for (struct arec *a = c->agents; a != NULL; a = a->next)
		(void) send_to(c, a, &e);
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
		heartbeats(c, now);
		check_orphaned(c, now);
		sr_node_expire(c->node, now, HANDSHAKE_S);
		dispatch(c);
		if (c->dispatching)
			sr_progress_tick(&c->prog, now);
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

/* The bound over what actually ran: every file weighs its final attempt's
 * duration, and the serial group weighs the sum of its files. */
static double
measured_bound(const struct sr_suite *s, unsigned slots)
{
	double *w = malloc((s->n + 1) * sizeof(*w));
	double serial = 0;
	double lb;
	size_t n = 0;

	if (w == NULL)
		return (0);
	for (size_t i = 0; i < s->n; i++) {
		const struct sr_attempt *at = sr_file_last(&s->files[i]);
		double d = at != NULL ? at->duration_s : 0;

		if (s->files[i].serial)
			serial += d;
		else
			w[n++] = d;
	}
	w[n++] = serial;
	lb = sr_lower_bound(w, n, slots ? slots : 1);
	free(w);
	return (lb);
}

static void
fill_info(struct coord *c, struct sr_run_info *ri)
{
	double end = 0;

	sr_hex(c->run_id, sizeof(c->run_id), ri->run_id);
	for (size_t i = 0; i < c->suite->n; i++) {
		const struct sr_attempt *at = sr_file_last(&c->suite->files[i]);

		if (at != NULL && at->start_s + at->duration_s > end)
			end = at->start_s + at->duration_s;
	}
	ri->makespan_s = end;
	ri->slots = c->max_slots;
	ri->lower_bound_s = measured_bound(c->suite, ri->slots);
	ri->interrupted = c->status == SR_ECLOSED;
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
		rv = c.status;
		shutdown_all(&c, rv == 0,
		             rv == 0 ? "run complete" : "run aborted");
	}
	sr_progress_end(&c.prog);
	fill_info(&c, ri);
	/* Let the shutdown frames leave before the socket closes. */
	if (c.node != NULL)
		nng_msleep(50);
	while (c.agents != NULL)
		arec_free(&c, c.agents);
	sr_node_close(c.node);
	sr_plan_free(&c.plan);
	return (rv);
}
