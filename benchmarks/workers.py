"""Workers benchmark: the compute-bound case with --parallel-factor 1 and 2 (one inference thread per worker).

python benchmarks/workers.py [--features 1000]
"""

from __future__ import annotations

import argparse

from compute import end_to_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=1000)
    args = parser.parse_args()
    rates = {
        label: end_to_end(args.features, factor)
        for label, factor in (("in process (all cores for inference)", None), ("1 worker", "1"), ("2 workers", "2"))
    }
    print("| run | features/s |")
    print("|---|---|")
    for label, rate in rates.items():
        print(f"| {label} | {rate:,.1f} |")
    print(
        f"\nratio: 2 workers = {rates['2 workers'] / rates['1 worker']:.2f}x one worker (target >= 1.6); "
        f"{rates['2 workers'] / rates['in process (all cores for inference)']:.2f}x the in-process run"
    )


if __name__ == "__main__":
    main()
