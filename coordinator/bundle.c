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

/* Whether two paths are in the same directory. */
static bool
same_dir(const char *a, const char *b)
{
	const char *sa = strrchr(a, '/');
	const char *sb = strrchr(b, '/');
	size_t la = sa != NULL ? (size_t) (sa - a) : 0;
	size_t lb = sb != NULL ? (size_t) (sb - b) : 0;

	return (la == lb && strncmp(a, b, la) == 0);
}

/* Replace the units of files[0..n) by one bundle; false when it cannot. */
static bool
make_bundle(struct sr_plan *p, const struct sr_suite *s,
            struct sr_unit **members, size_t *files, size_t n)
{
	uint32_t id = 0;

	if (n < 2)
		return (false);
	if (sr_plan_add(p, s, files, n, false, &id) != 0 ||
	    sr_unit_set_bundle(sr_plan_unit(p, id)) != 0) {
		if (id > 0 && sr_plan_unit(p, id) != NULL)
			sr_plan_drop(p, sr_plan_unit(p, id));
		return (false); /* the files keep their own units */
	}
	for (size_t i = 0; i < n; i++)
		sr_plan_drop(p, members[i]);
	return (true);
}

size_t
sr_bundle_short(struct sr_plan *p, const struct sr_suite *s, double max_s,
                unsigned slots)
{
	double total = 0, cap, load = 0;
	size_t nunits = p->n, n = 0, made = 0;
	struct sr_unit *members[SR_BUNDLE_MAX_FILES];
	size_t files[SR_BUNDLE_MAX_FILES];

	if (max_s <= 0 || slots == 0)
		return (0);
	for (size_t i = 0; i < nunits; i++)
		if (p->units[i]->state == SR_UNIT_QUEUED)
			total += p->units[i]->weight;
	cap = total / slots / 2 < max_s ? total / slots / 2 : max_s;
	for (size_t i = 0; i < nunits; i++) {
		struct sr_unit *u = p->units[i];

		if (!bundleable(u, s, max_s))
			continue;
		if (n > 0 &&
		    (n == SR_BUNDLE_MAX_FILES || load + u->weight > cap ||
		     !same_dir(s->files[files[0]].path,
		               s->files[u->fl.one].path))) {
			made += make_bundle(p, s, members, files, n);
			n = 0;
			load = 0;
		}
		members[n] = u;
		files[n++] = u->fl.one;
		load += u->weight;
	}
	made += make_bundle(p, s, members, files, n);
	if (made > 0)
		sr_info("%zu bundles of files estimated under %.2fs (at most "
		        "%.2fs each)",
		        made, max_s, cap);
	return (made);
}
