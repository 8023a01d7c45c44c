"""``python -m lightning_gen fit|validate|test|predict --config X.yaml`` (LightningCLI) and the extra commands.

The CLI adds what every run needs without the user listing it: a run directory named after the
experiment, a logger inside it, checkpoints (last, best-k, periodic), EMA, image grids and the
state needed to resume a killed session with ``--ckpt_path last``.
"""

from __future__ import annotations

import difflib
import importlib
import json
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_gen.callbacks.configured import check_configured_logger, placed_callbacks
from lightning_gen.callbacks.ema import EMA
from lightning_gen.callbacks.end_validation import validation_callbacks
from lightning_gen.callbacks.image_grids import ImageGrids
from lightning_gen.callbacks.nonfinite_guard import NonFiniteGuard
from lightning_gen.callbacks.performance import apply_matmul_precision, performance_callbacks
from lightning_gen.callbacks.posthoc_ema import PostHocEMA
from lightning_gen.callbacks.progress import progress_callbacks
from lightning_gen.callbacks.run_state import RunState
from lightning_gen.checkpoints.callbacks import checkpoint_callbacks
from lightning_gen.checkpoints.classes import model_class_from_checkpoint
from lightning_gen.checkpoints.files import AtomicStreamingCheckpointIO
from lightning_gen.checkpoints.keys import CHECKPOINT_KEY
from lightning_gen.checkpoints.run_end import Stop, run_end_callbacks, stop_of
from lightning_gen.checkpoints.snapshot_callback import WeightSnapshots
from lightning_gen.commands import COMMANDS, DESCRIPTIONS, run_command
from lightning_gen.compat import LightningCLIWithoutCheckpointHparams
from lightning_gen.config.settings import SETTINGS
from lightning_gen.config.trust import check_config_arguments
from lightning_gen.console.option_errors import ExplainingParser, ParseFailure, explain, explained_resource_errors, one_sentence
from lightning_gen.console.quiet import quiet, take_verbose
from lightning_gen.console.threads import LONG_COMMANDS, ThreadAdvice, advise
from lightning_gen.errors import UserError
from lightning_gen.inference.memory import batch_in_memory
from lightning_gen.runs.agreement import agreed_run_location, is_deciding_rank, requeued_run
from lightning_gen.runs.directory import (
    RunLocation,
    RunLock,
    abandon_failed_start,
    checked_experiment_name,
    experiment_of_config_file,
    latest_checkpoint,
    lock_run,
    new_run,
    read_run_info,
    resumed_run,
)
from lightning_gen.runs.records import check_compatible, keep_earlier_config, resume_step
from lightning_gen.tracking.loggers import make_logger


def program_name() -> str:
    """How the user started us: ``lightning-gen`` (the console script) or ``python -m lightning_gen``."""
    return "lightning-gen" if Path(sys.argv[0]).name == "lightning-gen" else "python -m lightning_gen"


