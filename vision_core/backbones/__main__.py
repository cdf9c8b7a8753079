"""``python -m vision_core.backbones {list,table,demo,train,qat,export}``: backbones from the shell.

``demo`` runs the whole path on built-in shapes; ``train``, ``qat`` and ``export`` are
its three steps on a run folder (see :mod:`vision_core.export.ship`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from tqdm import tqdm

QAT_LOSSES = ("distillation", "labels")  # vision_core.export.ship.QAT_LOSSES, without importing TensorFlow
LOSS_HELP = ("fine-tune target: the float model's logits (default; keeps its predictions) or the class "
             "labels (pull held-out predictions toward the training labels)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vision_core.backbones",
                                     description="List, measure, train and ship the suite's backbones.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered backbone names")
    table = sub.add_parser("table", help="parameters and MACs at 224x224 (1000 classes) beside the references")
    table.add_argument("names", nargs="*", help="backbones to measure (default: all)")
    table.add_argument("--markdown", action="store_true", help="print a Markdown table (as in the README)")
    demo = sub.add_parser("demo", help="train a shapes classifier, QAT it, export every form, score every form")
    train = sub.add_parser("train", help="train a shapes classifier into a run folder")
    for command in (demo, train):
        command.add_argument("--backbone", default="resnet18", help="registered backbone name (default: resnet18)")
        command.add_argument("--input-size", type=int, default=64, help="square input size in pixels (default: 64)")
        command.add_argument("--images", type=int, default=8000,
                             help="generated training images (default: 8000; 400 more are held out)")
        command.add_argument("--epochs", type=int,
                             help="training epochs (default: the backbone's recipe: 3; 6 for resnet50 and "
                                  "mobilenet_v2, 10 for resnet101; 3 for RevCol, after 6 for its first column alone)")
        command.add_argument("--out", default="runs/backbones/demo", help="run folder (default: runs/backbones/demo)")
    demo.add_argument("--qat-steps", type=int, default=100, help="QAT fine-tune steps (default: 100)")
    demo.add_argument("--qat-loss", choices=list(QAT_LOSSES), default="distillation", help=LOSS_HELP)
    demo.add_argument("--saved-models", default="saved_models", help="TF Serving root (default: saved_models)")
    qat = sub.add_parser("qat", help="fine-tune a run's model with TF-MOT and write its int8 QAT TFLite")
    qat.add_argument("--run", default="runs/backbones/demo", help="run folder (default: runs/backbones/demo)")
    qat.add_argument("--steps", type=int, default=100, help="fine-tune steps (default: 100)")
    qat.add_argument("--loss", choices=list(QAT_LOSSES), default="distillation", help=LOSS_HELP)
    qat.add_argument("--lr", type=float,
                     help="fine-tune Adam learning rate (default: 1e-6 distilling, 1e-4 on labels)")
    export = sub.add_parser("export", help="export a run's model and score every exported form")
    export.add_argument("--run", default="runs/backbones/demo", help="run folder (default: runs/backbones/demo)")
    export.add_argument("--format", nargs="+", default=["all"], choices=["tflite", "saved_model", "onnx", "all"],
                        help="forms to write (default: all): tflite = float32, float16, int8 PTQ, "
                             "int16x8 and the QAT int8 file if `qat` ran")
    export.add_argument("--saved-models", default="saved_models", help="TF Serving root (default: saved_models)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from vision_core.backbones.registry import list_backbones

    if args.command == "list":
        print("\n".join(list_backbones()))
    elif args.command == "table":
        from vision_core.backbones.report import format_table, measure

        names = args.names or list_backbones()
        rows = [measure(n) for n in tqdm(names, desc="measuring backbones", unit="model", file=sys.stderr)]
        print(format_table(rows, markdown=args.markdown))
    elif args.command == "demo":
        from vision_core.backbones.demo import run_demo

        metrics = run_demo(args.out, backbone=args.backbone, input_size=args.input_size, epochs=args.epochs,
                           qat_steps=args.qat_steps, qat_loss=args.qat_loss, saved_models_root=args.saved_models,
                           train_images=args.images)
        print(json.dumps(metrics["forms"], indent=2))
    elif args.command == "train":
        from vision_core.backbones.demo import train_shapes_classifier

        print(train_shapes_classifier(args.out, args.backbone, args.input_size, train_images=args.images,
                                      epochs=args.epochs))
    elif args.command == "qat":
        from vision_core.export.ship import run_qat

        print(json.dumps(run_qat(args.run, steps=args.steps, loss=args.loss, learning_rate=args.lr), indent=2))
    else:
        from vision_core.export.ship import export_forms, report
        from vision_core.quant.report import format_table

        forms = export_forms(args.run, args.format, args.saved_models)
        print("\n".join(f"{form}: {path}" for form, path in forms.items()))
        print(format_table(report(args.run, forms)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
