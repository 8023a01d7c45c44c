"""Text encoder loading, the tiny offline T5, and the caption embedding cache."""

import pytest
import torch
from fixtures_text import CountingEncoder, counting_cache

from lightning_gen.errors import UserError
from lightning_gen.text import CaptionEmbeddingCache, FrozenT5, text_embedding_dim
from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions
from lightning_gen.text.tiny_t5 import main as tiny_t5_main


def test_each_unique_caption_is_encoded_once(tmp_path):
    encoder = CountingEncoder()
    cache = counting_cache(tmp_path, encoder)
    embeddings, mask = cache.lookup(["a cat", "a dog", "a cat"])
    assert encoder.calls == [["a cat", "a dog"]]
    assert embeddings.shape == (3, 4, 3) and mask.shape == (3, 4) and mask.dtype == torch.bool
    assert embeddings[:, 0, 0].tolist() == [5.0, 5.0, 5.0]
    assert mask[0].tolist() == [True, True, False, False]
    cache.lookup(["a dog", "a cat"])
    assert len(encoder.calls) == 1
    cache.lookup(["a bird", "a cat"])
    assert encoder.calls[1] == ["a bird"]
    assert encoder.devices[-1] == "cpu"  # the encoder is not left on the device it encoded on


def test_a_second_cache_on_the_same_directory_reuses_the_file(tmp_path):
    first_encoder, second_encoder, loads = CountingEncoder(), CountingEncoder(), []
    expected, _ = counting_cache(tmp_path, first_encoder).lookup(["a cat", "a horse"])
    second = counting_cache(tmp_path, second_encoder, loads)
    assert len(second) == 2 and "a horse" in second
    embeddings, _ = second.lookup(["a horse", "a cat"])
    assert loads == [] and second_encoder.calls == []  # all hits: the encoder is never even loaded
    assert torch.equal(embeddings, expected.flip(0))
    second.lookup(["a zebra"])
    assert second_encoder.calls == [["a zebra"]] and loads == [1]
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


def test_max_length_gets_its_own_cache_file(tmp_path):
    encoder = CountingEncoder()
    counting_cache(tmp_path, encoder).lookup(["a cat"])
    other = CaptionEmbeddingCache("fake/encoder", max_length=8, cache_dir=tmp_path, load_encoder=lambda: encoder)
    assert other.lookup(["a cat"])[0].shape == (1, 8, 3)
    assert len(encoder.calls) == 2


def test_missing_hub_model_is_one_clear_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LIGHTNING_GEN_ALLOW_DOWNLOADS", raising=False)
    for load in (lambda: FrozenT5("nonexistent-org/nope"), lambda: text_embedding_dim("nonexistent-org/nope")):
        with pytest.raises(UserError) as error:
            load()
        message = str(error.value)
        assert "'nonexistent-org/nope'" in message and "Hugging Face cache" in message
        assert "hf download nonexistent-org/nope" in message and "model.text_encoder" in message


def test_missing_local_directory_names_the_path(tmp_path):
    with pytest.raises(UserError, match="could not be loaded from the directory") as error:
        FrozenT5(str(tmp_path / "no_t5_here"))
    assert str(tmp_path / "no_t5_here") in str(error.value)


def test_tiny_t5_round_trip(tmp_path):
    captions = ["a small red circle", "a large blue square"]
    encoder = FrozenT5(str(build_tiny_t5(tmp_path / "t5", captions, d_model=16)))
    ids = encoder.tokenizer(["a small red circle", "a purple circle"])["input_ids"]
    assert ids[0][-1] == 1 and len(ids[0]) == 5  # four words, then </s>
    assert ids[1][1] == 2  # unseen word -> <unk>
    embeddings, mask = encoder.encode(captions + ["a small red circle"], max_length=6)
    assert embeddings.shape == (3, 6, 16) and embeddings.dtype == torch.float32
    assert mask.sum(1).tolist() == [5, 5, 5]
    assert torch.equal(embeddings[0], embeddings[2]) and not torch.equal(embeddings[0], embeddings[1])
    assert not any(p.requires_grad for p in encoder.model.parameters()) and not encoder.model.training
    rebuilt = FrozenT5(str(build_tiny_t5(tmp_path / "again", captions, d_model=16)))
    assert torch.equal(rebuilt.encode(captions, 6)[0], embeddings[:2])  # same captions + seed = same weights


def test_tiny_t5_command_line_writes_the_shapes_vocabulary(tmp_path):
    tiny_t5_main(["--out", str(tmp_path / "shapes_t5"), "--captions-from", "shapes"])
    encoder = FrozenT5(str(tmp_path / "shapes_t5"))
    assert len(shapes_captions()) == 48
    ids = encoder.tokenizer(shapes_captions())["input_ids"]
    assert all(2 not in row for row in ids)  # every shapes word is in the vocabulary
