"""``model.lora``: only the adapter trains (counted by hand), the base weights stay bit-equal, a resumed run equals an
uninterrupted one, and ``publish`` writes the adapter alone (peft loads it back onto the base UNet with equal outputs)
or merged (``--merge_lora``, a stock DDIMPipeline whose UNet gives the adapter-applied output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli, save_checkpoint
from diffusers import DDIMPipeline, UNet2DModel
from fixtures_pretrained import save_tiny_pipeline
from huggingface_hub import ModelCard
from peft import PeftModel

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models import DDPM
from lightning_gen.publish.model_card import snippet_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RANK, STEPS = 4, 3
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def lora_config(pipeline: Path) -> dict:
    return {
        "seed_everything": 3,
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1, "enable_progress_bar": False,
                    "enable_model_summary": False},
        "model": {
            "class_path": "lightning_gen.models.DDPM",
            "init_args": {
                "pretrained": str(pipeline), "lora": {"rank": RANK, "alpha": RANK, "target_modules": list(TARGETS), "dropout": 0.0},
                "sampling_steps": STEPS, "validation_steps": 2, "min_snr_gamma": None,
                "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
            },
        },
        "data": {"class_path": "lightning_gen.data.ShapesDataModule",
                 "init_args": {"num_images": 40, "image_size": 16, "batch_size": 8, "val_fraction": 0.2}},
        "tracking": {"logger": "csv"},
        "images": {"num_images": 2, "interpolation_pairs": 1, "interpolation_steps": 2},
    }  # fmt: skip


def hand_counted_adapter_parameters(unet: torch.nn.Module) -> int:
    """rank·(in + out) for every Linear the targets name, counted on the plain diffusers UNet (no peft involved)."""
    total = 0
    for name, module in unet.named_modules():
        if any(name == target or name.endswith("." + target) for target in TARGETS):
            assert isinstance(module, torch.nn.Linear), name
            total += RANK * (module.in_features + module.out_features)
    return total


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """An uninterrupted 2-epoch LoRA run, the same run split 1 + 1 epochs by a resume, and the pipeline they start from."""
    root = tmp_path_factory.mktemp("lora")
    pipeline = save_tiny_pipeline(root / "pipe")
    config = root / "lora.yaml"
    config.write_text(yaml.safe_dump(lora_config(pipeline)))
    run_cli("fit", "--config", config, "--trainer.default_root_dir", root / "straight")
    run_cli("fit", "--config", config, "--trainer.default_root_dir", root / "split", "--trainer.max_epochs", "1")
    run_cli("fit", "--config", config, "--trainer.default_root_dir", root / "split", "--ckpt_path", "last")
    return {
        "pipeline": pipeline,
        "straight": root / "straight/lora/version_0/checkpoints/last.ckpt",
        "split": root / "split/lora/version_0/checkpoints/last.ckpt",
        "root": root,
    }


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_only_the_adapter_trains_and_the_optimizer_holds_only_it(tmp_path):
    pipeline = save_tiny_pipeline(tmp_path / "pipe")
    base = UNet2DModel.from_pretrained(pipeline, subfolder="unet")
    model = DDPM(DataFacts(image_size=16, channels=3), pretrained=str(pipeline), lora={"rank": RANK, "target_modules": list(TARGETS)})
    expected = hand_counted_adapter_parameters(base)
    assert expected == 4 * 4 * RANK * (32 + 32)  # four attention blocks of width 32 (down, mid, two up), four projections each
    assert sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad) == expected
    optimizer = model.configure_optimizers()
    assert sum(parameter.numel() for group in optimizer.param_groups for parameter in group["params"]) == expected


def test_a_run_changes_the_adapter_and_leaves_every_base_weight_bit_equal(runs):
    checkpoint = load(runs["straight"])
    plain = UNet2DModel.from_pretrained(runs["pipeline"], subfolder="unet")
    base = plain.state_dict()
    assert checkpoint["global_step"] == 8
    for weights in ("state_dict", "current_model_state"):  # EMA and raw
        state = checkpoint[weights]
        adapter = {key: value for key, value in state.items() if ".lora_" in key}
        assert sum(value.numel() for value in adapter.values()) == hand_counted_adapter_parameters(plain)
        assert any(value.abs().max() > 0 for key, value in adapter.items() if "lora_B" in key)  # B starts at zero: it trained
        for key, value in base.items():
            peft_key = "unet.base_model.model." + key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
            stored = state.get("unet.base_model.model." + key, state.get(peft_key))
            assert stored is not None and torch.equal(stored, value), key
    assert len(checkpoint["optimizer_states"][0]["state"]) == len([key for key in checkpoint["current_model_state"] if ".lora_" in key])


def test_a_resumed_lora_run_equals_an_uninterrupted_one(runs):
    straight, resumed = load(runs["straight"]), load(runs["split"])
    assert straight["global_step"] == resumed["global_step"] == 8
    for weights in ("state_dict", "current_model_state"):
        assert straight[weights].keys() == resumed[weights].keys()
        for key, value in straight[weights].items():
            torch.testing.assert_close(resumed[weights][key], value, rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def published(runs) -> dict[str, Path]:
    root = runs["root"]
    run_cli("publish", "--ckpt_path", runs["straight"], "--out", root / "adapter", "--num", "2")
    run_cli("publish", "--ckpt_path", runs["straight"], "--out", root / "merged", "--num", "2", "--merge_lora", "true")
    return {"adapter": root / "adapter", "merged": root / "merged"}


def unet_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    return torch.randn(3, 3, 16, 16, generator=generator), torch.tensor([5, 400, 999])


def test_the_published_adapter_loads_back_onto_the_base_unet_with_equal_outputs(runs, published):
    folder = published["adapter"]
    assert {"adapter_config.json", "adapter_model.safetensors", "scheduler", "README.md"} <= {path.name for path in folder.iterdir()}
    assert not (folder / "unet").exists()  # the adapter alone, not a copy of the base
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(runs["pipeline"])
    loaded = PeftModel.from_pretrained(UNet2DModel.from_pretrained(runs["pipeline"], subfolder="unet"), folder).eval()
    trained = load_model(runs["straight"]).unet
    base = UNet2DModel.from_pretrained(runs["pipeline"], subfolder="unet").eval()
    noisy, timesteps = unet_inputs()
    with torch.no_grad():
        expected = trained(noisy, timesteps).sample
        # Equal up to float rounding: with peft 0.22 / torch 2.14 the two differ in the last bit (~1e-8).
        torch.testing.assert_close(loaded(noisy, timesteps).sample, expected, rtol=0, atol=1e-6)
        assert (base(noisy, timesteps).sample - expected).abs().max() > 1e-3  # the adapter changes the output


def test_merge_lora_gives_a_stock_pipeline_whose_unet_equals_the_adapter_applied_one(runs, published):
    folder = published["merged"]
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "DDIMPipeline"
    pipe = DDIMPipeline.from_pretrained(folder)
    trained = load_model(runs["straight"]).unet
    noisy, timesteps = unet_inputs()
    with torch.no_grad():
        torch.testing.assert_close(pipe.unet(noisy, timesteps).sample, trained(noisy, timesteps).sample, rtol=0, atol=1e-5)


def test_the_adapter_card_parses_and_its_snippet_samples_what_lightning_gen_samples(runs, published, tmp_path, monkeypatch):
    card = ModelCard.load(published["adapter"] / "README.md")
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    assert card.data.base_model is None  # a local folder is no Hub id
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(snippet_of(published["adapter"] / "README.md"), namespace)  # as a reader pastes it: it writes sample.png
    pipe = namespace["pipe"]
    pipe.set_progress_bar_config(disable=True)
    options = {"num_inference_steps": STEPS, "eta": 0.0, "use_clipped_model_output": True, "output_type": "pt"}
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(4), **options).images
    expected = load_model(runs["straight"]).sample(2, generator=torch.Generator().manual_seed(4), steps=STEPS, sampler="ddim")
    assert images.shape == expected.shape == (2, 3, 16, 16)
    assert (images - expected).abs().max() <= 1e-4


def test_merge_lora_without_an_adapter_and_an_adapter_without_a_base_are_one_sentence(runs, tmp_path, capsys):
    facts = DataFacts(image_size=16, channels=3)
    plain = save_checkpoint(DDPM(facts, pretrained=str(runs["pipeline"])), tmp_path / "plain.ckpt")
    scratch = save_checkpoint(
        DDPM(facts, unet={"block_out_channels": [16, 32], "norm_num_groups": 8}, lora={"rank": 2}), tmp_path / "s.ckpt"
    )
    capsys.readouterr()
    for ckpt, out, options, expected in [
        (plain, "a", ["--merge_lora", "true"], "has no LoRA adapter (model.lora was not set); drop --merge_lora."),
        (scratch, "b", [], "so its adapter has no base to load onto; publish it with --merge_lora."),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_cli("publish", "--ckpt_path", ckpt, "--out", tmp_path / out, *options)
        assert exit_info.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("error: ") and last.endswith(expected)
        assert not (tmp_path / out).exists()


def test_lora_settings_that_match_nothing_or_are_unknown_are_one_sentence(runs):
    facts = DataFacts(image_size=16, channels=3)
    with pytest.raises(UserError, match=r"match no layer of the UNet; name its Linear or Conv2d layers"):
        DDPM(facts, pretrained=str(runs["pipeline"]), lora={"rank": 2, "target_modules": ["no_such_layer"]})
    with pytest.raises(UserError, match=r"model.lora has unknown keys r; use rank"):
        DDPM(facts, pretrained=str(runs["pipeline"]), lora={"r": 2})
