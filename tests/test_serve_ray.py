"""`lens serve --ray --replicas 2` as a user runs it, on a real local Ray cluster: the command joins the
cluster (as it would a multi-machine one, through RAY_ADDRESS), two replicas each load the tiny model,
the official openai client gets the same image a plain pipeline call makes, a `url` answered by one
replica is served by the others, and Ctrl-C takes the deployment down. Ray is in the dev install
(`lens[ray]`): imported unguarded, so a missing Ray fails this file instead of skipping it."""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import ray
import torch
from PIL import Image
from ray import serve

from lens.inference import load_pipeline
from lens.testing import tiny_random_pipeline
from tests.serve_support import client

RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",  # no auth token written to ~/.ray
    "OMP_NUM_THREADS": "1",
    # Serve's proxy must answer its ready / health checks in 5 / 10 s, which a 2-core machine running
    # other tests can miss; the cluster's processes read these at start
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60",
}


@pytest.fixture
def cluster():
    """A throwaway two-CPU cluster on this machine; its address, for the command to join."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in RAY_ENV.items():
            mp.setenv(name, value)
        context = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield context.address_info["gcs_address"]
        finally:
            ray.shutdown()


def _serve_actors() -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE" in a["name"]]


def _refused(url: str) -> bool:
    host, port = re.match(r"http://([\d.]+):(\d+)/", url).groups()
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


@pytest.mark.timeout(240)
def test_two_ray_serve_replicas_answer_the_openai_client(tmp_path, cluster):
    model = tmp_path / "tiny"
    tiny_random_pipeline(height=32, width=32).save_pretrained(model)
    log = tmp_path / "serve.log"
    args = ["--model", str(model), "--ray", "--replicas", "2", "--port", "0"]
    cmd = [sys.executable, "-m", "lens", "serve", *args]
    env = os.environ | RAY_ENV | {"RAY_ADDRESS": cluster}
    with open(log, "w") as err:
        # Ctrl-C must reach it even when the suite runs in a background job (`cmd &` starts with
        # SIGINT ignored, and an ignored signal stays ignored across exec)
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    try:
        lines = []
        while (line := proc.stdout.readline()) and "ready at" not in line:  # or EOF: the command failed
            lines.append(line)
        ready = re.search(r"ready at (http://127\.0\.0\.1:\d+/) \(2 replica", line)
        assert ready, f"{lines}\n{log.read_text()[-3000:]}"
        url = ready[1]
        replicas = serve.status().applications["lens"].deployments["lens"].replica_states
        assert replicas == {"RUNNING": 2}

        params = {"seed": 4, "num_inference_steps": 2, "guidance_scale": 2.0}
        result = client(url).images.generate(prompt="a green square", model=str(model), extra_body=params)
        served = np.asarray(Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))), np.int16)
        pipe = load_pipeline(str(model), device="cpu")
        direct = pipe(
            "a green square",
            num_inference_steps=2,
            guidance_scale=2.0,
            generator=torch.Generator().manual_seed(4),
        ).images[0]
        assert np.abs(served - np.asarray(direct, np.int16)).max() <= 1

        link = client(url).images.generate(prompt="a dot", response_format="url").data[0].url
        assert link.startswith(url)
        for _ in range(6):  # whichever replica the proxy picks, the shared store has the image
            with urllib.request.urlopen(link, timeout=30) as response:
                assert response.headers["content-type"] == "image/png"
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the app is deleted and Ray Serve shut down
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"lens serve did not stop within 60 s of Ctrl-C:\n{log.read_text()[-3000:]}")
    assert code == 130, log.read_text()[-3000:]
    assert _refused(url)  # the proxy no longer listens
    assert _serve_actors() == []  # controller, proxy and replicas are gone; the cluster itself stays
