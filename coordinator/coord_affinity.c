/*
 * coord_affinity.c - which unit a slot takes where the run's files span
 * several pytest configurations (coord_int.h: HELD, PARSE_S, NEAR).
 *
 * A slot's fork server keeps a parsed configuration per server, the HELD
 * used last; the coordinator mirrors that list per slot (arec.held) from
 * what it assigned. A slot's first file of another configuration pays its
 * parse first, as measured by the agents (parse_us, averaged here per
 * configuration), PARSE_S until measured. So where the heaviest eligible
 * unit is of a configuration the slot does not hold, the slot takes the
 * heaviest of one it holds if that one is lighter by at most the parse
 * (or, while plenty is queued, at least NEAR as heavy); failing that, it
 * leaves the unit to a slot that holds its configuration and is due to be
 * free sooner than the parse would take (or has just become free), and
 * waits - one waiter per such holder, and no slot longer in a row than the
 * parse it would save. Units of configuration 0 (unknown), exclusive ones
 * and ones avoiding an agent are taken as LPT orders them.
 *
 * Ownership: borrows the coordinator's state. One thread.
 */
#include <math.h>
#include <string.h>

#include "coord_int.h"
#include "sr/util.h"

/* The configuration of the unit's files (a bundle's share one). */
static uint8_t
config_of(const struct coord *c, const struct sr_unit *u)
{
	return (c->suite->files[sr_unit_file(u, 0)].config);
}

static bool
holds(const struct arec *a, unsigned slot, uint8_t config)
{
	return (config != 0 && memchr(a->held[slot], config, HELD) != NULL);
}

void
sr_co_hold(const struct coord *c, struct arec *a, unsigned slot,
           const struct sr_unit *u)
{
	uint8_t config = config_of(c, u);
	uint8_t *h;
	uint8_t *at;
	size_t n;

	if (a->held == NULL)
		return;
	a->waited[slot] = 0;
	if (config == 0)
		return;
	h = a->held[slot];
	at = memchr(h, config, HELD);
	n = at != NULL ? (size_t) (at - h) : HELD - 1;
	memmove(h + 1, h, n); /* the least recently used falls off */
	h[0] = config;
}

void
sr_co_freed(struct arec *a, unsigned slot)
{
	if (a->freed != NULL)
		a->freed[slot] = sr_now();
}

void
sr_co_learn_parse(struct coord *c, uint8_t config, double parse_s)
{
	if (config == 0 || !(parse_s > 0))
		return;
	c->parses[config].sum_s += parse_s;
	c->parses[config].n++;
}

/* What a slot pays to parse config before its first file of it. */
static double
parse_cost(const struct coord *c, uint8_t config)
{
	unsigned n = c->parses[config].n;

	return (n > 0 ? c->parses[config].sum_s / n : PARSE_S);
}

/* The search for a held unit nearly as heavy as the heaviest (the weight
 * is sr_plan_take_above's floor): whose slot, and what else it must
 * accept. */
struct near {
	const struct arec *a;
	const struct coord *c;
	unsigned slot;
	bool (*ok)(void *arg, const struct sr_unit *u);
	void *arg;
};

static bool
near_and_held(void *arg, const struct sr_unit *u)
{
	struct near *n = arg;

	/* Not an exclusive one: ok() would start draining the agent for a
	 * unit lighter than the one it passed over. */
	return (!u->exclusive && holds(n->a, n->slot, config_of(n->c, u)) &&
	        n->ok(n->arg, u));
}

/* Whether the slot could take a unit of its held configuration soon: free
 * since less than half the parse (it asks at once, or something holds it
 * back), or due to be free by its unit's estimate sooner than the parse
 * would take - not already late by half of it (then it is anyone's guess).
 * The caller looks only at agents that take work (sr_co_taking). */
static bool
slot_soon(const struct coord *c, const struct arec *a, unsigned s, double cost,
          double now)
{
	const struct sr_unit *u;
	double left;

	if (a->depth[s] == 0)
		return (now - a->freed[s] < cost / 2);
	if (a->depth[s] != 1 ||
	    (u = sr_plan_unit(&c->plan, a->last[s])) == NULL ||
	    u->state != SR_UNIT_RUNNING)
		return (false);
	left = u->dispatched + u->weight - now;
	return (left > -cost / 2 && left < cost);
}

/* How many slots that hold config will take a unit of it soon
 * (slot_soon), less the slots that wait for them this turn already. */
static unsigned *
held_soon(struct coord *c, uint8_t config, double cost, double now)
{
	unsigned n = 0;

	if (c->soon_turn[config] == c->turn)
		return (&c->soon[config]);
	for (const struct arec *a = c->agents; a != NULL; a = a->next) {
		if (a->held == NULL || !sr_co_taking(c, a, now))
			continue;
		for (unsigned s = 0; s < a->slots; s++)
			n += holds(a, s, config) &&
			     slot_soon(c, a, s, cost, now);
	}
	c->soon_turn[config] = c->turn;
	c->soon[config] = n;
	return (&c->soon[config]);
}

/* Whether the slot waits for a holder of config rather than parse it: a
 * holder due soon that no other slot waits for this turn, and the slot has
 * not waited in a row as long as the parse it would save. */
static bool
waits(struct coord *c, struct arec *a, unsigned slot, uint8_t config,
      double cost)
{
	double now = sr_now();
	unsigned *soon;

	if (a->waited[slot] > 0 && now - a->waited[slot] >= cost)
		return (false);
	soon = held_soon(c, config, cost, now);
	if (*soon == 0)
		return (false);
	(*soon)--;
	if (a->waited[slot] == 0)
		a->waited[slot] = now;
	return (true);
}

struct sr_unit *
sr_co_take(struct coord *c, struct arec *a, unsigned slot,
           bool (*ok)(void *arg, const struct sr_unit *u), void *arg,
           bool *wait)
{
	struct sr_unit *u = sr_plan_take(&c->plan, ok, arg);
	struct near n = {a, c, slot, ok, arg};
	struct sr_unit *alt;
	uint8_t config;
	double cost;
	double floor;

	*wait = false;
	/* A slot that holds none parses whichever it takes. */
	if (u == NULL || a->held == NULL || a->held[slot][0] == 0 ||
	    u->exclusive || (config = config_of(c, u)) == 0 ||
	    holds(a, slot, config))
		return (u);
	cost = parse_cost(c, config);
	floor = u->weight - cost;
	if (c->plan.nheap >= 2 * (size_t) c->prog.slots + 1)
		floor = fmin(floor, u->weight * NEAR);
	if (sr_plan_push(&c->plan, u) != 0)
		return (u);
	if ((alt = sr_plan_take_above(&c->plan, floor, near_and_held, &n)) !=
	    NULL)
		return (alt);
	if (sr_unit_avoid(u) == NULL && waits(c, a, slot, config, cost)) {
		*wait = true;
		return (NULL);
	}
	return (sr_plan_take(&c->plan, ok, arg));
}
