"""``python -m vision_core.backbones {list,table}``: the registered backbones and their sizes.

Training, QAT and export of a classifier on any backbone are the classify app's
(``python -m apps.classify``).
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from vision_core.logs import log_to_console


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vision_core.backbones",
        description="List and measure the suite's backbones (train one with python -m apps.classify).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered backbone names")
    table = sub.add_parser("table", help="parameters and MACs at 224x224 (1000 classes) beside the references")
    table.add_argument("names", nargs="*", help="backbones to measure (default: all)")
    table.add_argument("--markdown", action="store_true", help="print a Markdown table (as in benchmarks/README.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log_to_console()

    from vision_core.backbones.registry import list_backbones

    if args.command == "list":
        print("\n".join(list_backbones()))
        return 0
    from vision_core.backbones.report import format_table, measure

    names = args.names or list_backbones()
    rows = [measure(n) for n in tqdm(names, desc="measuring backbones", unit="model", file=sys.stderr)]
    print(format_table(rows, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
