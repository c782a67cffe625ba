"""Build the optional compiled counter ``sdlens.epistemic._fastcount``; metadata lives in pyproject.toml.

``optional=True``: without a working C compiler the install still succeeds and the pure-Python reference
counter is used.
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args, link_args = ["/O2"], []
else:
    compile_args, link_args = ["-O3", "-pthread"], ["-pthread"]

setup(
    ext_modules=[
        Extension(
            "sdlens.epistemic._fastcount",
            sources=["src/sdlens/epistemic/_fastcount.c"],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            optional=True,
        )
    ]
)
