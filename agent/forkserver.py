# shardrun's preloading fork server for the pytest profile.
#
# One runs per slot. It imports pytest and the suite's shared modules once,
# while it is single-threaded, then forks one child per test file: the child
# gets its own session, log, environment and working directory and runs
# pytest.main on that one file - a process of its own, isolated and
# crash-contained, without paying the interpreter start and the imports
# again. If a thread exists at fork time (an import started one), forking
# would be unsafe: the server says so and the agent spawns the file plainly.
#
# pytest's configuration (its command line, ini file, plugins, the
# conftest.py files above the test file) is parsed once and kept: each
# child starts its session from a copy of it, which halves what a short
# file costs. Only the file arguments differ between the files it serves,
# and they decide nothing that parsing fixes: the rootdir, the ini file and
# the initial conftests all come from the setup files (conftest.py, ini
# files, setup.py) in the file's directory and the ones above it, so files
# alike in those share the configuration (shape) - all but the plain
# conftests (fixtures only: plain_conftest), which the server loads as
# pytest loads those of a directory it walks into (adopt_conftests). A
# server parses at most one configuration in its life: parsing another
# would run the conftests again in a process that already ran them
# (registries filled twice, library patches applied twice, logging bound
# to the first parse's capture). So where the run's files span several
# configurations (the agent passes "--front": the coordinator counted
# them), the process the agent starts is a front (see front()) that forks
# a server per shape from a fresh, preloaded state; and when a file needs
# another configuration than a plain server's, that server replaces
# itself (exec, same pid, same connection) with a front. Where the parse
# fails or leaves a thread behind, it replaces itself with a fresh server
# that keeps nothing and runs pytest.main in each child. Either way it
# hands the new process the request.
#
# Where no code of the suite's own (a conftest.py, a module of the
# workspace) implements a session-wide hook, the server also configures
# pytest and starts its session, once, as an xdist worker does, and serves
# from inside that session: a file's child is forked at pytest's
# collect-and-run step and goes on from there in its own process (collects
# its file, runs it, ends its session, unconfigures), so it pays neither
# configuring nor the copy-on-write faults of doing so (enter_session). If
# that fails or leaves a thread behind, the server replaces itself with
# one whose children configure for themselves.
#
# With a kept configuration, the child for the slot's next file is forked
# ahead, while the current file runs, and waits on a pipe for its request:
# the fork is paid before the file is due. Without a session of the
# server's own and where the suite implements no session-wide hook, it
# also configures pytest and starts its session before waiting, and takes
# its file in pytest's collect-and-run step. A child that ends before its
# file comes (a hook failed, a plugin ended the session) is dropped, its
# file forked the plain way, and none is forked ahead again.
#
# Protocol: newline-delimited JSON over a Unix socket (path in argv[1]).
#   agent -> server  {"run": {"args", "files", "cwd", "log", "env"}}
#                    | {"signal": N}
#                    ("files": which of the args name the file or its ids)
#   server -> agent  {"ready": true} | {"nofork": why} | {"pid": P}
#                    | {"ahead": P}    (a child forked for the next file)
#                    | {"status": S[, "parsed_s": T]}   (a raw wait
#                    status; T: for a server's first file, how long it
#                    parsed the configuration before forking its child)
#   ({"pid"} may come twice for one run: the child forked ahead ended
#   before it took the file, which then got a child of its own. {"ahead"}
#   may come after a run's {"status"}: the next child is forked once the
#   running one has collected its file, or after it ended before that.)
# A front's server also says {"idle": true} (its last run's leftovers are
# swept) and {"by_directory": true} (see BY_DIRECTORY), which the front
# keeps for itself. A front passes the agent's messages on to a server
# over a socket pair and the server's back.
# argv[2]: the workspace root; then "-d DIR" (put on sys.path) and the
# modules to preload; "--front" from the agent or after an exec; after an
# exec also one or more of "--no-keep", "--configure-in-children" (no
# session of the server's own), "--served" (a front's server),
# "--namespaced"; "--fd N" (the connection) and "--pending N" (a file
# holding the request to serve, then what came after it).
import json
import os
import select
import signal
import socket
import sys
import time


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option, arg):
    try:
        import ctypes
        ctypes.CDLL(None).prctl(option, arg, 0, 0, 0)
    except Exception:
        pass


def threads():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def send(sock, obj):
    sock.sendall((json.dumps(obj) + "\n").encode())


def preload(root, dirs, modules):
    # Where pytest's default import mode would put test files' directories.
    sys.path.insert(0, root)
    for d in dirs:
        sys.path.insert(0, os.path.join(root, d))
    import importlib
    import pytest  # noqa: F401  (the point is to have it imported)
    import _pytest.config
    # What pytest.main imports on every start: its own plugins. (Not the
    # installed ones: pytest rewrites their asserts on import, and warns
    # about a plugin imported before it could.)
    for name in _pytest.config.default_plugins:
        try:
            importlib.import_module("_pytest." + name)
        except Exception:
            pass
    # Pure caches each child would otherwise fill again: the junit plugin
    # compiles its escaping pattern (~5 ms a file) and the pattern that
    # turns a test's path into its class name (~1 ms) on first use.
    try:
        junitxml = importlib.import_module("_pytest.junitxml")
        junitxml.bin_xml_escape("x")
        junitxml.mangle_test_address("a.py::t")
    except Exception:
        pass
    for name in modules + ["pdb"]:  # pytest's debugging plugin wants pdb
        try:
            __import__(name)
        except Exception:
            pass  # the test itself will report a broken import


# What differs between two attempts of one slot beyond the file; kept out
# of the environment the configuration is parsed in.
PER_FILE_ENV = ("SHARDRUN_FILE", "SHARDRUN_ATTEMPT")
KEEP = True     # False once this server has given keeping up (--no-keep)
# When the parse of the kept configuration started (monotonic), until the
# first child is forked; then how long that took, until its status is sent.
PARSING = None
PARSED = 0.0
KEPT = None     # (shape, Kept) after the one parse
START_ENV = {}  # our environment at start, for an exec
# The server's own session (see enter_session): False once starting one
# failed or left a thread (--configure-in-children); the Session once
# started; CONFIG_OUT holds what its configuration printed.
SERVER_SESSION = True
SESSION = None
CONFIG_OUT = -1
TOUCHED = -1  # a memfd: the pages a child of the session wrote (warm_up)
CONFIG_COPIES = []  # descriptors configuring made of CONFIG_OUT (restore)
NAMESPACED = False  # in a PID namespace of our own (see signal_all)
SERVED = False  # a server of a front (or what one exec'd)


class BecameChild(BaseException):
    """Raised in a child forked inside the server's session once it has
    its file: unwinds the server's loop back to pytest's collect-and-run
    step, where the child's session goes on."""


class Kept:
    """pytest's parsed configuration, the template request's file arguments
    and the environment the parse left (a conftest may set variables)."""

    def __init__(self, config, files, cwd):
        self.config = config
        self.files = files
        self.cwd = cwd
        self.env = dict(os.environ)
        # A child forked ahead configures pytest and starts its session
        # before its file comes only when no code of the suite's own has
        # a say in those steps (see session_hooks_of_the_suite).
        self.configure_ahead = not session_hooks_of_the_suite(config, cwd)
        # The server configures once for all its files only when every
        # session-wide hook is one known to act within the process.
        import _pytest.main
        self.configure_in_server = self.configure_ahead and \
            callable(getattr(_pytest.main, "_main", None)) and \
            all(acts_in_process(module_of(impl))
                for impl in session_hook_impls(config))