class ConfigToLoggers(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the run directory and as the W&B run config.

    A resume first keeps the run's earlier config as ``config.resume-<N>.yaml``.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self.already_saved and self.save_to_log_dir:
            log_dir = trainer.log_dir  # on every rank: it broadcasts
            if trainer.is_global_zero and log_dir:
                keep_earlier_config(Path(log_dir) / self.config_filename)
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        config = json.loads(self.parser.dump(self.config, skip_none=False, format="json"))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class GenerativeCLI(LightningCLIWithoutCheckpointHparams):
    def __init__(self, args: list[str] | None = None, run: bool = True):
        self.run_location: RunLocation | None = None
        self._run_lock: RunLock | None = None
        try:
            # Out of memory, or a runs folder that cannot be written: one sentence (batch size tried / the path).
            with explained_resource_errors(self._batch_in_memory, self._write_hint):
                self._start(args, run)
        except BaseException:
            self._release_run()
            trainer = getattr(self, "trainer", None)
            abandon_failed_start(
                self.run_location, trainer.global_step if trainer is not None else 0
            )  # a failed start leaves no run behind
            raise
        if run:
            self._release_run()

    def _start(self, args: list[str] | None, run: bool) -> None:
        super().__init__(
            model_class=pl.LightningModule,
            datamodule_class=pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=ConfigToLoggers,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"default_root_dir": "runs", "logger": False, "enable_checkpointing": True},
            auto_configure_optimizers=False,
            # A parse error is raised, not printed with the usage, so main() can make it one sentence;
            # no abbreviated options (--trainer.max_epoch is refused, never taken as --trainer.max_epochs).
            parser_class=ExplainingParser,
            parser_kwargs={"prog": program_name(), "allow_abbrev": False},
            args=args,
            run=run,
        )

    def _batch_in_memory(self) -> tuple[str, int | None]:
        return batch_in_memory(datamodule=getattr(self, "datamodule", None))

    def _write_hint(self, path: Path) -> str | None:
        config = getattr(self, "config", None)
        if config is not None and getattr(self, "subcommand", None):
            config = config.get(self.subcommand, config)
        trainer = config.get("trainer") if config is not None else None
        root = Path((trainer.get("default_root_dir") if trainer is not None else None) or "runs").absolute()
        path = path.absolute()
        if path == root or root in path.parents or path in root.parents:
            return f"point --trainer.default_root_dir at a folder you can write (now {root})"
        return None

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # The main parser and each subcommand's: --help shows model/data first, the config groups one line each.
        return super().init_parser(**{"allow_abbrev": False, "short_help": True, "short_help_first": ("model", "data"), **kwargs})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key, settings in SETTINGS.items():
            parser.add_argument(f"--{key}", type=settings, default=settings())
        # Data facts (image size, channels, condition vocabulary) are read off the datamodule, never typed twice.
        parser.link_arguments("data.facts", "model.init_args.data_facts", apply_on="instantiate")

    # -- run directory and resume ---------------------------------------------------------------
    def _experiment_name(self, config: Any) -> str:
        if config.tracking.name:
            return checked_experiment_name(config.tracking.name)
        config_files = config.get("config") or []
        # A run's saved config.yaml names its run's experiment, not 'config'.
        return experiment_of_config_file(str(config_files[0])) if config_files else "default"

    def _run_location(self, config: Any) -> RunLocation:
        root = config.trainer.default_root_dir or "runs"
        experiment = self._experiment_name(config)
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is None and self.subcommand == "fit":
            requeued = requeued_run(Path(root).resolve() / experiment)  # a requeued SLURM job continues its own run
            if requeued is not None:
                config.ckpt_path = str(requeued.resume_from)
                return requeued
        if ckpt_path == "last":
            ckpt_path = str(latest_checkpoint(root, experiment))
            config.ckpt_path = ckpt_path
        if ckpt_path in (None, "best", "hpc", "registry"):
            return new_run(root, experiment)
        if not Path(ckpt_path).is_file():
            raise UserError(
                f"--ckpt_path {ckpt_path} is not a file; pass a .ckpt file or 'last' to continue the newest run of '{experiment}'."
            )
        info = read_run_info(ckpt_path)  # a one-sentence error for a checkpoint that holds code or is truncated
        check_model_class(info, config, ckpt_path)
        if self.subcommand == "fit" and info.get("run_id"):
            return resumed_run(root, ckpt_path, info)
        return new_run(root, experiment)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("weights_only") is False:  # the option stays: a run's saved config.yaml holds `weights_only: true` (or null)
            raise UserError(
                "--weights_only false is not supported: lightning_gen reads checkpoints as data only, so a "
                "shared one cannot run code; drop the option."
            )
        if "weights_only" in config:  # True, whatever torch's default: resuming from a shared checkpoint never runs its pickle's code
            config.weights_only = True
        experiment = self._experiment_name(config)
        experiment_dir = Path(config.trainer.default_root_dir or "runs").resolve() / experiment
        config.tracking.name = experiment  # config.yaml records it: a run's config used as --config continues that experiment

        def decide() -> tuple[RunLocation, str | None]:
            location = self._run_location(config)
            return location, config.get("ckpt_path")

        # Global rank 0 decides; the other ranks of a DDP launch adopt its directory, run id and checkpoint.
        self.run_location, ckpt_path = agreed_run_location(decide, experiment_dir)
        if "ckpt_path" in config:
            config.ckpt_path = ckpt_path

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        run = self.run_location
        tracking, checkpointing, snapshots, guard, ema, images = (
            config[key] for key in ("tracking", "checkpointing", "snapshots", "guard", "ema", "images")
        )
        check_configured_logger(config.trainer.get("logger"))  # the run's logger is tracking.logger's
        configured = config.trainer.get("callbacks") or []
        configured, averaging = placed_callbacks(configured if isinstance(configured, list) else [configured], ema)
        callbacks: list[pl.Callback] = [RunState(run), ImageGrids(run.images, images)]
        if self.subcommand == "fit":
            callbacks += checkpoint_callbacks(run.checkpoints, checkpointing)
            callbacks += run_end_callbacks(run.checkpoints)  # before EMA, whose on_train_end copies the average over the raw weights
            callbacks += validation_callbacks(images)  # after run_end's: the last step is saved before its final validation
            if guard.enabled:
                callbacks.append(NonFiniteGuard(guard.max_consecutive_nonfinite))
        if ema.enabled:
            callbacks.append(EMA(decay=ema.decay, warmup=ema.warmup))  # after ImageGrids: grids see EMA weights
        elif averaging is not None:
            callbacks.append(averaging)  # the user's own weight average, in our EMA's place
        if self.subcommand == "fit" and ema.post_hoc:
            callbacks.append(PostHocEMA(run.directory, ema.sigma_rels, ema.snapshot_every_n_steps, ema.snapshot_dtype))
        if self.subcommand == "fit":
            callbacks.append(WeightSnapshots(run.checkpoints, snapshots))  # after EMA: a step's snapshot holds its updated average
        callbacks += performance_callbacks(config.performance)  # after EMA: the average copies the eager networks
        apply_matmul_precision(config.performance)  # once, before the Trainer starts
        kwargs["callbacks"] = [
            *configured,
            *callbacks,
            *progress_callbacks(config.trainer.get("enable_progress_bar"), configured),
            ThreadAdvice(),
        ]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and Path(ckpt_path).is_file():  # before anything is written into the run directory
            check_compatible(ckpt_path, self.model, resuming=run.resume_from is not None)
        if self.subcommand == "fit" and is_deciding_rank():  # one process per run: a second resume of it is refused
            self._run_lock = lock_run(run)
        kwargs["logger"] = make_logger(tracking, run, resume_step(run.resume_from))
        kwargs["plugins"] = with_checkpoint_io(config.trainer.get("plugins"))
        kwargs.setdefault("default_root_dir", str(run.directory))
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError, TypeError) as error:  # Trainer(...) checking its arguments
            raise UserError(
                one_sentence(str(error), prefix="the trainer settings are invalid: ")[:-1]
                + "; fix them in the config or with --trainer.* options."
            ) from error

    def _release_run(self) -> None:
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def _finish_tracking(self) -> None:
        # Close the W&B run now, not at interpreter exit: a notebook (Colab) keeps the process alive,
        # and the offline run's files (config, summary) are complete only once it is finished.
        if any(isinstance(logger, WandbLogger) for logger in self.trainer.loggers):
            import wandb  # imported by WandbLogger already

            if wandb.run is not None:  # the run the logger started, if it started one (its `experiment` would start one)
                wandb.run.finish()

    after_validate = after_test = after_predict = _finish_tracking

    def after_fit(self) -> None:
        self._finish_tracking()
        self._release_run()


