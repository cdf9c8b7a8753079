"""Generate the PyTorch reference fixtures of tests/test_torch_checkpoints.py (run with torch, not in the suite).

For every backbone family, a tiny configuration of the *source* architecture (timm, the official
EMOv2, RevCol and vovnet-detectron2 code) gets random weights from a fixed seed and is saved in
the format its authors publish (timm: ``.safetensors``, official releases: ``.pth``), together
with its outputs (logits and the C2..C5 features) on fixed inputs. For every published variant, a
manifest (``manifests.json.gz``) lists the real checkpoint's tensor names and shapes (the source model's state dict,
built on torch's meta device, so nothing is allocated or downloaded).

    /work/torchenv/bin/python tools/torch_reference.py --sources DIR [--out tests/fixtures/pretrained]

``DIR`` holds the source trees, named ``<owner>+<repo>`` (huggingface+pytorch-image-models,
zhangzjn+EMOv2, megvii-research+RevCol, youngwanLEE+vovnet-detectron2), each with an optional
``COMMIT`` file naming its git commit (recorded in SOURCES.json). Their optional imports
(torchvision, detectron2, cv2) are stubbed: only model definitions are used.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

SEED = 0
SOURCE_FOLDERS = {
    "timm": "huggingface+pytorch-image-models",
    "vovnet-detectron2": "youngwanLEE+vovnet-detectron2",
    "EMOv2": "zhangzjn+EMOv2",
    "RevCol": "megvii-research+RevCol",
}
TORCHVISION_STUBS = (
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.transforms.v2",
    "torchvision.ops",
    "torchvision.datasets",
    "torchvision.io",
    "torchvision.utils",
    "torchvision.models",
    "torchvision.models.feature_extraction",
)
SIZE = 64


class _PlaceholderMeta(type(nn.Module)):
    def __getattr__(cls, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return f"{cls.__name__}.{attr}"


class _Permissive(types.ModuleType):
    """A stubbed optional dependency: any attribute is a placeholder class (never used by the models)."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        placeholder = _PlaceholderMeta(attr, (nn.Module,), {})
        setattr(self, attr, placeholder)
        return placeholder


def stub(name: str, **attrs) -> types.ModuleType:
    module = _Permissive(name)
    module.__dict__.update(attrs)
    module.__path__ = []
    sys.modules[name] = module
    return module


