"""Two ``qrlogin serve --store redis://...`` processes sharing one real redis-server on loopback.

check-server in multi-instance mode passes them for every generation (a session created on one is read, written
and deleted on the other; concurrent writers over both have one winner per round); the rate limits are shared
across the two; a stopped Redis gives a typed 503 over HTTP and the processes recover when it is back, unrestarted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from qrlogin.adapters.conformance import check_server
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous.server import V3_UNSTABLE_PREFIX
from tests.peers import require_peer, run_qrlogin
from tests.rendezvous.redis_util import RedisServer, run_redis

pytestmark = pytest.mark.interop

V1, V2, V3 = ApiGeneration.V1, ApiGeneration.V2, ApiGeneration.V3


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def two_instances(redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    with run_qrlogin("--store", redis_server.url) as one, run_qrlogin("--store", redis_server.url) as two:
        yield one, two


def forget_buckets(server: RedisServer) -> None:
    with redis.Redis.from_url(server.url) as client:
        for key in client.scan_iter(match="qrlogin:rendezvous:b:*"):
            client.delete(key)


def check_cli(*args: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "qrlogin", "check-server", *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("generation", [V1, V2, V3])
def test_two_instances_pass_check_server_in_multi_instance_mode(
    two_instances: tuple[str, str], generation: ApiGeneration
) -> None:
    one, two = two_instances
    status, output = check_cli(one, "--generation", generation.value, "--other-instance", two, "--strict")
    assert status == 0, output
    findings = {f.check: f for f in check_server(two, generation, other_url=one)}
    instance_checks = [name for name in findings if name.startswith("instances:")]
    assert len(instance_checks) == 5
    assert all(findings[name].status == "pass" for name in instance_checks), findings


def test_multi_instance_mode_fails_two_separate_deployments() -> None:
    # Two in-memory servers are two deployments: the second does not know the first's sessions.
    with run_qrlogin() as one, run_qrlogin() as two:
        findings = {f.check: f for f in check_server(one, V3, other_url=two)}
    assert findings["instances: create here, read there"].status == "fail"
    status, output = check_cli(one, "--other-instance", two)
    assert status == 1 and "FAIL" in output


def test_rate_limits_are_shared_by_the_instances(redis_server: RedisServer) -> None:
    limits = ("--create-rate", "0.2", "--create-burst", "4", "--write-rate", "0.2", "--write-burst", "4")
    with (
        run_qrlogin("--store", redis_server.url, *limits) as one,
        run_qrlogin("--store", redis_server.url, *limits) as two,
    ):
        statuses = [httpx.post((one, two)[n % 2] + V3_UNSTABLE_PREFIX, json={"data": "x"}).status_code
                    for n in range(5)]  # fmt: skip
        assert statuses == [200, 200, 200, 200, 429]
        refused = httpx.post(two + V3_UNSTABLE_PREFIX, json={"data": "x"})
        assert refused.json()["errcode"] == "M_LIMIT_EXCEEDED" and refused.json()["retry_after_ms"] > 0
        assert int(refused.headers["retry-after"]) >= 1
        # The checker's rate-limit mode sees the write limit; creates are spent already and come back at once.
        findings = {f.check: f for f in check_server(one, V3, rate_limit_probe=20)}
        assert findings["create"].status == "fail"  # this client's creates are used up: the 429 is reported
    with run_qrlogin("--store", redis_server.url, "--create-rate", "1", "--create-burst", "20", "--write-rate", "1",
                     "--write-burst", "10") as fresh:  # fmt: skip
        forget_buckets(redis_server)
        status, output = check_cli(fresh, "--rate-limit", "40")
        assert status == 0, output
        forget_buckets(redis_server)
        findings = {f.check: f for f in check_server(fresh, V1, rate_limit_probe=40)}
        assert findings["rate limit: writes"].status == "pass", findings["rate limit: writes"]
        assert findings["rate limit: creates"].status == "pass", findings["rate limit: creates"]
        assert "M_LIMIT_EXCEEDED" in findings["rate limit: creates"].detail
    forget_buckets(redis_server)  # this client's allowance is spent: give the other tests a full one


def test_without_limits_the_checker_warns(two_instances: tuple[str, str]) -> None:
    with run_qrlogin("--create-rate", "0", "--write-rate", "0") as unlimited:
        findings = {f.check: f for f in check_server(unlimited, V3, rate_limit_probe=30)}
    assert findings["rate limit: writes"].status == "warn"
    assert findings["rate limit: creates"].status == "warn"


def test_a_stopped_redis_gives_503_and_both_instances_recover_without_restart(tmp_path: Path) -> None:
    with (
        run_redis(tmp_path) as redis,
        run_qrlogin("--store", redis.url) as one,
        run_qrlogin("--store", redis.url) as two,
    ):
        created = httpx.post(one + V3_UNSTABLE_PREFIX, json={"data": "before"}).json()
        redis.stop()
        for base in (one, two):
            for answer in (
                httpx.post(base + V3_UNSTABLE_PREFIX, json={"data": "during"}, timeout=10),
                httpx.get(f"{base}{V3_UNSTABLE_PREFIX}/{created['id']}", timeout=10),
            ):
                assert answer.status_code == 503
                assert answer.json()["errcode"] == "M_UNKNOWN" and answer.headers["retry-after"] == "1"
        redis.start()
        for base in (one, two):
            again = httpx.post(base + V3_UNSTABLE_PREFIX, json={"data": "after"}, timeout=10)
            assert again.status_code == 200, again.text
        status, output = check_cli(two, "--other-instance", one, "--strict")
        assert status == 0, output


def test_serve_starts_before_redis_answers_and_serves_once_it_does(tmp_path: Path) -> None:
    require_peer(None if shutil.which("redis-server") else "redis-server is not installed", "redis-server")
    redis = RedisServer(tmp_path)  # its port is chosen, nothing listens there yet
    try:
        with run_qrlogin("--store", redis.url) as base:
            down = httpx.post(base + V3_UNSTABLE_PREFIX, json={"data": "x"}, timeout=10)
            assert (down.status_code, down.json()["errcode"]) == (503, "M_UNKNOWN")
            assert httpx.get(base + V3_UNSTABLE_PREFIX).json() == {"create_available": True}  # needs no store
            redis.start()
            assert httpx.post(base + V3_UNSTABLE_PREFIX, json={"data": "x"}, timeout=10).status_code == 200
    finally:
        redis.stop()
