/*
 * test_slot.c - a slot's chained tries (agent/slot.c): the first files of
 * queued units chained behind the running try in the spawner and taken
 * over when their units start. Each queued unit's file runs once, in
 * order, and gets one Result of its own (exit code, output, the spawner's
 * timing, its timeout from its own start); a cancelled unit whose chained
 * try never started does not run;
 * a transient exit holds the chain until the file is retried; a dropped
 * queued unit's chained try never runs.
 *
 * A real spawner runs generic-profile files ("sh {file}") from a fresh
 * workspace; the test dispatches the spawner's events to the slot as the
 * agent does (agent.c, spawner_events and on_slot_done). Each test runs
 * once per containment mode (PID namespaces where the kernel allows them,
 * process groups with SHARDRUN_NO_PIDNS=1) and starts its own helper
 * before any thread exists (cmocka starts none).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slot.h"
#include "spawner.h"
#include "spawner_wait.h"
#include "sr/profile.h"
#include "sr/util.h"

struct mode {
	bool pidns_wanted; /* false: SHARDRUN_NO_PIDNS=1 */
};

static struct mode with_pidns = {true};
static struct mode with_pgroups = {false};

#define MAX_RECS 32
#define QUIET_S  0.3 /* idle and no event for this long: all is over */

/* A Result as the done callback saw it. */
struct rec {
	uint32_t unit;
	uint32_t index;
	int outcome;
	int exit_code;
	unsigned tries;
	uint64_t start_us;
	uint64_t duration_us;
	char tail[1024];
};

static struct {
	char ws[PATH_MAX];
	char tmp_root[PATH_MAX + 16];
	struct sr_profile prof;
	struct sr_agent_cfg cfg;
	struct sr_strv base;
	uint64_t next_id;
	struct sr_slot_run run;
	struct sr_slot_env env;
	struct sr_slot slot;
	bool started; /* the spawner: fx_stop stops it */
	int token;    /* the session that owns the units */
	struct rec recs[MAX_RECS];
	unsigned nrecs;
	uint32_t ends[MAX_RECS]; /* units in the order they ended */
	unsigned nends;
} fx;

static void
on_done(void *arg, struct sr_slot *s, Shardrun__Result *r)
{
	struct rec *c;

	(void) arg;
	if (r == NULL) { /* the unit is over: agent.c's on_slot_done */
		if (fx.nends < MAX_RECS)
			fx.ends[fx.nends++] = s->unit;
		sr_slot_release(s);
		(void) sr_slot_start_next(s, &fx.env);
		return;
	}
	assert_true(fx.nrecs < MAX_RECS);
	c = &fx.recs[fx.nrecs++];
	c->unit = r->unit;
	c->index = r->index;
	c->outcome = r->outcome;
	c->exit_code = r->exit_code;
	c->tries = r->tries;
	c->start_us = r->start_us;
	c->duration_us = r->duration_us;
	snprintf(c->tail, sizeof(c->tail), "%.*s", (int) r->output_tail.len,
	         r->output_tail.data ? (const char *) r->output_tail.data : "");
}

