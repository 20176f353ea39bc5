"""OpenLineage facets for a beamwright run, built with openlineage-python's generated classes.

Every function takes plain data (an Arrow schema, counts, a column-lineage walk) and returns a
facet; nothing here touches Beam. The custom governance facet ships its JSON Schema in
``lineage/schemas/`` and names it in ``_schemaURL``, as the spec asks of custom facets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attr
import pyarrow as pa
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    data_quality_assertions_dataset,
    data_quality_metrics_input_dataset,
    dataset_version_dataset,
    datasource_dataset,
    documentation_job,
    error_message_run,
    input_statistics_input_dataset,
    job_type_job,
    lifecycle_state_change_dataset,
    output_statistics_output_dataset,
    ownership_job,
    parent_run,
    processing_engine_run,
    schema_dataset,
    source_code_location_job,
    symlinks_dataset,
    tags_dataset,
    tags_run,
)
from openlineage.client.generated.base import DatasetFacet, RunFacet

from lineage.columns import FieldState

PRODUCER = "https://github.com/beamwright/beamwright"
GOVERNANCE_FACET = "beamwright_governance"
GOVERNANCE_SCHEMA_URL = (
    "https://raw.githubusercontent.com/beamwright/beamwright/main/lineage/schemas/"
    "GovernanceDatasetFacet.json#/$defs/GovernanceDatasetFacet"
)
RUN_WARNINGS_FACET = "beamwright_runWarnings"
RUN_WARNINGS_SCHEMA_URL = (
    "https://raw.githubusercontent.com/beamwright/beamwright/main/lineage/schemas/"
    "RunWarningsRunFacet.json#/$defs/RunWarningsRunFacet"
)
PRINCIPAL_FACET = "beamwright_principal"
PRINCIPAL_SCHEMA_URL = (
    "https://raw.githubusercontent.com/beamwright/beamwright/main/lineage/schemas/"
    "PrincipalRunFacet.json#/$defs/PrincipalRunFacet"
)
AUDIENCE_FACET = "beamwright_audience"
AUDIENCE_SCHEMA_URL = (
    "https://raw.githubusercontent.com/beamwright/beamwright/main/lineage/schemas/"
    "AudienceDatasetFacet.json#/$defs/AudienceDatasetFacet"
)
CLASSIFICATION_ORDER = ("public", "internal", "confidential", "PII", "PHI", "restricted")


# --------------------------------------------------------------------------- datasets


def arrow_type_name(arrow_type: pa.DataType) -> str:
    """A readable type name: ``int64``, ``string``, ``timestamp[us, tz=UTC]``, ``struct``..."""
    if pa.types.is_struct(arrow_type):
        return "struct"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return f"list<{arrow_type_name(arrow_type.value_type)}>"
    if pa.types.is_dictionary(arrow_type):
        return arrow_type_name(arrow_type.value_type)
    if pa.types.is_large_string(arrow_type):
        return "string"
    return str(arrow_type)


def _schema_fields(fields: Iterable[pa.Field]) -> list[schema_dataset.SchemaDatasetFacetFields]:
    out = []
    for f in fields:
        children: list[schema_dataset.SchemaDatasetFacetFields] = []
        if pa.types.is_struct(f.type):
            children = _schema_fields(f.type)
        elif (pa.types.is_list(f.type) or pa.types.is_large_list(f.type)) and pa.types.is_struct(
            f.type.value_type
        ):
            children = _schema_fields(f.type.value_type)
        out.append(
            schema_dataset.SchemaDatasetFacetFields(
                name=f.name, type=arrow_type_name(f.type), fields=children
            )
        )
    return out


def schema(arrow_schema: pa.Schema) -> schema_dataset.SchemaDatasetFacet:
    """The dataset's real Arrow schema, nested fields included."""
    return schema_dataset.SchemaDatasetFacet(fields=_schema_fields(arrow_schema), producer=PRODUCER)


def named_fields(names: Iterable[str]) -> schema_dataset.SchemaDatasetFacet:
    """A schema known by field names only: the fields the rows carry to an output whose
    written schema cannot be read back (a Kafka topic written as JSON)."""
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n) for n in names],
        producer=PRODUCER,
    )


def data_source(namespace: str) -> datasource_dataset.DatasourceDatasetFacet:
    uri = namespace if "://" in namespace else f"{namespace}://"
    return datasource_dataset.DatasourceDatasetFacet(name=namespace, uri=uri, producer=PRODUCER)


def symlink(pipeline: str, node: str) -> symlinks_dataset.SymlinksDatasetFacet:
    """The logical name the spec gives the dataset (``<pipeline>.<node>``)."""
    return symlinks_dataset.SymlinksDatasetFacet(
        identifiers=[
            symlinks_dataset.Identifier(
                namespace="beamwright", name=f"{pipeline}.{node}", type="DATASET"
            )
        ],
        producer=PRODUCER,
    )


def overwritten() -> lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet:
    return lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet(
        lifecycleStateChange=lifecycle_state_change_dataset.LifecycleStateChange.OVERWRITE,
        producer=PRODUCER,
    )


