"""The HTML report (analysis/html.py) in a real headless Chromium, and its escaping of untrusted text.

The browser tests build the report from real runs of this machine (bind_matrix's TCP over inet and inet6; hijack
and runtime_defaults over inet) beside the archived seed 004 run, plus a copy of one archived host under a hostile
name, open it via file:// and drive it with Selenium (Debian's chromium and chromium-driver, installed here when
missing and this is root, as on CI). The first screen (1400 x 900) is photographed into the test's folder, and into
SOCKLAB_KEEP_SCREENSHOT when that names a file, to look at.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from analysis import findings as key_findings
from analysis import html as report_html
from analysis import labels, layouts, palette, picture
from analysis.expectations import judge, load_expectations
from formats.rundir import run_dirs
from formats.table import load as load_run, load_runs
from tests.conftest import REPO, socklab_command

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARCHIVE, EXPECTATIONS = os.path.join(REPO, "archive"), os.path.join(REPO, "expectations")
HOSTILE = "<script>alert(1)</script>"
# Seed 004's view: its family axis is the (family, second_family) pair, "inet" being both sockets of inet
# (second_family empty), as analysis.layouts.SEED_LAYOUT says; the cross-family pairs are values of their own.
SEED_VIEW = {"proto": "tcp", "family": "inet", "second_family": "", "first_addr": "wildcard",
             "second_addr": "wildcard", "prober": "other_process"}
# Not a finding: one case marked as a mismatch here, so the page has a mark to show.
FAKE_MISMATCH = "tcp/inet/LISTEN/SO_REUSEADDR/SO_REUSEADDR/wildcard/wildcard/other_process"
SECTION = "lab-bind_matrix"


def ensure_chromium():
    """Debian's chromium and chromium-driver: installed with apt-get when missing and we are root with apt-get
    (CI runs the tests as root on plain Debian), else the calling test is skipped saying why."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("needs {} and {}: as root, `apt-get install chromium chromium-driver`".format(
            CHROMIUM, CHROMEDRIVER))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
    assert done.returncode == 0, "apt-get install chromium chromium-driver failed:\n" + done.stderr[-3000:]


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """This machine's bind_matrix TCP cases over inet and inet6, and its hijack and runtime_defaults cases over
    inet (two runs by the agent, as a user runs it), the archived seed 004 run, a copy of winxp-sp3 under a hostile
    host name, judged; and one fake mismatch."""
    out = tmp_path_factory.mktemp("runs")
    for where in (["--lab", "bind_matrix", "--where", "proto=tcp", "--where", "family=inet,inet6"],
                  ["--lab", "hijack", "--lab", "runtime_defaults", "--where", "family=inet"]):
        done = subprocess.run(socklab_command("run-all", "--out", str(out), *where), cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    runs = sorted(str(path) for path in out.iterdir() if path.is_dir())
    table = judge(load_runs(runs + run_dirs(ARCHIVE)), load_expectations([EXPECTATIONS]))
    hostile = table[table["host"] == "winxp-sp3"].assign(host=HOSTILE, run_id="hostile",
                                                        detail="</script><script>alert(2)</script>")
    table = pd.concat([table, hostile], ignore_index=True)
    table.loc[(table["host"] == "local") & (table["case_id"] == FAKE_MISMATCH), "verdict"] = "mismatch"
    return table


@pytest.fixture(scope="module")
def report_file(judged, tmp_path_factory):
    return report_html.write(judged, str(tmp_path_factory.mktemp("html") / "report.html"), "socklab <test> report")


@pytest.fixture(scope="module")
def browser():
    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Selenium picks chromedriver's port before chromedriver binds it; meanwhile the labs of this suite (and of any
    # other run on the machine) take ports by the thousand, so the port may be gone: a fresh one is picked then.
    for attempt in range(1, 4):
        try:
            driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
            break
        except WebDriverException as exc:
            if "unexpectedly exited" not in str(exc) or attempt == 3:
                raise
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, report_file):
    """The report freshly opened (filters at their defaults), console log emptied before."""
    browser.get_log("browser")
    browser.get("file://" + os.path.abspath(report_file))
    return browser


