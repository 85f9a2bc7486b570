/*
 * coord_spec.c - speculative backup attempts (--speculate on).
 *
 * At the end of a run slots fall idle while a few units still run. When a
 * slot has nothing left to take, the latest of the running units - one
 * that has already run well past its estimate (SPEC_LATE, SPEC_MIN_S in
 * coord_int.h) - gets a backup attempt there. Original and backup are
 * twins: the first answer of either (passed or failed) is the attempt that
 * counts and is judged as usual; the other attempt is cancelled (the agent
 * kills its process tree; a heartbeat that still lists it gets the Cancel
 * again) and anything it still reports is ignored. A twin that ends with
 * no answer - it crashed, timed out, its file was missing there - while
 * the other runs is recorded among the file's attempts but not judged:
 * the other goes on and its result decides (a pass after it is flaky, as
 * after any crash). So a backup killed by its machine does not cancel an
 * original about to pass, and an original that times out leaves its
 * backup to finish. A unit has at most one backup at a time, and a backup
 * gets none while its twin runs.
 *
 * A backup goes to another agent than its original's where one has an idle
 * slot: what stalls an attempt is often its machine (a loaded runner, a
 * stuck mount), and a second attempt there would stall as well. An agent
 * a crashed file is avoiding gets no backup of it either. With one agent
 * (local mode) the backup runs beside its original.
 *
 * Only one-file units (a file, or a part of a split file) that are neither
 * serial nor exclusive are backed up. Losing one twin (its agent, or an
 * agent that declined or forgot it) drops that twin and charges nothing:
 * the other still runs.
 *
 * Ownership: the twin table belongs to the coordinator (c->twins); units
 * are referred to by id.
 */
#include <stdlib.h>

#include "coord_int.h"
#include "sr/log.h"
#include "sr/util.h"

static struct twin *
twin_of(struct coord *c, uint32_t id)
{
	for (size_t i = 0; i < c->ntwins; i++)
		if (c->twins[i].orig == id || c->twins[i].backup == id)
			return (&c->twins[i]);
	return (NULL);
}

static void
twin_remove(struct coord *c, struct twin *t)
{
	*t = c->twins[--c->ntwins];
}

/* How far past its estimate u runs, or a negative number when it may not
 * be backed up (yet). */
static double
lateness(const struct sr_unit *u, double now)
{
	double ran = now - u->dispatched;

	if (u->state != SR_UNIT_RUNNING || u->nfiles != 1 || u->serial ||
	    u->exclusive || u->ngot > 0 || u->twinned)
		return (-1);
	if (ran < SPEC_LATE * u->weight || ran < u->weight + SPEC_MIN_S)
		return (-1);
	return (ran - u->weight);
}

/* Whether an agent other than to, one that u does not avoid and that was
 * heard from lately (a partitioned agent still looks idle until it is
 * declared lost), has a slot with nothing to do: u's backup is for it. */
static bool
idle_elsewhere(const struct coord *c, const struct arec *to,
               const struct sr_unit *u)
{
	double now = sr_now();

	for (const struct arec *o = c->agents; o != NULL; o = o->next) {
		if (o == to || !sr_co_taking(c, o, now) ||
		    sr_co_avoids(c, u, o))
			continue;
		for (unsigned s = 0; s < o->slots; s++)
			if (o->waiting[s] && o->depth[s] == 0)
				return (true);
	}
	return (false);
}

/* Whether a backup of u, running on agent from, may go to agent to. */
static bool
may_back_up(const struct coord *c, const struct arec *to,
            const struct arec *from, const struct sr_unit *u)
{
	return (!sr_co_avoids(c, u, to) &&
	        (from != to || !idle_elsewhere(c, to, u)));
}

/* The latest running unit that a backup on agent to may serve, or NULL. */
static struct sr_unit *
latest(struct coord *c, const struct arec *to, double now)
{
	struct sr_unit *best = NULL;
	double most = -1;

	for (struct arec *a = c->agents; a != NULL; a = a->next) {
		for (size_t i = 0; i < a->nrunning; i++) {
			struct sr_unit *u =
			    sr_plan_unit(&c->plan, a->running[i]);
			double late = lateness(u, now);

			if (late > most && may_back_up(c, to, a, u)) {
				most = late;
				best = u;
			}
		}
	}
	return (best);
}

