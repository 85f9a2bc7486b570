/*
 * spawner.h - the small process that starts and ends every attempt.
 *
 * sr_spawner_start() forks a helper while the caller is still
 * single-threaded (call it first thing in main). The helper is the child
 * subreaper of everything it starts, spawns attempts on request over a
 * socketpair with posix_spawn (new session, no shell, stdin from /dev/null,
 * stdout and stderr to the attempt's log), reports their exits, and - the
 * moment the socketpair reaches EOF, i.e. when its parent dies even by
 * SIGKILL - kills every process below it and exits.
 *
 * Where the kernel allows it (root, or CAP_SYS_ADMIN), each attempt runs
 * under a tiny init of ours as PID 1 of a PID namespace: when the attempt's
 * main process exits, everything left in the namespace is killed, double-
 * forked daemons included, before its exit is reported. Elsewhere an
 * attempt is its process group: killed when its main process ends, and
 * escaped orphans (reparented to the spawner) are killed by
 * sr_spawner_sweep() and at exit.
 *
 * A lane (sr_spawn_req.lane, a slot) is a process of its own that starts
 * the lane's attempts one after another: the init of a namespace it keeps
 * for them, emptied between them, or with process groups a plain process.
 * Other attempts get a namespace of their own, whose init exits with them,
 * or are started by the helper. Lanes and inits die with the spawner
 * (an init by PR_SET_PDEATHSIG, a lane without a namespace when its channel
 * closes, killing its attempt's group first); a lane that dies takes its
 * attempt with it.
 *
 * A request may be chained behind a running attempt of the same caller
 * (sr_spawn_req.after): the helper starts it the moment that attempt is
 * reaped (in a lane, the lane does, the moment its namespace is empty or
 * its process group killed), so a slot's next file does not wait for the
 * agent to hear of the last one's end and answer.
 *
 * Ownership: the handle belongs to one thread (the agent's); requests are
 * asynchronous, and their results arrive as events on sr_spawner_fd().
 */
#ifndef SR_SPAWNER_H
#define SR_SPAWNER_H

#include <stdbool.h>
#include <stdint.h>

enum sr_spawn_ev_type {
	SR_SPAWN_EXITED = 1,
	SR_SPAWN_DROPPED = 2, /* a chained attempt that never started */
};

struct sr_spawn_ev {
	int type;
	uint64_t id;
	int status; /* wait status of the attempt's main process */
	int err;    /* errno when it could not be started, else 0 */
	long peak_rss_kb;
	double started; /* sr_now() when the helper started it, and when it */
	double ended;   /* saw its end (0 for DROPPED) */
};

struct sr_spawn_req {
	uint64_t id; /* caller's key, unique while running */
	/* argv[0] is searched in the PATH of the caller's environment, at
	 * sr_spawner_start() (posix_spawnp, execvpe), not envp's: the agent
	 * passes its own environment in envp, so the two agree. */
	const char *const *argv;
	const char *const *envp;
	const char *cwd;
	const char *log; /* stdout+stderr, created/truncated */
	/* Attempts of one lane (from 1; a slot) run one at a time in its
	 * process (with PID namespaces: in a namespace emptied between them);
	 * 0, or a lane still busy: started by the helper (in a namespace of
	 * the attempt's own). */
	unsigned lane;
	/* Chained (not 0): start once attempt `after` (running, or chained
	 * itself) has ended, at once, without a round trip through the
	 * caller - unless it exited with a code whose bit is set in hold
	 * (the caller will try that attempt again first). A chained attempt
	 * that does not start (held; `after` neither running nor chained when
	 * the request came; killed while it waited; behind one dropped) gets
	 * one SR_SPAWN_DROPPED event instead of EXITED. In a lane the helper
	 * hands the request to the lane's process, which starts it without
	 * waking the helper; one killed there is dropped when `after` ends
	 * (its DROPPED follows after's EXITED). */
	uint64_t after;
	uint8_t hold[32]; /* bit c: exit code c holds the chain */
};

struct sr_spawner;

/* Fork the helper. Must be called before any thread exists. */
int sr_spawner_start(struct sr_spawner **sp);
/* Close the channel and wait for the helper, which kills everything. */
void sr_spawner_stop(struct sr_spawner *s);
int sr_spawner_fd(const struct sr_spawner *s);
bool sr_spawner_pidns(const struct sr_spawner *s);
/* The helper's process id (for tests). */
pid_t sr_spawner_pid(const struct sr_spawner *s);
int sr_spawner_spawn(struct sr_spawner *s, const struct sr_spawn_req *r);
/* Signal an attempt: its namespace or its process group. */
int sr_spawner_kill(struct sr_spawner *s, uint64_t id, int sig);
/* Kill every process below the helper that is not a running attempt. */
int sr_spawner_sweep(struct sr_spawner *s);
/* Next event, SR_EAGAIN when none is buffered, SR_ECLOSED when the helper
 * is gone. Never blocks. */
int sr_spawner_read(struct sr_spawner *s, struct sr_spawn_ev *ev);

#endif /* SR_SPAWNER_H */
