"""Ahead-of-time compilation of every Triton kernel of the edge family for real GPUs, without a GPU.

Without a GPU the triton backend only ever runs through the interpreter (TRITON_INTERPRET=1), which
accepts code the real compiler rejects (Python control flow on tensor values, mixed integer widths in
``tl.where``, ...). Here every op runs once under the interpreter on a small input while each kernel
launch is recorded (kernel, arguments, launch options); every distinct specialization is then compiled
with ``triton.compile`` for a real GPU, all the way to a cubin (ptxas included). A kernel that does not
compile fails its test with the compiler's message. On a GPU machine the recorder sees the JIT's
launches instead; the compilation is the same.

Coverage. Every op and option of the edge family, each kernel with every value of its branch-selecting
constexprs, in float32; float16/bfloat16 (the other GPU dtypes) for every kernel they reach, in a
representative option each (their code differs only in loads/stores); bool/uint8 where accepted. Every
specialization is compiled for sm_90; the float32/bool/uint8 ones for sm_80 too. That keeps the file
under a minute on 2 cores. ``HMORE_TRITON_COMPILE_FULL=1`` runs the full dtype x option matrix, every
specialization for both archs, and also the JIT's own specialization of int arguments equal to 1 (it
makes them constexprs: NI = 1, C = 1 ... take other code paths) -- about 5 minutes on 2 cores.

Inputs are 9 x 33 (2 x 65 for distance_transform): one program per image, yet the full-size tiles that
real images get (16 x 64; 128-wide columns and 64 x 64 candidate blocks), as the tile constexprs only
stop growing there. (The interpreter costs per program and per op, not per element.)

Compilation runs in worker subprocesses without TRITON_INTERPRET: in an interpreting process
triton.language's own @jit helpers (tl.cdiv, tl.max, ...) are InterpretedFunctions the compiler cannot
lower, and the interpreter's patches of triton.language leak into code generation. Two workers take
jobs from one queue while this process goes on recording; each distinct job is compiled once.

Signatures follow the recorded arguments: tensors -> ``*<dtype>``, Python ints -> i32 (i64 if they do
not fit), floats -> fp32, bools -> u1, parameters annotated ``tl.constexpr`` (and None) -> constexpr.

canny must match the reference bit for bit, so its float64 arithmetic must not be contracted into FMAs
(one rounding instead of two): the PTX of every canny kernel is checked to hold no ``fma.rn.f64``.

``python -m pytest tests/test_triton_compile.py -s`` prints, per kernel and arch, the shared memory and
the number of warps.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import queue
import subprocess
import sys
import threading
import time

# The worker is this file run as a script: it must not import pytest/conftest machinery.
if __name__ != "__main__":
    import pytest
    import torch

    try:
        import triton
        import triton.language as tl
    except ImportError:
        pytest.skip("triton is not installed: there are no Triton kernels to compile", allow_module_level=True)
    # the ops run under the interpreter on CPU tensors (conftest sets TRITON_INTERPRET=1 without a GPU),
    # else through the JIT on a GPU
    DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET", "0") == "1" else "cuda"
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("neither TRITON_INTERPRET=1 nor a GPU: the ops cannot run to record their launches",
                    allow_module_level=True)

FULL = os.environ.get("HMORE_TRITON_COMPILE_FULL", "0") == "1"
ARCHS = (80, 90)
WORKERS = 2
# canny's float64 pipeline is bit-exact against the reference: no fused multiply-add in these kernels
FMA_FREE_PREFIX = "_canny_"


# ------------------------------------------------------------------------------------------------
# worker (runs without TRITON_INTERPRET)
# ------------------------------------------------------------------------------------------------
def _compile_one(req):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    spec = req["spec"]
    t0 = time.perf_counter()
    try:
        kernel = getattr(importlib.import_module(spec["module"]), spec["name"])
        src = ASTSource(fn=kernel, signature=spec["signature"], constexprs=spec["constexprs"])
        c = triton.compile(src, target=GPUTarget("cuda", req["arch"], 32), options=dict(spec["options"]) or None)
        if "cubin" not in c.asm:
            raise RuntimeError(f"no cubin among the compiled stages {sorted(c.asm)}")
        return {"ok": True, "shared": c.metadata.shared, "num_warps": c.metadata.num_warps,
                "fma_f64": c.asm["ptx"].count("fma.rn.f64"), "seconds": time.perf_counter() - t0}
    except Exception as e:  # the compiler's message becomes the test's failure message
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t0}


def _worker():
    # Replies go to a private copy of stdout; anything else that writes to fd 1 lands on stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for line in sys.stdin:
        out.write(json.dumps(_compile_one(json.loads(line))) + "\n")
        out.flush()


if __name__ == "__main__":
    _worker()
    sys.exit(0)


# ------------------------------------------------------------------------------------------------
# recording (runs in the test process: interpreter on CPU, or the JIT on a GPU machine)
# ------------------------------------------------------------------------------------------------
import hmore_kernels.triton.edges as E  # noqa: E402

_PTR = {
    torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float64: "*fp64",
    torch.bool: "*i1", torch.uint8: "*u8", torch.int32: "*i32", torch.int64: "*i64",
}


def _is_constexpr(annotation):
    # edges.py uses `from __future__ import annotations`: annotations are the strings "tl.constexpr"
    if isinstance(annotation, str):
        return annotation.split(".")[-1] == "constexpr"
    return annotation is tl.constexpr


def _specs(kernel, args, kwargs):
    """The compile specs of one recorded launch: kernel, signature, constexprs, launch options; in FULL
    mode also the JIT's specialization, where int arguments equal to 1 are constexprs."""
    fn = kernel.fn
    sig = inspect.signature(fn)
    names = set(sig.parameters)
    bound = sig.bind(*args, **{k: v for k, v in kwargs.items() if k in names})
    bound.apply_defaults()
    ann = inspect.get_annotations(fn)
    signature, constexprs, ones = {}, {}, []
    for name, v in bound.arguments.items():
        if _is_constexpr(ann.get(name)) or v is None:
            signature[name], constexprs[name] = "constexpr", v
        elif isinstance(v, torch.Tensor):
            signature[name] = _PTR[v.dtype]
        elif isinstance(v, bool):
            signature[name] = "u1"
        elif isinstance(v, int):
            signature[name] = "i32" if -(2**31) <= v < 2**31 else "i64"
            if v == 1:
                ones.append(name)
        elif isinstance(v, float):
            signature[name] = "fp32"
        else:
            raise TypeError(f"{fn.__name__}: no Triton type for argument {name} of type {type(v).__name__}")
    options = {k: v for k, v in kwargs.items() if k not in names}
    spec = {"module": fn.__module__, "name": fn.__name__, "signature": signature, "constexprs": constexprs,
            "options": options}
    out = [spec]
    if FULL and ones:
        out.append({**spec, "signature": {**signature, **dict.fromkeys(ones, "constexpr")},
                    "constexprs": {**constexprs, **dict.fromkeys(ones, 1)}})
    return out