def output_statistics(
    rows: int, size: int, files: int
) -> output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet:
    return output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
        rowCount=rows, size=size, fileCount=files, producer=PRODUCER
    )


def input_statistics(
    rows: int, files: int | None = None
) -> input_statistics_input_dataset.InputStatisticsInputDatasetFacet:
    return input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
        rowCount=rows, fileCount=files, producer=PRODUCER
    )


def quality_metrics(
    profile: Mapping[str, Any],
) -> data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet:
    """From a column profile: ``{"rowCount", "bytes", "fileCount", "columns": {col: {...}}}``."""
    columns = {
        name: data_quality_metrics_input_dataset.ColumnMetrics(
            nullCount=m.get("nullCount"),
            distinctCount=m.get("distinctCount"),
            min=m.get("min"),
            max=m.get("max"),
            count=m.get("count"),
            sum=m.get("sum"),
        )
        for name, m in profile.get("columns", {}).items()
    }
    return data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
        columnMetrics=columns,
        rowCount=profile.get("rowCount"),
        bytes=profile.get("bytes"),
        fileCount=profile.get("fileCount"),
        producer=PRODUCER,
    )


def quality_assertions(
    assertions: Sequence[Mapping[str, Any]],
) -> data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet:
    return data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
        assertions=[data_quality_assertions_dataset.Assertion(**a) for a in assertions],
        producer=PRODUCER,
    )


def _transformations(steps: Iterable[Any]) -> list[column_lineage_dataset.Transformation]:
    return [
        column_lineage_dataset.Transformation(
            type=st.type, subtype=st.subtype, description=st.description or None, masking=st.masking
        )
        for st in steps
    ]


def column_lineage(
    state: FieldState,
    datasets: Mapping[str, Sequence[tuple[str, str]]],
    output_fields: Iterable[str] | None = None,
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """The columnLineage facet of an output.

    Args:
        state: the walk's result for this output (:func:`lineage.columns.sink_lineage`).
        datasets: source node -> its (namespace, name) datasets (a glob may match several).
        output_fields: the fields the output really has; others are left out.
    """
    keep = set(output_fields) if output_fields is not None else None

    def inputs(origins: Iterable[Any]) -> list[column_lineage_dataset.InputField]:
        out = []
        for origin in origins:
            for namespace, name in datasets.get(origin.source, []):
                out.append(
                    column_lineage_dataset.InputField(
                        namespace=namespace,
                        name=name,
                        field=origin.field,
                        transformations=_transformations(origin.steps),
                    )
                )
        return out

    fields = {
        name: column_lineage_dataset.Fields(inputFields=inputs(origins))
        for name, origins in state.fields.items()
        if keep is None or name in keep
    }
    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields=fields, dataset=inputs(state.dataset), producer=PRODUCER
    )


@attr.define
class GovernanceDatasetFacet(DatasetFacet):
    """beamwright's governance facet: classification of the dataset and of each field, the
    compliance frameworks that apply, and how each field is protected on its way here."""

    classification: str
    frameworks: list[str] = attr.field(factory=list)
    fields: dict[str, dict[str, Any]] = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return GOVERNANCE_SCHEMA_URL


def highest(classifications: Iterable[str | None], default: str = "internal") -> str:
    """The most sensitive of ``classifications`` (unknown names rank as confidential)."""
    rank = {c: i for i, c in enumerate(CLASSIFICATION_ORDER)}
    present = [c for c in classifications if c]
    if not present:
        return default
    return max(present, key=lambda c: rank.get(c, rank["confidential"]))


def governance(
    classification: str, frameworks: Sequence[str], fields: Mapping[str, Mapping[str, Any]]
) -> GovernanceDatasetFacet:
    return GovernanceDatasetFacet(
        classification=classification,
        frameworks=list(frameworks),
        fields={k: dict(v) for k, v in fields.items()},
        producer=PRODUCER,
    )


@attr.define
class AudienceDatasetFacet(DatasetFacet):
    """beamwright's audience facet: who may read this output (an audience of the spec, by its
    attributes) and which of its fields were masked for that audience. OpenLineage has no
    standard facet for readers; the audience's name is also a standard dataset tag."""

    name: str
    attributes: dict[str, Any] = attr.field(factory=dict)
    masked_fields: list[str] = attr.field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return AUDIENCE_SCHEMA_URL


def audience(
    name: str, attributes: Mapping[str, Any], masked_fields: Iterable[str]
) -> AudienceDatasetFacet:
    return AudienceDatasetFacet(
        name=name,
        attributes=dict(attributes),
        masked_fields=sorted(masked_fields),
        producer=PRODUCER,
    )


def dataset_tags(values: Mapping[str, str]) -> tags_dataset.TagsDatasetFacet:
    return _tagged(tags_dataset.TagsDatasetFacet, tags_dataset.TagsDatasetFacetFields, values)


def _tagged(facet: Any, field: Any, values: Mapping[str, str]) -> Any:
    """One tags facet (dataset or run: OpenLineage gives each its own classes of the same
    shape) holding ``values``, every tag sourced from beamwright."""
    return facet(
        tags=[field(key=k, value=v, source="BEAMWRIGHT") for k, v in values.items()],
        producer=PRODUCER,
    )


