"""Post-hoc EMA (``--ema.post_hoc true``): power-function tracks, snapshots, and any σ_rel rebuilt after training."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import TINY_CONFIG, SimulatedKill, run_cli
from PIL import Image
from safetensors.torch import load_file
from torchvision.utils import save_image

from lightning_gen.callbacks.nonfinite_guard import NonFiniteGuard
from lightning_gen.callbacks.posthoc_ema import PostHocEMA
from lightning_gen.checkpoints.loading import load_model
from lightning_gen.checkpoints.posthoc_ema import (
    gamma_to_sigma_rel,
    list_snapshots,
    load_posthoc_model,
    sigma_rel_to_gamma,
    snapshot_name,
    synthesize,
)
from lightning_gen.errors import UserError
from lightning_gen.models import VAE

POST_HOC = ["--ema.post_hoc", "true", "--ema.snapshot_every_n_steps", "2", "--ema.snapshot_dtype", "float32"]


def fit(root, *extra):
    run_cli("fit", "--config", root / "tiny.yaml", "--trainer.default_root_dir", root, *POST_HOC, *extra)
    return root / "tiny/version_0"


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory):
    """6 steps of the tiny VAE without the ordinary EMA (last.ckpt holds the raw weights), snapshots every 2 steps."""
    root = tmp_path_factory.mktemp("posthoc")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit(root, "--trainer.max_steps", "6", "--ema.enabled", "false")
    finally:
        torch.set_num_threads(threads)


def test_gamma_of_sigma_rel_is_the_papers_closed_form():
    # γ = 1: σ_rel² = (1 + 1) / ((1 + 2)² (1 + 3)) = 2 / 36 = 1/18.
    assert sigma_rel_to_gamma(math.sqrt(1 / 18)) == pytest.approx(1.0, abs=1e-9)
    assert gamma_to_sigma_rel(1.0) == pytest.approx(math.sqrt(1 / 18), abs=1e-12)
    # EDM2 (Karras et al. 2024), section 3: σ_rel 0.05 and 0.10 are γ = 16.97 and 6.94.
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.005)
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.005)
    for sigma_rel in (0.03, 0.05, 0.1, 0.15, 0.2, 0.25):
        assert gamma_to_sigma_rel(sigma_rel_to_gamma(sigma_rel)) == pytest.approx(sigma_rel, rel=1e-9)
    with pytest.raises(UserError, match="out of range"):
        sigma_rel_to_gamma(0.4)


def test_a_tracked_sigma_rel_is_rebuilt_exactly_as_its_track(raw_run):
    snapshots = list_snapshots(raw_run)
    assert sorted((s.step, s.sigma_rel) for s in snapshots) == [(step, sr) for step in (2, 4, 6) for sr in (0.05, 0.10)]
    checkpoint = torch.load(raw_run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    state = checkpoint["callbacks"]["PostHocEMA"]
    assert state["step"] == 6
    for index, sigma_rel in enumerate((0.05, 0.10)):
        stored = load_file(raw_run / "posthoc_ema" / snapshot_name(sigma_rel, 6))
        track = state["tracks"][index]
        assert track.keys() == set(snapshots[0].tracked) and len(track) > 0
        for name, tensor in track.items():
            assert torch.equal(stored[name], tensor), name  # the snapshot is the track (fp32)
        weights, base = synthesize(raw_run, sigma_rel)
        assert base.step == 6
        for name, tensor in track.items():
            torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    # The two tracks differ from each other and from the raw weights, so the equalities above can fail.
    raw = checkpoint["state_dict"]
    name = next(iter(state["tracks"][0]))
    assert not torch.allclose(state["tracks"][0][name], state["tracks"][1][name])
    assert not torch.allclose(state["tracks"][1][name], raw[name])


def brute_force_power_ema(weights: list[torch.Tensor], gamma: float) -> torch.Tensor:
    """The power-function EMA at T = len(weights) written out: β_t = (1 - 1/t)^(γ+1) unrolled gives each step t the
    weight (t^(γ+1) - (t-1)^(γ+1)) / T^(γ+1)."""
    steps = len(weights)
    total = torch.zeros_like(weights[0], dtype=torch.float64)
    for t, value in enumerate(weights, start=1):
        total += (t ** (gamma + 1) - (t - 1) ** (gamma + 1)) / steps ** (gamma + 1) * value.double()
    return total


def test_an_untracked_sigma_rel_matches_a_brute_force_ema_of_the_whole_sequence(tmp_path, one_torch_thread):
    """Known weights w_t set into a tiny model for 400 steps, tracks σ_rel 0.05 and 0.10 snapshotted every 20 steps
    by the callback: the rebuilt σ_rel 0.07 and 0.15 match the brute-force EMA of every w_t to 1e-3 (measured: 2.6e-4
    and 4.5e-4 on weights up to 4; the continuous profiles fit the discrete EMAs of 400 steps that closely), and 0.2,
    outside the tracked range, to 1e-2 (measured 4.4e-3)."""
    from lightning_gen.data import ShapesDataModule
    from lightning_gen.models import VAE

    torch.manual_seed(0)
    model = VAE(ShapesDataModule(image_size=16).facts, channels=(8, 16), latent_dim=4)
    parameters = dict(model.named_parameters())
    shapes = {name: torch.randn(3, *p.shape) for name, p in parameters.items()}
    steps = 400

    def weights_at(t: int) -> dict[str, torch.Tensor]:
        basis = torch.tensor([math.sin(t / 60), (t / steps) ** 2, math.cos(t / 25) * 0.3 + t / steps])
        return {name: torch.tensordot(basis, shape, dims=1) for name, shape in shapes.items()}

    trainer = SimpleNamespace(global_step=0, is_global_zero=True)
    callback = PostHocEMA(tmp_path, [0.05, 0.10], every_n_steps=20, dtype="float32")
    callback.on_train_start(trainer, model)
    history = []
    with torch.no_grad():
        for t in range(1, steps + 1):
            current = weights_at(t)
            for name, p in parameters.items():
                p.copy_(current[name])
            history.append(current)
            trainer.global_step = t
            callback.on_train_batch_end(trainer, model, None, None, 0)
    assert len(list_snapshots(tmp_path)) == 2 * steps // 20

    for sigma_rel, tolerance in ((0.07, 1e-3), (0.15, 1e-3), (0.2, 1e-2)):
        gamma = sigma_rel_to_gamma(sigma_rel)
        rebuilt, _ = synthesize(tmp_path, sigma_rel)
        for name in parameters:
            expected = brute_force_power_ema([h[name] for h in history], gamma)
            torch.testing.assert_close(rebuilt[name].double(), expected, rtol=0, atol=tolerance, msg=f"{sigma_rel} {name}")
    # The tolerance tells the lengths apart: the nearest track (0.10) is far from the EMA of 0.15.
    tracked, _ = synthesize(tmp_path, 0.10)
    name = next(iter(parameters))
    far = brute_force_power_ema([h[name] for h in history], sigma_rel_to_gamma(0.15))
    assert (tracked[name].double() - far).abs().max() > 20 * 1e-3


def test_resume_continues_the_tracks_exactly(tmp_path, one_torch_thread):
    for name in ("straight", "split"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    every = ["--checkpointing.every_n_steps", "3"]
    straight = fit(tmp_path / "straight", *every)
    kill = '{"class_path": "conftest.KillAtStep", "init_args": {"step": 7}}'
    with pytest.raises(SimulatedKill):
        fit(tmp_path / "split", "--trainer.callbacks+", kill, *every)
    split = tmp_path / "split/tiny/version_0"
    assert torch.load(split / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["callbacks"]["PostHocEMA"]["step"] == 7
    fit(tmp_path / "split", "--ckpt_path", "last", *every)

    names = sorted(p.name for p in (straight / "posthoc_ema").iterdir())
    assert names == sorted(p.name for p in (split / "posthoc_ema").iterdir())
    assert len(names) == 2 * 5  # steps 2, 4, 6, 8, 10
    for name in names:
        a, b = load_file(straight / "posthoc_ema" / name), load_file(split / "posthoc_ema" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    a, b = (
        torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["callbacks"]["PostHocEMA"]
        for run in (straight, split)
    )
    assert a["step"] == b["step"] == 10
    for track_a, track_b in zip(a["tracks"], b["tracks"], strict=True):
        for key in track_a:
            assert torch.equal(track_a[key], track_b[key]), key


def test_sample_with_ema_sigma_rel_uses_the_synthesized_weights(raw_run, tmp_path, one_torch_thread):
    out = tmp_path / "posthoc.png"
    run_cli("sample", "--ckpt_path", raw_run, "--ema_sigma_rel", "0.15", "--num", "4", "--nrow", "2", "--device", "cpu", "--out", out)

    model = load_model(raw_run / "checkpoints/last.ckpt")  # the raw weights and buffers of step 6 (no ordinary EMA)
    weights, _ = synthesize(raw_run, 0.15)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and set(missing) == model.state_dict().keys() - dict(model.named_parameters()).keys()  # buffers stay
    with torch.no_grad():
        images = model.sample(4, generator=torch.Generator().manual_seed(0))
    expected = tmp_path / "expected.png"
    save_image(images, expected, nrow=2, padding=1)
    assert list(Image.open(out).getdata()) == list(Image.open(expected).getdata())

    run_cli(
        "sample",
        "--ckpt_path",
        raw_run / "checkpoints/last.ckpt",
        "--num",
        "4",
        "--nrow",
        "2",
        "--device",
        "cpu",
        "--out",
        tmp_path / "raw.png",
    )
    assert list(Image.open(tmp_path / "raw.png").getdata()) != list(Image.open(out).getdata())  # the σ_rel changed the images


def test_a_run_without_post_hoc_snapshots_is_one_clear_sentence(tmp_path):
    with pytest.raises(UserError, match="--ema.post_hoc true"):
        load_posthoc_model(tmp_path, 0.1)


def test_evaluate_prints_one_row_per_sigma_rel(raw_run, tmp_path, capsys, one_torch_thread):
    """Each row scores the rebuilt EMA: σ_rel 0.10 (a tracked length) scores as its own snapshot file does."""
    from fixtures_features import TinyFeatures

    extractor = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(TinyFeatures()), extractor)
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"data": TINY_CONFIG["data"]}))  # the run's data (its config's images group is evaluate's --images)
    common = ["--config", data, "--feature_extractor", extractor, "--metrics", "fid", "--num", 16, "--device", "cpu"]
    common += ["--cache_dir", tmp_path / "cache", "--log_to_run", "false"]
    ckpt = raw_run / "checkpoints/last.ckpt"
    run_cli("evaluate", "--ckpt_path", ckpt, "--ema_sigma_rel", "0.05,0.1,0.15", *common, "--out", tmp_path / "sweep.json")
    printed = capsys.readouterr().out
    table = printed[printed.index("sigma_rel") :].splitlines()
    assert table[0].split() == ["sigma_rel", "fid/samples", "fid/reconstructions"] and [line.split()[0] for line in table[1:4]] == [
        "0.05",
        "0.1",
        "0.15",
    ]
    rows = json.loads((tmp_path / "sweep.json").read_text())["ema_sigma_rel"]
    assert [row["sigma_rel"] for row in rows] == [0.05, 0.1, 0.15]

    run_cli("evaluate", "--ckpt_path", raw_run / "posthoc_ema" / snapshot_name(0.10, 6), *common, "--out", tmp_path / "track.json")
    track = json.loads((tmp_path / "track.json").read_text())["scores"][0]  # fid/samples
    assert (track["metric"], track["subject"]) == ("fid", "samples") and rows[1]["fid/samples"] == pytest.approx(track["value"], rel=1e-4)
    assert rows[0]["fid/samples"] != pytest.approx(rows[1]["fid/samples"], rel=1e-3)  # the length changes the score


def test_resume_removes_the_snapshots_written_after_the_checkpoint(tmp_path):
    """A killed run can have written snapshots after its last checkpoint; the resumed tracks would not match them."""
    model = torch.nn.Linear(3, 2)
    trainer = SimpleNamespace(global_step=0, is_global_zero=True)
    callback = PostHocEMA(tmp_path, [0.05, 0.10], every_n_steps=1, dtype="float32")
    callback.save = lambda trainer, module: _write_fake_snapshots(tmp_path, trainer.global_step)
    callback.on_train_start(trainer, model)
    for step in (1, 2, 3):
        trainer.global_step = step
        callback.on_train_batch_end(trainer, model, None, None, 0)
        if step == 1:
            state = callback.state_dict()
    assert sorted(s.step for s in list_snapshots(tmp_path)) == [1, 2, 3]
    resumed = PostHocEMA(tmp_path, [0.05, 0.10], every_n_steps=1, dtype="float32")
    resumed.load_state_dict(state)
    resumed.on_train_start(SimpleNamespace(global_step=1, is_global_zero=True), model)
    assert [s.step for s in list_snapshots(tmp_path)] == [1]
    with pytest.raises(UserError, match="--ema.sigma_rels"):
        PostHocEMA(tmp_path, [0.05, 0.2], every_n_steps=1).load_state_dict(state)


def _write_fake_snapshots(folder, step):
    from lightning_gen.checkpoints.posthoc_ema import snapshot_metadata
    from lightning_gen.checkpoints.snapshots import save_snapshot

    save_snapshot(
        folder / "posthoc_ema" / snapshot_name(0.1, step), {"w": torch.zeros(1)}, torch.float32, snapshot_metadata(step, 6.94, 0.1, ["w"])
    )


class Tracks(pl.Callback):
    """PostHocEMA's checkpointed state (its t and tracks) after every optimizer step, next to the trained weights."""

    def __init__(self, posthoc: PostHocEMA):
        self.posthoc = posthoc
        self.states: list[dict] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer, pl_module):
        self.initial = {name: p.detach().clone() for name, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.states.append(self.posthoc.state_dict())
        self.weights.append({name: p.detach().clone() for name, p in pl_module.named_parameters()})


@pytest.mark.parametrize("skipping", ["grad scaler overflow", "non-finite batch"])
def test_a_skipped_optimizer_step_leaves_every_track_and_its_step_count_unchanged(skipping, tmp_path, one_torch_thread):
    """EDM2's t counts optimizer updates: a step the grad scaler or NonFiniteGuard skipped neither moves a track nor t."""
    from fixtures_precision import PoisonBatch, datamodule, overflowing_scaler, trainer

    pl.seed_everything(0)
    model = VAE(datamodule().facts, channels=[8, 16], latent_dim=8)
    posthoc = PostHocEMA(tmp_path, [0.05, 0.10], every_n_steps=2, dtype="float32")
    tracks = Tracks(posthoc)
    callbacks = [NonFiniteGuard(max_consecutive=5), posthoc, tracks]
    if skipping == "grad scaler overflow":
        run = trainer(plugins=[overflowing_scaler()], steps=6, callbacks=callbacks)
    else:
        run = trainer("32-true", steps=6, callbacks=[PoisonBatch(step=2), *callbacks])
    run.fit(model, datamodule())

    gammas = [sigma_rel_to_gamma(0.05), sigma_rel_to_gamma(0.10)]
    names = tracks.states[0]["tracks"][0].keys()
    expected = [{n: tracks.initial[n] for n in names} for _ in gammas]  # before any update a track is the initial weights
    t, previous_weights, skipped = 0, tracks.initial, 0
    for state, weights in zip(tracks.states, tracks.weights, strict=True):
        trained = {name: weights[name] for name in state["tracks"][0]}
        if all(torch.equal(trained[n], previous_weights[n]) for n in trained):
            skipped += 1  # the optimizer did not update: the tracks and t stay as they were
        else:
            t += 1
            beta = [(1.0 - 1.0 / t) ** (gamma + 1.0) for gamma in gammas]  # EDM2's β_t, by hand
            expected = [{n: b * e[n] + (1 - b) * trained[n] for n in trained} for b, e in zip(beta, expected)]  # β_1 = 0 copies
        previous_weights = trained
        assert state["step"] == t
        for track, want in zip(state["tracks"], expected, strict=True):
            for name, tensor in track.items():
                torch.testing.assert_close(tensor, want[name], msg=name)
    assert skipped >= 1 and t >= 2  # the scenario happened: some steps skipped, some trained
    assert state["tracks"][0] and any(not torch.equal(a, b) for a, b in zip(state["tracks"][0].values(), state["tracks"][1].values()))
    # Snapshots are written every 2 trainer steps and carry t, the number of updates averaged in.
    steps_written = sorted({snapshot.step for snapshot in list_snapshots(tmp_path)})
    assert steps_written[-1] == t and all(step <= 6 for step in steps_written)
