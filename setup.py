"""Build script: metadata lives in setup.cfg; this adds the optional C extension.

flowprep._jpegcrop (libjpeg-turbo partial decompression, the loader's fast
path) is built when libjpeg-turbo's headers are present (Debian:
libjpeg62-turbo-dev). It is optional: where it cannot be built, pip installs
flowprep without it and the loader decodes whole planes with OpenCV.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("flowprep._jpegcrop", sources=["flowprep/_jpegcrop.c"],
                             libraries=["jpeg"], optional=True)])