# --------------------------------------------------------------------------- run and job


@attr.define
class PrincipalRunFacet(RunFacet):
    """beamwright's principal facet: who ran this run (name, type user|service|ci, and where
    the name came from: --as, env:BEAMWRIGHT_PRINCIPAL, ci:<system>, os). OpenLineage's
    ownership facet names a job's maintainers, not who ran a run, so this is custom; the name
    is also a standard run tag."""

    name: str
    type: str
    source: str

    @staticmethod
    def _get_schema() -> str:
        return PRINCIPAL_SCHEMA_URL


def principal(name: str, type_: str, source: str) -> PrincipalRunFacet:
    return PrincipalRunFacet(name=name, type=type_, source=source, producer=PRODUCER)


def processing_engine(
    beam_version: str, adapter_version: str
) -> processing_engine_run.ProcessingEngineRunFacet:
    return processing_engine_run.ProcessingEngineRunFacet(
        version=beam_version,
        name="Apache Beam",
        openlineageAdapterVersion=adapter_version,
        producer=PRODUCER,
    )


def tags(values: Mapping[str, str]) -> tags_run.TagsRunFacet:
    return _tagged(tags_run.TagsRunFacet, tags_run.TagsRunFacetFields, values)


@attr.define
class RunWarningsRunFacet(RunFacet):
    """beamwright's run warnings: what a completed run could not report about itself (a
    missing column profile, no Beam lineage metrics), so a consumer sees the gap instead of a
    silently absent facet."""

    warnings: list[dict[str, str]] = attr.field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return RUN_WARNINGS_SCHEMA_URL


def dataset_version(version: str) -> dataset_version_dataset.DatasetVersionDatasetFacet:
    return dataset_version_dataset.DatasetVersionDatasetFacet(
        datasetVersion=version, producer=PRODUCER
    )


def run_warnings(warnings: Sequence[Mapping[str, str]]) -> RunWarningsRunFacet:
    """From ``[{"code", "subject", "message"}]``."""
    return RunWarningsRunFacet(warnings=[dict(w) for w in warnings], producer=PRODUCER)


def error_message(message: str, stack_trace: str | None) -> error_message_run.ErrorMessageRunFacet:
    return error_message_run.ErrorMessageRunFacet(
        message=message, programmingLanguage="python", stackTrace=stack_trace, producer=PRODUCER
    )


def parent(namespace: str, job_name: str, run_id: str) -> parent_run.ParentRunFacet:
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=run_id),
        job=parent_run.Job(namespace=namespace, name=job_name),
        producer=PRODUCER,
    )


def job_type(streaming: bool) -> job_type_job.JobTypeJobFacet:
    return job_type_job.JobTypeJobFacet(
        processingType="STREAMING" if streaming else "BATCH",
        integration="BEAM",
        jobType="PIPELINE",
        producer=PRODUCER,
    )


def documentation(description: str) -> documentation_job.DocumentationJobFacet:
    return documentation_job.DocumentationJobFacet(description=description, producer=PRODUCER)


def ownership(owner: str) -> ownership_job.OwnershipJobFacet:
    return ownership_job.OwnershipJobFacet(
        owners=[ownership_job.Owner(name=owner, type="MAINTAINER")], producer=PRODUCER
    )


def source_code_location(
    url: str, repo_url: str, path: str, version: str
) -> source_code_location_job.SourceCodeLocationJobFacet:
    return source_code_location_job.SourceCodeLocationJobFacet(
        type="git", url=url, repoUrl=repo_url, path=path, version=version, producer=PRODUCER
    )


def assertion(
    kind: str, name: str, column: str | None, severity: str, failures: int
) -> dict[str, Any]:
    """One entry of the dataQualityAssertions facet: a check and how many rows failed it."""
    item = {
        "assertion": kind,
        "name": name,
        "success": failures == 0,
        "severity": severity,
        "expected": "0 failing rows",
        "actual": f"{failures} failing rows",
    }
    if column:
        item["column"] = column
    return item


PSEUDONYMIZATION_FACET = "beamwright_pseudonymization"
PSEUDONYMIZATION_SCHEMA_URL = (
    "https://raw.githubusercontent.com/beamwright/beamwright/main/lineage/schemas/"
    "PseudonymizationDatasetFacet.json#/$defs/PseudonymizationDatasetFacet"
)


@attr.define
class PseudonymizationDatasetFacet(DatasetFacet):
    """beamwright's pseudonymisation facet: which key (a reference) and key version made each
    pseudonymised field of an output, so a key rotation between two runs is visible."""

    fields: list[dict[str, Any]] = attr.field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return PSEUDONYMIZATION_SCHEMA_URL


def pseudonymization(fields: Sequence[Mapping[str, Any]]) -> PseudonymizationDatasetFacet:
    """From ``[{"field", "step", "key_ref", "key_version"}]``."""
    return PseudonymizationDatasetFacet(fields=[dict(f) for f in fields], producer=PRODUCER)
