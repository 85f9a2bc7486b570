/*
 * bundle.c - packing short files into bundles (see bundle.h).
 */
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "sr/log.h"

/* A queued unit of one whole, ordinary file estimated under max_s. */
static bool
bundleable(const struct sr_unit *u, const struct sr_suite *s, double max_s)
{
	return (u->state == SR_UNIT_QUEUED && u->nfiles == 1 && !u->serial &&
	        !u->exclusive && sr_unit_selectors(u) == NULL &&
	        !sr_unit_bundle(u) && s->files[u->fl.one].parts == NULL &&
	        u->weight < max_s);
}

/* A candidate: its unit, its path, and the length of its directory. */
struct cand {
	struct sr_unit *u;
	const char *path;
	size_t dirlen;
};

/* By directory, then path: a directory's files stay together even when a
 * subdirectory's paths sort between them. */
static int
by_dir(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	size_t n = x->dirlen < y->dirlen ? x->dirlen : y->dirlen;
	int c = strncmp(x->path, y->path, n);

	if (c == 0 && x->dirlen != y->dirlen)
		return (x->dirlen < y->dirlen ? -1 : 1);
	return (c != 0 ? c : strcmp(x->path, y->path));
}

static bool
same_dir(const struct cand *a, const struct cand *b)
{
	return (a->dirlen == b->dirlen &&
	        strncmp(a->path, b->path, a->dirlen) == 0);
}

/* Replace the units of c[0..n) by one bundle; false when it cannot. */
static bool
make_bundle(struct sr_plan *p, const struct sr_suite *s, const struct cand *c,
            size_t n)
{
	size_t files[SR_BUNDLE_MAX_FILES];
	uint32_t id = 0;

	if (n < 2)
		return (false);
	for (size_t i = 0; i < n; i++)
		files[i] = c[i].u->fl.one;
	if (sr_plan_add(p, s, files, n, false, &id) != 0 ||
	    sr_unit_set_bundle(sr_plan_unit(p, id)) != 0) {
		if (id > 0 && sr_plan_unit(p, id) != NULL)
			sr_plan_drop(p, sr_plan_unit(p, id));
		return (false); /* the files keep their own units */
	}
	for (size_t i = 0; i < n; i++)
		sr_plan_drop(p, c[i].u);
	return (true);
}

/* The candidates, sorted by directory; NULL when there is no memory. */
static struct cand *
candidates(const struct sr_plan *p, const struct sr_suite *s, double max_s,
           size_t *n)
{
	struct cand *c = malloc((p->n ? p->n : 1) * sizeof(*c));

	*n = 0;
	for (size_t i = 0; c != NULL && i < p->n; i++) {
		struct sr_unit *u = p->units[i];
		const char *slash;

		if (!bundleable(u, s, max_s))
			continue;
		c[*n].u = u;
		c[*n].path = s->files[u->fl.one].path;
		slash = strrchr(c[*n].path, '/');
		c[*n].dirlen =
		    slash != NULL ? (size_t) (slash - c[*n].path) : 0;
		(*n)++;
	}
	if (c != NULL)
		qsort(c, *n, sizeof(*c), by_dir);
	return (c);
}

size_t
sr_bundle_short(struct sr_plan *p, const struct sr_suite *s, double max_s,
                unsigned slots)
{
	double total = 0, cap, load = 0;
	size_t n, first = 0, made = 0;
	struct cand *c;

	if (max_s <= 0 || slots == 0)
		return (0);
	for (size_t i = 0; i < p->n; i++)
		if (p->units[i]->state == SR_UNIT_QUEUED)
			total += p->units[i]->weight;
	cap = total / slots / 2 < max_s ? total / slots / 2 : max_s;
	if ((c = candidates(p, s, max_s, &n)) == NULL)
		return (0);
	for (size_t i = 0; i <= n; i++) {
		if (i < n && i > first && i - first < SR_BUNDLE_MAX_FILES &&
		    load + c[i].u->weight <= cap &&
		    same_dir(&c[first], &c[i])) {
			load += c[i].u->weight;
			continue;
		}
		if (i > first)
			made += make_bundle(p, s, c + first, i - first) ? 1 : 0;
		first = i;
		load = i < n ? c[i].u->weight : 0;
	}
	free(c);
	if (made > 0)
		sr_info("%zu bundles of files estimated under %.2fs (at most "
		        "%.2fs each)",
		        made, max_s, cap);
	return (made);
}
