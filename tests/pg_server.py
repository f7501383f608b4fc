"""Throwaway real PostgreSQL server for slow tests (no mocks).

Usage from a test module (``tests/`` is on ``sys.path`` under pytest's default
import mode, since it has no ``__init__.py``)::

    import pytest
    from pg_server import postgres_available, postgres_server

    @pytest.fixture
    def pg_url():
        if postgres_available() is None:
            pytest.skip("PostgreSQL server binaries not installed")
        with postgres_server() as url:
            yield url   # postgresql+psycopg2://postgres@127.0.0.1:PORT/optuna

The server is a fresh cluster made by ``initdb`` in a new directory under
``/tmp``; it listens on 127.0.0.1 only, on a free port, with trust
authentication, ``fsync=off`` and its unix socket inside the temporary
directory.  On exit (also when the body raises) it is stopped with
``pg_ctl stop -m immediate`` (falling back to SIGKILL of the postmaster) and the
directory is deleted.

``initdb``/``pg_ctl``/``postgres`` refuse to run as root; when this process is
root they are run as the ``postgres`` system user (``subprocess`` ``user=`` /
``group=``), and the temporary directory is chowned to that user.

No doctests here on purpose: the project runs pytest with ``--doctest-modules``
and this module is imported during collection, so importing it must stay
cheap and side-effect free (psycopg2 is not imported at module level).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import quote

__all__ = [
    "PostgresURL",
    "PostgresUnavailable",
    "PostgresStartError",
    "postgres_available",
    "postgres_server",
]

#: Programs that must exist in the bin directory.
_REQUIRED = ("initdb", "pg_ctl", "postgres", "createdb")
#: System user that runs the server when this process is root.
_SYSTEM_USER = "postgres"
#: Database superuser created by initdb (used in the URL).
_SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or the ``postgres`` user) are missing."""


class PostgresStartError(RuntimeError):
    """The throwaway server failed to initialise or to start."""


class PostgresURL(str):
    """The SQLAlchemy URL (a plain ``str``) plus details of the running server.

    Attributes: ``port``, ``dbname``, ``user``, ``tmp_dir`` (deleted on exit),
    ``data_dir``, ``socket_dir``, ``log_path``, ``bin_dir`` and ``pid`` (the
    postmaster's process id).
    """

    port: int
    dbname: str
    user: str
    tmp_dir: str
    data_dir: str
    socket_dir: str
    log_path: str
    bin_dir: str
    pid: int | None


def _has_binaries(bin_dir: str) -> bool:
    return all(os.access(os.path.join(bin_dir, p), os.X_OK) for p in _REQUIRED)


def postgres_available() -> str | None:
    """Return the directory holding initdb/pg_ctl/postgres, or None.

    Looks, in order, at ``$PG_BIN``, ``/usr/lib/postgresql/15/bin``, other
    ``/usr/lib/postgresql/*/bin`` (newest first) and ``pg_ctl`` on ``PATH``.
    When this process is root the ``postgres`` system user must also exist
    (it runs the server); otherwise None is returned.
    """
    candidates: list[str] = []
    env = os.environ.get("PG_BIN")
    if env:
        candidates.append(env)
    candidates.append("/usr/lib/postgresql/15/bin")

    def _version(path: str) -> float:
        try:
            return float(path.split("/")[-2])
        except ValueError:
            return -1.0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    for cand in candidates:
        if cand and _has_binaries(cand):
            if os.geteuid() == 0 and _system_user() is None:
                return None
            return cand
    return None


def _system_user():
    """pwd entry of the ``postgres`` system user, or None."""
    import pwd

    try:
        return pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: str, n: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no server log)"


def _pid_from_pidfile(data_dir: str) -> int | None:
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class _Runner:
    """Runs the PostgreSQL programs, as the ``postgres`` user when root."""

    def __init__(self, bin_dir: str, tmp_dir: str):
        self.bin_dir = bin_dir
        self.tmp_dir = tmp_dir
        self.kwargs: dict = {}
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "LC_ALL": "C",
            "LANG": "C",
            "HOME": tmp_dir,
            "TZ": "UTC",
        }
        if os.geteuid() == 0:
            pw = _system_user()
            if pw is None:
                raise PostgresUnavailable(
                    f"running as root but there is no {_SYSTEM_USER!r} system user to run PostgreSQL"
                )
            os.chown(tmp_dir, pw.pw_uid, pw.pw_gid)
            self.kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            env["USER"] = env["LOGNAME"] = _SYSTEM_USER
        self.env = env

    def run(self, prog: str, *args: str, timeout: float = 60.0, check: bool = True):
        cmd = [os.path.join(self.bin_dir, prog), *args]
        proc = subprocess.run(
            cmd,
            cwd=self.tmp_dir,  # the caller's cwd may not be traversable by postgres
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            **self.kwargs,
        )
        if check and proc.returncode != 0:
            raise PostgresStartError(
                f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout}"
            )
        return proc