def _key(spec):
    return json.dumps(spec, sort_keys=True)


@contextlib.contextmanager
def _recording():
    """Record every launch of the edge kernels. They are InterpretedFunctions under the interpreter
    and JITFunctions on a GPU; wrap_triton ends in ``kernel[grid](...)``, i.e. ``<class>.run``."""
    cls = type(E._sobel_fwd_kernel)
    orig = cls.run
    calls = []

    def run(self, *args, grid, warmup, **kwargs):
        calls.extend(_specs(self, args, dict(kwargs)))
        return orig(self, *args, grid=grid, warmup=warmup, **kwargs)

    cls.run = run
    try:
        yield calls
    finally:
        cls.run = orig


# ------------------------------------------------------------------------------------------------
# the compile workers
# ------------------------------------------------------------------------------------------------
class _Compiler:
    """WORKERS worker processes fed from one job queue (a job: one spec for one arch), each by a thread
    that sends a job and waits for its result; the test process meanwhile records the next ops."""

    def __init__(self, tmp):
        env = dict(os.environ)
        env.pop("TRITON_INTERPRET", None)
        env["TRITON_DEFAULT_FP_FUSION"] = "1"  # the JIT's default in Triton 3.9, said explicitly
        env["TRITON_CACHE_DIR"] = str(tmp / "cache")  # cold: every run really compiles
        # The worker runs as a script, so sys.path[0] is tests/, not the checkout: without this it would
        # import the installed hmore_kernels (another checkout's kernels) instead of the ones under test.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.jobs = queue.Queue()
        self.results = {}  # (spec key, arch) -> result
        self.submitted = set()
        self.dead = []
        self.cond = threading.Condition()
        self.workers = []
        for i in range(WORKERS):
            err = open(tmp / f"worker{i}.err", "w+")
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            t = threading.Thread(target=self._feed, args=(p, err), daemon=True)
            self.workers.append((p, err, t))
            t.start()

    def _feed(self, p, err):
        while (job := self.jobs.get()) is not None:
            key, arch, spec = job
            try:
                p.stdin.write(json.dumps({"spec": spec, "arch": arch}) + "\n")
                p.stdin.flush()
                line = p.stdout.readline()
            except OSError:
                line = ""
            with self.cond:
                if not line:
                    err.flush()
                    err.seek(0)
                    self.dead.append(f"a compile worker exited ({p.poll()}):\n{err.read()[-4000:]}")
                    self.cond.notify_all()
                    return
                self.results[(key, arch)] = json.loads(line)
                self.cond.notify_all()

    def submit(self, jobs):
        """jobs: (spec, arch) pairs; each distinct one is compiled once per session."""
        for spec, arch in jobs:
            key = _key(spec)
            if (key, arch) not in self.submitted:
                self.submitted.add((key, arch))
                self.jobs.put((key, arch, spec))

    def wait(self, jobs, timeout=900):
        self.submit(jobs)
        want = {(_key(s), a) for s, a in jobs}
        with self.cond:
            done = self.cond.wait_for(lambda: want <= self.results.keys() or self.dead, timeout)
            if not want <= self.results.keys():
                raise RuntimeError("\n".join(self.dead) if done else f"compilation took over {timeout} s")
            return {k: self.results[k] for k in want}

    def close(self):
        for _ in self.workers:
            self.jobs.put(None)
        for p, err, t in self.workers:
            t.join(timeout=60)
            p.stdin.close()
            p.wait(timeout=60)
            err.close()


