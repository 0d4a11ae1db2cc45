"""A minimal stand-in for TensorFlow, only for running the HEAR validator on torch models.

hearvalidator 2021.0.6 imports TensorFlow unconditionally but, for a PyTorch model, uses it only
in `isinstance(model, tf.Module)` (to decide that the model is not a TensorFlow one). TensorFlow
(~270 MB) is not part of usad2's pinned stack, so test/test_hear.py puts this directory on
PYTHONPATH for the validator's process when `import tensorflow` would fail; with TensorFlow
installed the real package is used. Anything else touched here raises, so a validator path that
really needs TensorFlow cannot pass silently.
"""


class Module:
    """Stands for tf.Module: no torch model is an instance of it."""


def __getattr__(name):
    raise AttributeError(f"the TensorFlow stand-in of usad2's tests has no {name!r}; install tensorflow")