def shown_table(driver, section=SECTION):
    """(header texts, {row labels: {state: (text, class)}}) of the lab's table as drawn; the row labels are
    (system, options) while the filters pin every other axis."""
    heads, rows = driver.execute_script("""
        const section = document.getElementById(arguments[0]);
        return [[...section.querySelectorAll("thead th")].map(th => th.textContent),
                [...section.querySelectorAll("tbody tr")].map(tr => [...tr.children].map(
                    cell => [cell.textContent, cell.className]))];""", section)
    states = layouts.LAYOUTS["bind_matrix"].column_order
    grid = {}
    for cells in rows:
        key = tuple(cell[0] for head, cell in zip(heads, cells) if head not in states)
        assert key not in grid, "row drawn twice: {}".format(key)
        grid[key] = {head: tuple(cell) for head, cell in zip(heads, cells) if head in states}
    return heads, grid


def expected_table(judged, conditions):
    """What the table should show for a view: every system x options row of the cases that meet `conditions`,
    each measured state's cell text (layouts.cell_texts), the others not measured."""
    judged = judged.assign(system=labels.system_label(judged))  # labelled among all systems, as the page is
    cases = judged[(judged[list(conditions)] == pd.Series(conditions)).all(axis=1)]
    cases = cases.assign(options=labels.options_label(cases), text=layouts.cell_texts(cases))
    states = [state for state in layouts.LAYOUTS["bind_matrix"].column_order if state in set(cases["state"])]
    return {key: {state: group.set_index("state")["text"].get(state, labels.NOT_MEASURED) for state in states}
            for key, group in cases.groupby(["system", "options"])}


def select(driver, name, text):
    box = driver.find_element(By.CSS_SELECTOR, "#{} select[name={}]".format(SECTION, name))
    Select(box).select_by_visible_text(text)


def assert_view(driver, judged, conditions):
    _, grid = shown_table(driver)
    assert {key: {state: cell[0] for state, cell in cells.items()} for key, cells in grid.items()} == \
        expected_table(judged, conditions)


