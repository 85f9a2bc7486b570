/*
 * slot.h - one execution lane of an agent (internal to agent/).
 *
 * A slot runs the files of one assigned unit in order. For each file it
 * validates the path, spawns an attempt through the spawner, enforces the
 * timeout (SIGTERM, grace, SIGKILL), classifies the exit, retries a
 * transient failure (exit 4 while the file is present) after an escalating
 * backoff, and produces one Result. A bundle (several pytest files in one
 * session) is one such try whose Result is divided among its files by
 * their shares of the JUnit report (bundle.c). The caller drives it with
 * sr_slot_on_exit() and sr_slot_tick() and collects finished Results.
 *
 * While a plain try runs the last file of its unit, the first files of the
 * next queued units are chained behind it in the spawner (sr_slot_ahead),
 * each behind the one before: each starts the moment the try before it
 * ends, in a directory of its own, and the slot takes it over when it
 * starts that unit - unless the try before is to be retried (the spawner
 * then drops the chained ones) or a queued unit is cancelled first (the
 * slot kills its try and those behind it). Two deep, so that the agent has
 * a whole file's run to hear of an end and chain the next one.
 *
 * Ownership: a slot owns its unit's strings and its attempt directories
 * (made under tmp_root on first use, cleared before each try, kept for the
 * next). Results handed to the done callback are packed protobuf bytes the
 * callee must copy.
 * One thread.
 */
#ifndef SR_SLOT_H
#define SR_SLOT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent.h"
#include "forksrv.h"
#include "shardrun.pb-c.h"
#include "spawner.h"
#include "sr/util.h"

enum slot_phase {
	PHASE_IDLE = 0, /* no file in progress */
	PHASE_RUNNING,  /* an attempt process exists */
	PHASE_CHECKING, /* spaced presence checks of a missing file */
	PHASE_BACKOFF,  /* waiting before a transient retry */
	PHASE_FS_WAIT,  /* waiting for the fork server to be ready */
};

struct sr_slot;
typedef void (*sr_slot_done_fn)(void *arg, struct sr_slot *s,
                                Shardrun__Result *r);

struct sr_slot_env {
	const struct sr_agent_cfg *cfg;
	const char *tmp_root;
	const struct sr_strv *base_env; /* the agent's environment */
	uint64_t *next_spawn_id;
	sr_slot_done_fn done; /* a file finished */
	void *arg;
	uint8_t hold[32]; /* sr_slot_hold_mask of the agent's profile */
};

/* The exit codes after which a slot tries the same file again (bit c for
 * code c): a try chained behind one that ends so must not start. */
void sr_slot_hold_mask(const struct sr_profile *p, uint8_t hold[32]);

/* What a slot needs to know about the run a unit belongs to. Owned by the
 * agent's session; valid while any of its units is queued or running. */
struct sr_slot_run {
	char run_id[33];
	bool forkserver;        /* run files through a preloading fork server */
	struct sr_strv preload; /* modules it imports once */
	struct sr_strv dirs;    /* directories put on its sys.path */
	bool front; /* the files span several pytest configurations: the
	               fork server keeps one per configuration from the start */
};

/* An assignment waiting for its slot (the coordinator prefetches short
 * units so a slot never idles through a round trip: up to seven behind
 * the running one). One more is declined. Said in Hello.queue. */
#define SR_SLOT_QUEUE 8

struct sr_slot_next {
	uint8_t *packed; /* Shardrun__Assignment */
	size_t len;
	void *owner;
	const struct sr_slot_run *run;
	uint32_t unit;
	uint32_t attempt;
	double received;
};

/* The first try of a queued unit, chained behind the try before it
 * (spawner.h, sr_spawn_req.after). */
struct sr_slot_ahead {
	uint64_t id;    /* its spawn id */
	uint64_t after; /* the try it follows */
	const void *owner;
	uint32_t unit;
	uint32_t attempt;
	bool whole; /* the unit's only file: the next unit may follow */
	char dir[PATH_MAX];
};

#define SR_SLOT_CHAIN 2 /* chained tries, at most */

