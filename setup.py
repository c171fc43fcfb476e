"""The one compiled part: ivr_bridge/_wsfast.c, the media frames' hot path.

Optional: where no C compiler is at hand the build skips it (with a warning) and the bridge
runs the same logic in Python (ivr_bridge/wsfast.py says which path is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ivr_bridge._wsfast",
            ["ivr_bridge/_wsfast.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        )
    ]
)
