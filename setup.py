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
FASTCONV_BUILD_JOBS=N
    Compile the C sources on N threads (default: build_ext's -j, else the CPUs this process
    may run on; 1: one after another, as setuptools does).
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor

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


def build_jobs(requested=None) -> int:
    """Compile jobs: FASTCONV_BUILD_JOBS, else build_ext's --parallel/-j, else the CPUs this
    process may use."""
    env = os.environ.get("FASTCONV_BUILD_JOBS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise SystemExit(f"FASTCONV_BUILD_JOBS must be a whole number of jobs, got {env!r}") from None
    if requested:
        return max(1, int(requested))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def compiles_by_steps(compiler) -> bool:
    """Whether `compiler` compiles through distutils' CCompiler.compile, one _compile per
    source (gcc, clang and the other Unix-style compilers; not MSVC, which has its own)."""
    # the class that first defines compile(): distutils' CCompiler (setuptools >= 80: Compiler)
    base = next((k for k in reversed(type(compiler).__mro__) if "compile" in vars(k)), None)
    return (base is not None and "_compile" in vars(base) and type(compiler).compile is base.compile
            and type(compiler)._compile is not base._compile)


def compile_in_parallel(compiler, jobs: int) -> None:
    """Make a Unix-style compiler object compile one extension's sources on `jobs` threads.

    setuptools compiles an extension's sources one after another (its --parallel runs whole
    extensions side by side, and fastconv is one): the 37 files took 2.5 minutes on one core
    of a 2-core machine, the longest (implicit_avx512.c) about one. Each source is still one
    compiler process through the compiler object's own steps (_setup_compile, _compile), as
    numpy.distutils and pybind11's ParallelCompile do; the largest files start first, and
    the first failure stops the queue.
    """
    def compile_sources(sources, output_dir=None, macros=None, include_dirs=None, debug=0, extra_preargs=None,
                        extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            src, ext = build[obj]
            compiler._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        pending = sorted((obj for obj in objects if obj in build), key=lambda o: -os.path.getsize(build[o][0]))
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            for future in [pool.submit(one, obj) for obj in pending]:
                future.result()  # re-raises a failed compile's error
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return objects

    compiler.compile = compile_sources


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
        jobs = build_jobs(self.parallel)
        if jobs > 1 and compiles_by_steps(self.compiler):
            compile_in_parallel(self.compiler, jobs)
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
