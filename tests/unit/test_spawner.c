/*
 * test_spawner.c - the spawner helper: exactly one EXITED event per SPAWN,
 * whatever ends the attempt, with and without lanes, in both containment
 * modes (PID namespaces where the kernel allows them, process groups with
 * SHARDRUN_NO_PIDNS=1).
 *
 * Each test runs once per mode; a test starts its own helper (before any
 * thread exists: cmocka starts none) and stops it at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawner.h"
#include "spawner_wait.h"
#include "sr/util.h"

struct mode {
	bool pidns_wanted; /* false: SHARDRUN_NO_PIDNS=1 */
};

static struct mode with_pidns = {true};
static struct mode with_pgroups = {false};

static char dir[] = "/tmp/sr-spawner-XXXXXX";
static char logpath[64];

static struct sr_spawner *
start(void **state)
{
	const struct mode *m = *state;
	struct sr_spawner *s = NULL;

	if (m->pidns_wanted)
		unsetenv("SHARDRUN_NO_PIDNS");
	else
		setenv("SHARDRUN_NO_PIDNS", "1", 1);
	assert_int_equal(sr_spawner_start(&s), 0);
	if (!m->pidns_wanted)
		assert_false(sr_spawner_pidns(s));
	return (s);
}

static void
spawn_sh(struct sr_spawner *s, uint64_t id, unsigned lane, const char *script)
{
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	struct sr_spawn_req r = {.id = id,
	                         .argv = argv,
	                         .envp = envp,
	                         .cwd = dir,
	                         .log = logpath,
	                         .lane = lane};

	assert_int_equal(sr_spawner_spawn(s, &r), 0);
}

/* A request chained behind attempt `after`, held by exit code `hold`
 * (-1: none). */
static void
chain_sh(struct sr_spawner *s, uint64_t id, uint64_t after, unsigned lane,
         int hold, const char *script)
{
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	struct sr_spawn_req r = {.id = id,
	                         .argv = argv,
	                         .envp = envp,
	                         .cwd = dir,
	                         .log = logpath,
	                         .lane = lane,
	                         .after = after};

	if (hold >= 0)
		r.hold[hold / 8] |= (uint8_t) (1u << (hold % 8));
	assert_int_equal(sr_spawner_spawn(s, &r), 0);
}

static void
expect_exit(struct sr_spawner *s, uint64_t id, int *status)
{
	struct sr_spawn_ev ev;

	assert_true(next_spawner_event(s, &ev, 20000));
	assert_int_equal(ev.type, SR_SPAWN_EXITED);
	assert_int_equal(ev.id, id);
	assert_int_equal(ev.err, 0);
	*status = ev.status;
}

static void
expect_dropped(struct sr_spawner *s, uint64_t id)
{
	struct sr_spawn_ev ev;

	assert_true(next_spawner_event(s, &ev, 20000));
	assert_int_equal(ev.type, SR_SPAWN_DROPPED);
	assert_int_equal(ev.id, id);
}

static void
expect_no_event(struct sr_spawner *s)
{
	struct sr_spawn_ev ev;

	assert_false(next_spawner_event(s, &ev, 300));
}

/* The log's first line (attempts write what they want checked there). */
static void
read_log(char *buf, size_t n)
{
	FILE *f = fopen(logpath, "r");

	assert_non_null(f);
	if (fgets(buf, (int) n, f) == NULL)
		buf[0] = 0;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
}

static void
test_exit_status_one_event_each(void **state)
{
	struct sr_spawner *s = start(state);
	int st;

	for (unsigned lane = 0; lane <= 1; lane++) {
		for (uint64_t id = 1; id <= 3; id++) {
			spawn_sh(s, lane * 10 + id, lane, "exit 3");
			expect_exit(s, lane * 10 + id, &st);
			assert_true(WIFEXITED(st));
			assert_int_equal(WEXITSTATUS(st), 3);
		}
	}
	expect_no_event(s);
	sr_spawner_stop(s);
}

