/*
 * forksrv.h - one slot's preloading fork server (pytest profile).
 *
 * The server (agent/forkserver.py, compiled into the binary) is started
 * through the spawner like any attempt - so it lives in a PID namespace of
 * its own where the machine allows - imports pytest and the suite's shared
 * modules once, then forks one child per file (at a file of a second pytest
 * configuration it becomes a front that forks a server per configuration;
 * started with st->front, where the coordinator counted several, it is
 * one from the start).
 * It talks to the agent over a Unix socket in the slot's directory with
 * newline-delimited JSON. Where a fork would be unsafe (a thread exists) it
 * says so, and the slot spawns the file plainly instead.
 *
 * Ownership: the slot owns its server; sr_forksrv_stop kills it (through
 * the spawner) and releases everything. One thread.
 */
#ifndef SR_FORKSRV_H
#define SR_FORKSRV_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "spawner.h"
#include "sr/util.h"

enum sr_fs_state {
	SR_FS_OFF = 0, /* not started (or stopped) */
	SR_FS_STARTING,
	SR_FS_READY,   /* idle, accepts a run */
	SR_FS_BUSY,    /* a child runs */
	SR_FS_DEAD,    /* refused or failed: do not use again this run */
	SR_FS_KILLING, /* we killed it; its end is on the way */
};

enum sr_fs_ev_type {
	SR_FS_EV_READY = 1,
	SR_FS_EV_NOFORK, /* the run was refused: spawn it plainly */
	SR_FS_EV_STATUS, /* the child ended: status is a wait status */
	SR_FS_EV_GONE,   /* the server died */
};

struct sr_fs_ev {
	int type;
	int status;     /* STATUS: a wait status; GONE: 1 if we killed it */
	double parse_s; /* STATUS: of the attempt's time, the server's parse
	                   of its configuration first (0: none) */
	char why[160];
};

struct sr_forksrv {
	int state;
	int lfd; /* listening until the server connects */
	int fd;
	uint64_t spawn_id; /* the server process, for the spawner */
	bool pidns;        /* the server has a PID namespace of its own */
	int child;         /* the running child's pid (host pid without a
	                      namespace), 0 when none */
	int ahead;         /* the child forked for the next file, 0: none */
	struct sr_spawner *sp;
	struct sr_buf in;
	char sock_path[PATH_MAX];
};

struct sr_fs_start {
	struct sr_spawner *sp;
	uint64_t spawn_id;
	const char *dir; /* the slot's directory */
	const char *python;
	const char *workspace;
	const struct sr_strv *preload;
	const struct sr_strv *dirs; /* relative to the workspace */
	const struct sr_strv *env;
	bool pidns;
	bool front; /* a server per pytest configuration from the start */
};

int sr_forksrv_start(struct sr_forksrv *fs, const struct sr_fs_start *st);
/* The fd to poll for POLLIN, or -1. */
int sr_forksrv_fd(const struct sr_forksrv *fs);
/* Next event; SR_EAGAIN when none. */
int sr_forksrv_read(struct sr_forksrv *fs, struct sr_fs_ev *ev);
struct sr_fs_run {
	const struct sr_strv *args;  /* pytest's arguments (after -m pytest) */
	const struct sr_strv *files; /* which of them name the file or its
	                                test ids */
	const char *cwd;
	const char *log;
	const struct sr_strv *env;
};

/*
 * Run pytest in a fresh child; READY only. Knowing which arguments are the
 * file lets the server parse pytest's configuration once for the files
 * that share it and give each child a copy of it.
 */
int sr_forksrv_run(struct sr_forksrv *fs, const struct sr_fs_run *r);
/* Signal the running child's whole tree. */
int sr_forksrv_signal(struct sr_forksrv *fs, int sig);
void sr_forksrv_stop(struct sr_forksrv *fs);

#endif /* SR_FORKSRV_H */