SESSION_HOOKS = ("pytest_configure", "pytest_sessionstart",
                 "pytest_sessionfinish", "pytest_unconfigure")
# Installed plugins whose session-wide hooks change nothing outside the
# process (xdist's: markers, and its own session only with -n); the
# environment may name more (SHARDRUN_CONFIGURE_ONCE: modules, or "*").
IN_PROCESS = ("xdist.plugin",)


def acts_in_process(module):
    more = os.environ.get("SHARDRUN_CONFIGURE_ONCE", "").split(",")
    return module.startswith("_pytest.") or module in IN_PROCESS or \
        module in more or "*" in more


def session_hook_impls(config):
    for name in SESSION_HOOKS:
        yield from getattr(config.hook, name).get_hookimpls()


def module_of(impl):
    return getattr(impl.function, "__module__", None) or ""


def session_hooks_of_the_suite(config, root):
    """Whether a conftest.py or a module of the workspace implements a
    session-wide hook: such code may set up per-slot resources (a database
    named after SHARDRUN_SLOT, files in TMPDIR) that must not overlap with
    the previous file's session, or read SHARDRUN_FILE."""
    for impl in session_hook_impls(config):
        fn = getattr(impl.function, "__func__", impl.function)
        path = getattr(getattr(fn, "__code__", None), "co_filename", "")
        if os.path.basename(path) == "conftest.py" or \
                path.startswith(os.path.join(root, "")):
            return True
    return False


# Files whose presence in a file's directory or the ones above it (up to
# the working directory) decides what pytest makes of a file argument: the
# conftests it loads before configuring, and where it looks for its ini
# file and rootdir.
SETUP_FILES = ("conftest.py", "pytest.ini", ".pytest.ini", "pyproject.toml",
               "tox.ini", "setup.cfg", "setup.py")
# True once the kept configuration showed a plugin other than pytest's own
# that sees the file arguments while they are parsed (pytest-django looks
# for manage.py above them): then the directory itself is in the shape.
BY_DIRECTORY = False


def reads_file_arguments(config):
    for name in ("pytest_load_initial_conftests", "pytest_cmdline_preparse"):
        for impl in getattr(config.hook, name).get_hookimpls():
            if not module_of(impl).startswith("_pytest."):
                return True
    return False


def plain_conftest(path):
    """Whether the conftest.py at path is plain: it names no pytest_ hook
    or plugin list, imports nothing with "*", and nothing beside it is
    importable but test files (no __init__.py, no helper module or
    package: once its directory is on sys.path, another directory's
    "import helpers" could find it). So it adds fixtures, scoped to its
    directory, and decides nothing that parsing fixes. pytest loads such
    a conftest wherever it meets it: among the initial ones, or while
    collecting, for a directory it walks into (as in any run of a whole
    tree). So it is no part of the shape (a file whose directory has one
    shares the configuration of its parent's), and the server loads it the
    second way (adopt_conftests). Unreadable is not plain.
    coordinator/collect.c counts alike."""
    if path not in PLAIN:
        d = os.path.dirname(path)
        try:
            with open(path, "rb") as f:
                text = f.read()
            names = os.listdir(d or ".")
        except OSError:
            return False
        PLAIN[path] = b"pytest_" not in text and \
            b"import *" not in text and \
            not any(importable(d, n) for n in names)
    return PLAIN[path]


PLAIN = {}  # path -> plain_conftest(path), read once


def importable(d, name):
    """Whether the entry name of directory d is a module other than a
    conftest or a test file (test_*.py, *_test.py), or a package."""
    if name.startswith("."):
        return False
    if name.endswith(".py"):
        stem = name[:-3]
        return not (stem == "conftest" or stem.startswith("test_") or
                    stem.endswith("_test"))
    return os.path.isfile(os.path.join(d, name, "__init__.py"))


def setup_of(cwd, path):
    """The setup files from cwd down to path's directory but the plain
    conftests, and whether path exists (pytest anchors the conftests at
    the working directory when it does not): two files alike in this are
    parsed alike."""
    found, d = [], os.path.dirname(path)
    while True:
        found += [os.path.join(d, n) for n in SETUP_FILES
                  if os.path.isfile(os.path.join(cwd, d, n)) and
                  (n != "conftest.py" or
                   not plain_conftest(os.path.join(cwd, d, n)))]
        if not d or d == os.path.dirname(d):  # relative, or absolute
            break
        d = os.path.dirname(d)
    return (tuple(sorted(found)), os.path.exists(os.path.join(cwd, path)))


def shape(req):
    """What a parsed configuration depends on: everything but the file
    arguments, and the setup files along the files' directories - not the
    directories themselves, so that the files of a tree without
    conftests of their own share one configuration."""
    args, files, cwd = req["args"], req.get("files") or [], req["cwd"]
    if not files or any(f not in args for f in files):
        return None
    paths = {f.split("::", 1)[0] for f in files}
    # A set: a bundle of alike files has the shape of any one.
    where = tuple(sorted({(os.path.dirname(p) if BY_DIRECTORY else "",) +
                          setup_of(cwd, p) for p in paths}))
    env = tuple(sorted((k, v) for k, v in req["env"].items()
                       if k not in PER_FILE_ENV))
    return (cwd, tuple(a for a in args if a not in files), where, env)


def flush():
    sys.stdout.flush()
    sys.stderr.flush()


def parse_config(req):
    """pytest's configuration for this request, parsed here; None when it
    cannot be kept."""
    os.environ.clear()
    os.environ.update({k: v for k, v in req["env"].items()
                       if k not in PER_FILE_ENV})
    try:
        os.chdir(req["cwd"])
        from _pytest.config import _prepareconfig
        config = _prepareconfig(list(req["args"]))
        files = list(req["files"])
        kept = [config.args, config.option.file_or_dir,
                config.known_args_namespace.file_or_dir]
        if not all(f in seq for seq in kept for f in files):
            # --help, or a plugin rewrote the file arguments: a copy could
            # not be pointed at another file.
            return None
        # pytest leaves its global capture suspended after parsing; what
        # the conftests printed meanwhile goes to our log, not to every
        # child.
        capman = config.pluginmanager.getplugin("capturemanager")
        if capman is not None:
            out, err = capman.read_global_capture()
            sys.stdout.write(out)
            sys.stderr.write(err)
        flush()
        return Kept(config, files, req["cwd"])
    except BaseException:  # pytest.skip() in a conftest is one
        return None


def prepared(sock, req):
    """The kept configuration for this request; None to run pytest.main
    (nothing parsed here yet, or keeping given up). When keeping cannot go
    on, does not return: the server replaces itself (see the top)."""
    global KEPT, BY_DIRECTORY, PARSING
    if not KEEP:
        return None
    key = shape(req)
    if KEPT is None and key is None:
        return None
    if KEPT is None:
        PARSING = time.monotonic()
        kept = parse_config(req)
        if kept is None or threads() > 1:
            restart(sock, req, "--no-keep" if SERVED else "--front")
        BY_DIRECTORY = reads_file_arguments(kept.config)
        if BY_DIRECTORY and SERVED:  # the front's shapes take it in too
            send(sock, {"by_directory": True})
        key = shape(req)
        KEPT = (key, kept)
    # Under a front the files may have changed meanwhile; a conftest
    # adopted since (adopt_conftests) may have started a thread.
    if KEPT[0] != key or threads() > 1:
        restart(sock, req, "--no-keep" if SERVED else "--front")
    return KEPT[1]


