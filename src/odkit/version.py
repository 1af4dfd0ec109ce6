"""odkit's version, in a module of its own so that library packages can read it without importing the
``odkit`` package facade (which sits above everything: ``odkit.train`` is the training workflow)."""

__version__ = "0.1.0"