bool
sr_co_speculate(struct coord *c, struct arec *a, unsigned slot)
{
	struct sr_unit *orig;
	struct sr_unit *b;
	uint32_t id;

	/* Called when the queue gave this slot nothing: what is left queued
	 * is held back (take dropped the rest; a file being split counts as
	 * queued), and goes first. */
	if (!c->cfg->speculate || a->depth[slot] > 0 || a->draining ||
	    a->exclusive || c->plan.nheap > 0 ||
	    (orig = latest(c, a, sr_now())) == NULL)
		return (false);
	if (sr_grow(&c->twins, &c->twincap, c->ntwins, sizeof(*c->twins), 8) !=
	        0 ||
	    sr_plan_again(&c->plan, c->suite, orig, sr_unit_file(orig, 0),
	                  false, &id) != 0)
		return (false);
	b = sr_plan_unit(&c->plan, id);
	if (sr_co_assign(c, a, slot, b) != 0)
		return (false); /* b stays unused (state DONE) */
	orig->twinned = b->twinned = true;
	c->twins[c->ntwins].orig = orig->id;
	c->twins[c->ntwins++].backup = id;
	c->nbackups++;
	sr_info("%s: running %.1f s against an estimate of %.1f s; backup "
	        "attempt on %s slot %u",
	        c->suite->files[sr_unit_file(orig, 0)].path,
	        sr_now() - orig->dispatched, orig->weight, a->name, slot);
	return (true);
}

static int
queue_cancel(struct arec *a, const struct sr_unit *u)
{
	if (sr_grow(&a->cancels, &a->cancelcap, a->ncancels,
	            sizeof(*a->cancels), 4) != 0)
		return (-1);
	shardrun__cancel__init(&a->cancels[a->ncancels]);
	a->cancels[a->ncancels].unit = u->id;
	a->cancels[a->ncancels++].attempt = u->attempt;
	return (0);
}

void
sr_co_recancel(struct coord *c, struct arec *a, const Shardrun__Heartbeat *h)
{
	for (size_t i = 0; i < h->n_running; i++) {
		struct sr_unit *u = sr_plan_unit(&c->plan, h->running[i]->unit);

		/* Done without all its results: only a cancelled attempt
		 * (or one requeued after a loss) ends that way. */
		if (u != NULL && u->state == SR_UNIT_DONE &&
		    u->attempt == h->running[i]->attempt &&
		    u->ngot < u->nfiles) {
			sr_debug("agent %s still runs cancelled unit %u: "
			         "cancelled again",
			         a->name, u->id);
			(void) queue_cancel(a, u);
		}
	}
}

/* Passed or failed: an answer about the tests, not about the attempt. */
static bool
verdict(int outcome)
{
	return (outcome == SHARDRUN__OUTCOME__PASSED ||
	        outcome == SHARDRUN__OUTCOME__NO_TESTS ||
	        outcome == SHARDRUN__OUTCOME__FAILED);
}

void
sr_co_twin_result(struct coord *c, const struct sr_unit *u, int outcome)
{
	struct twin *t = twin_of(c, u->id);
	struct sr_unit *other;

	if (t == NULL) {
		if (u->survivor && verdict(outcome))
			c->nbackup_wins++;
		return;
	}
	other = sr_plan_unit(&c->plan, t->orig == u->id ? t->backup : t->orig);
	if (t->backup == u->id)
		c->nbackup_wins++;
	twin_remove(c, t);
	if (other == NULL || other->state != SR_UNIT_RUNNING)
		return;
	sr_debug("unit %u answered first: its twin %u is cancelled", u->id,
	         other->id);
	/* Not sent (out of memory): the twin runs on and its result, which
	 * no unit waits for any more, is ignored. */
	(void) queue_cancel(other->agent, other);
	sr_co_unit_done(c, other);
}

bool
sr_co_twin_outlives(struct coord *c, struct sr_unit *u, int outcome)
{
	struct twin *t = twin_of(c, u->id);
	struct sr_unit *backup;
	bool orig;

	if (t == NULL || verdict(outcome))
		return (false);
	orig = t->orig == u->id;
	backup = sr_plan_unit(&c->plan, t->backup);
	if (!sr_co_twin_drop(c, u))
		return (false);
	if (orig) /* its verdict, when it gives one, counts as a win */
		backup->survivor = true;
	sr_info("%s: the %s attempt ended without a verdict; the %s runs on "
	        "and decides",
	        c->suite->files[sr_unit_file(u, 0)].path,
	        orig ? "original" : "backup", orig ? "backup" : "original");
	return (true);
}

bool
sr_co_twin_drop(struct coord *c, struct sr_unit *u)
{
	struct twin *t = twin_of(c, u->id);
	struct sr_unit *other;

	if (t == NULL)
		return (false);
	other = sr_plan_unit(&c->plan, t->orig == u->id ? t->backup : t->orig);
	twin_remove(c, t);
	if (other == NULL || other->state != SR_UNIT_RUNNING)
		return (false);
	sr_co_unit_done(c, u);
	return (true);
}
