"""Where meshfed keeps its files on the local machine."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "MESHFED_HOME"
DEFAULT_HOME = ".meshfed"


def meshfed_home() -> Path:
    """``$MESHFED_HOME``, else ``~/.meshfed`` -- the same from every directory, as kubectl's
    ``~/.kube`` (it was ``./.meshfed``, and ``meshfed status`` run elsewhere found nothing);
    ``./.meshfed`` only where there is no home directory."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit)
    try:
        return Path.home() / DEFAULT_HOME
    except RuntimeError:  # no HOME and no passwd entry
        return Path(DEFAULT_HOME)


def default_trust_dir() -> Path:
    """``$MESHFED_HOME/trust``."""
    return meshfed_home() / "trust"