struct sr_slot {
	unsigned index;
	bool busy;   /* holds a unit */
	void *owner; /* the session that assigned it */
	const struct sr_slot_run *run;
	uint32_t unit;
	uint32_t attempt;
	bool exclusive;
	bool bundle; /* pytest: all files in one session (agent/bundle.c) */
	double timeout_s;
	double kill_grace_s; /* SIGTERM -> SIGKILL, from the run */
	struct sr_strv files;
	struct sr_strv selectors;
	size_t idx; /* current file */
	double unit_t0;

	int phase;
	uint64_t spawn_id;
	double first_start; /* first try of the current file */
	double started;     /* current try */
	double ended;       /* its end as the spawner saw it; 0: unknown */
	uint64_t last_id;   /* the last try whose end the slot heard of, */
	double last_end;    /* and that end (when a try chained behind it
	                       started) */
	double deadline;    /* 0: none */
	double kill_at;     /* SIGKILL after the grace period */
	bool signalled;     /* we sent a signal to this try */
	bool cancelled;     /* coordinator cancelled: no result */
	unsigned tries;
	unsigned transient;
	unsigned checks;
	bool present;
	double next_at; /* next check or retry */
	int last_exit;  /* exit code that caused a check */
	char dir[PATH_MAX];
	bool via_fs;        /* the current try runs in the fork server */
	double parse_s;     /* of the try that ended: its server's parse */
	bool fs_waited_out; /* the server took too long: spawn plainly */
	struct sr_forksrv fs;
	const struct sr_slot_run *fs_run; /* the run the server was made for */
	struct sr_slot_next next[SR_SLOT_QUEUE];
	unsigned nnext;
	struct sr_slot_ahead ahead[SR_SLOT_CHAIN]; /* of next[0], next[1] */
	unsigned nahead;
};

/* bundle.c: the bundle on s is over; whole is its Result as one file's
 * would be. Hands one Result per file to e->done. */
void sr_bundle_report(struct sr_slot *s, const struct sr_slot_env *e,
                      const Shardrun__Result *whole);

/* Take a unit that arrived at `received` (monotonic; its results' start
 * times count from then). Files and selectors are copied. */
int sr_slot_assign(struct sr_slot *s, const struct sr_slot_env *e,
                   const Shardrun__Assignment *a, const struct sr_slot_run *run,
                   double received);
/* The spawner reported an exit for this slot's current try. */
void sr_slot_on_exit(struct sr_slot *s, const struct sr_slot_env *e,
                     const struct sr_spawn_ev *ev);
/* Timers: timeouts, kill escalation, checks, retries. */
void sr_slot_tick(struct sr_slot *s, const struct sr_slot_env *e, double now);
/* Stop everything: kill the try (SIGKILL), drop the unit, no result. */
void sr_slot_abort(struct sr_slot *s, const struct sr_slot_env *e);
/* Release the unit's memory once its last result is out. */
void sr_slot_release(struct sr_slot *s);
/* Queue an assignment behind the running unit; SR_EAGAIN when full. */
int sr_slot_enqueue(struct sr_slot *s, const struct sr_slot_env *e,
                    const Shardrun__Assignment *a, void *owner,
                    const struct sr_slot_run *run);
/* The spawner dropped chained try id (SR_SPAWN_DROPPED). */
void sr_slot_on_dropped(struct sr_slot *s, const struct sr_slot_env *e,
                        uint64_t id);
/* Start the next queued unit on an idle slot; false when none is left. */
bool sr_slot_start_next(struct sr_slot *s, const struct sr_slot_env *e);
/* The spawner saw the fork server's process end. */
void sr_slot_fs_exited(struct sr_slot *s, const struct sr_slot_env *e);
/* The fork server's fd became readable. */
void sr_slot_fs_event(struct sr_slot *s, const struct sr_slot_env *e);
/* Start an idle slot's fork server for a run now, so it is warm by the
 * first file. */
void sr_slot_fs_prestart(struct sr_slot *s, const struct sr_slot_env *e,
                         const struct sr_slot_run *run);
/* Stop the fork server made for this run (NULL: whatever run). */
void sr_slot_fs_stop(struct sr_slot *s, const struct sr_slot_run *run);
/* Forget queued units of this owner (NULL: all), or only the one with this
 * unit and attempt when unit != 0. */
void sr_slot_drop_queued(struct sr_slot *s, const struct sr_slot_env *e,
                         const void *owner, uint32_t unit, uint32_t attempt);

#endif /* SR_SLOT_H */
