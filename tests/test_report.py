"""The report's tables and picture from real runs: several runs side by side, the matrix picture, its shared
cases and the cells where systems differ."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from analysis import picture
from analysis.labels import system_label
from labs import bind_matrix
from tasks import judged_runs
from tests.conftest import REPO, socklab_command

WHERE = ["--where", "proto=tcp", "--where", "family=inet", "--where", "prober=other_process"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for _ in range(2):
        subprocess.run(socklab_command("run-all", "--out", str(out), *WHERE), cwd=REPO,
                       check=True, capture_output=True)
    return sorted(str(path) for path in out.iterdir())


def test_a_host_in_two_runs_is_two_systems(two_runs):
    judged = judged_runs(two_runs, os.path.join(REPO, "expectations"))
    labels = system_label(judged)
    local = labels[judged["host"] == "local"].unique()
    assert len(local) == 2 and all(label.endswith("]") for label in local)
    assert "winxp-sp3 (windows XP)" in set(labels)  # the archive beside them, labelled plainly


def test_picture_shows_every_case_and_where_systems_differ(two_runs, tmp_path):
    judged = judged_runs(two_runs[:1], os.path.join(REPO, "expectations"))
    table = picture.matrix(judged)
    assert table.shape[0] == judged.groupby(["host", "run_id"]).ngroups
    assert table.shape[1] == judged.groupby(["lab", "case_id"]).ngroups
    states = judged.set_index("case_id").loc[table.columns.get_level_values("case_id"), "state"]
    seen = list(dict.fromkeys(states.dropna()))
    assert seen == [state for state in bind_matrix.TCP_STATES if state in seen]  # the lab's lifecycle order
    shared, differ = picture.shared_cases(table)
    assert shared.index[0] == picture.DIFFER_ROW
    # seed 004: Windows XP lets a second SO_REUSEADDR socket bind a LISTENing port, Linux refuses
    xp = shared.loc["winxp-sp3 (windows XP)"]
    local = shared.loc[[label for label in shared.index if label.startswith("local")][0]]
    marked = shared.iloc[0] == picture.DIFFER
    assert differ == int(marked.sum()) and differ >= 1
    assert ((xp != local) & (xp > 0) & (local > 0)).to_numpy()[marked.to_numpy()].any()
    png, svg = picture.write(judged, str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 10000
    assert "<svg" in open(svg, encoding="utf-8").read(500)
    if os.environ.get("SOCKLAB_KEEP_PICTURE"):  # to look at it: SOCKLAB_KEEP_PICTURE=path
        shutil.copy(png, os.environ["SOCKLAB_KEEP_PICTURE"])


def test_picture_fits_many_cases_into_its_width():
    table = picture.pd.DataFrame(np.ones((3, 5000), dtype=np.int8), index=[picture.DIFFER_ROW, "a", "b"],
                                 columns=picture.pd.MultiIndex.from_arrays([["lab"] * 5000,
                                                                            [str(n) for n in range(5000)]],
                                                                           names=["lab", "case_id"]))
    table.iloc[0] = 0
    table.iloc[0, 4999] = picture.DIFFER  # one difference, in the last case
    fitted, step = picture.fitted(table, 2000)
    assert step == 3 and fitted.shape[1] == 1667
    assert fitted.iloc[0, -1] == picture.DIFFER  # still shown, though its column was not sampled
