"""tools/summary_lines.py: each docstring gets a one-line summary, what cannot be cut is named, and a
second run changes nothing."""

import pytest

from tools.summary_lines import count, first_sentence, fix_text, main

pytestmark = pytest.mark.unit

CASES = [
    pytest.param(
        'def f():\n    """Read the file. Then say what is in it, and\n    where it came from."""\n',
        'def f():\n    """Read the file.\n\n    Then say what is in it, and where it came from."""\n',
        id="first sentence of several lines becomes the summary",
    ),
    pytest.param(
        '"""One sentence over\ntwo lines."""\n',
        '"""One sentence over two lines."""\n',
        id="a paragraph that fits on one line joins",
    ),
    pytest.param(
        'class C:\n    """The models, e.g. this one. Not `a. B` though.\n    More.\n\n    Second paragraph\n'
        '    stays as written.\n    """\n',
        'class C:\n    """The models, e.g. this one.\n\n    Not `a. B` though. More.\n\n    Second paragraph\n'
        '    stays as written.\n    """\n',
        id="abbreviations and code spans end no sentence; other paragraphs untouched",
    ),
    pytest.param(
        'def h():\n    """Charge a call\'s plan (`plan`): None when nothing was charged (nothing to refund; no Redis\n'
        '    for an empty plan), `Charged` when a budget was, or the refusal for every reason it has."""\n',
        'def h():\n    """Charge a call\'s plan (`plan`).\n\n    None when nothing was charged (nothing to refund; no '
        'Redis for an empty plan), `Charged` when a\n    budget was, or the refusal for every reason it has."""\n',
        id="a sentence too long for a line is cut at its colon",
    ),
    pytest.param(
        '"""Steps, in this order:\n- one\n- two\n"""\n',
        '"""Steps, in this order.\n\n- one\n- two\n"""\n',
        id="a list right after the summary gets its blank line, the colon a period",
    ),
    pytest.param('"""Return the thing"""\n', '"""Return the thing."""\n', id="a period where none ends it"),
    pytest.param(
        'def k():\n    """\n    Summary on the second line.\n    """\n',
        'def k():\n    """Summary on the second line.\n    """\n',
        id="the summary moves up to the quotes",
    ),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_a_docstring_is_rewritten_once(source: str, expected: str) -> None:
    fixed, left = fix_text(source)
    assert (fixed, left) == (expected, [])
    assert fix_text(fixed) == (fixed, [])  # idempotent


def test_a_comma_is_the_last_resort() -> None:
    head = "Which error an exception becomes in the gateway's answer to the agent that made the call"
    source = f'"""{head}, and the one-line, secret-free\nreason a failed connection is logged with."""\n'
    fixed, left = fix_text(source)
    assert (fixed, left) == (
        f'"""{head}.\n\nAnd the one-line, secret-free reason a failed connection is logged with."""\n',
        [],
    )
    assert fix_text(fixed) == (fixed, [])


def test_a_first_sentence_with_no_place_to_cut_is_named_and_left() -> None:
    source = 'def f():\n    """' + "word " * 30 + "then\n    " + "more " * 10 + 'end."""\n'
    assert fix_text(source) == (source, [2])


def test_an_aside_is_cut_only_where_it_ends_the_clause() -> None:
    long = "A producer of audit events that journals everything it is given first before it is sent on"
    ends = f'class A:\n    """{long} (ingress, admin,\n    codemode: `libs.common.audit.service_trail`)."""\n'
    assert fix_text(ends)[0] == (
        f'class A:\n    """{long}.\n\n    (Ingress, admin, codemode: `libs.common.audit.service_trail`)."""\n'
    )
    inside = f'class A:\n    """{long} (ingress, admin,\n    codemode) and then it waits for its acknowledgement."""\n'
    assert fix_text(inside) == (inside, [2])


def test_docstrings_already_right_and_other_strings_are_left_alone() -> None:
    source = (
        '"""Module summary.\n\nBody line one\nbody line two.\n"""\n\nX = 1\n"""An attribute docstring\nover '
        'two lines."""\n\n\ndef f():\n    return """not\n    a docstring"""\n'
    )
    assert fix_text(source) == (source, [])


def test_first_sentence() -> None:
    assert first_sentence("A thing (see x. Y) here. Next one.") == ("A thing (see x. Y) here.", "Next one.")
    assert first_sentence("No end, i.e. one sentence") == ("No end, i.e. one sentence", "")


def test_the_run_rewrites_files_counts_and_checks(tmp_path, capsys) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Two\nlines."""\n\n\ndef f():\n    """Fine."""\n')
    assert count([module]) == (1, 2)
    assert main(["--check", str(module)]) == 1
    assert main([str(module)]) == 0
    assert module.read_text() == '"""Two lines."""\n\n\ndef f():\n    """Fine."""\n'
    assert count([module]) == (2, 2)
    assert main(["--check", str(module)]) == 0
    assert "1 files to fix" in capsys.readouterr().err
