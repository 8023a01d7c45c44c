"""The Kitten Mixer page: the `app` command serving /mix, /edit, /sample (called with gradio_client, the
ecosystem's API client) and the page itself in a real headless Chromium (Playwright on the system browser)."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, process_env, run_cli
from latent_checkpoints import train_tiny, write_photo
from PIL import Image

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.data.preprocess import load_user_image
from lightning_gen.latent.mixing import to_pil

gradio_client = pytest.importorskip("gradio_client", reason="gradio is not installed: pip install 'lightning-gen[app]'")

SIDE = 16
TILE = SIDE + 1
STEPS = 21  # mix strips with 21 steps hold every ratio the page's slider (step 0.05) can show
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, one_torch_thread) -> Path:
    return train_tiny(tmp_path_factory.mktemp("app"), "vae", epochs=2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("photos")
    return write_photo(root / "a.jpg", (50, 40), (230, 30, 30)), write_photo(root / "b.png", (64, 90), (30, 60, 240))


@pytest.fixture(scope="module")
def app_process(checkpoint):
    """``python -m lightning_gen app`` as a user starts it, on a free port of 127.0.0.1: (the process, its URL)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lightning_gen", "app", "--ckpt_path", str(checkpoint), "--port", str(port), "--references", "64"],
        cwd=REPO,
        env={**process_env(), "GRADIO_ANALYTICS_ENABLED": "False"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited: {process.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        process.kill()
        pytest.fail("the app did not answer within 240 s")
    yield process, url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(app_process) -> str:
    return app_process[1]


def mix_strip_tiles(checkpoint: Path, photos, tmp_path: Path) -> list[np.ndarray]:
    out = tmp_path / "strip.png"
    run_cli("mix", "--ckpt_path", checkpoint, *photos, "--steps", STEPS, "--out", out)
    strip = np.asarray(Image.open(out).convert("RGB")).astype(int)
    return [strip[1 : 1 + SIDE, 1 + i * TILE : 1 + i * TILE + SIDE] for i in range(STEPS + 2)]


def pixels(path_or_image) -> np.ndarray:
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(image.convert("RGB")).astype(int)


def test_binds_to_localhost_only(server):
    """The listening socket's address, read from the kernel's table: 127.0.0.1, not 0.0.0.0."""
    port = int(server.rsplit(":", 1)[1].strip("/"))
    table = Path("/proc/net/tcp")
    if not table.exists():
        pytest.skip("no /proc/net/tcp to read listening sockets from (not Linux)")
    listening = [line.split()[1] for line in table.read_text().splitlines()[1:] if line.split()[3] == "0A"]  # 0A = LISTEN
    addresses = {address for address in listening if int(address.split(":")[1], 16) == port}
    assert addresses == {f"0100007F:{port:04X}"}  # 127.0.0.1 in the kernel's little-endian hex


def test_mix_endpoint_equals_the_mix_command(server, checkpoint, photos, tmp_path):
    client = gradio_client.Client(server, verbose=False)
    tiles = mix_strip_tiles(checkpoint, photos, tmp_path)
    files = [gradio_client.handle_file(str(photo)) for photo in photos]
    for ratio, tile in ((0.0, 1), (0.25, 6), (1.0, STEPS)):
        blended, strip = client.predict(*files, ratio, STEPS, "slerp", None, None, api_name="/mix")
        assert np.abs(pixels(blended) - tiles[tile]).max() <= 1, ratio
    model = load_model(checkpoint)
    with torch.no_grad():
        reconstruction = model.reconstruct(load_user_image(photos[0], model.data_facts))
    assert np.abs(tiles[1] - pixels(to_pil(reconstruction[0]))).max() <= 1  # ratio 0 is A's reconstruction
    assert pixels(strip).shape == (TILE + 1, (STEPS + 2) * TILE + 1, 3)


def test_edit_and_sample_endpoints_equal_their_commands(server, checkpoint, photos, tmp_path):
    client = gradio_client.Client(server, verbose=False)
    slots = ["blue", 0.0, None, 0.0, None, 0.0, None, 0.0]
    unchanged = client.predict(gradio_client.handle_file(str(photos[0])), *slots, None, None, api_name="/edit")
    model = load_model(checkpoint)
    with torch.no_grad():
        reconstruction = model.reconstruct(load_user_image(photos[0], model.data_facts))
    assert np.abs(pixels(unchanged) - pixels(to_pil(reconstruction[0]))).max() <= 1  # strength 0 = reconstruction
    edited = client.predict(gradio_client.handle_file(str(photos[0])), "blue", 2.0, *slots[2:], None, None, api_name="/edit")
    out = tmp_path / "edit.png"
    run_cli(
        "edit", "--ckpt_path", checkpoint, "--image", photos[0], "--attribute", "blue", "--strengths", "2", "--references", 64, "--out", out
    )
    assert np.abs(pixels(edited) - pixels(out)[1 : 1 + SIDE, 1 + TILE : 1 + TILE + SIDE]).max() <= 1

    grid = client.predict(6, 3, None, "", None, api_name="/sample")
    out = tmp_path / "samples.png"
    run_cli("sample", "--ckpt_path", checkpoint, "--num", 6, "--seed", 3, "--out", out)
    assert np.array_equal(pixels(grid), pixels(out)) and math.ceil(math.sqrt(6)) == 3


def test_bad_uploads_are_messages_not_crashes(server, photos, tmp_path):
    client = gradio_client.Client(server, verbose=False)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(Exception, match=r"the upload notes\.txt could not be read as an image \(UnidentifiedImageError\)"):
        client.predict(
            gradio_client.handle_file(str(text)), gradio_client.handle_file(str(photos[1])), 0.5, 8, "slerp", None, None, api_name="/mix"
        )
    huge = tmp_path / "huge.png"
    Image.new("1", (12000, 9000)).save(huge)  # 108 megapixels in a few kilobytes
    with pytest.raises(
        Exception,
        match=(
            r"the upload huge\.png is 12000×9000 pixels, more than the limit of 50,000,000; "
            r"set the environment variable LIGHTNING_GEN_MAX_IMAGE_PIXELS=108000000 \(or more\) to decode it"
        ),
    ):
        client.predict(
            gradio_client.handle_file(str(huge)), gradio_client.handle_file(str(photos[1])), 0.5, 8, "slerp", None, None, api_name="/mix"
        )
    # The server is still up and answering.
    blended, _ = client.predict(*[gradio_client.handle_file(str(p)) for p in photos], 0.5, 8, "slerp", None, None, api_name="/mix")
    assert pixels(blended).shape == (SIDE, SIDE, 3)


def test_api_parameters_are_named_like_the_command_options_with_their_defaults(server, checkpoint, photos, tmp_path):
    client = gradio_client.Client(server, verbose=False)
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]

    def signature(endpoint):
        return [(p["parameter_name"], p["parameter_has_default"], p["parameter_default"]) for p in api[endpoint]["parameters"]]

    assert signature("/mix") == [
        ("image_a", False, None),
        ("image_b", False, None),
        ("ratio", True, 0.5),
        ("steps", True, 8),
        ("mode", True, "slerp"),
        ("condition", True, None),
        ("inversion_steps", True, None),
    ]
    assert signature("/sample") == [
        ("num", True, 16),
        ("seed", True, 0),
        ("condition", True, None),
        ("prompt", True, None),
        ("steps", True, None),
    ]
    slots = [
        (f"{kind}_{slot}", True, "red" if (kind, slot) == ("attribute", 1) else None if kind == "attribute" else 0.0)
        for slot in range(1, 5)
        for kind in ("attribute", "strength")
    ]
    assert signature("/edit") == [("image", False, None), *slots, ("image_condition", True, None), ("condition", True, None)]
    # A VAE takes no condition: the API says so instead of offering an empty Literal[].
    described = client.view_api(print_info=False, return_format="str")
    assert (
        "Literal[]" not in described
        and "condition: str | None (not required, defaults to:   None)  (this checkpoint takes none" in described
    )

    # Only the images: the rest are the commands' defaults (8 steps, slerp; the slider starts at the strip's middle).
    blended, strip = client.predict(
        image_a=gradio_client.handle_file(str(photos[0])), image_b=gradio_client.handle_file(str(photos[1])), api_name="/mix"
    )
    assert np.abs(pixels(blended) - mix_strip_tiles(checkpoint, photos, tmp_path)[1 + 10]).max() <= 1
    assert pixels(strip).shape == (TILE + 1, (8 + 2) * TILE + 1, 3)
    grid = client.predict(api_name="/sample")
    out = tmp_path / "samples.png"
    run_cli("sample", "--ckpt_path", checkpoint, "--out", out)
    assert np.array_equal(pixels(grid), pixels(out))


def rss(pid: int) -> int:
    return 1024 * int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS")))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read the page's memory")
