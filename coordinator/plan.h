/*
 * plan.h - units of work, the pull queue, static plans, the lower bound.
 *
 * The suite is sorted by path (collect.c sorts), so a unit's first file
 * index orders ties by path without touching the strings.
 *
 * Every file that is not in the serial group is a unit of its own; the
 * serial group is one unit whose files run in path order on one slot and
 * whose weight is their sum. The queue hands out the heaviest eligible unit
 * first (ties: the smaller path), so pull-based dispatch from free slots is
 * LPT with exact estimates and corrects itself with wrong ones. A requeued
 * file becomes a new unit (ids are never reused, so a late result for the
 * old unit is recognised and ignored).
 *
 * Memory: units come from slabs, one-file units keep their file index
 * inline, and what few units need lives in an optional extra: 64 bytes a
 * unit, about 90 bytes a file here with the heap and the index.
 *
 * Ownership: the plan owns its units and their file index arrays; units
 * point into the caller's suite by index only. Not thread safe.
 */
#ifndef SR_PLAN_H
#define SR_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sr/util.h"
#include "suite.h"

enum sr_unit_state {
	SR_UNIT_QUEUED = 0,
	SR_UNIT_RUNNING,
	SR_UNIT_DONE,
	SR_UNIT_DROPPED, /* replaced by its parts; still in the heap, skipped */
};

/* What few units need: a crashed file's requeue avoids an agent, a part of
 * a split file carries its test ids, a bundle runs its files in one
 * session (bundle.h). */
struct sr_unit_extra {
	char *avoid;              /* agent name to avoid, or NULL */
	struct sr_strv selectors; /* a part's test ids (empty otherwise) */
	uint32_t part;            /* which part (0 when not split) */
	bool bundle;              /* a bundle of short files */
};

/* 64 bytes: a million of them fit the planning budget. Reach the files,
 * the per-file flags and the extras through the accessors below. */
struct sr_unit {
	double weight;     /* estimated seconds */
	double dispatched; /* monotonic time of the dispatch */
	union {
		uint32_t one;   /* nfiles == 1: the file's suite index */
		uint32_t *many; /* nfiles suite indices (run order), then
		                   nfiles bools: result received */
	} fl;
	void *agent;             /* coordinator's agent record while running */
	struct sr_unit_extra *x; /* NULL for most units */
	uint32_t id;             /* 1-based; plan->units[id - 1] */
	uint32_t nfiles;
	uint32_t attempt; /* dispatch count; the wire's attempt number */
	uint32_t slot;
	uint32_t ngot;
	uint8_t state; /* enum sr_unit_state */
	bool serial : 1;
	bool exclusive : 1;
	bool twinned : 1;  /* had a backup attempt, or is one: no more */
	bool survivor : 1; /* a backup whose original ended without a verdict */
	bool splitting : 1; /* its test ids are being collected (split.h):
	                       queued, but not taken meanwhile */
	bool one_got;       /* nfiles == 1: result received this attempt */
};
/* One per file, as struct sr_file (suite.h). */
_Static_assert(sizeof(void *) != 8 || sizeof(struct sr_unit) <= 64,
               "struct sr_unit outgrew 64 bytes");

/* The suite index of the unit's i-th file. */
static inline uint32_t
sr_unit_file(const struct sr_unit *u, size_t i)
{
	return (u->nfiles == 1 ? u->fl.one : u->fl.many[i]);
}

/* Whether the i-th file's result arrived this attempt (writable). */
static inline bool *
sr_unit_got(struct sr_unit *u, size_t i)
{
	return (u->nfiles == 1 ? &u->one_got
	                       : (bool *) (u->fl.many + u->nfiles) + i);
}

/* A part's test ids, or NULL for a unit of whole files. */
static inline const struct sr_strv *
sr_unit_selectors(const struct sr_unit *u)
{
	return (u->x != NULL && u->x->selectors.n > 0 ? &u->x->selectors
	                                              : NULL);
}

static inline uint32_t
sr_unit_part(const struct sr_unit *u)
{
	return (u->x != NULL ? u->x->part : 0);
}

