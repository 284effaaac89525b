"""Instructions per image of the feature paths, counted by valgrind's callgrind: deterministic,
so that a change can be measured on a machine whose timings other work disturbs.

    python bench/bench_instructions.py [--case hog_grey|hog_rgb|lbp|files|decode] [--calls 20 220]

Each case runs in a fresh interpreter under callgrind twice, once with the smaller and once with
the larger number of calls (images for the file cases, on one thread); the difference divided by
the difference of calls is one call's cost, with the interpreter's start and the one-off tables
cancelled out. The inputs are those of `bench_core.py --part features`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CASES = {
    "hog_grey": "HOG 64x64 grey uint8 (fc.hog)",
    "hog_rgb": "HOG 64x64 RGB uint8 (fc.hog, channel_axis=-1)",
    "lbp": "LBP uniform P=8 R=1 64x64 uint8 (fc.local_binary_pattern)",
    "files": "64x64 PNG file: decode + RGB HOG (fc.extract_features, 1 thread)",
    "decode": "64x64 PNG file: decode + raw pixels (fc.extract_features, 1 thread)",
}

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    import ferrocluster as fc

    case, calls, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = np.random.default_rng(0)
    image = (rng.random((64, 64)) * 255).astype(np.uint8)
    rgb = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    args = dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2))
    paths = sorted(str(p) for p in Path(folder).glob("*.png"))
    # One call first in both runs, so that one-off work (tables, thread pools) cancels out.
    if case == "hog_grey":
        run = lambda: fc.hog(image, **args)
    elif case == "hog_rgb":
        run = lambda: fc.hog(rgb, channel_axis=-1, **args)
    elif case == "lbp":
        run = lambda: fc.local_binary_pattern(image, 8, 1, "uniform")
    else:
        if case == "files":
            config = fc.FeatureConfig(size=(64, 64), hog=fc.Hog(cells_per_block=(2, 2)))
        else:
            config = fc.FeatureConfig(size=(64, 64), hog=None, pixels=fc.Pixels())
        fc.extract_features(paths[:1], config, n_threads=1)
        fc.extract_features(paths[:calls], config, n_threads=1)
        sys.exit(0)
    run()
    for _ in range(calls):
        run()
    """
)


def instructions(case: str, calls: int, folder: str) -> int:
    """Instructions callgrind counts in a child interpreter that makes `calls` calls of `case`."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", CHILD, case, str(calls), folder]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def write_pngs(folder: Path, n: int) -> None:
    """The synthetic 64×64 RGB images of bench_core.py, as PNG files."""
    import ferrocluster as fc
    from PIL import Image

    images, _ = fc.datasets.make_images(n=n, size=(64, 64), classes=8, seed=0)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:04}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), action="append", help="run only these cases (repeatable)")
    parser.add_argument("--calls", type=int, nargs=2, default=(20, 220), metavar=("FEW", "MANY"), help="calls of the two runs")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not on PATH")
    few, many = args.calls
    if not 0 < few < many:
        sys.exit("--calls needs 0 < FEW < MANY")
    with tempfile.TemporaryDirectory() as tmp:
        cases = args.case or list(CASES)
        if {"files", "decode"} & set(cases):
            write_pngs(Path(tmp), many)
        for case in cases:
            per_call = (instructions(case, many, tmp) - instructions(case, few, tmp)) / (many - few)
            print(f"{CASES[case]:<66} {per_call / 1e3:10.1f} k instructions per image", flush=True)


if __name__ == "__main__":
    main()
