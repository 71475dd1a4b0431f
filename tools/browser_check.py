"""Check a generated HTML report in a real headless browser (Chromium).

It must load nothing from the network (no external URL in any attribute or stylesheet, and the
browser runs with every host unresolvable), render every image, and stay readable on a narrow
screen: at 420 px wide the page itself must not scroll sideways (wide tables scroll inside their
own box instead).

    python tools/browser_check.py runs/ml-100k/report.html [--width 420] [--browser chromium]

Exit status 0 when every check passes; one line per failed check otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXTERNAL = re.compile(r"""(?:src|href|action|poster)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""",
                      re.I)

_PROBE = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const result = {
    viewport: window.innerWidth,
    page_width: document.documentElement.scrollWidth,
    images: images.length,
    broken_images: images.filter(i => !i.complete || i.naturalWidth === 0).length,
    tables: document.querySelectorAll('table').length,
    unscrollable_wide_tables: [...document.querySelectorAll('table')].filter(t =>
      t.scrollWidth > window.innerWidth && getComputedStyle(t.parentElement).overflowX !== 'auto').length,
  };
  const out = document.createElement('pre');
  out.id = 'rqgmm-browser-check';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def find_browser(name: str | None = None) -> str | None:
    for candidate in ([name] if name else ["chromium", "chromium-browser", "google-chrome", "chrome"]):
        path = shutil.which(candidate)
        if path:
            return path
    return None


def check_report(path: str | Path, width: int = 420, browser: str | None = None) -> list[str]:
    """Problems found in the report at ``path`` (empty: it passes)."""
    html = Path(path).read_text()
    problems = [f"external reference: {match.group(0)!r}" for match in EXTERNAL.finditer(html)]
    executable = find_browser(browser)
    if executable is None:
        raise FileNotFoundError("no Chromium found (apt install chromium)")
    with tempfile.TemporaryDirectory(prefix="rqgmm-browser-") as directory:
        probe = Path(directory) / "page.html"
        probe.write_text(html.replace("</body>", _PROBE + "</body>") if "</body>" in html else html + _PROBE)
        command = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   f"--user-data-dir={directory}/profile", f"--window-size={width},2000",
                   "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000", "--dump-dom",
                   probe.as_uri()]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="rqgmm-browser-check">(.*?)</pre>', completed.stdout, re.S)
    if completed.returncode != 0 or found is None:
        return [*problems, f"the browser did not render the page (exit {completed.returncode}):"
                           f" {completed.stderr.strip()[-300:]}"]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    if result["page_width"] > result["viewport"]:
        problems.append(f"at {result['viewport']} px the page is {result['page_width']} px wide (scrolls sideways)")
    if result["broken_images"]:
        problems.append(f"{result['broken_images']} of {result['images']} image(s) did not render")
    if result["unscrollable_wide_tables"]:
        problems.append(f"{result['unscrollable_wide_tables']} wide table(s) overflow without their own scroll box")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--width", type=int, default=420)
    parser.add_argument("--browser", default=None)
    args = parser.parse_args()
    problems = check_report(args.report, args.width, args.browser)
    for problem in problems:
        print(f"{args.report}: {problem}")
    if not problems:
        print(f"{args.report}: renders in {find_browser(args.browser)}, nothing external, readable at {args.width} px")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
