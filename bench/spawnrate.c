/*
 * spawnrate.c - the raw process-spawn rate on K lanes: the ceiling that
 * shardrun's per-file overhead is measured against.
 *
 *   sr-spawnrate -n K -c COUNT CMD [ARG...]
 *
 * Keeps K children of CMD in flight with posix_spawn until COUNT have run,
 * reaping each with waitpid, and prints {"lanes": K, "count": N,
 * "seconds": S, "rate": N/S} on stdout.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double) ts.tv_sec + (double) ts.tv_nsec / 1e9);
}

static int
spawn_one(char **argv)
{
	pid_t pid;

	return (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ));
}

int
main(int argc, char **argv)
{
	long lanes = 1;
	long count = 1000;
	long started = 0;
	long done = 0;
	double t0;
	int c;

	while ((c = getopt(argc, argv, "+n:c:")) != -1) {
		if (c == 'n')
			lanes = atol(optarg);
		else if (c == 'c')
			count = atol(optarg);
		else
			return (2);
	}
	if (optind >= argc || lanes < 1 || count < 1) {
		fprintf(stderr, "usage: sr-spawnrate -n K -c COUNT CMD...\n");
		return (2);
	}
	t0 = now();
	for (; started < lanes && started < count; started++)
		if (spawn_one(argv + optind) != 0)
			return (1);
	while (done < count) {
		if (waitpid(-1, NULL, 0) < 0)
			return (1);
		done++;
		if (started < count && spawn_one(argv + optind) == 0)
			started++;
	}
	printf("{\"lanes\": %ld, \"count\": %ld, \"seconds\": %.6f, "
	       "\"rate\": %.1f}\n",
	       lanes, count, now() - t0, (double) count / (now() - t0));
	return (0);
}
