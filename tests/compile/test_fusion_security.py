"""The fused-kernel cache: what it executes, where it keeps files, how long kernels live, and
regions too wide for one Python expression or one numba compile."""

import ast
import gc as pygc
import importlib
import os
import stat
import sys
from collections import OrderedDict

import numpy as np
import pytest

import graphc as gc
from graphc.compile import fusion
from graphc.ops.elementwise import Exp

function_mod = importlib.import_module("graphc.compile.function")  # the module, not gc.function

pytestmark = pytest.mark.skipif(not fusion.enabled(), reason="numba is not installed")
N = fusion.FUSE_MIN_SIZE


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache root and an empty structure cache, so every compile makes its kernels."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(function_mod, "_CACHE", OrderedDict())
    return tmp_path / "cache"


def small_kernel_function(n: int):
    g = gc.Graph()
    x = g.input("x", (n,))
    return gc.function([x], gc.tanh(gc.exp(x) * 2.0 + 1.0))


def live_kernels() -> tuple[int, int]:
    return (len(fusion._KERNELS),
            sum(name.startswith("graphc_kernel_") for name in sys.modules))


def recorded_sources(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = fusion.kernel

    def spy(source):
        seen.append(source)
        return real(source)
    monkeypatch.setattr(fusion, "kernel", spy)
    return seen


# -- finding 9: kernels are freed with the functions that use them ----------------------------
def test_kernels_are_freed_when_no_function_uses_them(cache, rng):
    pygc.collect()
    before = live_kernels()
    for k in range(40):  # 40 static shapes, 40 kernels
        f = small_kernel_function(N + k)
        assert "fused" in f.source
        if k < 2:  # compile two of them with numba too
            v = rng.uniform(-1, 1, N + k)
            np.testing.assert_allclose(f(v), np.tanh(np.exp(v) * 2.0 + 1.0), rtol=1e-13)
        assert live_kernels()[0] <= before[0] + 1
        del f
        function_mod._CACHE.clear()
        pygc.collect()
    assert live_kernels() == before


def test_functions_share_a_kernel_and_a_recompile_hits_numbas_disk_cache(cache, rng):
    v = rng.uniform(-1, 1, N + 7)
    f1 = small_kernel_function(N + 7)
    f2 = small_kernel_function(N + 7)
    (digest,) = [d for d, k in fusion._KERNELS.items() if k.py_func.__code__.co_filename
                 .startswith(str(cache))]
    k1 = fusion._KERNELS[digest]
    np.testing.assert_allclose(f1(v), np.tanh(np.exp(v) * 2.0 + 1.0), rtol=1e-13)
    assert k1.stats.cache_misses  # compiled here, written to the disk cache
    del f1, f2, k1
    function_mod._CACHE.clear()
    pygc.collect()
    assert digest not in fusion._KERNELS
    f3 = small_kernel_function(N + 7)
    k3 = fusion._KERNELS[digest]
    np.testing.assert_allclose(f3(v), np.tanh(np.exp(v) * 2.0 + 1.0), rtol=1e-13)
    assert k3.stats.cache_hits and not k3.stats.cache_misses


# -- finding 14: a planted module file never runs; an open folder is not used -----------------
def test_a_planted_module_file_is_not_executed(cache, tmp_path, monkeypatch, rng):
    sources = recorded_sources(monkeypatch)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "first"))
    small_kernel_function(N)
    function_mod._CACHE.clear()
    pygc.collect()
    fusion._KERNELS.clear()  # (freed already; the clear makes the old loader read the file)
    assert len(sources) == 1
    source = sources[0]

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(cache))
    folder = cache / "kernels"
    folder.mkdir(parents=True, mode=0o700)
    marker = tmp_path / "planted-ran"
    digest = fusion.hashlib.sha256(source.encode()).hexdigest()[:24]
    planted = os.path.join(folder, f"k_{digest}.py")
    with open(planted, "w") as fh:
        fh.write(f"open({str(marker)!r}, 'w').write('ran')\n"
                 "def kernel(*args):\n    return 'planted'\n")
    f = small_kernel_function(N)
    v = rng.uniform(-1, 1, N)
    np.testing.assert_allclose(f(v), np.tanh(np.exp(v) * 2.0 + 1.0), rtol=1e-13)
    assert not marker.exists()
    with open(planted) as fh:
        assert fh.read() == source  # rewritten to what graphc generates


