/*
 * spawner_int.h - what the spawner's helper (spawner.c) shares with the
 * processes it clones (spawner_ns.c: namespace inits, lanes): the request
 * types, the SPAWN payload, a lane's report, and starting attempts.
 * Private to the spawner; callers use spawner.h.
 */
#ifndef SR_SPAWNER_INT_H
#define SR_SPAWNER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
	MSG_SPAWN = 1,
	MSG_KILL = 2,
	MSG_SWEEP = 3,
	MSG_EXITED = 4,
	MSG_DROPPED = 5,
};

#define MAX_MSG (8u * 1024u * 1024u)

/* What a lane's init reports per attempt: the main process's wait status
 * and peak RSS (its own and its reaped descendants'), or err when it could
 * not be started; and whether it took over the request handed to it
 * (lane_hand), started then: that one's own report follows. */
struct lane_report {
	int32_t status;
	int32_t err;
	int64_t rss_kb;
	int32_t taken;
	int32_t pad;
	double next_started;
};

/* A parsed SPAWN: the strings point into its payload, which must outlive
 * it; ptrs (owned) holds argv and envp, each NULL-terminated. */
struct spawn_args {
	char **ptrs;
	char *cwd;
	char *log;
	char **argv;
	char **envp;
	int statusfd; /* ns mode: write end */
};

/* A SPAWN payload: u64 id, u32 lane, u64 after, the 32-byte hold mask,
 * then NUL-separated strings: cwd, log, argc (decimal), argv..., envc,
 * envp... */
struct spawn_hdr {
	uint64_t id;
	uint32_t lane;
	uint64_t after;
	uint8_t hold[32];
};

enum { HDR_ID = 1, HDR_LANE = 9, HDR_AFTER = 13, HDR_HOLD = 21 };
#define SPAWN_HDR (HDR_HOLD + 32)

/* Start an attempt plainly: its own session, stdin /dev/null, stdout and
 * stderr to its log, in its directory. 0 or an errno. */
int sp_posix_spawn(const struct spawn_args *a, pid_t *pid);
/* A SPAWN payload's header; SR_EPROTO when too short. */
int sp_parse_hdr(const uint8_t *p, size_t len, struct spawn_hdr *h);
/* A whole SPAWN payload; a's strings point into p (sp_free_spawn). */
int sp_parse_spawn(const uint8_t *p, size_t len, struct spawn_hdr *h,
                   struct spawn_args *a);
void sp_free_spawn(struct spawn_args *a);
/* Start an attempt in a PID namespace of its own, whose init writes
 * {wait status, errno} to *statusfd when the attempt's main process
 * ends. Its pid (the init's), -1 with errno set. */
pid_t sp_spawn_in_ns(struct spawn_args *a, int *statusfd);
/* Whether PID namespaces can be made here. */
bool sp_probe_pidns(void);
/* The chain's rule, on the wait status of the attempt it followed:
 * whether its exit code is one of the hold mask's. */
bool sp_held(const uint8_t hold[32], int status, int err);
/* SIGKILL each child of this process (found by the parent named in
 * /proc/N/stat) but those spare(pid, arg) keeps (spare may be NULL), and
 * its process group: what escaped an attempt and came to us, a child
 * subreaper. Only children: their pids, and so their groups' ids, stay
 * theirs until we reap them. How many the kill reached (not those we may
 * not signal). */
int sp_kill_children(bool (*spare)(pid_t pid, void *arg), void *arg);
/* Start a lane: the init of a new PID namespace (pidns), or a plain
 * process that writes its running attempt's pid to *main (a page shared
 * with the helper; 0 between attempts). fd is its end of the helper's
 * socket (the helper closes its copy). Its pid, or -1. */
pid_t sp_lane_clone(int fd, bool pidns, pid_t *main);

#endif /* SR_SPAWNER_INT_H */
