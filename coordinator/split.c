/*
 * split.c - parts of long files, made while the run starts.
 *
 * The parts of a file are balanced by its tests' durations from the
 * history (LPT: the longest test first, each into the lightest part), so a
 * few slow tests do not end up together in one part that outlasts the
 * others. Without any known time for the file's tests, parts are
 * contiguous runs of near-equal count, which keeps module and class
 * fixtures together.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collect.h"
#include "collect_exact.h"
#include "history.h"
#include "split.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

uint32_t
sr_split_parts(double weight, size_t n, double share)
{
	double target = share / 2 > SR_MIN_PART_S ? share / 2 : SR_MIN_PART_S;
	double k = ceil(weight / target);

	if (weight <= share || weight < 2 * SR_MIN_PART_S || n < 2 || k < 2)
		return (0);
	return ((uint32_t) (k < (double) n ? k : (double) n));
}

static double
fair_share(const struct sr_plan *p, unsigned slots)
{
	double total = 0;

	for (size_t i = 0; i < p->n; i++)
		if (p->units[i]->state == SR_UNIT_QUEUED)
			total += p->units[i]->weight;
	return (total / (slots ? slots : 1));
}

static int
by_weight(const void *a, const void *b)
{
	const struct sr_unit *x = *(struct sr_unit *const *) a;
	const struct sr_unit *y = *(struct sr_unit *const *) b;

	return ((x->weight < y->weight) - (x->weight > y->weight));
}

/* Candidates: queued one-file units, not serial or exclusive, longer than
 * the share; the longest first, at most max. */
static size_t
candidates(const struct sr_plan *p, double share, struct sr_unit **out,
           size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < p->n && n < max; i++) {
		struct sr_unit *u = p->units[i];

		if (u->state == SR_UNIT_QUEUED && u->nfiles == 1 &&
		    !u->serial && !u->exclusive &&
		    sr_unit_selectors(u) == NULL &&
		    sr_split_parts(u->weight, 2, share) > 0)
			out[n++] = u;
	}
	qsort(out, n, sizeof(*out), by_weight);
	return (n);
}

/* A test in LPT order: the longest first, ties in collection order. */
struct item {
	double d;
	size_t i;
};

static int
by_longest(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	if (x->d != y->d)
		return ((x->d < y->d) - (x->d > y->d));
	return ((x->i > y->i) - (x->i < y->i));
}

/* The part with the least load; of equal loads the one with fewer tests,
 * so every part gets a test even when times are zero. */
static uint32_t
lightest(const double *load, const size_t *count, uint32_t k)
{
	uint32_t best = 0;

	for (uint32_t p = 1; p < k; p++)
		if (load[p] < load[best] ||
		    (load[p] == load[best] && count[p] < count[best]))
			best = p;
	return (best);
}

int
sr_split_balance(const double *est, size_t n, uint32_t k, uint32_t *part,
                 double *load)
{
	struct item *it;
	size_t *count;

	if (k == 0 || k > n)
		return (SR_EINVAL);
	it = malloc(n * sizeof(*it));
	count = calloc(k, sizeof(*count));
	if (it == NULL || count == NULL) {
		free(it);
		free(count);
		return (SR_ENOMEM);
	}
	for (size_t i = 0; i < n; i++)
		it[i] = (struct item){est[i] > 0 ? est[i] : 0, i};
	qsort(it, n, sizeof(*it), by_longest);
	memset(load, 0, k * sizeof(*load));
	for (size_t j = 0; j < n; j++) {
		uint32_t p = lightest(load, count, k);

		part[it[j].i] = p;
		load[p] += it[j].d;
		count[p]++;
	}
	free(it);
	free(count);
	return (0);
}

/*
 * How a file's ids go into k parts: part p holds order[start[p] ..
 * start[p + 1]) in collection order and weighs load[p] of total. The
 * strings stay the caller's.
 */
struct layout {
	uint32_t *part; /* per id */
	double *load;   /* per part */
	size_t *start;  /* k + 1 */
	char **order;
	double total;
};

static void
layout_free(struct layout *l)
{
	free(l->part);
	free(l->load);
	free(l->start);
	free(l->order);
}

/* Contiguous runs of near-equal count; the load is the count. */
static void
by_count(size_t n, uint32_t k, struct layout *l)
{
	for (uint32_t p = 0; p < k; p++) {
		size_t lo = n * p / k, hi = n * (p + 1) / k;

		l->load[p] = (double) (hi - lo);
		for (size_t i = lo; i < hi; i++)
			l->part[i] = p;
	}
	l->total = (double) n;
}

