"""``benchmarks/segment_latency.py``: the models it builds, the head-share and speed-up arithmetic, a tiny run.

No timing is asserted (the numbers are the benchmark's): the tests check which models are measured,
that the summary's shares and ratios follow from the timed p50s, and that a 64 px run converts,
audits and times every file.
"""

from __future__ import annotations

import importlib

import pytest
from conftest import ROOT


@pytest.fixture
def segment_latency(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as `python benchmarks/segment_latency.py` runs it
    return importlib.import_module("segment_latency")


def test_models_are_the_presets_heads_on_the_swapped_backbones(segment_latency):
    ffnet = segment_latency.model_fields("ffnet_mobile_resnet18", 512)
    assert (ffnet["architecture"], ffnet["ffnet_head"], ffnet["upsample"], ffnet["output_stride"]) == (
        "ffnet",
        "B",
        "nearest",
        4,
    )
    assert (ffnet["backbone"], ffnet["backbone_variant"], ffnet["input_size"]) == ("resnet18", None, 512)
    assert segment_latency.model_fields("ffnet_mobile_mobilenet_v2", 512)["backbone"] == "mobilenet_v2"
    lraspp = segment_latency.model_fields("lraspp_mobilenet_v2", 256)
    assert (lraspp["architecture"], lraspp["backbone"], lraspp["output_stride"], lraspp["input_size"]) == (
        "lraspp",
        "mobilenet_v2",
        8,
        256,
    )


def test_share_is_what_the_whole_spends_beyond_the_part(segment_latency):
    assert segment_latency.share(10.0, 4.0) == pytest.approx(0.6)
    assert segment_latency.share(8.0, 8.0) == 0.0
    with pytest.raises(ValueError, match="positive"):
        segment_latency.share(0.0, 1.0)


def _row(threads: int, segmenter: float, backbone: float, logits: float, paired: float) -> dict:
    return {
        "threads": threads,
        "segmenter": {"p50_ms": segmenter, "p90_ms": segmenter + 1},
        "backbone": {"p50_ms": backbone, "p90_ms": backbone + 1},
        "logits": {"p50_ms": logits, "p90_ms": logits + 1},
        "paired_ratio": paired,
    }


def test_summary_shares_and_speedups_follow_from_the_p50s(segment_latency):
    files = {
        "segmenter_int8": {"macs": 1000},
        "backbone_int8": {"macs": 250},
        "segmenter_float32": {"macs": 1000},
        "backbone_float32": {"macs": 250},
    }
    latency = {
        "float32": [_row(1, 120.0, 40.0, 90.0, 3.0), _row(2, 64.0, 24.0, 48.0, 2.5)],
        "int8": [_row(1, 30.0, 10.0, 24.0, 4.0), _row(2, 16.0, 4.0, 12.0, 4.0)],
    }
    summary = segment_latency.summarize(files, latency)
    assert list(summary) == ["1", "2"]
    one, two = summary["1"], summary["2"]
    assert one["segmenter_int8_p50_ms"] == 30.0 and one["backbone_float32_p90_ms"] == 41.0
    assert one["head_share_int8"] == pytest.approx(2 / 3)
    assert one["head_share_float32"] == pytest.approx(2 / 3)
    assert one["head_share_int8_paired"] == pytest.approx(0.75)
    assert two["head_share_int8"] == pytest.approx(0.75)
    assert two["head_share_float32"] == pytest.approx(0.625)
    assert two["head_share_float32_paired"] == pytest.approx(0.6)
    assert one["resize_softmax_share_int8"] == pytest.approx(0.2)
    assert one["resize_softmax_share_float32"] == pytest.approx(0.25)
    assert two["resize_softmax_share_int8"] == pytest.approx(0.25)
    assert one["head_share_of_macs"] == two["head_share_of_macs"] == pytest.approx(0.75)
    assert one["int8_speedup_segmenter"] == pytest.approx(4.0)
    assert one["int8_speedup_backbone"] == pytest.approx(4.0)
    assert two["int8_speedup_segmenter"] == pytest.approx(4.0)
    assert two["int8_speedup_backbone"] == pytest.approx(6.0)


@pytest.mark.slow
def test_tiny_run_converts_audits_and_times_every_file(segment_latency):
    result = segment_latency.measure(
        ("lraspp_mobilenet_v2",),
        size=64,
        num_classes=3,
        threads=(1,),
        warmup=0,
        runs=2,
        calibration_count=1,
        op_breakdown=True,
    )
    model = result["models"]["lraspp_mobilenet_v2"]
    assert sorted(model["files"]) == [
        f"{part}_{dtype}" for part in ("backbone", "logits", "segmenter") for dtype in ("float32", "int8")
    ]
    for name, info in model["files"].items():
        dtype = name.rsplit("_", 1)[1]
        assert info["compute_dtype"] == dtype
        assert info["audit"]["all_int8"] is True if dtype == "int8" else "audit" not in info
    files = model["files"]
    assert files["segmenter_int8"]["macs"] == files["logits_int8"]["macs"] > files["backbone_int8"]["macs"] > 0
    # the shipped segmenter ends in the resize to the input and the softmax; its logits part ends before them
    ops = {part: [op for op, _, _ in files[f"{part}_int8"]["audit"]["op_summary"]] for part in ("segmenter", "logits")}
    assert "SOFTMAX" in ops["segmenter"] and "SOFTMAX" not in ops["logits"]
    summary = model["summary"]["1"]
    latency = {dtype: model["latency"][dtype][0] for dtype in ("int8", "float32")}
    for dtype, row in latency.items():
        assert row["threads"] == 1
        assert summary[f"head_share_{dtype}"] == pytest.approx(
            (row["segmenter"]["p50_ms"] - row["backbone"]["p50_ms"]) / row["segmenter"]["p50_ms"]
        )
    assert summary["int8_speedup_segmenter"] == pytest.approx(
        latency["float32"]["segmenter"]["p50_ms"] / latency["int8"]["segmenter"]["p50_ms"]
    )
    for dtype, breakdown in model["op_breakdown_1_thread"].items():
        timed = {kind["kind"].split()[0]: kind["ops"] for kind in breakdown["by_kind"]}
        assert timed["SOFTMAX"] == 1 and timed["RESIZE_BILINEAR"] == 2, dtype  # LR-ASPP's upsampling, then the input's
    assert "SOFTMAX" in segment_latency.breakdown_table(result)
    assert result["settings"]["input_size"] == 64 and result["machine"]["logical_cpus"] >= 1
