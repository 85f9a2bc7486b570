/*
 * setup.h - from a command line to a ready run, and from a finished run to
 * its reports: the workspace, the profile, collection, estimates, trust,
 * and the result files. Kept apart from main.c so every piece is testable.
 *
 * Ownership: an sr_setup owns everything in it except the spawner, which
 * belongs to main(). sr_setup_free is safe after a failed setup.
 */
#ifndef SR_SETUP_H
#define SR_SETUP_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "coord.h"
#include "history.h"
#include "sr/crypto.h"
#include "sr/profile.h"
#include "suite.h"

struct sr_spawner; /* agent/spawner.h: owned by main() */

struct sr_setup {
	struct sr_opts opts;
	char workspace[PATH_MAX];
	struct sr_profile profile;
	struct sr_suite suite;
	struct sr_history hist;
	char hist_path[PATH_MAX];
	struct sr_trust trust;
	unsigned local_slots;        /* 0: no local agent */
	char commit[41];             /* remote runs: the fingerprint */
	struct sr_strv preload;      /* fork server: modules to import */
	struct sr_strv preload_dirs; /* ... and directories for sys.path */
	unsigned configurations;     /* pytest configurations (collect.h) */
	uint8_t (*hashes)[32];
	struct sr_spawner *spawner;
};

/* `run`: options, workspace, profile, collection, estimates, trust.
 * Returns SR_EAGAIN when there is nothing to do (already explained). */
int sr_setup_run(struct sr_setup *st, int argc, char **argv,
                 struct sr_spawner *sp);
/* `plan`: options, collection, estimates. */
int sr_setup_plan(struct sr_setup *st, int argc, char **argv);
int sr_setup_print_plan(struct sr_setup *st, FILE *out);
void sr_setup_coord_cfg(struct sr_setup *st, struct sr_coord_cfg *cc,
                        volatile sig_atomic_t *interrupted);
/* Summary to stdout, --json, --junit-xml, and the history file. */
void sr_setup_report(struct sr_setup *st, const struct sr_run_info *ri);
/* True when files ran and none of them ran a test (all exit 5). */
bool sr_setup_no_tests_ran(const struct sr_suite *s);
void sr_setup_free(struct sr_setup *st);

#endif /* SR_SETUP_H */
