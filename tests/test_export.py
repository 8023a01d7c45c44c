"""`export`: ImageFolder layout and HF metadata read back by both readers, resume, determinism, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, save_checkpoint
from PIL import Image

from lightning_gen.commands.export import export
from lightning_gen.data import ShapesDataModule
from lightning_gen.errors import UserError
from lightning_gen.models import CVAE, DDPM, VAE
from lightning_gen.synthetic.generate import PerImageSampler
from lightning_gen.synthetic.plan import noise_seed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FACTS = ShapesDataModule(image_size=16).facts  # 24 classes "red circle" ... "cyan cross"
CPU = {"accelerator": "cpu"}


def save(model, path: Path, global_step: int = 7) -> Path:
    return save_checkpoint(model, path, global_step=global_step)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export_ckpts")
    torch.manual_seed(0)
    tiny_unet = {"block_out_channels": (16, 32), "layers_per_block": 1}
    return {
        "ddpm": save(DDPM(FACTS, conditioning="class", unet=tiny_unet, sampling_steps=2, guidance_scale=2.0), root / "ddpm.ckpt"),
        "cvae": save(CVAE(FACTS, condition="class", channels=(8, 16), latent_dim=4), root / "cvae.ckpt"),
        "cvae_attributes": save(CVAE(FACTS, condition="attributes", channels=(8, 16), latent_dim=4), root / "cvae_attr.ckpt"),
        "vae": save(VAE(FACTS, channels=(8, 16), latent_dim=4), root / "vae.ckpt"),
    }


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def metadata(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]


def test_layout_and_metadata_read_back_by_torchvision_and_datasets(checkpoints, tmp_path):
    import datasets
    from torchvision.datasets import ImageFolder

    out = tmp_path / "synthetic"
    run_cli(
        "export",
        "--ckpt_path",
        checkpoints["ddpm"],
        "--per_class",
        "2",
        "--out",
        out,
        "--batch_size",
        "16",
        "--prompt_template",
        "a photo of a {name}",
        "--trainer.accelerator",
        "cpu",
    )
    rows = metadata(out)
    assert len(rows) == 48 and {row["file_name"] for row in rows} == {f"{name}/{i:06d}.png" for name in FACTS.class_names for i in range(2)}
    first = rows[0]
    assert first["prompt"] == f"a photo of a {first['class_name']}" and first["guidance_scale"] == 2.0 and first["steps"] == 2
    assert first["global_step"] == 7 and len(first["checkpoint_sha256"]) == 64 and first["seed"] == 0

    folder = ImageFolder(str(out))
    assert folder.classes == sorted(FACTS.class_names) and len(folder) == 48
    by_file = {str(Path(path).relative_to(out)): target for path, target in folder.samples}
    for row in rows:  # our label is ImageFolder's number for the class folder
        assert by_file[row["file_name"]] == row["label"] == folder.class_to_idx[row["class_name"]]

    hf = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "hf_cache"))["train"]
    assert len(hf) == 48 and {"image", "label", "class_name", "prompt", "noise_seed", "checkpoint_sha256"} <= set(hf.column_names)
    for example in hf.select(range(0, 48, 7)):
        file_name = f"{example['class_name']}/{example['index']:06d}.png"
        assert example["label"] == folder.class_to_idx[example["class_name"]]
        assert np.array_equal(np.asarray(example["image"].convert("RGB"), dtype=np.int16), pixels(out / file_name))

    # The project's own folder datamodule reads it too: class names from `class_name`, no metadata column
    # (seed, steps, ...) mistaken for an attribute, and the same class order as ImageFolder.
    from lightning_gen.data import ImageFolderDataModule

    datamodule = ImageFolderDataModule(root=str(out), image_size=16, val_fraction=0.25, cache_dir=str(tmp_path / "cache"))
    datamodule.setup("fit")
    assert datamodule.facts.class_names == tuple(folder.classes) and datamodule.facts.attribute_names == ()


def test_images_match_an_independent_per_image_sample(checkpoints, tmp_path):
    """Image i of a class is the model's own DDIM sample from the noise of (seed, class, i), whatever the batch."""
    from lightning_gen.checkpoints.loading import load_model

    out = tmp_path / "synthetic"
    export(checkpoints["ddpm"], out, per_class=3, seed=5, batch_size=7, trainer=CPU)
    model = load_model(checkpoints["ddpm"])
    for name, index in (("red circle", 2), ("cyan cross", 0)):
        noise = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(noise_seed(5, name, index)))[None]
        label = torch.tensor([FACTS.class_names.index(name)])
        expected = model.sample(1, condition=label, initial_noise=noise, sampler="ddim")[0]
        expected = expected.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy().astype(np.int16)
        assert np.abs(pixels(out / name / f"{index:06d}.png") - expected).max() <= 1  # float rounding across batch sizes