static void
test_start_failure_is_an_error_event(void **state)
{
	struct sr_spawner *s = start(state);
	const char *argv[] = {"/nonexistent/cmd", NULL};
	const char *envp[] = {NULL};
	struct sr_spawn_ev ev;

	for (unsigned lane = 0; lane <= 1; lane++) {
		struct sr_spawn_req r = {.id = 7 + lane,
		                         .argv = argv,
		                         .envp = envp,
		                         .cwd = dir,
		                         .log = logpath,
		                         .lane = lane};

		assert_int_equal(sr_spawner_spawn(s, &r), 0);
		assert_true(next_spawner_event(s, &ev, 20000));
		assert_int_equal(ev.id, 7 + lane);
		assert_int_equal(ev.err, ENOENT);
	}
	expect_no_event(s);
	sr_spawner_stop(s);
}

static void
test_sigterm_reaches_the_attempt(void **state)
{
	struct sr_spawner *s = start(state);
	int st;

	for (unsigned lane = 0; lane <= 1; lane++) {
		spawn_sh(s, 20 + lane, lane,
		         "trap 'exit 7' TERM; echo up; "
		         "while :; do sleep 0.05; done");
		usleep(300000);
		assert_int_equal(sr_spawner_kill(s, 20 + lane, SIGTERM), 0);
		expect_exit(s, 20 + lane, &st);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 7);
	}
	expect_no_event(s);
	sr_spawner_stop(s);
}

/* SIGKILL ends the attempt (in a lane: with its namespace); the lane's
 * next attempts run, in one new namespace when namespaces are used. */
static void
test_sigkill_then_the_lane_goes_on(void **state)
{
	struct sr_spawner *s = start(state);
	char killed_ns[128];
	char next_ns[2][128];
	char own_ns[128];
	ssize_t n;
	int st;

	spawn_sh(s, 30, 1, "readlink /proc/self/ns/pid; exec sleep 600");
	usleep(300000);
	read_log(killed_ns, sizeof(killed_ns));
	assert_int_equal(sr_spawner_kill(s, 30, SIGKILL), 0);
	expect_exit(s, 30, &st);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGKILL);
	for (int i = 0; i < 2; i++) {
		spawn_sh(s, 31 + (uint64_t) i, 1,
		         "readlink /proc/self/ns/pid; exit 5");
		expect_exit(s, 31 + (uint64_t) i, &st);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 5);
		read_log(next_ns[i], sizeof(next_ns[i]));
	}
	n = readlink("/proc/self/ns/pid", own_ns, sizeof(own_ns) - 1);
	assert_true(n > 0);
	own_ns[n] = 0;
	assert_string_equal(next_ns[0], next_ns[1]);
	if (sr_spawner_pidns(s)) {
		assert_string_not_equal(next_ns[0], own_ns);
		assert_string_not_equal(killed_ns, own_ns);
	} else {
		assert_string_equal(next_ns[0], own_ns);
	}
	expect_no_event(s);
	sr_spawner_stop(s);
}

/* A signal for an attempt that has already ended never reaches the next
 * attempt of its lane. */
static void
test_late_kill_spares_the_next_attempt(void **state)
{
	struct sr_spawner *s = start(state);
	int st;

	spawn_sh(s, 40, 1, "exit 0");
	expect_exit(s, 40, &st);
	spawn_sh(s, 41, 1, "sleep 0.3; exit 4");
	assert_int_equal(sr_spawner_kill(s, 40, SIGTERM), 0);
	assert_int_equal(sr_spawner_kill(s, 40, SIGKILL), 0);
	expect_exit(s, 41, &st);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 4);
	expect_no_event(s);
	sr_spawner_stop(s);
}

static void
test_peak_rss_is_the_attempts(void **state)
{
	struct sr_spawner *s = start(state);
	struct sr_spawn_ev ev;

	for (unsigned lane = 0; lane <= 1; lane++) {
		/* 64 MiB written by the attempt's main process. */
		spawn_sh(s, 50 + lane, lane,
		         "exec python3 -c 'b = bytearray(64 << 20); "
		         "b[::4096] = bytes(len(b) // 4096)'");
		assert_true(next_spawner_event(s, &ev, 20000));
		assert_int_equal(ev.id, 50 + lane);
		assert_int_equal(ev.err, 0);
		assert_true(ev.peak_rss_kb > 64 * 1024);
	}
	sr_spawner_stop(s);
}

