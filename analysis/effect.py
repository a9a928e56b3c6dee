#!/usr/bin/env python3
"""Did the synthetic data help? The method's effect in a sample-complexity
sweep, stated per real-subset size with its uncertainty over seeds:

    python analysis/effect.py results/ [--method method] [--baseline prompt] [--csv effect.csv]

For every number of real images n it compares, on final test accuracy
(mean ± standard deviation over the seeds of each point, ddof 1):

- real + generated (source `mixed`, tags `--method`) against real alone;
- the method's samples against the baseline's (`--baseline` tags), both as
  real + generated and as generated only (source `synthetic`).

A difference counts as shown when it exceeds two standard deviations of the
difference (sqrt(sd_a^2 + sd_b^2)); each line says "shown", "not shown" or,
where it went the other way by that margin, "reversed". The effect is
measured, never tuned here: the test accuracies are read, not selected on.

Exit code 2 with a message when the folder has no complete run, or no real
run to compare with.
"""
import argparse
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import dinv_read  # noqa: E402
from dinv_read import InputError, summarise  # noqa: E402


def _point(table, n, source, tags=""):
    """(mean, sd, count) of final accuracy at n real images for a source, or None."""
    rows = table[(table["num_data"] == n) & (table["source"] == source)]
    if tags:
        rows = rows[rows["syn_tags"] == tags]
    if len(rows) == 0:
        return None
    if len(rows) > 1:  # several models or amounts: this summary is per single curve
        raise InputError(f"{len(rows)} curves for {source} {tags} at {n} real images (several models or amounts); "
                         "run effect.py on a folder of one model and one amount")
    r = rows.iloc[0]
    sd = r["final_accuracy_std"]
    return float(r["final_accuracy_mean"]), (0.0 if math.isnan(sd) else float(sd)), int(r["final_accuracy_count"])


def compare(name, a, b):
    """One comparison row: a against b."""
    diff = a[0] - b[0]
    sd = math.sqrt(a[1] ** 2 + b[1] ** 2)
    if a[2] < 2 or b[2] < 2:
        verdict = "one seed: no error bar"
    elif diff > 2 * sd:
        verdict = "shown"
    elif diff < -2 * sd:
        verdict = "reversed"
    else:
        verdict = "not shown"
    return {"comparison": name, "a_mean": a[0], "a_std": a[1], "a_n": a[2], "b_mean": b[0], "b_std": b[1],
            "b_n": b[2], "difference": diff, "difference_std": sd, "verdict": verdict}


def effects(table, method, baseline):
    rows = []
    for n in sorted(v for v in table["num_data"].unique() if v > 0):
        real = _point(table, n, "real")
        mixed = _point(table, n, "mixed", method)
        pairs = [(f"real + {method} vs real", mixed, real)]
        if baseline:
            pairs.append((f"real + {method} vs real + {baseline}", mixed, _point(table, n, "mixed", baseline)))
            pairs.append((f"{method} vs {baseline} (generated only)", _point(table, n, "synthetic", method),
                          _point(table, n, "synthetic", baseline)))
        for name, a, b in pairs:
            if a is not None and b is not None:
                rows.append({"num_data": int(n), **compare(name, a, b)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="folder of results/<run>.h5 files (one model, one synthetic amount)")
    parser.add_argument("--method", default="method", help="syn.tags of the method's samples (default method)")
    parser.add_argument("--baseline", default="prompt", help="syn.tags of the baseline's samples ('' for none)")
    parser.add_argument("--csv", help="also write the comparisons to this CSV file")
    args = parser.parse_args()
    table = summarise(dinv_read.load_results(args.results))
    if not (table["source"] == "real").any():
        raise InputError(f"{args.results}: no run on real images only (source real) to compare with")
    rows = effects(table, args.method, args.baseline)
    if not rows:
        raise InputError(f"{args.results}: no real subset size has both a real run and a mixed run of tags "
                         f"'{args.method}'")
    for r in rows:
        print(f"n={r['num_data']:>6}  {r['comparison']:<40} {100 * r['a_mean']:6.2f} ± {100 * r['a_std']:.2f} "
              f"(n={r['a_n']}) vs {100 * r['b_mean']:6.2f} ± {100 * r['b_std']:.2f} (n={r['b_n']}): "
              f"{100 * r['difference']:+6.2f} ± {100 * r['difference_std']:.2f} points, {r['verdict']}")
    if args.csv:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.csv, index=False)


if __name__ == "__main__":
    dinv_read.run_main(main)
