"""Render a profile into its file set: pure, deterministic, no I/O but template reads."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from .bytecode_cache import bytecode_cache
from .errors import KvmbridgeError
from .fileset import RenderedFile, RenderedSet
from .model import HostProfile
from .targets import LINK_TARGETS, TARGETS


def builtin_templates() -> Path:
    """Templates ship inside the wheel; a source checkout keeps them at the top level."""
    here = Path(__file__).resolve().parent
    packaged = here / "templates"
    return packaged if packaged.is_dir() else here.parents[1] / "templates"


def _xml_comment(text: str) -> str:
    """XML forbids `--` inside a comment; a file name may contain it."""
    while "--" in text:
        text = text.replace("--", "- -")
    return text.rstrip("-")


@lru_cache(maxsize=8)
def environment(override: Path | None = None) -> jinja2.Environment:
    """One environment per template folder, so a fleet compiles each template once."""
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(builtin_templates()))]
    if override is not None:
        loaders.insert(0, jinja2.FileSystemLoader(str(override)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        bytecode_cache=bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        autoescape=lambda name: name is not None and name.endswith(".xml.j2"),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # one run renders with the templates it started with: no stat per file rendered
    )
    env.filters["xml_comment"] = _xml_comment
    return env


def _template(env: jinja2.Environment, name: str) -> jinja2.Template:
    """The compiled template, its globals flattened once: Jinja otherwise copies a ChainMap per render."""
    template = env.get_template(name)
    if not isinstance(template.globals, dict):
        template.globals = dict(template.globals)
    return template


def header(profile: HostProfile) -> str:
    return f"Generated from {profile.source_name} by kvmbridge: edit the profile, not this file."


def render(profile: HostProfile, templates: Path | None = None) -> RenderedSet:
    """The ordered file set for `profile`; same profile, same bytes."""
    env = environment(templates)
    files: list[RenderedFile] = []
    base = {"profile": profile, "header": header(profile)}
    for target in TARGETS:
        for dest, extra in target.wanted(profile):
            try:
                text = _template(env, target.template).render(base | extra)
            except jinja2.TemplateError as exc:
                where = f"{exc.filename}:{exc.lineno}: " if isinstance(exc, jinja2.TemplateSyntaxError) else ""
                raise KvmbridgeError(f"template {target.template}: {where}{exc.message or exc}") from None
            data = text.encode("utf-8")
            target.format.check_render(target.template, data)
            files.append(
                RenderedFile(dest, target.mode, data=data, keep_mode=target.keep_mode, format=target.format.name)
            )
    for link_target in LINK_TARGETS:
        for dest, link in link_target.links(profile):
            files.append(RenderedFile(dest, 0o777, link=link, format=link_target.format.name))
    return tuple(files)
