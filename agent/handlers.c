/*
 * handlers.c - what an agent does with each message from a coordinator.
 *
 * Messages dispatch through one table; each handler runs only for an
 * authenticated session (the node layer guarantees it) and, but for
 * Welcome, Shutdown, Refuse and Heartbeat, only after the run's Welcome
 * and the workspace check.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_int.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/path.h"
#include "sr/util.h"

#define MAX_FILES 100000 /* per assignment */

/* ---- messages from a coordinator ---- */

void
sr_ag_send_hello(struct agent *a, struct session *s)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Hello h = SHARDRUN__HELLO__INIT;

	h.name = (char *) a->cfg->name;
	h.slots = a->cfg->slots;
	h.profile = (char *) a->cfg->profile->name;
	h.pid = (uint32_t) getpid();
	h.forkserver_off = !a->cfg->forkserver;
	h.queue = SR_SLOT_QUEUE;
	e.body_case = SHARDRUN__ENVELOPE__BODY_HELLO;
	e.hello = &h;
	(void) sr_ag_send(a, s, &e);
}

void
sr_ag_refuse(struct agent *a, struct session *s, const char *why,
             const char *file)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Refuse r = SHARDRUN__REFUSE__INIT;

	sr_error("refusing the run: %s%s%s", why, file ? ": " : "",
	         file ? file : "");
	r.reason = (char *) why;
	r.file = (char *) (file ? file : "");
	e.body_case = SHARDRUN__ENVELOPE__BODY_REFUSE;
	e.refuse = &r;
	(void) sr_ag_send(a, s, &e);
	s->over = true;
	if (a->cfg->once) {
		a->status = SR_EINVAL; /* a fleet agent goes on serving */
		a->done = true;
	}
}

/* A new run gets its fair share of the slots other runs hold idle. */
static void
rebalance(struct agent *a, struct session *s)
{
	unsigned runs = 0;

	for (struct session *o = a->sessions; o != NULL; o = o->next)
		runs += o->welcomed && !o->over;
	for (unsigned i = 0; runs > 1 && i < a->cfg->slots; i++) {
		struct session *o = a->offer_to[i];

		if (a->offered[i] && o != s &&
		    o->offered > a->cfg->slots / runs)
			sr_ag_withdraw(a, i); /* the next heartbeat tells o */
	}
}

static void
welcome_done(struct agent *a, struct session *s)
{
	s->checking = false;
	sr_wscheck_free(&s->check);
	s->welcomed = true;
	sr_info("serving run %s from %s", s->run.run_id, s->peer->addr);
	for (unsigned i = 0; i < a->cfg->slots; i++)
		sr_slot_fs_prestart(&a->slots[i], &a->senv, &s->run);
	rebalance(a, s);
	sr_ag_offer_all(a);
}

/* Advance the workspace check; a mismatch refuses the run. */
void
sr_ag_check_step(struct agent *a, struct session *s)
{
	int rv = sr_wscheck_step(&s->check, a->cfg->workspace, 0.05);

	if (rv > 0) {
		welcome_done(a, s);
	} else if (rv < 0) {
		s->checking = false;
		sr_ag_refuse(a, s, s->check.why, s->check.file);
		sr_wscheck_free(&s->check);
	}
}

static bool
module_name_ok(const char *m)
{
	size_t n = strlen(m);

	return (n > 0 && n < 128 &&
	        strspn(m, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                  "0123456789_.") == n &&
	        m[0] != '.');
}

/* The run's fork server settings: module names and relative directories
 * only, checked like every other path from the wire. */
static int
take_run_settings(struct agent *a, struct session *s,
                  const Shardrun__Welcome *w)
{
	int rv = 0;

	s->run.forkserver = w->forkserver && a->cfg->forkserver;
	s->run.front = w->configurations > 1;
	for (size_t i = 0; i < w->n_preload && i < 64 && rv == 0; i++)
		rv = module_name_ok(w->preload[i])
		         ? sr_strv_push(&s->run.preload, w->preload[i])
		         : SR_EINVAL;
	for (size_t i = 0; i < w->n_preload_dirs && i < 256 && rv == 0; i++)
		rv = strcmp(w->preload_dirs[i], ".") == 0 ||
		             sr_path_check(w->preload_dirs[i]) == 0
		         ? sr_strv_push(&s->run.dirs, w->preload_dirs[i])
		         : SR_EINVAL;
	return (rv);
}

/* While another run's checkout is being prepared, no run may start: its
 * files would change under it. */
static bool
preparing_elsewhere(const struct agent *a, const struct session *s)
{
	for (const struct session *o = a->sessions; o != NULL; o = o->next)
		if (o != s && o->preparing)
			return (true);
	return (false);
}

