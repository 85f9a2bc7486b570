/*
 * collect_exact.h - asking pytest for the items it would run (internal to
 * coordinator/: collect.c for --collect pytest, the planner for the test
 * ids of files it splits).
 */
#ifndef SR_COLLECT_EXACT_H
#define SR_COLLECT_EXACT_H

#include <limits.h>
#include <sys/types.h>

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

/*
 * The same in steps, for a caller that goes on meanwhile: start pytest,
 * poll whether it ended (*done; once o->timeout_s is past it is killed
 * and SR_ETIMEOUT returned), then read what it found. A job that failed
 * to start holds nothing; every other ends with one call of finish (when
 * done) or cancel (kills pytest if it still runs, removes the job's
 * files).
 */
struct sr_collect_job {
	pid_t pid; /* -1 once ended */
	int status;
	double end; /* when it is stopped (timeout_s > 0) */
	double timeout_s;
	char dir[PATH_MAX - 64]; /* its files, with room for their names */
};

int sr_collect_start(const struct sr_collect_opts *o, const char *real,
                     const struct sr_strv *args, struct sr_collect_job *j);
int sr_collect_poll(struct sr_collect_job *j, bool *done);
int sr_collect_finish(const struct sr_collect_opts *o, struct sr_collect_job *j,
                      struct sr_suite *out, struct sr_strv *ids);
void sr_collect_cancel(struct sr_collect_job *j);

/* A user- or pytest-given path made relative and normalised (collect.c);
 * "." for the root itself, ".." refused. */
int sr_collect_normalize(const char *in, char *out, size_t outsz);

#endif /* SR_COLLECT_EXACT_H */
