"""Verdicts combine one way: fail over warn over pass over skip; nothing judged is a skip."""

import itertools

from labconsole.verdict import FAIL, PASS, SKIP, WARN, worst


def test_the_most_severe_verdict_wins():
    assert worst([PASS, WARN, SKIP]) == WARN
    assert worst([SKIP, FAIL, PASS, WARN]) == FAIL
    assert worst([SKIP, PASS]) == PASS
    assert worst([SKIP, SKIP]) == SKIP


def test_nothing_judged_is_a_skip_so_verdicts_combine_in_any_grouping():
    assert worst([]) == SKIP
    assert worst(["?"]) == SKIP  # a status that is none of ours counts as a skip
    statuses = [PASS, WARN, FAIL, SKIP]
    for n in range(4):
        for a in itertools.product(statuses, repeat=n):
            for cut in range(n + 1):
                left, right = list(a[:cut]), list(a[cut:])
                assert worst(left + right) == worst([worst(left), worst(right)])


def test_no_failure_and_no_warning_is_a_pass_when_a_caller_says_so():
    # The calibration's verdict and its check: skipped steps do not lower a pass.
    assert worst([PASS, SKIP, SKIP]) == PASS
    assert worst([PASS]) == PASS