/* name in the attempts' directory (a static buffer). */
static const char *
in_dir(const char *name)
{
	static char path[96];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return (path);
}

/* A chained request that must never start: it would leave "started". */
static void
chain_never(struct sr_spawner *s, uint64_t id, uint64_t after, unsigned lane,
            int hold)
{
	chain_sh(s, id, after, lane, hold, "touch started; exit 0");
}

/* No more events, no chained attempt marked "started" ran; stop s. */
static void
expect_none_started(struct sr_spawner *s)
{
	expect_no_event(s);
	assert_int_equal(access(in_dir("started"), F_OK), -1);
	sr_spawner_stop(s);
}

/* A chained attempt starts when the one before it ends, without a word
 * from the caller in between, and not before. */
static void
test_chained_starts_when_the_first_ends(void **state)
{
	struct sr_spawner *s = start(state);
	int st;

	for (unsigned lane = 0; lane <= 1; lane++) {
		uint64_t x = 60 + 10 * lane;

		unlink(in_dir("x-done"));
		spawn_sh(s, x, lane, "sleep 0.3; touch x-done; exit 1");
		chain_sh(s, x + 1, x, lane, 4,
		         "test -e x-done && exit 5; exit 6");
		expect_exit(s, x, &st);
		assert_int_equal(WEXITSTATUS(st), 1);
		expect_exit(s, x + 1, &st);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 5);
	}
	unlink(in_dir("x-done"));
	expect_no_event(s);
	sr_spawner_stop(s);
}

/* An exit code the caller retries holds the chain: the chained request
 * is dropped, never started. So is one behind no running attempt. */
static void
test_chained_is_dropped_when_held(void **state)
{
	struct sr_spawner *s = start(state);
	int st;

	for (unsigned lane = 0; lane <= 1; lane++) {
		uint64_t x = 80 + 10 * lane;

		spawn_sh(s, x, lane, "sleep 0.1; exit 4");
		chain_never(s, x + 1, x, lane, 4);
		expect_exit(s, x, &st);
		assert_int_equal(WEXITSTATUS(st), 4);
		expect_dropped(s, x + 1);
		chain_never(s, x + 2, x, lane, -1);
		expect_dropped(s, x + 2);
		chain_never(s, x + 3, 999, lane, -1);
		expect_dropped(s, x + 3);
	}
	expect_none_started(s);
}

/* A kill for a chained request that has not started drops it and spares
 * the attempt it waits for; a second request behind the same attempt is
 * dropped at once. One handed to a lane is dropped when the attempt it
 * waits for ends; otherwise at once. */
static void
test_killing_a_chained_request_drops_it(void **state)
{
	struct sr_spawner *s = start(state);
	int st;

	for (unsigned lane = 0; lane <= 1; lane++) {
		uint64_t x = 100 + 10 * lane;
		bool handed = lane > 0;

		spawn_sh(s, x, lane, "sleep 0.3; exit 2");
		chain_never(s, x + 1, x, lane, -1);
		chain_never(s, x + 2, x, lane, -1);
		expect_dropped(s, x + 2);
		assert_int_equal(sr_spawner_kill(s, x + 1, SIGKILL), 0);
		if (!handed)
			expect_dropped(s, x + 1);
		expect_exit(s, x, &st);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 2);
		if (handed)
			expect_dropped(s, x + 1);
	}
	expect_none_started(s);
}

/* Whether done(arg) holds within timeout_ms (checked every 10 ms). */
static bool
within(int timeout_ms, bool (*done)(const void *), const void *arg)
{
	for (int t = 0; t < timeout_ms; t += 10) {
		if (done(arg))
			return (true);
		usleep(10000);
	}
	return (false);
}

static bool
exists(const void *path)
{
	return (access(path, F_OK) == 0);
}

/* Whether a file exists within timeout_ms. */
static bool
appears(const char *path, int timeout_ms)
{
	return (within(timeout_ms, exists, path));
}

/* A lane starts the request handed to it when its attempt ends, by
 * itself: it runs while the helper is stopped. */
