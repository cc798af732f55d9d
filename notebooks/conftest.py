"""nbval, one step further: in every code cell that nbval runs, the verdict words this run prints must be
the ones the notebook stores (not only in the cells tagged nbval-check-output, whose numbers must match too).
In CI this run is a fresh clone's, with baselines trained there, at the machine's two threads."""

import pytest

from lora_teach.course.verdicts import verdict_words


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    cell = getattr(item, "cell", None)
    fresh = getattr(item, "test_outputs", None)
    if call.when != "call" or not report.passed or cell is None or fresh is None:
        return
    if cell.get("execution_count") is None:  # never run when stored: nothing to compare with
        return
    stored, now = verdict_words(cell.get("outputs", [])), verdict_words(fresh)
    if stored != now:
        report.outcome = "failed"
        report.longrepr = f"{item.name}: the stored verdict words {stored} became {now} in this run"
