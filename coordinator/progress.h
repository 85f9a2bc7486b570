/*
 * progress.h - what a person watches during a run.
 *
 * On a terminal: one live line, redrawn at most ten times a second
 * ("[ 37/120] 2 failed  busy 4/4  ETA 41s"). Elsewhere: one plain line per
 * finished file that did not simply pass, and a line every 10% of files.
 * Colours only on a terminal and when NO_COLOR is unset. Writes to stderr.
 * One thread; the suite is borrowed.
 */
#ifndef SR_PROGRESS_H
#define SR_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "suite.h"

struct sr_progress {
	bool tty;
	bool color;
	size_t total;
	size_t done;
	size_t failed;
	unsigned slots; /* connected slots (the coordinator updates it) */
	double left_s;  /* estimated work without a final result */
	double t0;
	double last_draw;
	size_t last_decile;
	bool drawn;
};

void sr_progress_init(struct sr_progress *p, const struct sr_suite *s, bool tty,
                      bool color);
/* A file reached its final result. */
void sr_progress_file(struct sr_progress *p, const struct sr_file *f);
void sr_progress_tick(struct sr_progress *p, double now);
/* Clear the live line before the summary. */
void sr_progress_end(struct sr_progress *p);

#endif /* SR_PROGRESS_H */
