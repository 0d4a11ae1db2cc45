"""The usad2 version, recorded in every exported checkpoint."""
__version__ = "0.1.0"