def _jobs(case, specs):
    """(spec, arch) pairs of a case: sm_90 always; sm_80 in FULL mode or for non-low-precision cases."""
    archs = ARCHS if FULL or not case.lowp else (90,)
    return [(s, a) for s in specs for a in archs]


@pytest.fixture(scope="module")
def recorded(request, tmp_path_factory):
    """Run the selected op cases under the recorder up front, handing each case's jobs to the workers at
    once; yields (compiler, {case id: jobs, or the exception the op raised})."""
    selected = {item.callspec.params["case"] for item in request.session.items
                if getattr(item, "callspec", None) and item.function is test_kernels_compile}
    compiler = _Compiler(tmp_path_factory.mktemp("triton_compile"))
    per_case = {}
    try:
        for case in CASES:
            if case.id not in selected:
                continue
            try:
                with _recording() as specs:
                    case.run()
            except Exception as e:  # reported by that case's test
                per_case[case.id] = e
                continue
            per_case[case.id] = _jobs(case, specs + _extra_specs(specs))
            compiler.submit(per_case[case.id])
        yield compiler, per_case
    finally:
        compiler.close()


# ------------------------------------------------------------------------------------------------
# the op cases
# ------------------------------------------------------------------------------------------------
H, W = 9, 33  # one 16 x 64 tile per image: the full tile shape, at the interpreter's least cost
LOWP = (torch.float16, torch.bfloat16)
ops = torch.ops.hmore_triton