def test_the_kernel_folder_is_made_private(cache):
    folder = fusion.kernel_folder()
    st = os.stat(folder)
    assert folder == os.path.join(str(cache), "kernels")
    assert stat.S_IMODE(st.st_mode) == 0o700
    if hasattr(os, "geteuid"):
        assert st.st_uid == os.geteuid()


def test_a_world_writable_kernel_folder_is_not_used(cache, rng):
    open_folder = cache / "kernels"
    open_folder.mkdir(parents=True)
    os.chmod(open_folder, 0o777)
    with pytest.warns(RuntimeWarning, match="group or others may write"):
        f = small_kernel_function(N + 101)  # a kernel no other test made
    used = fusion.kernel_folder()  # warned once per folder
    assert used != str(open_folder)
    assert stat.S_IMODE(os.stat(used).st_mode) == 0o700
    assert os.listdir(open_folder) == []
    v = rng.uniform(-1, 1, N + 101)
    np.testing.assert_allclose(f(v), np.tanh(np.exp(v) * 2.0 + 1.0), rtol=1e-13)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a folder to another user needs root")
def test_a_kernel_folder_owned_by_someone_else_is_not_used(cache):
    foreign = cache / "kernels"
    foreign.mkdir(parents=True, mode=0o700)
    os.chown(foreign, 4242, -1)
    with pytest.warns(RuntimeWarning, match="owned by uid 4242"):
        used = fusion.kernel_folder()
    assert used != str(foreign)


def test_kernel_source_embeds_only_generated_names(cache):
    g = gc.Graph()
    x = g.input("x'); import os  #", (N,))
    y = gc.exp(x) * 2.0
    f = gc.function([x], gc.sin(y) + y)
    assert "fused" in f.source
    sources = _group_sources(f)
    assert sources
    for source in sources:
        names = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
        assert all(n in {"np", "numba", "range"} or (n[0] in "aoxti" and n[1:].replace(
            "_r", "").isdigit()) for n in names), names
        assert "import os" not in source and "x'" not in source


def _group_sources(f) -> list[str]:
    from graphc.compile.schedule import make_schedule
    from graphc.rewrite import optimize
    opt = optimize(list(f.inputs), list(f.outputs))
    return [g.source for g in fusion.find_groups(make_schedule(opt.inputs, opt.outputs))]


# -- issue 14: wide regions compile ------------------------------------------------------------
def wide_problem(m: int, n: int, rng):
    """z = sum_i sin(a_i x) exp(b_i x), its gradient and its Hessian times v, by hand."""
    a, b = rng.uniform(-1, 1, m), rng.uniform(-0.3, 0.3, m)
    g = gc.Graph()
    x, v = g.input("x", (n,)), g.input("v", (n,))
    total = None
    for ai, bi in zip(a, b):
        t = gc.sin(float(ai) * x) * gc.exp(float(bi) * x)
        total = t if total is None else total + t
    z = gc.sum(total)

    def oracle(xv, vv):
        A, B = a[:, None], b[:, None]
        s, c, e = np.sin(A * xv), np.cos(A * xv), np.exp(B * xv)
        grad = ((A * c + B * s) * e).sum(axis=0)
        hess_diag = ((-A * A * s + 2 * A * B * c + B * B * s) * e).sum(axis=0)
        return grad, hess_diag * vv
    return x, v, z, oracle


