"""The classification report as text, line by line the same numbers as report.json."""

from __future__ import annotations

from tests.conftest import N_TEST


def test_text_report_matches_json(evaluated_run):
    report = evaluated_run["report"]["report"]
    lines = (evaluated_run["dir"] / "report" / "classification_report.txt").read_text().splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    rows = {" ".join(line.split()[:-4]): line.split()[-4:] for line in lines[2:] if len(line.split()) >= 5}
    for name in [*map(str, range(10)), "macro avg", "weighted avg"]:
        values = [f"{report[name][k]:.4f}" for k in ("precision", "recall", "f1-score")]
        assert rows[name] == [*values, str(report[name]["support"])], name
    accuracy = next(line.split() for line in lines if line.split()[:1] == ["accuracy"])
    assert accuracy == ["accuracy", f"{report['accuracy']:.4f}", str(N_TEST)]
