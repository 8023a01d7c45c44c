"""The shared inference layer: what commands, the app, metrics and synthetic data ask before they sample."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from jsonargparse import Namespace

from lightning_gen.errors import UserError
from lightning_gen.inference.conditions import condition_by_names, resolve_condition
from lightning_gen.inference.datamodules import datamodule_from_config
from lightning_gen.inference.memory import batch_in_memory
from lightning_gen.inference.sampling import options_of, sampling_kwargs
from lightning_gen.protocol import SamplingOptions


class Named:
    """A generator's condition methods only: records what it was asked."""

    def __init__(self, conditioning: str):
        self.conditioning = conditioning

    def condition_from_names(self, names, n):
        return ("names", tuple(names), n)

    def condition_from_prompt(self, prompt, n):
        return ("prompt", prompt, n)

    def sampling_options(self):
        return SamplingOptions(noise_shape=(3, 8, 8), defaults={"steps": 50, "sampler": "ddim"}, choices={"sampler": ("ddim", "ddpm")})


def test_conditions_from_names_or_a_prompt_for_n_samples():
    model = Named("attributes")
    assert resolve_condition(model, 4, " black, tail ,", None) == ("names", ("black", "tail"), 4)
    assert resolve_condition(model, 2, None, "a black cat") == ("prompt", "a black cat", 2)
    assert resolve_condition(model, 2, None, None) is None and condition_by_names(model, "  ") is None
    assert condition_by_names(model, "red") == ("names", ("red",), 1)
    with pytest.raises(UserError, match="either --condition or --prompt"):
        resolve_condition(model, 1, "red", "red")


def test_an_unconditional_model_refuses_names_in_one_sentence():
    with pytest.raises(UserError, match=r"^Named in this checkpoint is unconditional and does not take --prompt; drop it\.$"):
        resolve_condition(Named("none"), 1, None, "a cat")
    with pytest.raises(UserError, match="does not take --image_condition"):
        condition_by_names(Named("none"), "red", "--image_condition")


def test_sampling_options_are_those_the_model_declares():
    model = Named("none")
    args = Namespace(steps=10, guidance_scale=None, sampler="ddpm", num=3)
    assert options_of(args) == {"steps": 10, "guidance_scale": None, "sampler": "ddpm", "prior": None}
    assert sampling_kwargs(model, options_of(args)) == {"steps": 10, "sampler": "ddpm"}
    with pytest.raises(UserError, match="Named sampling does not take --guidance_scale"):
        sampling_kwargs(model, {"guidance_scale": 3.0})
    with pytest.raises(UserError, match="--sampler euler is not one of ddim, ddpm"):
        sampling_kwargs(model, {"sampler": "euler"})


def test_batch_in_memory_names_the_option_that_sets_it():
    assert batch_in_memory(Namespace(batch_size=32, num=8)) == ("--batch_size", 32)
    assert batch_in_memory(Namespace(num=8)) == ("--num", 8)
    data = Namespace(class_path="x.Y", init_args=Namespace(batch_size=16))
    assert batch_in_memory(Namespace(num=None, data=data)) == ("--data.init_args.batch_size", 16)
    assert batch_in_memory(datamodule=SimpleNamespace(batch_size=64)) == ("--data.init_args.batch_size", 64)  # fit's datamodule
    assert batch_in_memory(datamodule=None) == ("--data.init_args.batch_size", None)


def test_a_data_section_without_a_class_is_one_sentence():
    with pytest.raises(UserError, match=r"the data section of run/config.yaml names no class_path"):
        datamodule_from_config({"init_args": {"batch_size": 4}}, "run/config.yaml")
    built = datamodule_from_config({"class_path": "lightning_gen.data.ShapesDataModule", "init_args": {"batch_size": 4}}, "here")
    assert type(built).__name__ == "ShapesDataModule" and built.batch_size == 4