def test_same_images_at_any_batch_size_other_images_for_another_seed(checkpoints, tmp_path):
    export(checkpoints["ddpm"], tmp_path / "b5", per_class=2, batch_size=5, trainer=CPU)
    export(checkpoints["ddpm"], tmp_path / "b48", per_class=2, batch_size=48, trainer=CPU)
    export(checkpoints["ddpm"], tmp_path / "seed1", per_class=2, batch_size=48, seed=1, trainer=CPU)
    differences, other_seed = [], []
    for row in metadata(tmp_path / "b5"):
        small, large = pixels(tmp_path / "b5" / row["file_name"]), pixels(tmp_path / "b48" / row["file_name"])
        differences.append(np.abs(small - large).max())
        other_seed.append(np.abs(large - pixels(tmp_path / "seed1" / row["file_name"])).mean())
    # The noise is identical; the arithmetic of a row may round differently at another batch size (≤ 1 level).
    assert max(differences) <= 1
    assert min(other_seed) > 1.0


def test_resume_generates_only_the_missing_images_and_they_come_out_the_same(checkpoints, tmp_path, monkeypatch):
    out = tmp_path / "synthetic"
    export(checkpoints["ddpm"], out, per_class=2, batch_size=8, trainer=CPU)
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in out.rglob("*.png")}
    missing = [out / "red circle/000001.png", out / "blue cross/000000.png"]
    for path in missing:
        path.unlink()

    generated: list[int] = []
    original = PerImageSampler.images

    def counting(self, seeds, conditions, pad_to=0):
        generated.extend(seeds)
        return original(self, seeds, conditions, pad_to)

    monkeypatch.setattr(PerImageSampler, "images", counting)
    counts = export(checkpoints["ddpm"], out, per_class=2, batch_size=8, trainer=CPU)
    assert counts == {"planned": 48, "written": 2, "skipped": 46, "seconds": pytest.approx(counts["seconds"])}
    assert sorted(generated) == sorted([noise_seed(0, "red circle", 1), noise_seed(0, "blue cross", 0)])
    for path, (content, mtime) in before.items():
        assert path.read_bytes() == content  # the two re-made files too: byte for byte
        if path not in missing:
            assert path.stat().st_mtime_ns == mtime
    assert len(metadata(out)) == 48


def test_resume_with_other_settings_is_refused(checkpoints, tmp_path):
    out = tmp_path / "synthetic"
    export(checkpoints["ddpm"], out, per_class=1, trainer=CPU)
    with pytest.raises(UserError, match="guidance_scale=2.0"):
        export(checkpoints["ddpm"], out, per_class=1, guidance_scale=3.0, trainer=CPU)


def test_cvae_class_and_attribute_exports(checkpoints, tmp_path):
    export(checkpoints["cvae"], tmp_path / "class", per_class=2, batch_size=5, trainer=CPU)
    export(checkpoints["cvae"], tmp_path / "class_b48", per_class=2, batch_size=48, trainer=CPU)
    for row in metadata(tmp_path / "class"):
        assert np.abs(pixels(tmp_path / "class" / row["file_name"]) - pixels(tmp_path / "class_b48" / row["file_name"])).max() <= 1
        assert "guidance_scale" not in row and "steps" not in row  # a CVAE has neither
    export(checkpoints["cvae_attributes"], tmp_path / "attributes", per_class=1, trainer=CPU)
    rows = {row["class_name"]: row for row in metadata(tmp_path / "attributes")}
    assert rows["magenta triangle"]["attributes"] == ["magenta", "triangle"] and len(rows) == 24


