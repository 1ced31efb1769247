"""The HTML report in a real browser: headless Chromium renders it, the flagged list is
there and no image is broken. Skips cleanly where Chromium is not installed
(Debian/Ubuntu: ``apt-get install -y chromium``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ukbmri.report import ReportData, write_reports


def _chromium() -> str:
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if exe is None:
        pytest.skip("chromium is not installed")
    return exe


# Appended to a copy of the report (same folder, so relative links resolve): after every image
# has loaded or failed, it writes what the browser saw into the DOM for --dump-dom to return.
_PROBE = """<script>
window.addEventListener("load", function () {
  var n = 0, broken = 0;
  for (const img of document.images) { n++; if (!img.complete || img.naturalWidth === 0) broken++; }
  var cards = document.querySelectorAll("#flagged ~ .cards .card.flagged, #flagged ~ .cards .card.failed").length;
  var p = document.createElement("pre");
  p.id = "probe";
  p.textContent = "PROBE images=" + n + " broken=" + broken + " cards=" + cards +
                  " flagged_heading=" + (document.getElementById("flagged") ? 1 : 0) + " END";
  document.body.appendChild(p);
});
</script></body>"""


def _run(exe: str, args: list[str], tmp_path: Path) -> str:
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
           "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_report_renders_in_chromium(synth, tmp_path, check_images):
    exe = _chromium()
    table = synth.make_table(14)
    keys = list(zip(table.eid.astype(int), table.instance.astype(int)))
    synth.write_images(tmp_path / "img", keys, roi_side=400)
    body, rois = synth.lookups(tmp_path / "img")
    failures = synth.make_failures([keys[1], (77, 2)], message="<b>bad</b> zip")
    out = tmp_path / "out"
    write_reports(out, ReportData(table=table, failures=failures, body_image=body, liver_rois=rois,
                                  notes=["demonstration weights"], sample_size=3))
    html = (out / "report.html").read_text()
    n_img = len(check_images(out / "report.html"))  # every src decodes as a PNG (PIL)
    n_cards = int((table.qc_flags != "").sum()) + 2
    assert n_img > 0

    probe = out / "_probe.html"
    probe.write_text(html.replace(' loading="lazy"', "").replace("</body>", _PROBE), encoding="utf-8")
    dom = _run(exe, ["--virtual-time-budget=15000", "--dump-dom", probe.as_uri()], tmp_path)
    m = re.search(r"PROBE images=(\d+) broken=(\d+) cards=(\d+) flagged_heading=(\d) END", dom)
    assert m, dom[-2000:]
    images, broken, cards, heading = map(int, m.groups())
    assert (images, broken, heading) == (n_img, 0, 1)
    assert cards == n_cards
    assert "&lt;b&gt;bad&lt;/b&gt; zip" in dom and "demonstration weights" in dom

    shot = tmp_path / "shot.png"
    _run(exe, ["--virtual-time-budget=15000", f"--screenshot={shot}", "--window-size=1280,1600", report_uri(out)],
         tmp_path)
    from PIL import Image

    with Image.open(shot) as im:
        px = np.asarray(im.convert("L"), dtype=float)
    assert px.shape == (1600, 1280) and px.std() > 10  # something was drawn, not a blank page


def report_uri(out: Path) -> str:
    return (out / "report.html").resolve().as_uri()
