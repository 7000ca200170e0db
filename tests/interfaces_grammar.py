"""A hypothesis grammar for interfaces(5) files as people and tools really write them:
tabs and odd whitespace, CRLF, comments (some ending in a backslash), continuation
lines, duplicate stanzas, `inherits`, mappings, allow classes, `name?` options,
and now and then something ifupdown refuses (a missing family, a bad method,
`inherits` with nothing after it, a misplaced option, an empty value).

Everything drawn is text ifupdown can be asked about; the differential test
decides what is right, not this grammar.
"""

from __future__ import annotations

from hypothesis import strategies as st

NAMES = ["eth0", "eth1", "br0", "lo", "wlan0", "eth0:1", "vlan10", "en-p1.5"]
CLASSES = ["hotplug", "auto", "ovs", "x_1"]
OPTIONS = [
    "address",
    "netmask",
    "gateway",
    "mtu",
    "hwaddress",
    "bridge_ports",
    "bridge-stp",
    "dns-nameservers",
    "up",
    "post-up",
    "pre-up",
    "down",
    "pre-down",
    "post-down",
    "metric",
    "mtu?",
    "address?",
    "up?",
    "x-y_z",
]
METHODS = {
    "inet": ["static", "manual", "dhcp", "loopback", "ppp", "ipv4ll"],
    "inet6": ["auto", "static", "manual", "dhcp", "v4tunnel"],
    "can": ["static"],
    "bogus": ["static"],
}

SEP = st.sampled_from([" ", "\t", "  ", " \t", "\t\t", "\v", "\f", " \r "])
INDENT = st.sampled_from(["", " ", "\t", "    ", " \t ", "\f"])
TRAIL = st.sampled_from(["", "", "", " ", "\t", "\r", " \r"])
EOL = st.sampled_from(["\n", "\n", "\n", "\r\n"])
VALUE_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0x7E, include_characters="\té", exclude_characters="\x00")


@st.composite
def value(draw: st.DrawFn) -> str:
    """A value with runs of spaces, quotes, now and then a continuation inside it."""
    text = draw(st.text(VALUE_CHARS, min_size=1, max_size=14).filter(lambda t: t.strip(" \t") != ""))
    if draw(st.integers(0, 7)) == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + "\\\n" + draw(st.sampled_from(["", " ", "\t", "  x"])) + text[cut:]
    return text


@st.composite
def iface_line(draw: st.DrawFn, known: list[str]) -> str:
    name = draw(st.sampled_from(NAMES))
    family = draw(st.sampled_from(["inet"] * 12 + ["inet6"] * 6 + ["can", "bogus"]))
    method = draw(st.sampled_from([*METHODS[family], "inherits"] if draw(st.integers(0, 39)) else ["nomethod"]))
    words = ["iface", name]
    shape = draw(st.integers(0, 59))
    if shape == 0:
        words = ["iface"] if draw(st.booleans()) else ["iface", name]
    elif shape < 3 and known:
        words += ["inherits", draw(st.sampled_from(known))]
    elif shape == 3:
        words += ["inherits", draw(st.sampled_from(NAMES))]
    elif shape == 4:
        words += [family, "inherits"] + ([draw(st.sampled_from(NAMES))] if draw(st.integers(0, 4)) else [])
    elif shape == 5:
        words += [family, method, draw(st.sampled_from(["inherits", "extra", "#", "inherits"]))]
        if words[-1] == "inherits" and known:
            words.append(draw(st.sampled_from(known)))
    else:
        words += [family, method] if method != "inherits" else [family, "static"]
    known.append(name)
    return "iface" + "".join(draw(SEP) + w for w in words[1:])