static void
on_welcome(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	const Shardrun__Welcome *w = env->welcome;

	if (s->welcomed || s->checking || s->preparing)
		return;
	if (w->run_id.len != 16) {
		sr_ag_refuse(a, s, "malformed welcome", NULL);
		return;
	}
	if (strcmp(w->profile, a->cfg->profile->name) != 0) {
		sr_ag_refuse(a, s, "the run uses another profile", w->profile);
		return;
	}
	sr_hex(w->run_id.data, 16, s->run.run_id);
	s->hb_s = w->heartbeat_ms > 0 ? w->heartbeat_ms / 1000.0 : 1.0;
	s->lost_s = w->lease_ms > 0 ? w->lease_ms / 1000.0 : a->cfg->lost_s;
	if (take_run_settings(a, s, w) != 0) {
		sr_ag_refuse(a, s, "malformed fork server settings", NULL);
		return;
	}
	if (sr_wscheck_init(&s->check, w) != 0) {
		sr_ag_refuse(a, s, "out of memory checking the workspace",
		             NULL);
		return;
	}
	if (preparing_elsewhere(a, s)) {
		sr_ag_refuse(
		    a, s, "busy preparing the workspace for another run", NULL);
		return;
	}
	if (sr_ag_prepare(a, s, w->commit) == 0)
		return; /* the check starts when the workspace is ready */
	if (!s->over) {
		s->checking = true;
		sr_ag_check_step(a, s);
	}
}

static bool
valid_assignment(const struct agent *a, const Shardrun__Assignment *as)
{
	if (as->slot >= a->cfg->slots || as->unit == 0 || as->attempt == 0 ||
	    as->n_files == 0 || as->n_files > MAX_FILES ||
	    as->n_selectors > MAX_FILES)
		return (false);
	for (size_t i = 0; i < as->n_files; i++)
		if (sr_path_check(as->files[i]) != 0)
			return (false);
	/* Test ids belong to the unit's one file: "FILE::..." */
	for (size_t i = 0; i < as->n_selectors; i++) {
		size_t n = strlen(as->files[0]);

		if (as->n_files != 1 ||
		    strncmp(as->selectors[i], as->files[0], n) != 0 ||
		    (as->selectors[i][n] != '\0' &&
		     strncmp(as->selectors[i] + n, "::", 2) != 0))
			return (false);
	}
	return (true);
}

/* Would this assignment break exclusivity on this machine? */
static bool
exclusive_conflict(const struct agent *a, const Shardrun__Assignment *as)
{
	for (unsigned i = 0; i < a->cfg->slots; i++) {
		const struct sr_slot *sl = &a->slots[i];

		if (i != as->slot && sl->busy &&
		    (as->exclusive || sl->exclusive))
			return (true);
	}
	return (false);
}

static void
decline(struct agent *a, struct session *s, const Shardrun__Assignment *as)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Cancel c = SHARDRUN__CANCEL__INIT;

	c.unit = as->unit;
	c.attempt = as->attempt;
	e.body_case = SHARDRUN__ENVELOPE__BODY_CANCEL;
	e.cancel = &c;
	(void) sr_ag_send(a, s, &e);
}

static void
take_assignment(struct agent *a, struct session *s,
                const Shardrun__Assignment *as)
{
	struct sr_slot *slot;

	if (!valid_assignment(a, as)) {
		sr_warn("invalid assignment from %s dropped", s->peer->addr);
		decline(a, s, as);
		return;
	}
	slot = &a->slots[as->slot];
	if (exclusive_conflict(a, as)) {
		decline(a, s, as);
		return;
	}
	if (slot->busy) {
		/* A prefetched unit waits behind the running one. */
		if (slot->owner != s ||
		    sr_slot_enqueue(slot, &a->senv, as, s, &s->run) != 0)
			decline(a, s, as);
		return;
	}
	sr_ag_withdraw(a, as->slot);
	slot->owner = s;
	if (sr_slot_assign(slot, &a->senv, as, &s->run, sr_now()) != 0)
		decline(a, s, as);
}

static void
take_ack(struct agent *a, struct session *s, const Shardrun__ResultAck *k)
{
	(void) a;
	for (size_t i = 0; i < s->npend; i++) {
		struct pending *p = &s->pend[i];

		if (p->unit == k->unit && p->attempt == k->attempt &&
		    p->index == k->index) {
			sr_ag_acked(s, p);
			free(p->packed);
			s->pend[i] = s->pend[--s->npend];
			return;
		}
	}
}

