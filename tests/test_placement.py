"""The resource request of a stream actor, on a real local Ray that declares one GPU (CI has
none: Ray only accounts for it) and four stream slots. The detectors then take the CPU path."""
from __future__ import annotations

import time

import pytest
import ray

from supervisor.supervisor import NAMESPACE, STREAM_SLOT, Supervisor, SupervisorConfig


@pytest.fixture
def local_ray():
    ray.init(address="local", num_cpus=2, num_gpus=1, resources={STREAM_SLOT: 4}, namespace=NAMESPACE,
             include_dashboard=False)
    yield
    ray.shutdown()


def _wait_available(name: str, value: float, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (now := ray.available_resources().get(name, 0.0)) != pytest.approx(value) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert now == pytest.approx(value), (name, now, ray.available_resources())


def test_stream_actor_takes_a_slot_cpu_and_its_gpu_fraction(local_ray, tmp_path):
    supervisor = Supervisor(SupervisorConfig(dsn="", data_dir=str(tmp_path), actor_gpus=0.25))
    handle = supervisor._create({"id": "gpu1", "source": "rtmp", "settings": {}})
    health = ray.get(handle.health.remote(), timeout=60)  # scheduled and constructed
    assert health["status"] == "waiting"
    _wait_available("GPU", 0.75)
    _wait_available(STREAM_SLOT, 3)
    _wait_available("CPU", 1.75)
    # Ray gave the actor its GPU share; with no CUDA device the speech model still picks the CPU.
    from detectors.speech import resolve_device

    assert resolve_device("auto") == "cpu"
    ray.kill(handle)


def test_no_slot_left_means_the_actor_waits_rather_than_overcommitting(local_ray, tmp_path):
    supervisor = Supervisor(SupervisorConfig(dsn="", data_dir=str(tmp_path)))
    handles = [supervisor._create({"id": f"s{i}", "source": "rtmp", "settings": {}}) for i in range(5)]
    ready, waiting = ray.wait([h.health.remote() for h in handles], num_returns=5, timeout=30)
    assert len(ready) == 4 and len(waiting) == 1  # four slots, four actors; the fifth is pending
    for h in handles:
        ray.kill(h)
