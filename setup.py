"""usad2: universal audio encoders by multi-teacher representation distillation (USAD 2.0)."""
import os

from setuptools import find_packages, setup


def read_version():
    """The version lives in usad2/version.py so that exported checkpoints can record it."""
    here = os.path.dirname(os.path.abspath(__file__))
    scope = {}
    with open(os.path.join(here, "usad2", "version.py"), encoding="utf-8") as f:
        exec(f.read(), scope)  # our own constant file, not data
    return scope["__version__"]


setup(
    name="usad2",
    version=read_version(),
    description="Universal audio encoders by representation distillation (USAD 2.0)",
    long_description=open("README.md", encoding="utf-8").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["usad2", "usad2.*"]),
    include_package_data=True,
    package_data={"usad2": ["teachers/cards/*.yaml", "teachers/manifests/*", "s3prl_upstream/configs/*.yaml"]},
    install_requires=[
        "torch==2.8.0",
        "torchaudio==2.8.0",
        "numpy>=1.23,<2",
        "PyYAML",
        "soundfile",
        "sox==1.5.0",
        "kaldiio==2.18.1",
        "tqdm",
    ],
    extras_require={
        "full": ["fairseq2==0.6", "fairseq2n==0.6", "s3prl==0.4.18", "tensorboardX",
                 "transformers>=4.57,<5", "huggingface_hub>=0.34,<1.0", "onnx", "onnxruntime",
                 "matplotlib"],
        "test": ["pytest", "hypothesis"],
    },
)
