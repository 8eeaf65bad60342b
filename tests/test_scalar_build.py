"""A build without any x86 vector path (what arm64 compiles) works and is bit-exact.

The three extension modules are built again with ``-C cmake.define.NEUROSIM_SCALAR_ONLY=ON``
(``pip wheel``, scikit-build-core, a fresh build folder under tmp_path): the macro turns off
every ``<immintrin.h>`` use and every intrinsic path (``cpp/include/neurosim/simd.h``), as on a
non-x86 compiler. The test checks that the modules hold no AVX/AVX-512 instruction (objdump),
that they report only the scalar path, and then runs the kernels' own property tests (against
``neurosim.intmath`` / ``intneuron`` / ``intnet.run_reference``) with those modules in place of
the installed ones.

The build takes 20-60 s on a 2-core machine and needs the build requirements
(scikit-build-core, nanobind) from the package index or pip's cache, so the test runs only when
``NEUROSIM_SCALAR_BUILD=1`` is set.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = (("chip_models", "_kernels"), ("neurosim", "_snn"), ("sim_events", "_dvs"))
# the kernels' property tests, run on the scalar-only modules (vector paths skip: "this CPU has no ...")
SUITES = ["tests/test_intmath_cpp.py", "tests/test_chip_kernels.py", "tests/test_chip_layer.py",
          "tests/test_chip_chain.py", "tests/test_chip_simulate.py"]

pytestmark = pytest.mark.skipif(os.environ.get("NEUROSIM_SCALAR_BUILD") != "1",
                                reason="set NEUROSIM_SCALAR_BUILD=1 to build the scalar-only modules (20-60 s)")

# A pytest plugin that loads the scalar-only modules as chip_models._kernels etc. before any test
# module imports them.
PLUGIN = textwrap.dedent('''
    import importlib, importlib.util, os, pathlib, sys
    root = pathlib.Path(os.environ["NEUROSIM_SCALAR_MODULES"])
    for pkg, name in %r:
        so = next((root / pkg).glob(name + ".*"))
        spec = importlib.util.spec_from_file_location(pkg + "." + name, so)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[pkg + "." + name] = mod
        setattr(importlib.import_module(pkg), name, mod)
''') % (MODULES,)

CHECK = textwrap.dedent('''
    import scalar_modules
    from chip_models import _kernels, kernels
    from neurosim import _snn
    assert _kernels.limits()["scalar_only"] is True, _kernels.limits()
    assert not any(_kernels.cpu_features().values()), _kernels.cpu_features()
    assert kernels.available_paths() == ["scalar"], kernels.available_paths()
    assert _snn.have_avx2() is False and _snn.chain_supported() is False
    assert not hasattr(_snn, "chain_forward")
    print("scalar-only modules loaded")
''')


@pytest.fixture(scope="module")
def scalar_modules(tmp_path_factory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("scalar_build")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "wheel"),
           "-C", "cmake.define.NEUROSIM_SCALAR_ONLY=ON", "-C", f"build-dir={tmp / 'build'}", str(ROOT)]
    constraints = ROOT / "scripts" / "constraints.txt"
    if constraints.exists():
        cmd[4:4] = ["-c", str(constraints)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    wheel = next((tmp / "wheel").glob("neurosim-*.whl"))
    out = tmp / "modules"
    with zipfile.ZipFile(wheel) as z:
        for pkg, name in MODULES:
            member = next(n for n in z.namelist() if n.startswith(f"{pkg}/{name}.") and n.endswith((".so", ".pyd")))
            z.extract(member, out)
    (out / "scalar_modules.py").write_text(PLUGIN)
    return out


def _env(modules: pathlib.Path) -> dict:
    return dict(os.environ, NEUROSIM_SCALAR_MODULES=str(modules),
                PYTHONPATH=os.pathsep.join([str(modules), os.environ.get("PYTHONPATH", "")]))


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump is not installed")
def test_no_vector_instructions(scalar_modules):
    for pkg, name in MODULES:
        so = next((scalar_modules / pkg).glob(name + ".*"))
        asm = subprocess.run(["objdump", "-d", str(so)], capture_output=True, text=True, check=True).stdout
        assert asm.count("%ymm") == 0 and asm.count("%zmm") == 0, f"{so.name} holds AVX code"


def test_scalar_modules_report_scalar_only(scalar_modules):
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=_env(scalar_modules), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_scalar_build_is_bit_exact(scalar_modules):
    """The kernels' property tests against the Python integer reference, on the scalar-only build."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "scalar_modules", "-p", "no:cacheprovider",
                           *SUITES], cwd=ROOT, env=_env(scalar_modules), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
