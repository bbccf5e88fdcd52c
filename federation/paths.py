"""Where meshfed keeps its files on the local machine."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "MESHFED_HOME"
DEFAULT_HOME = ".meshfed"


def meshfed_home() -> Path:
    """``$MESHFED_HOME``, or ``./.meshfed`` when unset (relative to the working directory)."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME)


def default_trust_dir() -> Path:
    """``$MESHFED_HOME/trust``."""
    return meshfed_home() / "trust"