static void
test_a_lane_starts_its_handed_request_itself(void **state)
{
	struct sr_spawner *s = start(state);
	bool ran;
	int st;

	unlink(in_dir("b-ran"));
	spawn_sh(s, 200, 1, "sleep 0.3");
	chain_sh(s, 201, 200, 1, -1, "touch b-ran");
	usleep(100000); /* the helper hands it to the lane meanwhile */
	assert_int_equal(kill(sr_spawner_pid(s), SIGSTOP), 0);
	ran = appears(in_dir("b-ran"), 3000);
	assert_int_equal(kill(sr_spawner_pid(s), SIGCONT), 0);
	assert_true(ran);
	expect_exit(s, 200, &st);
	assert_int_equal(WEXITSTATUS(st), 0);
	expect_exit(s, 201, &st);
	assert_int_equal(WEXITSTATUS(st), 0);
	unlink(in_dir("b-ran"));
	expect_no_event(s);
	sr_spawner_stop(s);
}

/* A kill for a handed request that its lane has already started reaches
 * it: one EXITED, killed. */
static void
test_killing_a_handed_request_the_init_started(void **state)
{
	struct sr_spawner *s = start(state);
	bool up;
	int st;

	unlink(in_dir("b-up"));
	spawn_sh(s, 210, 1, "sleep 0.2");
	chain_sh(s, 211, 210, 1, -1, "touch b-up; sleep 30");
	usleep(100000);
	assert_int_equal(kill(sr_spawner_pid(s), SIGSTOP), 0);
	up = appears(in_dir("b-up"), 3000);
	/* Sent while the helper is stopped: it reads it after the report
	 * that says the init took 211 over. */
	assert_int_equal(sr_spawner_kill(s, 211, SIGKILL), 0);
	assert_int_equal(kill(sr_spawner_pid(s), SIGCONT), 0);
	assert_true(up);
	expect_exit(s, 210, &st);
	assert_int_equal(WEXITSTATUS(st), 0);
	expect_exit(s, 211, &st);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGKILL);
	unlink(in_dir("b-up"));
	expect_no_event(s);
	sr_spawner_stop(s);
}

/* Two deep in a lane: the init takes the first chained request over,
 * and the one behind it is handed on and follows in turn. */
static void
test_two_deep_in_a_lane(void **state)
{
	struct sr_spawner *s = start(state);
	char buf[64];
	int st;

	unlink(logpath);
	spawn_sh(s, 220, 1, "sleep 0.2");
	chain_sh(s, 221, 220, 1, -1, "echo b >> order");
	chain_sh(s, 222, 221, 1, -1, "echo c >> order; exit 3");
	expect_exit(s, 220, &st);
	expect_exit(s, 221, &st);
	assert_int_equal(WEXITSTATUS(st), 0);
	expect_exit(s, 222, &st);
	assert_int_equal(WEXITSTATUS(st), 3);
	expect_no_event(s);
	{
		FILE *f = fopen(in_dir("order"), "r");
		size_t n;

		assert_non_null(f);
		n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = 0;
		fclose(f);
	}
	assert_string_equal(buf, "b\nc\n");
	unlink(in_dir("order"));
	sr_spawner_stop(s);
}

/* SIGKILL for an attempt that has just ended, read by the helper before
 * the report that says its lane's init started the next one: the next
 * one is spared (and runs once). The helper is held up by a burst of
 * other requests while the first attempt ends, so that the kill is read
 * in a turn that began before the report came. */