def load_conftests(kept, req):
    """Load the conftests along req's files' directories, the way pytest
    loads those of a directory it walks into while collecting (none that
    is loaded already; none for a file that does not exist, which pytest
    does not collect), under the run's warning filters as pytest loads
    its initial ones. Raises what loading raised."""
    import pathlib
    from _pytest.warnings import catch_warnings_for_item
    config = kept.config
    with catch_warnings_for_item(config, ihook=config.hook, when="config",
                                 item=None):
        for f in req.get("files") or []:
            where = os.path.join(str(config.invocation_params.dir),
                                 f.split("::", 1)[0])
            if not os.path.exists(where):
                continue
            config.pluginmanager._getconftestmodules(
                pathlib.Path(os.path.dirname(where)),
                config.getoption("importmode"), rootpath=config.rootpath)


ADOPTED = set()  # directories adopt_conftests tried
TO_ADOPT = None  # the request whose conftests the server loads next


def adopt_conftests(kept):
    """Load TO_ADOPT's conftests here in the server (load_conftests), once
    per directory: the children forked from now on find them loaded
    instead of importing them each (the shape leaves the plain ones out,
    so the configuration may have been parsed for another directory's
    files). Called before the next child is forked ahead, once the
    running one has collected its file (imported the same conftests),
    so the two never import them side by side. Where loading fails, each
    child fails as it would alone (own_conftests). What the conftests
    set in the environment goes to the children too, as the parse's
    does."""
    global TO_ADOPT
    req, TO_ADOPT = TO_ADOPT, None
    if req is None or kept is None:
        return
    dirs = {os.path.dirname(f.split("::", 1)[0])
            for f in req.get("files") or []}
    if dirs <= ADOPTED:
        return
    ADOPTED.update(dirs)
    from _pytest.outcomes import OutcomeException
    try:
        load_conftests(kept, req)
    except (Exception, OutcomeException, SystemExit):  # skip() or exit()
        pass
    flush()
    kept.env = dict(os.environ)


def own_conftests(kept, req):
    """In a child, before its session takes its file: its conftests
    loaded (load_conftests). One that fails to load ends the child as
    pytest ends when one of its initial conftests does - the error on
    stderr, exit status 4 - not as a collection error (2), which it would
    be while collecting; one that skips or exits while imported, as that
    ends a plain run (uncaught)."""
    import _pytest.config
    try:
        load_conftests(kept, req)
    except _pytest.config.ConftestImportFailure as e:
        end_child(lambda e=e: conftest_failed(e))
    except Exception:  # not a conftest's (those come wrapped): pytest's
        pass           # API differs here, and collecting loads them
    except BaseException as e:
        end_child(lambda e=e: reraise(e))


def reraise(e):
    raise e


def conftest_failed(e):
    """What pytest.main says and returns for a ConftestImportFailure."""
    import _pytest.config
    from _pytest._code import ExceptionInfo
    from _pytest._io import TerminalWriter
    tw = TerminalWriter(sys.stderr)
    tw.line(f"ImportError while loading conftest '{e.path}'.", red=True)
    info = ExceptionInfo.from_exc_info(e.excinfo)
    keep = getattr(_pytest.config,
                   "filter_traceback_for_conftest_import_failure", None)
    if keep is not None:
        info.traceback = info.traceback.filter(keep)
    text = info.getrepr(style="short", chain=False) \
        if info.traceback else info.exconly()
    for line in str(text).splitlines():
        tw.line(line.rstrip(), red=True)
    return 4


def restart(sock, req, mode):
    """exec a fresh server that keeps nothing (mode "--no-keep"), or one
    that starts no session of its own ("--configure-in-children"), or a
    front ("--front": where the first configuration could not be kept,
    the others may be); it serves req first. Only the process the agent
    started becomes a front: a server of a front gives up keeping."""
    if AHEAD is not None:
        drop_ahead()
        send(sock, {"ahead": 0})  # the agent forgets its pid
    flush()
    # req, then what came after it and is not handled yet (a signal)
    pending = os.memfd_create("shardrun-pending")  # no file system needed
    write_all(pending, json.dumps(req).encode() + b"\n" + bytes(INBOX))
    for fd in (sock.fileno(), pending):
        os.set_inheritable(fd, True)
    argv, old = [], list(sys.orig_argv)
    while old:  # a previous exec's descriptors are gone
        if old[0] in ("--fd", "--pending") and len(old) > 1:
            old = old[2:]
        elif old[0] in ("--namespaced", "--front", "--served"):  # below
            old.pop(0)
        else:
            argv.append(old.pop(0))
    argv += ([mode] if mode not in argv else []) + \
        (["--namespaced"] if NAMESPACED else []) + \
        (["--served"] if SERVED else []) + \
        ["--fd", str(sock.fileno()), "--pending", str(pending)]
    os.execve(sys.executable, argv, START_ENV)


def swap(seq, old, new):
    """seq with the arguments in old replaced, where the first stood, by
    new."""
    out, done = [], False
    for a in seq:
        if a not in old:
            out.append(a)
        elif not done:
            out.extend(new)
            done = True
    return out


def rehome_capture(config):
    """The global capture was started in the server: point what it restores
    at this child's stdin, log and log, and give it files of its own to
    capture into (streams a conftest took from it stay valid)."""
    import tempfile
    capman = config.pluginmanager.getplugin("capturemanager")
    multi = getattr(capman, "_global_capturing", None)
    for cap in (getattr(multi, n, None) for n in ("in_", "out", "err")):
        save = getattr(cap, "targetfd_save", None)
        if save is None:
            continue
        os.dup2(cap.targetfd, save)
        if cap.targetfd != 0:
            fresh = tempfile.TemporaryFile(buffering=0)
            os.dup2(fresh.fileno(), cap.tmpfile.fileno())
            fresh.close()


def per_file_env(req):
    """Set (or unset) the variables that differ between a slot's files."""
    for k in PER_FILE_ENV:
        if k in req["env"]:
            os.environ[k] = req["env"][k]
        else:
            os.environ.pop(k, None)


def point_at(kept, req):
    """Give the kept configuration this request's files and arguments."""
    config = kept.config
    new = list(req["files"])
    config.args = swap(config.args, kept.files, new)
    for ns in (config.option, config.known_args_namespace):
        ns.file_or_dir = swap(ns.file_or_dir, kept.files, new)
    params = config.invocation_params
    config.invocation_params = type(params)(
        args=tuple(req["args"]), plugins=params.plugins, dir=params.dir)
    sys.argv = ["pytest"] + req["args"]


def run_session(config):
    """What pytest.main does after parsing."""
    from _pytest.config import UsageError
    try:
        try:
            return int(config.hook.pytest_cmdline_main(config=config))
        finally:
            config._ensure_unconfigure()
    except UsageError as e:  # a file gone, an unknown test id
        from _pytest._io import TerminalWriter
        tw = TerminalWriter(sys.stderr)
        for msg in e.args:
            tw.line(f"ERROR: {msg}\n", red=True)
        return 4


def own_process(out):
    """A forked child's start: a session of its own, default signal
    handling, stdin from /dev/null, stdout and stderr to out."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE,
                signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    fd = os.open("/dev/null", os.O_RDONLY)
    os.dup2(fd, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)


def outcome(run):
    """Run; the status the interpreter would end with."""
    try:
        return run()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except BaseException:  # uncaught: as the interpreter would end
        import traceback
        traceback.print_exc()
        return 1


def end_child(run):
    """Run, then end the process with the status the interpreter would."""
    code = outcome(run)
    flush()
    say_end(code)
    os._exit(code)


def in_child(sock, fds, run):
    """A child's start right after the fork: close what is the server's,
    run; end (status 1) unless run raised BecameChild."""
    try:
        sock.close()
        for fd in fds:
            os.close(fd)
        run()
    except BecameChild:
        raise
    except BaseException:
        pass
    os._exit(1)


def settle(kept):
    """What every child of the kept configuration does first: the
    configuration's directory and arguments, and pytest's capture
    pointed at this child's descriptors."""
    os.chdir(kept.cwd)
    if SESSION is None:  # in the session the environment is the server's
        os.environ.clear()
        os.environ.update(kept.env)
    sys.argv = ["pytest"] + list(kept.config.invocation_params.args)
    rehome_capture(kept.config)


