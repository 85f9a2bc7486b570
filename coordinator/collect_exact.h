/*
 * collect_exact.h - asking pytest for the items it would run (internal to
 * coordinator/: collect.c for --collect pytest, the planner for the test
 * ids of files it splits).
 */
#ifndef SR_COLLECT_EXACT_H
#define SR_COLLECT_EXACT_H

#include "collect.h"

/*
 * Run pytest --collect-only from real (the workspace's real path) on args
 * (paths relative to it; none: pytest's own testpaths). Files, test counts
 * and markers go into out; with ids non-NULL every node id is appended
 * there too, in pytest's order.
 */
int sr_collect_pytest(const struct sr_collect_opts *o, const char *real,
                      const struct sr_strv *args, struct sr_suite *out,
                      struct sr_strv *ids);

/* A user- or pytest-given path made relative and normalised (collect.c);
 * "." for the root itself, ".." refused. */
int sr_collect_normalize(const char *in, char *out, size_t outsz);

#endif /* SR_COLLECT_EXACT_H */