static void
test_a_kill_for_an_ended_attempt_spares_the_next(void **state)
{
	struct sr_spawner *s = start(state);
	const int burst = 60; /* frames the channel holds while stopped */
	struct sr_spawn_ev ev;
	bool a_seen = false;
	int st_b = -1;
	int n = 0;

	unlink(in_dir("count"));
	spawn_sh(s, 230, 1, "sleep 0.3");
	chain_sh(s, 231, 230, 1, -1, "echo x >> count; sleep 0.3");
	usleep(100000);
	assert_int_equal(kill(sr_spawner_pid(s), SIGSTOP), 0);
	for (int i = 0; i < burst; i++)
		spawn_sh(s, 1000 + (uint64_t) i, 0, "exit 0");
	assert_int_equal(sr_spawner_kill(s, 230, SIGKILL), 0);
	usleep(170000); /* the burst still runs when 230 ends */
	assert_int_equal(kill(sr_spawner_pid(s), SIGCONT), 0);
	while (n < burst + 2 && next_spawner_event(s, &ev, 20000)) {
		assert_int_equal(ev.type, SR_SPAWN_EXITED);
		if (ev.id == 230)
			a_seen = true;
		if (ev.id == 231)
			st_b = ev.status;
		n++;
	}
	assert_int_equal(n, burst + 2);
	assert_true(a_seen);
	assert_true(WIFEXITED(st_b));
	assert_int_equal(WEXITSTATUS(st_b), 0);
	{
		FILE *f = fopen(in_dir("count"), "r");
		char line[16];
		int lines = 0;

		assert_non_null(f);
		while (fgets(line, sizeof(line), f) != NULL)
			lines++;
		fclose(f);
		assert_int_equal(lines, 1);
	}
	unlink(in_dir("count"));
	expect_no_event(s);
	sr_spawner_stop(s);
}

/* The first pid in pid's children (0: none yet). */
static pid_t
first_child(pid_t pid)
{
	char path[64];
	int child = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
	if ((f = fopen(path, "r")) == NULL)
		return (0);
	if (fscanf(f, "%d", &child) != 1)
		child = 0;
	fclose(f);
	return (child);
}

/* Poll for pid's first child, up to 3 s. */
static pid_t
wait_child(pid_t pid)
{
	pid_t c = 0;

	for (int t = 0; t < 300 && (c = first_child(pid)) == 0; t++)
		usleep(10000);
	return (c);
}

/* Whether *pid is gone, or a zombie. */
static bool
gone(const void *pid)
{
	char path[64];
	char buf[256];
	char *rp = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", *(const pid_t *) pid);
	if ((f = fopen(path, "r")) == NULL)
		return (true);
	if (fgets(buf, sizeof(buf), f) != NULL)
		rp = strrchr(buf, ')');
	fclose(f);
	return (rp != NULL && rp[1] == ' ' && rp[2] == 'Z');
}

/* Whether pid ends (gone, or a zombie) within timeout_ms. */
static bool
ends(pid_t pid, int timeout_ms)
{
	return (within(timeout_ms, gone, &pid));
}

/* An attempt in lane 1 and what it started, as polled for: the lane, the
 * attempt's main process, and the first child of that. */
struct lane_tree {
	pid_t lane;
	pid_t main;
	pid_t child;
};

/* Start script as attempt id in lane 1; its processes once all are up. */
static struct lane_tree
start_in_lane(struct sr_spawner *s, uint64_t id, const char *script)
{
	struct lane_tree t;

	spawn_sh(s, id, 1, script);
	assert_true((t.lane = wait_child(sr_spawner_pid(s))) > 0);
	assert_true((t.main = wait_child(t.lane)) > 0);
	assert_true((t.child = wait_child(t.main)) > 0);
	return (t);
}

/* Lane 1's next attempt (id) runs and ends with its own status, nothing
 * else happens; s stops. */
static void
lane_goes_on_then_stop(struct sr_spawner *s, uint64_t id)
{
	int st;

	spawn_sh(s, id, 1, "exit 6");
	expect_exit(s, id, &st);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 6);
	expect_no_event(s);
	sr_spawner_stop(s);
}

/* A lane that dies takes its attempt with it, whatever the attempt
 * started: one EXITED (killed), every process of it ends, and the lane's
 * next attempt runs. */
static void
test_a_dead_lane_takes_its_attempt(void **state)
{
	struct sr_spawner *s = start(state);
	struct lane_tree t =
	    start_in_lane(s, 240, "sleep 600 & exec sleep 601");
	int st;

	assert_int_equal(kill(t.lane, SIGKILL), 0);
	expect_exit(s, 240, &st);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGKILL);
	assert_true(ends(t.main, 3000));
	assert_true(ends(t.child, 3000));
	lane_goes_on_then_stop(s, 241);
}

/* A lane killed while its attempt is still being set up (here: blocked
 * opening its log, a FIFO nobody reads; the lane waits for it to exec)
 * takes the attempt with it. */
