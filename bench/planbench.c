/*
 * planbench.c - planning time and memory for a large suite.
 *
 *   sr-planbench [-f FILES] [-k SLOTS]
 *
 * Builds a suite of FILES synthetic paths (1% in the serial group) with a
 * history covering 80% of them, then times what the coordinator does
 * before and during dispatch: estimates from the history, building the
 * units and the LPT queue, handing out every unit to SLOTS pulling slots,
 * and the static LPT split of `shardrun plan`. Prints JSON with the
 * seconds of each phase, their sum, and the peak RSS of the process.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "history.h"
#include "plan.h"
#include "sr/util.h"
#include "suite.h"

static uint64_t rng = 88172645463325252ull;

static double
uniform(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return ((double) (rng >> 11) / 9007199254740992.0);
}

static double
lognormal(double mu, double sigma)
{
	double u1 = uniform() + 1e-12;
	double u2 = uniform();

	return (exp(mu + sigma * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2)));
}

static int
make(struct sr_suite *s, struct sr_history *h, size_t n)
{
	char path[96];
	size_t idx;

	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "tests/pkg_%04zu/test_%07zu.py",
		         i / 1000, i);
		if (sr_suite_add(s, path, &idx) != 0)
			return (1);
		s->files[idx].ntests = 1 + (uint32_t) (uniform() * 20);
		s->files[idx].serial = (i % 100) == 0;
		if (uniform() < 0.8 &&
		    sr_history_record(h, path, lognormal(-1.0, 1.0)) != 0)
			return (1);
	}
	return (0);
}

int
main(int argc, char **argv)
{
	size_t n = 1000000;
	unsigned k = 64;
	struct sr_suite s;
	struct sr_history h;
	struct sr_plan p;
	struct sr_static_plan sp = {0};
	struct rusage ru;
	double t[5];
	size_t taken = 0;
	int c;

	while ((c = getopt(argc, argv, "f:k:")) != -1) {
		if (c == 'f')
			n = strtoul(optarg, NULL, 10);
		else if (c == 'k')
			k = (unsigned) strtoul(optarg, NULL, 10);
		else
			return (2);
	}
	sr_suite_init(&s);
	sr_history_init(&h);
	sr_plan_init(&p);
	if (make(&s, &h, n) != 0)
		return (1);
	t[0] = sr_now();
	sr_history_estimate(&h, &s);
	t[1] = sr_now();
	if (sr_plan_build(&p, &s) != 0)
		return (1);
	t[2] = sr_now();
	while (sr_plan_take(&p, NULL, NULL) != NULL)
		taken++;
	t[3] = sr_now();
	if (sr_plan_static(&p, k, &sp) != 0)
		return (1);
	t[4] = sr_now();
	getrusage(RUSAGE_SELF, &ru);
	printf(
	    "{\"files\": %zu, \"units\": %zu, \"slots\": %u, "
	    "\"estimate_s\": %.3f, \"build_s\": %.3f, \"dispatch_s\": %.3f, "
	    "\"static_s\": %.3f, \"total_s\": %.3f, \"peak_rss_mb\": %.1f}\n",
	    n, taken, k, t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3],
	    t[4] - t[0], ru.ru_maxrss / 1024.0);
	sr_static_plan_free(&sp);
	sr_plan_free(&p);
	sr_history_free(&h);
	sr_suite_free(&s);
	return (0);
}
