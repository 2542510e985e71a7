import pytest
import torch

from pipeline.evaluation.backbone_io import BackboneLoadError, load_backbone, random_backbone
from pipeline.models import export_backbone_state_dict


def test_round_trip_and_same_random_init(tmp_path):
    a, dim = random_backbone("resnet18", "imagenet", seed=3)
    b, _ = random_backbone("resnet18", "imagenet", seed=3)
    c, _ = random_backbone("resnet18", "imagenet", seed=4)
    assert dim == 512
    assert torch.equal(a.conv1.weight, b.conv1.weight) and not torch.equal(a.conv1.weight, c.conv1.weight)
    torch.save(export_backbone_state_dict(a), tmp_path / "bb.pt")
    loaded, _ = load_backbone(tmp_path / "bb.pt", "resnet18", "imagenet")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in a.state_dict().items())


def test_wrong_architecture_names_keys(tmp_path):
    net, _ = random_backbone("resnet18", "imagenet", seed=0)
    torch.save(export_backbone_state_dict(net), tmp_path / "bb.pt")
    with pytest.raises(BackboneLoadError, match=r"bb.pt does not fit model.arch='resnet50'.*missing \d+ key.*wrong shape for"):
        load_backbone(tmp_path / "bb.pt", "resnet50", "imagenet")
    with pytest.raises(BackboneLoadError, match=r"stem='small'.*wrong shape for 1 key\(s\) \(conv1.weight\)"):
        load_backbone(tmp_path / "bb.pt", "resnet18", "small")


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(BackboneLoadError, match="not found"):
        load_backbone(tmp_path / "none.pt", "resnet18", "imagenet")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneLoadError, match="junk.pt: not a readable"):
        load_backbone(tmp_path / "junk.pt", "resnet18", "imagenet")
    torch.save({"model": {"w": torch.zeros(1)}, "step": 3}, tmp_path / "ckpt.pt")
    with pytest.raises(BackboneLoadError, match="flat state_dict"):
        load_backbone(tmp_path / "ckpt.pt", "resnet18", "imagenet")
