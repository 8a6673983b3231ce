"""The deployment files of deploy/ (issue 13), run or checked with the tools that exist for them.

deploy/nginx/harken.conf runs in a real nginx (Debian's, ``scripts/install_nginx.sh``) in front
of two harken servers on loopback, with only its addresses and ports changed: sessions pass
through it, a full or draining replica's 503 sends the handshake to the other one, the
session-id hash keeps a client on one replica, and a reload interrupts nobody. The compose file,
the Kubernetes manifests and the systemd unit are parsed, their harken settings are loaded with
harken's own config loader, and their stop timeouts are checked against the drain they must
outlast (``systemd-analyze verify`` checks the unit where it is installed).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection

from conftest import (
    EA,
    GA,
    ServerThread,
    recv_until,
    start_session,
    still_answers,
)
from harken.config import ServerConfig, load_config
from harken.server.app import CLOSE_TIMEOUT
from speech import missing

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SITE = DEPLOY / "nginx" / "harken.conf"
NGINX = Path("/usr/sbin/nginx")
SERVER_LINE = re.compile(r"^(\s*)server 127\.0\.0\.1:\d+([^;\n]*);\n", re.MULTILINE)
LEAST_CONN = "    least_conn;\n"
HASHED = "    # hash $http_x_deepgram_session_id consistent;\n"
SLOW_WORDS = " ".join(["word"] * 40)  # [slow]: ~0.5 s a word, so a reply of ~20 s
SESSION_HEADER = "x-deepgram-session-id"


# ------------------------------------------------------------------------------- nginx


def site_conf(ports: Sequence[int], listen: int, *, hashed: bool = False) -> str:
    """deploy/nginx/harken.conf with its upstream on ``ports`` and listening on ``listen``;
    ``hashed`` switches least_conn for the session-id hash, as its comment says to."""
    text = SITE.read_text()
    assert len(SERVER_LINE.findall(text)) == 2 and text.count("listen 80;") == 1
    line = SERVER_LINE.search(text)
    assert line is not None  # the first server line's indent and parameters, for every port
    servers = "".join(f"{line.group(1)}server 127.0.0.1:{p}{line.group(2)};\n" for p in ports)
    text = SERVER_LINE.sub("", text, count=1)
    text = SERVER_LINE.sub(servers, text, count=1)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    if hashed:
        assert text.count(LEAST_CONN) == 1 and text.count(HASHED) == 1
        text = text.replace(LEAST_CONN, "    # least_conn;\n")
        text = text.replace(HASHED, HASHED.replace("# ", ""))
    return text


def main_conf(root: Path, site: Path) -> str:
    """A top-level nginx.conf that keeps everything under ``root`` and includes ``site``."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers can reach root's tmp_path
    temp = "".join(
        f"    {kind}_temp_path {root / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\npid {root / 'nginx.pid'};\n"
        f"error_log {root / 'error.log'} notice;\ndaemon off;\n"
        "worker_shutdown_timeout 60s;\nevents { worker_connections 512; }\nhttp {\n"
        f"{temp}"
        "    log_format upstreams '$request_method $uri $status "
        '"$upstream_addr" "$upstream_status"\';\n'
        f"    access_log {root / 'access.log'} upstreams;\n"
        f"    include {site};\n}}\n"
    )


