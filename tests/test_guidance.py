"""Classifier-free guidance and dynamic thresholding against hand-computed values."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from lightning_gen.models.guidance import classifier_free_guidance, guidance_active, thresholding_config


def test_guidance_combines_conditional_and_unconditional_outputs():
    conditional = torch.tensor([1.0, 2.0, -1.0])
    unconditional = torch.tensor([0.5, 1.0, 1.0])
    # uncond + 3·(cond − uncond) = [0.5 + 1.5, 1 + 3, 1 − 6]
    assert torch.equal(classifier_free_guidance(conditional, unconditional, 3.0), torch.tensor([2.0, 4.0, -5.0]))
    assert torch.equal(classifier_free_guidance(conditional, unconditional, 1.0), conditional)
    assert torch.equal(classifier_free_guidance(conditional, unconditional, 0.0), unconditional)


def test_guidance_pass_is_skipped_when_it_cannot_change_anything():
    assert not guidance_active(1.0, has_condition=True)
    assert not guidance_active(3.0, has_condition=False)
    assert guidance_active(3.0, has_condition=True)


def thresholded_prediction(scheduler_class, x0: torch.Tensor, percentile: float | None) -> torch.Tensor:
    """The scheduler's x0 after its clipping step; prediction_type 'sample' makes the model output x0 itself."""
    scheduler = scheduler_class(num_train_timesteps=100, prediction_type="sample", **thresholding_config(percentile))
    scheduler.set_timesteps(10)
    timestep = scheduler.timesteps[0]
    return scheduler.step(x0, timestep, torch.zeros_like(x0)).pred_original_sample


@pytest.mark.parametrize("scheduler_class", [DDIMScheduler, DDPMScheduler])
def test_dynamic_thresholding_matches_imagen(scheduler_class):
    magnitudes = torch.arange(1, 21, dtype=torch.float32) / 10  # 0.1 … 2.0
    signs = torch.tensor([1.0, -1.0]).repeat(10)
    wide = (magnitudes * signs).view(1, 1, 4, 5)
    narrow = (magnitudes / 4 * signs).view(1, 1, 4, 5)  # every |x0| <= 0.5
    x0 = torch.cat([wide, narrow])
    result = thresholded_prediction(scheduler_class, x0, 0.95)
    # 95th percentile of |x0| (linear interpolation, position 0.95·19 = 18.05): 1.9 + 0.05·0.1 = 1.905.
    s = 1.905
    assert torch.allclose(result[0], wide[0].clamp(-s, s) / s, atol=1e-6)
    assert result[0].abs().max().item() == pytest.approx(1.0)
    # s = max(1, 0.476…) = 1: an image inside [−1, 1] is left alone.
    assert torch.allclose(result[1], narrow[0])


def test_without_a_percentile_x0_is_clipped_to_unit_range():
    x0 = torch.tensor([-3.0, -0.5, 0.25, 2.0]).view(1, 1, 2, 2)
    result = thresholded_prediction(DDIMScheduler, x0, None)
    assert torch.equal(result, torch.tensor([-1.0, -0.5, 0.25, 1.0]).view(1, 1, 2, 2))
