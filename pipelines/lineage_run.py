"""The facts of a run, turned into OpenLineage datasets and facets (see :mod:`lineage.facets`).

Before the run: input datasets with their real schemas (read from the files' heads), output
datasets (with the audience each output names), job facets (type, documentation, ownership,
source location) and run facets (engine, tags, parent template, the principal who ran it).
After the run: column profiles (dataQualityMetrics), validation results
(dataQualityAssertions), output schemas and statistics, column lineage and governance.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lineage import facets
from lineage.columns import FieldState
from lineage.datasets import Dataset
from lineage.naming import dataset_name, strip_credentials
from lineage.sync_report import SYNC_REPORT_FACET
from pipelines import dataset_expectations, registry
from pipelines import spec as s
from pipelines.audience_masks import dead_letter_fields, masked_fields
from pipelines.column_lineage import declared_fields, sink_lineage
from pipelines.ids import beamwright_version
from pipelines.principal import Principal
from pipelines.principal import resolve as resolve_principal
from pipelines.summary import RunSummary
from pipelines.sync_report import sync_report_facet

log = logging.getLogger(__name__)


def read_schema(path: str, fmt: str) -> Any:
    """The Arrow schema of a data file (position columns dropped), from its first rows, or
    None (logged): lineage is best effort, the run itself decides success."""
    from connectors.files.registry import head_schema

    schema = head_schema(path, fmt)
    if schema is None:
        log.warning("could not read the schema of %s", path)
    return schema


def declared_schema(spec: s.PipelineSpec, source: str) -> Any:
    """The Arrow schema the steps reading ``source`` directly declare (a validate step's typed
    ``fields``), or None: the schema lineage gives a source that has none of its own."""
    import pyarrow as pa

    from transforms.coerce import ARROW_TYPES

    declared = declared_fields(spec, source)
    return pa.schema([(n, ARROW_TYPES[t]) for n, t in declared.items()]) if declared else None


def _git_location(spec_path: str | None) -> Any:
    """sourceCodeLocation for a spec file inside a git checkout (credentials stripped)."""
    if not spec_path:
        return None
    folder = str(Path(spec_path).resolve().parent)

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", folder, *args], capture_output=True, text=True, timeout=5, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    top = git("rev-parse", "--show-toplevel")
    remote = strip_credentials(git("remote", "get-url", "origin")) or f"file://{top}"
    rel = str(Path(spec_path).resolve().relative_to(top)) if top else spec_path
    return facets.source_code_location(
        url=f"{remote}#{rel}", repo_url=remote, path=rel, version=commit
    )


@dataclass
class RunLineageFacts:
    """What lineage knows of a run, gathered once and reused for every event."""

    spec: s.PipelineSpec
    run_id: str
    inputs: list[Dataset]
    outputs: list[Dataset]
    spec_path: str | None = None
    input_schemas: dict[str, Any] = field(default_factory=dict)  # file path or uri -> schema
    parent_run_id: str | None = None
    key_uses: list[Any] = field(default_factory=list)  # connectors.secrets.pseudonyms.KeyUse
    principal: Principal = field(init=False)  # who ran it: see pipelines/principal.py

    def __post_init__(self) -> None:
        self.principal = resolve_principal(self.spec.lineage.run_as)
        for d in self.inputs:
            for f in d.files:
                self.input_schemas[f] = read_schema(f, d.format)
            if d.schema is not None:  # not files: a Kafka topic
                self.input_schemas[d.uri] = d.schema() or declared_schema(self.spec, d.node)
        if self.spec.template:
            from pipelines.ids import new_run_id

            self.parent_run_id = new_run_id()

    def source_fields(self) -> dict[str, list[str]]:
        """Source node -> the fields of its inputs as read (all its files' or topics' schemas
        together)."""
        names: dict[str, set[str]] = {}
        for d in self.inputs:
            for path in d.files or [d.uri]:
                schema = self.input_schemas.get(path)
                names.setdefault(d.node, set()).update(schema.names if schema is not None else ())
        return {node: sorted(fields) for node, fields in names.items()}

    # -- classification ---------------------------------------------------------------
    def classifications(self) -> dict[str, str]:
        return s.classifications(self.spec)

    def _field_governance(self, names: list[str]) -> dict[str, dict[str, Any]]:
        known = self.classifications()
        return {
            n: {"classification": known.get(n, self.spec.governance.classification)} for n in names
        }

    # -- datasets ---------------------------------------------------------------------
    def _source_datasets(self) -> dict[str, list[tuple[str, str]]]:
        """Source node -> its datasets (a glob's files, a source's topics)."""
        datasets: dict[str, list[tuple[str, str]]] = {}
        for d in self.inputs:
            datasets.setdefault(d.node, []).extend(dataset_name(f) for f in d.files or [d.uri])
        return datasets

    def input_datasets(
        self,
        *,
        profiles: dict[str, dict] | None = None,
        assertions: dict[str, list] | None = None,
        versions: dict[str, str] | None = None,
    ) -> list[Any]:
        """``versions``: source node -> the version of its data the run used (a refreshed
        lookup's reference), as the standard ``version`` facet."""
        from openlineage.client.event_v2 import InputDataset

        out = []
        for d in self.inputs:
            for path in d.files or [d.uri]:
                namespace, name = dataset_name(path)
                ds_facets: dict[str, Any] = {
                    "dataSource": facets.data_source(namespace),
                    "symlinks": facets.symlink(self.spec.name, d.node),
                }
                schema = self.input_schemas.get(path)
                if schema is not None:
                    ds_facets["schema"] = facets.schema(schema)
                    gov = self._field_governance(schema.names)
                    ds_facets[facets.GOVERNANCE_FACET] = facets.governance(
                        facets.highest(g["classification"] for g in gov.values()),
                        self.spec.governance.frameworks,
                        gov,
                    )
                if versions and d.node in versions:
                    ds_facets["version"] = facets.dataset_version(versions[d.node])
                input_facets: dict[str, Any] = {}
                if profiles and d.node in profiles and len(d.files) <= 1:
                    input_facets["dataQualityMetrics"] = facets.quality_metrics(profiles[d.node])
                if assertions and assertions.get(path):
                    input_facets["dataQualityAssertions"] = facets.quality_assertions(
                        assertions[path]
                    )
                out.append(
                    InputDataset(namespace, name, facets=ds_facets, inputFacets=input_facets)
                )
        return out

    def output_datasets(self, summary: RunSummary | None = None) -> list[Any]:
        from openlineage.client.event_v2 import OutputDataset

        lineage_states: dict[str, FieldState] = {}
        if summary is not None or self._audiences():
            lineage_states = sink_lineage(self.spec, self.source_fields())
        out = []
        for d in self.outputs:
            namespace, name = dataset_name(d.uri)
            ds_facets: dict[str, Any] = {
                "dataSource": facets.data_source(namespace),
                "symlinks": facets.symlink(self.spec.name, d.node),
            }
            if d.format == "kafka":  # a topic is only ever appended to
                mode = "append"
            elif d.kind == "dead_letter":
                mode = self.spec.dead_letter.mode
            else:
                sink_spec = next((k for k in self.spec.sinks if k.name == d.node), None)
                mode = getattr(sink_spec, "mode", "overwrite")
            # a failed run published nothing: its outputs were neither overwritten nor written
            published = summary is None or summary.published or bool(d.files)
            if mode == "overwrite" and published:
                ds_facets["lifecycleStateChange"] = facets.overwritten()
            ds_facets.update(self._audience_facets(d, lineage_states))
            output_facets: dict[str, Any] = {}
            if summary is not None and published:
                files = d.files  # what this run published
                if d.schema is not None:  # not files: a Kafka topic
                    schema = d.schema()
                else:
                    schema = read_schema(files[0], d.format) if files else None
                key = s.DEAD_LETTERS_INPUT if d.kind == "dead_letter" else d.node
                state = lineage_states.get(key)
                if schema is not None:
                    ds_facets["schema"] = facets.schema(schema)
                elif d.schema is not None and state is not None and state.fields:
                    ds_facets["schema"] = facets.named_fields(state.fields)  # the rows' fields
                node = summary.node(d.node)
                output_facets["outputStatistics"] = facets.output_statistics(
                    node.rows_out, node.bytes, node.files
                )
                if state is not None:
                    names = schema.names if schema is not None else None
                    ds_facets["columnLineage"] = facets.column_lineage(
                        state, self._source_datasets(), names
                    )
                    ds_facets[facets.GOVERNANCE_FACET] = self._output_governance(state, names)
                    keys = self._pseudonym_keys(state, names)
                    if keys:
                        ds_facets[facets.PSEUDONYMIZATION_FACET] = facets.pseudonymization(keys)
            out.append(OutputDataset(namespace, name, facets=ds_facets, outputFacets=output_facets))
        return out

    def _pseudonym_keys(self, state: FieldState, names: list[str] | None) -> list[dict[str, Any]]:
        """The keys (references and the versions the run pinned, never values) that made the
        fields the column lineage marks as pseudonymised on the way to an output."""
        found: list[dict[str, Any]] = []
        for name, origins in state.fields.items():
            if names is not None and name not in names:
                continue
            if not any(st.protection == "pseudonymize" for o in origins for st in o.steps):
                continue
            for use in self.key_uses:
                entry = {"field": name, "step": use.step, "key_ref": use.key_ref, "key_version": use.key_version}
                if use.field.split(".")[0] == name and entry not in found:
                    found.append(entry)
        return found

    def _audiences(self) -> dict[str, str | None]:
        """Output node -> the audience it names (dead letters under their own name), for
        the outputs that name one."""
        named = {sink.name: sink.audience for sink in self.spec.sinks}
        named[s.DEAD_LETTERS_INPUT] = self.spec.dead_letter.audience
        return {node: name for node, name in named.items() if name is not None}

    def _audience_facets(self, d: Dataset, states: dict[str, FieldState]) -> dict[str, Any]:
        """The ``beamwright_audience`` facet (and the standard ``tags`` facet with the
        audience's name) of an output that names its audience: nothing for one that does not.
        Masked fields: what the column lineage marks as masked on the way to this output
        (dead letters, and sinks reading them: the fields redacted for the audience)."""
        node = s.DEAD_LETTERS_INPUT if d.kind == "dead_letter" else d.node
        name = self._audiences().get(node)
        if name is None:
            return {}
        reads_dead = node == s.DEAD_LETTERS_INPUT or any(
            sink.name == node and sink.input == s.DEAD_LETTERS_INPUT for sink in self.spec.sinks
        )
        if reads_dead:
            masked = dead_letter_fields(self.spec, name)
            if self.spec.dead_letter.redact:
                masked |= s.classified_fields(self.spec)
        else:
            masked = set(masked_fields(states[node])) if node in states else set()
        attributes = self.spec.governance.audiences[name].values()
        return {
            facets.AUDIENCE_FACET: facets.audience(name, attributes, masked),
            "tags": facets.dataset_tags({"audience": name}),
        }

    def _output_governance(self, state: FieldState, names: list[str] | None) -> Any:
        known = self.classifications()
        default = self.spec.governance.classification
        fields: dict[str, dict[str, Any]] = {}
        for name, origins in state.fields.items():
            if names is not None and name not in names:
                continue
            classes = [known.get(o.field, default) for o in origins] or [known.get(name, default)]
            masking = [st.protection for o in origins for st in o.steps if st.protection]
            fields[name] = {
                "classification": facets.highest(classes, default),
                "protection": masking[0] if masking else None,
                "sources": sorted({f"{o.source}#{o.field}" for o in origins}),
            }
        overall = facets.highest((f["classification"] for f in fields.values()), default)
        return facets.governance(overall, self.spec.governance.frameworks, fields)

    # -- run and job facets -----------------------------------------------------------
    def job_facets(self) -> dict[str, Any]:
        out: dict[str, Any] = {"jobType": facets.job_type(streaming=False)}
        if self.spec.description:
            out["documentation"] = facets.documentation(self.spec.description)
        if self.spec.owner:
            out["ownership"] = facets.ownership(self.spec.owner)
        location = _git_location(self.spec_path)
        if location is not None:
            out["sourceCodeLocation"] = location
        return out

    def run_facets(self) -> dict[str, Any]:
        import apache_beam

        out: dict[str, Any] = {
            "processing_engine": facets.processing_engine(
                apache_beam.__version__, beamwright_version()
            ),
            "tags": facets.tags(
                {"runner": self.spec.run.runner, "pipeline": self.spec.name}
                | ({"template": self.spec.template} if self.spec.template else {})
                | {"principal": self.principal.name}
            ),
            facets.PRINCIPAL_FACET: facets.principal(
                self.principal.name, self.principal.type, self.principal.source
            ),
        }
        if self.parent_run_id and self.spec.template:
            out["parent"] = facets.parent(
                self.spec.lineage.namespace, f"template:{self.spec.template}", self.parent_run_id
            )
        return out


def assertions_by_dataset(facts: RunLineageFacts, summary: RunSummary) -> dict[str, list[dict]]:
    """dataQualityAssertions per input dataset (a file, or a Kafka topic), each from the
    failures of that dataset's own rows: every validate step its rows go through counts its
    rule failures per source (:func:`transforms.step.failures_by_source`)."""
    lookups = s.side_input_sources(facts.spec)
    result: dict[str, list[dict]] = {}
    for step in facts.spec.steps:
        kind = registry.kind_of(step)
        if kind.assertions is None:
            continue
        by_source = summary.node(step.name).rules_by_source
        for d in facts.inputs:
            if d.node in lookups or d.kind == "lookup":
                continue
            for path in d.files or [d.uri]:
                counts = _dataset_counts(by_source, d, path)
                result.setdefault(path, []).extend(kind.assertions(step, counts))
                result[path].extend(dataset_expectations.assertions(summary, step.name))
    return result


def _dataset_counts(
    by_source: dict[str, dict[str, int]], dataset: Dataset, path: str
) -> dict[str, int]:
    """Rule failures of one input dataset: a file's are its own source's; a Kafka topic's are
    the sum over its partitions (sources are ``topic/partition``)."""
    if dataset.format != "kafka":
        return by_source.get(path, {})
    topic = path.rsplit("/", 1)[-1]
    counts: dict[str, int] = {}
    for source, rules in by_source.items():
        if source.rsplit("/", 1)[0] == topic:
            for rule, n in rules.items():
                counts[rule] = counts.get(rule, 0) + n
    return counts


def read_profiles(spec: s.PipelineSpec, run_id: str) -> dict[str, dict]:
    """Merge the partial column profiles the run's bundles wrote, then remove them.

    A column the profiler could not measure keeps its ``error`` and is listed in the source's
    ``warnings`` (logged here too): its metrics are missing, the run is not failed for it.
    """
    from apache_beam.io.filesystems import FileSystems

    from connectors.fileio import match_files
    from transforms.profile import merge_profiles

    folder = spec.run.profile_dir(run_id)
    out: dict[str, dict] = {}
    for src in spec.sources:
        partials = []
        for path in match_files(f"{folder}/{src.name}-*.json"):
            try:
                with FileSystems.open(path) as f:
                    partials.append(json.loads(f.read()))
            except (OSError, ValueError) as exc:  # a lost partial only loses a facet
                log.debug("unreadable profile %s: %s", path, exc)
        if partials:
            out[src.name] = merge_profiles(partials)
            for warning in out[src.name]["warnings"]:
                log.warning("profile of source %s: %s", src.name, warning)
    try:
        parent = folder.rsplit("/", 1)[0]
        if "://" not in parent:
            shutil.rmtree(parent, ignore_errors=True)
        elif FileSystems.exists(parent):
            FileSystems.delete([parent])
    except Exception as exc:  # pragma: no cover - cleanup is best effort
        log.debug("could not remove %s: %s", folder, exc)
    return out


def error_facet(exc: BaseException | None, message: str) -> Any:
    stack = "".join(traceback.format_exception(exc)) if exc is not None else None
    return facets.error_message(message, stack)


def reference_versions(spec: s.PipelineSpec, nodes: list[Any]) -> dict[str, str]:
    """Lookup source -> the newest version of its data a refreshed lookup joined rows with
    (counted per version by the lookup: ``connectors.metrics.REFERENCE_VERSION``)."""
    from connectors.metrics import latest_reference_version

    stats = {n.name: n.stats for n in nodes}
    out = {}
    for step in spec.steps:
        source = getattr(step, "lookup", None)
        version = latest_reference_version(stats.get(step.name, {}))
        if source and version:
            out[source] = version
    return out


def run_warnings(
    spec: s.PipelineSpec,
    run_id: str,
    summary: RunSummary,
    profiles: dict[str, dict],
    beam_seen: set[str] | None,
) -> list[dict[str, str]]:
    """What a run could not report about itself, each logged too: a file source that read
    rows but whose column profile never reached the driver (its workers wrote it where the
    driver cannot read: a worker's own temp dir), and a runner that returned no Beam lineage
    metrics although files were read and written (Beam reports those it opens through its
    FileSystems), so the cross-check of datasets checked nothing."""
    warnings = []
    counted = {n.name: n.rows_in for n in summary.nodes}
    for src in spec.sources:
        if src.type == "file" and counted.get(src.name) and src.name not in profiles:
            warnings.append(
                {
                    "code": "profile_missing",
                    "subject": src.name,
                    "message": f"no column profile of source {src.name} came back from the "
                    f"workers (looked in {spec.run.profile_dir(run_id)}): its dataQualityMetrics "
                    "are missing; set run.temp_location to a place the workers and the driver "
                    "share (gs://..., s3://..., or a shared absolute path)",
                }
            )
    files = [d for d in summary.inputs + summary.outputs if not d.uri.startswith("kafka://")]
    if beam_seen is not None and not beam_seen and files:
        warnings.append(
            {
                "code": "beam_lineage_unavailable",
                "message": f"the {spec.run.runner} runner returned no Beam lineage metrics: the "
                "datasets in these events were not cross-checked against what Beam read and wrote",
            }
        )
    for warning in warnings:
        log.warning("%s", warning["message"])
    return warnings


def beam_lineage(result: Any) -> set[str]:
    """Dataset paths Beam's own Lineage metrics saw (sources and sinks), as plain paths/URIs.
    Empty when the runner reports none (the portable job service returns no bounded-trie
    metrics): :func:`run_warnings` then says the cross-check checked nothing."""
    from apache_beam.metrics.metric import Lineage

    seen: set[str] = set()
    for label in (Lineage.SOURCE, Lineage.SINK):
        try:
            fqns = Lineage.query(result.metrics(), label)
        except Exception as exc:  # a runner without bounded-trie metrics
            log.debug("Beam lineage not available: %s", exc)
            continue
        for fqn in fqns:
            system, _, rest = fqn.partition(":")
            if system == "filesystem" and rest.startswith("localhost."):
                seen.add(rest.removeprefix("localhost."))
            elif system in ("gcs", "s3"):
                seen.add(f"{'gs' if system == 'gcs' else system}://{rest.replace(':', '/', 1)}")
            else:
                seen.add(fqn)
    return seen


class LineageSession:
    """One run's lineage: START when built, then exactly one of COMPLETE / FAIL / ABORT."""

    def __init__(
        self,
        spec: s.PipelineSpec,
        inputs: list[Dataset],
        outputs: list[Dataset],
        run_id: str,
        *,
        event_log: str | None,
        spec_path: str | None = None,
        started: bool = False,
        principal: Principal | None = None,
        key_uses: list[Any] | None = None,
    ) -> None:
        """``started``: another process already emitted this run's START (a detached job,
        :mod:`pipelines.jobs`); only the terminal event is left to emit. ``principal``: who
        ran it, when that was decided elsewhere (the detached job's submitter, not whoever
        asks for its status). ``key_uses``: the pseudonymisation key versions the graph was
        built with (``BuiltPipeline.key_uses``)."""
        from lineage.emitter import RunLineage

        self.facts = RunLineageFacts(
            spec, run_id, inputs, outputs, spec_path=spec_path, key_uses=list(key_uses or [])
        )
        if principal is not None:
            self.facts.principal = principal
        self.emitter = RunLineage(
            namespace=spec.lineage.namespace,
            job_name=spec.name,
            run_id=run_id,
            event_log=event_log,
            transport=spec.lineage.transport,
            close_timeout=spec.lineage.shutdown_timeout,
        )
        if started:
            return
        self.emitter.emit(
            "START",
            inputs=self.facts.input_datasets(),
            outputs=self.facts.output_datasets(),
            run_facets=self.facts.run_facets(),
            job_facets=self.facts.job_facets(),
        )

    def running(self, nodes: list[Any], *, streaming: bool = True) -> None:
        """A RUNNING heartbeat with the run's counts so far, as OpenLineage asks of streaming
        jobs (their terminal events cannot be relied on): inputStatistics per input,
        outputStatistics per output, jobType STREAMING."""
        from openlineage.client.event_v2 import InputDataset, OutputDataset

        counts = {n.name: n for n in nodes}
        versions = reference_versions(self.facts.spec, nodes)
        inputs = []
        for d in self.facts.inputs:
            node = counts.get(d.node) if d.kind != "lookup" else None  # a step's rows_in
            version = {"version": facets.dataset_version(versions[d.node])} if d.node in versions else {}
            for path in d.files or [d.uri]:
                namespace, name = dataset_name(path)
                extra = (
                    {"inputStatistics": facets.input_statistics(node.rows_in, node.files)}
                    if node
                    else {}
                )
                inputs.append(InputDataset(namespace, name, facets=version, inputFacets=extra))
        outputs = []
        for d in self.facts.outputs:
            node = counts.get(d.node)
            namespace, name = dataset_name(d.uri)
            extra = (
                {
                    "outputStatistics": facets.output_statistics(
                        node.rows_out, node.bytes, node.files
                    )
                }
                if node
                else {}
            )
            outputs.append(OutputDataset(namespace, name, outputFacets=extra))
        job = self.facts.job_facets()
        job["jobType"] = facets.job_type(streaming=streaming)
        self.emitter.emit(
            "RUNNING",
            inputs=inputs,
            outputs=outputs,
            run_facets=self.facts.run_facets(),
            job_facets=job,
        )

    def finish(
        self,
        state: str,
        summary: RunSummary,
        *,
        message: str | None = None,
        exc: BaseException | None = None,
        beam_seen: set[str] | None = None,
    ) -> dict[str, Any]:
        """Emit the terminal event, wait (bounded) for delivery, and report what happened."""
        spec = self.facts.spec
        profiles = read_profiles(spec, self.facts.run_id)
        counted = bool(summary.nodes)
        inputs = self.facts.input_datasets(
            profiles=profiles if counted else None,
            assertions=assertions_by_dataset(self.facts, summary) if counted else None,
            versions=reference_versions(spec, summary.nodes),
        )
        outputs = self.facts.output_datasets(summary if counted else None)
        run_facets = self.facts.run_facets()
        if message:
            run_facets["errorMessage"] = error_facet(exc, message)
        warnings = run_warnings(spec, self.facts.run_id, summary, profiles, beam_seen)
        if warnings:
            run_facets[facets.RUN_WARNINGS_FACET] = facets.run_warnings(warnings)
        sync = sync_report_facet(spec, summary) if counted else None
        if sync is not None:
            run_facets[SYNC_REPORT_FACET] = sync
        self.emitter.emit(
            state,
            inputs=inputs,
            outputs=outputs,
            run_facets=run_facets,
            job_facets=self.facts.job_facets(),
        )
        stats = self.emitter.close()
        report: dict[str, Any] = {"event_log": self.emitter.event_log, **stats.as_dict()}
        if warnings:
            report["warnings"] = warnings
        if beam_seen is not None:
            named = {d.name for d in inputs} | {d.name for d in outputs}
            named |= {f"{d.namespace}/{d.name}" for d in inputs + outputs if "://" in d.namespace}
            missing = sorted(p for p in beam_seen if p.rstrip("/") not in named)
            report["beam_datasets_missing"] = missing
            if missing:
                log.warning("datasets Beam saw but lineage events lack: %s", missing)
        return report
