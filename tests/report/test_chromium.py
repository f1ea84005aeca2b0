"""report.html and drilldown.html in a real browser (Debian's headless Chromium): every image decodes,
the drill-down's script renders its questions, and the page fetches nothing from the network.

Network use is read from Chromium's own net log: requests the page made carry the page's origin as
initiator, while the browser's background requests (update checks, accounts) carry "not an origin"
and are ignored. A control page that does fetch a remote image proves the check can fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000", "--dump-dom"]

# appended after the page's own scripts: records what the browser made of the page
_PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}));
  const res = performance.getEntriesByType('resource').map(e => e.name);
  const out = document.createElement('pre'); out.id = 'genmodes-probe';
  out.textContent = JSON.stringify({imgs, res, questions: document.querySelectorAll('.q').length});
  document.body.appendChild(out);
});
</script>"""


def browse(page_text: str, tmp_path, name: str) -> tuple[dict, list[str]]:
    """(what the probe saw, URLs the page itself requested over the network)."""
    page = tmp_path / f"{name}.html"
    page.write_text(page_text.replace("</body>", _PROBE + "</body>"))
    netlog = tmp_path / f"{name}.netlog.json"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / ('profile-' + name)}",
                           f"--log-net-log={netlog}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'id="genmodes-probe"' in dom, "the page never finished loading"
    probe = json.loads(dom.split('<pre id="genmodes-probe">', 1)[1].split("</pre>", 1)[0]
                       .replace("&quot;", '"').replace("&amp;", "&"))
    fetched = []
    for e in json.loads(netlog.read_text()).get("events", []):
        p = e.get("params") or {}
        url = str(p.get("url", ""))
        if url.startswith(("http:", "https:", "ws:", "wss:")) and "method" in p \
                and p.get("initiator") != "not an origin":
            fetched.append(url)
    return probe, fetched


def test_report_and_drilldown_render_offline(tiny_run, tmp_path):
    out, _, html = tiny_run
    probe, fetched = browse(html, tmp_path, "report")
    n_figs = len(list((out / "figures").glob("*.png")))
    assert len(probe["imgs"]) == n_figs >= 3
    assert all(i["ok"] and i["w"] > 100 for i in probe["imgs"]), probe["imgs"]
    assert fetched == [] and not [u for u in probe["res"] if not u.startswith(("data:", "file:"))]

    probe, fetched = browse((out / "drilldown.html").read_text(), tmp_path, "drilldown")
    assert probe["questions"] == 12  # every question of the run rendered by the page's script
    assert fetched == [] and probe["res"] == []


def test_the_network_check_catches_a_remote_image(tmp_path):
    page = '<!DOCTYPE html><html><body><img src="http://genmodes-test.invalid/x.png"></body></html>'
    probe, fetched = browse(page, tmp_path, "control")
    assert fetched == ["http://genmodes-test.invalid/x.png"]
    assert probe["imgs"] == [{"ok": False, "w": 0}]
