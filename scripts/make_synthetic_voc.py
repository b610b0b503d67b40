#!/usr/bin/env python
"""Generate the synthetic shape-detection dataset in the Pascal VOC layout.

Example::

    python scripts/make_synthetic_voc.py --out data/synth --num-train 200 \\
        --num-test 50 --image-size 256 --seed 0 --coco-json

Bad arguments print one ``error:`` line on stderr and exit with status 2.
"""
import argparse
import sys
from pathlib import Path

# Run from a clone without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gankd.data.synthetic import make_synthetic_voc  # noqa: E402

PROG = "make_synthetic_voc.py"


class _OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are a single stderr line."""

    def error(self, message):
        sys.stderr.write(f"{PROG}: error: {message}\n")
        sys.exit(2)


def _parse_args(argv):
    """Parse command-line flags."""
    p = _OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="dataset root (devkit folder) to write")
    p.add_argument("--num-train", type=int, default=200, help="trainval images (default 200)")
    p.add_argument("--num-test", type=int, default=50, help="test images (default 50)")
    p.add_argument("--image-size", type=int, default=256, help="square image side, >= 64 (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--classes", default=None,
                   help="comma-separated shape names to use as classes (default: the 6 default shapes)")
    p.add_argument("--coco-json", action="store_true",
                   help="also write annotations/instances_{train,test}.json (COCO format)")
    p.add_argument("--difficulty", default="standard", choices=["standard", "easy"],
                   help="easy: at most 3 objects, a quarter of the image or larger, no clutter")
    return p.parse_args(argv)


def main(argv=None):
    """Entry point; returns the process exit status."""
    args = _parse_args(argv)
    classes = None
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    try:
        info = make_synthetic_voc(args.out, num_train=args.num_train, num_test=args.num_test,
                                  image_size=args.image_size, seed=args.seed,
                                  difficulty=args.difficulty,
                                  classes=classes, coco_json=args.coco_json)
    except ValueError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 2
    except OSError as e:
        sys.stderr.write(f"{PROG}: error: cannot write dataset: {e}\n")
        return 1
    print(f"wrote {info['num_train']} trainval + {info['num_test']} test images "
          f"({info['num_boxes_train']} + {info['num_boxes_test']} boxes, "
          f"{len(info['classes'])} classes: {', '.join(info['classes'])}) to {info['root']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