def python_kernel(source: str):
    """The kernel a source defines, run by Python rather than numba (the same statements)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            node.decorator_list = []
    namespace: dict = {}
    exec(compile(tree, "<kernel>", "exec"), namespace)  # noqa: S102 - graphc's own source
    return namespace["kernel"]


def nesting(source: str) -> int:
    """The deepest chain of nested expressions in a source (iteratively)."""
    deepest = 0
    stack = [(node, 0) for node in ast.parse(source).body]
    while stack:
        node, depth = stack.pop()
        depth += isinstance(node, ast.expr)
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in ast.iter_child_nodes(node))
    return deepest


def kernel_interface(source: str) -> tuple[int, int, int]:
    """A kernel's ops, arguments and outputs, read from its source."""
    head = next(line for line in source.splitlines() if line.startswith("def kernel("))
    return (source.count("  # "), head.count(",") + 1,
            sum(" = np.empty(" in line or " = np.zeros(" in line for line in source.splitlines()))


def test_a_10000_node_region_is_one_flat_kernel(cache, monkeypatch, rng):
    # with the size limits lifted, the whole region is one kernel: every line one op, and
    # add_n's 3,400 terms 32 to a line (the source used to nest past the parser's limits)
    n = 16
    for limit in ("MAX_GROUP_OPS", "MAX_KERNEL_INPUTS", "MAX_KERNEL_OUTPUTS"):
        monkeypatch.setattr(fusion, limit, 10**9)
    # exp joins the kernel (it stays on NumPy's SIMD loop by default, which cuts the region)
    monkeypatch.setattr(Exp, "simd_ufunc", False)
    monkeypatch.setattr(fusion, "FUSE_MIN_SIZE", n)
    sources = []
    monkeypatch.setattr(fusion, "kernel", lambda s: sources.append(s) or python_kernel(s))
    x, v, z, oracle = wide_problem(1700, n, rng)
    f = gc.function([x, v], [gc.grad(z, x), gc.hvp(z, x, v)])
    assert len(sources) == 1 and kernel_interface(sources[0])[0] > 30_000
    assert nesting(sources[0]) <= fusion.ADD_CHAIN + 8
    xv, vv = rng.uniform(-2, 2, n), rng.standard_normal(n)
    grad, hvp = f(xv, vv)
    want_grad, want_hvp = oracle(xv, vv)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-10 * abs(want_grad).max())
    np.testing.assert_allclose(hvp, want_hvp, rtol=1e-10, atol=1e-10 * abs(want_hvp).max())


def test_a_wide_region_cut_into_kernels_compiles_with_numba(cache, monkeypatch, rng):
    monkeypatch.setattr(fusion, "MAX_GROUP_OPS", 60)
    x, v, z, oracle = wide_problem(8, N, rng)
    f = gc.function([x, v], [gc.grad(z, x), gc.hvp(z, x, v)])
    assert f.source.count("fused") >= 2
    xv, vv = rng.uniform(-2, 2, N), rng.standard_normal(N)
    grad, hvp = f(xv, vv)
    want_grad, want_hvp = oracle(xv, vv)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-10 * abs(want_grad).max())
    np.testing.assert_allclose(hvp, want_hvp, rtol=1e-10, atol=1e-10 * abs(want_hvp).max())


@pytest.mark.parametrize("m, n", [(160, 16), (1700, 16), (1700, N)])
def test_wide_sum_gradient_and_hvp_compile(m, n, cache, monkeypatch, rng):
    # (16,): codegen's statements; (N,): fused where a kernel stays within the limits (here
    # none: every cut of this region reads or writes hundreds of values), NumPy elsewhere
    sources = recorded_sources(monkeypatch)
    x, v, z, oracle = wide_problem(m, n, rng)
    f = gc.function([x, v], [gc.grad(z, x), gc.hvp(z, x, v)])
    for source in sources:
        ops, args, outs = kernel_interface(source)
        assert ops <= fusion.MAX_GROUP_OPS and args <= fusion.MAX_KERNEL_INPUTS
        assert outs <= fusion.MAX_KERNEL_OUTPUTS
    xv, vv = rng.uniform(-2, 2, n), rng.standard_normal(n)
    grad, hvp = f(xv, vv)
    want_grad, want_hvp = oracle(xv, vv)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-10 * abs(want_grad).max())
    np.testing.assert_allclose(hvp, want_hvp, rtol=1e-10, atol=1e-10 * abs(want_hvp).max())
