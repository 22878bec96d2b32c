"""What a feature set's own code opens while `check-leakage` runs it: files, databases and
network addresses, each named with the line of the set's code that opened it.

Two witnesses, because neither sees everything:
- Python's audit hooks (PEP 578, `sys.addaudithook`): every `open` (builtins, io, os.open),
  directory listing, `sqlite3.connect` and `socket.connect` made through Python, with the
  calling frame, so the report names the set's file and line.
- Linux inotify on the real storage folder (root, tables, days) and on a SQLite source file:
  reads by native code that raises no audit event (pyarrow's readers open files in C++).

Recording costs the set next to nothing: the audit hook returns at once for events it does
not watch, and inotify is drained once per call of the set. Which line of the set made a
native read is found only when there was one, by running the call again under a profile
hook (`locating()`): a hook on every call would slow a set that makes millions of small
calls many times over.

Not seen: sockets opened by C extensions themselves (libpq under psycopg2, connectorx's Rust
driver, a gRPC channel), native reads of files outside the watched storage and SQLite file,
and anything a subprocess does. The recompute-and-compare in `leakage` still catches such code
when it reads the source named by FEATURE_ASSETS_SOURCE_URL (then the cut copy) and looks ahead.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import site
import struct
import sys
import sysconfig
from collections.abc import Iterable, Iterator

_EVENTS = {"open", "os.listdir", "os.scandir", "sqlite3.connect", "socket.connect"}
# read-only files of the interpreter and the system that libraries open on their own
_SYSTEM_DATA = ("/usr/share/zoneinfo/", "/etc/localtime", "/dev/null", "/dev/urandom")
_CODE_SUFFIXES = (".py", ".pyc", ".so", ".pth")

_IN_ACCESS, _IN_OPEN, _IN_NONBLOCK, _IN_ISDIR = 0x1, 0x20, 0o4000, 0x40000000
_EVENT_HEADER = struct.Struct("iIII")

_active: AccessRecorder | None = None
_hook_installed = False
_in_hook = False


@dataclasses.dataclass(frozen=True)
class Access:
    """One thing a set opened outside the cut copy."""

    kind: str  # "file", "folder", "SQLite database", "network address"
    target: str
    where: str  # "path/to/set.py:12 (function)", or who else opened it

    def describe(self) -> str:
        return f"opened {self.kind} {self.target} at {self.where}"


class AccessRecorder:
    """Records what code opens while `recording()` is active, apart from `allowed` folders,
    the Python installation (imports) and the system's shared read-only data.

    `code_file` is the set's source file: the frame of it nearest the opening call is named.
    `watched` are paths (folders or files) that inotify watches for native reads: for a
    folder its sub-folders down to `depth` levels, as the storage's table/day layout has.
    """

    def __init__(self, allowed: Iterable[str], code_file: str | None, watched=(), depth=2):
        self.allowed = tuple(_folder(os.path.realpath(path)) for path in allowed)
        self.code_file = os.path.realpath(code_file) if code_file else None
        self.accesses: list[Access] = []
        self._trusted = _python_installation()
        self._watches = _Inotify.watching(watched, depth)
        self._locating = False
        self._is_code_file: dict[str, bool] = {}  # a code object's file name -> is the set's

    @property
    def watches_native_reads(self) -> bool:
        return self._watches is not None

    @property
    def has_unlocated_reads(self) -> bool:
        """Native reads were seen whose line of the set's code is not known yet."""
        return any(access.where.startswith(UNLOCATED) for access in self.accesses)

    @contextlib.contextmanager
    def locating(self) -> Iterator[None]:
        """While active, `recording()` names the line of each native read: running the call
        again records the unlocated reads with their lines. A read the second run does not
        make again (a set that reads only sometimes) stays reported, without its line."""
        unlocated = [a for a in self.accesses if a.where.startswith(UNLOCATED)]
        self.accesses = [a for a in self.accesses if a not in unlocated]
        self._locating = True
        try:
            yield
        finally:
            self._locating = False
            located = {a.target for a in self.accesses}
            self.accesses += [a for a in unlocated if a.target not in located]

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        global _active
        _install_hook()
        if self._watches:
            self._watches.drain()  # what happened before is not the set's doing
        _active = self
        profiling = self._locating and self._watches is not None and self.code_file is not None
        if profiling:
            previous = sys.getprofile()
            sys.setprofile(self._profile)
        try:
            yield
        finally:
            if profiling:
                sys.setprofile(previous)
            _active = None
            self._native_reads(UNLOCATED)

    def _profile(self, frame, event: str, _) -> None:
        """After each call the set's own code makes, native reads since are that line's."""
        if event == "c_return":
            caller = frame
        elif event == "return" and frame.f_back is not None:
            caller = frame.f_back
        else:
            return
        if self._in_code_file(caller.f_code.co_filename):
            self._native_reads(_frame_name(caller))

    def _in_code_file(self, filename: str) -> bool:
        known = self._is_code_file.get(filename)
        if known is None:
            known = self._is_code_file[filename] = os.path.realpath(filename) == self.code_file
        return known

    def _native_reads(self, where: str) -> None:
        if not self._watches:
            return
        for kind, path in self._watches.drain():
            if not self._is_allowed(path) and not any(a.target == path for a in self.accesses):
                self.accesses.append(Access(kind, path, f"{where}, native code"))

    def close(self) -> None:
        if self._watches:
            self._watches.close()

    def take(self) -> list[Access]:
        """The accesses recorded so far, forgetting them."""
        taken, self.accesses = self.accesses, []
        return taken

    def _saw(self, event: str, args: tuple) -> None:
        if event == "socket.connect":
            self._record("network address", _address(args[1]))
            return
        target = args[0]
        if isinstance(target, bytes):
            target = os.fsdecode(target)
        if not isinstance(target, str) or target in ("", ":memory:"):
            return  # a file descriptor, or an in-memory database
        if target.startswith("file:"):  # a SQLite URI
            target = target[5:].split("?", 1)[0]
        path = os.path.realpath(target)
        if self._is_allowed(path):
            return
        kind = {"sqlite3.connect": "SQLite database", "open": "file"}.get(event, "folder")
        self._record(kind, path)

    def _record(self, kind: str, target: str) -> None:
        if not any(a.kind == kind and a.target == target for a in self.accesses):
            self.accesses.append(Access(kind, target, self._where()))

    def _is_allowed(self, path: str) -> bool:
        if any(_folder(path).startswith(folder) for folder in self.allowed):
            return True
        if path.endswith(_CODE_SUFFIXES) or "/__pycache__/" in path:
            return True  # imports: code, not data
        return path.startswith(self._trusted + _SYSTEM_DATA)

    def _where(self) -> str:
        frame = sys._getframe(3)
        fallback = None
        while frame is not None:
            filename = os.path.realpath(frame.f_code.co_filename)
            if filename == self.code_file:
                return _frame_name(frame)
            if fallback is None and not filename.startswith(self._trusted + (_PACKAGE,)):
                fallback = _frame_name(frame)
            frame = frame.f_back
        return fallback or "code of an installed library"