static void
test_a_lane_dying_mid_start_takes_its_attempt(void **state)
{
	struct sr_spawner *s = start(state);
	const char *argv[] = {"/bin/sh", "-c", "exec sleep 602", NULL};
	const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	char fifo[96];
	struct sr_spawn_req r = {.id = 250,
	                         .argv = argv,
	                         .envp = envp,
	                         .cwd = dir,
	                         .log = fifo,
	                         .lane = 1};
	pid_t lane;
	pid_t child;
	int st;
	int fd;

	snprintf(fifo, sizeof(fifo), "%s", in_dir("fifo"));
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(sr_spawner_spawn(s, &r), 0);
	assert_true((lane = wait_child(sr_spawner_pid(s))) > 0);
	assert_true((child = wait_child(lane)) > 0);
	usleep(100000); /* it blocks in open() */
	assert_int_equal(kill(lane, SIGKILL), 0);
	expect_exit(s, 250, &st);
	assert_true(WIFSIGNALED(st));
	assert_true(ends(child, 3000));
	/* A survivor would now go on to run. */
	fd = open(fifo, O_RDONLY | O_NONBLOCK);
	usleep(100000);
	assert_true(ends(child, 100));
	if (fd >= 0)
		close(fd);
	unlink(fifo);
	expect_no_event(s);
	sr_spawner_stop(s);
}

/* What an attempt orphans in a session of its own, out of its process
 * group's reach, ends with it: before its EXITED, so before the lane's
 * next attempt (a namespace's init kills it; a lane without one adopts
 * it, a child subreaper). */
static void
test_what_an_attempt_orphans_ends_with_it(void **state)
{
	struct sr_spawner *s = start(state);
	struct lane_tree t =
	    start_in_lane(s, 270, "setsid sleep 604 & exec sleep 0.5");
	bool ended;
	int st;

	expect_exit(s, 270, &st);
	assert_int_equal(WEXITSTATUS(st), 0);
	ended = gone(&t.child); /* the daemon */
	if (!ended)
		kill(t.child, SIGKILL);
	assert_true(ended);
	lane_goes_on_then_stop(s, 271);
}

/* In a child process of the test: the spawner's next event within
 * timeout_ms (no cmocka assertion may run there). */
static bool
child_event(struct sr_spawner *s, struct sr_spawn_ev *ev, int timeout_ms)
{
	struct pollfd p = {sr_spawner_fd(s), POLLIN, 0};

	while (sr_spawner_read(s, ev) == SR_EAGAIN)
		if (poll(&p, 1, timeout_ms) <= 0)
			return (false);
	return (true);
}

enum { SPAWNER_UID = 64001, OTHER_UID = 64002 };

/* As SPAWNER_UID, in work (writable to it): a lane's attempt orphans a
 * process of OTHER_UID in a session of its own (run, setuid). Exit 0 when
 * the attempt's EXITED and the lane's next attempt's come. */
static int
unkillable_orphan(const char *work, const char *run)
{
	char script[512];
	char log[128];
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	struct sr_spawn_req r = {
	    .argv = argv, .envp = envp, .cwd = work, .log = log, .lane = 1};
	struct sr_spawner *s = NULL;
	struct sr_spawn_ev ev;
	int rv = 0;

	if (setgroups(0, NULL) != 0 ||
	    setresgid(SPAWNER_UID, SPAWNER_UID, SPAWNER_UID) != 0 ||
	    setresuid(SPAWNER_UID, SPAWNER_UID, SPAWNER_UID) != 0)
		return (10);
	setenv("SHARDRUN_NO_PIDNS", "1", 1);
	if (sr_spawner_start(&s) != 0)
		return (11);
	snprintf(log, sizeof(log), "%s/log", work);
	snprintf(script, sizeof(script),
	         "setsid %s sleep 605 & echo $! > daemon.pid; sleep 0.3", run);
	r.id = 280;
	if (sr_spawner_spawn(s, &r) != 0 || !child_event(s, &ev, 5000) ||
	    ev.id != 280 || ev.type != SR_SPAWN_EXITED)
		rv = 12; /* the lane waits on what it could not kill */
	snprintf(script, sizeof(script), "exit 7");
	r.id = 281;
	if (rv == 0 &&
	    (sr_spawner_spawn(s, &r) != 0 || !child_event(s, &ev, 5000) ||
	     ev.id != 281 || WEXITSTATUS(ev.status) != 7))
		rv = 13;
	sr_spawner_stop(s);
	return (rv);
}