def test_the_page_renders_without_console_errors(page, judged, tmp_path):
    severe = [entry for entry in page.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
    with pytest.raises(NoAlertPresentException):
        page.switch_to.alert.text  # the hostile host name and detail ran nothing
    assert page.title == "socklab <test> report"
    screenshot = str(tmp_path / "report.png")
    page.find_element(By.ID, SECTION).location_once_scrolled_into_view
    assert page.save_screenshot(screenshot)
    print("screenshot:", screenshot)


def test_the_first_view_is_seed_004s_layout_with_every_system(page, judged):
    assert_view(page, judged, SEED_VIEW)
    heads, grid = shown_table(page)
    assert heads[:2] == ["system", "options (first → second)"]  # pinned axes are not columns
    local = next(system for system, _ in grid if system.startswith("local (linux "))
    assert grid[(local, "none")]["LISTEN"] == ("EADDRINUSE", "m-refused")
    # seed 004: a second SO_REUSEADDR socket binds beside Windows XP's listener: the port is shared, not ok
    assert grid[("winxp-sp3 (windows XP)", "SO_REUSEADDR")]["LISTEN"] == ("ok", "m-shared")
    assert grid[("winxp-sp3 (windows XP)", "SO_REUSEADDR")]["TIME_WAIT"] == ("ok", "m-ok")
    assert grid[("winxp-sp3 (windows XP)", "none")]["BOUND"] == ("·", "m-none")
    assert grid[(HOSTILE + " (windows XP)", "SO_EXCLUSIVEADDRUSE")]["LISTEN"] == ("EADDRINUSE", "m-refused")
    text, classes = grid[(local, "SO_REUSEADDR")]["LISTEN"]
    assert text.endswith(layouts.MISMATCH_MARK) and "mismatch" in classes.split()


def test_the_filters_change_the_rows_as_they_should(page, judged):
    select(page, "host", "winxp-sp3")
    assert_view(page, judged, dict(SEED_VIEW, host="winxp-sp3"))
    assert {options for _, options in shown_table(page)[1]} == {"none", "SO_REUSEADDR", "SO_EXCLUSIVEADDRUSE"}

    select(page, "host", "local")
    select(page, "prober", "same_process")
    assert_view(page, judged, dict(SEED_VIEW, host="local", prober="same_process"))

    select(page, "host", "(all)")
    select(page, "family", "inet6")  # the archived systems measured inet only
    assert_view(page, judged, dict(SEED_VIEW, family="inet6", prober="same_process"))
    assert {system.split(" ")[0] for system, _ in shown_table(page)[1]} == {"local"}

    select(page, "addresses", "loopback → wildcard")
    assert_view(page, judged, dict(SEED_VIEW, family="inet6", prober="same_process", first_addr="loopback"))

    select(page, "prober", "(all)")  # an axis no longer pinned becomes a column of the row labels
    assert shown_table(page)[0][:3] == ["system", "options (first → second)", "prober"]


def test_hovering_a_cell_gives_case_expectation_source_and_witness(page, judged):
    chosen = (judged["host"] == "local") & (judged["case_id"] == FAKE_MISMATCH)
    case, local = judged[chosen].iloc[0], labels.system_label(judged)[chosen].iloc[0]
    row = page.find_element(By.XPATH, '//section[@id="{}"]//tr[th[1]="{}" and th[2]="SO_REUSEADDR"]'.format(
        SECTION, local))
    cell = row.find_elements(By.TAG_NAME, "td")[1]  # BOUND, LISTEN, ...
    ActionChains(page).move_to_element(cell).perform()
    title = cell.get_attribute("title")
    assert "case " + FAKE_MISMATCH in title
    assert "expected: " + case["expected"] in title and "source: " + case["source"] in title
    assert case["source"] and "witness: LISTEN" in title and "verdict: mismatch" in title


def embedded_data(text):
    return json.loads(re.search(r'<script type="application/json" id="socklab-data">(.*?)</script>', text,
                                re.S).group(1))


def test_a_hostile_host_name_and_detail_are_escaped(tmp_path):
    table = judge(load_run(ARCHIVE + "/seed004-2010"), load_expectations([EXPECTATIONS]))
    table["host"] = table["host"].astype(str)  # a loaded table's text is Categorical: made plain to be edited
    table.loc[table["host"] == "winxp-sp3", "host"] = HOSTILE
    table["detail"] = "</script><!-- <script>alert(2)</script>"
    table.loc[table.index[0], "verdict"] = "mismatch"  # so the host is in the mismatch list too
    text = open(report_html.write(table, str(tmp_path / "r.html"), HOSTILE), encoding="utf-8").read()
    assert HOSTILE not in text and table["detail"].iloc[0] not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # title, runs, verdicts and mismatches as text
    assert len(re.findall("<script", text)) == 2  # the data and the page's own script
    data = embedded_data(text)
    assert HOSTILE in data["strings"] and table["detail"].iloc[0] in data["strings"]


def test_a_lab_without_a_layout_gets_its_first_parameter_as_columns(tmp_path, monkeypatch):
    monkeypatch.delitem(layouts.LAYOUTS, "bind_matrix")
    table = judge(load_run(ARCHIVE + "/seed004-2010"), load_expectations([EXPECTATIONS]))
    data = embedded_data(open(report_html.write(table, str(tmp_path / "r.html"), "t"), encoding="utf-8").read())
    (lab,) = data["labs"]
    assert [data["strings"][code] for code in lab["columns"]] == ["tcp"]
    assert [axis["name"] for axis in lab["axes"]] == ["family", "state", "first_opts", "second_opts", "first_addr",
                                                      "second_addr", "prober"]
    assert len(lab["cells"]) == len(table)  # one row per system and case: every case its own row


def test_each_cell_has_the_colour_of_its_meaning_and_a_host_in_two_runs_is_two_systems(tmp_path):
    table = judge(load_run(ARCHIVE + "/seed004-2010"), load_expectations([EXPECTATIONS]))
    outcomes = {"unsupported": "unsupported", "inconclusive": "inconclusive", "error": "error", "EACCES": "other_error"}
    changed = table.index[table["host"] == "fc6-linux-2.6.18"][:len(outcomes)]
    table = table.astype({"outcome": str, "bind": str})  # Categoricals made plain to be edited
    table.loc[changed, "outcome"] = table.loc[changed, "bind"] = list(outcomes)
    table = pd.concat([table, table[table["host"] == "freebsd-6.2"].assign(run_id="later")], ignore_index=True)
    data = embedded_data(open(report_html.write(table, str(tmp_path / "r.html"), "t"), encoding="utf-8").read())
    (lab,) = data["labs"]
    strings, looks = data["strings"], lab["looks"]
    shown = {(strings[text], data["meanings"][meaning]) for text, meaning in zip(looks["text"], looks["meaning"])}
    # ok means ok where the first socket no longer listens, shared where it does (Windows XP's LISTEN)
    assert shown == set(outcomes.items()) | {("ok", "ok"), ("ok", "shared"), ("EADDRINUSE", "refused")}
    systems = [strings[label] for label in lab["systems"]["label"]]
    assert {"freebsd-6.2 (freebsd 6.2-RELEASE) [seed004-2010]", "freebsd-6.2 (freebsd 6.2-RELEASE) [later]",
            "winxp-sp3 (windows XP)"} <= set(systems)
    assert [strings[host] for host in lab["hosts"]].count("freebsd-6.2") == 1  # one host filter entry for both


def test_a_takeover_is_a_danger_and_a_refused_restart_is_refused(page, judged):
    """hijack: a second listener that accepted any of the connections is a takeover, whatever its calls returned;
    runtime_defaults: a helper whose restart got EADDRINUSE is refused there, in its own cell."""
    cells = page.execute_script("""
        return [...document.querySelectorAll("section td")].map(td => [td.closest("section").id, td.textContent,
                                                                       td.className]);""")
    hijack = {(text, classes) for section, text, classes in cells if section == "lab-hijack"}
    took = {text.split(" ")[0] for text, classes in hijack if "m-takeover" in classes.split()}
    measured = set(judged.loc[judged["lab"] == "hijack", "accepted_by"].dropna())
    assert took == measured & {"second", "both"}
    assert not any(text.startswith(("first", "bind")) and "m-takeover" in classes for text, classes in hijack)
    restarts = judged.loc[(judged["lab"] == "runtime_defaults") & judged["restart"].notna(), "restart"]
    drawn = page.execute_script("""
        const section = document.getElementById("lab-runtime_defaults");
        const heads = [...section.querySelectorAll("thead th")].map(th => th.textContent);
        return [...section.querySelectorAll("tbody tr")].map(tr => tr.children[heads.indexOf("restart")])
            .map(td => [td.textContent, td.className]);""")
    assert sorted(text for text, _ in drawn if text) == sorted(restarts)
    assert all(classes == {"ok": "m-ok", "EADDRINUSE": "m-refused"}[text] for text, classes in drawn if text)


def viewport(driver, width, height):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                  "deviceScaleFactor": 1, "mobile": False})