/* A fresh workspace, profile and slot, and a spawner in the test's mode. */
static void
fx_start(void **state, const char *exitmap)
{
	const struct mode *m = *state;
	char tmpl[] = "/tmp/sr-slot-XXXXXX";

	memset(&fx, 0, sizeof(fx));
	assert_non_null(mkdtemp(tmpl));
	assert_non_null(realpath(tmpl, fx.ws));
	snprintf(fx.tmp_root, sizeof(fx.tmp_root), "%s/.tmp", fx.ws);
	assert_int_equal(mkdir(fx.tmp_root, 0700), 0);
	assert_int_equal(sr_profile_generic(&fx.prof, "sh {file}", exitmap), 0);
	if (m->pidns_wanted)
		unsetenv("SHARDRUN_NO_PIDNS");
	else
		setenv("SHARDRUN_NO_PIDNS", "1", 1);
	assert_int_equal(sr_spawner_start(&fx.cfg.spawner), 0);
	fx.started = true;
	if (!m->pidns_wanted)
		assert_false(sr_spawner_pidns(fx.cfg.spawner));
	fx.cfg.workspace = fx.ws;
	fx.cfg.slots = 1;
	fx.cfg.profile = &fx.prof;
	fx.cfg.kill_grace_s = 1;
	fx.cfg.transient_retries = 2;
	fx.cfg.backoff_s = 0.05;
	sr_strv_init(&fx.base);
	assert_int_equal(sr_strv_push(&fx.base, "PATH=/usr/bin:/bin"), 0);
	strcpy(fx.run.run_id, "r1");
	fx.next_id = 1;
	fx.env.cfg = &fx.cfg;
	fx.env.tmp_root = fx.tmp_root;
	fx.env.base_env = &fx.base;
	fx.env.next_spawn_id = &fx.next_id;
	fx.env.done = on_done;
	sr_slot_hold_mask(&fx.prof, fx.env.hold);
	fx.slot.fs.fd = fx.slot.fs.lfd = -1;
}

/* Each test's teardown, passed or failed: stop the spawner (it kills what
 * is left), free the slot's units, remove the workspace. */
static int
fx_stop(void **state)
{
	(void) state;
	if (fx.started) {
		sr_slot_drop_queued(&fx.slot, &fx.env, NULL, 0, 0);
		if (fx.slot.busy)
			sr_slot_release(&fx.slot);
		sr_spawner_stop(fx.cfg.spawner);
		fx.started = false;
	}
	sr_strv_free(&fx.base);
	sr_profile_free(&fx.prof);
	if (fx.ws[0] != 0)
		(void) sr_rmtree(fx.ws);
	fx.ws[0] = 0;
	return (0);
}

/* name in the workspace (a static buffer). */
static const char *
in_ws(const char *name)
{
	static char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", fx.ws, name);
	return (path);
}

