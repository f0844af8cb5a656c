"""The HTML report (analysis/html.py) in a real headless Chromium, and its escaping of untrusted text.

The browser tests build the report from a real run of this machine (TCP over inet and inet6) beside the archived
seed 004 run, plus a copy of one archived host under a hostile name, open it via file:// and drive it with Selenium
(Debian's chromium and chromium-driver, installed here when missing and this is root, as on CI).
"""
import json
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from analysis import html as report_html
from analysis import labels, layouts
from analysis.expectations import judge, load_expectations
from formats.rundir import run_dirs
from formats.table import load as load_run, load_runs
from tests.conftest import REPO, socklab_command

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARCHIVE, EXPECTATIONS = os.path.join(REPO, "archive"), os.path.join(REPO, "expectations")
HOSTILE = "<script>alert(1)</script>"
SEED_VIEW = {"proto": "tcp", "family": "inet", "first_addr": "wildcard", "second_addr": "wildcard",
             "prober": "other_process"}
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
    """This machine's TCP cases over inet and inet6 (run by the agent, as a user runs it), the archived seed 004
    run, a copy of winxp-sp3 under a hostile host name, judged; and one fake mismatch."""
    out = tmp_path_factory.mktemp("runs")
    done = subprocess.run(socklab_command("run-all", "--out", str(out), "--where", "proto=tcp",
                                          "--where", "family=inet,inet6"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    table = judge(load_runs([str(run_dir)] + run_dirs(ARCHIVE)), load_expectations([EXPECTATIONS]))
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
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, report_file):
    """The report freshly opened (filters at their defaults), console log emptied before."""
    browser.get_log("browser")
    browser.get("file://" + os.path.abspath(report_file))
    return browser


def shown_table(driver):
    """(header texts, {row labels: {state: (text, class)}}) of the lab's table as drawn; the row labels are
    (system, options) while the filters pin every other axis."""
    heads, rows = driver.execute_script("""
        const section = document.getElementById(arguments[0]);
        return [[...section.querySelectorAll("thead th")].map(th => th.textContent),
                [...section.querySelectorAll("tbody tr")].map(tr => [...tr.children].map(
                    cell => [cell.textContent, cell.className]))];""", SECTION)
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
    cases = judged[(judged[list(conditions)] == pd.Series(conditions)).all(axis=1)]
    cases = cases.assign(system=labels.system_label(cases), options=labels.options_label(cases),
                         text=layouts.cell_texts(cases))
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
    assert grid[(local, "none")]["LISTEN"] == ("EADDRINUSE", "o-inuse")
    assert grid[("winxp-sp3 (windows XP)", "SO_REUSEADDR")]["LISTEN"] == ("ok", "o-ok")
    assert grid[("winxp-sp3 (windows XP)", "none")]["BOUND"] == ("·", "o-none")
    assert grid[(HOSTILE + " (windows XP)", "SO_EXCLUSIVEADDRUSE")]["LISTEN"] == ("EADDRINUSE", "o-inuse")
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
    case = judged[(judged["host"] == "local") & (judged["case_id"] == FAKE_MISMATCH)].iloc[0]
    local = labels.system_label(judged[judged["host"] == "local"]).iloc[0]
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


def test_each_outcome_has_its_colour_and_a_host_in_two_runs_is_two_systems(tmp_path):
    table = judge(load_run(ARCHIVE + "/seed004-2010"), load_expectations([EXPECTATIONS]))
    outcomes = {"unsupported": "unsupported", "inconclusive": "inconclusive", "error": "error", "EACCES": "errno"}
    changed = table.index[table["host"] == "fc6-linux-2.6.18"][:len(outcomes)]
    table.loc[changed, "outcome"] = table.loc[changed, "bind"] = list(outcomes)
    table = pd.concat([table, table[table["host"] == "freebsd-6.2"].assign(run_id="later")], ignore_index=True)
    data = embedded_data(open(report_html.write(table, str(tmp_path / "r.html"), "t"), encoding="utf-8").read())
    (lab,) = data["labs"]
    strings, looks = data["strings"], lab["looks"]
    kind_of_text = {strings[text]: data["kinds"][kind] for text, kind in zip(looks["text"], looks["kind"])}
    assert kind_of_text == dict(outcomes, ok="ok", EADDRINUSE="inuse")
    systems = [strings[label] for label in lab["systems"]["label"]]
    assert {"freebsd-6.2 (freebsd 6.2-RELEASE) [seed004-2010]", "freebsd-6.2 (freebsd 6.2-RELEASE) [later]",
            "winxp-sp3 (windows XP)"} <= set(systems)
    assert [strings[host] for host in lab["hosts"]].count("freebsd-6.2") == 1  # one host filter entry for both
