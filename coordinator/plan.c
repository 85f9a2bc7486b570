/*
 * plan.c - units, the LPT pull queue (a binary max-heap), static splits.
 */
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "sr/err.h"

void
sr_plan_init(struct sr_plan *p)
{
	memset(p, 0, sizeof(*p));
}

static void
unit_free(struct sr_unit *u)
{
	if (u == NULL)
		return;
	free(u->files);
	free(u->got);
	free(u->avoid);
	free(u);
}

void
sr_plan_free(struct sr_plan *p)
{
	for (size_t i = 0; i < p->n; i++)
		unit_free(p->units[i]);
	free(p->units);
	free(p->heap);
	sr_plan_init(p);
}

struct sr_unit *
sr_plan_unit(const struct sr_plan *p, uint32_t id)
{
	if (id == 0 || id > p->n)
		return (NULL);
	return (p->units[id - 1]);
}

/* a before b in the queue: heavier first, then the smaller key. */
static bool
before(const struct sr_unit *a, const struct sr_unit *b)
{
	if (a->weight != b->weight)
		return (a->weight > b->weight);
	return (strcmp(a->key, b->key) < 0);
}

static bool
heap_less(const struct sr_plan *p, size_t i, size_t j)
{
	return (before(p->units[p->heap[i] - 1], p->units[p->heap[j] - 1]));
}

static void
heap_swap(struct sr_plan *p, size_t i, size_t j)
{
	uint32_t t = p->heap[i];

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
	if (p->nheap == p->heapcap) {
		size_t cap = p->heapcap ? p->heapcap * 2 : 64;
		uint32_t *h = realloc(p->heap, cap * sizeof(*h));

		if (h == NULL)
			return (SR_ENOMEM);
		p->heap = h;
		p->heapcap = cap;
	}
	u->state = SR_UNIT_QUEUED;
	u->agent = NULL;
	p->heap[p->nheap++] = u->id;
	sift_up(p, p->nheap - 1);
	return (0);
}

static uint32_t
heap_pop(struct sr_plan *p)
{
	uint32_t top = p->heap[0];

	p->heap[0] = p->heap[--p->nheap];
	if (p->nheap > 0)
		sift_down(p, 0);
	return (top);
}

const struct sr_unit *
sr_plan_peek(const struct sr_plan *p)
{
	return (p->nheap > 0 ? p->units[p->heap[0] - 1] : NULL);
}

struct sr_unit *
sr_plan_take(struct sr_plan *p, bool (*ok)(void *arg, const struct sr_unit *u),
             void *arg)
{
	uint32_t refused[64];
	size_t nref = 0;
	struct sr_unit *got = NULL;

	/* Refused units are few (the serial unit, exclusive ones, crashed
	 * ones avoiding an agent); look past at most 64 of them. */
	while (p->nheap > 0 && nref < 64) {
		struct sr_unit *u = p->units[heap_pop(p) - 1];

		if (ok == NULL || ok(arg, u)) {
			got = u;
			break;
		}
		refused[nref++] = u->id;
	}
	for (size_t i = 0; i < nref; i++) {
		p->heap[p->nheap++] = refused[i];
		sift_up(p, p->nheap - 1);
	}
	return (got);
}

static int
add_unit(struct sr_plan *p, struct sr_unit *u)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		struct sr_unit **v = realloc(p->units, cap * sizeof(*v));

		if (v == NULL)
			return (SR_ENOMEM);
		p->units = v;
		p->cap = cap;
	}
	p->units[p->n++] = u;
	u->id = (uint32_t) p->n;
	return (0);
}

int
sr_plan_add(struct sr_plan *p, const struct sr_suite *s, const size_t *files,
            size_t nfiles, bool serial, uint32_t *id)
{
	struct sr_unit *u = calloc(1, sizeof(*u));
	int rv;

	if (u == NULL || nfiles == 0 ||
	    (u->files = malloc(nfiles * sizeof(*files))) == NULL ||
	    (u->got = calloc(nfiles, sizeof(*u->got))) == NULL) {
		unit_free(u);
		return (nfiles == 0 ? SR_EINVAL : SR_ENOMEM);
	}
	memcpy(u->files, files, nfiles * sizeof(*files));
	u->nfiles = nfiles;
	u->serial = serial;
	u->key = s->files[files[0]].path;
	for (size_t i = 0; i < nfiles; i++) {
		u->weight += s->files[files[i]].est_s;
		u->exclusive |= s->files[files[i]].exclusive;
	}
	if ((rv = add_unit(p, u)) != 0) {
		unit_free(u);
		return (rv);
	}
	if ((rv = sr_plan_push(p, u)) != 0)
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

static int
cmp_lpt(const void *a, const void *b)
{
	const struct sr_unit *ua = *(struct sr_unit *const *) a;
	const struct sr_unit *ub = *(struct sr_unit *const *) b;

	if (before(ua, ub))
		return (-1);
	return (before(ub, ua) ? 1 : 0);
}

int
sr_plan_static(const struct sr_plan *p, unsigned shards,
               struct sr_static_plan *out)
{
	struct sr_unit **order;

	if (shards == 0)
		return (SR_EINVAL);
	order = malloc((p->n ? p->n : 1) * sizeof(*order));
	out->shard_of = calloc(p->n ? p->n : 1, sizeof(*out->shard_of));
	out->loads = calloc(shards, sizeof(*out->loads));
	out->order = malloc((p->n ? p->n : 1) * sizeof(*out->order));
	if (order == NULL || out->shard_of == NULL || out->loads == NULL ||
	    out->order == NULL) {
		free(order);
		sr_static_plan_free(out);
		return (SR_ENOMEM);
	}
	out->shards = shards;
	memcpy(order, p->units, p->n * sizeof(*order));
	qsort(order, p->n, sizeof(*order), cmp_lpt);
	for (size_t i = 0; i < p->n; i++) {
		unsigned best = 0;

		for (unsigned k = 1; k < shards; k++)
			if (out->loads[k] < out->loads[best])
				best = k;
		out->shard_of[order[i]->id - 1] = best;
		out->order[i] = order[i]->id;
		out->loads[best] += order[i]->weight;
	}
	free(order);
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