static inline const char *
sr_unit_avoid(const struct sr_unit *u)
{
	return (u->x != NULL ? u->x->avoid : NULL);
}

static inline bool
sr_unit_bundle(const struct sr_unit *u)
{
	return (u->x != NULL && u->x->bundle);
}

/* Make the unit a bundle. */
int sr_unit_set_bundle(struct sr_unit *u);
/* Remember an agent this unit should not run on (copied). */
int sr_unit_set_avoid(struct sr_unit *u, const char *agent);

struct sr_heap_ent {
	double weight;
	uint32_t first; /* the first file's suite index: path order */
	uint32_t id;
};

struct sr_plan {
	struct sr_unit **units;
	size_t n;
	size_t cap;
	struct sr_unit **slabs; /* units are allocated SR_SLAB at a time */
	size_t nslabs;
	size_t slab_used;
	struct sr_heap_ent *heap; /* queued units */
	size_t nheap;
	size_t heapcap;
};

void sr_plan_init(struct sr_plan *p);
void sr_plan_free(struct sr_plan *p);
/* Units for every file of the suite (estimates must be filled), queued. */
int sr_plan_build(struct sr_plan *p, const struct sr_suite *s);
/* A new queued unit for these files (copied). */
int sr_plan_add(struct sr_plan *p, const struct sr_suite *s,
                const size_t *files, size_t nfiles, bool serial, uint32_t *id);
struct sr_unit *sr_plan_unit(const struct sr_plan *p, uint32_t id);
/* A new queued unit for one part of a split file: the test ids are
 * copied, the weight given. */
int sr_plan_add_part(struct sr_plan *p, const struct sr_suite *s, size_t file,
                     uint32_t part, const struct sr_strv *ids, double weight,
                     uint32_t *id);
/* A new unit for another attempt of one file of old (suite index file;
 * old's part and test ids too, when old is a part), queued when queue is
 * true; otherwise it waits (state DONE) for the caller to run it at once. */
int sr_plan_again(struct sr_plan *p, const struct sr_suite *s,
                  const struct sr_unit *old, size_t file, bool queue,
                  uint32_t *id);
/* Take a queued unit out of the queue for good (it was split, or went
 * into a bundle). It stays in the heap, skipped, until sr_plan_compact. */
void sr_plan_drop(struct sr_plan *p, struct sr_unit *u);
/* Clear dropped units out of the heap, so its size (and sr_plan_peek)
 * count only what is queued (files being split included). */
void sr_plan_compact(struct sr_plan *p);
/* Queue a unit again (state QUEUED). */
int sr_plan_push(struct sr_plan *p, struct sr_unit *u);
/*
 * Take the heaviest queued unit that ok() accepts, but none that is being
 * split. Units it refuses stay queued. ok may be NULL. Returns NULL when
 * none is acceptable.
 */
struct sr_unit *sr_plan_take(struct sr_plan *p,
                             bool (*ok)(void *arg, const struct sr_unit *u),
                             void *arg);
/* The same among units at least floor heavy: the search ends at the first
 * lighter one (they come heaviest first). */
struct sr_unit *
sr_plan_take_above(struct sr_plan *p, double floor,
                   bool (*ok)(void *arg, const struct sr_unit *u), void *arg);
/* The heaviest queued unit, without taking it (one being split, or a
 * dropped one not compacted away yet, may be it). */
const struct sr_unit *sr_plan_peek(const struct sr_plan *p);

/* max(sum(w) / slots, max(w)): no schedule finishes earlier. */
double sr_lower_bound(const double *w, size_t n, unsigned slots);

/* Static LPT split into shards: shard[i] receives the index of every unit
 * of the plan, in LPT order; loads[] the estimated seconds per shard. */
struct sr_static_plan {
	unsigned shards;
	size_t *shard_of; /* per unit id - 1 */
	double *loads;
	uint32_t *order; /* unit ids, LPT order */
};
int sr_plan_static(const struct sr_plan *p, unsigned shards,
                   struct sr_static_plan *out);
void sr_static_plan_free(struct sr_static_plan *sp);

#endif /* SR_PLAN_H */
