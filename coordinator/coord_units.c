/*
 * coord_units.c - units and final results: pull dispatch (LPT order, the
 * serial group, exclusive files, prefetch of short units), and what each
 * attempt means for its file (passed, flaky, rerun, requeue, crashed...).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_int.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"
#include "split.h"

/* ---- final results ---- */

static bool
passed(const struct sr_attempt *a)
{
	return (a->outcome == SHARDRUN__OUTCOME__PASSED ||
	        a->outcome == SHARDRUN__OUTCOME__NO_TESTS);
}

/* An attempt of this part before the last one did not pass (in a bundle,
 * a failure is the bundle's until the file fails alone too). */
static bool
failed_before(const struct sr_file *f, uint32_t part)
{
	for (size_t i = 0; i + 1 < f->natt; i++)
		if (f->att[i].part == part && !f->att[i].bundled &&
		    !passed(&f->att[i]))
			return (true);
	return (false);
}

/* The file failed in a bundle (and now passed alone). */
static bool
failed_in_bundle(const struct sr_file *f)
{
	for (size_t i = 0; i + 1 < f->natt; i++)
		if (f->att[i].bundled &&
		    f->att[i].outcome == SHARDRUN__OUTCOME__FAILED)
			return (true);
	return (false);
}

void
sr_co_set_final(struct coord *c, struct sr_file *f, int final)
{
	f->final = final;
	c->nfinal++;
	sr_progress_file(&c->prog, f);
}

/* One part (or the whole file) has its final result. A split file ends
 * when its last part does, with the worst of them. */
static void
settle(struct coord *c, struct sr_file *f, const struct sr_unit *u, int final)
{
	int worst = SR_FINAL_PASSED;

	if (f->parts == NULL) {
		sr_co_set_final(c, f, final);
		return;
	}
	f->parts->final[sr_unit_part(u)] = final;
	if (--f->parts->left > 0)
		return;
	for (uint32_t p = 0; p < f->parts->n; p++)
		worst = sr_final_worst(worst, f->parts->final[p]);
	sr_co_set_final(c, f, worst);
}

/* Another attempt of the same file, or part of it, as a new unit. */
static void
requeue(struct coord *c, const struct sr_unit *old, size_t file,
        const char *avoid)
{
	struct sr_unit *u;
	uint32_t id;

	if (sr_plan_again(&c->plan, c->suite, old, file, true, &id) != 0) {
		sr_error("out of memory requeueing %s",
		         c->suite->files[file].path);
		settle(c, &c->suite->files[file], old, SR_FINAL_ERROR);
		return;
	}
	u = sr_plan_unit(&c->plan, id);
	u->serial = old->serial;
	if (avoid != NULL)
		(void) sr_unit_set_avoid(u, avoid);
}

/* The budgets of the file, or of this part of a split file: each part has
 * its own, as a file of its own would. */
static uint32_t *
restarts_of(struct sr_file *f, const struct sr_unit *u)
{
	return (f->parts ? &f->parts->restarts[sr_unit_part(u)] : &f->restarts);
}

static uint32_t *
reruns_of(struct sr_file *f, const struct sr_unit *u)
{
	return (f->parts ? &f->parts->reruns[sr_unit_part(u)] : &f->reruns);
}

/* How many more losses of an agent that held a file than --max-restarts
 * allows end it, even where it never was its slot's oldest unit: the
 * files an agent may have started unannounced behind that one (it chains
 * two deep, agent/slot.h). */
#define LOST_SLACK 2u

static uint32_t *
lost_of(struct sr_file *f, const struct sr_unit *u)
{
	return (f->parts ? &f->parts->lost[sr_unit_part(u)] : &f->lost);
}

/*
 * A file that did not pass in a bundle runs alone before it is judged: a
 * failure there may be another file's doing, and a crash, a timeout or an
 * undivided report belongs to no file in particular. No budget is used.
 */
