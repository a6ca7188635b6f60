"""Build the fastconv C extension.

One extension module, ``fastconv._core``: the Cython binding plus every C file under
``csrc/``. ISA-specific kernels select their instruction set per file with
``#pragma GCC target`` and are chosen at run time, so the default build runs on any
x86-64 CPU and never uses ``-march=native``.

Environment switches
--------------------
FASTCONV_SANITIZE=address,undefined
    Build with ASan/UBSan (no recovery) for the hardening suite (tools/sanitize.sh).
FASTCONV_NO_OPENMP=1
    Build without OpenMP even where the compiler has it.
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
OPENMP_TEST = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel reduction(+:n)\nn+=1;\nreturn n>0?0:1;}\n"


def _run_quietly(cmd, cwd) -> bool:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def unix_openmp_flags(cc: list) -> tuple:
    """(compile flags, link flags) that give OpenMP with this Unix-style compiler, or None.

    gcc and Linux clang take ``-fopenmp``; Apple clang needs ``-Xpreprocessor -fopenmp``
    and ``-lomp`` (libomp's paths come from CPPFLAGS/LDFLAGS, as cibuildwheel's macOS
    configuration in pyproject.toml sets them).
    """
    if os.environ.get("FASTCONV_NO_OPENMP") or shutil.which(cc[0]) is None:
        return None
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        candidates.insert(0, (["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    extra = os.environ.get("CPPFLAGS", "").split() + os.environ.get("LDFLAGS", "").split()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "t.c"), "w") as f:
            f.write(OPENMP_TEST)
        for cflags, lflags in candidates:
            if _run_quietly(cc + cflags + ["t.c", "-o", "t"] + extra + lflags, tmp):
                return cflags, lflags
    return None


class BuildExt(build_ext):
    """Compiler-specific flags, chosen once the compiler is known (gcc/clang or MSVC)."""

    def build_extensions(self) -> None:
        msvc = self.compiler.compiler_type == "msvc"
        sanitize = os.environ.get("FASTCONV_SANITIZE", "").strip()
        if msvc:
            # /openmp:llvm: MSVC's OpenMP 3.1 runtime (the default /openmp is OpenMP 2.0).
            cflags, lflags = ["/O2", "/fp:precise"], []
            omp = None if os.environ.get("FASTCONV_NO_OPENMP") else (["/openmp:llvm"], [])
        else:
            cflags = ["-O3", "-std=gnu11", "-fvisibility=hidden", "-fno-math-errno", "-Wno-unused-function"]
            lflags = []
            cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
            omp = unix_openmp_flags(cc)
        if omp:
            cflags += omp[0]
            lflags += omp[1]  # the compiler's own runtime (libgomp/libomp), linked dynamically
        else:
            warnings.warn("fastconv: the C compiler has no OpenMP; building single-threaded kernels")
            print("WARNING: fastconv is built WITHOUT OpenMP: kernels run on one thread", file=sys.stderr)
        if sanitize and not msvc:
            # -fno-wrapv: Python's CFLAGS carry -fwrapv, which hides signed overflow from UBSan
            san = ["-fsanitize=" + sanitize, "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-g", "-fno-wrapv"]
            cflags = [f for f in cflags if f != "-O3"] + ["-O1"] + san
            lflags += san
        for ext in self.extensions:
            ext.extra_compile_args = cflags
            ext.extra_link_args = lflags
        super().build_extensions()


def extension() -> Extension:
    sources = ["src/fastconv/_core.pyx"] + sorted(
        os.path.relpath(p, HERE).replace(os.sep, "/")
        for p in glob.glob(os.path.join(HERE, "csrc", "**", "*.c"), recursive=True)
    )
    return Extension(
        "fastconv._core",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc"), numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION")],
    )


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=cythonize(
        [extension()],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
)
