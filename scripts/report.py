"""Markdown report and PNG figures from the results JSON of scripts/reproduce.py.

Example:
    python scripts/report.py --results results/mini-voc.json --out-dir results/ --name mini-voc
"""
import sys

from gankd.cli import main_guard


def main():
    from gankd.experiments.report import main as report
    return report()


if __name__ == '__main__':
    sys.exit(main_guard(main))