static void
unbundle(struct coord *c, const struct sr_unit *u, size_t file)
{
	const struct sr_file *f = &c->suite->files[file];

	sr_info("%s: %s in a bundle; running it alone", f->path,
	        sr_file_last(f)->outcome == SHARDRUN__OUTCOME__FAILED
	            ? "failed"
	            : "no verdict");
	requeue(c, u, file, NULL);
}

/* Decide what one attempt means for its file (or its part). */
void
sr_co_judge(struct coord *c, struct sr_unit *u, size_t file, struct arec *a)
{
	struct sr_file *f = &c->suite->files[file];
	const struct sr_attempt *at = sr_file_last(f);

	if (at->bundled && !passed(at)) {
		unbundle(c, u, file);
		return;
	}
	switch (at->outcome) {
	case SHARDRUN__OUTCOME__PASSED:
	case SHARDRUN__OUTCOME__NO_TESTS:
		if (!at->bundled && failed_in_bundle(f) &&
		    !failed_before(f, sr_unit_part(u))) {
			f->leak = true;
			sr_warn("%s failed in a bundle and passed alone: an "
			        "isolation leak between test files",
			        f->path);
		}
		settle(c, f, u,
		       failed_before(f, sr_unit_part(u)) ? SR_FINAL_FLAKY
		                                         : SR_FINAL_PASSED);
		break;
	case SHARDRUN__OUTCOME__FAILED:
		if (*reruns_of(f, u) < c->cfg->reruns) {
			(*reruns_of(f, u))++;
			requeue(c, u, file, NULL);
		} else {
			settle(c, f, u, SR_FINAL_FAILED);
		}
		break;
	case SHARDRUN__OUTCOME__CRASHED:
		if (*restarts_of(f, u) < c->cfg->max_restarts) {
			(*restarts_of(f, u))++;
			requeue(c, u, file, a->name);
		} else {
			settle(c, f, u, SR_FINAL_CRASHED);
		}
		break;
	case SHARDRUN__OUTCOME__TIMEOUT:
		settle(c, f, u, SR_FINAL_TIMEOUT);
		break;
	default:
		settle(c, f, u, SR_FINAL_ERROR);
		break;
	}
}

/* ---- units and agents ---- */

void
sr_co_unit_done(struct coord *c, struct sr_unit *u)
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
		if (a->depth[u->slot] > 0 && --a->depth[u->slot] == 0)
			sr_co_freed(a, u->slot);
	}
}

/* A bundle's agent is gone: which file (if any) was to blame is unknown,
 * so each file without a result runs alone, charged nothing. */
static void
bundle_lost(struct coord *c, struct sr_unit *u)
{
	for (size_t i = 0; i < u->nfiles; i++)
		if (!*sr_unit_got(u, i) &&
		    c->suite->files[sr_unit_file(u, i)].final ==
		        SR_FINAL_PENDING)
			requeue(c, u, sr_unit_file(u, i), NULL);
	sr_co_unit_done(c, u);
}

/* A unit's agent is gone while f was the unit's next file: count the
 * loss (a restart if the unit ran); whether f has had its share. */
static bool
lost_ends(struct coord *c, struct sr_file *f, const struct sr_unit *u, bool ran)
{
	uint32_t *restarts = restarts_of(f, u);

	if (++*lost_of(f, u) > c->cfg->max_restarts + LOST_SLACK ||
	    (ran && *restarts >= c->cfg->max_restarts))
		return (true);
	if (ran)
		(*restarts)++;
	return (false);
}

/* f ends crashed: its agents were lost. */
static void
settle_lost(struct coord *c, struct sr_file *f, struct sr_unit *u)
{
	struct sr_attempt at = {0};

	at.outcome = SHARDRUN__OUTCOME__CRASHED;
	at.exit_code = -1;
	at.agent = (char *) ((struct arec *) u->agent)->name;
	at.slot = (int) u->slot;
	at.message = "its agent was lost on every attempt";
	at.start_s = u->dispatched - c->t0;
	at.part = sr_unit_part(u);
	sr_file_add_attempt(f, &at);
	settle(c, f, u, SR_FINAL_CRASHED);
}

