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
# the initial conftests all come from the file's directory. A server parses
# at most one configuration in its life: parsing another would run the
# conftests again in a process that already ran them (registries filled
# twice, library patches applied twice, logging bound to the first parse's
# capture). So when a file needs another one - or the parse fails, or
# leaves a thread behind - the server replaces itself (exec, same pid, same
# connection) with a fresh one that keeps nothing and runs pytest.main in
# each child, and hands it the request.
#
# Protocol: newline-delimited JSON over a Unix socket (path in argv[1]).
#   agent -> server  {"run": {"args", "files", "cwd", "log", "env"}}
#                    | {"signal": N}
#                    ("files": which of the args name the file or its ids)
#   server -> agent  {"ready": true} | {"nofork": why} | {"pid": P}
#                    | {"status": S}   (a raw wait status)
# argv[2]: the workspace root; then "-d DIR" (put on sys.path) and the
# modules to preload; after an exec also "--no-keep", "--fd N" (the
# connection) and "--pending N" (a file holding the request to serve).
import json
import os
import select
import signal
import socket
import sys


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
    for name in modules + ["pdb"]:  # pytest's debugging plugin wants pdb
        try:
            __import__(name)
        except Exception:
            pass  # the test itself will report a broken import


# What differs between two attempts of one slot beyond the file; kept out
# of the environment the configuration is parsed in.
PER_FILE_ENV = ("SHARDRUN_FILE", "SHARDRUN_ATTEMPT")
KEEP = True     # False once this server has given keeping up (--no-keep)
KEPT = None     # (shape, Kept) after the one parse
START_ENV = {}  # our environment at start, for an exec


class Kept:
    """pytest's parsed configuration, the template request's file arguments
    and the environment the parse left (a conftest may set variables)."""

    def __init__(self, config, files):
        self.config = config
        self.files = files
        self.env = dict(os.environ)


def shape(req):
    """What a parsed configuration depends on: everything but the file
    arguments, and the directories (and existence) of the files."""
    args, files, cwd = req["args"], req.get("files") or [], req["cwd"]
    if not files or any(f not in args for f in files):
        return None
    paths = {f.split("::", 1)[0] for f in files}
    # A set: a bundle of one directory's files has the shape of any one.
    where = tuple(sorted({(os.path.dirname(p),
                           os.path.exists(os.path.join(cwd, p)))
                          for p in paths}))
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
        return Kept(config, files)
    except BaseException:  # pytest.skip() in a conftest is one
        return None


def prepared(sock, req):
    """The kept configuration for this request; None to run pytest.main
    (nothing parsed here yet, or keeping given up). When keeping cannot go
    on, does not return: the server replaces itself (see the top)."""
    global KEPT
    if not KEEP:
        return None
    key = shape(req)
    if KEPT is None and key is None:
        return None
    if KEPT is None:
        kept = parse_config(req)
        if kept is None or threads() > 1:
            restart(sock, req)
        KEPT = (key, kept)
    if KEPT[0] != key:
        restart(sock, req)
    return KEPT[1]


def restart(sock, req):
    """exec a fresh server that keeps nothing; it serves req first."""
    flush()
    pending = os.memfd_create("shardrun-pending")  # no file system needed
    os.write(pending, json.dumps(req).encode())
    for fd in (sock.fileno(), pending):
        os.set_inheritable(fd, True)
    argv = list(sys.orig_argv) + ["--no-keep", "--fd", str(sock.fileno()),
                                  "--pending", str(pending)]
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


def run_prepared(kept, req):
    """What pytest.main does after parsing, on the kept configuration with
    this request's files."""
    from _pytest.config import UsageError
    config = kept.config
    os.environ.clear()
    os.environ.update(kept.env)
    os.environ.update({k: v for k, v in req["env"].items()
                       if k in PER_FILE_ENV})
    rehome_capture(config)
    new = list(req["files"])
    config.args = swap(config.args, kept.files, new)
    for ns in (config.option, config.known_args_namespace):
        ns.file_or_dir = swap(ns.file_or_dir, kept.files, new)
    params = config.invocation_params
    config.invocation_params = type(params)(
        args=tuple(req["args"]), plugins=params.plugins, dir=params.dir)
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


def child(req, kept):
    os.setsid()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE,
                signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    fd = os.open("/dev/null", os.O_RDONLY)
    os.dup2(fd, 0)
    fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(req["cwd"])
    sys.argv = ["pytest"] + req["args"]
    code = 1
    try:
        if kept is not None:
            code = run_prepared(kept, req)
        else:
            os.environ.clear()
            os.environ.update(req["env"])
            import pytest
            code = int(pytest.main(req["args"]))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # uncaught: as the interpreter would end
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        flush()
    os._exit(code)


def sweep(pid, namespaced):
    """Kill what the attempt left: everything in our PID namespace but us
    and its init, or else the child's process group and our children."""
    if namespaced:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break


def handle(sock, msg, pid, namespaced):
    """One request; returns the running child's pid (0: none)."""
    if "signal" in msg and pid:
        try:
            os.kill(-1 if namespaced else -pid, msg["signal"])
        except OSError:
            pass
    elif "run" in msg and not pid:
        kept = prepared(sock, msg["run"])
        if threads() > 1:
            send(sock, {"nofork": "a thread exists in the server"})
            return 0
        pid = os.fork()
        if pid == 0:
            sock.close()
            signal.set_wakeup_fd(-1)
            child(msg["run"], kept)
        send(sock, {"pid": pid})
    return pid


def serve(sock, namespaced, pending):
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    buf = b""
    pid = 0
    if pending is not None:
        pid = handle(sock, {"run": pending}, 0, namespaced)
    while True:
        if pid:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                sweep(pid, namespaced)
                send(sock, {"status": status})
                pid = 0
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        if sock not in ready:
            continue
        data = sock.recv(65536)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            pid = handle(sock, json.loads(line), pid, namespaced)


def in_own_pid_namespace():
    try:
        return os.readlink("/proc/self/ns/pid") != \
            os.readlink("/proc/1/ns/pid")
    except OSError:
        return False


def main():
    global KEEP, START_ENV
    START_ENV = dict(os.environ)
    path, root, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    dirs, modules, fd, pending = [], [], -1, None
    while rest:
        if rest[0] == "-d" and len(rest) > 1:
            dirs.append(rest[1])
            rest = rest[2:]
        elif rest[0] == "--no-keep":
            KEEP = False
            rest = rest[1:]
        elif rest[0] in ("--fd", "--pending") and len(rest) > 1:
            if rest[0] == "--fd":
                fd = int(rest[1])
            else:
                with os.fdopen(int(rest[1]), "rb") as f:
                    f.seek(0)
                    pending = json.loads(f.read())
            rest = rest[2:]
        else:
            modules.append(rest.pop(0))
    # kill(-1) is only ever used inside a PID namespace of our own.
    namespaced = os.environ.get("SHARDRUN_PIDNS") == "1" and \
        os.getppid() == 1 and in_own_pid_namespace()
    try:
        import ctypes
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass
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
    if pending is None:
        send(sock, {"ready": True})
    serve(sock, namespaced, pending)


main()
