"""``Locality``: where a workload or proxy runs, as Envoy's ``config.core.v3.Locality``.

meshfed writes localities as ``<cloud>/<region>[/<zone>[/<sub_zone>]]``; the region is
cloud-qualified (``aws/us-east-1``) so that regions of two clouds never compare equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

#: One part of a locality (cloud, region, zone, sub-zone).
LOCALITY_PART = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62})$")


@dataclass(frozen=True, slots=True, order=True)
class Locality:
    """A locality: ``region`` (``aws/us-east-1``), ``zone`` (``us-east-1a``), ``sub_zone``.

    Raises:
        ValueError: a part is empty or has characters outside ``[a-z0-9._-]``.
    """

    region: str
    zone: str = ""
    sub_zone: str = ""

    @classmethod
    def parse(cls, text: str) -> Locality:
        """Parse ``aws/us-east-1/us-east-1a[/rack1]``.

        Raises:
            ValueError: fewer than two parts (cloud and region), more than four, or a bad part.
        """
        parts = text.split("/")
        if len(parts) < 2 or len(parts) > 4:
            raise ValueError(
                f"locality {text!r} must be <cloud>/<region>[/<zone>[/<sub_zone>]],"
                " e.g. aws/us-east-1/us-east-1a"
            )
        for part in parts:
            if not LOCALITY_PART.match(part):
                raise ValueError(
                    f"locality {text!r}: part {part!r} must be 1-63 lowercase letters, digits,"
                    " '.', '_' or '-'"
                )
        region = f"{parts[0]}/{parts[1]}"
        zone = parts[2] if len(parts) > 2 else ""
        sub_zone = parts[3] if len(parts) > 3 else ""
        return cls(region, zone, sub_zone)

    @property
    def cloud(self) -> str:
        """The cloud part of the region (``aws`` of ``aws/us-east-1``)."""
        return self.region.split("/", 1)[0]

    def with_zone(self, zone: str) -> Locality:
        """The same region with another zone."""
        return Locality(self.region, zone)

    def __str__(self) -> str:
        return "/".join(p for p in (self.region, self.zone, self.sub_zone) if p)


def _valid_locality(text: str) -> str:
    Locality.parse(text)
    return text


#: A document field holding a locality as written (``aws/us-east-1/us-east-1a``), checked
#: by :meth:`Locality.parse` (a bad one fails validation with its reason).
LocalityText = Annotated[str, AfterValidator(_valid_locality)]