/* The unit's agent is gone: files without a result this attempt go back to
 * the queue. Losing an agent counts as a restart of the file that was
 * running (ran: the unit was its slot's oldest without a verdict), so a
 * file that kills its agent every time still ends; units queued behind it
 * go back without a restart. A file that starts unannounced behind one whose
 * result was still on its way is not the slot's oldest: every loss of an
 * agent that held a file counts too, and LOST_SLACK more of those than
 * restarts allowed end it as well, so no file takes down agents without
 * bound. */
static void
unit_lost(struct coord *c, struct sr_unit *u, bool ran)
{
	bool first = true;

	if (sr_co_twin_drop(c, u))
		return; /* its twin still runs */
	if (sr_unit_bundle(u)) {
		bundle_lost(c, u);
		return;
	}
	for (size_t i = 0; i < u->nfiles; i++) {
		struct sr_file *f = &c->suite->files[sr_unit_file(u, i)];

		if (*sr_unit_got(u, i) || f->final != SR_FINAL_PENDING)
			continue;
		if (first && lost_ends(c, f, u, ran))
			settle_lost(c, f, u);
		else
			requeue(c, u, sr_unit_file(u, i), NULL);
		first = false;
	}
	sr_co_unit_done(c, u);
}

/* Whether u is the oldest unit without a verdict on its slot of agent a:
 * the one the slot was running, as far as the coordinator can tell. A slot
 * runs its units in the order they came; one behind may have started
 * unannounced only if the result of the one before is still on its way,
 * and then the one before is charged instead (lost_ends bounds what the
 * other may cost). */
static bool
slot_head(struct coord *c, const struct arec *a, const struct sr_unit *u)
{
	for (size_t i = 0; i < a->nrunning; i++) {
		const struct sr_unit *o = sr_plan_unit(&c->plan, a->running[i]);

		if (o != u && o->slot == u->slot &&
		    o->dispatched < u->dispatched)
			return (false);
	}
	return (true);
}