def with_checkpoint_io(plugins: Any) -> list[Any]:
    """The configured plugins plus lightning_gen's atomic, streamed checkpoint writer (unless one is configured)."""
    plugins = list(plugins if isinstance(plugins, list) else [plugins] if plugins else [])
    if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
        plugins.append(AtomicStreamingCheckpointIO())
    return plugins


def check_model_class(info: dict[str, Any], config: Any, ckpt_path: str) -> None:
    """A checkpoint continues only the model class that wrote it (a name outside lightning_gen is refused unimported)."""
    if "model_class" not in info:
        return  # not written by lightning_gen: Lightning's own loading checks the weights against the model
    recorded = model_class_from_checkpoint({CHECKPOINT_KEY: info}, ckpt_path)
    configured = config.get("model")
    class_path = configured.get("class_path") if configured is not None else None
    if class_path is None:
        return
    module_name, _, class_name = str(class_path).rpartition(".")
    configured_class = getattr(importlib.import_module(module_name), class_name, None)  # from the user's own config
    if configured_class is not recorded:
        raise UserError(
            f"{ckpt_path} was written by {recorded.__module__}.{recorded.__qualname__}, but the config's model is {class_path}; "
            f"pass the config the checkpoint was trained with."
        )


TRAINER_COMMANDS = {
    "fit": "train a model from a config (--ckpt_path last continues the newest run)",
    "validate": "validation metrics of a checkpoint (--ckpt_path) on the config's data",
    "test": "test-split metrics of a checkpoint (--ckpt_path) on the config's data",
    "predict": "reconstructions or samples for the config's data, through the model's predict_step",
}


