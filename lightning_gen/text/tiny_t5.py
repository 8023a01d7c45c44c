"""A tiny random T5 encoder with a word-level tokenizer, saved in HF format: text conditioning offline.

Used by the tests and by the shapes text config, where no hub model can be downloaded. The encoder
is random but fixed, so different captions still map to different embedding sequences for the UNet
to learn from.

    python -m lightning_gen.text.tiny_t5 --out runs/tiny_t5 --captions-from shapes
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5


def word_level_tokenizer(captions: Iterable[str]) -> PreTrainedTokenizerFast:
    """Lower-cased whitespace words of the captions; unseen words map to <unk>.

    Wrapped in PreTrainedTokenizerFast with an explicit ``</s>`` post-processor rather than
    T5TokenizerFast: with transformers 5.x the latter saves a WordLevel tokenizer that fails to reload.
    """
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(captions, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS)))
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def build_tiny_t5(
    out_dir: str | Path,
    captions: Sequence[str],
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Writes tokenizer + random T5 encoder to ``out_dir`` (loadable by FrozenT5) and returns the path."""
    out_dir = Path(out_dir)
    tokenizer = word_level_tokenizer(captions)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=2 * d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",  # as in T5 v1.1
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    # A private RNG stream: the same captions and seed give the same weights, and global RNG is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = T5EncoderModel(config)
    encoder.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def shapes_captions() -> list[str]:
    """Every caption the built-in shapes dataset can produce ("a large red circle")."""
    from lightning_gen.data.shapes_render import COLOURS, SHAPES, SIZES

    return [f"a {size} {colour} {shape}" for size in SIZES for colour in COLOURS for shape in SHAPES]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a tiny random T5 encoder + word-level tokenizer in HF format.")
    parser.add_argument("--out", required=True, help="directory to write (use it as model.text_encoder)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--captions-from", choices=["shapes"], help="take the vocabulary from a built-in dataset")
    source.add_argument("--captions-file", help="a text file with one caption per line")
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.captions_from == "shapes":
        captions = shapes_captions()
    else:
        captions = [line.strip() for line in Path(args.captions_file).read_text().splitlines() if line.strip()]
    path = build_tiny_t5(args.out, captions, d_model=args.d_model, seed=args.seed)
    print(f"wrote a tiny T5 encoder ({len(captions)} captions' vocabulary) to {path}")


if __name__ == "__main__":
    main()