def write_confs(root: Path, site_text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    site = root / "harken.conf"
    site.write_text(site_text)
    conf = root / "nginx.conf"
    conf.write_text(main_conf(root, site))
    return conf


def nginx_command(root: Path, conf: Path, *extra: str) -> list[str]:
    if not NGINX.exists():
        missing(f"{NGINX} is missing: run scripts/install_nginx.sh")
    return [str(NGINX), "-p", f"{root}/", "-c", str(conf), "-e", str(root / "error.log"), *extra]


def nginx_t(root: Path, site_text: str) -> subprocess.CompletedProcess[str]:
    conf = write_confs(root, site_text)
    return subprocess.run(
        nginx_command(root, conf, "-t"), capture_output=True, text=True, timeout=20, check=False
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Nginx:
    """nginx in the foreground as a child process (its own process group), on a free port."""

    def __init__(self, root: Path, ports: Sequence[int], *, hashed: bool = False) -> None:
        self.root, self.ports = root, list(ports)
        self.port = free_port()
        conf = write_confs(root, site_conf(ports, self.port, hashed=hashed))
        self.process = subprocess.Popen(
            nginx_command(root, conf),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_listening(self, timeout: float = 10.0) -> bool:
        """True once the port answers; False if nginx exited (e.g. the port was taken)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return True
            time.sleep(0.02)
        raise TimeoutError(f"nginx did not listen in {timeout} s:\n{self.log('error.log')}")

    def url(self, path: str = GA) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text() if path.exists() else ""

    def reload(self, *, hashed: bool) -> None:
        """A changed harken.conf and SIGHUP, as ``nginx -s reload`` does; returns once the new
        workers run."""
        before = self.log("error.log").count("start worker process")
        (self.root / "harken.conf").write_text(site_conf(self.ports, self.port, hashed=hashed))
        os.kill(self.process.pid, signal.SIGHUP)
        wait_until(
            lambda: self.log("error.log").count("start worker process") > before,
            10,
            "nginx to start new workers after the reload",
        )

    def stop(self) -> None:
        """SIGTERM to the master, then SIGKILL to its whole group (workers included)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


@pytest.fixture
def balance(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """Start nginx with deploy/nginx/harken.conf in front of the given servers; all stopped
    after the test (before the servers, which are set up first)."""
    started: list[Nginx] = []

    def start(servers: Sequence[ServerThread], *, hashed: bool = False) -> Nginx:
        ports = [s.port for s in servers]
        for _ in range(3):  # another process may take the free port in between
            nginx = Nginx(tmp_path / f"nginx{len(started)}", ports, hashed=hashed)
            started.append(nginx)
            if nginx.wait_listening():
                return nginx
            nginx.stop()
            if "Address already in use" not in nginx.log("error.log"):
                break
        raise AssertionError(f"nginx did not start:\n{nginx.log('error.log')}")

    try:
        yield start
    finally:
        for nginx in started:
            nginx.stop()


# ------------------------------------------------------------------------------- helpers


def counts(servers: Sequence[ServerThread]) -> list[int]:
    return [s.session_count() for s in servers]


def gainer(servers: Sequence[ServerThread], before: list[int]) -> int:
    """The index of the one server that holds one session more than ``before``."""
    gained = [now - then for now, then in zip(counts(servers), before, strict=True)]
    assert sorted(gained) == [0] * (len(servers) - 1) + [1], gained
    return gained.index(1)


def landed(servers: Sequence[ServerThread], open_session: Callable[[], ClientConnection]) -> int:
    """Open a session; the index of the server it landed on (sessions stay open meanwhile)."""
    before = counts(servers)
    open_session()
    return gainer(servers, before)


def visit(nginx: Nginx, servers: Sequence[ServerThread], headers: dict[str, str]) -> int:
    """The replica a session with ``headers`` lands on; the session is closed again (1000, so
    that a reconnect is a new session, not a resumed one)."""
    before = counts(servers)
    with start_session(nginx, GA, additional_headers=headers):  # type: ignore[arg-type]
        home = gainer(servers, before)
    wait_until(lambda: counts(servers) == before, 5, "the session to end")
    return home


def through(
    nginx: Nginx, sessions: contextlib.ExitStack, headers: dict[str, str] | None = None
) -> ClientConnection:
    """A session through nginx, closed when ``sessions`` closes."""
    ws = start_session(nginx, GA, additional_headers=headers)  # type: ignore[arg-type]
    sessions.callback(ws.close)
    return ws


def retried(nginx: Nginx, method: str, first: str) -> int:
    """Access-log lines of ``method`` that went to another replica after a 503."""
    return sum(
        1
        for line in nginx.log("access.log").splitlines()
        if line.startswith(f"{method} ") and f'"503, {first}"' in line
    )


def healthz(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(url, timeout=5)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def keep_draining(server: ServerThread, busy: ClientConnection) -> threading.Thread:
    """Start ``server``'s drain while ``busy`` is in a long reply, so that it stays draining."""
    busy.send(json.dumps({"type": "InjectUserMessage", "content": f"[slow] {SLOW_WORDS}"}))
    recv_until(busy, "ConversationText")  # the user's text: the reply is on its way
    thread = threading.Thread(target=lambda: server.call(server.server.drain(), 60), daemon=True)
    thread.start()
    wait_until(lambda: server.server.draining, 5, "the drain to start")
    return thread


# ------------------------------------------------------------------------------- nginx -t


def test_the_shipped_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    shipped = nginx_t(tmp_path / "shipped", SITE.read_text())  # as it is, listen 80 included
    assert shipped.returncode == 0, shipped.stderr
    assert "syntax is ok" in shipped.stderr and "test is successful" in shipped.stderr
    for hashed in (False, True):
        checked = nginx_t(tmp_path / f"h{hashed}", site_conf([9301, 9302], 9300, hashed=hashed))
        assert checked.returncode == 0, checked.stderr


# ------------------------------------------------------------------------------- balancing


def test_a_session_through_nginx_works_end_to_end(
    make_server: Callable[..., ServerThread], balance: Callable[..., Nginx]
) -> None:
    servers = [make_server(), make_server()]
    nginx = balance(servers)
    assert healthz(nginx.http("/healthz")) == (200, healthz(servers[0].http("/healthz"))[1])
    with contextlib.ExitStack() as sessions:
        ws = through(nginx, sessions)
        ws.send(json.dumps({"type": "InjectUserMessage", "content": "Hello through nginx"}))
        texts = [m for m in recv_until(ws, "AgentAudioDone") if m["type"] == "ConversationText"]
        assert texts[-1]["role"] == "assistant" and "Hello through nginx" in texts[-1]["content"]
        still_answers(ws)
        early = start_session(nginx, EA)  # type: ignore[arg-type]
        sessions.callback(early.close)
        assert sum(s.session_count() for s in servers) == 2


@pytest.mark.parametrize("hashed", [False, True], ids=["least_conn", "session_id_hash"])
def test_a_full_replica_is_skipped_without_a_failure(
    make_server: Callable[..., ServerThread], balance: Callable[..., Nginx], hashed: bool
) -> None:
    full, spare = make_server(max_sessions=1), make_server()
    nginx = balance([full, spare], hashed=hashed)
    with contextlib.ExitStack() as sessions:
        direct = start_session(full)
        sessions.callback(direct.close)
        # least_conn counts only nginx's own sessions, so it keeps trying `full` first; the hash
        # sends about half of the ids there first (none of 12: p = 2**-12)
        for n in range(12):
            header = {SESSION_HEADER: f"full-{n}"}
            assert landed([full, spare], partial(through, nginx, sessions, header)) == 1
        assert full.session_count() == 1 and spare.session_count() == 12
        assert healthz(nginx.http("/healthz"))[0] == 200  # some replica has room
        still_answers(direct)
    wait_until(lambda: retried(nginx, "GET", "101") >= 1, 5, "the access log")


def test_twilios_webhook_is_retried_on_another_replica(
    make_server: Callable[..., ServerThread], balance: Callable[..., Nginx]
) -> None:
    full, spare = make_server(max_sessions=1), make_server()
    nginx = balance([full, spare])
    call = urlencode({"CallSid": "CA0123", "From": "+15551230000", "To": "+15559870000"})
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with start_session(full):
        for _ in range(3):  # a POST: nginx sends it on only with non_idempotent
            answer = httpx.post(nginx.http("/twilio/voice"), content=call, headers=form, timeout=10)
            assert answer.status_code == 200, answer.text
            assert f"ws://127.0.0.1:{nginx.port}/twilio" in answer.text  # Host kept its port
    wait_until(lambda: retried(nginx, "POST", "200") >= 1, 5, "the access log")


def test_a_replica_that_refused_a_session_takes_the_next_one_at_once(
    make_server: Callable[..., ServerThread], balance: Callable[..., Nginx]
) -> None:
    """max_fails=0: a 503 must not mark a replica down (nginx's default, max_fails=1, keeps
    it out for fail_timeout, and with the other one full the client would get 502)."""
    servers = [make_server(max_sessions=1), make_server(max_sessions=1)]
    nginx = balance(servers)
    with contextlib.ExitStack() as sessions:
        direct = start_session(servers[0])
        assert landed(servers, lambda: through(nginx, sessions)) == 1  # 0 refused it
        direct.close()
        wait_until(lambda: servers[0].session_count() == 0, 5, "the session to end")
        assert landed(servers, lambda: through(nginx, sessions)) == 0  # and has room again


def test_when_every_replica_is_full_the_client_gets_the_503(
    make_server: Callable[..., ServerThread], balance: Callable[..., Nginx]
) -> None:
    servers = [make_server(max_sessions=1), make_server(max_sessions=1)]
    nginx = balance(servers)
    with contextlib.ExitStack() as sessions:
        for server in servers:
            sessions.callback(start_session(server).close)
        with pytest.raises(InvalidStatus) as refused:
            start_session(nginx)  # type: ignore[arg-type]
        response = refused.value.response
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert json.loads(response.body)["err_code"] == "TOO_MANY_SESSIONS"
        status, body = healthz(nginx.http("/healthz"))
        assert status == 503 and body["status"] == "full"
    wait_until(lambda: "503, 503" in nginx.log("access.log"), 5, "the access log")


def test_a_draining_replica_is_skipped_and_its_sessions_go_on(
    make_server: Callable[..., ServerThread], balance: Callable[..., Nginx]
) -> None:
    draining, spare = make_server(drain_timeout=30), make_server()
    nginx = balance([draining, spare])
    with contextlib.ExitStack() as sessions:
        busy = start_session(draining)
        sessions.callback(busy.close)
        drain = keep_draining(draining, busy)
        for _ in range(6):
            assert landed([draining, spare], lambda: through(nginx, sessions)) == 1
        assert healthz(draining.http("/healthz"))[1]["status"] == "draining"
        assert draining.session_count() == 1 and busy.close_code is None  # still talking
    drain.join(10)  # the busy session closed: nothing left to drain
    assert not drain.is_alive()
    wait_until(lambda: retried(nginx, "GET", "101") >= 1, 5, "the access log")


def test_the_session_id_hash_keeps_a_client_on_one_replica(
    make_server: Callable[..., ServerThread], balance: Callable[..., Nginx]
) -> None:
    servers = [make_server(), make_server()]
    nginx = balance(servers, hashed=True)
    homes: set[int] = set()
    for n in range(16):  # all 16 on one replica by chance: p = 2 * 2**-16
        header = {SESSION_HEADER: f"client-{n}-5f0c2a"}
        first, again = visit(nginx, servers, header), visit(nginx, servers, header)
        assert again == first, f"session id {n}: replica {first}, then {again}"
        homes.add(first)
    assert homes == {0, 1}
    with contextlib.ExitStack() as sessions:
        anonymous = {landed(servers, lambda: through(nginx, sessions)) for _ in range(16)}
        assert anonymous == {0, 1}  # no header: round-robin, not one replica for all


def test_a_reload_interrupts_no_session(
    make_server: Callable[..., ServerThread], balance: Callable[..., Nginx]
) -> None:
    servers = [make_server(), make_server()]
    nginx = balance(servers)
    with contextlib.ExitStack() as sessions:
        ws = through(nginx, sessions)
        ws.send(json.dumps({"type": "InjectUserMessage", "content": "[slow] one two three four"}))
        assert audio_until(ws, first=True) == 1  # the reply has started
        nginx.reload(hashed=True)  # a real change: the balancing method
        assert audio_until(ws) > 0  # audio kept flowing through the old worker after the reload
        still_answers(ws)
        assert ws.close_code is None
        fresh = through(nginx, sessions)  # and the new workers take new sessions
        still_answers(fresh)
    assert "reconfiguring" in nginx.log("error.log")


def audio_until(ws: ClientConnection, *, first: bool = False, timeout: float = 30.0) -> int:
    """Audio frames received up to the first one (``first``), else up to AgentAudioDone."""
    frames, deadline = 0, time.monotonic() + timeout
    while True:
        message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(message, bytes):
            frames += 1
            if first:
                return frames
        elif json.loads(message)["type"] == "AgentAudioDone":
            return frames


# ------------------------------------------------------------------------------- manifests


def stop_budget(config: ServerConfig) -> float:
    """The longest harken takes from SIGTERM to exit: the drain, then the sessions' close
    (shutdown_grace + close timeout) in shutdown, and the listener's close."""
    return config.drain_timeout + config.shutdown_grace + 2 * CLOSE_TIMEOUT


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        assert kind != ":?", f"compose needs {name}: {rest}"
        return rest or ""

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)


def harken_env(pairs: dict[str, str]) -> ServerConfig:
    """The settings the environment gives harken, loaded as harken loads them."""
    return load_config(None, pairs, {})


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)?", text.strip())
    assert match is not None, text
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_the_compose_file_outlasts_the_drain_and_points_nginx_at_both_replicas() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    replicas = sorted(n for n in services if n.startswith("harken-"))
    assert replicas == ["harken-1", "harken-2"] and "llama" in services
    for name in replicas:
        service = services[name]
        env = {
            k: interpolate(str(v), {"HARKEN_API_KEYS": "k1"})
            for k, v in service["environment"].items()
        }
        config = harken_env(env)
        assert service["stop_signal"] == "SIGTERM"
        assert seconds(service["stop_grace_period"]) >= stop_budget(config) + 5
        llama = services["llama"]["command"]
        llama_url = f"http://llama:{llama[llama.index('--port') + 1]}/v1/chat/completions"
        assert config.endpoints[0].url == llama_url
        assert ("open_ai/*", config.endpoints[0].name) in config.models.routes("think")
        port = service["command"][service["command"].index("--port") + 1]
        assert port == "8765"
    sed = services["nginx"]["command"][-1]
    edited = SITE.read_text()
    for old, new in re.findall(r"-e 's/([^/]+)/([^/]+)/'", sed):
        edited = re.sub(old, new, edited)
    upstream = re.findall(r"^\s*server (\S+) max_fails=0;", edited, re.MULTILINE)
    assert upstream == ["harken-1:8765", "harken-2:8765"]
    assert "./nginx/harken.conf:/harken.conf:ro" in services["nginx"]["volumes"]


def k8s_documents() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_the_kubernetes_manifests_drain_before_the_kill_and_probe_healthz() -> None:
    docs = k8s_documents()
    kustomize = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomize["resources"]) == ["harken.yaml", "llama-server.yaml"]
    pod = docs[("Deployment", "harken")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value", "secret") for e in container["env"]}
    config = harken_env(env)
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "httpGet" not in container["livenessProbe"]  # a full pod must not be restarted
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and 1 <= int(pre_stop[1]) <= 15
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= int(pre_stop[1]) + stop_budget(config) + 5
    assert grace >= config.drain_timeout + config.shutdown_grace + 10
    assert container["resources"]["requests"]["cpu"]
    port = container["command"][container["command"].index("--port") + 1]
    service = docs[("Service", "harken")]["spec"]
    assert service["ports"][0]["targetPort"] == "ws"
    assert container["ports"][0] == {"name": "ws", "containerPort": int(port)}
    llama = docs[("Deployment", "llama-server")]["spec"]["template"]["spec"]["containers"][0]
    llama_service = docs[("Service", "llama-server")]["spec"]
    assert int(llama["args"][llama["args"].index("--parallel") + 1]) >= 2
    url = f"http://llama-server:{llama_service['ports'][0]['port']}/v1/chat/completions"
    assert config.endpoints[0].url == url and config.endpoints[0].preset == "llama.cpp"


def unit_file() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (DEPLOY / "systemd" / "harken@.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def test_the_systemd_unit_outlasts_the_drain(tmp_path: Path) -> None:
    unit = unit_file()
    assert unit["KillSignal"] == "SIGTERM" and unit["Restart"] == "on-failure"
    assert "--port %i" in unit["ExecStart"] and unit["EnvironmentFile"].startswith("-")
    assert seconds(unit["TimeoutStopSec"]) >= stop_budget(ServerConfig()) + 5
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    local = tmp_path / "harken@.service"  # the same unit, its ExecStart on this checkout
    text = (DEPLOY / "systemd" / "harken@.service").read_text()
    local.write_text(text.replace("/opt/harken/.venv/bin/harken", str(ROOT / ".venv/bin/harken")))
    checked = subprocess.run(
        [analyze, "verify", str(local)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0 and "Unknown" not in checked.stderr, checked.stderr
