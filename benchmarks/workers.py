"""Workers benchmark: the compute-bound case with --parallel-factor 1 and 2 (one inference thread per worker).

python benchmarks/workers.py [--features 1000] [--repeat 2]

With ``--repeat`` the three runs go in turn that many times; the median of each counts.
"""

from __future__ import annotations

import argparse
import statistics

from compute import end_to_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    runs = (("in process (all cores for inference)", None), ("1 worker", "1"), ("2 workers", "2"))
    measured: dict[str, list[float]] = {label: [] for label, _ in runs}
    for _ in range(args.repeat):
        for label, factor in runs:
            measured[label].append(end_to_end(args.features, factor))
    rates = {label: statistics.median(values) for label, values in measured.items()}
    print("| run | features/s (median) | each |")
    print("|---|---|---|")
    for label, rate in rates.items():
        print(f"| {label} | {rate:,.1f} | {', '.join(f'{v:,.1f}' for v in measured[label])} |")
    print(
        f"\nratio: 2 workers = {rates['2 workers'] / rates['1 worker']:.2f}x one worker (target >= 1.7); "
        f"{rates['2 workers'] / rates['in process (all cores for inference)']:.2f}x the in-process run"
    )


if __name__ == "__main__":
    main()
