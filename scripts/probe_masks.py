"""Why a probe representation sees what it sees: on the probe's own test clips, how much of the moving
body each person mask keeps, and how close each flow is to the truth.

    python3 scripts/probe_masks.py --clips 24 --out docs/probe_results/masks.json

For test clips of ``hmore probe --task action`` (full size, every class in turn) and the pairs t -> t+1 for
t in 0, 5, 10, this measures against the generator's ground truth:

* ``recall_body`` / ``recall_moving``: share of the person's pixels (all / those whose local flow is above
  1 px, i.e. limbs moving relative to the body) inside MediaPipe's selfie mask (p > 0.5; what
  ``dis_masked`` keeps) and inside H-MoRe's subject map (> 0.5; where its world flow is non-zero with
  ``world_gate="hard"``), and ``precision`` (share of the mask on the person);
* ``world_epe_body``: EPE on the person's pixels of DIS medium, DIS x MediaPipe mask, and H-MoRe's world
  flow; ``leakage``: mean flow magnitude off the person (the background motion a classifier also sees).

Writes JSON (atomically) with the commit, machine and weights' SHA-256.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PAIRS = (0, 5, 10)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=24, help="test clips (default 24: two per action class)")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--out", required=True, help="JSON file to write")
    a = ap.parse_args(argv)
    if a.clips < 1:
        ap.error(f"--clips: expected >= 1, got {a.clips}")

    import hmore
    from hmore.data._io import atomic_write_json
    from hmore.data.segment import batch_person_prior, quiet_native
    from hmore.evaluation.runners import load_model
    from hmore.models.classical import dis_flow_batch
    from hmore.probe.data import SIZES, clip_specs, render_spec
    from hmore.provenance import git_commit, machine

    torch.set_num_threads(1)
    size = SIZES["full"]
    test = [s for s in clip_specs("action", size) if s.split == "test"]
    by_class: dict[int, list] = {}
    for s in test:
        by_class.setdefault(s.label, []).append(s)
    order = [c[i] for i in range(max(map(len, by_class.values()))) for c in by_class.values() if i < len(c)]
    specs = order[: a.clips]
    model, info = load_model(a.weights)
    model.eval()
    sums: dict[str, float] = {}

    def add(k, num, den):
        sums[k + "_num"] = sums.get(k + "_num", 0.0) + float(num)
        sums[k + "_den"] = sums.get(k + "_den", 0.0) + float(den)

    for spec in specs:
        clip = render_spec(spec, size)
        f0 = torch.from_numpy(clip.frames[list(PAIRS)]).permute(0, 3, 1, 2).contiguous()
        f1 = torch.from_numpy(clip.frames[[t + 1 for t in PAIRS]]).permute(0, 3, 1, 2).contiguous()
        body = torch.from_numpy(clip.masks[list(PAIRS)])
        gt = torch.from_numpy(clip.world_flow[list(PAIRS)]).permute(0, 3, 1, 2)
        moving = body & (torch.from_numpy(clip.local_flow[list(PAIRS)]).norm(dim=-1) > 1.0)
        with quiet_native():
            prior = batch_person_prior(f0.float() / 255.0)
        mp = prior[:, 0] > 0.5
        with torch.no_grad():
            kw = {"prior": prior} if getattr(model.config, "person_prior", False) else {}
            o = model(f0.float() / 255.0, f1.float() / 255.0, **kw)
        hm = o["subject_map"][:, 0] > 0.5
        dis = dis_flow_batch(f0, f1, "dis_medium")
        flows = {"dis": dis, "dis_masked": dis * mp[:, None], "hmore_world": o["world_flow"]}
        for name, m in (("mediapipe_mask", mp), ("hmore_map", hm)):
            add(f"{name}.recall_body", (m & body).sum(), body.sum())
            add(f"{name}.recall_moving", (m & moving).sum(), moving.sum())
            add(f"{name}.precision", (m & body).sum(), m.sum())
        for name, fl in flows.items():
            err = (fl - gt).norm(dim=1)
            add(f"{name}.world_epe_body", err[body].sum(), body.sum())
            add(f"{name}.leakage", fl.norm(dim=1)[~body].sum(), (~body).sum())

    res: dict[str, dict] = {}
    for k in sorted({k.rsplit("_", 1)[0] for k in sums}):
        method, metric = k.split(".")
        den = sums[k + "_den"]
        res.setdefault(method, {})[metric] = round(sums[k + "_num"] / den, 4) if den else None
    doc = {"clips": len(specs), "pairs_per_clip": list(PAIRS), "size": [size.height, size.width],
           "results": res, "weights_sha256": info.get("sha256"), "weights_step": info.get("step"),
           "commit": git_commit(), "machine": machine("cpu"), "hmore_version": hmore.__version__}
    atomic_write_json(a.out, doc)
    for method, r in res.items():
        print(method, r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
