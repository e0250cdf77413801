"""kerasnas: Neural Architecture Search for TensorFlow / Keras 3 (SNAS at the core)."""

from setuptools import find_packages, setup

setup(
    name="kerasnas",
    version="0.1.0",
    description="Neural Architecture Search for TensorFlow/Keras 3: SNAS, baselines, TFLite export",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["kerasnas", "kerasnas.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.3,<4",
        "tensorflow-datasets>=4.9,<5",
        "keras-tuner>=1.4,<2",
        "tensorboard>=2.16,<2.22",  # keras-tuner imports it when a trial runs
        "numpy>=1.26",
        "absl-py>=2.0",
        "scikit-learn>=1.3",  # only for its bundled digits data
        "matplotlib>=3.7",  # cells.png
        "ai-edge-litert>=1.0",  # runs TFLite models
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3", "ruff>=0.5"]},
    entry_points={
        "console_scripts": [
            "kerasnas-search=kerasnas.cli.search:run",
            "kerasnas-train=kerasnas.cli.train:run",
            "kerasnas-export=kerasnas.cli.export:run",
            "kerasnas-compare=kerasnas.cli.compare:run",
            "kerasnas-pareto=kerasnas.cli.pareto:run",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