def test_big_uploads_leave_no_memory_behind(app_process, photos, tmp_path):
    process, url = app_process
    client = gradio_client.Client(url, verbose=False)
    client.predict(*[gradio_client.handle_file(str(p)) for p in photos], 0.5, 8, "slerp", None, None, api_name="/mix")  # warm
    before = rss(process.pid)
    big = []
    for colour in ((200, 120, 40), (40, 120, 200)):
        big.append(tmp_path / f"{colour[0]}.png")
        Image.new("RGB", (6000, 8000), colour).save(big[-1], compress_level=1)  # 48 megapixels: 144 MB decoded
    for _ in range(2):
        blended, _ = client.predict(*[gradio_client.handle_file(str(p)) for p in big], 0.5, 8, "slerp", None, None, api_name="/mix")
        assert pixels(blended).shape == (SIDE, SIDE, 3)
    grown = rss(process.pid) - before
    assert grown < 80e6, f"the page kept {grown / 1e6:.0f} MB after two uploads of 144 MB images"


def test_an_upload_is_decoded_once_at_the_model_size(checkpoint, photos, tmp_path):
    from lightning_gen.app.service import MixerService

    service = MixerService(str(checkpoint), references=64)
    big = write_photo(tmp_path / "big.jpg", (3000, 2000), (230, 30, 30))
    small = service.prepare_upload(str(big), "big.jpg")
    assert service.prepare_upload(str(big), "big.jpg") == small  # remembered
    assert Image.open(small).size == (SIDE, SIDE)
    facts = service.model.data_facts
    assert torch.equal(load_user_image(small, facts), load_user_image(big, facts))


