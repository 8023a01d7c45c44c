from types import SimpleNamespace

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from lightning_gen.callbacks.ema import EMA, ema_update_fn


@pytest.mark.parametrize("warmup,expected_rate", [(True, 2 / 11), (False, 0.9)])
def test_ema_update_by_hand(warmup, expected_rate):
    net = torch.nn.Linear(3, 2)
    average = AveragedModel(net, multi_avg_fn=ema_update_fn(0.9, warmup), use_buffers=True)
    start = net.weight.detach().clone()
    average.update_parameters(net)  # the first update copies the weights
    with torch.no_grad():
        net.weight.add_(1.0)
    average.update_parameters(net)  # second update: decay min(0.9, (1 + 1) / (10 + 1)) with warm-up
    torch.testing.assert_close(average.module.weight, start + (1 - expected_rate))


def test_warmup_reaches_the_target_decay():
    net = torch.nn.Linear(1, 1, bias=False)
    average = AveragedModel(net, multi_avg_fn=ema_update_fn(0.5, True), use_buffers=True)
    for _ in range(3):
        average.update_parameters(net)
    with torch.no_grad():
        net.weight.fill_(net.weight.item() + 1.0)
        before = average.module.weight.item()
    average.update_parameters(net)  # step 3: (1 + 3) / 13 < 0.5, so the rate is 4/13
    assert average.module.weight.item() == pytest.approx(before + 1 - 4 / 13)


def test_batchnorm_models_average_floats_and_copy_integer_counters():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    average = AveragedModel(net, multi_avg_fn=ema_update_fn(0.9, True), use_buffers=True)
    for _ in range(3):
        net(torch.rand(2, 3, 8, 8))
        average.update_parameters(net)
    assert average.module[1].num_batches_tracked.item() == 3
    assert not torch.equal(average.module[1].running_mean, net[1].running_mean)  # averaged, not copied


def test_the_per_step_update_matches_averaged_model_update_parameters():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    reference = AveragedModel(net, multi_avg_fn=ema_update_fn(0.9, True), use_buffers=True)
    ema = EMA(decay=0.9)
    ema._average_model = AveragedModel(net, use_buffers=True)  # what WeightAveraging.setup builds
    ema.on_train_start(None, net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(1, 6):
        net(torch.rand(2, 3, 8, 8)).square().mean().backward()
        optimizer.step()
        reference.update_parameters(net)
        ema.on_train_batch_end(SimpleNamespace(global_step=step), net, None, None, step - 1)
        ema.on_train_batch_end(SimpleNamespace(global_step=step), net, None, None, step - 1)  # no second update per step
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(ema._average_model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert ema._average_model.n_averaged.item() == 5


def test_a_batchnorm_vae_trains_with_ema_through_the_cli(tiny_config, tmp_path):
    from conftest import run_cli

    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--trainer.max_epochs",
        "1",
        "--model.init_args.batchnorm",
        "true",
    )
    checkpoint = torch.load(tmp_path / "runs/tiny/version_0/checkpoints/last.ckpt", weights_only=False)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    norms = [key for key in raw if key.endswith("running_mean")]
    assert norms  # the model has batch norms
    # 96 shapes: 86 train images (a tenth held out), 5 full batches of 16: the raw running stats saw 5 batches.
    assert all(int(raw[key.replace("running_mean", "num_batches_tracked")]) == 5 for key in norms)
    # The averaged copy holds averaged running statistics (use_buffers): not the raw ones, not the initial zeros.
    for key in norms:
        assert not torch.equal(averaged[key], raw[key]) and bool(averaged[key].abs().sum() > 0), key
