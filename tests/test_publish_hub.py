"""`publish --push_to_hub` against a local stand-in of the Hub's HTTP API on 127.0.0.1, and the one-sentence stops."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import process_env, save_checkpoint

from lightning_gen.facts import DataFacts
from lightning_gen.models import VAE

REPO_ID = "someone/tiny-vae"


class StandInHub(BaseHTTPRequestHandler):
    """The four routes create_repo and upload_folder call (see huggingface_hub's hf_api.py / _commit_api.py)."""

    received: dict[str, bytes]
    requests: list[tuple[str, str, bool]]  # method, path, sent a bearer token

    def log_message(self, *args):
        pass

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def _reply(self, payload: dict, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append(("POST", self.path, self.headers.get("Authorization") == "Bearer hf_standin"))
        base = f"/api/models/{REPO_ID}"
        if self.path == "/api/validate-yaml":  # upload_folder has the Hub check the README's metadata first
            self.server.validated = json.loads(body)  # type: ignore[attr-defined]
            return self._reply({})
        if self.path == "/api/repos/create":
            request = json.loads(body)
            self.server.created = request  # type: ignore[attr-defined]
            return self._reply({"url": f"{self.endpoint}/{REPO_ID}", "name": REPO_ID})
        if self.path == f"{base}/preupload/main":
            files = json.loads(body)["files"]
            return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if self.path == f"{base}/commit/main":
            for line in body.decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    self.received[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
            return self._reply({"commitUrl": f"{self.endpoint}/{REPO_ID}/commit/{'a' * 40}", "commitOid": "a" * 40})
        self._reply({"error": f"no route {self.path}"}, 404)

    def do_GET(self):
        self.requests.append(("GET", self.path, False))
        self._reply({"error": f"no route {self.path}"}, 404)


@pytest.fixture
def hub():
    handler = type("Handler", (StandInHub,), {"received": {}, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()


@pytest.fixture
def vae_checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    model = VAE(DataFacts(image_size=16, channels=3), channels=(8, 16), latent_dim=4).eval()
    return save_checkpoint(model, tmp_path / "vae.ckpt")


def publish_process(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightning_gen", "publish", *map(str, args)], env={**process_env(), **env},
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_push_to_hub_uploads_the_written_folder_in_one_commit(hub, vae_checkpoint, tmp_path):
    server, handler = hub
    out = tmp_path / "published"
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_TOKEN": "hf_standin", "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf_home")}  # fmt: skip
    done = publish_process(
        "--ckpt_path", vae_checkpoint, "--out", out, "--num", "4", "--push_to_hub", REPO_ID, "--private", "true", env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        server.created["name"] == "tiny-vae" and server.created["organization"] == "someone" and server.created["visibility"] == "private"
    )
    written = {path.relative_to(out).as_posix(): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert "library_name: lightning_gen" in server.validated["content"]  # the card's YAML went to the Hub's validator
    assert handler.received == written  # every file, byte for byte, and nothing else
    assert all(token for method, path, token in handler.requests if method == "POST"), handler.requests
    assert [path for _, path, _ in handler.requests][-1] == f"/api/models/{REPO_ID}/commit/main"


@pytest.mark.parametrize(
    "env, words",
    [
        ({"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_standin"}, "HF_HUB_OFFLINE is set"),
        ({"HF_HUB_OFFLINE": "0", "HF_TOKEN": ""}, "no Hugging Face token"),
        ({"HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_standin", "HF_ENDPOINT": "http://127.0.0.1:{closed}"}, "check the network"),
    ],
    ids=["offline", "no-token", "unreachable"],
)
def test_push_stops_in_one_sentence_after_writing_the_folder(env, words, vae_checkpoint, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    env = {key: value.format(closed=closed) for key, value in env.items()} | {"HF_HOME": str(tmp_path / "hf_home")}
    out = tmp_path / "published"
    done = publish_process("--ckpt_path", vae_checkpoint, "--out", out, "--num", "1", "--push_to_hub", REPO_ID, env=env)
    assert done.returncode == 2
    message = done.stderr.strip()
    assert words in message and len(message.splitlines()) == 1 and f"wrote {out}" in message, message
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
