/*
 * spawner_ns.c - what runs in the processes the spawner's helper clones:
 * the init of a PID namespace made for one attempt, and a lane, which
 * starts a slot's attempts one after another, starts the request the
 * helper handed it (spawner.h, chained requests) the moment its attempt
 * ends, and reports each attempt (struct lane_report). A lane is the init
 * of a PID namespace it keeps for the slot and empties between attempts;
 * where namespaces are refused, a plain process whose attempts are their
 * process groups, each killed when its main process ends. Also parsing a
 * SPAWN and starting an attempt, which the helper does too. Everything
 * here runs in processes cloned from the single-threaded helper.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawner_int.h"
#include "sr/err.h"
#include "sr/util.h"

/* What the helper changed that an attempt gets back: SIGINT and SIGPIPE
 * ignored, the others blocked (read from a signalfd). */
static const int changed_sigs[] = {SIGINT, SIGPIPE, SIGTERM, SIGHUP, SIGCHLD};
#define NCHANGED (sizeof(changed_sigs) / sizeof(changed_sigs[0]))

int
sp_posix_spawn(const struct spawn_args *a, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t all;
	sigset_t none;
	int rv;

	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	/* Reset only what the helper changed (sigdefault costs a sigaction
	 * per signal in the child): ignored SIGINT and SIGPIPE, and the
	 * blocked signals, which the empty mask releases. */
	sigemptyset(&all);
	for (size_t i = 0; i < NCHANGED; i++)
		sigaddset(&all, changed_sigs[i]);
	sigemptyset(&none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID |
	                                  POSIX_SPAWN_SETSIGDEF |
	                                  POSIX_SPAWN_SETSIGMASK);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(
	    &fa, 1, a->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addchdir_np(&fa, a->cwd);
	rv = posix_spawnp(pid, a->argv[0], &fa, &at, a->argv, a->envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return (rv);
}

int
sp_parse_hdr(const uint8_t *p, size_t len, struct spawn_hdr *h)
{
	if (len < SPAWN_HDR)
		return (SR_EPROTO);
	memcpy(&h->id, p + HDR_ID, 8);
	memcpy(&h->lane, p + HDR_LANE, 4);
	memcpy(&h->after, p + HDR_AFTER, 8);
	memcpy(h->hold, p + HDR_HOLD, 32);
	return (0);
}

int
sp_parse_spawn(const uint8_t *p, size_t len, struct spawn_hdr *h,
               struct spawn_args *a)
{
	char *s;
	char *end = (char *) p + len;
	char **v;
	size_t n = 0;
	size_t argc;

	if (sp_parse_hdr(p, len, h) != 0)
		return (SR_EPROTO);
	for (s = (char *) p + SPAWN_HDR; s < end; s += strlen(s) + 1, n++)
		if (memchr(s, 0, (size_t) (end - s)) == NULL)
			return (SR_EPROTO); /* a string runs off the end */
	if (n < 4 || (v = malloc((n + 1) * sizeof(*v))) == NULL)
		return (SR_EPROTO);
	n = 0;
	for (s = (char *) p + SPAWN_HDR; s < end; s += strlen(s) + 1)
		v[n++] = s;
	v[n] = NULL; /* terminates envp */
	if ((argc = strtoul(v[2], NULL, 10)) == 0 || n < 4 + argc ||
	    strtoul(v[3 + argc], NULL, 10) + 4 + argc != n) {
		free(v);
		return (SR_EPROTO);
	}
	a->ptrs = v;
	a->cwd = v[0];
	a->log = v[1];
	a->argv = v + 3;
	v[3 + argc] = NULL; /* terminates argv */
	a->envp = v + 4 + argc;
	a->statusfd = -1;
	return (0);
}

void
sp_free_spawn(struct spawn_args *a)
{
	free(a->ptrs);
}

static void
init_forward(int sig)
{
	/* PID 1 of the attempt's namespace: pass the signal to everyone. */
	kill(-1, sig);
}

/* Close every descriptor above 2 but fd. */
static void
keep_only(int fd)
{
	if (fd > 3)
		close_range(3, (unsigned) fd - 1, 0);
	close_range((unsigned) fd + 1, ~0U, 0);
}

/* First steps of a namespace's init: die with the helper, keep only its
 * own descriptor (not the helper's channel, its signalfd or other
 * attempts' channels), forward the signals that end an attempt. */
static void
become_init(int keep)
{
	struct sigaction sa;
	sigset_t none;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	keep_only(keep);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = init_forward;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* The helper blocks SIGTERM and friends (it reads them from a
	 * signalfd); the init must receive them to forward them. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Reap children until the main process ends; its wait status. */
static int
wait_main(pid_t main_pid, int *status)
{
	pid_t w;

	while ((w = waitpid(-1, status, 0)) != main_pid)
		if (w < 0 && errno != EINTR)
			return (errno);
	return (0);
}

/* The init of a namespace for one attempt (no lane): start the attempt,
 * reap everything, report the main process's status, exit (the kernel then
 * kills the rest). */
static int
ns_init(void *arg)
{
	struct spawn_args *a = arg;
	pid_t main_pid;
	int report[2] = {0, 0};

	become_init(a->statusfd);
	report[1] = sp_posix_spawn(a, &main_pid);
	if (report[1] != 0) {
		(void) !write(a->statusfd, report, sizeof(report));
		_exit(127);
	}
	if (wait_main(main_pid, &report[0]) != 0)
		_exit(126);
	(void) !write(a->statusfd, report, sizeof(report));
	_exit(0);
}

static char ns_stack[256 * 1024] __attribute__((aligned(16)));

pid_t
sp_spawn_in_ns(struct spawn_args *a, int *statusfd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0)
		return (-1);
	a->statusfd = p[1];
	pid = clone(ns_init, ns_stack + sizeof(ns_stack),
	            CLONE_NEWPID | SIGCHLD, a);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return (-1);
	}
	*statusfd = p[0];
	return (pid);
}

bool
sp_probe_pidns(void)
{
	struct spawn_args a = {0};
	char *argv[] = {"true", NULL};
	char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	int fd;
	int st;
	pid_t pid;

	a.cwd = "/";
	a.log = "/dev/null";
	a.argv = argv;
	a.envp = envp;
	if ((pid = sp_spawn_in_ns(&a, &fd)) < 0)
		return (false);
	waitpid(pid, &st, 0);
	close(fd);
	return (WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- lanes: one slot's attempts, one after another ---- */

/* What kind of lane this process is: set once, when it starts. */
static bool lane_ns;     /* the init of the slot's PID namespace */
static pid_t *lane_main; /* else: where the helper reads the running
                          * attempt's pid, to kill its group should this
                          * process die first (a page shared with it) */

static void
lane_set_main(pid_t pid)
{
	if (lane_main != NULL)
		__atomic_store_n(lane_main, pid, __ATOMIC_RELEASE);
}

/* An attempt being started by a lane without a namespace (lane_spawn):
 * the child shares the lane's memory until it execs. */
struct lane_child {
	const struct spawn_args *a;
	pid_t lane;
	int err; /* written by the child when it cannot exec */
};

/* The child's side of sp_posix_spawn (the same session, signals and
 * descriptors), first tied to the lane: it dies with the lane, and the
 * helper can read its pid from the shared page before it runs anything.
 * So a lane killed at any point leaves no attempt of its own running. */
static int
lane_child_main(void *arg)
{
	struct lane_child *c = arg;
	sigset_t none;
	int fd;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != c->lane ||
	    setsid() < 0)
		goto fail;
	lane_set_main(getpid());
	for (size_t i = 0; i < NCHANGED; i++)
		signal(changed_sigs[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if ((fd = open("/dev/null", O_RDONLY)) < 0 || dup2(fd, 0) < 0)
		goto fail;
	close(fd);
	if ((fd = open(c->a->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND,
	               0600)) < 0 ||
	    dup2(fd, 1) < 0 || dup2(1, 2) < 0)
		goto fail;
	close(fd);
	if (chdir(c->a->cwd) != 0)
		goto fail;
	execvpe(c->a->argv[0], c->a->argv, c->a->envp);
fail:
	c->err = errno ? errno : EIO;
	_exit(127);
}

static char child_stack[128 * 1024] __attribute__((aligned(16)));

/* Start an attempt as sp_posix_spawn does, the way a lane without a
 * namespace must (lane_child_main). 0 or an errno. */
static int
lane_spawn_plain(const struct spawn_args *a, pid_t *pid)
{
	struct lane_child c = {a, getpid(), 0};
	pid_t p = clone(lane_child_main, child_stack + sizeof(child_stack),
	                CLONE_VM | CLONE_VFORK | SIGCHLD, &c);

	if (p < 0)
		return (errno);
	if (c.err != 0) { /* it ran nothing; its pid may be on the page */
		lane_set_main(0);
		while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
			;
		return (c.err);
	}
	*pid = p;
	return (0);
}

/* The chain's rule, on the wait status of the attempt it followed. */
bool
sp_held(const uint8_t hold[32], int status, int err)
{
	int code = WEXITSTATUS(status);

	return (err == 0 && WIFEXITED(status) &&
	        (hold[code / 8] & (1u << (code % 8))) != 0);
}

static bool
read_full(int fd, void *p, size_t n)
{
	char *c = p;

	while (n > 0) {
		ssize_t r = read(fd, c, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return (false);
		c += r;
		n -= (size_t) r;
	}
	return (true);
}

/* Kill and reap every process of the namespace but its init. The kill is
 * repeated before each wait, so a process forked while the last one was
 * delivered cannot hold the wait forever. */
static void
empty_namespace(void)
{
	for (;;) {
		kill(-1, SIGKILL);
		if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
			return;
	}
}

/* Without a namespace: kill and reap what the lane adopted. A child
 * subreaper, it gets whatever its attempt orphaned, in a session of its
 * own or not, as a namespace's init would. Round after round, since a
 * child killed hands its own children to the lane before it can be
 * reaped. The wait is for one the kill reached; one it could not reach
 * (another user's, through a setuid program) stays the lane's child until
 * it ends, as it would have stayed the helper's. */
static void
empty_adopted(void)
{
	for (;;) {
		pid_t w;

		while ((w = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if ((w < 0 && errno == ECHILD) ||
		    sp_kill_children(NULL, NULL) == 0)
			return; /* ECHILD: none, without a look at /proc */
		while (waitpid(-1, NULL, 0) < 0 && errno == EINTR)
			;
	}
}

/* A frame from the helper (malloc'd); false when the helper is gone. */
static bool
read_frame(int fd, uint8_t **p, uint32_t *len)
{
	if (!read_full(fd, len, sizeof(*len)) || *len > MAX_MSG ||
	    (*p = malloc(*len ? *len : 1)) == NULL)
		return (false);
	if (read_full(fd, *p, *len))
		return (true);
	free(*p);
	return (false);
}

/* Reap what has ended; true once the main process has, with its report.
 * With process groups, the attempt's group is killed first, while its
 * main process, ended but not reaped, still holds the group's id. */
static bool
lane_reap(pid_t main_pid, struct lane_report *r)
{
	struct rusage ru;
	siginfo_t si;
	int status;
	pid_t w;

	if (!lane_ns) {
		si.si_pid = 0;
		if (waitid(P_PID, (id_t) main_pid, &si,
		           WEXITED | WNOHANG | WNOWAIT) != 0 ||
		    si.si_pid == 0)
			return (false);
		kill(-main_pid, SIGKILL);
		lane_set_main(0);
	}
	while ((w = wait4(-1, &status, WNOHANG, &ru)) > 0)
		if (w == main_pid) {
			r->status = status;
			r->rss_kb = ru.ru_maxrss;
			return (true);
		}
	return (false);
}

/* A request handed to a lane's init (lane_hand): it starts when the
 * running attempt ends, unless held by its exit code or killed first. */
struct lane_next {
	uint8_t *p; /* the SPAWN payload, owned; NULL: none */
	uint32_t len;
	uint64_t id;
	uint8_t hold[32];
};

/* A request while attempt id runs (main_pid), or just after (0): a signal
 * for it (KILL frames name their attempt, so one meant for an attempt
 * already over is ignored), the request to start next, or a KILL for that
 * one. The signal goes to the namespace, or the attempt's process group. */
static void
lane_request(int fd, uint64_t id, pid_t main_pid, struct lane_next *next)
{
	struct spawn_hdr hd;
	uint8_t *p;
	uint32_t len;
	uint64_t kid;
	int32_t sig;

	if (!read_frame(fd, &p, &len)) { /* the helper is gone */
		if (!lane_ns && main_pid > 0)
			kill(-main_pid, SIGKILL);
		_exit(0);
	}
	if (len == 1 + sizeof(kid) + sizeof(sig) && p[0] == MSG_KILL) {
		memcpy(&kid, p + 1, sizeof(kid));
		memcpy(&sig, p + 1 + sizeof(kid), sizeof(sig));
		if (kid == id && main_pid > 0)
			kill(lane_ns ? -1 : -main_pid, sig);
		if (next->p != NULL && kid == next->id) {
			free(next->p);
			next->p = NULL;
		}
	} else if (len > 0 && p[0] == MSG_SPAWN && next->p == NULL &&
	           sp_parse_hdr(p, len, &hd) == 0 && hd.after == id) {
		*next = (struct lane_next){p, len, hd.id, {0}};
		memcpy(next->hold, hd.hold, sizeof(next->hold));
		return;
	}
	free(p);
}

/* Start an attempt from its SPAWN payload: its main process, or -1 with
 * r->err set. */
static pid_t
lane_begin(const uint8_t *p, size_t len, uint64_t *id, struct lane_report *r)
{
	struct spawn_args a;
	struct spawn_hdr hd;
	pid_t main_pid = -1;

	memset(r, 0, sizeof(*r));
	if (sp_parse_spawn(p, len, &hd, &a) != 0) {
		r->err = EINVAL;
		*id = len >= SPAWN_HDR ? hd.id : 0;
		return (-1);
	}
	*id = hd.id;
	r->err = lane_ns ? sp_posix_spawn(&a, &main_pid)
	                 : lane_spawn_plain(&a, &main_pid);
	sp_free_spawn(&a);
	return (r->err == 0 ? main_pid : -1);
}

/* Reap what ends and pass on the helper's requests until the attempt's
 * main process ends. */
static void
lane_watch(int fd, int sigfd, pid_t main_pid, uint64_t id,
           struct lane_report *r, struct lane_next *next)
{
	struct signalfd_siginfo si;

	for (;;) {
		struct pollfd pf[2] = {{fd, POLLIN, 0}, {sigfd, POLLIN, 0}};

		if (poll(pf, 2, -1) < 0)
			continue;
		while (read(sigfd, &si, sizeof(si)) == sizeof(si))
			;
		if (lane_reap(main_pid, r))
			return;
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR))
			lane_request(fd, id, main_pid, next);
	}
}

/* The attempt is over and its namespace empty: take what the helper sent
 * meanwhile. Whether the request handed over (next) follows it: not when
 * the attempt's exit code holds it. The report says so before the init
 * starts it, so an init that dies in between never ran it unannounced. */
static bool
lane_follow(int fd, uint64_t id, struct lane_next *next, struct lane_report *r)
{
	struct pollfd pf = {fd, POLLIN, 0};

	while (poll(&pf, 1, 0) > 0)
		lane_request(fd, id, 0, next);
	if (next->p != NULL && sp_held(next->hold, r->status, r->err)) {
		free(next->p);
		next->p = NULL;
	}
	if (next->p == NULL)
		return (false);
	r->taken = 1;
	r->next_started = sr_now();
	return (true);
}

/* One attempt after another from a plain SPAWN: each followed by an
 * empty namespace (with process groups: lane_reap killed its group, then
 * what it orphaned is killed), its report, and the request handed over
 * for it if any. */
static void
lane_attempts(int fd, int sigfd, const uint8_t *p, size_t len)
{
	struct lane_report r;
	uint64_t id;
	pid_t pid = lane_begin(p, len, &id, &r);

	for (;;) {
		struct lane_next next = {0};
		bool take;

		if (pid > 0)
			lane_watch(fd, sigfd, pid, id, &r, &next);
		if (lane_ns)
			empty_namespace();
		else
			empty_adopted();
		take = lane_follow(fd, id, &next, &r);
		if (write(fd, &r, sizeof(r)) != (ssize_t) sizeof(r))
			_exit(0);
		if (!take)
			return;
		pid = lane_begin(next.p, next.len, &id, &r);
		free(next.p);
	}
}

struct lane_arg {
	int fd;
	bool ns;
	pid_t *main;
};

/* A lane: attempts one at a time, each followed by an empty namespace (or
 * its process group and what it orphaned killed: a lane without a
 * namespace is a child subreaper); ends when the helper closes the
 * channel. A SPAWN still chained (handed over too late to follow its
 * attempt) is not started: the helper sends it again, plain. A lane
 * without a namespace keeps the helper's signal handling (SIGINT ignored,
 * SIGTERM and SIGHUP blocked), and no death signal: when the helper dies,
 * the lane sees its channel close and kills its attempt's group before it
 * exits (its attempt's main process dies with it anyway,
 * lane_child_main). */
static int
lane_init(void *arg)
{
	const struct lane_arg *la = arg;
	int fd = la->fd;
	struct spawn_hdr hd;
	sigset_t chld;
	uint8_t *p;
	uint32_t len;
	int sigfd;

	lane_ns = la->ns;
	lane_main = la->main;
	if (lane_ns) {
		become_init(fd);
	} else {
		keep_only(fd);
		prctl(PR_SET_CHILD_SUBREAPER, 1);
	}
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	if ((sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		_exit(1);
	while (read_frame(fd, &p, &len)) {
		if (len > 0 && p[0] == MSG_SPAWN &&
		    (sp_parse_hdr(p, len, &hd) != 0 || hd.after == 0))
			lane_attempts(fd, sigfd, p, len);
		free(p); /* else a late KILL, or a late handed request */
	}
	_exit(0);
}

pid_t
sp_lane_clone(int fd, bool pidns, pid_t *main)
{
	struct lane_arg a = {fd, pidns, main};

	return (clone(lane_init, ns_stack + sizeof(ns_stack),
	              (pidns ? CLONE_NEWPID : 0) | SIGCHLD, &a));
}