_PACKAGE = os.path.dirname(os.path.realpath(__file__)) + os.sep
UNLOCATED = "native code called from the set (line not known)"


def _frame_name(frame) -> str:
    return f"{os.path.realpath(frame.f_code.co_filename)}:{frame.f_lineno} ({frame.f_code.co_name})"


def _hook(event: str, args: tuple) -> None:
    global _in_hook
    recorder = _active
    if recorder is None or event not in _EVENTS or _in_hook:
        return
    _in_hook = True  # what the recorder itself opens is not recorded
    try:
        recorder._saw(event, args)
    finally:
        _in_hook = False


def _install_hook() -> None:
    """Once per process: an audit hook cannot be removed, so it is cheap while inactive."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_hook)
        _hook_installed = True


def _address(address) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return os.fsdecode(address) if isinstance(address, bytes) else str(address)


def _folder(path: str) -> str:
    return path.rstrip(os.sep) + os.sep


def _python_installation() -> tuple[str, ...]:
    """Folders of the interpreter and the installed packages (imports, their data)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    paths |= {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib")}
    return tuple(sorted(_folder(os.path.realpath(p)) for p in paths if p))


class _Inotify:
    """Linux inotify watches (open and read events) on a few paths, read without blocking."""

    def __init__(self, libc, descriptor: int):
        self._libc, self._fd, self._paths = libc, descriptor, {}

    @classmethod
    def watching(cls, paths, depth: int) -> _Inotify | None:
        if not sys.platform.startswith("linux") or not paths:
            return None
        libc = ctypes.CDLL(None, use_errno=True)
        descriptor = libc.inotify_init1(_IN_NONBLOCK)
        if descriptor < 0:
            return None
        watches = cls(libc, descriptor)
        for path in paths:
            for folder in _folders(os.path.realpath(path), depth):
                watches._add(folder)
        return watches

    def _add(self, path: str) -> None:
        number = self._libc.inotify_add_watch(self._fd, os.fsencode(path), _IN_OPEN | _IN_ACCESS)
        if number < 0:
            raise OSError(ctypes.get_errno(), f"cannot watch {path} for reads", path)
        self._paths[number] = path

    def drain(self) -> list[tuple[str, str]]:
        """(kind, path) of every open or read since the last drain, each path once."""
        seen: dict[str, str] = {}
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return [(kind, path) for path, kind in seen.items()]
            offset = 0
            while offset < len(data):
                number, mask, _, length = _EVENT_HEADER.unpack_from(data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0")
                offset += 16 + length
                folder = self._paths.get(number)
                if folder is not None:
                    path = os.path.join(folder, os.fsdecode(name)) if name else folder
                    seen[path] = "folder" if mask & _IN_ISDIR else "file"

    def close(self) -> None:
        os.close(self._fd)


def _folders(path: str, depth: int) -> Iterator[str]:
    """`path` (a file or folder) and its sub-folders down to `depth` levels."""
    if not os.path.exists(path):
        return
    yield path
    if depth <= 0 or not os.path.isdir(path):
        return
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from _folders(entry.path, depth - 1)
