"""What the CLI says about parameters: a template parameter breaking a bound is named as the
parameter the user typed (not a raw pydantic error), ``templates show`` tells required from
optional, and ``sample-records --help`` says what it does and its defaults."""

from __future__ import annotations

import pytest

from pipelines.cli import main


def test_template_parameter_out_of_bounds_names_the_parameter(capsys):
    assert main(["validate", "record_sync", "-p", "page_size=500"]) == 2
    err = capsys.readouterr().err
    assert "parameters.page_size (at sources[0].page_size): " in err
    assert "less than or equal to 100" in err
    assert "pydantic" not in err and "validation error for" not in err


def test_templates_show_tells_required_from_optional(capsys):
    assert main(["templates", "show", "record_sync"]) == 0
    out = capsys.readouterr().out
    assert "api_token (secret) optional, no default" in out
    assert "(required)" not in out
    assert "page_size (integer) default 100" in out


def test_sample_records_help_has_a_description_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["sample-records", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "throw-away PostgreSQL" in out
    assert "(default: 500)" in out and "(default: 2)" in out and "(default: api_to_db)" in out


def test_plan_keeps_the_sdist_build_quiet_unless_it_fails(capfd):
    """What Beam's stager runs (``processes.check_output``) inside a plan: its stderr is kept
    with its output, shown only when the child fails (Beam's own error for a failed pyproject
    build drops the output)."""
    import sys

    from apache_beam.utils import processes

    from pipelines.plan import _quiet_sdist_build

    noisy = "import sys; sys.stderr.write('setuptools noise'); sys.exit({})"
    with _quiet_sdist_build():
        ok = processes.check_output([sys.executable, "-c", noisy.format(0)])
        assert b"setuptools noise" in ok
        assert "setuptools noise" not in capfd.readouterr().err
        with pytest.raises(RuntimeError):
            processes.check_output([sys.executable, "-c", noisy.format(1)])
        assert "failed:\nsetuptools noise" in capfd.readouterr().err