def _img(C, dtype, scale=1.0):
    x = torch.rand(1, C, H, W, generator=torch.Generator().manual_seed(0)) * scale
    return (x.round().to(dtype) if dtype == torch.uint8 else x.to(dtype)).to(DEVICE)


def _mask(dtype, h=H, w=W):
    m = torch.zeros(1, 1, h, w)
    m[:, :, 2:7, 5:25] = 1.0
    m[:, :, 3:5, 10:15] = 0.5
    return (m.bool() if dtype == torch.bool else m.to(dtype)).to(DEVICE)


def _sobel(dt, normalized, border):
    ops._sobel_backward(ops.sobel(_img(2, dt), normalized, border), normalized, border)


def _gm(dt, kernel, reduce):
    x = _img(2, dt)  # the channel count is a runtime int
    mag = ops.gradient_magnitude(x, kernel, reduce, 0.0)
    ops._gradient_magnitude_backward(torch.ones_like(mag), x, mag, kernel, reduce, 0.0)


def _mb(dt, mode):
    m = _mask(dt)
    out = ops.mask_boundary(m, mode, 1)  # the width is a runtime int: 1 is the interpreter's cheapest
    if dt != torch.bool:  # a bool mask has no gradient
        ops._mask_boundary_backward(torch.ones_like(out), m, mode, 1)


def _fe(dt, mask_dt, band, normalize):
    f = _img(2, dt)
    m = None if mask_dt is None else _mask(mask_dt)
    out = ops.flow_edges(f, m, band, normalize)
    ops._flow_edges_backward(torch.ones_like(out), f, m, band, normalize)


def _canny(dt, C, l2):
    ops.canny(_img(C, dt, scale=255.0), 20.0, 60.0, 3, l2)


def _dt(dt, indices):
    ops.distance_transform(_mask(dt, h=2, w=65), indices)  # 128-wide columns, 64 x 64 blocks


class _Case:
    def __init__(self, id, fn, *args):
        self.id, self.fn, self.args = id, fn, args
        self.lowp = args[0] in LOWP

    def run(self):
        self.fn(*self.args)


def _name(dt):
    return str(dt).split(".")[-1]


def _cases():
    cases = []
    for dt in (torch.float32,) + LOWP:
        n = _name(dt)
        # float32: every option; float16/bfloat16: the first of each group (FULL: every option)
        every = FULL or dt == torch.float32

        def pick(options):
            return options if every else options[:1]

        for normalized, border in pick(((True, "replicate"), (True, "reflect101"), (True, "zeros"),
                                        (False, "replicate"))):
            cases.append(_Case(f"sobel-{n}-{border}-{'norm' if normalized else 'raw'}", _sobel, dt, normalized,
                               border))
        for kernel, reduce in pick((("sobel", "sum"), ("scharr", "none"), ("sobel", "none"), ("scharr", "sum"))):
            cases.append(_Case(f"gradient_magnitude-{n}-{kernel}-{reduce}", _gm, dt, kernel, reduce))
        for mode in ("inner", "outer", "thick"):  # the modes select different loads: all, in every dtype
            cases.append(_Case(f"mask_boundary-{n}-{mode}", _mb, dt, mode))
        # the band needs both a mask and a band; a float mask is converted to the flow's dtype like a bool
        # (the band is a runtime int: 1 is the interpreter's cheapest)
        for mask_dt, band, normalize in (((None, 1, True), (torch.bool, 1, True)) + (
                ((None, 1, False), (torch.bool, 1, False), (dt, 1, True), (torch.bool, None, False))
                if every else ())):
            mname = "nomask" if mask_dt is None else ("boolmask" if mask_dt == torch.bool else "floatmask")
            cases.append(_Case(f"flow_edges-{n}-{mname}-band{band}-{'norm' if normalize else 'raw'}", _fe, dt,
                               mask_dt, band, normalize))
        for l2 in pick((False, True)):  # the magnitude kernel is float64 whatever the input
            cases.append(_Case(f"canny-{n}-rgb-{'L2' if l2 else 'L1'}", _canny, dt, 3, l2))
        for indices in pick((False, True)):  # only the column pass reads the mask
            cases.append(_Case(f"distance_transform-{n}-{'idx' if indices else 'noidx'}", _dt, dt, indices))
    for mode in ("inner", "outer", "thick"):
        cases.append(_Case(f"mask_boundary-bool-{mode}", _mb, torch.bool, mode))
    for C, l2 in ((1, False), (3, True)) + (((1, True), (3, False)) if FULL else ()):
        cases.append(_Case(f"canny-uint8-{'gray' if C == 1 else 'rgb'}-{'L2' if l2 else 'L1'}", _canny,
                           torch.uint8, C, l2))
    for dt, indices in ((torch.bool, False), (torch.uint8, True)) + (
            ((torch.bool, True), (torch.uint8, False)) if FULL else ()):
        cases.append(_Case(f"distance_transform-{_name(dt)}-{'idx' if indices else 'noidx'}", _dt, dt, indices))
    return cases


