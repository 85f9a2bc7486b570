/*
 * split.c - parts of long files, made at the start of dispatch.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "collect.h"
#include "collect_exact.h"
#include "split.h"
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
		    !u->serial && !u->exclusive && u->selectors == NULL &&
		    sr_split_parts(u->weight, 2, share) > 0)
			out[n++] = u;
	}
	qsort(out, n, sizeof(*out), by_weight);
	return (n);
}

/* The test ids of one file, as pytest collects them. */
static int
test_ids(const struct sr_split_cfg *cfg, const char *file, double left,
         struct sr_strv *ids)
{
	struct sr_collect_opts co;
	struct sr_suite tmp;
	struct sr_strv args;
	char real[PATH_MAX];
	int rv;

	if (realpath(cfg->root, real) == NULL ||
	    (rv = sr_collect_opts_init(&co, cfg->root)) != 0)
		return (-1);
	co.python = cfg->python;
	co.timeout_s = left > 0.1 ? left : 0.1; /* heartbeats wait meanwhile */
	sr_suite_init(&tmp);
	sr_strv_init(&args);
	if ((rv = sr_strv_push(&args, file)) == 0)
		rv = sr_collect_pytest(&co, real, &args, &tmp, ids);
	sr_strv_free(&args);
	sr_suite_free(&tmp);
	sr_collect_opts_free(&co);
	return (rv);
}

/* Replace the unit by k parts: contiguous, near-equal runs of ids. */
static int
split_unit(struct sr_plan *p, struct sr_suite *s, struct sr_unit *u,
           const struct sr_strv *ids, uint32_t k)
{
	size_t file = u->files[0];
	double weight = u->weight;
	int rv;

	if ((rv = sr_file_split(&s->files[file], k)) != 0)
		return (rv);
	sr_plan_drop(p, u);
	for (uint32_t part = 0; part < k && rv == 0; part++) {
		size_t lo = ids->n * part / k, hi = ids->n * (part + 1) / k;
		struct sr_strv chunk = {ids->v + lo, hi - lo, 0};
		uint32_t id;

		rv =
		    sr_plan_add_part(p, s, file, part, &chunk,
		                     weight * (double) (hi - lo) / ids->n, &id);
	}
	return (rv);
}

size_t
sr_split_long(struct sr_plan *p, struct sr_suite *s,
              const struct sr_split_cfg *cfg)
{
	double share = fair_share(p, cfg->slots);
	size_t max = 2 * (size_t) cfg->slots + 1;
	struct sr_unit **cand = calloc(max, sizeof(*cand));
	double end = sr_now() + cfg->budget_s;
	size_t n, done = 0;

	if (cand == NULL)
		return (0);
	n = candidates(p, share, cand, max);
	for (size_t i = 0; i < n && sr_now() < end; i++) {
		const char *path = s->files[cand[i]->files[0]].path;
		struct sr_strv ids;
		uint32_t k;

		sr_strv_init(&ids);
		if (test_ids(cfg, path, end - sr_now(), &ids) == 0 &&
		    (k = sr_split_parts(cand[i]->weight, ids.n, share)) > 0 &&
		    split_unit(p, s, cand[i], &ids, k) == 0) {
			sr_info(
			    "%s (%.1fs) split into %u parts of its %zu tests",
			    path, cand[i]->weight, k, ids.n);
			done++;
		}
		sr_strv_free(&ids);
	}
	free(cand);
	return (done);
}