static void
write_file(const char *name, const char *text)
{
	FILE *f = fopen(in_ws(name), "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static bool
exists(const char *name)
{
	return (access(in_ws(name), F_OK) == 0);
}

/* The whole of a small file ("" when there is none). */
static const char *
read_text(const char *name)
{
	static char buf[1024];
	FILE *f = fopen(in_ws(name), "r");
	size_t n = 0;

	if (f != NULL) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = 0;
	return (buf);
}

/* One-file unit `unit`, attempt 1. */
static void
make_unit(Shardrun__Assignment *a, uint32_t unit, char **file)
{
	shardrun__assignment__init(a);
	a->unit = unit;
	a->attempt = 1;
	a->files = file;
	a->n_files = 1;
	a->timeout_ms = 60000;
}

static void
assign(uint32_t unit, const char *file)
{
	Shardrun__Assignment a;
	char *f = (char *) file;

	make_unit(&a, unit, &f);
	fx.slot.owner = &fx.token;
	assert_int_equal(
	    sr_slot_assign(&fx.slot, &fx.env, &a, &fx.run, sr_now()), 0);
	assert_true(fx.slot.busy);
	assert_int_equal(fx.slot.phase, PHASE_RUNNING);
}

static void
enqueue_timeout(uint32_t unit, const char *file, uint32_t timeout_ms)
{
	Shardrun__Assignment a;
	char *f = (char *) file;

	make_unit(&a, unit, &f);
	a.timeout_ms = timeout_ms;
	assert_int_equal(
	    sr_slot_enqueue(&fx.slot, &fx.env, &a, &fx.token, &fx.run), 0);
}

static void
enqueue(uint32_t unit, const char *file)
{
	Shardrun__Assignment a;
	char *f = (char *) file;

	make_unit(&a, unit, &f);
	assert_int_equal(
	    sr_slot_enqueue(&fx.slot, &fx.env, &a, &fx.token, &fx.run), 0);
}

/* The next event within timeout_ms; false when none came. */
static bool
next_event(struct sr_spawn_ev *ev, int timeout_ms)
{
	return (next_spawner_event(fx.cfg.spawner, ev, timeout_ms));
}

/* What the agent does with a spawner event (agent.c, spawner_events),
 * then offers the slot when it is idle (a queued unit starts first). */
static void
dispatch(const struct sr_spawn_ev *ev)
{
	struct sr_slot *s = &fx.slot;

	if (ev->type == SR_SPAWN_DROPPED) {
		sr_slot_on_dropped(s, &fx.env, ev->id);
	} else {
		assert_int_equal(ev->type, SR_SPAWN_EXITED);
		if (!s->busy && s->nahead > 0 && s->ahead[0].id == ev->id)
			(void) sr_slot_start_next(s, &fx.env);
		if (s->busy && s->phase == PHASE_RUNNING &&
		    s->spawn_id == ev->id)
			sr_slot_on_exit(s, &fx.env, ev);
	}
	if (!s->busy)
		(void) sr_slot_start_next(s, &fx.env);
}

/* The agent's loop: events and timers until the slot is idle with nothing
 * queued and no event has come for QUIET_S. */
static void
run_until_idle(double timeout_s)
{
	double end = sr_now() + timeout_s;
	double last = sr_now();
	struct sr_spawn_ev ev;

	for (;;) {
		double now;

		if (next_event(&ev, 20)) {
			dispatch(&ev);
			last = sr_now();
			continue;
		}
		now = sr_now();
		sr_slot_tick(&fx.slot, &fx.env, now);
		if (!fx.slot.busy && fx.slot.nnext == 0 &&
		    fx.slot.nahead == 0 && now - last >= QUIET_S)
			return;
		assert_true(now < end);
	}
}

static unsigned
results_of(uint32_t unit)
{
	unsigned n = 0;

	for (unsigned i = 0; i < fx.nrecs; i++)
		n += fx.recs[i].unit == unit;
	return (n);
}

static const struct rec *
result_of(uint32_t unit)
{
	for (unsigned i = 0; i < fx.nrecs; i++)
		if (fx.recs[i].unit == unit)
			return (&fx.recs[i]);
	fail_msg("no result for unit %u", unit);
	return (NULL);
}

/* Five one-file units, the last four queued behind the first and chained
 * two deep: each runs once, in order, and its Result has its own exit
 * code and its own output. */
static void
test_queued_units_run_in_order_chained(void **state)
{
	static const int codes[] = {0, 3, 1, 5, 2};
	char name[5][16];
	char body[128];

	fx_start(state, "0=passed,4=transient,*=failed");
	for (int u = 0; u < 5; u++) {
		snprintf(name[u], sizeof(name[u]), "u%d.sh", u + 1);
		snprintf(body, sizeof(body),
		         "echo out-u%d\necho u%d >> journal\nsleep %s\nexit "
		         "%d\n",
		         u + 1, u + 1, u == 0 ? "0.3" : "0.1", codes[u]);
		write_file(name[u], body);
	}
	assign(1, name[0]);
	for (int u = 1; u < 5; u++)
		enqueue((uint32_t) u + 1, name[u]);
	assert_int_equal(fx.slot.nnext, 4);
	assert_int_equal(fx.slot.nahead, SR_SLOT_CHAIN);
	/* The slot hears late: units 1 and 2 end, 3 starts, meanwhile. */
	usleep(500000);
	run_until_idle(10);

	assert_string_equal(read_text("journal"), "u1\nu2\nu3\nu4\nu5\n");
	assert_int_equal(fx.nrecs, 5);
	assert_int_equal(fx.nends, 5);
	for (int u = 0; u < 5; u++) {
		const struct rec *r = &fx.recs[u];
		char want[16];

		assert_int_equal(r->unit, u + 1);
		assert_int_equal(fx.ends[u], u + 1);
		assert_int_equal(r->index, 0);
		assert_int_equal(r->tries, 1);
		assert_int_equal(r->exit_code, codes[u]);
		assert_int_equal(r->outcome, codes[u] == 0
		                                 ? SHARDRUN__OUTCOME__PASSED
		                                 : SHARDRUN__OUTCOME__FAILED);
		for (int o = 0; o < 5; o++) {
			snprintf(want, sizeof(want), "out-u%d", o + 1);
			if (o == u)
				assert_non_null(strstr(r->tail, want));
			else
				assert_null(strstr(r->tail, want));
		}
	}
}

/*
 * A chained try sent after the try before it had already ended is taken
 * over before the spawner's DROPPED for it arrives; the unit is then
 * cancelled. The cancelled file never runs and the slot ends up free.
 */
static void
test_cancel_of_adopted_unstarted_try(void **state)
{
	struct sr_spawn_ev ev;
	uint64_t first;

	fx_start(state, NULL);
	write_file("a.sh", "sleep 0.3\n");
	write_file("b.sh", "touch b.ran\n");
	assign(1, "a.sh");
	first = fx.slot.spawn_id;
	usleep(600000); /* a.sh ends in the helper; the slot has not heard */
	enqueue(2, "b.sh");
	assert_int_equal(fx.slot.nahead, 1); /* chained behind a gone try */
	assert_true(next_event(&ev, 5000));
	assert_int_equal(ev.type, SR_SPAWN_EXITED);
	assert_int_equal(ev.id, first);
	dispatch(&ev); /* unit 1 over; unit 2 takes its chained try over */
	assert_true(fx.slot.busy);
	assert_int_equal(fx.slot.unit, 2);
	assert_int_equal(fx.slot.phase, PHASE_RUNNING);
	assert_int_equal(fx.slot.nahead, 0);

	/* A Cancel of unit 2 (handlers.c, take_cancel). */
	sr_slot_drop_queued(&fx.slot, &fx.env, &fx.token, 2, 1);
	sr_slot_abort(&fx.slot, &fx.env);
	fx.slot.owner = NULL;
	run_until_idle(5);

	assert_false(exists("b.ran"));
	assert_false(fx.slot.busy);
	assert_int_equal(fx.nrecs, 1);
	assert_int_equal(results_of(1), 1);
	assert_int_equal(results_of(2), 0);
}

/* A chained try's Result is timed by the spawner, not by when the slot
 * heard of its start and end; so is the try before it. */
static void
test_chained_result_timed_by_spawner(void **state)
{
	const struct rec *r;

	fx_start(state, NULL);
	write_file("a.sh", "sleep 0.2\n");
	write_file("b.sh", "sleep 0.5\n");
	assign(1, "a.sh");
	enqueue(2, "b.sh");
	assert_int_equal(fx.slot.nahead, 1);
	usleep(1500000); /* the agent is busy elsewhere: both end meanwhile */
	run_until_idle(5);

	assert_int_equal(fx.nrecs, 2);
	r = result_of(1);
	assert_int_equal(r->outcome, SHARDRUN__OUTCOME__PASSED);
	assert_in_range(r->duration_us, 150000, 1000000);
	r = result_of(2);
	assert_int_equal(r->outcome, SHARDRUN__OUTCOME__PASSED);
	assert_int_equal(r->tries, 1);
	assert_in_range(r->duration_us, 400000, 1300000);
	/* It started when unit 1's try ended, not when the slot heard. */
	assert_in_range(r->start_us, 0, 1000000);
}

/* A chained try's timeout counts from its start, not from when the slot
 * took it over: taken over 0.9 s late, a 1 s timeout still ends a file
 * that would run 1.6 s. */
static void
test_chained_timeout_counts_from_its_start(void **state)
{
	const struct rec *r;

	fx_start(state, NULL);
	write_file("a.sh", "sleep 0.1\n");
	write_file("b.sh", "sleep 1.6\n");
	assign(1, "a.sh");
	enqueue_timeout(2, "b.sh", 1000);
	assert_int_equal(fx.slot.nahead, 1);
	usleep(1000000); /* a.sh ended at 0.1 s, b.sh has run 0.9 s */
	run_until_idle(10);

	assert_int_equal(fx.nrecs, 2);
	r = result_of(2);
	assert_int_equal(r->outcome, SHARDRUN__OUTCOME__TIMEOUT);
	assert_in_range(r->duration_us, 900000, 1500000);
}

/* A transient exit holds the chain: the file is retried before the queued
 * unit's file starts, and that unit still gets its one Result. */
static void
test_transient_exit_holds_the_chain(void **state)
{
	const struct rec *r;

	fx_start(state, "0=passed,4=transient,*=failed");
	write_file("a.sh", "echo a >> journal\n"
	                   "test -e a.once && exit 0\n"
	                   "touch a.once\n"
	                   "sleep 0.3\n"
	                   "exit 4\n");
	write_file("b.sh", "echo b >> journal\n");
	assign(1, "a.sh");
	enqueue(2, "b.sh");
	assert_int_equal(fx.slot.nahead, 1);
	run_until_idle(5);

	assert_string_equal(read_text("journal"), "a\na\nb\n");
	assert_int_equal(fx.nrecs, 2);
	r = &fx.recs[0];
	assert_int_equal(r->unit, 1);
	assert_int_equal(r->outcome, SHARDRUN__OUTCOME__PASSED);
	assert_int_equal(r->tries, 2);
	r = &fx.recs[1];
	assert_int_equal(r->unit, 2);
	assert_int_equal(r->outcome, SHARDRUN__OUTCOME__PASSED);
	assert_int_equal(r->tries, 1);
}

/* A queued unit dropped while its first file is chained (with another
 * queued unit chained behind it): its file never runs and has no Result;
 * the running unit and the one queued behind run once each. */
static void
test_dropped_queued_unit_never_runs(void **state)
{
	fx_start(state, NULL);
	write_file("a.sh", "echo a >> journal\nsleep 0.3\n");
	write_file("b.sh", "echo b >> journal\n");
	write_file("c.sh", "echo c >> journal\n");
	assign(1, "a.sh");
	enqueue(2, "b.sh");
	enqueue(3, "c.sh");
	assert_int_equal(fx.slot.nahead, 2);
	sr_slot_drop_queued(&fx.slot, &fx.env, &fx.token, 2, 1);
	assert_int_equal(fx.slot.nnext, 1);
	usleep(600000); /* unit 1 ends; what is still chained would start */
	run_until_idle(5);

	assert_string_equal(read_text("journal"), "a\nc\n");
	assert_int_equal(fx.nrecs, 2);
	assert_int_equal(results_of(1), 1);
	assert_int_equal(results_of(2), 0);
	assert_int_equal(results_of(3), 1);
	assert_int_equal(result_of(3)->outcome, SHARDRUN__OUTCOME__PASSED);
}

#define BOTH(f)                                                                \
	cmocka_unit_test_prestate_setup_teardown(f, NULL, fx_stop,             \
	                                         &with_pidns),                 \
	    cmocka_unit_test_prestate_setup_teardown(f, NULL, fx_stop,         \
	                                             &with_pgroups)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    BOTH(test_queued_units_run_in_order_chained),
	    BOTH(test_cancel_of_adopted_unstarted_try),
	    BOTH(test_chained_result_timed_by_spawner),
	    BOTH(test_chained_timeout_counts_from_its_start),
	    BOTH(test_transient_exit_holds_the_chain),
	    BOTH(test_dropped_queued_unit_never_runs),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
