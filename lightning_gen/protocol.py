"""The model protocol: what callbacks, commands, metrics, synthetic, latent and the app may ask a model.

Everything outside ``models/`` is written against this module alone: ``isinstance`` on the
runtime-checkable protocols below, or the methods every generator has. Nothing outside ``models/``
probes a model with ``hasattr``/``getattr``/``inspect.signature`` or calls a private method.

Every generator (``Generator``; ``models.GenerativeModel`` gives the defaults of each optional part)
- ``image_shape`` (C, H, W) and ``conditioning``: ``"none"``, ``"class"``, ``"attributes"`` or ``"text"``;
- ``sample(n, condition=None, generator=None, **options) -> images`` in [0, 1], N×C×H×W, where
  ``options`` are the keys its ``sampling_options()`` declares (``steps``, ``guidance_scale``,
  ``sampler``, ``prior``) and ``initial_noise`` (N × ``noise_shape``): the same noise and options give
  the same images (with ``sampler`` = ``deterministic_sampler`` where the model has samplers);
- ``sampling_options() -> SamplingOptions``: those options and their defaults, as data;
- ``batch_condition(batch) -> condition | None``: the condition a batch carries for this model;
- ``validation_grids(batch, generator) -> {name: images}``: the model's own extra grids ({} if none);
- the condition vocabulary, for every model (an unconditional one has none and refuses names):
  ``condition_vocabulary`` (class or attribute names; () for free text and for "none"),
  ``spread_conditions(n)`` (n conditions cycling evenly over the classes / attribute combinations of
  the data, None when unconditional or text), ``condition_from_names(names, n)`` and
  ``condition_from_prompt(prompt, n)`` (a condition for ``n`` samples, raising ``UserError`` in one
  sentence where the model cannot take it), ``condition_names(condition) -> list[str]``.

Capabilities some models add
- ``HasLatents``: ``latent_shape`` (one image's latent), ``encode(x, condition=None) -> z``,
  ``decode(z, condition=None) -> images``, ``reconstruct(x, condition=None) -> images``;
- ``Invertible``: ``invert(x, condition=None, steps=None) -> noise`` with
  ``sample(len(x), condition, initial_noise=noise, steps=steps, sampler=deterministic_sampler)``
  regenerating ``x`` (DDIM inversion, the flow ODE run backwards);
- ``HasFeatures``: ``features(images) -> N×D`` (a trained classifier's trunk, usable as a metric's
  feature extractor).

A new model family plugs in by subclassing ``models.GenerativeModel`` and implementing this protocol;
every command, grid and metric then serves it (``tests/test_toy_generator.py`` shows one). Its conditions
can reuse ``models.conditioning`` (one conditioner object per kind, as VAE/CVAE/DDPM do). A model trained
through the same CLI that generates nothing (the Judge) is a ``models.ModelBase``, not a ``Generator``:
``require_generator`` refuses it, ``HasFeatures`` lets metrics use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from lightning_gen.errors import UserError

ConditionKind = Literal["none", "class", "attributes", "text"]
CONDITION_KINDS: tuple[str, ...] = ("none", "class", "attributes", "text")

# The option names ``sample`` may declare, with the command-line flag each comes from.
SAMPLING_OPTION_NAMES: tuple[str, ...] = ("steps", "guidance_scale", "sampler", "prior")


@dataclass(frozen=True)
class SamplingOptions:
    """What a generator's ``sample`` accepts beyond (n, condition, generator, initial_noise), as data.

    ``defaults`` maps each accepted option (a subset of ``SAMPLING_OPTION_NAMES``) to the value
    ``sample`` uses when it is not given; ``choices`` lists the allowed values of a string option
    (``sampler``, ``prior``). ``deterministic_sampler`` is the sampler for which ``initial_noise``
    fully determines the images (None when ``sample`` has no sampler choice and is deterministic
    given its noise). ``noise_shape`` is the shape of one image's ``initial_noise``.
    """

    noise_shape: tuple[int, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    deterministic_sampler: str | None = None

    @property
    def steps(self) -> int | None:
        """Default number of sampling steps; None for a one-shot decoder."""
        return self.defaults.get("steps")

    def accepts(self, name: str) -> bool:
        return name in self.defaults

    def given(self, options: Mapping[str, Any], model_name: str = "this model") -> dict[str, Any]:
        """The options that are set (not None), refusing in one sentence those ``sample`` does not take."""
        given = {key: value for key, value in options.items() if value is not None}
        unsupported = [f"--{key}" for key in given if key not in self.defaults]
        if unsupported:
            raise UserError(f"{model_name} sampling does not take {', '.join(unsupported)}; drop it.")
        for key, value in given.items():
            allowed = self.choices.get(key)
            if allowed and value not in allowed:
                raise UserError(f"--{key} {value} is not one of {', '.join(allowed)} for {model_name}; pick one of those.")
        return given

    def deterministic(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with the deterministic sampler chosen (for per-seed images, inversion, export)."""
        if self.deterministic_sampler is None:
            return dict(options)
        return {**options, "sampler": self.deterministic_sampler}


@runtime_checkable
class Generator(Protocol):
    """Every generative model (see the module docstring for each member's contract)."""

    conditioning: str

    @property
    def image_shape(self) -> tuple[int, int, int]: ...

    @property
    def condition_vocabulary(self) -> tuple[str, ...]: ...

    def sample(self, n: int, condition: Any = None, generator: torch.Generator | None = None, **options: Any) -> torch.Tensor: ...

    def sampling_options(self) -> SamplingOptions: ...

    def batch_condition(self, batch: dict[str, Any]) -> Any: ...

    def validation_grids(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]: ...

    def spread_conditions(self, n: int) -> Any: ...

    def condition_from_names(self, names: Sequence[str], n: int) -> Any: ...

    def condition_from_prompt(self, prompt: str, n: int) -> Any: ...

    def condition_names(self, condition: Any) -> list[str]: ...


@runtime_checkable
class HasLatents(Protocol):
    @property
    def latent_shape(self) -> tuple[int, ...]: ...

    def encode(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor, condition: Any = None) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor: ...


@runtime_checkable
class Invertible(Protocol):
    def invert(self, x: torch.Tensor, condition: Any = None, steps: int | None = None) -> torch.Tensor: ...


@runtime_checkable
class HasFeatures(Protocol):
    def features(self, images: torch.Tensor) -> torch.Tensor: ...


def is_generator(model: Any) -> bool:
    return isinstance(model, Generator)


def has_latents(model: Any) -> bool:
    return isinstance(model, HasLatents)


def is_invertible(model: Any) -> bool:
    return isinstance(model, Invertible)


def has_features(model: Any) -> bool:
    return isinstance(model, HasFeatures)


def is_conditional(model: Generator) -> bool:
    """True for a class-, attribute- or text-conditional generator."""
    return model.conditioning != "none"


def has_vocabulary(model: Generator) -> bool:
    """True where conditions are names from the data (classes, attributes): spread_conditions works."""
    return model.conditioning in ("class", "attributes")


def require_generator(model: Any, what: str) -> Generator:
    """``model`` as a Generator, or one sentence saying that ``what`` needs one."""
    if not is_generator(model):
        raise UserError(
            f"{what} needs a generative model, but the checkpoint holds a {type(model).__name__}; pass a VAE, CVAE or DDPM checkpoint."
        )
    return model


def batch_condition(model: Generator, batch: dict[str, Any]) -> Any:
    """The condition ``batch`` carries for ``model`` (None for an unconditional one)."""
    return model.batch_condition(batch)