def test_the_first_screen_holds_the_key_findings(page, report_file, judged, tmp_path):
    """At 1400 x 900 the key findings (analysis.findings of the same table) are all on the first screen: whether a
    server restarts over its TIME_WAIT and with which options, whether another program or user can take over a
    listener; a screenshot of it is kept."""
    viewport(page, 1400, 900)
    try:
        page.get("file://" + os.path.abspath(report_file))
        assert page.execute_script("return [window.innerWidth, window.innerHeight]") == [1400, 900]
        items = page.execute_script("""
            return [...document.querySelectorAll("#findings li")].map(li => [
                li.closest("article").id, li.textContent, li.getBoundingClientRect().bottom]);""")
        expected = key_findings.key_findings(judged)
        for question, findings in expected.questions:
            shown = [text for article, text, _ in items if article == "q-" + question.name]
            assert len(shown) == len(findings)
            for text, finding in zip(shown, findings):
                assert finding.text in text and all(system in text for system in finding.systems[:1])
        assert {question.name for question, _ in expected.questions} >= {"restart", "listener", "verdicts"}
        assert max(bottom for _, _, bottom in items) <= 900
        screenshot = str(tmp_path / "first-screen.png")
        assert page.save_screenshot(screenshot)
        if os.environ.get("SOCKLAB_KEEP_SCREENSHOT"):  # to look at it: SOCKLAB_KEEP_SCREENSHOT=path
            shutil.copy(screenshot, os.environ["SOCKLAB_KEEP_SCREENSHOT"])
        assert Image.open(screenshot).size == (1400, 900)
    finally:
        page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def css_rgb(hex_colour):
    return "rgb({}, {}, {})".format(*palette.rgb(hex_colour))


