"""Throughput of the synthetic world: studies (image + report + scanpath) per second at several image sizes, and
the end-to-end DatasetDict build (which also PNG-encodes the images into Arrow).

    python -m benchmarks.synthetic_world --num 20
"""

import argparse
import time

from modeling_gaze2report.data.synthetic import make_synthetic_dataset, make_synthetic_study


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=20, help="studies per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    args = parser.parse_args()
    if args.num < 1:
        parser.error(f"--num must be >= 1, got {args.num}")
    print(f"{'what':<28}{'image_size':>11}{'studies':>9}{'seconds':>9}{'images/s':>10}")
    for size in args.sizes:
        make_synthetic_study(0, image_size=size)
        start = time.perf_counter()
        for index in range(args.num):
            make_synthetic_study((0, index), image_size=size)
        seconds = time.perf_counter() - start
        print(f"{'make_synthetic_study':<28}{size:>11}{args.num:>9}{seconds:>9.2f}{args.num / seconds:>10.1f}")
        start = time.perf_counter()
        make_synthetic_dataset(num_studies=args.num, seed=0, image_size=size)
        seconds = time.perf_counter() - start
        print(f"{'make_synthetic_dataset':<28}{size:>11}{args.num:>9}{seconds:>9.2f}{args.num / seconds:>10.1f}")


if __name__ == "__main__":
    main()
