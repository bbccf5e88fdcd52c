"""Image references written into manifests (``meshfed install``, ``meshfed inject``). Pure.

A tag is a name a registry lets anyone with push rights move: a cluster that pulls
``meshfed:1.2`` tomorrow may run other bytes than it runs today, and two nodes of one cluster
may run different ones. So meshfed writes images by digest (``REPO@sha256:<64 hex>``, what
``make image`` prints and keeps in ``build/image/meshfed.digest``), and a tag alone only when
the admin says so (``--allow-tag``). Grammar: the OCI distribution spec's reference
(https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests)
and the ``sha256`` digest of the OCI image spec (descriptor.md#digests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)?"
REFERENCE = re.compile(
    rf"(?P<repository>{_HOST}{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
)


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed reference: ``repository[:tag][@sha256:digest]``."""

    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> ImageReference:
        """Raises ValueError naming what is wrong (grammar: the module docstring)."""
        found = REFERENCE.fullmatch(ref)
        if not found:
            if "@" in ref and not re.search(r"@sha256:[0-9a-f]{64}$", ref):
                raise ValueError(f"{ref!r}: a digest is sha256: and 64 lowercase hex digits")
            raise ValueError(f"{ref!r} is not an image reference (REPOSITORY[:TAG]@sha256:DIGEST)")
        return cls(found["repository"], found["tag"], found["digest"])


def pinned_image(ref: str, *, allow_tag: bool, flag: str = "--image") -> str:
    """``ref`` if it names a digest (or ``allow_tag``); the string written into manifests.

    Raises:
        ValueError: not a reference, or a tag without a digest and not ``allow_tag`` (the
            message names ``flag`` and says how to get a digest).
    """
    try:
        parsed = ImageReference.parse(ref)
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from err
    if parsed.digest is None and not allow_tag:
        raise ValueError(
            f"{flag} {ref} names no digest, and a tag can be moved: give"
            f" {parsed.repository}@sha256:<digest> ('make image' prints it and writes"
            " build/image/meshfed.digest; 'skopeo inspect' shows a pushed image's), or pass"
            " --allow-tag"
        )
    return ref
