"""The server side of benchmarks/scaleout.py: real ``harken serve`` processes, Debian's nginx
with deploy/nginx/harken.conf (tests/test_deploy.py's ``Nginx``: only addresses and ports
changed), and what /proc says about them. Every wait is bounded; every child is killed in the
``finally`` of :func:`cluster`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_deploy import NGINX, Nginx  # noqa: E402

START_BUDGET = 30.0  # seconds for a replica to say "providers ready" and answer /healthz 200
BASE_ENV = {
    "HARKEN_IDLE_TIMEOUT": "120",
    "HARKEN_MAX_SESSIONS": "1000",
    "HARKEN_DRAIN_TIMEOUT": "5",
    "HARKEN_WRITE_TIMEOUT": "3",
    "HARKEN_LOG_LEVEL": "info",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def http_get(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """(status, JSON body or text); (0, error) when nothing answered."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return 0, repr(exc)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


# ------------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            parts = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (nginx's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def machine_busy(seconds: float = 1.0) -> float:
    """Cores busy (all processes) over ``seconds``, from /proc/stat."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    cores = os.cpu_count() or 1
    return cores * (busy1 - busy0) / max(total1 - total0, 1)


def machine_line() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nginx = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True, check=False)
    date = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"machine: nproc {os.cpu_count()}, {model}, {mem:.0f} GiB; {date}; "
        f"Python {platform.python_version()}; {nginx.stderr.strip()}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"busy before start {machine_busy():.2f} of {os.cpu_count()} cores"
    )


# ------------------------------------------------------------------------------- replicas


@dataclass
class Replica:
    """One ``harken serve --providers testing`` process on a fixed port; its stderr goes to a
    log file per start (``logs``), read for "providers ready" and session placement."""

    name: str
    port: int
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        log = self.root / f"{self.name}-{len(self.logs)}.log"
        self.logs.append(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HARKEN_")}
        env.update(BASE_ENV)
        env.update(self.env)
        argv = [sys.executable, "-m", "harken", "serve", "--port", str(self.port)]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*argv, "--providers", "testing"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=out,
                env=env,
                cwd=REPO,
                start_new_session=True,  # a Ctrl-C to the benchmark is not a drain signal
            )

    def log(self) -> str:
        return self.logs[-1].read_text(errors="replace") if self.logs else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def ready(self, budget: float = START_BUDGET) -> float:
        """Seconds until "providers ready" is logged and /healthz answers 200."""
        started = time.monotonic()
        while time.monotonic() - started < budget:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log()[-2000:]}")
            if "providers ready" in self.log():
                status, _ = await http_get(f"http://127.0.0.1:{self.port}/healthz", 1.0)
                if status == 200:
                    return time.monotonic() - started
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready in {budget:g} s:\n{self.log()[-2000:]}")

    def holds(self, request_id: str) -> bool:
        """Whether the current process opened the session with ``request_id``."""
        return bool(request_id) and f"session {request_id} opened" in self.log()

    async def exit(self, budget: float) -> float | None:
        """Seconds until the process exits (None: still running after ``budget``)."""
        started = time.monotonic()
        while time.monotonic() - started < budget:
            if not self.alive():
                return time.monotonic() - started
            await asyncio.sleep(0.02)
        return None

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

    def problems(self) -> list[str]:
        """Tracebacks and ERROR/CRITICAL lines over every start of this replica."""
        found = []
        for log in self.logs:
            with contextlib.suppress(OSError):
                for line in log.read_text(errors="replace").splitlines():
                    if "Traceback" in line or re.search(r" (ERROR|CRITICAL) ", line):
                        found.append(f"{log.name}: {line[:200]}")
        return found


@dataclass
class Cluster:
    replicas: list[Replica]
    nginx: Nginx | None = None

    @property
    def ports(self) -> list[int]:
        return [r.port for r in self.replicas]

    def placement(self, request_id: str) -> int | None:
        """The index of the replica holding ``request_id`` (from the replicas' logs)."""
        for index, replica in enumerate(self.replicas):
            if replica.holds(request_id):
                return index
        return None

    def nginx_pids(self) -> list[int]:
        if self.nginx is None:
            return []
        return [self.nginx.process.pid, *children(self.nginx.process.pid)]

    def problems(self) -> list[str]:
        return [p for r in self.replicas for p in r.problems()]


def start_nginx(root: Path, ports: Sequence[int]) -> Nginx:
    """nginx (deploy/nginx/harken.conf, least_conn) in front of ``ports``, on a free port."""
    if not NGINX.exists():
        raise RuntimeError(f"{NGINX} is missing: run scripts/install_nginx.sh")
    for attempt in range(3):  # another process may take the free port in between
        nginx = Nginx(root / f"nginx{attempt}", ports)
        if nginx.wait_listening():
            return nginx
        nginx.stop()
        if "Address already in use" not in nginx.log("error.log"):
            break
    raise RuntimeError(f"nginx did not start:\n{nginx.log('error.log')}")


@contextlib.asynccontextmanager
async def cluster(
    root: Path,
    count: int,
    env: dict[str, str] | None = None,
    *,
    first_env: dict[str, str] | None = None,
    balanced: bool = True,
) -> AsyncIterator[Cluster]:
    """``count`` replicas (``first_env`` added to the first one's settings), and nginx in front
    when ``balanced``; all killed on the way out."""
    root.mkdir(parents=True, exist_ok=True)
    replicas = [Replica(f"replica{i}", free_port(), root, dict(env or {})) for i in range(count)]
    if first_env:
        replicas[0].env.update(first_env)
    built = Cluster(replicas)
    try:
        for replica in replicas:
            replica.start()
        await asyncio.gather(*(r.ready() for r in replicas))
        if balanced:
            built.nginx = await asyncio.to_thread(start_nginx, root, built.ports)
        yield built
    finally:
        if built.nginx is not None:
            await asyncio.to_thread(built.nginx.stop)
        for replica in replicas:
            replica.kill()
