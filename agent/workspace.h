/*
 * workspace.h - checking this agent's checkout against a run's fingerprint.
 *
 * A run names the commit it was planned from and a hash of every file it
 * will run. The agent refuses a run whose files differ from its checkout,
 * naming the first differing file, so a stale runner never reports results
 * for code it did not run. Hashing a large suite takes a while, so the
 * check advances in steps bounded in time; the agent keeps heartbeating
 * between them.
 *
 * Ownership: a check owns copies of everything it needs from the Welcome.
 * One thread.
 */
#ifndef SR_WORKSPACE_H
#define SR_WORKSPACE_H

#include <stddef.h>
#include <stdint.h>

#include "shardrun.pb-c.h"

struct sr_wscheck {
	char commit[41];
	char **paths;
	uint8_t (*hashes)[32];
	size_t n;
	size_t next;
	const char *why;  /* set on a mismatch */
	const char *file; /* the first differing file, or the commit */
};

/* Copy the fingerprint out of a Welcome. */
int sr_wscheck_init(struct sr_wscheck *w, const Shardrun__Welcome *welcome);
/* Check for at most budget_s seconds: 1 all matched, 0 not finished,
 * -1 mismatch (w->why and w->file say what). */
int sr_wscheck_step(struct sr_wscheck *w, const char *workspace,
                    double budget_s);
void sr_wscheck_free(struct sr_wscheck *w);

#endif /* SR_WORKSPACE_H */
