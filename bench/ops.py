"""The op library's benchmarks (issue 15), every family in one run.

Run: python bench/ops.py [--quick] [--only elem,index,linalg,conv]

Each family's file prints its rows as ratios to hand-written NumPy measured in the same run
(and to JAX where the `bench` extra is installed): embedding gather + scatter-add gradient
(bench/ops_index.py), GP likelihood + gradient and attention gradient (bench/ops_linalg.py),
CNN loss + gradient (bench/ops_conv.py), Lennard-Jones energy, forces and HVP and the new
elementwise ops (bench/ops_elem.py). Targets: within 1.3x of hand NumPy, gather/scatter within
1.1x of the fastest exact NumPy method.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FAMILIES = ("index", "linalg", "conv", "elem")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--only", default=",".join(FAMILIES), help="families, comma-separated")
    args = ap.parse_args()
    for family in args.only.split(","):
        if family not in FAMILIES:
            ap.error(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
        print(f"-- {family} (bench/ops_{family}.py)")
        sys.stdout.flush()
        importlib.import_module(f"ops_{family}").run(3 if args.quick else 7)


if __name__ == "__main__":
    main()