def install_stubs() -> None:
    class _Unused(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

    for name in TORCHVISION_STUBS:
        stub(name)
    stub("torchvision.ops.misc", FrozenBatchNorm2d=_Unused)
    for name in TORCHVISION_STUBS[1:]:
        parent, child = name.rsplit(".", 1)
        setattr(sys.modules[parent], child, sys.modules[name])
    stub("cv2")

    class _Registry:
        def register(self, *args):
            return args[0] if args and callable(args[0]) else (lambda f: f)

        register_module = register

    stub("detectron2")
    stub("detectron2.layers", FrozenBatchNorm2d=_Unused, ShapeSpec=dict, get_norm=lambda norm, c: nn.BatchNorm2d(c))
    stub("detectron2.modeling")
    stub("detectron2.modeling.backbone", Backbone=nn.Module)
    stub("detectron2.modeling.backbone.build", BACKBONE_REGISTRY=_Registry())
    stub("detectron2.modeling.backbone.fpn", FPN=_Unused, LastLevelMaxPool=_Unused)
    return _Registry


def load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def randomise(model: nn.Module, seed: int) -> None:
    """Every float parameter and buffer random, so each one changes the outputs (layer scales included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_var":
                t.copy_(torch.rand(t.shape, generator=generator) + 0.5)
            elif t.ndim >= 2 and t.numel() // t.shape[0] > 1:
                fan_in = t.numel() // t.shape[0]
                t.copy_(torch.randn(t.shape, generator=generator) / fan_in**0.5)
            elif leaf in ("gamma", "weight") or leaf.startswith("alpha"):
                t.copy_(torch.rand(t.shape, generator=generator) * 0.5 + 0.75)
            else:
                t.copy_(torch.randn(t.shape, generator=generator) * 0.1)


def run(model: nn.Module, inputs: torch.Tensor, feature_modules: list[nn.Module], logits_of) -> dict[str, np.ndarray]:
    features = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: features.append(out)) for m in feature_modules]
    model.eval()
    with torch.no_grad():
        out = model(inputs)
    for h in hooks:
        h.remove()
    result = {f"C{i + 2}": f.numpy() for i, f in enumerate(features[-4:])}
    if logits_of is not None:
        result["logits"] = logits_of(out).numpy()
    return result


def save_case(out: Path, case: str, model: nn.Module, outputs: dict, fmt: str) -> None:
    state = OrderedDict((k, v.detach().contiguous()) for k, v in model.state_dict().items())
    if fmt == "safetensors":
        save_file(dict(state), out / f"{case}.safetensors")
    else:
        torch.save({"model": state}, out / f"{case}.pth")
    np.savez(out / f"{case}_outputs.npz", **outputs)


def manifest(model_fn) -> dict[str, list[int]]:
    try:
        with torch.device("meta"):  # nothing allocated
            model = model_fn()
    except RuntimeError:  # constructors that read a tensor's value (torch.linspace(...).item())
        model = model_fn()
    return {k: list(v.shape) for k, v in model.state_dict().items()}


FULL_SIZE = {  # published architecture -> (format, feature modules, logits of the output)
    "timm_resnet50": ("safetensors", ["layer1", "layer2", "layer3", "layer4"], lambda o: o),
    "timm_resnet50d": ("safetensors", ["layer1", "layer2", "layer3", "layer4"], lambda o: o),
    "timm_mobilenetv2_100": ("safetensors", ["blocks.1", "blocks.2", "blocks.4", "bn2"], lambda o: o),
    "timm_ese_vovnet39b": ("safetensors", ["stages.0", "stages.1", "stages.2", "stages.3"], lambda o: o),
    "detectron2_V-19-slim-dw-eSE": ("pth", ["stage2", "stage3", "stage4", "stage5"], None),
    "official_EMO2_1M_k5_hybrid": ("pth", ["stage1.1", "stage2.1", "stage3.7", "stage4.2"], lambda o: o["out"]),
    "official_revcol_tiny": ("pth", [], lambda o: o[0][-1]),
}


def write_full_size(folder: Path, constructors: dict, stage_names: list[str]) -> None:
    """Each :data:`FULL_SIZE` architecture with random weights, saved in its source's format, and its outputs on
    one 224 px input (``<name>_outputs.npz``; the input in ``inputs_224.npz``)."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = torch.randn((1, 3, 224, 224), generator=torch.Generator().manual_seed(SEED))
    np.savez(folder / "inputs_224.npz", images=inputs.numpy())
    for seed, (name, (fmt, feature_names, logits_of)) in enumerate(FULL_SIZE.items(), start=20):
        model = constructors[name]()
        randomise(model, seed)
        if name == "official_revcol_tiny":  # the last column's four levels are C2..C5
            features = []
            hook = model.subnet3.register_forward_hook(lambda _m, _i, o, kept=features: kept.extend(o))
            model.eval()
            with torch.no_grad():
                logits = logits_of(model(inputs))
            hook.remove()
            outputs = {f"C{i + 2}": f.numpy() for i, f in enumerate(features)} | {"logits": logits.numpy()}
        else:
            modules = [model.get_submodule(n) for n in feature_names]
            outputs = run(model, inputs, modules, logits_of)
        save_case(folder, name, model, outputs, fmt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=Path, required=True, help="folder of the source trees (<owner>+<repo>)")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/pretrained"), help="fixture folder")
    parser.add_argument(
        "--full-size",
        type=Path,
        help="also write published architectures at full size with random weights and their outputs at 224 px "
        "into this folder (hundreds of MB: not fixtures; benchmarks/torch_equivalence.py --full-size reads them)",
    )
    args = parser.parse_args()
    registry = install_stubs()
    timm_root = args.sources / "huggingface+pytorch-image-models"
    sys.path.insert(0, str(timm_root))
    import timm
    from timm.models._efficientnet_builder import decode_arch_def, round_channels
    from timm.models.efficientnet import EfficientNet

    def tiny_mobilenet_v2() -> nn.Module:
        """timm's ``_gen_mobilenet_v2`` (its arch_def, width 0.35, depth 0.25) with num_features 64 instead
        of 1280, which its signature does not expose: it would be 90 % of the fixture."""
        arch_def = [
            ["ds_r1_k3_s1_c16"],
            ["ir_r2_k3_s2_e6_c24"],
            ["ir_r3_k3_s2_e6_c32"],
            ["ir_r4_k3_s2_e6_c64"],
            ["ir_r3_k3_s1_e6_c96"],
            ["ir_r3_k3_s2_e6_c160"],
            ["ir_r1_k3_s1_e6_c320"],
        ]
        return EfficientNet(
            block_args=decode_arch_def(arch_def, depth_multiplier=0.25),
            num_features=64,
            stem_size=32,
            round_chs_fn=lambda c: round_channels(c, 0.35),
            norm_layer=nn.BatchNorm2d,
            act_layer=nn.ReLU6,
            num_classes=10,
        )

    from timm.models.resnet import BasicBlock, Bottleneck, ResNet
    from timm.models.vovnet import VovNet

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    inputs = torch.randn((1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(SEED))
    np.savez(out / "inputs.npz", images=inputs.numpy())
    sources = {"timm": f"huggingface/pytorch-image-models {timm.__version__}"}

    def stages_of(model, names):
        return [model.get_submodule(n) for n in names]

    # timm ResNet v1.5 (bottleneck and basic) and ResNet-D.
    widths = (8, 8, 16, 16)
    cases = {
        "timm_resnet_bottleneck": dict(block=Bottleneck, layers=(1, 1, 1, 1), channels=widths),
        "timm_resnet_basic": dict(block=BasicBlock, layers=(1, 1, 1, 1), channels=widths),
        "timm_resnet_d": dict(
            block=Bottleneck, layers=(1, 1, 1, 1), channels=widths, stem_width=8, stem_type="deep", avg_down=True
        ),
    }
    for seed, (case, kwargs) in enumerate(cases.items(), start=1):
        model = ResNet(num_classes=10, **kwargs)
        randomise(model, seed)
        outputs = run(model, inputs, stages_of(model, ["layer1", "layer2", "layer3", "layer4"]), lambda o: o)
        save_case(out, case, model, outputs, "safetensors")

    # timm MobileNetV2, width 0.35, one block per stage, a 64-channel last conv.
    model = tiny_mobilenet_v2()
    randomise(model, 4)
    last = [model.blocks[1], model.blocks[2], model.blocks[4], model.bn2]
    save_case(out, "timm_mobilenet_v2", model, run(model, inputs, last, lambda o: o), "safetensors")

    # timm ese-VoVNet (3x3 convs, two blocks in stages 4-5) and its depthwise form.
    vovnets = {
        "timm_ese_vovnet": dict(
            stem_chs=[8, 8, 16],
            stage_conv_chs=[8, 8, 8, 8],
            stage_out_chs=[16, 16, 24, 24],
            layer_per_block=2,
            block_per_stage=[1, 1, 2, 2],
            residual=True,
            depthwise=False,
            attn="ese",
        ),
        "timm_ese_vovnet_dw": dict(
            stem_chs=[8, 8, 8],
            stage_conv_chs=[8, 12, 12, 16],
            stage_out_chs=[16, 16, 24, 24],
            layer_per_block=2,
            block_per_stage=[1, 1, 1, 1],
            residual=True,
            depthwise=True,
            attn="ese",
        ),
    }
    for seed, (case, cfg) in enumerate(vovnets.items(), start=5):
        model = VovNet(cfg, num_classes=10)
        randomise(model, seed)
        outputs = run(model, inputs, list(model.stages), lambda o: o)
        save_case(out, case, model, outputs, "safetensors")

    # The official vovnet-detectron2 backbone (eSE on every block), BN in place of FrozenBN.
    d2_root = args.sources / "youngwanLEE+vovnet-detectron2"
    d2 = load_file("vovnet_d2", d2_root / "vovnet" / "vovnet.py")
    d2._STAGE_SPECS["tiny"] = {
        "stem": [8, 8, 16],
        "stage_conv_ch": [8, 8, 8, 8],
        "stage_out_ch": [16, 16, 24, 24],
        "layer_per_block": 2,
        "block_per_stage": [1, 1, 2, 2],
        "eSE": True,
        "dw": False,
    }

    def d2_cfg(body: str):
        vovnet = types.SimpleNamespace(NORM="BN", CONV_BODY=body)
        backbone = types.SimpleNamespace(FREEZE_AT=-1)
        return types.SimpleNamespace(MODEL=types.SimpleNamespace(VOVNET=vovnet, BACKBONE=backbone))

    stage_names = ["stage2", "stage3", "stage4", "stage5"]
    model = d2.VoVNet(d2_cfg("tiny"), 3, out_features=stage_names)
    randomise(model, 7)
    outputs = run(model, inputs, stages_of(model, stage_names), None)
    save_case(out, "detectron2_vovnet", model, outputs, "pth")
    sources["vovnet-detectron2"] = "youngwanLEE/vovnet-detectron2"

    # The official EMOv2: BN stages 1-2, hybrid window attention in 3-4 (windows of 2: 2x2 grids at 64 px).
    emo_root = args.sources / "zhangzjn+EMOv2"
    stub("model", MODEL=registry())
    stub("model.lib_emo")
    load_file("model.lib_emo.basic_modules", emo_root / "model" / "lib_emo" / "basic_modules.py")
    emo = load_file("model.lib_emo.emo2", emo_root / "model" / "lib_emo" / "emo2.py")
    tiny_emo = dict(
        depths=[1, 2, 2, 2],
        embed_dims=[8, 16, 16, 24],
        exp_ratios=[2.0, 2.0, 2.0, 2.0],
        norm_layers=["bn_2d", "bn_2d", "ln_2d", "ln_2d"],
        act_layers=["silu", "silu", "gelu", "gelu"],
        dw_kss=[5, 5, 5, 5],
        dim_heads=[8, 8, 8, 8],
        window_sizes=[2, 2, 2, 2],
        hybrid_eopss=[[0], [0], [3], [3]],
        qkv_bias=True,
    )
    model = emo.EMO2(num_classes=10, **tiny_emo)
    randomise(model, 8)
    last = [model.stage1[-1], model.stage2[-1], model.stage3[-1], model.stage4[-1]]
    save_case(out, "official_emov2", model, run(model, inputs, last, lambda o: o["out"]), "pth")
    sources["EMOv2"] = "zhangzjn/EMOv2"

    # The official RevCol, with its intermediate supervision (classifiers and decoders) as released.
    revcol_root = args.sources / "megvii-research+RevCol"
    sys.path.insert(0, str(revcol_root))
    revcol = load_file("models.revcol", revcol_root / "models" / "revcol.py")
    model = revcol.FullNet([8, 8, 16, 16], [1, 1, 2, 1], 4, kernel_size=3, num_classes=10, save_memory=False)
    randomise(model, 9)
    features = []
    hook = model.subnet3.register_forward_hook(lambda _m, _i, o: features.extend(o))
    model.eval()
    with torch.no_grad():
        logits = model(inputs)[0][-1]
    hook.remove()
    outputs = {f"C{i + 2}": f.numpy() for i, f in enumerate(features)} | {"logits": logits.numpy()}
    save_case(out, "official_revcol", model, outputs, "pth")
    sources["RevCol"] = "megvii-research/RevCol"

    # The storage formats: every dtype a state dict holds, a non-contiguous view, in both torch formats.
    generator = torch.Generator().manual_seed(10)
    weight = torch.randn((4, 3, 3, 3), generator=generator)
    tensors = OrderedDict(
        [
            ("conv.weight", weight),
            ("conv.weight_t", weight.permute(2, 3, 1, 0)),  # strides, not a copy
            ("bn.running_var", torch.rand(4, generator=generator, dtype=torch.float64)),
            ("half", torch.randn(5, generator=generator).half()),
            ("bfloat16", torch.randn(5, generator=generator).bfloat16()),
            ("bn.num_batches_tracked", torch.tensor(7)),
        ]
    )
    torch.save({"state_dict": tensors, "epoch": 3}, out / "formats_zip.pth")
    torch.save({"state_dict": tensors, "epoch": 3}, out / "formats_legacy.pth", _use_new_zipfile_serialization=False)
    np.savez(
        out / "formats.npz",
        **{k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in tensors.items()},
    )

    # Manifests of the published checkpoints.
    manifests = {
        **{
            f"timm_{n}": (lambda n=n: timm.create_model(n))
            for n in (
                "resnet18",
                "resnet34",
                "resnet50",
                "resnet101",
                "resnet50d",
                "resnet101d",
                "mobilenetv2_050",
                "mobilenetv2_100",
                "mobilenetv2_140",
                "ese_vovnet39b",
                "ese_vovnet57b",
            )
        },
        **{
            f"detectron2_{body}": (lambda body=body: d2.VoVNet(d2_cfg(body), 3, out_features=stage_names))
            for body in (
                "V-19-slim-dw-eSE",
                "V-19-eSE",
                "V-39-eSE",
                "V-57-eSE",
            )
        },
        **{
            f"official_{n}": (lambda n=n: getattr(emo, n)())
            for n in (
                "EMO2_1M_k5_hybrid",
                "EMO2_2M_k5_hybrid",
                "EMO2_5M_k5_hybrid",
            )
        },
        **{
            f"official_{n}": (lambda n=n: getattr(revcol, n)(save_memory=False))
            for n in (
                "revcol_tiny",
                "revcol_small",
                "revcol_base",
            )
        },
    }
    tables = {name: manifest(model_fn) for name, model_fn in manifests.items()}
    with gzip.open(out / "manifests.json.gz", "wt") as f:
        json.dump(tables, f, separators=(",", ":"))
    if args.full_size:
        write_full_size(args.full_size, manifests, stage_names)
    commits = {
        name: (args.sources / folder / "COMMIT").read_text().strip()
        for name, folder in SOURCE_FOLDERS.items()
        if (args.sources / folder / "COMMIT").is_file()
    }
    record = {"torch": torch.__version__, "sources": sources, "commits": commits}
    (out / "SOURCES.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