/* The ids, grouped by part (a counting sort: stable, so each part keeps
 * pytest's order). */
static void
group(const struct sr_strv *ids, uint32_t k, struct layout *l)
{
	memset(l->start, 0, (k + 1) * sizeof(*l->start));
	for (size_t i = 0; i < ids->n; i++)
		l->start[l->part[i] + 1]++;
	for (uint32_t p = 0; p < k; p++)
		l->start[p + 1] += l->start[p];
	for (size_t i = 0; i < ids->n; i++)
		l->order[l->start[l->part[i]]++] = ids->v[i];
	for (uint32_t p = k; p > 0; p--)
		l->start[p] = l->start[p - 1];
	l->start[0] = 0;
}

/* The layout by est (balanced), or by count when est is NULL or all 0. */
static int
layout_make(const struct sr_strv *ids, const double *est, uint32_t k,
            struct layout *l)
{
	int rv = 0;

	l->part = malloc(ids->n * sizeof(*l->part));
	l->load = malloc(k * sizeof(*l->load));
	l->start = malloc((k + 1) * sizeof(*l->start));
	l->order = malloc(ids->n * sizeof(*l->order));
	l->total = 0;
	if (l->part == NULL || l->load == NULL || l->start == NULL ||
	    l->order == NULL) {
		layout_free(l);
		return (SR_ENOMEM);
	}
	if (est != NULL)
		rv = sr_split_balance(est, ids->n, k, l->part, l->load);
	for (uint32_t p = 0; est != NULL && rv == 0 && p < k; p++)
		l->total += l->load[p];
	if (rv == 0 && !(l->total > 0))
		by_count(ids->n, k, l);
	if (rv != 0) {
		layout_free(l);
		return (rv);
	}
	group(ids, k, l);
	return (0);
}

/* Queue the k parts of the layout as units (their ids into added, *n of
 * them before a failure). */
static int
add_parts(struct sr_plan *p, const struct sr_suite *s, size_t file,
          const struct layout *l, uint32_t k, double weight, uint32_t *added,
          uint32_t *n)
{
	int rv = 0;

	for (uint32_t part = 0; part < k && rv == 0; part++) {
		struct sr_strv chunk = {l->order + l->start[part],
		                        l->start[part + 1] - l->start[part], 0};

		rv = sr_plan_add_part(p, s, file, part, &chunk,
		                      weight * l->load[part] / l->total,
		                      &added[part]);
		*n += rv == 0;
	}
	return (rv);
}

/* Replace the unit by k parts, each weighing its share of the file's
 * estimate. est: the tests' estimates (NULL: unknown). All the parts, or
 * the whole file as it was. */
static int
split_unit(struct sr_plan *p, struct sr_suite *s, struct sr_unit *u,
           const struct sr_strv *ids, const double *est, uint32_t k)
{
	size_t file = sr_unit_file(u, 0);
	uint32_t *added, n = 0;
	struct layout l;
	int rv;

	if ((added = malloc(k * sizeof(*added))) == NULL)
		return (SR_ENOMEM);
	if ((rv = layout_make(ids, est, k, &l)) != 0) {
		free(added);
		return (rv);
	}
	if ((rv = sr_file_split(&s->files[file], k)) == 0)
		rv = add_parts(p, s, file, &l, k, u->weight, added, &n);
	layout_free(&l);
	for (uint32_t i = 0; rv != 0 && i < n; i++)
		sr_plan_drop(p, sr_plan_unit(p, added[i]));
	if (rv != 0)
		sr_file_unsplit(&s->files[file]);
	else
		sr_plan_drop(p, u);
	free(added);
	return (rv);
}

/* Split one candidate whose ids are known; true when it was. */
static bool
split_one(struct sr_plan *p, struct sr_suite *s, struct sr_unit *u,
          const struct sr_strv *ids, double share,
          const struct sr_history *hist)
{
	const char *path = s->files[sr_unit_file(u, 0)].path;
	double weight = u->weight;
	uint32_t k = sr_split_parts(weight, ids->n, share);
	double *est = k > 0 ? malloc(ids->n * sizeof(*est)) : NULL;
	size_t known = 0;
	bool done;

	if (est != NULL)
		known = sr_history_test_est(hist, path, ids->v, ids->n, est);
	done = k > 0 && split_unit(p, s, u, ids, known ? est : NULL, k) == 0;
	if (done)
		sr_info("%s (%.1fs) split into %u parts of its %zu tests, by "
		        "%s",
		        path, weight, k, ids->n,
		        known ? "their durations" : "count");
	free(est);
	return (done);
}