def test_prompts_file_names_classes_and_cycles_prompts(checkpoints, tmp_path):
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("red circle: [a red circle, a round red thing]\nblue square: a blue square\n")
    export(checkpoints["ddpm"], tmp_path / "out", per_class=3, prompts=str(prompts), trainer=CPU)
    rows = metadata(tmp_path / "out")
    assert [(row["class_name"], row["prompt"]) for row in rows] == [
        ("red circle", "a red circle"),
        ("red circle", "a round red thing"),
        ("red circle", "a red circle"),
        ("blue square", "a blue square"),
        ("blue square", "a blue square"),
        ("blue square", "a blue square"),
    ]
    assert {row["label"] for row in rows if row["class_name"] == "blue square"} == {0}  # sorted folders: blue < red


def test_unconditional_checkpoint_exports_flat_and_refuses_per_class(checkpoints, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("export", "--ckpt_path", checkpoints["vae"], "--per_class", "2", "--out", tmp_path / "bad")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unconditional" in error and "--num" in error and error.count("\n") == 1
    export(checkpoints["vae"], tmp_path / "flat", num=5, trainer=CPU)
    rows = metadata(tmp_path / "flat")
    assert [row["file_name"] for row in rows] == [f"{i:06d}.png" for i in range(5)] and "label" not in rows[0]


def test_conditional_checkpoint_needs_per_class(checkpoints, tmp_path):
    with pytest.raises(UserError, match="--per_class"):
        export(checkpoints["cvae"], tmp_path / "out", num=4)


@pytest.mark.slow
def test_two_process_export_writes_the_images_one_process_writes(checkpoints, tmp_path):
    from conftest import run_process

    export(checkpoints["ddpm"], tmp_path / "one", per_class=1, batch_size=8, trainer=CPU)
    done = run_process(
        "export",
        "--ckpt_path",
        checkpoints["ddpm"],
        "--per_class",
        "1",
        "--out",
        tmp_path / "two",
        "--batch_size",
        "8",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = metadata(tmp_path / "two")
    assert len(rows) == 24 and rows == metadata(tmp_path / "one")  # rank 0 wrote every rank's rows
    for row in rows:
        assert np.array_equal(pixels(tmp_path / "one" / row["file_name"]), pixels(tmp_path / "two" / row["file_name"]))


def test_text_model_exports_class_prompts_and_needs_a_template(tmp_path):
    from lightning_gen.facts import DataFacts
    from lightning_gen.text.tiny_t5 import build_tiny_t5

    facts = DataFacts(image_size=16, channels=3, class_names=("red circle", "blue square"), has_captions=True)
    encoder = build_tiny_t5(tmp_path / "t5", ["a large red circle", "a large blue square"], d_model=16)
    torch.manual_seed(0)
    model = DDPM(
        facts,
        conditioning="text",
        unet={"block_out_channels": (16, 32), "layers_per_block": 1},
        text_encoder=str(encoder),
        text_cache_dir=str(tmp_path / "cache"),
        max_text_length=8,
        sampling_steps=2,
    )
    checkpoint = save(model, tmp_path / "text.ckpt")
    with pytest.raises(UserError, match="--prompt_template"):
        export(checkpoint, tmp_path / "no_template", per_class=1)
    export(checkpoint, tmp_path / "out", per_class=2, prompt_template="a large {name}", trainer=CPU)
    rows = metadata(tmp_path / "out")
    assert [(row["class_name"], row["prompt"], row["label"]) for row in rows] == [
        ("red circle", "a large red circle", 1),
        ("red circle", "a large red circle", 1),
        ("blue square", "a large blue square", 0),
        ("blue square", "a large blue square", 0),
    ]
    first = pixels(tmp_path / "out" / "red circle/000000.png")
    assert np.abs(first - pixels(tmp_path / "out" / "blue square/000000.png")).mean() > 0.5  # the prompt (and noise) differ