CASES = _cases()


def _extra_specs(specs):
    """Specializations the small inputs cannot reach: distance_transform's int64 path (images with
    (H-1)^2 + (W-1)^2 >= 2^31 - 1, e.g. 46341 x 2)."""
    return [{**s, "constexprs": {**s["constexprs"], "WIDE": True, "BIG": 2**63 - 1}}
            for s in specs if s["name"] == "_dt_row_kernel" and not s["constexprs"]["WIDE"]]


def _fmt(spec):
    consts = ", ".join(f"{k}={v}" for k, v in spec["constexprs"].items())
    ptrs = ", ".join(f"{k}:{v}" for k, v in spec["signature"].items() if v.startswith("*"))
    opts = f" {spec['options']}" if spec["options"] else ""
    return f"{spec['name']}[{consts}]({ptrs}){opts}"


def compile_failures(compiler, jobs, fma_free=None, why=""):
    """Wait for every distinct (kernel, arch) of ``jobs`` to compile; print each one's shared memory, warps,
    float64 FMAs and compile time, and return the failure messages: compiler errors, and ``fma.rn.f64``
    in the PTX of a kernel ``fma_free(name)`` says must have none (``why`` says why). The recorded
    specializations of every family's AOT test go through here."""
    results = compiler.wait(jobs)
    failures, seen = [], set()
    for spec, arch in jobs:
        k = _key(spec)
        if (k, arch) in seen:
            continue
        seen.add((k, arch))
        r = results[(k, arch)]
        if not r["ok"]:
            failures.append(f"sm_{arch} {_fmt(spec)}:\n{r['error']}")
            continue
        print(f"sm_{arch}  shared={r['shared']:>6}  num_warps={r['num_warps']}  fma.f64={r['fma_f64']:>3}"
              f"  {r['seconds']:5.2f}s  {_fmt(spec)}")
        if fma_free is not None and fma_free(spec["name"]) and r["fma_f64"]:
            failures.append(f"sm_{arch} {_fmt(spec)}: {r['fma_f64']} fma.rn.f64 in the PTX; {why}")
    return failures


@pytest.mark.parametrize("case", [c.id for c in CASES])
def test_kernels_compile(recorded, case):
    compiler, per_case = recorded
    jobs = per_case[case]
    if isinstance(jobs, Exception):
        raise jobs
    assert jobs, "no kernel launch was recorded"
    failures = compile_failures(compiler, jobs, lambda name: name.startswith(FMA_FREE_PREFIX),
                                "canny's float64 arithmetic must round like the reference (no multiply-add "
                                "contraction)")
    assert not failures, f"{len(failures)} failure(s):\n\n" + "\n\n".join(failures)
