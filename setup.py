"""Build script: metadata lives in setup.cfg; this adds the optional C extensions.

flowprep._tvl1 (the native TV-L1, the CPU default for --algo tvl1) needs only a
C compiler. It is optional for pip: without a compiler flowprep installs
without it and `--backend auto` computes TV-L1 with OpenCV (saying so once);
`make test` fails if it did not build (FLOWPREP_REQUIRE_TVL1=1). Flags: -O3
and -ffp-contract=off (the same float operations in every CPU's code path),
-fno-wrapv (undoes the -fwrapv of Python's own CFLAGS, which stops GCC from
vectorising the median: 14 ms a pair instead of 9);
no -march: the hot loops carry their own AVX2/AVX versions, chosen
at load time (target_clones), over the baseline (SSE2 on x86-64).

flowprep._jpegcrop (libjpeg-turbo partial decompression, the loader's fast
path) is built when libjpeg-turbo's headers are present (Debian:
libjpeg62-turbo-dev). It is optional: where it cannot be built, pip installs
flowprep without it and the loader decodes whole planes with OpenCV.
"""
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_UNIX_TVL1_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fno-wrapv", "-std=c99"]


class BuildExt(build_ext):
    """Adds the GCC/Clang flags of flowprep._tvl1 when the compiler takes them."""

    def build_extensions(self):
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                if ext.name == "flowprep._tvl1":
                    ext.extra_compile_args = _UNIX_TVL1_FLAGS + list(ext.extra_compile_args or [])
                    ext.libraries = list(ext.libraries or []) + ["m"]
        super().build_extensions()


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension("flowprep._tvl1", sources=["flowprep/_tvl1.c"], optional=True),
        Extension("flowprep._jpegcrop", sources=["flowprep/_jpegcrop.c"],
                  libraries=["jpeg"], optional=True),
    ],
)
