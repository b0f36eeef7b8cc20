"""Checkpoint loading: every supported layout, and every way a file can be wrong."""
import os
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from lavaloop.conversion.loaders import load_checkpoint
from lavaloop.conversion.models.qnet import QNetwork
from lavaloop.errors import CheckpointError


def save(obj, path):
    torch.save(obj, path)
    return path


def test_plain_sequential_state_dict(tmp_path):
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    net = load_checkpoint(save(model.state_dict(), tmp_path / "q.pt"))
    assert [l.weight.shape for l in net.layers] == [(16, 6), (3, 16)] and net.n_actions == 3
    assert np.array_equal(net.layers[0].weight, model[0].weight.detach().numpy())


def test_named_modules_and_wrapped_state_dict(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    sd = Net().state_dict()
    net = load_checkpoint(save({"model_state_dict": sd, "step": 3}, tmp_path / "q.pt"))
    assert [l.name for l in net.layers] == ["fc1", "fc2", "out"]


def test_cleanrl_qnetwork_layout(tmp_path):
    q = QNetwork(4, 2, (120, 84))                 # CleanRL's dqn.py sizes and key names
    assert list(q.state_dict())[0] == "network.0.weight"
    net = load_checkpoint(save(q.state_dict(), tmp_path / "cleanrl.cleanrl_model"))
    obs = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    np.testing.assert_allclose(net.to_torch().q_values(obs), q.q_values(obs), rtol=1e-6)


def test_real_stable_baselines3_zip(tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    model = sb3.DQN("MlpPolicy", "CartPole-v1", learning_starts=50, policy_kwargs={"net_arch": [32, 32]}, seed=0)
    model.learn(200)
    model.save(tmp_path / "sb3.zip")
    net = load_checkpoint(tmp_path / "sb3.zip")
    assert net.format == "sb3" and [l.weight.shape for l in net.layers] == [(32, 4), (32, 32), (2, 32)]
    obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    with torch.no_grad():
        expected = model.q_net(torch.as_tensor(obs)).numpy()
    np.testing.assert_allclose(net.to_torch().q_values(obs), expected, rtol=1e-5, atol=1e-6)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path):
    path = save(QNetwork(4, 2).state_dict(), tmp_path / "q.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(path)


def test_zip_that_is_not_an_sb3_model(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="neither a stable-baselines3 model"):
        load_checkpoint(path)


@pytest.mark.parametrize("model, what", [
    (nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)), "running_mean"),
    (nn.Sequential(nn.Conv1d(4, 8, 3), nn.ReLU(), nn.Linear(8, 2)), "3-D weight"),
    (nn.Sequential(nn.Conv2d(4, 8, 5), nn.ReLU(), nn.Linear(8, 2)), "5x5 kernel"),
    (nn.Sequential(nn.Linear(4, 8), nn.Conv2d(4, 8, 3)), "follows a Linear layer"),
    (nn.Sequential(nn.Conv2d(4, 32, 8, 4), nn.ReLU(), nn.Conv2d(16, 8, 4, 2)), "expects 16 channels"),
    (nn.Sequential(nn.Conv2d(4, 32, 8, 4), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 2)), "expects 3136 inputs"),
    (nn.Sequential(nn.LSTM(4, 8)), "weight_ih_l0"),
])
def test_unsupported_layer_is_named(tmp_path, model, what):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(save(model.state_dict(), tmp_path / "bad.pt"))
    assert what in str(err.value)


def test_layers_that_do_not_chain(tmp_path):
    sd = OrderedDict([("a.weight", torch.zeros(8, 4)), ("a.bias", torch.zeros(8)),
                      ("b.weight", torch.zeros(2, 7)), ("b.bias", torch.zeros(2))])
    with pytest.raises(CheckpointError, match="expects 7 inputs"):
        load_checkpoint(save(sd, tmp_path / "bad.pt"))


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/lavaloop_pwned",))


def test_arbitrary_objects_are_never_unpickled(tmp_path):
    if os.path.exists("/tmp/lavaloop_pwned"):
        os.remove("/tmp/lavaloop_pwned")
    path = save({"network.0.weight": torch.zeros(2, 4), "payload": Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not os.path.exists("/tmp/lavaloop_pwned")