def svg_swatches(path):
    """{meaning: fill} of the picture's legend, whose swatches carry the id meaning-<name>."""
    fills = {}
    for group in ElementTree.parse(path).iter("{http://www.w3.org/2000/svg}g"):
        if group.get("id", "").startswith("meaning-"):
            fill = re.search(r"fill: (#[0-9a-f]{6})", next(group.iter("{http://www.w3.org/2000/svg}path")).get("style"))
            fills[group.get("id")[len("meaning-"):]] = fill.group(1) if fill else "#000000"  # SVG's default fill
    return fills


def test_the_page_and_the_picture_share_one_palette(page, judged, tmp_path):
    """The page's CSS colours (legend swatches and drawn cells, as Chromium computes them) and the picture's (its
    SVG legend, its PNG's pixels) are analysis.palette's, meaning for meaning."""
    page.execute_script("document.querySelectorAll('select').forEach(box => {box.value = '-1'; "
                        "box.dispatchEvent(new Event('change'));});")  # every row drawn
    swatches, cells = page.execute_script("""
        const meaning = node => [...node.classList].find(name => name.startsWith("m-")).slice(2);
        const swatches = {};
        document.querySelectorAll(".legend .swatch:not(.mismatch)").forEach(node => {
            swatches[meaning(node)] = getComputedStyle(node).backgroundColor; });
        const cells = [...document.querySelectorAll("section.lab td")].map(
            node => [meaning(node), getComputedStyle(node).backgroundColor]);
        return [swatches, cells];""")
    assert swatches == {name: css_rgb(palette.BY_NAME[name].background) for name in swatches}
    assert {"ok", "refused", "shared", "takeover", "none"} <= set(swatches)
    assert all(colour == css_rgb(palette.BY_NAME[name].background) for name, colour in cells)
    png, svg = picture.write(judged, str(tmp_path))
    fills = svg_swatches(svg)
    # the picture colours cases, the page also the steps of a lab whose steps are its columns (a value: "set")
    assert {name: css_rgb(fill) for name, fill in fills.items() if name != "differ"} == {
        name: colour for name, colour in swatches.items() if name != "value"}
    assert fills["differ"] == palette.DIFFER.background.lower()
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    drawn = {tuple(int(value) for value in colour) for colour, count in zip(colours, counts) if count >= 50}
    assert {palette.rgb(palette.BY_NAME[name].background) for name in swatches} <= drawn
    # every other colour is where two of them meet, or one meets the white page, a black line or letter or a
    # swatch's grey edge (edges are smoothed): a colour the palette does not have would be none of these
    ends = [np.array(colour, dtype=float) for colour in sorted(
        {palette.rgb(colour.background) for colour in palette.MEANINGS} | {(255, 255, 255), (0, 0, 0),
                                                                           palette.rgb(picture.EDGE)})]
    strange = [colour for colour in drawn if not between(np.array(colour, dtype=float), ends)]
    assert strange == []


def between(colour, ends, tolerance=4.0):
    """Whether `colour` lies on the line between two of `ends`."""
    for position, start in enumerate(ends):
        for end in ends[position + 1:]:
            span = end - start
            share = np.clip(np.dot(colour - start, span) / np.dot(span, span), 0, 1)
            if np.abs(start + share * span - colour).max() <= tolerance:
                return True
    return False


def test_the_page_is_one_file_from_its_templates(report_file):
    text = open(report_file, encoding="utf-8").read()
    assert "<link" not in text and " src=" not in text  # CSS and script inline: nothing to fetch
    for name in ("report.css", "report.js"):
        own = open(os.path.join(REPO, "analysis", "templates", name), encoding="utf-8").read()
        assert own.strip() in text
    for colour in palette.MEANINGS:
        assert ".m-{} {{ background-color: {}; color: {}; }}".format(colour.name, colour.background,
                                                                      colour.text) in text
