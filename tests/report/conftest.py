"""Fixtures for the report tests: synthetic tables, ledgers and images (tests/report/synth_report.py)."""

from __future__ import annotations

import importlib.util
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def synth():
    """The synth_report helpers: ``make_table``, ``make_failures``, ``write_images``, ``lookups``."""
    name = "ukbmri_tests_synth_report"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "synth_report.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


class _Imgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])


def parse_refs(html_path: Path) -> tuple[list[str], list[str]]:
    """``(img srcs, a hrefs)`` of an HTML file (unescaped by the parser)."""
    p = _Imgs()
    p.feed(html_path.read_text(encoding="utf-8"))
    return p.srcs, p.links


@pytest.fixture(scope="session")
def html_refs():
    """``refs(html_path) -> (img srcs, a hrefs)``."""
    return parse_refs


@pytest.fixture(scope="session")
def check_images():
    """``check(html_path)``: every <img src> is a relative file that exists and decodes as a PNG; returns the srcs."""
    from urllib.parse import unquote

    from PIL import Image

    def check(html_path: Path) -> list[str]:
        srcs, _ = parse_refs(html_path)
        for s in srcs:
            assert s and "://" not in s and not s.startswith("/"), f"not a relative link: {s!r}"
            f = html_path.parent / unquote(s)
            assert f.is_file(), f"broken image {s}"
            with Image.open(f) as im:
                assert im.format == "PNG"
                im.load()
                assert im.width > 0 and im.height > 0
        return srcs

    return check
