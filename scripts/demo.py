"""Draw a saved detector's detections on images (GluonCV's plot_bbox) and print them.

One PNG per image in --out (same name, .png), at the image's own size; one line per
detection on stdout: image, class, score, box (xmin ymin xmax ymax, in the image's pixels).

Example:
    python scripts/demo.py --params params/ssd_128_mobilenet0.25_gankd_from_resnet18_v1_best.params \
        data/synthetic_voc/VOC2007/JPEGImages/000001.jpg --out demo --thresh 0.5
"""
import argparse

from gankd.cli import main_guard


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--params', required=True, help='params file (JSON beside it)')
    p.add_argument('images', nargs='+', metavar='IMAGE')
    p.add_argument('--out', required=True, help='folder for the PNGs')
    p.add_argument('--thresh', type=float, default=0.5, help='lowest score drawn and printed')
    args = p.parse_args()
    from gankd.deploy import demo
    for line in demo(args.params, args.images, args.out, args.thresh):
        print(line)


if __name__ == '__main__':
    main_guard(main)
