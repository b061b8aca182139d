"""Slow and idle clients against a real API process (`nnforge api`, as `nnforge serve`, the Dockerfile and
docker-compose.yml start it), on raw sockets: stalled headers and bodies are cut off within their bounds,
the connection cap answers 503, and a flood of bad tokens from one address gets 429.

The bounds are small here (1 s) to keep the tests short; each wait allows SLACK_SECONDS on top."""

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx2
import pytest
from conftest import new_token
from support import ROOT, free_port, service_env, wait_for

from app.client.serve import api_command, stop_group
from app.core.settings import Settings

HEADER_SECONDS = 1.0
BODY_SECONDS = 1.0
MAX_CONNECTIONS = 8
SLACK_SECONDS = 1.5  # a loaded 2-core machine: the timer fires late, the socket is read late


@dataclass(frozen=True)
class Api:
    host: str
    port: int
    token: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.settimeout(HEADER_SECONDS + BODY_SECONDS + 10)  # a missing cut-off fails, never hangs
        return sock


@pytest.fixture(scope="module")
def api(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("slow-clients")
    settings = Settings(
        database_url=postgres_url,
        nnforge_home=folder / "home",
        host="127.0.0.1",
        port=free_port(),
        header_timeout_seconds=HEADER_SECONDS,
        body_timeout_seconds=BODY_SECONDS,
        max_connections=MAX_CONNECTIONS,
        unauthenticated_rate_limit_per_second=1.0,
        unauthenticated_rate_limit_burst=10,
        token_cache_seconds=30.0,  # the valid token below stays known to the process through the flood
    )
    log_path = folder / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            api_command(settings),
            cwd=ROOT,
            env=service_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Api(settings.host, settings.port, new_token(settings, "slow-clients"))

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited:\n{log_path.read_text()}")
        try:
            return httpx2.get(f"{served.url}/livez", timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    try:
        wait_for(ready, timeout=60, what="the API to listen")
        yield served
    finally:
        stop_group(process)


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds that took."""
    start, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - start


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response else 0


def _get(api: Api, sock: socket.socket, path: str = "/livez") -> int:
    """One kept-alive GET on `sock`; its status."""
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {api.host}\r\nAuthorization: Bearer {api.token}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        head += chunk
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(b":")[1]
    )
    body = head.split(b"\r\n\r\n", 1)[1]
    while len(body) < length:
        body += sock.recv(65536)
    return _status(head)


def test_a_client_stalling_in_its_headers_is_cut_off_while_others_are_served(api: Api) -> None:
    stalls = {
        "nothing sent": b"",
        "half a request line": b"GET /v1/jo",
        "half the headers": f"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.token}".encode(),
    }
    sockets = {name: api.connect() for name in stalls}
    for name, sent in stalls.items():
        sockets[name].sendall(sent)
    kept_alive = api.connect()
    assert _get(api, kept_alive) == 200
    kept_alive.sendall(b"GET /livez HTTP/1.1\r\nHost:")  # the next request on the connection stalls
    sockets["a kept-alive connection's next request"] = kept_alive
    with ThreadPoolExecutor(len(sockets)) as pool:
        results = dict(zip(sockets, pool.map(_read_until_closed, sockets.values()), strict=True))
        # Meanwhile the server answers others at once.
        with httpx2.Client(base_url=api.url, timeout=5) as client:
            for _ in range(5):
                assert client.get("/livez").status_code == 200
    for name, (response, seconds) in results.items():
        assert HEADER_SECONDS / 2 < seconds < HEADER_SECONDS + SLACK_SECONDS, (name, seconds)
        expected = 0 if name == "nothing sent" else 408  # nothing to answer: closed without a word
        assert _status(response) == expected, (name, response[:200])
        if expected == 408:
            assert b"connection: close" in response.lower() and b"application/problem+json" in response
    for sock in sockets.values():
        sock.close()


def _post_head(api: Api, length: int) -> bytes:
    return (
        f"POST /v1/jobs HTTP/1.1\r\nHost: {api.host}\r\nAuthorization: Bearer {api.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_a_body_that_stalls_or_trickles_gets_408_within_the_body_bound(api: Api) -> None:
    stalled = api.connect()
    stalled.sendall(_post_head(api, 1000) + b'{"dataset"')  # a few bytes of 1000, then nothing
    trickling = api.connect()
    trickling.sendall(_post_head(api, 1000))
    stop = threading.Event()

    def trickle() -> None:  # a byte every 0.1 s: never silent for long, far below 1 KiB/s
        while not stop.wait(0.1):
            try:
                trickling.sendall(b" ")
            except OSError:
                return

    dripper = threading.Thread(target=trickle)
    dripper.start()
    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(_read_until_closed, [stalled, trickling]))
    finally:
        stop.set()
        dripper.join()
    for response, seconds in results:
        assert _status(response) == 408, response[:200]
        assert BODY_SECONDS / 2 < seconds < BODY_SECONDS + SLACK_SECONDS, seconds
    assert httpx2.get(f"{api.url}/livez", timeout=5).status_code == 200
    stalled.close()
    trickling.close()


def test_a_slow_but_steady_body_is_read_to_the_end(api: Api) -> None:
    """1000 bytes over 1.5 s (about 670 B/s, within the bound's head start plus 1 KiB/s): longer than the
    body bound, never silent for long, so the application gets the whole body and answers it."""
    body = b'{"dataset": {"name": "digits"}, "model": {"arch": "nope"}}'.ljust(1000)
    sock = api.connect()
    sock.sendall(_post_head(api, len(body)))
    start = time.monotonic()
    for i in range(0, len(body), 100):
        sock.sendall(body[i : i + 100])
        time.sleep(0.15)
    assert time.monotonic() - start > BODY_SECONDS
    response = sock.recv(65536)
    assert _status(response) == 422, response[:300]  # the application read the whole spec: arch "nope"
    sock.close()


def test_connections_beyond_max_connections_get_503(api: Api) -> None:
    time.sleep(0.5)  # the earlier tests' sockets are closed: let the server see it
    held = [api.connect() for _ in range(MAX_CONNECTIONS - 1)]
    try:
        for sock in held:  # each connection is accepted and open (kept alive)
            assert _get(api, sock) == 200
        last = api.connect()  # the cap's last place
        held.append(last)
        assert _get(api, last) == 200
        beyond = api.connect()
        beyond.sendall(f"GET /livez HTTP/1.1\r\nHost: {api.host}\r\n\r\n".encode())
        response, _ = _read_until_closed(beyond)  # and the server closes it
        assert _status(response) == 503, response[:200]
        beyond.close()
        held.pop().close()
        time.sleep(0.3)
        assert httpx2.get(f"{api.url}/livez", timeout=5).status_code == 200  # a place is free again
    finally:
        for sock in held:
            sock.close()


def test_a_flood_of_bad_tokens_gets_429_while_a_valid_token_is_served(api: Api) -> None:
    """UNAUTHENTICATED_RATE_LIMIT_PER_SECOND 1, _BURST 10 here: of 50 bad tokens in a burst, at most the
    burst plus the refill are 401; the rest are 429 with Retry-After. The valid token's requests, from the
    same address in between, all succeed."""
    good = {"Authorization": f"Bearer {api.token}"}
    codes, retry_after = [], []
    start = time.monotonic()
    with httpx2.Client(base_url=api.url, timeout=5) as client:
        assert client.get("/v1/jobs", headers=good).status_code == 200
        for i in range(50):
            response = client.get("/v1/jobs", headers={"Authorization": f"Bearer nnf_bad{i}"})
            codes.append(response.status_code)
            if response.status_code == 429:
                retry_after.append(int(response.headers["retry-after"]))
            if i % 10 == 9:
                assert client.get("/v1/jobs", headers=good).status_code == 200
        missing = client.get("/v1/jobs")  # no token at all counts the same
    elapsed = time.monotonic() - start
    assert set(codes) <= {401, 429}
    assert codes[:10] == [401] * 10
    assert codes.count(401) <= 10 + int(elapsed) + 1, (codes, elapsed)
    assert codes.count(429) >= 50 - 10 - int(elapsed) - 1
    assert retry_after and all(seconds >= 1 for seconds in retry_after)
    assert missing.status_code == 429 and missing.headers["retry-after"]
