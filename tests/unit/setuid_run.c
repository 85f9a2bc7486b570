/*
 * setuid_run.c - `sr-test-setuid-run CMD ARG...`: run CMD with the real
 * and saved user ids set to the effective one. test_spawner installs a
 * copy setuid to another user, so that what CMD becomes is a process the
 * spawner's user may not signal (as sudo, su or pkexec make).
 */
#include <stdio.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	uid_t u = geteuid();

	if (argc < 2 || setresuid(u, u, u) != 0) {
		perror("sr-test-setuid-run");
		return (126);
	}
	execvp(argv[1], argv + 1);
	perror("sr-test-setuid-run: exec");
	return (127);
}
