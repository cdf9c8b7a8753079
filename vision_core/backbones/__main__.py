"""``python -m vision_core.backbones {list,table,demo}``: the backbone registry from the shell."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from tqdm import tqdm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vision_core.backbones",
                                     description="List, measure and demo the suite's backbones.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered backbone names")
    table = sub.add_parser("table", help="parameters and MACs at 224x224 (1000 classes) beside the references")
    table.add_argument("names", nargs="*", help="backbones to measure (default: all)")
    table.add_argument("--markdown", action="store_true", help="print a Markdown table (as in the README)")
    demo = sub.add_parser("demo", help="train a small classifier on built-in shapes, convert to int8, compare")
    demo.add_argument("--backbone", default="resnet18", help="registered backbone name (default: resnet18)")
    demo.add_argument("--input-size", type=int, default=64, help="square input size in pixels (default: 64)")
    demo.add_argument("--epochs", type=int, default=6, help="training epochs (default: 6)")
    demo.add_argument("--out", default="runs/backbones/demo", help="output folder (default: runs/backbones/demo)")
    demo.add_argument("--no-table", action="store_true", help="skip the parameter table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from vision_core.backbones.registry import list_backbones

    if args.command == "list":
        print("\n".join(list_backbones()))
        return 0
    from vision_core.backbones.report import format_table, measure

    if args.command == "table" or not args.no_table:
        names = getattr(args, "names", None) or list_backbones()
        rows = [measure(n) for n in tqdm(names, desc="measuring backbones", unit="model", file=sys.stderr)]
        print(format_table(rows, markdown=getattr(args, "markdown", True)))
    if args.command == "demo":
        from vision_core.backbones.demo import run_demo

        metrics = run_demo(args.out, backbone=args.backbone, input_size=args.input_size, epochs=args.epochs)
        print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
