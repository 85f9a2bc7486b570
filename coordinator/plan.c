/*
 * plan.c - units, the LPT pull queue (a binary max-heap), static splits.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "sr/err.h"
#include "sr/util.h"

void
sr_plan_init(struct sr_plan *p)
{
	memset(p, 0, sizeof(*p));
}

#define SR_SLAB 4096

/* Only the parts a unit allocated itself; the unit lives in a slab. */
static void
unit_release(struct sr_unit *u)
{
	if (u->nfiles > 1)
		free(u->fl.many);
	if (u->x != NULL) {
		free(u->x->avoid);
		sr_strv_free(&u->x->selectors);
		free(u->x);
	}
}

static struct sr_unit_extra *
extra(struct sr_unit *u)
{
	if (u->x == NULL && (u->x = calloc(1, sizeof(*u->x))) != NULL)
		sr_strv_init(&u->x->selectors);
	return (u->x);
}

int
sr_unit_set_bundle(struct sr_unit *u)
{
	if (extra(u) == NULL)
		return (SR_ENOMEM);
	u->x->bundle = true;
	return (0);
}

int
sr_unit_set_avoid(struct sr_unit *u, const char *agent)
{
	char *copy = strdup(agent);

	if (copy == NULL || extra(u) == NULL) {
		free(copy);
		return (SR_ENOMEM);
	}
	free(u->x->avoid);
	u->x->avoid = copy;
	return (0);
}

void
sr_plan_free(struct sr_plan *p)
{
	for (size_t i = 0; i < p->n; i++)
		unit_release(p->units[i]);
	for (size_t i = 0; i < p->nslabs; i++)
		free(p->slabs[i]);
	free(p->slabs);
	free(p->units);
	free(p->heap);
	sr_plan_init(p);
}

static struct sr_unit *
unit_alloc(struct sr_plan *p)
{
	if (p->nslabs == 0 || p->slab_used == SR_SLAB) {
		struct sr_unit **v;
		struct sr_unit *slab;

		v = realloc(p->slabs, (p->nslabs + 1) * sizeof(*v));
		if (v == NULL)
			return (NULL);
		p->slabs = v;
		if ((slab = calloc(SR_SLAB, sizeof(*slab))) == NULL)
			return (NULL);
		p->slabs[p->nslabs++] = slab;
		p->slab_used = 0;
	}
	return (&p->slabs[p->nslabs - 1][p->slab_used++]);
}

struct sr_unit *
sr_plan_unit(const struct sr_plan *p, uint32_t id)
{
	if (id == 0 || id > p->n)
		return (NULL);
	return (p->units[id - 1]);
}

/* a before b in the queue: heavier first, then the smaller key. */
/* The weight lives in the heap entry: most comparisons touch no unit. */
static bool
heap_less(const struct sr_plan *p, size_t i, size_t j)
{
	const struct sr_heap_ent *a = &p->heap[i];
	const struct sr_heap_ent *b = &p->heap[j];

	(void) p;
	if (a->weight != b->weight)
		return (a->weight > b->weight);
	if (a->first != b->first)
		return (a->first < b->first);
	return (a->id < b->id);
}

static void
heap_swap(struct sr_plan *p, size_t i, size_t j)
{
	struct sr_heap_ent t = p->heap[i];

	p->heap[i] = p->heap[j];
	p->heap[j] = t;
}

