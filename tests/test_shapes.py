import numpy as np
import torch

from lightning_gen.data import ShapesDataModule
from lightning_gen.data.shapes_render import COLOURS, SHAPES


def make(**kwargs):
    module = ShapesDataModule(num_images=40, image_size=16, batch_size=8, **kwargs)
    module.setup()
    return module


def test_same_seed_same_images_and_different_seed_different_images():
    a, b, c = make(seed=1), make(seed=1), make(seed=2)
    rows = list(range(8))
    assert torch.equal(a.train_set.__getitems__(rows)["image"], b.train_set.__getitems__(rows)["image"])
    assert not torch.equal(a.train_set.__getitems__(rows)["image"], c.train_set.__getitems__(rows)["image"])


def test_labels_attributes_and_captions_agree():
    module = make()
    batch = module.train_set.__getitems__(list(range(16)))
    names = module.facts.attribute_names
    for label, attributes, caption in zip(batch["label"], batch["attributes"], batch["caption"]):
        on = [names[i] for i in attributes.nonzero().flatten().tolist()]
        colour, shape, size = on
        assert caption == f"a {size} {colour} {shape}"
        assert module.facts.class_names[label] == f"{colour} {shape}"
    assert len(module.facts.class_names) == len(COLOURS) * len(SHAPES)


def test_pixels_carry_the_colour_of_the_label():
    module = make()
    batch = module.train_set.__getitems__(list(range(16)))
    palette = torch.tensor(list(COLOURS.values()))
    for image, label in zip(batch["image"], batch["label"]):
        colour = label.item() // len(SHAPES)
        brightest = image.flatten(1)[:, image.flatten(1).sum(0).argmax()]
        assert torch.allclose(brightest, palette[colour], atol=0.02)


def test_batch_order_depends_only_on_seed_and_epoch():
    module = make(seed=3)
    loader = module.train_dataloader()
    loader.sampler.set_epoch(4)
    first = [b["index"].tolist() for b in loader]
    loader.sampler.set_epoch(5)
    other = [b["index"].tolist() for b in loader]
    loader.sampler.set_epoch(4)
    again = [b["index"].tolist() for b in loader]
    assert first == again and first != other


def test_fit_reshuffles_every_epoch():
    import lightning.pytorch as pl

    from lightning_gen.models import VAE

    seen: list[list[int]] = []

    class RecordOrder(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch["index"].tolist())

    module = make(seed=3)
    model = VAE(module.facts, channels=[4, 8], latent_dim=2)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[RecordOrder()],
    )
    trainer.fit(model, module)
    per_epoch = len(seen) // 2
    assert seen[:per_epoch] != seen[per_epoch:]
    for epoch in (seen[:per_epoch], seen[per_epoch:]):
        flat = sum(epoch, [])
        assert len(set(flat)) == len(flat)  # a permutation: no image twice in one epoch


def test_lazily_rendered_rows_equal_the_eager_rendering_bit_for_bit():
    from lightning_gen.data.shapes_render import render_shapes

    eager = render_shapes(300, 16, 7).images.numpy()
    module = ShapesDataModule(num_images=300, image_size=16, batch_size=8, seed=7, val_fraction=0.1)
    module.setup()
    lazy = module.train_set.images
    assert not lazy._rendered.any()  # setup renders nothing
    batch = module.train_set.__getitems__([250, 3, 17, 3, 128])  # shuffled, with a repeat
    assert torch.equal(batch["image"], torch.from_numpy(eager[[250, 3, 17, 3, 128]]).float() / 255)
    assert lazy._rendered.sum() == 4  # only the rows asked for, each once
    val = module.val_set.__getitems__(list(range(30)))
    assert torch.equal(val["image"], torch.from_numpy(eager[270:]).float() / 255)
    assert (np.asarray(lazy) == eager).all()  # and the whole array, rendered on demand


def test_lazy_shapes_load_the_same_batches_in_dataloader_workers():
    module = ShapesDataModule(num_images=64, image_size=16, batch_size=8, num_workers=2, seed=5)
    module.setup()
    loader = module.train_dataloader()
    loader.sampler.set_epoch(1)
    in_workers = {tuple(b["index"].tolist()): b["image"] for b in loader}
    reference = ShapesDataModule(num_images=64, image_size=16, batch_size=8, seed=5)
    reference.setup()
    for rows, images in in_workers.items():
        assert torch.equal(images, reference.train_set.__getitems__(list(rows))["image"])
    assert len(in_workers) == len(loader)