/* At most this many files are held for splitting at once (sr_plan_take
 * looks past 64 refused units; pytest lists one file at a time within the
 * budget anyway). */
#define SPLIT_MAX 16

/* Let candidate i be taken whole (not split, or not now). */
static void
release(struct sr_splitter *sp, struct sr_plan *p, size_t i)
{
	struct sr_unit *u = sr_plan_unit(p, sp->cand[i]);

	if (u != NULL)
		u->splitting = false;
}

/* Start asking pytest for the next candidate's ids, within the budget;
 * the ones it cannot ask about go whole. */
static void
start_next(struct sr_splitter *sp, struct sr_plan *p, const struct sr_suite *s)
{
	while (sp->next < sp->n) {
		const struct sr_unit *u = sr_plan_unit(p, sp->cand[sp->next]);
		double left = sp->end - sr_now();
		char *one[2] = {s->files[sr_unit_file(u, 0)].path, NULL};
		struct sr_strv args = {one, 1, 0};

		if (left <= 0.1)
			break;
		sp->co.timeout_s = left;
		if (sr_collect_start(&sp->co, sp->real, &args, &sp->job) == 0) {
			sp->running = true;
			return;
		}
		release(sp, p, sp->next++);
	}
	while (sp->next < sp->n)
		release(sp, p, sp->next++);
}

int
sr_split_begin(struct sr_splitter *sp, struct sr_plan *p,
               const struct sr_suite *s, const struct sr_split_cfg *cfg)
{
	size_t max = 2 * (size_t) cfg->slots + 1;
	struct sr_unit **cand;
	int rv;

	/* Held units are refused by every take, which looks past few. */
	if (max > SPLIT_MAX)
		max = SPLIT_MAX;

	memset(sp, 0, sizeof(*sp));
	sp->cfg = *cfg;
	sp->share = fair_share(p, cfg->slots);
	sp->end = sr_now() + cfg->budget_s;
	if (realpath(cfg->root, sp->real) == NULL)
		return (SR_ENOENT);
	if ((rv = sr_collect_opts_init(&sp->co, cfg->root)) != 0)
		return (rv);
	sp->co.python = cfg->python;
	sp->ready = true;
	if ((cand = calloc(max, sizeof(*cand))) == NULL ||
	    (sp->cand = calloc(max, sizeof(*sp->cand))) == NULL) {
		free(cand);
		return (SR_ENOMEM);
	}
	sp->n = candidates(p, sp->share, cand, max);
	for (size_t i = 0; i < sp->n; i++) {
		cand[i]->splitting = true;
		sp->cand[i] = cand[i]->id;
	}
	free(cand);
	start_next(sp, p, s);
	return (0);
}

/* The running collection ended: split its candidate by what it found, or
 * let it go whole. */
static void
collected(struct sr_splitter *sp, struct sr_plan *p, struct sr_suite *s)
{
	struct sr_unit *u = sr_plan_unit(p, sp->cand[sp->next]);
	struct sr_suite tmp;
	struct sr_strv ids;

	sr_suite_init(&tmp);
	sr_strv_init(&ids);
	sp->running = false;
	release(sp, p, sp->next++);
	if (sr_collect_finish(&sp->co, &sp->job, &tmp, &ids) == 0 &&
	    u->state == SR_UNIT_QUEUED &&
	    split_one(p, s, u, &ids, sp->share, sp->cfg.hist))
		sr_plan_compact(p); /* the whole file's entry off the heap */
	sr_strv_free(&ids);
	sr_suite_free(&tmp);
}

bool
sr_split_allows(const struct sr_splitter *sp, const struct sr_unit *u)
{
	return (!sp->running || u->weight <= sp->end - sr_now());
}

bool
sr_split_poll(struct sr_splitter *sp, struct sr_plan *p, struct sr_suite *s)
{
	bool done;

	if (!sp->running)
		return (false);
	if (sr_collect_poll(&sp->job, &done) != 0) {
		sr_collect_cancel(&sp->job);
		sp->running = false;
		release(sp, p, sp->next++);
	} else if (done) {
		collected(sp, p, s);
	} else {
		return (true);
	}
	start_next(sp, p, s);
	return (sp->running);
}

void
sr_split_stop(struct sr_splitter *sp, struct sr_plan *p)
{
	if (sp->running)
		sr_collect_cancel(&sp->job);
	sp->running = false;
	while (p != NULL && sp->next < sp->n)
		release(sp, p, sp->next++);
	if (sp->ready)
		sr_collect_opts_free(&sp->co);
	free(sp->cand);
	memset(sp, 0, sizeof(*sp));
}