@st.composite
def block(draw: st.DrawFn, known: list[str], recorder: str) -> list[str]:
    kind = draw(st.sampled_from(["iface"] * 6 + ["auto", "auto", "mapping", "comment", "blank", "other"]))
    if kind == "iface":
        lines = [draw(iface_line(known))]
        for _ in range(draw(st.integers(0, 6))):
            name = draw(st.sampled_from(OPTIONS))
            if draw(st.integers(0, 120)) == 0:
                lines.append(draw(INDENT) + name)  # option with empty value
            else:
                lines.append(draw(INDENT) + name + draw(SEP) + draw(value()))
            if draw(st.integers(0, 9)) == 0:
                lines.append(draw(INDENT) + "# " + draw(value()) + draw(st.sampled_from(["", "\\"])))
        return lines
    if kind == "auto":
        word = draw(st.sampled_from(["auto", "allow-auto", *(f"allow-{c}" for c in CLASSES)]))
        names = draw(st.lists(st.sampled_from(NAMES), max_size=4))
        return [word + "".join(draw(SEP) + n for n in names)]
    if kind == "mapping":
        patterns = draw(st.lists(st.sampled_from(["eth*", "wlan0", "br?", "*"]), max_size=3))
        lines = ["mapping" + "".join(draw(SEP) + p for p in patterns)]
        if draw(st.integers(0, 9)):
            lines.append(draw(INDENT) + "script" + draw(SEP) + recorder)
        lines += [draw(INDENT) + "map" + draw(SEP) + draw(value()) for _ in range(draw(st.integers(0, 3)))]
        if draw(st.integers(0, 29)) == 0:
            lines.append(draw(INDENT) + draw(st.sampled_from(["script" + " " + recorder, "up x"])))
        return lines
    if kind == "comment":
        return [draw(INDENT) + "#" + draw(st.text(VALUE_CHARS, max_size=10)) + draw(st.sampled_from(["", "\\"]))]
    if kind == "blank":
        return [draw(INDENT)]
    rare = ["address 198.51.100.1", "allow-"]  # misplaced: ifupdown refuses the file
    common = ["no-auto-down eth0", "no-scripts br0 eth1", "source nothere-*", "source-directory nothere.d"]
    return [draw(st.sampled_from(common * 8 + rare))]


@st.composite
def interfaces_files(draw: st.DrawFn, recorder: str) -> bytes:
    """A whole file: blocks of lines, each with its own indentation, trailing space and line end."""
    known: list[str] = []
    lines = [line for _ in range(draw(st.integers(1, 8))) for line in draw(block(known, recorder))]
    text = "".join(line + draw(TRAIL) + draw(EOL) for line in lines)
    if text and draw(st.integers(0, 9)) == 0:
        text = text.rstrip("\n")  # no newline at the end
    return text.encode()


IFUPDOWN2_OPTIONS = [
    "address",
    "netmask",
    "broadcast",
    "gateway",
    "mtu",
    "bridge-ports",
    "bridge_ports",
    "bridge-vlan-aware",
    "bridge-vids",
    "alias",
    "up",
    "post-up",
    "vrf",
]


@st.composite
def ifupdown2_files(draw: st.DrawFn) -> bytes:
    """ifupdown2-style files: family-less stanzas, ranges, vlan stanzas, `_`/`-` names, $IFACE, backslashes."""
    names = ["swp1", "swp2", "br0", "bond0", "eth0", "swp[1-3]", "br0.10", "eth0:1"]
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["iface", "iface", "iface", "auto", "allow", "vlan", "comment"]))
        if kind == "auto":
            lines.append(
                "auto" + "".join(draw(SEP2) + n for n in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)))
            )
        elif kind == "allow":
            lines.append("allow-hotplug " + draw(st.sampled_from(names)))
        elif kind == "comment":
            lines.append(draw(st.sampled_from(["", " ", "\t"])) + "# " + draw(st.sampled_from(["x", "a b", "%"])))
        else:
            head = [kind, draw(st.sampled_from(names))]
            family = draw(st.sampled_from(["", "", "inet", "inet6"]))
            if family and kind == "iface":
                head.append(family)
                head += [draw(st.sampled_from(["static", "manual", "dhcp", "loopback"]))] if draw(st.booleans()) else []
            lines.append(draw(SEP2).join(head))
            for _ in range(draw(st.integers(0, 5))):
                name = draw(st.sampled_from(IFUPDOWN2_OPTIONS))
                text = draw(st.text(VALUE2, min_size=1, max_size=12).filter(lambda t: t.strip(" \t") != ""))
                if draw(st.integers(0, 5)) == 0:
                    text += " $IFACE"
                if draw(st.integers(0, 7)) == 0:
                    text += " \\\n    more"
                lines.append(draw(st.sampled_from(["    ", "\t", "  "])) + name + draw(SEP2) + text)
    return "".join(line + "\n" for line in lines).encode()


SEP2 = st.sampled_from([" ", "\t", "  ", " \t"])
VALUE2 = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="%$\\{}")
