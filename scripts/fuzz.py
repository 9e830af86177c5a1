#!/usr/bin/env python3
"""Run the property-based fuzzer (tests/fuzz_ops.py) at full budget and print the counts per outcome.

    python3 scripts/fuzz.py                         # 10,000 cases per family on cpu and reference,
                                                    # 300 per family on triton (interpreter, small shapes)
    python3 scripts/fuzz.py --backends cpu --cases 20000 --families chamfer

Each (backend, family) runs in its own subprocess, which writes the case it is about to run to a file
first: a crash (a signal) is reported with that case instead of killing the run. Exit status 1 if any
case disagreed, mismatched, errored or crashed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from tests import fuzz_ops
last = {last!r}
def on_case(case):
    with open(last, "w") as f:
        f.write(repr(case))
counts, findings, known = fuzz_ops.fuzz({family!r}, {backend!r}, {cases}, small={small}, seed={seed},
                                        on_case=on_case, return_known=True)
print("RESULT " + json.dumps({{"counts": counts, "findings": findings + known}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="reference,cpu,triton")
    ap.add_argument("--families", default="edges,corr,chamfer,skeleton")
    ap.add_argument("--cases", type=int, default=10_000, help="cases per family on reference/cpu/cuda")
    ap.add_argument("--triton-cases", type=int, default=300, help="cases per family on interpreted triton")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    bad = 0
    for backend in args.backends.split(","):
        interp = backend == "triton" and not torch.cuda.is_available()
        n = args.triton_cases if interp else args.cases
        for family in args.families.split(","):
            env = dict(os.environ, PYTHONPATH=ROOT)
            if interp:
                env["TRITON_INTERPRET"] = "1"
            with tempfile.NamedTemporaryFile("w", suffix=".case", delete=False) as f:
                last = f.name
            code = CHILD.format(root=ROOT, last=last, family=family, backend=backend, cases=n, small=interp,
                                seed=args.seed)
            t0 = time.time()
            r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
            dt = time.time() - t0
            line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
            if r.returncode != 0 or not line:
                case = open(last).read() if os.path.exists(last) else "?"
                print(f"{backend:9s} {family:8s} CRASH (rc {r.returncode}) while running {case}\n{r.stderr[-3000:]}")
                bad += 1
                continue
            res = json.loads(line[0][7:])
            counts = res["counts"]
            total = sum(counts.values())
            print(f"{backend:9s} {family:8s} {total:6d} cases in {dt:6.1f} s: "
                  + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("agree", "rejected", "known", "disagree", "mismatch",
                                                                  "error")))
            seen = set()
            for outcome, case, detail in res["findings"]:
                key = (outcome, case.split("(")[0], detail[:40])
                if key not in seen:
                    seen.add(key)
                    print(f"    {outcome}: {case[:300]} -> {detail}")
            bad += sum(1 for f in res["findings"] if f[0] != "known")
            os.unlink(last)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
