"""ferrocluster: image features and clustering in Rust, on every core and across machines."""

from ferrocluster._core import __version__

__all__ = ["__version__"]
