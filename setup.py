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

HERE = os.path.dirname(os.path.abspath(__file__))
OPENMP_TEST = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel reduction(+:n)\nn+=1;\nreturn n>0?0:1;}\n"


def compiler_has_openmp() -> bool:
    """Compile and link a tiny OpenMP program with the C compiler Python was built with."""
    if os.environ.get("FASTCONV_NO_OPENMP"):
        return False
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    if shutil.which(cc[0]) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        cmd = cc + ["-fopenmp", src, "-o", os.path.join(tmp, "t")]
        try:
            return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def extension() -> Extension:
    sources = ["src/fastconv/_core.pyx"] + sorted(
        os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "csrc", "**", "*.c"), recursive=True)
    )
    cflags = ["-O3", "-std=gnu11", "-fvisibility=hidden", "-fno-math-errno", "-Wno-unused-function"]
    ldflags = []
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION")]
    if compiler_has_openmp():
        cflags.append("-fopenmp")
        ldflags.append("-fopenmp")  # links the compiler's own runtime (libgomp) dynamically
    else:
        warnings.warn("fastconv: the C compiler has no OpenMP; building single-threaded kernels")
        print("WARNING: fastconv is built WITHOUT OpenMP: kernels run on one thread", file=sys.stderr)
    sanitize = os.environ.get("FASTCONV_SANITIZE", "").strip()
    if sanitize:
        # -fno-wrapv: Python's CFLAGS carry -fwrapv, which hides signed overflow from UBSan
        san = ["-fsanitize=" + sanitize, "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-g", "-fno-wrapv"]
        cflags = [f for f in cflags if f != "-O3"] + ["-O1"] + san
        ldflags += san
    return Extension(
        "fastconv._core",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc"), numpy.get_include()],
        define_macros=macros,
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )


setup(
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
