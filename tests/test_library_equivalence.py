"""Hand-written code replaced by libraries gives today's numbers: Min-SNR weights (diffusers' compute_snr),
judge accuracy (torchmetrics) and the grids' interpolation (latent.interpolate, the mixer's slerp)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import nn
from torchvision.utils import make_grid

from lightning_gen.callbacks.image_grids import interpolation_grid as callback_interpolation_grid
from lightning_gen.facts import DataFacts
from lightning_gen.latent.interpolate import interpolate
from lightning_gen.metrics.comparison import interpolation_grid as compare_interpolation_grid
from lightning_gen.models import DDPM, VAE
from lightning_gen.models.judge import class_word_groups, judge_accuracy


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("beta_schedule", ["cosine", "linear"])
def test_min_snr_weights_equal_the_hand_formula(prediction_type, beta_schedule):
    model = DDPM(
        DataFacts(image_size=16), unet={"block_out_channels": [16, 32], "layers_per_block": 1},
        prediction_type=prediction_type, beta_schedule=beta_schedule, min_snr_gamma=5.0,
    )  # fmt: skip
    timesteps = torch.arange(1000)
    alphas = model.noise_schedule.alphas_cumprod[timesteps].double()
    snr = alphas / (1.0 - alphas)
    expected = snr.clamp(max=5.0) / ((snr + 1.0) if prediction_type == "v_prediction" else snr)
    torch.testing.assert_close(model.loss_weights(timesteps).double(), expected, rtol=1e-6, atol=1e-6)
    assert expected.min() < 0.99  # the weighting does something at these timesteps


def reference_judge_accuracy(
    logits: dict[str, torch.Tensor], condition: torch.Tensor, kind: str, class_names: Sequence[str] = (),
    attribute_names: Sequence[str] = (), group_names: Sequence[str] | None = None, attribute_groups: dict | None = None,
) -> dict[str, float]:  # fmt: skip
    """judge_accuracy as it was written by hand before torchmetrics (from logits)."""
    results: dict[str, float] = {}
    if kind == "class":
        requested = condition.long().view(-1)
        judged = logits["class"].argmax(1)
        results["overall"] = (judged == requested).float().mean().item()
        for index in requested.unique().tolist():
            chosen = requested == index
            results[f"class/{class_names[index]}"] = (judged[chosen] == index).float().mean().item()
        words = [name.replace("+", " ").split() for name in class_names]
        for group, position in class_word_groups(class_names, group_names).items():
            matches = [words[a][position] == words[b][position] for a, b in zip(judged.tolist(), requested.tolist())]
            results[f"group/{group}"] = sum(matches) / len(matches)
        return results
    requested = condition.float() > 0.5
    present = logits["attributes"] > 0
    results["overall"] = (present | ~requested).all(1).float().mean().item()
    for index, name in enumerate(attribute_names):
        if requested[:, index].any():
            results[f"attribute/{name}"] = present[requested[:, index], index].float().mean().item()
    for group, members in (attribute_groups or {}).items():
        columns = [list(attribute_names).index(member) for member in members]
        asked = requested[:, columns]
        rows = asked.any(1)
        if rows.any():
            judged_member = logits["attributes"][:, columns].argmax(1)
            results[f"group/{group}"] = (judged_member[rows] == asked[rows].float().argmax(1)).float().mean().item()
    return results


class FixedLogits(nn.Module):
    """Image i (every pixel = i) gets row i of the logits, however judge_accuracy batches the images."""

    def __init__(self, logits: dict[str, torch.Tensor]):
        super().__init__()
        self.logits = logits

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = images[:, 0, 0, 0].long()
        return {key: value[rows] for key, value in self.logits.items()}


def test_judge_accuracy_equals_the_hand_written_one_on_fixed_logits():
    generator = torch.Generator().manual_seed(0)
    colours, shapes = ("red", "green", "blue", "cyan"), ("circle", "square", "cross")
    classes = [f"{colour} {shape}" for colour in colours for shape in shapes]
    attributes = (*colours, *shapes)
    logits = {"class": torch.randn(300, 12, generator=generator), "attributes": torch.randn(300, 7, generator=generator)}
    requested_classes = torch.randint(0, 12, (300,), generator=generator)
    requested_attributes = (torch.rand(300, 7, generator=generator) < 0.3).float()
    images = torch.arange(300.0).view(300, 1, 1, 1).expand(300, 3, 4, 4)
    judge = FixedLogits(logits)
    mine = judge_accuracy(judge, images, requested_classes, "class", classes, group_names=["colour", "shape"])
    expected = reference_judge_accuracy(logits, requested_classes, "class", classes, group_names=["colour", "shape"])
    assert mine.keys() == expected.keys() and len(mine) == 1 + 12 + 2
    assert mine == pytest.approx(expected, abs=1e-6)
    groups = {"colour": colours, "shape": shapes}
    mine = judge_accuracy(judge, images, requested_attributes, "attributes", attribute_names=attributes, attribute_groups=groups)
    expected = reference_judge_accuracy(logits, requested_attributes, "attributes", attribute_names=attributes, attribute_groups=groups)
    assert mine.keys() == expected.keys() and mine == pytest.approx(expected, abs=1e-6)


def tiny_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(DataFacts(image_size=16), channels=(8, 16), latent_dim=6).eval()


def test_the_grid_interpolation_row_is_latent_interpolate_slerp():
    model = tiny_vae()
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    steps = 5
    weights = torch.linspace(0, 1, steps)
    with torch.no_grad():
        z = model.encode(images)
        rows = []
        for pair in range(2):
            path = interpolate(z[2 * pair : 2 * pair + 1], z[2 * pair + 1 : 2 * pair + 2], weights, mode="slerp")
            rows += [images[2 * pair : 2 * pair + 1], model.decode(path), images[2 * pair + 1 : 2 * pair + 2]]
        expected = make_grid(torch.cat(rows), nrow=steps + 2, padding=1)
        lerp = model.decode(torch.lerp(z[0:1], z[1:2], 0.5))
        grid = callback_interpolation_grid(model, images, None, pairs=2, steps=steps)
        compared = compare_interpolation_grid([model], {"image": images[0:1]}, {"image": images[1:2]}, steps)
    torch.testing.assert_close(grid, expected)
    torch.testing.assert_close(compared, expected[:, : compared.shape[1]])  # compare's one run: the first pair's row
    assert not torch.allclose(model.decode(path[2:3]), lerp)  # slerp and lerp differ midway: the test can tell them apart