def command_descriptions() -> dict[str, str]:
    """Every command with its one-line description, as ``--help`` lists them."""
    return {**TRAINER_COMMANDS, **DESCRIPTIONS}  # from the registry: listing the commands imports none of them


def print_help(program: str, file: Any = None) -> None:
    descriptions = command_descriptions()
    width = max(map(len, descriptions))
    print(
        "\n".join(
            [
                f"usage: {program} COMMAND [--config FILE.yaml] [--group.option VALUE ...]",
                "",
                "Image generative models (VAE, β-VAE, CVAE, DDPM, text-to-image DDPM) trained and used from YAML configs.",
                "",
                "commands:",
                *(f"  {name.ljust(width)}  {description}" for name, description in descriptions.items()),
                "",
                f"Every command takes --config and dotted overrides (e.g. --trainer.max_epochs 5); `{program} "
                f"COMMAND --help` lists its options "
                "(--help-all: those of every config group too).",
            ]
        ),
        file=file or sys.stdout,
    )


def unknown_command(name: str, program: str) -> UserError:
    close = difflib.get_close_matches(name, list(command_descriptions()), n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? (`{program} --help` lists them all)" if close else f"`{program} --help` lists the commands"
    return UserError(f"'{name}' is not a command; {hint}.")


def find_user_error(error: BaseException) -> UserError | None:
    """The user's mistake in an exception chain: a UserError (jsonargparse wraps those raised while instantiating
    a class), or Lightning's MisconfigurationException, made one sentence."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        if isinstance(error, MisconfigurationException):
            return UserError(one_sentence(str(error), prefix="Lightning rejected the configuration: "))
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def report_stop(stop: Stop, program: str, argv: list[str]) -> None:
    """One line on stderr: how to continue a fit stopped by a signal (the same command line with --ckpt_path last)."""
    if stop.requeued or not stop.global_zero:
        return
    args = [arg for index, arg in enumerate(argv) if not (arg.startswith("--ckpt_path") or index and argv[index - 1] == "--ckpt_path")]
    name = signal.Signals(stop.signum).name
    if stop.last_ckpt is None:
        print(f"Stopped by {name} before any step was saved; start again with: {program} {shlex.join(args)}", file=sys.stderr)
    else:
        print(
            f"Stopped by {name}; continue from {stop.last_ckpt} with: {program} {shlex.join([*args, '--ckpt_path', 'last'])}",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> None:
    argv, verbose = take_verbose(list(sys.argv[1:] if argv is None else argv))
    quiet(verbose)  # the known noise of torch and Lightning off, unless --verbose
    program, saved_argv = sys.argv[:1], sys.argv
    name = program_name()
    if not argv or argv[0] in ("-h", "--help", "--help-all"):
        print_help(name, file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    try:
        check_config_arguments(argv)  # a config file of a run names only allowed classes, before anything parses it
        if argv[0] in COMMANDS:
            if argv[0] in LONG_COMMANDS and not {"-h", "--help", "--help-all"} & set(argv):
                advise()  # fit-like commands advise once their Trainer exists
            run_command(argv[0], argv[1:])
        elif not argv[0].startswith("-") and argv[0] not in TRAINER_COMMANDS:
            raise unknown_command(argv[0], name)
        else:
            # LightningCLI reads sys.argv; a call from Python (tests, notebooks) runs as that command line.
            sys.argv = program + argv
            GenerativeCLI()
    except ParseFailure as failure:
        print(f"error: {explain(failure, argv, name)}", file=sys.stderr)
        raise SystemExit(2) from None
    except SystemExit as exit_:
        stop = stop_of(exit_)  # a fit stopped by a signal: 128 + the signal (Lightning would exit 0), or 0 when requeued
        if stop is not None:
            report_stop(stop, name, argv)
            raise SystemExit(stop.exit_code) from None
        if isinstance(exit_, SIGTERMException):  # validate/test/predict: Lightning's SIGTERM stop
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        sys.argv = saved_argv
