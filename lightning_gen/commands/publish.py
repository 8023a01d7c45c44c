"""``python -m lightning_gen publish --ckpt_path CKPT --out DIR [--push_to_hub USER/NAME] [--private]``.

A DDPM (diffusion or flow matching) becomes a diffusers pipeline folder (stock ``DDIMPipeline``/``DDPMPipeline``,
or the shipped class/text pipeline with classifier-free guidance); an Autoencoder a stock diffusers ``AutoencoderKL``
folder; a VAE/CVAE a ``config.json`` + ``model.safetensors`` folder for
``lightning_gen.publish.PublishedModel.from_pretrained``. Each gets a Hub model card with a sample grid. See docs/interop.md.
"""

from __future__ import annotations

from typing import Optional

from jsonargparse import ArgumentParser, Namespace

from lightning_gen.publish.folder import PublishRequest, publish_and_push

DESCRIPTION = "write a checkpoint as a diffusers / huggingface_hub folder with a model card; optionally upload it"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--ckpt_path", type=str, required=True, help="a .ckpt file of a lightning_gen run")
    parser.add_argument("--out", type=str, required=True, help="folder to write (new or empty; see --overwrite)")
    parser.add_argument("--raw_weights", type=bool, default=False, help="export the raw weights instead of the EMA ones")
    parser.add_argument("--overwrite", type=bool, default=False, help="replace --out when it already holds files")
    parser.add_argument("--push_to_hub", type=Optional[str], default=None, help="USER/NAME: upload the folder to this Hub model repo")
    parser.add_argument("--private", type=bool, default=False, help="create the Hub repository private")
    parser.add_argument("--license", type=Optional[str], default=None, help="the model card's license (a Hub license id, e.g. mit)")
    parser.add_argument("--datasets", type=Optional[str], default=None, help="comma-separated Hub dataset ids for the model card")
    parser.add_argument("--prompt", type=Optional[str], default=None, help="caption of the card's sample grid (text models)")
    parser.add_argument("--num", type=int, default=16, help="images in the card's sample grid")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the sample grid")
    parser.add_argument("--merge_lora", type=bool, default=False, help="a LoRA run: publish the merged UNet, not the adapter alone")
    parser.add_argument("--device", type=str, default="cpu", help="cpu or cuda (for the sample grid)")


def run(args: Namespace) -> None:
    datasets = tuple(name.strip() for name in (args.datasets or "").split(",") if name.strip())
    request = PublishRequest(
        args.ckpt_path, args.out, args.raw_weights, args.overwrite, args.push_to_hub, args.private, args.license,
        datasets, args.prompt, args.num, args.seed, args.device, args.merge_lora,
    )  # fmt: skip
    out, url = publish_and_push(request)
    print(f"Wrote {out}" + (f" and uploaded it: {url}" if url else ""))