def test_listening_beyond_this_machine_prints_one_warning_line(checkpoint, monkeypatch, capsys):
    from lightning_gen.app import page
    from lightning_gen.commands.app import exposure_warning

    launched = []
    monkeypatch.setattr(page, "launch", lambda service, host, port, share: launched.append((host, port)))
    run_cli("app", "--ckpt_path", checkpoint, "--references", 64)
    assert "Warning" not in capsys.readouterr().err
    assert all(exposure_warning(host, 7860) is None for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    run_cli("app", "--ckpt_path", checkpoint, "--host", "0.0.0.0", "--port", 7999, "--references", 64)
    lines = [line for line in capsys.readouterr().err.splitlines() if "Warning" in line]
    assert lines == [
        "Warning: --host 0.0.0.0 opens the page to every machine that can reach this one on port 7999, with no login, "
        "so anyone there can upload images and run the checkpoint; use --host 127.0.0.1 to keep it on this machine."
    ]
    assert launched == [("127.0.0.1", 7860), ("0.0.0.0", 7999)]


def test_the_model_loads_once(checkpoint, photos, monkeypatch):
    from lightning_gen.app import service as service_module

    calls = []
    real = service_module.load_model
    monkeypatch.setattr(service_module, "load_model", lambda *args: calls.append(args) or real(*args))
    service = service_module.MixerService(str(checkpoint), references=64)
    for ratio in (0.0, 0.5, 1.0):
        service.mix(str(photos[0]), str(photos[1]), ratio, 4)
    service.edit(str(photos[0]), ["red"], [1.0])
    service.sample(2, 0)
    assert len(calls) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium: scripts/test.sh installs it with apt-get, which was unavailable here")
def test_in_a_real_browser(server, checkpoint, photos, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install 'lightning-gen[test]'")
    tiles = mix_strip_tiles(checkpoint, photos, tmp_path)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto(server)
        page.locator("#mix_a input[type=file]").set_input_files(str(photos[0]))
        page.locator("#mix_b input[type=file]").set_input_files(str(photos[1]))
        result = page.locator("#mix_result img")
        result.wait_for(timeout=120_000)
        first_source = result.get_attribute("src")
        shown_first = pixels(Image.open(__import__("io").BytesIO(page.request.get(first_source).body())))
        assert np.abs(shown_first - tiles[1 + 10]).max() <= 1  # the slider starts at 0.5

        # Drag the slider's thumb to a quarter of its track, as a user would.
        track = page.locator("#mix_ratio input[type=range]")
        box = track.bounding_box()
        page.mouse.click(box["x"] + 0.25 * box["width"], box["y"] + box["height"] / 2)
        page.wait_for_function(
            "source => { const img = document.querySelector('#mix_result img'); return img && img.src !== source; }",
            arg=first_source,
            timeout=120_000,
        )
        ratio = float(page.locator("#mix_ratio input[type=number]").input_value())
        assert 0.1 <= ratio <= 0.4
        shown = pixels(Image.open(__import__("io").BytesIO(page.request.get(result.get_attribute("src")).body())))
        assert not np.array_equal(shown, shown_first)
        assert np.abs(shown - tiles[1 + round(ratio * (STEPS - 1))]).max() <= 1
        page.wait_for_timeout(500)
        screenshot = Path(os.environ.get("LIGHTNING_GEN_APP_SCREENSHOT", tmp_path / "app.png"))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot))
        browser.close()
    assert Image.open(screenshot).size == (1100, 760)
