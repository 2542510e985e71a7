"""`python -m pipeline.bench loader`: the dispatcher, and the comparison on a tiny set."""
from __future__ import annotations

import pytest
import torch

from pipeline.bench.__main__ import available, main


def test_dispatcher_lists_and_refuses(capsys):
    assert "loader" in available() and "torchvision_ssl" not in available()
    assert main([]) == 2
    assert main(["no_such_bench"]) == 2
    assert "unknown benchmark 'no_such_bench'" in capsys.readouterr().err


def test_compare_reports_both_loaders(tiny):
    from pipeline.bench.loader import compare

    r = compare(tiny.train, tiny.root / "train", size=16, batch_size=8, workers=1, rounds=1, seed=0,
                device=torch.device("cpu"))
    assert r["images"] == 32 and r["ffcv_img_s"] > 0 and r["torchvision_img_s"] > 0
    assert r["ratio"] == pytest.approx(r["ffcv_img_s"] / r["torchvision_img_s"], rel=0.01)


def test_view_specs_parse_into_the_loaders_layouts_and_bad_ones_are_named():
    from pipeline.bench.views import ViewLayout, parse_views

    assert parse_views("2x32") == ViewLayout(32, (0.08, 1.0))
    multi = parse_views("2x32+6x16", (0.2, 1.0), (0.05, 0.2))
    assert multi == ViewLayout(32, (0.2, 1.0), 6, 16, (0.05, 0.2)) and multi.views_per_image == 8
    assert parse_views("2x224@0.14-1+6x96@0.05-0.14").describe() == "2x224@0.14-1+6x96@0.05-0.14"
    patches = parse_views("patches:20x32@0.25")
    assert patches.loader_kwargs() == {"image_size": 32, "patches": 20, "patch_scale": 0.25}
    assert patches.views_per_image == 20
    for bad, match in [("3x32", "pair of large views first"), ("2x32+6x16+2x8", "at most one group"),
                       ("2x32+6xx16", r"'6xx16' is not NxSIZE"), ("2x32@0.5-0.2", "0 < LOW <= HIGH <= 1"),
                       ("patches:20x32", "one scale"), ("patches:20x32@0.1-0.3", "one scale")]:
        with pytest.raises(ValueError, match=match):
            parse_views(bad)


@pytest.mark.parametrize("spec", ["2x16+3x8", "patches:4x16@0.25"])
def test_compare_cuts_the_same_views_on_both_sides(tiny, spec):
    from pipeline.bench.loader import compare
    from pipeline.bench.torchvision_ssl import torchvision_loader
    from pipeline.bench.views import parse_views

    layout = parse_views(spec)
    views, _ = next(iter(torchvision_loader(tiny.root / "train", size=16, batch_size=4, num_workers=0,
                                            layout=layout)))
    expected = [(4, 3, 16, 16)] * 2 + [(4, 3, 8, 8)] * 3 if layout.local_views else [(4, 3, 16, 16)] * 4
    assert [tuple(v.shape) for v in views] == expected
    r = compare(tiny.train, tiny.root / "train", size=16, batch_size=8, workers=1, rounds=1, seed=0,
                device=torch.device("cpu"), layout=layout)
    assert r["views"] == layout.describe() and r["views_per_image"] == len(expected)
    assert r["ffcv_img_s"] > 0 and r["torchvision_img_s"] > 0