/* An orphan the lane may not signal (another user's, as through sudo)
 * does not hold the attempt's report or the lane's next attempt: it stays
 * the lane's child until it ends. Needs root, to be two other users. */
static void
test_an_orphan_the_lane_cannot_kill_holds_nothing(void **state)
{
	const char *built = getenv("SR_SETUID_RUN");
	char work[96], run[128], cmd[512], pidbuf[32];
	pid_t child, daemon = 0;
	FILE *f;
	int st;

	(void) state;
	if (geteuid() != 0 || built == NULL)
		skip();
	snprintf(work, sizeof(work), "/tmp/sr-spawner-other-XXXXXX");
	assert_non_null(mkdtemp(work)); /* not in dir: only root may enter */
	snprintf(run, sizeof(run), "%s/setuid-run", work);
	assert_int_equal(chown(work, SPAWNER_UID, SPAWNER_UID), 0);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", built, run);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(chown(run, OTHER_UID, OTHER_UID), 0);
	assert_int_equal(chmod(run, 04755), 0);
	assert_true((child = fork()) >= 0);
	if (child == 0)
		_exit(unkillable_orphan(work, run));
	assert_int_equal(waitpid(child, &st, 0), child);
	snprintf(cmd, sizeof(cmd), "%s/daemon.pid", work);
	if ((f = fopen(cmd, "r")) != NULL) {
		if (fgets(pidbuf, sizeof(pidbuf), f) != NULL)
			daemon = (pid_t) atoi(pidbuf);
		fclose(f);
	}
	if (daemon > 0)
		kill(daemon, SIGKILL); /* we are root */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", work);
	assert_int_equal(system(cmd), 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_true(daemon > 0);
}

/* A helper killed outright takes the attempts of its lanes with it,
 * whatever they started. */
static void
test_a_dead_helper_takes_the_lanes_attempts(void **state)
{
	struct sr_spawner *s = start(state);
	struct lane_tree t =
	    start_in_lane(s, 260, "sleep 600 & exec sleep 603");

	assert_int_equal(kill(sr_spawner_pid(s), SIGKILL), 0);
	assert_true(ends(t.lane, 3000));
	assert_true(ends(t.main, 3000));
	assert_true(ends(t.child, 3000));
	sr_spawner_stop(s);
}

static int
setup(void **state)
{
	(void) state;
	if (mkdtemp(dir) == NULL)
		return (-1);
	snprintf(logpath, sizeof(logpath), "%s/log", dir);
	return (0);
}

static int
teardown(void **state)
{
	(void) state;
	unlink(logpath);
	rmdir(dir);
	return (0);
}

#define BOTH(f)                                                                \
	cmocka_unit_test_prestate(f, &with_pidns),                             \
	    cmocka_unit_test_prestate(f, &with_pgroups)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    BOTH(test_exit_status_one_event_each),
	    BOTH(test_start_failure_is_an_error_event),
	    BOTH(test_sigterm_reaches_the_attempt),
	    BOTH(test_sigkill_then_the_lane_goes_on),
	    BOTH(test_late_kill_spares_the_next_attempt),
	    BOTH(test_peak_rss_is_the_attempts),
	    BOTH(test_chained_starts_when_the_first_ends),
	    BOTH(test_chained_is_dropped_when_held),
	    BOTH(test_killing_a_chained_request_drops_it),
	    BOTH(test_a_lane_starts_its_handed_request_itself),
	    BOTH(test_killing_a_handed_request_the_init_started),
	    BOTH(test_two_deep_in_a_lane),
	    BOTH(test_a_kill_for_an_ended_attempt_spares_the_next),
	    BOTH(test_a_dead_lane_takes_its_attempt),
	    BOTH(test_a_lane_dying_mid_start_takes_its_attempt),
	    BOTH(test_a_dead_helper_takes_the_lanes_attempts),
	    BOTH(test_what_an_attempt_orphans_ends_with_it),
	    cmocka_unit_test(test_an_orphan_the_lane_cannot_kill_holds_nothing),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