def _wait_ready(
    url: PostgresURL, runner: _Runner, deadline: float, password: str | None = None
) -> None:
    """Poll until the server accepts TCP connections to the ``postgres`` DB."""
    last = ""
    while True:
        try:
            import psycopg2  # noqa: PLC0415

            try:
                psycopg2.connect(
                    host="127.0.0.1", port=url.port, user=url.user, dbname="postgres",
                    password=password, connect_timeout=2,
                ).close()
                return
            except psycopg2.OperationalError as exc:
                last = str(exc).strip()
        except ImportError:
            proc = runner.run(
                "pg_isready", "-h", "127.0.0.1", "-p", str(url.port), "-U", url.user,
                "-d", "postgres", "-t", "2", check=False,
            )
            if proc.returncode == 0:
                return
            last = proc.stdout.strip()
        if url.pid is not None and not _pid_alive(url.pid):
            raise PostgresStartError(
                f"PostgreSQL exited during startup.\n--- server log ---\n{_tail(url.log_path)}"
            )
        if time.monotonic() > deadline:
            raise PostgresStartError(
                f"PostgreSQL did not accept connections on 127.0.0.1:{url.port} in time "
                f"(last error: {last}).\n--- server log ---\n{_tail(url.log_path)}"
            )
        time.sleep(0.1)


def _stop(url: PostgresURL, runner: _Runner | None) -> None:
    pid = url.pid if url.pid is not None else _pid_from_pidfile(url.data_dir)
    if runner is not None and os.path.exists(os.path.join(url.data_dir, "postmaster.pid")):
        with contextlib.suppress(Exception):
            runner.run("pg_ctl", "stop", "-D", url.data_dir, "-m", "immediate", "-w", "-t", "20",
                       check=False, timeout=30)
    if pid is not None and _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 5
        while _pid_alive(pid) and time.monotonic() < end:
            time.sleep(0.05)


@contextlib.contextmanager
def postgres_server(
    dbname: str = "optuna",
    *,
    timeout: float = 30.0,
    password: str | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[PostgresURL]:
    """Start a throwaway PostgreSQL cluster; yield its SQLAlchemy URL.

    Yields a :class:`PostgresURL` (a ``str``) such as
    ``postgresql+psycopg2://postgres@127.0.0.1:54321/optuna`` that
    ``optuna.storages.RDBStorage`` accepts directly.  ``dbname`` is created
    empty.  With ``password`` the superuser gets that password, TCP logins use
    ``scram-sha-256`` and the URL carries it; otherwise authentication is
    ``trust``.  ``settings`` adds/overrides ``postgresql.conf`` entries.
    ``timeout`` bounds the wait for the server to accept connections.

    Raises :class:`PostgresUnavailable` when the binaries are missing (check
    :func:`postgres_available` first to skip instead) and
    :class:`PostgresStartError`, with the server log tail, when startup fails.
    The server is stopped and its directory deleted on exit, also on errors.
    """
    bin_dir = postgres_available()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found (looked at $PG_BIN, /usr/lib/postgresql/*/bin "
            "and PATH; when root the 'postgres' user is needed too). "
            "On Debian: apt-get install -y postgresql"
        )

    tmp_dir = tempfile.mkdtemp(prefix="pgtest-", dir="/tmp")  # mode 0700
    url: PostgresURL | None = None
    runner: _Runner | None = None
    try:
        runner = _Runner(bin_dir, tmp_dir)
        data_dir = os.path.join(tmp_dir, "data")
        log_path = os.path.join(tmp_dir, "server.log")

        initdb_args = ["-D", data_dir, "-U", _SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"]
        pwfile = None
        if password is None:
            initdb_args.append("--auth=trust")
        else:
            pwfile = os.path.join(tmp_dir, "pwfile")
            with open(pwfile, "w") as f:
                f.write(password + "\n")
            if runner.kwargs:
                os.chown(pwfile, runner.kwargs["user"], runner.kwargs["group"])
            initdb_args += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        runner.run("initdb", *initdb_args, timeout=120)
        if pwfile:
            os.unlink(pwfile)

        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{tmp_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "logging_collector": "off",
        }
        conf.update(settings or {})

        last_err: Exception | None = None
        for _attempt in range(3):  # a few tries in case the free port gets taken
            port = _free_port()
            conf["port"] = str(port)
            # Appending is fine: later entries win in postgresql.conf.
            with open(os.path.join(data_dir, "postgresql.conf"), "a") as f:
                f.write("\n# pg_server.py\n")
                f.writelines(f"{k} = {v}\n" for k, v in conf.items())

            auth = _SUPERUSER if password is None else f"{_SUPERUSER}:{quote(password, safe='')}"
            url = PostgresURL(f"postgresql+psycopg2://{auth}@127.0.0.1:{port}/{dbname}")
            url.port, url.dbname, url.user = port, dbname, _SUPERUSER
            url.tmp_dir, url.data_dir, url.socket_dir = tmp_dir, data_dir, tmp_dir
            url.log_path, url.bin_dir, url.pid = log_path, bin_dir, None

            # -w: pg_ctl waits until the postmaster reports "ready".
            proc = runner.run(
                "pg_ctl", "start", "-D", data_dir, "-l", log_path, "-w", "-t", str(int(timeout)),
                check=False, timeout=timeout + 15,
            )
            url.pid = _pid_from_pidfile(data_dir)
            if proc.returncode == 0:
                last_err = None
                break
            log = _tail(log_path)
            last_err = PostgresStartError(
                f"pg_ctl start failed ({proc.returncode}): {proc.stdout.strip()}\n"
                f"--- server log ---\n{log}"
            )
            _stop(url, runner)
            if "already in use" not in log:
                break
        if last_err is not None:
            raise last_err
        assert url is not None

        _wait_ready(url, runner, time.monotonic() + timeout, password)
        if password is not None:
            runner.env["PGPASSWORD"] = password
        runner.run("createdb", "-h", "127.0.0.1", "-p", str(url.port), "-U", _SUPERUSER, dbname)

        yield url
    finally:
        try:
            if url is not None:
                _stop(url, runner)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
