"""The warm worker: one local process that keeps torch, the encoders and the model loaded
between commands, so that a small job (an album added, `genrectl predict` of one file) does
not pay seconds of imports and model loading each time.

Importing torch alone takes 1.5 to 2.5 s here, and a featurizing process builds two encoders
on top: no cold process can ingest one track in 3 s. So the first embedded `ingest` or
`predict` starts a worker detached from the terminal (its own session: Ctrl-C at the
prompt does not reach it) that warms up and waits on a Unix socket; later commands hand it
their work. It exits after GENRECTL_WARM_SECONDS idle (0: no warm worker, every command
spawns its own), when its home directory disappears, or when it is interrupted.

Identity: one worker per GENRECTL_HOME *and* per installed code, interpreter and
GENRECTL_* environment (``worker_key``): after an upgrade or a settings change the next
command starts a fresh worker and the old one idles out; it is never handed work its code
does not match. The socket lives in a per-user directory of mode 0700 under the temporary
directory (a Unix socket path is limited to ~100 bytes, a home need not be), which is what
keeps other users out: a request is a pickle, so only the owner may connect.

Protocol, one request per connection: the client sends ``(target, args, kwargs)`` (a
"module:function" and its arguments); the worker answers at once ``queued`` (it will run it)
or ``busy`` (another command holds it: use a process of your own), then, when done,
``("ok", result)`` or ``("raised", exception)``. A connection that closes before the result
(the client was interrupted or killed) interrupts the call, which rolls back as a pool
worker's does, and the worker exits. A worker that dies after ``queued`` (a decoder
crashing on a corrupt file) is ``WarmWorkerDied``: the caller treats the call like a
crashed pool worker's chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import pickle
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrectl.settings import ENV_PREFIX, Settings

log = logging.getLogger("scheduler.warm")  # not __main__ when run with -m

CODE_PACKAGES = ("cli", "db", "genrectl", "scheduler", "worker")
QUEUED, BUSY, OK, RAISED = "queued", "busy", "ok", "raised"
CONNECT_TIMEOUT_S = 2.0
# From "queued" to the result there is no limit (a chunk takes what it takes); the first
# answer comes from the worker's accepting thread, at once even while it warms up.
ANSWER_TIMEOUT_S = 15.0
# How long a command waits for a worker it started to take the socket.
START_TIMEOUT_S = 30.0
HEADER = struct.Struct("!Q")


class WarmUnavailable(Exception):
    """No warm worker can take the call (none running and none could start, or busy): run
    it some other way. Nothing of the call ran."""


class WarmWorkerDied(Exception):
    """The warm worker took the call and died before answering (a decoder crash)."""


class _NoAnswer(Exception):
    """A connection was taken and closed before "queued" or "busy"."""


@dataclass(frozen=True)
class WarmPaths:
    """Where one warm worker listens, locks and says who it is."""

    socket: Path
    lock: Path
    status: Path

    @classmethod
    def of(cls, key: str) -> WarmPaths:
        base = runtime_dir() / f"warm-{key}"
        return cls(base.with_suffix(".sock"), base.with_suffix(".lock"), base.with_suffix(".json"))


def runtime_dir() -> Path:
    """This user's directory for warm workers' sockets, mode 0700 (refused otherwise)."""
    path = Path(tempfile.gettempdir()) / f"genrectl-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise WarmUnavailable(f"{path} is not this user's private directory")
    return path


def worker_key(settings: Settings) -> str:
    """16 hex characters naming the worker for this home, code, interpreter and
    GENRECTL_* environment."""
    digest = hashlib.sha256()
    digest.update(str(settings.home.resolve()).encode())
    digest.update(sys.executable.encode())
    for name, value in sorted(os.environ.items()):
        if name.startswith(ENV_PREFIX):
            digest.update(f"{name}={value}\n".encode())
    root = Path(__file__).resolve().parents[1]
    for package in CODE_PACKAGES:
        for file in sorted((root / package).rglob("*.py")):
            info = file.stat()
            digest.update(f"{file}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


# --- the client side ------------------------------------------------------------------


class WarmClient:
    """Hands calls to the warm worker of ``settings`` (starting it when none runs)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = WarmPaths.of(worker_key(settings))
        self._active: socket.socket | None = None
        self._started: subprocess.Popen[bytes] | None = None  # by this client, not yet heard

    def start(self) -> None:
        """Start a worker unless one answers; returns at once (it warms up on its own)."""
        probe = self._connect()
        if probe is not None:
            probe.close()
            return
        self._started = start_worker(self.settings, self.paths)

    def call(self, target: str, *args: Any, wait_start: bool = True, **kwargs: Any) -> Any:
        """Run ``target(*args, **kwargs)`` in the warm worker and return its result (or raise
        its exception). Raises WarmUnavailable when no worker takes it, WarmWorkerDied when
        the worker died with the call in hand."""
        try:
            sock = self._queue(target, args, kwargs, wait_start=wait_start)
        except _NoAnswer:
            # A worker exiting (idle, killed) as we connected: its socket took the connection
            # and closed it. Once more, when it is gone, starting a fresh one.
            time.sleep(0.2)
            sock = self._queue(target, args, kwargs, wait_start=wait_start, retry=True)
        self._active = sock
        try:
            kind, value = recv_message(sock)
        except (OSError, EOFError) as exc:
            raise WarmWorkerDied(f"the warm worker died: {exc}") from None
        finally:
            self._active = None
            sock.close()
        if kind == RAISED:
            raise value
        return value

    def _queue(
        self,
        target: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        wait_start: bool,
        retry: bool = False,
    ) -> socket.socket:
        """Connect (starting a worker if need be) and send the call; the socket once the
        worker answered "queued"."""
        sock = self._connect()
        if sock is None and wait_start:
            # The one this client started may not listen yet: wait for it, not a second one.
            process = self._started or start_worker(self.settings, self.paths)
            self._started = None
            sock = self._wait_for_socket(process)
        if sock is None:
            raise WarmUnavailable("no warm worker is running")
        try:
            sock.settimeout(ANSWER_TIMEOUT_S)
            send_message(sock, (target, args, kwargs))
            answer = recv_message(sock)
        except (OSError, EOFError) as exc:
            sock.close()
            if retry:
                raise WarmUnavailable(f"the warm worker did not answer: {exc}") from None
            raise _NoAnswer from None
        if answer != QUEUED:
            sock.close()
            raise WarmUnavailable("the warm worker is busy")
        sock.settimeout(None)
        return sock

    def call_or_here(self, target: str, *args: Any, **kwargs: Any) -> Any:
        """``call``, or ``target`` run in this process when the warm worker cannot take it
        or died with it."""
        try:
            return self.call(target, *args, **kwargs)
        except (WarmUnavailable, WarmWorkerDied) as exc:
            log.info("running %s here: %s", target, exc)
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    def cancel(self) -> None:
        """Interrupt the call in hand (from another thread): closing the connection makes
        the worker roll it back and exit."""
        sock = self._active
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(str(self.paths.socket))
        except OSError:
            sock.close()
            return None
        return sock

    def _wait_for_socket(self, process: subprocess.Popen[bytes]) -> socket.socket | None:
        """Connect once the worker listens; None at once if it failed (it exits 0 only
        when another worker of this key holds the lock, and that one will listen)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            sock = self._connect()
            if sock is not None:
                return sock
            if process.poll() not in (None, 0):
                log.warning(
                    "the warm worker could not start (exit %s): see worker.log", process.returncode
                )
                return None
            time.sleep(0.02)
        log.warning("the warm worker did not start within %g s", START_TIMEOUT_S)
        return None


def warm_client(settings: Settings) -> WarmClient | None:
    """A client of this home's warm worker, or None when it is switched off
    (GENRECTL_WARM_SECONDS=0) or cannot be had here. One client per worker in a process:
    the worker `ingest` starts first thing is the one its chunks then wait for."""
    if settings.warm_seconds <= 0:
        return None
    try:
        client = WarmClient(settings)
    except (WarmUnavailable, OSError) as exc:
        log.info("no warm worker: %s", exc)
        return None
    return _clients.setdefault(client.paths.socket, client)


_clients: dict[Path, WarmClient] = {}


def start_worker(settings: Settings, paths: WarmPaths) -> subprocess.Popen[bytes]:
    """Start a warm worker in its own session; its settings travel on its stdin. Two
    commands starting one at once is harmless: the second finds the lock taken and exits."""
    log_file = settings.home / "logs" / "worker.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "scheduler.warm", str(paths.socket)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[1],
            close_fds=True,
        )
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(pickle.dumps(settings))
        process.stdin.close()
    # Reaped when it exits, should this process outlive it (a long-lived caller); a command
    # that ends first leaves it to init.
    threading.Thread(target=process.wait, name="warm-reaper", daemon=True).start()
    return process


def running_worker(settings: Settings) -> dict[str, Any] | None:
    """What the warm worker of ``settings`` says of itself (pid, started, idle since),
    or None when none runs."""
    try:
        paths = WarmPaths.of(worker_key(settings))
        status = json.loads(paths.status.read_text())
    except (OSError, ValueError, WarmUnavailable):
        return None
    try:
        os.kill(int(status["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return dict(status)


def stop_workers_under(root: Path) -> int:
    """Stop every warm worker of this user whose home is under ``root`` (tests clean up
    with it); returns how many were signalled."""
    stopped = 0
    for status_file in runtime_dir().glob("warm-*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            status = json.loads(status_file.read_text())
            if Path(status["home"]).resolve().is_relative_to(root.resolve()):
                os.kill(int(status["pid"]), signal.SIGTERM)
                stopped += 1
    return stopped


# --- framing ----------------------------------------------------------------------------


def send_message(sock: socket.socket, value: Any) -> None:
    data = pickle.dumps(value)
    sock.sendall(HEADER.pack(len(data)) + data)


def recv_message(sock: socket.socket) -> Any:
    (size,) = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    return pickle.loads(_recv_exactly(sock, size))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the worker side --------------------------------------------------------------------


class WarmServer:
    """The warm worker's loop: an accepting thread answers at once (queued or busy); the
    main thread warms up, then runs calls one at a time, so that an interrupt (a signal to
    the main thread) rolls the call in hand back."""

    def __init__(self, settings: Settings, paths: WarmPaths) -> None:
        self.settings, self.paths = settings, paths
        self.calls: queue.Queue[tuple[socket.socket, Any]] = queue.Queue()
        self.lock = threading.Lock()
        self.busy = False
        self.closing = False
        self.idle_since = time.time()

    def listen(self, listener: socket.socket) -> None:
        """Start answering connections (calls wait in the queue until ``serve``)."""
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def serve(self) -> None:
        """Warm up, then run the queued calls until it is time to exit."""
        warm_up(self.settings)
        self._write_status()
        while True:
            try:
                conn, request = self.calls.get(timeout=1.0)
            except queue.Empty:
                if self._should_exit():
                    return
                continue
            self._write_status()  # busy
            try:
                self._run(conn, request)
            finally:
                conn.close()
                with self.lock:
                    self.busy = False
                    self.idle_since = time.time()
                self._write_status()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            conn, _ = listener.accept()
            try:
                conn.settimeout(ANSWER_TIMEOUT_S)
                request = recv_message(conn)
                with self.lock:
                    taken = not self.busy and not self.closing
                    self.busy = self.busy or taken
                send_message(conn, QUEUED if taken else BUSY)
            except (OSError, EOFError, pickle.UnpicklingError):
                conn.close()
                continue
            if taken:
                conn.settimeout(None)
                self.calls.put((conn, request))
            else:
                conn.close()

    def _run(self, conn: socket.socket, request: Any) -> None:
        target, args, kwargs = request
        done = threading.Event()
        watch = threading.Thread(target=_interrupt_on_hangup, args=(conn, done), daemon=True)
        watch.start()
        started = time.perf_counter()
        log.info("warm worker runs %s", target)
        # Connections of the last call are not trusted with this one: a SQLite file deleted
        # and created again between commands would leave a pooled connection writing to the
        # deleted one.
        from db.engine import dispose_engines

        dispose_engines()
        try:
            module, _, name = target.partition(":")
            result = getattr(importlib.import_module(module), name)(*args, **kwargs)
            answer: tuple[str, Any] = (OK, result)
            log.info("warm worker ran %s in %.2f s", target, time.perf_counter() - started)
        except KeyboardInterrupt:
            done.set()
            log.warning("warm worker: %s interrupted (its command went away); exiting", target)
            self.exit(1)
        except Exception as exc:
            answer = (RAISED, _picklable(exc))
        done.set()
        with contextlib.suppress(OSError):
            send_message(conn, answer)

    def _should_exit(self) -> bool:
        with self.lock:
            idle = time.time() - self.idle_since
            gone = not self.settings.home.exists() or not self.paths.socket.exists()
            if self.busy or not (gone or idle >= self.settings.warm_seconds):
                return False
            self.closing = True
        log.info("warm worker exits (%s)", "home gone" if gone else f"idle {idle:.0f} s")
        return True

    def _write_status(self) -> None:
        status = {
            "pid": os.getpid(),
            "home": str(self.settings.home),
            "idle_since": self.idle_since,
            "busy": self.busy,
            "warm_seconds": self.settings.warm_seconds,
        }
        with contextlib.suppress(OSError):
            tmp = self.paths.status.with_suffix(".tmp")
            tmp.write_text(json.dumps(status))
            tmp.replace(self.paths.status)

    def exit(self, code: int) -> None:
        for path in (self.paths.socket, self.paths.status, self.paths.lock):  # lock still held
            with contextlib.suppress(OSError):
                path.unlink()
        logging.shutdown()
        os._exit(code)


def _interrupt_on_hangup(conn: socket.socket, done: threading.Event) -> None:
    """Interrupt the main thread if the client closes the connection before the result
    (it sends nothing after its request, so readable means closed)."""
    while not done.is_set():
        readable, _, _ = select.select([conn], [], [], 0.2)
        if readable and not done.is_set():
            try:
                closed = conn.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                closed = True
            if closed:
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
                return


def _picklable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling (EnvironmentFault and DecodeError do), else a
    RuntimeError that names it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def warm_up(settings: Settings) -> None:
    """Load what a chunk or a prediction needs (torch, the promoted model's encoders and
    head, the decoders) by predicting a generated 30 s tune; a failure is logged, not
    fatal: the first call then loads what it needs itself."""
    from db.engine import session_scope
    from db.registry import promoted_model

    try:
        with session_scope(settings) as session:
            model = promoted_model(session)
            found = None if model is None else (model.path, model.sha256)
        if found is None:
            return
        import numpy as np
        import soundfile as sf

        from worker.inference.label import cached_model, predict_file

        rng = np.random.default_rng(0)
        tone = np.sin(2 * np.pi * 220 * np.arange(30 * 22050) / 22050) * 0.3
        audio = (tone + 0.05 * rng.standard_normal(tone.size)).astype(np.float32)
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "warm-up.wav"
            sf.write(path, audio, 22050)
            predict_file(path, loaded=cached_model(*found), settings=settings)
    except Exception:
        log.exception("warm worker: warming up failed (calls load what they need)")


def main(socket_path: str) -> None:
    """``python -m scheduler.warm SOCKET``, settings pickled on stdin (``start_worker``)."""
    import fcntl

    settings: Settings = pickle.loads(sys.stdin.buffer.read())
    base = Path(socket_path).with_suffix("")
    paths = WarmPaths(Path(socket_path), base.with_suffix(".lock"), base.with_suffix(".json"))
    while True:
        lock = paths.lock.open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another worker holds this key
        # The lock file is removed by the worker that exits (so that keys of old code do
        # not pile up): held, it must still be the file at that path, else lock anew.
        try:
            if os.fstat(lock.fileno()).st_ino == paths.lock.stat().st_ino:
                break
        except FileNotFoundError:
            pass
        lock.close()
    with contextlib.suppress(FileNotFoundError):
        paths.socket.unlink()  # left by a worker that was killed: the lock says it is gone
    # Listening before the imports: a command that started this worker connects at once
    # and its call waits in the queue while the worker warms up.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(paths.socket))
    listener.listen(8)
    server = WarmServer(settings, paths)
    server.listen(listener)
    from scheduler.pool import init_process

    init_process(settings)  # logs to the home's worker.log, one torch thread, SIGINT handler
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    log.info("warm worker %d listening on %s", os.getpid(), paths.socket)
    try:
        server.serve()
    except KeyboardInterrupt:
        log.info("warm worker stopped by a signal")
    server.exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