def child(req, kept, says_w):
    if SESSION is not None:
        # Forked from the server's session: like a child forked ahead
        # whose file is known.
        note_forked_memory()
        early = os.memfd_create("shardrun-early")
        own_process(early)
        settle(kept)
        kept.config.pluginmanager.register(says_collected(says_w),
                                           "shardrun-collected")
        take_file(kept, req, [CONFIG_OUT, early], True)
        raise BecameChild()
    own_process(os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                        0o600))
    os.chdir(req["cwd"])
    sys.argv = ["pytest"] + req["args"]

    def run():
        if kept is not None:
            os.environ.clear()
            os.environ.update(kept.env)
            per_file_env(req)
            rehome_capture(kept.config)
            point_at(kept, req)
            own_conftests(kept, req)
            kept.config.pluginmanager.register(says_collected(says_w),
                                               "shardrun-collected")
            return run_session(kept.config)
        os.environ.clear()
        os.environ.update(req["env"])
        import pytest
        return int(pytest.main(req["args"]))
    end_child(run)


# A child forked ahead for the slot's next file (kept configurations
# only), while the slot's current file runs. It waits on a pipe for its
# request, so the fork is paid before the file is due. Forked from the
# server's session, it is configured already; otherwise, where no code of
# the suite's own implements a session-wide hook, it configures pytest and
# starts its session first, and waits in pytest's collect-and-run step.
# Each file still gets a process of its own.
#
# The next file's child is forked once the running one has collected its
# file (imported it, rewritten its asserts): forked at the hand-over, its
# fork and configuration competed with that collection for the CPUs and
# made it twice as slow.
AHEAD = None       # the Ahead child waiting for the next file
HANDING = None     # (Ahead, request): handed a file, not ready for it yet
AHEAD_OK = True    # False once one ended before taking its file
# The running child's pipe: "r" once a child forked ahead waits for its
# request (hand_over), "c" once its file is collected, "e<code>\n" just
# before it exits with code (heard).
COLLECTING = None
HEARD = b""  # what it said so far
ENDING = 0   # a child that said its status, exiting (swept_again)
END_FD = -1  # in a child: its end of that pipe


class Ahead:
    def __init__(self, pid, ready, wfd):
        self.pid = pid
        self.ready = ready  # "r" once it waits for its request, then "c"
        self.wfd = wfd      # takes the request

    def close(self):
        os.close(self.ready)
        os.close(self.wfd)

    def kill(self):
        """Kill it (before or after its setsid) and reap it."""
        self.close()
        for target in (-self.pid, self.pid):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def go_ahead(sock, kept):
    """Fork the next file's child, tell the agent its pid (to kill it with
    the server)."""
    global AHEAD, COPY_AHEAD_PAYS
    adopt_conftests(kept)
    if not AHEAD_OK or kept is None or AHEAD is not None or threads() > 1:
        return
    if SESSION is not None and COPY_AHEAD == "auto" and \
            COPY_AHEAD_PAYS is None:  # while the current file runs
        COPY_AHEAD_PAYS = copying_ahead_pays()
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        in_child(sock, (wfd, ready_r),
                 lambda: ahead_child(kept, rfd, ready_w, server))
    os.close(rfd)
    os.close(ready_w)
    os.set_blocking(ready_r, False)
    AHEAD = Ahead(pid, ready_r, wfd)
    send(sock, {"ahead": pid})


def ahead_child(kept, rfd, ready_w, server):
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != server:
        os._exit(1)
    if SESSION is not None:
        note_forked_memory()
    early = os.memfd_create("shardrun-early")  # output before the file
    own_process(early)
    settle(kept)
    import _pytest.main
    collect_and_run = getattr(_pytest.main, "_main", None)
    if SESSION is None:  # the server's session rehearsed it once
        rehearse_rewrite(kept.config)
    kept.config.pluginmanager.register(says_collected(ready_w),
                                       "shardrun-collected")

    def wait_for_file(started):
        os.write(ready_w, b"r")
        req = read_request(rfd)
        if req is None:  # the server is gone or took the file back
            os._exit(1)
        earlies = [early] if SESSION is None else [CONFIG_OUT, early]
        take_file(kept, req, earlies, started)

    if SESSION is not None:
        warm_up()
        wait_for_file(True)
        raise BecameChild()
    if not kept.configure_ahead or not callable(collect_and_run):
        wait_for_file(False)
        end_child(lambda: run_session(kept.config))

    def when_told(config, session):
        wait_for_file(True)
        return collect_and_run(config, session)
    _pytest.main._main = when_told
    end_child(lambda: run_session(kept.config))


def says_collected(fd):
    """A plugin for a child of the kept configuration (forked ahead or
    not): tells the server once its file is collected, which then forks
    the next file's child. First among the hook's implementations, so that
    a conftest's failing one cannot keep it from saying so. The child says
    its exit status on fd too (say_end)."""
    global END_FD
    import pytest
    END_FD = fd
    said = False

    class SaysCollected:
        @pytest.hookimpl(tryfirst=True)
        def pytest_collection_finish(self):
            nonlocal said
            if not said:
                os.write(fd, b"c")
                said = True
    return SaysCollected()


def say_end(code):
    """Just before os._exit(code): tell the server, which then sends the
    status without waiting for the exit's teardown (the kernel freeing
    what the child copied: ~2 ms)."""
    if END_FD >= 0:
        try:
            os.write(END_FD, b"e%d\n" % (code & 0xFF))
        except OSError:
            pass


def rehearse_rewrite(config):
    """Rewrite and compile a test module's asserts once, on a module of
    our own that is never run: what the interpreter writes while doing so
    (reference counts, the parser's and compiler's state) is copied into
    this child's memory now, not while its file is due (~3 ms a file on
    a machine whose copy-on-write faults cost 13 us each)."""
    import ast
    try:
        from _pytest.assertion.rewrite import rewrite_asserts
        src = "def test_rehearsal():\n    x = 1\n    assert x == 1, 'x'\n"
        tree = ast.parse(src)
        rewrite_asserts(tree, src.encode(), "rehearsal.py", config)
        compile(tree, "rehearsal.py", "exec", dont_inherit=True)
    except Exception:
        pass  # a pytest without this internal: nothing rehearsed


def private_memory():
    """The (start, end) of our anonymous private writable mappings (the
    interpreter's heap and arenas), in order."""
    found = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if fields[1] == "rw-p" and (len(fields) < 6 or
                                        fields[5] == "[heap]"):
                start, end = fields[0].split("-")
                found.append((int(start, 16), int(end, 16)))
    return found


PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_NOTED = 1 << 16  # pages (256 MiB of 4 KiB pages)
# In a child of the session forked while nothing is noted yet: the
# server's private memory at the fork (record_touched notes only pages of
# it; what the child mapped since, no later child has).
FORKED_MEMORY = None


def note_forked_memory():
    """Right after the fork of a child of the session: the server's
    private memory, while its pages may still need noting."""
    global FORKED_MEMORY
    if TOUCHED >= 0 and os.fstat(TOUCHED).st_size == 0:
        FORKED_MEMORY = private_memory()


