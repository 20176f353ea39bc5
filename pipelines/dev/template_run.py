"""One template run for the ``sample-*`` commands: parameters from the command line on top of
the sample's own, the run's summary printed, an exit code back.

``sample-api`` and ``sample-records`` each start local servers and then run a template
against them the same way; this is that shared last step.
"""

from __future__ import annotations

import sys
from typing import Any


def run_template_with(template_name: str, values: dict[str, Any], pairs: list[str]) -> int:
    """Expand the template ``template_name`` with ``values``, overridden by ``pairs`` (each
    ``key=value``, as given with ``--param``), run it and print its summary. Returns the run's
    exit code, or 2 (with the error on stderr) when the parameters or spec are refused."""
    from rich.console import Console

    import templates
    from connectors.errors import BeamwrightError
    from pipelines.display import render_summary
    from pipelines.loading import resolve_parameters
    from pipelines.run import RunFailed, run_spec

    values = dict(values)
    for pair in pairs:
        key, _, value = pair.partition("=")
        values[key.strip()] = value
    template = templates.get_template(template_name)
    try:
        spec = template.expand(resolve_parameters(template.parameters, values))
        summary, code = run_spec(spec), 0
    except RunFailed as exc:
        summary, code = exc.summary, exc.exit_code
    except (BeamwrightError, ValueError) as exc:
        print(f"beamwright: {exc}", file=sys.stderr)
        return 2
    render_summary(summary, Console(highlight=False, soft_wrap=True))
    return code
