"""Download datasets into the layout fedbench's readers read (``fedbench.data.files``).

Usage::

    python -m fedbench.data.download NAME [NAME ...] [--root DIR] [--force] [--dry-run]

``NAME`` is one of mnist, fashion_mnist, emnist, cifar10, cifar100, svhn. ``--root`` defaults to
``$FEDBENCH_DATA``, else ``~/.cache/fedbench/data``. ``--dry-run`` prints what would be fetched
(URL, md5, destination) and fetches nothing. Exit status 0 when every dataset is in place, 1 when a
download failed (one line on stderr), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fedbench.data.files import DATASET_NAMES, DownloadFailed, data_root, download_dataset, download_plan

PROG = "python -m fedbench.data.download"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Download datasets from their official URLs (md5-checked) into fedbench's data folder.",
    )
    p.add_argument("names", nargs="+", choices=DATASET_NAMES, metavar="NAME", help=", ".join(DATASET_NAMES))
    p.add_argument("--root", default=None, help="data folder (default: $FEDBENCH_DATA, else ~/.cache/fedbench/data)")
    p.add_argument("--force", action="store_true", help="fetch/unpack again even if the files are there")
    p.add_argument("--dry-run", action="store_true", help="print URL, md5 and destination of each file; fetch nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = data_root(args.root)
    for name in args.names:
        if args.dry_run:
            for item in download_plan(name, root):
                print(f"{name}\t{item.url}\tmd5={item.md5}\t-> {item.destination}")
            continue
        try:
            fetched = download_dataset(name, root, force=args.force)
        except DownloadFailed as e:
            print(f"{PROG}: {name}: {e}", file=sys.stderr)
            return 1
        print(f"{PROG}: {name}: {'downloaded into' if fetched else 'already present in'} {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
