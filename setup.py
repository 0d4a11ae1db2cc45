"""usad2: universal audio encoders by multi-teacher representation distillation (USAD 2.0)."""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# s3prl has no plugin mechanism: this start-up file registers `-u usad2` when s3prl.hub is
# imported (usad2/s3prl_upstream/hook.py). Keep the line identical to hook.PTH_LINE.
S3PRL_PTH = ("usad2_s3prl.pth", 'import importlib.util as _u; _u.find_spec("usad2") is not None and '
             '__import__("usad2.s3prl_upstream.hook")\n')


class build_py_with_pth(build_py):
    """build_py that also puts the s3prl hook's .pth at the wheel root (= site-packages).

    A plain `pip install .` gets it from build_lib. setuptools' editable wheels copy nothing
    from build_lib, so in editable mode the file goes to the wheel being assembled when
    setuptools exposes it (install.install_lib); tools/setup.sh runs
    `python -m usad2.bin.s3prl_runner --install-hook` afterwards in any case.
    """

    def run(self):
        super().run()
        name, line = S3PRL_PTH
        targets = [self.build_lib]
        if getattr(self, "editable_mode", False):
            wheel_dir = getattr(self.distribution.get_command_obj("install"), "install_lib", None)
            targets = [wheel_dir] if wheel_dir and os.path.isdir(wheel_dir) else []
        for target in targets:
            with open(os.path.join(target, name), "w", encoding="utf-8") as f:
                f.write(line)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, S3PRL_PTH[0]))
        return outputs


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
    cmdclass={"build_py": build_py_with_pth},
    package_data={"usad2": ["teachers/cards/*.yaml", "teachers/manifests/*", "s3prl_upstream/configs/*.yaml",
                            "domains/taggers/*"]},
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
