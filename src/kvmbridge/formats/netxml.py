"""Parse libvirt network XML into a canonical nested dict.

Comments, attribute quoting, attribute order and indentation vanish, so a file
libvirt rewrote ("AUTO-GENERATED FILE" comment, single quotes) compares equal
to ours when it means the same.
"""

from __future__ import annotations

from typing import Any

from ..errors import KvmbridgeError

NETWORKS_DIR = "/etc/libvirt/qemu/networks"


def parse(data: bytes) -> dict[str, Any]:
    from lxml import etree

    parser = etree.XMLParser(remove_comments=True, remove_blank_text=True, resolve_entities=False, no_network=True)
    root = etree.fromstring(data, parser)
    return {str(root.tag): _element(root)}


def check_well_formed(template: str, data: bytes) -> None:
    """A broken template must fail at render, not when libvirtd starts at boot (expat: no lxml import)."""
    from xml.parsers import expat

    try:
        expat.ParserCreate().Parse(data, True)
    except expat.ExpatError as exc:
        raise KvmbridgeError(f"template {template}: renders malformed XML: {exc}") from None


def _element(element: Any) -> Any:
    node: dict[str, Any] = {f"@{key}": value for key, value in sorted(element.attrib.items())}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        value = _element(child)
        if child.tag in node:
            old = node[child.tag]
            node[child.tag] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            node[child.tag] = value
    text = (element.text or "").strip()
    if text:
        if not node:
            return text
        node["#text"] = text
    return node
