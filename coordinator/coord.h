/*
 * coord.h - the coordinator: agents, pull dispatch, results, leases.
 *
 * The coordinator listens for agents (CI matrix, local mode) and/or dials
 * them (standing fleet), authenticates each session, welcomes it into the
 * run, and answers each free slot's WorkRequest with the heaviest unit that
 * slot may run (plan.h). It records every file's attempts in the suite and
 * decides each file's one final result:
 *
 *   passed / no tests -> passed, or flaky after an earlier failure
 *   failed            -> rerun while --reruns allows, else failed
 *   crashed           -> requeue (another agent preferred) while
 *                        --max-restarts allows, else crashed
 *   timeout           -> timeout
 *   missing, error,
 *   refused           -> error
 *
 * An agent that goes silent for the lease, or whose connection drops,
 * loses its units: their files without a result are requeued as new units,
 * and anything it sends later about the old units is acknowledged and
 * ignored. Results are idempotent, keyed by (unit, attempt, index).
 *
 * Ownership: the configuration is borrowed; the suite's results are
 * written in place. One thread.
 */
#ifndef SR_COORD_H
#define SR_COORD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "report.h"
#include "sr/crypto.h"
#include "sr/profile.h"
#include "sr/util.h"
#include "suite.h"

struct sr_coord_cfg {
	struct sr_suite *suite;
	const struct sr_profile *profile;
	const struct sr_trust *trust;
	struct sr_strv listen; /* URLs to listen on */
	struct sr_strv agents; /* URLs of fleet agents to dial */
	unsigned agents_min;   /* wait for this many before dispatch */
	double wait_s;         /* ... at most this long */
	double orphan_wait_s;  /* no agent left: wait this long, then fail */
	double timeout_s;      /* per file; 0 none */
	unsigned reruns;
	unsigned max_restarts;
	double heartbeat_s;
	double lease_s;
	double kill_grace_s;
	bool tty; /* live progress line */
	bool color;
	volatile sig_atomic_t *interrupted;
	const char *commit;    /* "" when unknown */
	uint8_t (*hashes)[32]; /* per suite file; NULL: not checked */
	bool forkserver;       /* pytest: preloading fork servers */
	bool split;            /* pytest: split files longer than a share */
	bool speculate;        /* backup attempts of late units at the end */
	double bundle_s;       /* pytest: bundle files shorter; 0: never */
	const char *workspace; /* for asking pytest about split files */
	const char *python;
	const struct sr_strv *preload;
	const struct sr_strv *preload_dirs;
	unsigned configurations; /* pytest configurations the files span */
	const struct sr_history *history; /* per-test times for splitting */
};

void sr_coord_cfg_init(struct sr_coord_cfg *c);
/*
 * Run the suite to completion. Returns 0 when every file has its final
 * result, SR_ETIMEOUT when not enough agents came, SR_EIO when every agent
 * was lost for orphan_wait_s (the remaining files end as errors),
 * SR_ECLOSED when interrupted (ri->interrupted set; finished files keep
 * their results).
 */
int sr_coord_run(const struct sr_coord_cfg *c, struct sr_run_info *ri);

#endif /* SR_COORD_H */