void
sr_ag_kill_session_work(struct agent *a, struct session *s)
{
	if (s->preparing) {
		(void) sr_spawner_kill(a->cfg->spawner, s->prep_id, SIGKILL);
		s->preparing = false;
	}
	for (unsigned i = 0; i < a->cfg->slots; i++) {
		if (a->offered[i] && a->offer_to[i] == s)
			sr_ag_withdraw(a, i);
		sr_slot_drop_queued(&a->slots[i], &a->senv, s, 0, 0);
		sr_slot_fs_stop(&a->slots[i], &s->run);
		if (a->slots[i].busy && a->slots[i].owner == s) {
			sr_slot_abort(&a->slots[i], &a->senv);
			a->slots[i].owner = NULL;
		}
	}
}

/* Stop one attempt of a unit, queued or running: no result follows. */
static void
take_cancel(struct agent *a, struct session *s, const Shardrun__Cancel *c)
{
	for (unsigned i = 0; i < a->cfg->slots; i++) {
		struct sr_slot *sl = &a->slots[i];

		sr_slot_drop_queued(sl, &a->senv, s, c->unit, c->attempt);
		if (sl->busy && sl->owner == s && sl->unit == c->unit &&
		    sl->attempt == c->attempt) {
			sr_slot_abort(sl, &a->senv);
			sl->owner = NULL;
		}
	}
}

static void
on_cancel(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	take_cancel(a, s, env->cancel);
	sr_ag_offer_all(a);
}

/* Whether another run has work here (an orphan sweep would hit it). */
static bool
other_work(const struct agent *a, const struct session *s)
{
	for (unsigned i = 0; i < a->cfg->slots; i++)
		if (a->slots[i].busy && a->slots[i].owner != s)
			return (true);
	return (false);
}

static void
on_shutdown(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	sr_info("run %s over: %s", s->run.run_id, env->shutdown->reason);
	s->over = true;
	sr_ag_kill_session_work(a, s);
	if (!other_work(a, s))
		(void) sr_spawner_sweep(a->cfg->spawner);
	if (!a->cfg->once) {
		sr_node_drop(a->node, s->peer);
		return;
	}
	a->done = true;
	a->complete = env->shutdown->done;
	if (!env->shutdown->done) /* aborted, not completed */
		a->status = SR_ECLOSED;
}

static void
on_refuse(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	sr_error("coordinator refused this agent: %s", env->refuse->reason);
	s->over = true;
	sr_ag_kill_session_work(a, s);
	if (a->cfg->once)
		a->status = SR_EAUTH;
	if (a->cfg->once)
		a->done = true;
}

static void
on_heartbeat(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	(void) a;
	(void) s;
	(void) env; /* last_rx is what matters; the node layer updates it */
}

static void
on_assignment(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	take_assignment(a, s, env->assignment);
}

static void
on_ack(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	take_ack(a, s, env->result_ack);
}

/* A turn of the coordinator's loop: acknowledgements, cancellations, then
 * assignments. */
static void
on_batch(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	const Shardrun__Batch *b = env->batch;

	for (size_t i = 0; i < b->n_acks; i++)
		take_ack(a, s, b->acks[i]);
	for (size_t i = 0; i < b->n_cancels; i++)
		take_cancel(a, s, b->cancels[i]);
	for (size_t i = 0; i < b->n_assignments && !s->over; i++)
		take_assignment(a, s, b->assignments[i]);
	if (b->n_cancels > 0)
		sr_ag_offer_all(a);
}

typedef void (*handler_fn)(struct agent *, struct session *,
                           const Shardrun__Envelope *);

static const struct {
	Shardrun__Envelope__BodyCase type;
	handler_fn fn;
	bool needs_welcome;
} handlers[] = {
    {SHARDRUN__ENVELOPE__BODY_WELCOME, on_welcome, false},
    {SHARDRUN__ENVELOPE__BODY_SHUTDOWN, on_shutdown, false},
    {SHARDRUN__ENVELOPE__BODY_REFUSE, on_refuse, false},
    {SHARDRUN__ENVELOPE__BODY_HEARTBEAT, on_heartbeat, false},
    {SHARDRUN__ENVELOPE__BODY_ASSIGNMENT, on_assignment, true},
    {SHARDRUN__ENVELOPE__BODY_RESULT_ACK, on_ack, true},
    {SHARDRUN__ENVELOPE__BODY_CANCEL, on_cancel, true},
    {SHARDRUN__ENVELOPE__BODY_BATCH, on_batch, true},
};

void
sr_ag_dispatch(struct agent *a, struct session *s,
               const Shardrun__Envelope *env)
{
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
		if (handlers[i].type != env->body_case)
			continue;
		if (handlers[i].needs_welcome && !s->welcomed)
			return;
		if (!s->over)
			handlers[i].fn(a, s, env);
		return;
	}
	sr_debug("unexpected %s from %s dropped", sr_wire_kind(env),
	         s->peer->addr);
}