void
sr_co_agent_lost(struct coord *c, struct arec *a, const char *why)
{
	sr_warn("agent %s lost (%s): requeueing its work", a->name, why);
	/* Youngest first: a slot's older units are still listed when the
	 * ones behind them are judged. */
	while (a->nrunning > 0) {
		struct sr_unit *u = sr_plan_unit(&c->plan, a->running[0]);

		for (size_t i = 1; i < a->nrunning; i++) {
			struct sr_unit *o =
			    sr_plan_unit(&c->plan, a->running[i]);

			if (o->dispatched > u->dispatched)
				u = o;
		}
		unit_lost(c, u, slot_head(c, a, u));
	}
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

bool
sr_co_avoids(const struct coord *c, const struct sr_unit *u,
             const struct arec *a)
{
	const char *avoid = sr_unit_avoid(u);

	return (avoid != NULL && c->nagents > 1 && strcmp(avoid, a->name) == 0);
}

static bool
eligible(void *arg, const struct sr_unit *u)
{
	struct pick *pk = arg;

	if (u->serial && pk->c->serial_running)
		return (false);
	if (!sr_split_allows(&pk->c->split, u))
		return (false);
	if (sr_co_avoids(pk->c, u, pk->a))
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

int
sr_co_assign(struct coord *c, struct arec *a, unsigned slot, struct sr_unit *u)
{
	if (sr_grow(&a->out_units, &a->outcap, a->nout, sizeof(*a->out_units),
	            16) != 0 ||
	    track_running(a, u->id) != 0)
		return (SR_ENOMEM);      /* nothing changed */
	a->out_units[a->nout++] = u->id; /* sent by sr_co_flush */
	u->state = SR_UNIT_RUNNING;
	u->agent = a;
	u->slot = slot;
	u->attempt++;
	u->dispatched = sr_now();
	u->ngot = 0;
	for (size_t i = 0; i < u->nfiles; i++)
		*sr_unit_got(u, i) = false;
	a->waiting[slot] = false;
	a->depth[slot]++;
	a->last[slot] = u->id;
	sr_co_hold(c, a, slot, u);
	if (u->exclusive) {
		a->exclusive = true;
		a->draining = false;
	}
	if (u->serial)
		c->serial_running = true;
	return (0);
}

/* Assign a unit taken from the queue, or put it back (false). */
static bool
assign_taken(struct coord *c, struct arec *a, unsigned slot, struct sr_unit *u)
{
	if (sr_co_assign(c, a, slot, u) == 0)
		return (true);
	(void) sr_plan_push(&c->plan, u);
	return (false);
}

static bool
prefetchable(void *arg, const struct sr_unit *u)
{
	return (u->weight < PREFETCH_S && !u->serial && !u->exclusive &&
	        eligible(arg, u));
}

/* Whether slot s should get one more unit queued behind what it has: the
 * unit it was given last (running or queued) is short, the slot holds
 * fewer than a round trip may take to refill, and plenty is left. Deeper
 * where the agent chains files (agent/slot.h) and they are very short. */
static bool
wants_more(const struct coord *c, const struct arec *a, unsigned s)
{
	const struct sr_unit *cur = sr_plan_unit(&c->plan, a->last[s]);
	bool deep;

	if (c->plan.nheap < 2 * (size_t) c->prog.slots + 1 ||
	    a->depth[s] == 0 || a->waiting[s] || cur == NULL ||
	    cur->state != SR_UNIT_RUNNING || cur->weight >= PREFETCH_S)
		return (false);
	deep =
	    a->chains && cur->weight < PREFETCH_DEEP_S && !sr_unit_bundle(cur);
	if (!deep)
		return (a->depth[s] < 2u);
	return (a->depth[s] < (cur->weight < PREFETCH_TINY_S ? 8u : 4u) &&
	        a->depth[s] <= a->queue);
}

/*
 * Short units: keep one more queued behind a busy slot's short unit, so
 * the slot does not idle through a round trip after every file; three
 * behind units shorter than such a round trip, so that the agent can
 * chain each file behind the one before it (agent/slot.h); seven behind
 * units of a few milliseconds, so that the agent can hold their results
 * for a few files and send them together (agent.c, hold_results). Only
 * while plenty of work is left, so the end of the run stays dynamic.
 */
static void
prefetch(struct coord *c, struct arec *a, struct pick *pk)
{
	bool wait;
	const struct sr_unit *top = sr_plan_peek(&c->plan);

	if (a->exclusive || a->draining || top == NULL ||
	    top->weight >= PREFETCH_S)
		return;
	for (unsigned s = 0; s < a->slots; s++) {
		while (wants_more(c, a, s)) {
			struct sr_unit *u =
			    sr_co_take(c, a, s, prefetchable, pk, &wait);

			if (u == NULL && wait)
				break; /* another slot's, soon */
			if (u == NULL)
				return;
			if (!assign_taken(c, a, s, u))
				return; /* out of memory: not now */
		}
	}
}

static void
dispatch_agent(struct coord *c, struct arec *a)
{
	struct pick pk = {c, a};

	a->draining = false; /* eligible() sets it again while needed */
	for (unsigned s = 0; s < a->slots; s++) {
		struct sr_unit *u;
		bool wait;

		if (!a->waiting[s] || a->exclusive)
			continue;
		if ((u = sr_co_take(c, a, s, eligible, &pk, &wait)) != NULL)
			assign_taken(c, a, s, u);
		else if (!wait && !sr_co_speculate(c, a, s))
			return;
	}
	prefetch(c, a, &pk);
}

void
sr_co_dispatch(struct coord *c)
{
	if (!c->dispatching)
		return;
	c->turn++;
	for (struct arec *a = c->agents; a != NULL; a = a->next)
		if (a->hello)
			dispatch_agent(c, a);
}