def record_touched():
    """At the end of the first child of the session that gets there:
    note in TOUCHED which pages of the server's private memory it has a
    copy of (present and mapped by it alone: written since the fork)."""
    import struct
    if TOUCHED < 0 or os.fstat(TOUCHED).st_size > 0:
        return
    pages = []
    try:
        pagemap = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return
    try:
        for start, end in FORKED_MEMORY or ():
            for at in range(start, end, 4096 * PAGE):  # 32 KiB of entries
                n = min(4096, (end - at) // PAGE)
                data = os.pread(pagemap, n * 8, at // PAGE * 8)
                for i, (entry,) in enumerate(struct.iter_unpack("Q", data)):
                    if entry >> 63 and entry >> 56 & 1:
                        pages.append(at + i * PAGE)
                if len(pages) >= MAX_NOTED:
                    raise OverflowError
    except (OSError, OverflowError):
        pages = pages[:MAX_NOTED]
    finally:
        os.close(pagemap)
    os.pwrite(TOUCHED, struct.pack("%dQ" % len(pages), *pages), 0)


# Whether warm_up copies pages ahead: "on", "off", or "auto" (the default:
# where copying ahead costs markedly less CPU than the faults it spares,
# always; elsewhere only while a CPU is idle).
COPY_AHEAD = os.environ.get("SHARDRUN_COPY_AHEAD", "auto")
COPY_AHEAD_PAYS = None  # measured once per server (copying_ahead_pays)


def copying_ahead_pays():
    """Whether warm_up's way of copying a page (MADV_POPULATE_WRITE over a
    run, then a write to each page) costs at most half the copy-on-write
    fault a file would take for it instead: timed once, in a child forked
    for it, over 512 pages each way. Where it does, copying ahead saves CPU
    (on one VM here: 5.4 us a page against 15.8); where it does not (2.4-3.2
    against 3.0-3.3 on another), it only moves the cost ahead of the file,
    which helps while a CPU is idle and slows the tests where none is."""
    import mmap
    import struct
    n = 512
    try:
        buf = mmap.mmap(-1, 2 * n * PAGE, flags=mmap.MAP_PRIVATE)
    except (OSError, ValueError):
        return False
    for i in range(2 * n):
        buf[i * PAGE] = 1
    r, w = os.pipe2(os.O_CLOEXEC)
    flush()
    pid = os.fork()
    if pid == 0:
        try:
            t0 = time.perf_counter()
            for i in range(n):
                buf[i * PAGE] = 2
            t1 = time.perf_counter()
            buf.madvise(23, n * PAGE, n * PAGE)  # MADV_POPULATE_WRITE
            for i in range(n, 2 * n):
                buf[i * PAGE] = 2
            os.write(w, struct.pack("dd", t1 - t0, time.perf_counter() - t1))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    buf.close()
    if len(data) != 16:
        return False  # the kernel knows no MADV_POPULATE_WRITE
    fault, ahead = struct.unpack("dd", data)
    pays = ahead <= 0.5 * fault
    print("shardrun fork server: copying ahead %s (%.1f us a page against "
          "%.1f for a fault)" % ("pays" if pays else "does not pay",
                                 ahead / n * 1e6, fault / n * 1e6),
          file=sys.stderr)
    return pays


def cpus_idle():
    """Whether a CPU we may use has nothing runnable but us right now
    (/proc/stat's procs_running counts us too)."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"procs_running "):
                    running = int(line.split()[1])
                    return running <= len(os.sched_getaffinity(0))
    except (OSError, ValueError):
        pass
    return True


def copies_ahead():
    if COPY_AHEAD in ("on", "off"):
        return COPY_AHEAD == "on"
    return COPY_AHEAD_PAYS or cpus_idle()


def warm_up():
    """In a child forked ahead from the session, before it says it is
    ready: write to the pages an earlier child of the session wrote, which
    its file would otherwise copy and map, one fault each, while due. Run
    by run of pages: the kernel first copies the run (MADV_POPULATE_WRITE,
    which refuses a range no longer mapped), then each page's first byte is
    written back as it is - with signals blocked and the collector off, so
    that nothing runs, writes or frees memory in between. Not where that
    would only take CPU from the running tests (copies_ahead)."""
    import ctypes
    import errno
    import gc
    import struct
    if not copies_ahead():
        return
    data = os.pread(TOUCHED, os.fstat(TOUCHED).st_size, 0)
    pages = [p for (p,) in struct.iter_unpack("Q", data[:len(data) // 8 * 8])]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    collecting = gc.isenabled()
    gc.disable()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        for start, end in runs_within(pages, private_memory()):
            if libc.madvise(start, end - start, 23) != 0:
                if ctypes.get_errno() == errno.EINVAL:
                    return  # MADV_POPULATE_WRITE unknown to this kernel
                continue
            for page in range(start, end, PAGE):
                byte = ctypes.c_char.from_address(page)
                byte.value = byte.value
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if collecting:
            gc.enable()


def runs_within(pages, memory):
    """The runs of consecutive pages (sorted addresses) that lie within
    one of memory's (start, end) ranges, as (start, end)."""
    import bisect
    starts = [start for start, _ in memory]
    run = None
    for page in pages:
        i = bisect.bisect_right(starts, page) - 1
        if i < 0 or page + PAGE > memory[i][1]:
            continue
        if run and run[1] == page:
            run[1] = page + PAGE
            continue
        if run:
            yield tuple(run)
        run = [page, page + PAGE]
    if run:
        yield tuple(run)


def read_request(fd):
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        data += chunk
    os.close(fd)
    return json.loads(data)


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def move_output(log, earlies):
    """Copy what was written to each of earlies (memfds, in order) into
    log, point every descriptor that writes to one of them (stdout,
    stderr, the capture's saved streams, faulthandler's copy) at log, and
    close them."""
    files = set()
    for early in earlies:
        at = 0
        while True:
            chunk = os.pread(early, 65536, at)  # shared: not its offset
            if not chunk:
                break
            write_all(log, chunk)
            at += len(chunk)
        st = os.fstat(early)
        files.add((st.st_dev, st.st_ino))
    repoint(files, log, earlies)
    for early in earlies:
        os.close(early)


def repoint(files, to, spare):
    """Point every descriptor (but to and those in spare) that is open on
    one of files ((st_dev, st_ino) pairs) at what to is open on; returns
    them."""
    moved = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            st = os.fstat(fd)
        except OSError:  # the listing's own descriptor
            continue
        if fd != to and fd not in spare and (st.st_dev, st.st_ino) in files:
            os.dup2(to, fd)
            moved.append(fd)
    return moved


def take_file(kept, req, earlies, started):
    """The request came: move what was written so far into the file's
    log (move_output), give the configuration the file and, when the
    session has started already, restart its clocks (the junit report's
    time and timestamp, the terminal's "in N s")."""
    flush()
    log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    move_output(log, earlies)
    for fd in CONFIG_COPIES:  # the server's, pointed back at its log
        os.dup2(log, fd)
    os.close(log)
    per_file_env(req)
    point_at(kept, req)
    own_conftests(kept, req)
    if not started:
        return
    now = time.time()
    for plugin in kept.config.pluginmanager.get_plugins():
        for clock in ("suite_start_time", "_sessionstarttime"):
            if isinstance(getattr(plugin, clock, None), float):
                setattr(plugin, clock, now)


def take_ahead(req):
    """Give req to the child forked ahead; its pid, or 0 when there is
    none. It gets the request once it says it waits for one (hand_over)."""
    global AHEAD, HANDING
    if AHEAD is None:
        return 0
    HANDING = (AHEAD, req)
    AHEAD = None
    return HANDING[0].pid


def handed(ahead, req):
    try:
        write_all(ahead.wfd, (json.dumps(req) + "\n").encode())
        return True
    except OSError:  # it ended right after saying it was ready
        return False


def hand_over(sock, pid):
    """Send the pending request to its child once it is ready; if the
    child ended first (a hook failed, a plugin ended the session), fork
    the file the plain way. Returns the attempt's pid."""
    global HANDING, AHEAD_OK, COLLECTING
    ahead, req = HANDING
    try:
        said = os.read(ahead.ready, 1)
    except BlockingIOError:
        if os.waitpid(ahead.pid, os.WNOHANG)[0] == 0:
            return pid  # still getting ready
        said = None  # ended, and reaped
    HANDING = None
    if said and handed(ahead, req):
        os.close(ahead.wfd)
        COLLECTING = ahead.ready  # the next child is forked on its "c"
        return pid
    if said is None:
        ahead.close()
    else:
        ahead.kill()
    AHEAD_OK = False
    drop_ahead()  # the next one would end the same way
    pid = fork_child(sock, req, KEPT[1])
    send(sock, {"pid": pid} if pid else
         {"nofork": "a thread exists in the server"})
    return pid


def cancel_hand_over():
    """A signal came for an attempt whose child is not ready yet: it gets
    the signal, and never its file (reading its request, it ends)."""
    global HANDING
    if HANDING is not None:
        HANDING[0].close()
        HANDING = None


def heard(sock, pid):
    """Read what the running child said: once it said the status it exits
    with, sweep and send that status (the child is reaped later); then,
    once it collected its file, said it ends, or its pipe ended, fork the
    next file's child. Returns the running child's pid, 0 once its status
    is sent."""
    global HEARD, ENDING
    try:
        data = os.read(COLLECTING, 64)
    except BlockingIOError:
        return pid  # nothing said since
    HEARD += data
    if HEARD.endswith(b"\n") and b"e" in HEARD:
        status = int(HEARD[HEARD.index(b"e") + 1:-1]) << 8
        unheard()
        report(sock, pid, status)
        ENDING, pid = pid, 0
    elif not data:
        unheard()
    go_ahead(sock, KEPT[1])
    return pid


def report(sock, pid, status):
    """The attempt is over: kill what it left, then send its status, and,
    for this server's first file, how long parsing (and configuring) its
    configuration took before its child was forked: part of its duration
    that the slot's later files of that configuration do not pay."""
    global PARSED
    sweep(pid, NAMESPACED)
    msg = {"status": status}
    if PARSED:
        msg["parsed_s"] = round(PARSED, 4)
        PARSED = 0.0
    send(sock, msg)


def swept_again():
    """Before the next file: once the child that said its status has
    ended (up to a second), sweep again. Only then is everything it
    started below us: what it orphans while it exits is on its way to us
    and may be in neither children list while we look."""
    global ENDING
    if ENDING:
        ended_within(ENDING, 1.0)
        sweep(ENDING, NAMESPACED)  # reaps it
        ENDING = 0


def ended_within(pid, timeout):
    """Wait up to timeout seconds until our child pid has ended (reaped or
    not): on a pidfd, which becomes readable then."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # reaped already
        return
    except (OSError, AttributeError):  # no pidfd (Linux < 5.3, Python < 3.9)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not seen_ended(pid):
            time.sleep(0.0005)
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def seen_ended(pid):
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:  # reaped meanwhile
        return True


def unheard():
    """Stop listening to the running child."""
    global COLLECTING, HEARD
    os.close(COLLECTING)
    COLLECTING = None
    HEARD = b""


def drop_ahead():
    global AHEAD
    if AHEAD is not None:
        AHEAD.kill()
        AHEAD = None


def below_us(spare, deep=True):
    """The pids (as seen here) of our living descendants but those in
    spare (a set) and those below them: everything an attempt started,
    since we adopt what its processes orphan (a child subreaper). A walk
    of the children lists, not a look at every process of the machine.
    /proc is the agent's: the pids it lists are as the agent sees them
    (NSpid: as seen in each namespace, ours last). Not deep: our children
    only, whose pids cannot be reused before we reap them."""
    found, todo = [], [int(os.readlink("/proc/self"))]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:  # gone meanwhile
            continue
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids = [int(kid) for kid in f.read().split()]
            except OSError:
                continue
            for kid in kids:
                here, zombie = seen_here(kid)
                if here is not None and here not in spare:
                    if deep:
                        todo.append(kid)
                    if not zombie:
                        found.append(here)
    return found


def seen_here(pid):
    """pid (as the agent sees it) as seen in our namespace, and whether it
    is a zombie; (None, False) once gone."""
    try:
        fd = os.open("/proc/%d/status" % pid, os.O_RDONLY)
        try:
            text = os.read(fd, 4096).decode()
        finally:
            os.close(fd)
        fields = dict(line.split(":", 1) for line in text.split("\n")
                      if line.startswith(("NSpid:", "State:")))
        return (int(fields["NSpid"].split()[-1]),
                fields["State"].split()[0] == "Z")
    except (OSError, KeyError, ValueError, IndexError):
        return (None, False)


def signal_all(sig, namespaced, pid):
    """Signal the attempt: in a PID namespace of our own, everything below
    us (but a child forked ahead); else the child's process group (the
    child itself before it made its group) and our other children (but a
    child forked ahead): what the attempt orphaned, which we adopted -
    what they started comes to us once they end. Returns how many
    processes, but the child, are still alive below us (of our children,
    without a namespace) and were reached: not those we may not signal
    (another user's, through a setuid program). (Not kill(-1): the front
    and the other servers share the namespace; without one, a pid below
    our children may be reused by then.)"""
    if not namespaced:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    targets = below_us({AHEAD.pid} if AHEAD is not None else set(),
                       deep=namespaced)
    reached = 0
    for target in targets:
        try:
            os.kill(target, sig)
            reached += target != pid  # pid: exiting, maybe
        except OSError:  # gone meanwhile, or not ours to signal
            pass
    return reached


def sweep(pid, namespaced):
    """Kill what the attempt left, wait (up to a second) until it is gone,
    and reap it (the child itself too, if it has ended). A look that found
    some may have missed what they forked meanwhile: look again until one
    finds none."""
    deadline = time.monotonic() + 1.0
    reap()
    while signal_all(signal.SIGKILL, namespaced, pid) and \
            time.monotonic() < deadline:
        reap()
        time.sleep(0.001)
    reap()


def reap():
    """Reap every child that ended (leftovers killed, children that said
    their status; a child forked ahead that ended is dropped)."""
    global AHEAD, AHEAD_OK
    while True:
        try:
            done = os.waitpid(-1, os.WNOHANG)[0]
        except ChildProcessError:
            break
        if done == 0:
            break
        if AHEAD is not None and done == AHEAD.pid:
            AHEAD.close()
            AHEAD = None
            AHEAD_OK = False


def fork_child(sock, req, kept):
    """Fork a child for req; its pid, 0 when forking is unsafe. With a kept
    configuration the next file's child is forked once this one has
    collected its file (COLLECTING)."""
    global COLLECTING
    if threads() > 1:
        return 0
    says_r, says_w = os.pipe2(os.O_CLOEXEC) if kept is not None else (-1, -1)
    pid = os.fork()
    if pid == 0:
        in_child(sock, [says_r] if says_r >= 0 else [],
                 lambda: child(req, kept, says_w))
    if says_r >= 0:
        os.close(says_w)
        os.set_blocking(says_r, False)
        COLLECTING = says_r
    return pid


def parsed():
    """The first child of the kept configuration is forked: the parse's
    time is known (report sends it)."""
    global PARSING, PARSED
    if PARSING is not None:
        PARSED, PARSING = time.monotonic() - PARSING, None


def handle(sock, msg, pid):
    """One request; returns the running child's pid (0: none)."""
    global BUSY, TO_ADOPT
    if "signal" in msg and pid:
        cancel_hand_over()
        signal_all(msg["signal"], NAMESPACED, pid)
    elif "run" in msg and not pid:
        BUSY = True
        swept_again()
        kept = prepared(sock, msg["run"])
        if kept is not None and SESSION is None and SERVER_SESSION and \
                kept.configure_in_server:
            enter_session(sock, kept, msg["run"])  # does not return
        pid = take_ahead(msg["run"]) if kept is not None else 0
        if not pid:
            pid = fork_child(sock, msg["run"], kept)
        if not pid:
            send(sock, {"nofork": "a thread exists in the server"})
            return 0
        parsed()
        send(sock, {"pid": pid})  # the next child: once it collected
        TO_ADOPT = msg["run"] if kept is not None else None
    return pid


INBOX = bytearray()  # what came from the agent, not handled yet
WAKE = None  # the pipe signals wake the loop on
BUSY = False  # given a run, not said idle since


def wake_pipe():
    """The pipe signals (SIGCHLD among them) wake the loop on."""
    global WAKE
    if WAKE is None:
        WAKE = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(WAKE[1])
        signal.signal(signal.SIGCHLD, lambda *_: None)
    return WAKE[0]


def drain(fd):
    try:
        os.read(fd, 4096)
    except BlockingIOError:
        pass


def serve(sock, pending):
    """Serve the agent (or the front) until it closes the connection.
    Once a run's status is sent and what its child left is swept, says so
    ("idle"): only then may a front hand another server a file."""
    global BUSY
    wake_r = wake_pipe()
    pid = 0
    if pending is not None:
        pid = handle(sock, {"run": pending}, 0)
    pid = handle_inbox(sock, pid)  # what came with pending
    while True:
        if HANDING is not None:
            pid = hand_over(sock, pid)
        if pid and COLLECTING is not None:
            pid = heard(sock, pid)  # a status said, before one waited for
        if pid and HANDING is None:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                report(sock, pid, status)
                pid = 0
                if COLLECTING is not None:  # it ended before saying so
                    go_ahead(sock, KEPT[1])
                    unheard()
        if BUSY and not pid:
            swept_again()
            if SERVED:  # the agent has no use for it
                send(sock, {"idle": True})
            BUSY = False
        watch = [sock, wake_r] + ([HANDING[0].ready] if HANDING else []) \
            + ([COLLECTING] if COLLECTING is not None else [])
        ready, _, _ = select.select(watch, [], [])
        if COLLECTING is not None and COLLECTING in ready:
            pid = heard(sock, pid)
        if wake_r in ready:
            drain(wake_r)
        if sock not in ready:
            continue
        data = sock.recv(65536)
        if not data:
            cancel_hand_over()
            drop_ahead()
            return
        INBOX.extend(data)
        pid = handle_inbox(sock, pid)


def lines(buf):
    """Take each whole line (with its newline) out of buf, a bytearray,
    before it is handled: handling one may start another loop over the
    same buf, which goes on with the rest."""
    while b"\n" in buf:
        end = buf.index(b"\n")
        line = bytes(buf[:end + 1])
        del buf[:end + 1]
        yield line


def handle_inbox(sock, pid):
    """Handle each whole line that came; returns the running child's pid.
    (Handling one may enter the server's session, whose loop goes on with
    the rest.)"""
    for line in lines(INBOX):
        pid = handle(sock, json.loads(line), pid)
    return pid


def enter_session(sock, kept, req):
    """Configure pytest and start its session here, in the server, then
    serve from inside that session: each file's child is forked at the
    point where pytest collects and runs, and goes on from there (collects
    its file, runs it, ends the session, unconfigures) while the server
    goes on serving. Does not return: the server ends in it, a child ends
    after its session. If configuring or starting the session fails or
    leaves a thread, the server replaces itself with one whose children
    configure for themselves, and hands it req."""
    global CONFIG_OUT, TOUCHED
    import _pytest.main
    collect_and_run = _pytest.main._main
    # What configuring prints goes into every file's log (move_output).
    CONFIG_OUT = os.memfd_create("shardrun-configure")
    TOUCHED = os.memfd_create("shardrun-touched")
    flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    for fd in saved:
        os.dup2(CONFIG_OUT, fd)

    def restore():
        """The server's own output back where it went, also for what
        configuring copied (faulthandler's stderr)."""
        flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        saved.clear()
        st = os.fstat(CONFIG_OUT)
        CONFIG_COPIES.extend(repoint({(st.st_dev, st.st_ino)}, 2,
                                     [CONFIG_OUT]))

    def in_session(config, session):
        global SESSION
        restore()
        if threads() > 1:
            restart(sock, req, "--configure-in-children")
        SESSION = session
        rehearse_rewrite(config)
        try:
            serve(sock, req)
        except BecameChild:
            pass  # a child, its file taken: its session goes on below
        except BaseException:
            import traceback
            traceback.print_exc()
            flush()
            os._exit(1)
        else:  # the agent closed the connection
            drop_ahead()
            flush()
            os._exit(0)
        return collect_and_run(config, session)

    _pytest.main._main = in_session
    code = outcome(lambda: run_session(kept.config))
    if SESSION is not None:  # a child whose session ended
        flush()
        outcome(record_touched)
        say_end(code)
        os._exit(code)
    restore()
    restart(sock, req, "--configure-in-children")


# The front. A server whose file needs another shape execs one: it parses
# no configuration, imports what is preloaded, then forks a server per
# shape - a copy of itself, single-threaded, nothing parsed yet - and
# passes each request on to the server of its shape and the replies back.
# Each server parses its shape's configuration once and serves that
# shape's files as described above; a suite whose directories have
# conftests of their own keeps a configuration per directory. The servers
# take turns: a file goes to a server once every other one has swept what
# its last file left (it says "idle"), so a slot's files never overlap. At
# most MAX_SHAPES servers live; a new shape beyond them ends the one used
# least recently. From the start (--front) only where the coordinator
# counted several configurations among the run's files: a forked server
# pays a copy-on-write fault for every page it writes while it parses and
# configures (~14 us a page here; ~130 ms more for a slot's first file),
# which a suite of one configuration would pay for nothing.
MAX_SHAPES = 8
SERVERS = {}  # shape -> Server, the least recently used first


class Server:
    """A server forked for one shape, as the front sees it."""

    def __init__(self, pid, sock, req):
        self.pid = pid
        self.sock = sock
        self.req = req        # its first request, which gives its shape
        self.owed = 0         # runs given whose "idle" has not come
        self.running = False  # given a run whose status is not back yet
        self.inbox = bytearray()


class BecameServer(BaseException):
    """Raised in a server right after its fork: unwinds the front's loop
    back to main (a crash report's stack then ends in the server's)."""

    def __init__(self, sock, front_pid, fronts):
        super().__init__()
        self.sock = sock
        self.front_pid = front_pid
        self.fronts = fronts


def fork_server(agent, req):
    """A new server for req's shape."""
    ours, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    front_pid = os.getpid()
    flush()
    pid = os.fork()
    if pid == 0:
        raise BecameServer(its, front_pid, [agent, ours])
    its.close()
    return Server(pid, ours, req)


def become_server(became):
    """A server's start: nothing of the front's but its connection to us
    and what it preloaded; dies with the front. False when the front is
    gone already."""
    global WAKE, SERVED
    SERVED = True
    signal.set_wakeup_fd(-1)
    for fd in WAKE:
        os.close(fd)
    WAKE = None
    del INBOX[:]  # the front's
    for other in became.fronts + [s.sock for s in SERVERS.values()]:
        other.close()
    SERVERS.clear()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != became.front_pid:
        return False
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    return True


def rekey():
    """The shapes again, now that they take the directory in."""
    servers = list(SERVERS.values())
    SERVERS.clear()
    for server in servers:
        key = shape(server.req)
        if key in SERVERS:  # the files changed meanwhile: one is enough
            SERVERS.pop(key).sock.close()
        SERVERS[key] = server


def heard_from(agent, server):
    """Pass on what a server said to the agent but what is for the front
    alone; False once the server is gone."""
    global BY_DIRECTORY
    try:
        data = server.sock.recv(65536)
    except OSError:
        data = b""
    if not data:
        return False
    server.inbox.extend(data)
    for line in lines(server.inbox):
        msg = json.loads(line)
        if "idle" in msg:
            server.owed -= 1
        elif "by_directory" in msg:
            BY_DIRECTORY = True
            rekey()
        else:
            if "status" in msg or "nofork" in msg:
                server.running = False
            agent.sendall(line)
    return True


def server_gone(server):
    """A server ended (its own end, or killed). If its file's status did
    not come, the front ends too: the agent then reports the attempt as
    a crash of the fork server, as before the front."""
    server.sock.close()
    for key, s in list(SERVERS.items()):
        if s is server:
            del SERVERS[key]
    if server.running:
        print("shardrun fork server: the server of a running file died",
              file=sys.stderr)
        flush()
        os._exit(1)


def evict():
    """Make room for a new server: end the least recently used one (the
    others are idle whenever one is made)."""
    while len(SERVERS) >= MAX_SHAPES:
        key = next(iter(SERVERS))
        SERVERS.pop(key).sock.close()  # it ends on the closed connection


def pass_on(agent, queue, active):
    """Pass the agent's messages on, in order: a run to its shape's server
    once every other server is idle, a signal to the server of the last
    run. Returns that server."""
    while queue:
        msg = queue[0]
        if "run" in msg:
            key = shape(msg["run"])
            target = SERVERS.pop(key, None)
            if any(s.owed for s in SERVERS.values()):
                if target is not None:
                    SERVERS[key] = target
                return active  # wait for them
            if target is None:
                evict()
                target = fork_server(agent, msg["run"])
            SERVERS[key] = target  # now the most recently used
            target.owed += 1
            target.running = True
            active = target
            send(target.sock, msg)
        elif "signal" in msg and active is not None and active.running:
            send(active.sock, msg)
        queue.pop(0)
    return active


def reap_any():
    """Reap every child that ended; whether there was one."""
    reaped = False
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return reaped
        except ChildProcessError:
            return reaped
        reaped = True


def sweep_orphans():
    """Once a server ended: kill what it left, which we adopted (a child
    subreaper): everything below us but the servers and what is below
    them (without a namespace, our children: what they started comes to
    us once they end). Up to a second, until a look finds none we may
    signal; what a look missed, the next one finds. Returns whether its
    last look's reap took anything: a server that ended meanwhile, whose
    leftovers no look may have seen yet."""
    deadline = time.monotonic() + 1.0
    reaped = False
    while True:
        reached = 0
        for target in below_us({s.pid for s in SERVERS.values()},
                               deep=NAMESPACED):
            try:
                os.kill(target, signal.SIGKILL)
                reached += 1
            except OSError:  # gone meanwhile, or not ours to signal
                pass
        if not reached or time.monotonic() > deadline:
            return reaped
        time.sleep(0.001)
        reaped = reap_any()


def front(agent, pending):
    """Serve the agent through a server per shape, pending first, until
    it closes the connection."""
    wake_r = wake_pipe()
    queue = [{"run": pending}] if pending is not None else []
    inbox, active = INBOX, None
    while True:
        queue += [json.loads(line) for line in lines(inbox)]
        active = pass_on(agent, queue, active)
        socks = {s.sock: s for s in SERVERS.values()}
        ready, _, _ = select.select([agent, wake_r] + list(socks), [], [])
        if wake_r in ready:
            drain(wake_r)
            again = reap_any()
            while again:  # its SIGCHLD woke us already
                again = sweep_orphans()
        for sock in ready:
            if sock in socks and not heard_from(agent, socks[sock]):
                server_gone(socks[sock])
        if agent in ready:
            data = agent.recv(65536)
            if not data:
                for server in SERVERS.values():
                    server.sock.close()
                return
            inbox.extend(data)


def in_own_pid_namespace():
    """Whether our parent, the init of our PID namespace, was started by a
    process outside it (the agent's spawner made the namespace for us).
    /proc is the agent's: the pids it shows are as the agent sees them.
    (Not a comparison with /proc/1: where that is the machine's init it
    may not be readable.)"""
    def parent_of(pid):
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
        raise ValueError("no PPid")

    def ns_of(pid):
        return os.readlink("/proc/%s/ns/pid" % pid)

    try:
        init = parent_of("self")
        return ns_of(init) == ns_of("self") != ns_of(parent_of(init))
    except (OSError, ValueError):
        return False


def main():
    global KEEP, START_ENV, SERVER_SESSION, NAMESPACED, SERVED
    START_ENV = dict(os.environ)
    path, root, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    dirs, modules, fd, pending, flags = [], [], -1, None, set()
    while rest:
        if rest[0] == "-d" and len(rest) > 1:
            dirs.append(rest[1])
            rest = rest[2:]
        elif rest[0] in ("--no-keep", "--configure-in-children",
                         "--namespaced", "--front", "--served"):
            flags.add(rest.pop(0))
        elif rest[0] in ("--fd", "--pending") and len(rest) > 1:
            if rest[0] == "--fd":
                fd = int(rest[1])
            else:
                with os.fdopen(int(rest[1]), "rb") as f:
                    f.seek(0)
                    line, _, more = f.read().partition(b"\n")
                pending = json.loads(line)
                INBOX.extend(more)
            rest = rest[2:]
        else:
            modules.append(rest.pop(0))
    KEEP = "--no-keep" not in flags
    SERVER_SESSION = "--configure-in-children" not in flags
    NAMESPACED = "--namespaced" in flags
    SERVED = "--served" in flags
    if fd < 0:  # started by the agent
        NAMESPACED = os.environ.get("SHARDRUN_PIDNS") == "1" and \
            os.getppid() == 1 and in_own_pid_namespace()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    if fd >= 0:
        sock = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
    preload(root, dirs, modules)
    if threads() > 1:
        send(sock, {"nofork": "importing the preloaded modules started a "
                              "thread"})
        return
    if fd < 0:
        send(sock, {"ready": True})
    if "--front" in flags:
        try:
            front(sock, pending)
            return
        except BecameServer as e:
            # Served after the except clause: in it, every exception a
            # test raised would chain to this one.
            became = e
            became.__traceback__ = None
        if not become_server(became):
            os._exit(1)
        sock, pending = became.sock, None
        del became
    serve(sock, pending)
    # Not the interpreter's end: a conftest's atexit handlers are its
    # files' business, not the server's.
    flush()
    os._exit(0)


main()