static void
sift_up(struct sr_plan *p, size_t i)
{
	while (i > 0 && heap_less(p, i, (i - 1) / 2)) {
		heap_swap(p, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
sift_down(struct sr_plan *p, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1;
		size_t r = l + 1;
		size_t m = i;

		if (l < p->nheap && heap_less(p, l, m))
			m = l;
		if (r < p->nheap && heap_less(p, r, m))
			m = r;
		if (m == i)
			return;
		heap_swap(p, i, m);
		i = m;
	}
}

int
sr_plan_push(struct sr_plan *p, struct sr_unit *u)
{
	if (sr_grow(&p->heap, &p->heapcap, p->nheap, sizeof(*p->heap), 64) != 0)
		return (SR_ENOMEM);
	u->state = SR_UNIT_QUEUED;
	u->agent = NULL;
	p->heap[p->nheap].weight = u->weight;
	p->heap[p->nheap].first = sr_unit_file(u, 0);
	p->heap[p->nheap].id = u->id;
	p->nheap++;
	sift_up(p, p->nheap - 1);
	return (0);
}

static uint32_t
heap_pop(struct sr_plan *p)
{
	uint32_t top = p->heap[0].id;

	p->heap[0] = p->heap[--p->nheap];
	if (p->nheap > 0)
		sift_down(p, 0);
	return (top);
}

const struct sr_unit *
sr_plan_peek(const struct sr_plan *p)
{
	return (p->nheap > 0 ? p->units[p->heap[0].id - 1] : NULL);
}

struct sr_unit *
sr_plan_take(struct sr_plan *p, bool (*ok)(void *arg, const struct sr_unit *u),
             void *arg)
{
	return (sr_plan_take_above(p, -INFINITY, ok, arg));
}

struct sr_unit *
sr_plan_take_above(struct sr_plan *p, double floor,
                   bool (*ok)(void *arg, const struct sr_unit *u), void *arg)
{
	struct sr_heap_ent refused[64];
	size_t nref = 0;
	struct sr_unit *got = NULL;

	/* Refused units are few (the serial unit, exclusive ones, crashed
	 * ones avoiding an agent, at most 16 being split); look past at most
	 * 64 of them. */
	while (p->nheap > 0 && nref < 64) {
		struct sr_unit *u = p->units[heap_pop(p) - 1];

		if (u->state == SR_UNIT_DROPPED)
			continue;
		if (u->weight >= floor && !u->splitting &&
		    (ok == NULL || ok(arg, u))) {
			got = u;
			break;
		}
		refused[nref].weight = u->weight;
		refused[nref].first = sr_unit_file(u, 0);
		refused[nref++].id = u->id;
		if (u->weight < floor)
			break; /* the rest are lighter still */
	}
	for (size_t i = 0; i < nref; i++) {
		p->heap[p->nheap++] = refused[i];
		sift_up(p, p->nheap - 1);
	}
	return (got);
}

static int
reserve_unit(struct sr_plan *p)
{
	if (sr_grow(&p->units, &p->cap, p->n, sizeof(*p->units), 64) != 0)
		return (SR_ENOMEM);
	return (0);
}

static int
unit_files(struct sr_unit *u, const size_t *files, size_t nfiles)
{
	if (nfiles == 1) {
		u->fl.one = (uint32_t) files[0];
	} else {
		u->fl.many =
		    calloc(1, nfiles * (sizeof(uint32_t) + sizeof(bool)));
		if (u->fl.many == NULL)
			return (SR_ENOMEM);
		for (size_t i = 0; i < nfiles; i++)
			u->fl.many[i] = (uint32_t) files[i];
	}
	u->nfiles = (uint32_t) nfiles;
	return (0);
}

/* A new unit, registered but not queued. */
static int
unit_new(struct sr_plan *p, const struct sr_suite *s, const size_t *files,
         size_t nfiles, bool serial, struct sr_unit **out)
{
	struct sr_unit *u;
	int rv;

	if (nfiles == 0 || nfiles > UINT32_MAX || s->n > UINT32_MAX)
		return (SR_EINVAL);
	if ((rv = reserve_unit(p)) != 0)
		return (rv);
	if ((u = unit_alloc(p)) == NULL)
		return (SR_ENOMEM);
	if ((rv = unit_files(u, files, nfiles)) != 0)
		return (rv); /* u stays unused in its slab */
	u->serial = serial;
	for (size_t i = 0; i < nfiles; i++) {
		u->weight += s->files[files[i]].est_s;
		u->exclusive |= s->files[files[i]].exclusive;
	}
	p->units[p->n++] = u;
	u->id = (uint32_t) p->n;
	u->state = SR_UNIT_DONE; /* until queued */
	*out = u;
	return (0);
}

int
sr_plan_add(struct sr_plan *p, const struct sr_suite *s, const size_t *files,
            size_t nfiles, bool serial, uint32_t *id)
{
	struct sr_unit *u;
	int rv;

	if ((rv = unit_new(p, s, files, nfiles, serial, &u)) != 0 ||
	    (rv = sr_plan_push(p, u)) != 0)
		return (rv);
	*id = u->id;
	return (0);
}

/* A new unit for one part of a file, registered but not queued. */
static int
part_new(struct sr_plan *p, const struct sr_suite *s, size_t file,
         uint32_t part, const struct sr_strv *ids, double weight,
         struct sr_unit **out)
{
	struct sr_unit *u;
	int rv;

	if ((rv = unit_new(p, s, &file, 1, false, &u)) != 0)
		return (rv);
	if (extra(u) == NULL)
		return (SR_ENOMEM);
	for (size_t i = 0; i < ids->n && rv == 0; i++)
		rv = sr_strv_push(&u->x->selectors, ids->v[i]);
	if (rv != 0)
		return (rv);
	u->x->part = part;
	u->weight = weight;
	*out = u;
	return (0);
}

int
sr_plan_add_part(struct sr_plan *p, const struct sr_suite *s, size_t file,
                 uint32_t part, const struct sr_strv *ids, double weight,
                 uint32_t *id)
{
	struct sr_unit *u;
	int rv;

	if ((rv = part_new(p, s, file, part, ids, weight, &u)) != 0 ||
	    (rv = sr_plan_push(p, u)) != 0)
		return (rv);
	*id = u->id;
	return (0);
}

int
sr_plan_again(struct sr_plan *p, const struct sr_suite *s,
              const struct sr_unit *old, size_t file, bool queue, uint32_t *id)
{
	struct sr_unit *u;
	int rv;

	if (sr_unit_selectors(old) != NULL)
		rv = part_new(p, s, file, sr_unit_part(old),
		              sr_unit_selectors(old), old->weight, &u);
	else
		rv = unit_new(p, s, &file, 1, old->serial, &u);
	if (rv != 0 || (queue && (rv = sr_plan_push(p, u)) != 0))
		return (rv);
	*id = u->id;
	return (0);
}

int
sr_plan_build(struct sr_plan *p, const struct sr_suite *s)
{
	size_t *serial = malloc((s->n ? s->n : 1) * sizeof(*serial));
	size_t nserial = 0;
	uint32_t id;
	int rv = 0;

	if (serial == NULL)
		return (SR_ENOMEM);
	for (size_t i = 0; i < s->n && rv == 0; i++) {
		if (s->files[i].serial)
			serial[nserial++] = i;
		else
			rv = sr_plan_add(p, s, &i, 1, false, &id);
	}
	if (rv == 0 && nserial > 0)
		rv = sr_plan_add(p, s, serial, nserial, true, &id);
	free(serial);
	return (rv);
}

double
sr_lower_bound(const double *w, size_t n, unsigned slots)
{
	double sum = 0;
	double max = 0;

	for (size_t i = 0; i < n; i++) {
		sum += w[i];
		if (w[i] > max)
			max = w[i];
	}
	if (slots == 0)
		return (sum);
	return (sum / slots > max ? sum / slots : max);
}

/* LPT order over compact entries: heavier first, then path order. */
static int
cmp_lpt(const void *a, const void *b)
{
	const struct sr_heap_ent *x = a;
	const struct sr_heap_ent *y = b;

	if (x->weight != y->weight)
		return (x->weight > y->weight ? -1 : 1);
	if (x->first != y->first)
		return (x->first < y->first ? -1 : 1);
	return (x->id < y->id ? -1 : (x->id > y->id));
}

/* Shards in a min-heap by (load, index): the least loaded, lowest index
 * first, so ties resolve the same on every machine. */
static bool
shard_less(const double *loads, unsigned a, unsigned b)
{
	return (loads[a] < loads[b] || (loads[a] == loads[b] && a < b));
}

static void
shard_sift_down(unsigned *h, unsigned n, const double *loads)
{
	unsigned i = 0;

	for (;;) {
		unsigned l = 2 * i + 1;
		unsigned m = i;
		unsigned t;

		if (l < n && shard_less(loads, h[l], h[m]))
			m = l;
		if (l + 1 < n && shard_less(loads, h[l + 1], h[m]))
			m = l + 1;
		if (m == i)
			return;
		t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void
split(const struct sr_heap_ent *order, size_t n, unsigned shards,
      unsigned *heap, struct sr_static_plan *out)
{
	for (unsigned k = 0; k < shards; k++)
		heap[k] = k; /* all loads 0: already a heap */
	for (size_t i = 0; i < n; i++) {
		unsigned best = heap[0];

		out->shard_of[order[i].id - 1] = best;
		out->order[i] = order[i].id;
		out->loads[best] += order[i].weight;
		shard_sift_down(heap, shards, out->loads);
	}
}

int
sr_plan_static(const struct sr_plan *p, unsigned shards,
               struct sr_static_plan *out)
{
	size_t n = p->n ? p->n : 1;
	struct sr_heap_ent *order;
	unsigned *heap;

	if (shards == 0)
		return (SR_EINVAL);
	memset(out, 0, sizeof(*out));
	order = malloc(n * sizeof(*order));
	heap = malloc(shards * sizeof(*heap));
	out->shard_of = calloc(n, sizeof(*out->shard_of));
	out->loads = calloc(shards, sizeof(*out->loads));
	out->order = malloc(n * sizeof(*out->order));
	if (order == NULL || heap == NULL || out->shard_of == NULL ||
	    out->loads == NULL || out->order == NULL) {
		free(order);
		free(heap);
		sr_static_plan_free(out);
		return (SR_ENOMEM);
	}
	out->shards = shards;
	for (size_t i = 0; i < p->n; i++) {
		order[i].weight = p->units[i]->weight;
		order[i].first = sr_unit_file(p->units[i], 0);
		order[i].id = p->units[i]->id;
	}
	qsort(order, p->n, sizeof(*order), cmp_lpt);
	split(order, p->n, shards, heap, out);
	free(order);
	free(heap);
	return (0);
}

void
sr_static_plan_free(struct sr_static_plan *sp)
{
	free(sp->shard_of);
	free(sp->loads);
	free(sp->order);
	sp->order = NULL;
	sp->shard_of = NULL;
	sp->loads = NULL;
}

void
sr_plan_drop(struct sr_plan *p, struct sr_unit *u)
{
	(void) p;
	u->state = SR_UNIT_DROPPED; /* sr_plan_take skips it */
}

void
sr_plan_compact(struct sr_plan *p)
{
	size_t n = 0;

	for (size_t i = 0; i < p->nheap; i++)
		if (p->units[p->heap[i].id - 1]->state != SR_UNIT_DROPPED)
			p->heap[n++] = p->heap[i];
	p->nheap = n;
	for (size_t i = n / 2; i-- > 0;)
		sift_down(p, i);
}
