"""Loading from state_dict + architecture, TorchScript and a MONAI bundle built here."""

import json

import pytest
import torch
import yaml
from monai.networks.nets import BasicUNet, DenseNet

from inference.cards import sha256_file
from inference.errors import ChecksumError, ModelCardError, ModelLoadError
from inference.loaders import load_model
from inference.registry import GenericPipeline, ModelRegistry

DENSE = {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "init_features": 4,
         "growth_rate": 4, "block_config": [1, 1], "bn_size": 1}


def _write_model(d, fmt, weights_name, arch=True, spatial=(32, 32)):
    card = {
        "id": d.name, "version": "1", "name": d.name, "task": "generic", "modality": "CT",
        "intended_use": "tests", "not_for_clinical_use": True, "license": "Apache-2.0",
        "input": {"channels": 1, "spatial_shape": list(spatial)},
        "weights": {"format": fmt, "files": [
            {"path": weights_name, "sha256": sha256_file(d / weights_name)}]},
        "labels": [{"key": "a", "name": "A", "code": {"value": "1", "meaning": "a"}},
                   {"key": "b", "name": "B", "code": {"value": "2", "meaning": "b"}}],
    }
    if arch:
        card["architecture"] = {"name": "monai.DenseNet", "params": DENSE}
    (d / "model.yaml").write_text(yaml.safe_dump(card), encoding="utf-8")


@pytest.fixture
def state_dict_dir(tmp_path):
    d = tmp_path / "toy-sd"
    d.mkdir()
    torch.manual_seed(0)
    net = DenseNet(**DENSE)
    torch.save(net.state_dict(), d / "w.pt")
    _write_model(d, "state_dict", "w.pt")
    return d, net


def test_state_dict_loads_strictly_and_matches(state_dict_dir):
    d, net = state_dict_dir
    loaded = load_model(d, torch.device("cpu"))
    x = torch.randn(2, 1, 32, 32)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.network(x), net(x))


def test_wrong_architecture_fails_strict_load(state_dict_dir):
    d, _ = state_dict_dir
    card = yaml.safe_load((d / "model.yaml").read_text())
    card["architecture"]["params"]["growth_rate"] = 8
    (d / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelLoadError, match="cannot load w.pt"):
        load_model(d, torch.device("cpu"))


def test_unknown_architecture_is_a_card_error(state_dict_dir):
    d, _ = state_dict_dir
    card = yaml.safe_load((d / "model.yaml").read_text())
    card["architecture"]["name"] = "os.system"
    (d / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelCardError, match="unknown architecture"):
        load_model(d, torch.device("cpu"))


def test_torchscript(tmp_path):
    d = tmp_path / "toy-ts"
    d.mkdir()
    net = DenseNet(**DENSE).eval()
    torch.jit.script(net).save(str(d / "model.ts"))
    _write_model(d, "torchscript", "model.ts", arch=False)
    loaded = load_model(d, torch.device("cpu"))
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.network(x), net(x), atol=1e-6)


def _bundle(root):
    d = root / "tiny_bundle"
    (d / "configs").mkdir(parents=True)
    (d / "models").mkdir()
    net_def = {"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 2,
               "in_channels": 1, "out_channels": 3, "features": [4, 4, 8, 8, 16, 4]}
    (d / "configs" / "inference.json").write_text(json.dumps({
        "bundle_root": ".", "device": "$torch.device('cpu')", "network_def": net_def}))
    (d / "configs" / "metadata.json").write_text(json.dumps({
        "name": "Tiny Bundle", "version": "0.0.1", "license": "Apache-2.0",
        "description": "generated for a test",
        "network_data_format": {
            "inputs": {"image": {"modality": "CT", "num_channels": 1, "spatial_shape": [32, 32]}},
            "outputs": {"pred": {"channel_def": {"0": "background", "1": "a", "2": "b"}}}}}))
    torch.manual_seed(1)
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 8, 8, 16, 4))
    torch.save(net.state_dict(), d / "models" / "model.pt")
    return d, net.eval()


def test_monai_bundle_loads_through_registry_and_verifies(tmp_path):
    d, net = _bundle(tmp_path)
    reg = ModelRegistry([tmp_path], device="cpu")
    assert reg.ids() == ["tiny-bundle"]
    card = reg.card("tiny-bundle")
    assert card.weights.format == "monai_bundle" and card.not_for_clinical_use
    assert [lab.name for lab in card.labels] == ["background", "a", "b"]
    pipe = reg.get("tiny-bundle")
    assert isinstance(pipe, GenericPipeline)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(pipe.forward(x), net(x), atol=1e-6)
    res = reg.verify("tiny-bundle")
    assert res.files_checked == 1 and "(1, 3, 32, 32)" in res.detail
    assert reg.get("tiny-bundle") is pipe  # loaded once


def test_registry_bad_checksum_is_clear(state_dict_dir, tmp_path):
    d, _ = state_dict_dir
    with (d / "w.pt").open("ab") as f:
        f.write(b"\0")
    reg = ModelRegistry([tmp_path], device="cpu")
    with pytest.raises(ChecksumError, match="sha256 mismatch for w.pt"):
        reg.get("toy-sd")
    with pytest.raises(ChecksumError):
        reg.verify("toy-sd")


def test_registry_rejects_duplicate_ids(state_dict_dir, tmp_path):
    d, _ = state_dict_dir
    other = tmp_path / "copy"
    other.mkdir()
    (other / "w.pt").write_bytes((d / "w.pt").read_bytes())
    (other / "model.yaml").write_text((d / "model.yaml").read_text())
    with pytest.raises(ModelCardError, match="model id toy-sd in both"):
        ModelRegistry([tmp_path], device="cpu").ids()
