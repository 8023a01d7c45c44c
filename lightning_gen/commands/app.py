"""``python -m lightning_gen app --ckpt_path CKPT [--host 127.0.0.1] [--port 7860] [--share]``: the Kitten Mixer page.

A Gradio page with Mix (two images, a mix-ratio slider, the strip), Edit (a slider per attribute)
and Sample tabs; each tab is also an API endpoint (/mix, /edit, /sample) for ``gradio_client``.
Bound to this machine only unless ``--host 0.0.0.0`` (which prints a warning line); a public link only
with ``--share`` (Colab).
"""

from __future__ import annotations

import ipaddress
import sys

from jsonargparse import ArgumentParser, Namespace

from lightning_gen.commands.edit import add_direction_arguments
from lightning_gen.errors import UserError
from lightning_gen.inference.devices import resolve_device

DESCRIPTION = "serve the Kitten Mixer page (mix, edit, sample) for a checkpoint with Gradio"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--ckpt_path", type=str, required=True, help="a .ckpt file of a lightning_gen run")
    parser.add_argument("--host", type=str, default="127.0.0.1", help="address to listen on (0.0.0.0 exposes the page to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--share", type=bool, default=False, help="also open a public gradio.live link (e.g. on Colab)")
    add_direction_arguments(parser)
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu or cuda")


def exposure_warning(host: str, port: int) -> str | None:
    """One line when ``host`` lets other machines reach the page, None when it is this machine's own (loopback) address."""
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost"
    if loopback:
        return None
    return (
        f"Warning: --host {host} opens the page to every machine that can reach this one on port {port}, with no login, "
        "so anyone there can upload images and run the checkpoint; use --host 127.0.0.1 to keep it on this machine."
    )


def run(args: Namespace) -> None:
    try:
        from lightning_gen.app.page import launch
    except ImportError as error:
        raise UserError(f"the app needs Gradio ({error}); install it with pip install 'lightning-gen[app]'.") from error
    from lightning_gen.app.service import MixerService

    warning = exposure_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    service = MixerService(args.ckpt_path, resolve_device(args.device), args.references, args.neighbours)  # loads the model once
    launch(service, args.host, args.port, args.share)
