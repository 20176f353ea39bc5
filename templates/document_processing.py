"""The ``document_processing`` template (the workflow SDK's document_ai pipeline): business
documents (PDF with text or scanned, images, DOCX, HTML, plain text) read, classified, their
fields extracted with confidence scores, checked, and written as JSON documents and one
structured Parquet table per document type; unreadable documents are dead letters with the
reason (encrypted PDF, no text, OCR confidence below the threshold).

Parameter values map to behaviour:

- ``document_types``: which types the ``document_fields`` step extracts, and one filtered,
  validated branch with two outputs each; a document of another type is a dead letter.
- ``ai_providers``: who reads PDFs and images: ``local`` (pypdf text, Tesseract OCR), ``aws``
  (Amazon Textract through boto3, ``aws_region``/``aws_endpoint_url``), ``azure`` (Document
  Intelligence prebuilt-read, ``azure_endpoint``/``azure_key``) or ``google`` (a Document AI
  processor, ``google_project``/``google_location``/``google_processor``/``google_token``);
  one at a time. Fields are extracted by the same rules whoever read the text.
- ``output_formats``: ``json`` (one JSON document per line, text, fields and confidences) and
  ``structured_data`` (Parquet, the type's fields only).
- ``compliance_required``: PII in the text masked, the classifications in lineage, the
  retention class in every row, the GDPR framework on the run, and dead-letter payloads
  redacted (an unreadable document's bytes are not copied into the dead letters; its path
  and SHA-256-free position still name the original file).

- ``kafka_topic`` (with ``kafka_bootstrap_servers``, ``kafka_group_id``): read references to
  the documents from Kafka instead of ``document_paths``: JSON messages ``{"path": "..."}``
  (local path, file:// or any Beam FileSystems URI) from a ``kafka`` source, bounded by the
  end offsets seen at start, each read by a ``read_documents`` step with the same provider
  options; a missing or unreadable document is a dead letter of its message (original bytes,
  topic/partition, offset, reason). Everything downstream is the same.

The defaults run on the documents shipped in ``templates/sample_data/documents`` (made by
``python -m pipelines.dev.document_samples``); tests in ``templates/tests/document_processing.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.spec import ParameterSpec, PipelineSpec
from templates.base import SAMPLE_DATA, pipeline_spec, rejections_report

DOCUMENT_TYPES = ["invoice", "contract", "receipt"]
PROVIDERS = ["local", "azure", "aws", "google"]
OUTPUT_FORMATS = ["json", "structured_data"]
SAMPLES = SAMPLE_DATA / "documents"

DOCUMENT_COLUMNS = [
    "document_id", "path", "file_name", "format", "size_bytes", "pages", "extraction_method",
    "ocr_confidence", "text", "document_type", "type_confidence", "field_confidence", "confidences",
]
TYPE_FIELDS = {
    "invoice": ["vendor", "invoice_number", "invoice_date", "due_date", "currency", "net_amount",
                "tax_amount", "total_amount", "line_items"],
    "receipt": ["merchant", "date", "total_amount"],
    "contract": ["parties", "effective_date", "termination_date", "governing_law"],
}
CHECKS: dict[str, dict[str, Any]] = {
    "invoice": {
        "fields": {
            "vendor": {"type": "string", "required": True},
            "invoice_number": {"type": "string", "required": True},
            "invoice_date": {"type": "date", "required": True},
            "total_amount": {"type": "float64", "required": True},
        },
        "rules": [
            {"rule": "in_set", "field": "currency", "values": ["EUR", "USD", "GBP", "CHF", "NOK", "SEK", "DKK", "JPY", "CAD", "AUD"]},
            {
                "id": "totals_add_up",
                "rule": "expression",
                "expr": "net_amount is null or tax_amount is null or abs(net_amount + tax_amount - total_amount) <= 0.01",
                "message": "net + tax is not the total",
            },
            {
                "id": "due_after_issue",
                "rule": "expression",
                "expr": "due_date is null or due_date >= invoice_date",
                "message": "due date before the invoice date",
            },
        ],
    },
    "receipt": {
        "fields": {
            "merchant": {"type": "string", "required": True},
            "date": {"type": "date", "required": True},
            "total_amount": {"type": "float64", "required": True},
        },
        "rules": [{"rule": "min", "field": "total_amount", "min": 0}],
    },
    "contract": {
        "fields": {
            "effective_date": {"type": "date", "required": True},
            "governing_law": {"type": "string", "required": True},
        },
        "rules": [
            {
                "id": "ends_after_start",
                "rule": "expression",
                "expr": "termination_date is null or termination_date > effective_date",
                "message": "termination date not after the effective date",
            }
        ],
    },
}

PARAMETERS = {
    "document_paths": ParameterSpec(
        type="list",
        default=[str(SAMPLES / f"*.{ext}") for ext in ("pdf", "png", "jpg", "docx", "html", "txt")]
        + [str(SAMPLES / "unreadable" / "*")],
        description="Document files or glob patterns (PDF, PNG/JPEG/TIFF, DOCX, HTML, TXT).",
    ),
    "kafka_topic": ParameterSpec(
        type="string",
        description="Read document references ({\"path\": ...} JSON messages) from this Kafka "
        "topic instead of document_paths.",
    ),
    "kafka_bootstrap_servers": ParameterSpec(
        type="string", default="127.0.0.1:9092", description="Kafka brokers (with kafka_topic)."
    ),
    "kafka_group_id": ParameterSpec(
        type="string", default="document-processing", description="Kafka consumer group (with kafka_topic)."
    ),
    "document_types": ParameterSpec(
        type="list", default=DOCUMENT_TYPES, choices=DOCUMENT_TYPES,
        description="Types to extract; documents of other types are dead letters.",
    ),
    "ai_providers": ParameterSpec(
        type="list", default=["local"], choices=PROVIDERS,
        description="Who reads PDFs and images (one): local (pypdf + Tesseract OCR), aws "
        "(Amazon Textract), azure (Document Intelligence) or google (Document AI).",
    ),
    "google_project": ParameterSpec(type="string", description="Document AI project (google)."),
    "google_location": ParameterSpec(type="string", default="us", description="Document AI location (google)."),
    "google_processor": ParameterSpec(type="string", description="Document AI processor id (google)."),
    "google_token": ParameterSpec(
        type="secret", description="OAuth access token (google): env:VAR, file:PATH or a store reference."
    ),
    "google_endpoint": ParameterSpec(
        type="string", description="Document AI endpoint (google); default https://LOCATION-documentai.googleapis.com."
    ),
    "azure_endpoint": ParameterSpec(
        type="string", description="Document Intelligence endpoint (azure), https://NAME.cognitiveservices.azure.com."
    ),
    "azure_key": ParameterSpec(
        type="secret", description="Document Intelligence key (azure): env:VAR, file:PATH or a store reference."
    ),
    "aws_region": ParameterSpec(type="string", default="us-east-1", description="Textract's region (aws)."),
    "aws_endpoint_url": ParameterSpec(
        type="string", description="Textract endpoint (aws): a VPC endpoint, LocalStack, moto."
    ),
    "output_formats": ParameterSpec(
        type="list", default=OUTPUT_FORMATS, choices=OUTPUT_FORMATS,
        description="json: JSON documents (text, fields, confidences); structured_data: a "
        "Parquet table per document type.",
    ),
    "compliance_required": ParameterSpec(
        type="boolean", default=True,
        description="Mask PII (emails, phones, IBANs, cards, national ids) in the text, "
        "classify it in lineage and record each document's retention class.",
    ),
    "min_ocr_confidence": ParameterSpec(
        type="number", default=60,
        description="Mean Tesseract word confidence (0-100) under which a scan is a dead letter.",
    ),
    "output_dir": ParameterSpec(
        type="string", default="beamwright-output/document_processing", description="Where outputs go."
    ),
    "error_threshold": ParameterSpec(
        type="number", default=0.3, description="Fail the run above this fraction of rejected documents."
    ),
    "batch_size": ParameterSpec(type="integer", default=100, description="Documents per Arrow batch."),
}


def _branch(kind: str, values: Mapping[str, Any], out: str) -> tuple[list[dict], list[dict]]:
    """The steps and sinks of one document type: its rows, checked, written as asked."""
    steps: list[dict[str, Any]] = [
        {"name": f"{kind}s", "type": "filter", "input": "fields",
         "description": f"The {kind}s among the documents.", "where": f"document_type == '{kind}'"},
        {"name": f"{kind}_checks", "type": "validate",
         "description": f"Required {kind} fields and business rules.", **CHECKS[kind]},
    ]
    extra = ["pii_types", "pii_count", "retention_class"] if values["compliance_required"] else []
    steps.append({"name": f"{kind}_records", "type": "map",
                  "description": f"The {kind} columns only (not the other types' empty fields).",
                  "select": DOCUMENT_COLUMNS + TYPE_FIELDS[kind] + extra})
    sinks: list[dict[str, Any]] = []
    if "json" in values["output_formats"]:
        sinks.append({"name": f"{kind}_json", "type": "file", "input": f"{kind}_records",
                      "path": f"{out}/json/{kind}s", "format": "jsonl"})
    if "structured_data" in values["output_formats"]:
        sinks.append({"name": f"{kind}_parquet", "type": "file", "input": f"{kind}_records",
                      "path": f"{out}/tables/{kind}s", "format": "parquet"})
    return steps, sinks


def _provider_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    provider = values["ai_providers"][0]
    if provider == "aws":
        return {"aws": {"region": values["aws_region"], "endpoint_url": values["aws_endpoint_url"]}}
    if provider == "azure":
        if not values["azure_endpoint"] or not values["azure_key"]:
            raise ValueError(
                "parameters.azure_endpoint and azure_key: the azure provider needs both "
                "(e.g. -p azure_endpoint=https://NAME.cognitiveservices.azure.com -p azure_key=env:AZURE_DI_KEY)"
            )
        return {"azure": {"endpoint": values["azure_endpoint"], "key": values["azure_key"]}}
    if provider == "google":
        if not values["google_project"] or not values["google_processor"] or not values["google_token"]:
            raise ValueError(
                "parameters.google_project, google_processor and google_token: the google "
                "provider needs all three (e.g. -p google_token=env:GOOGLE_ACCESS_TOKEN)"
            )
        return {"google": {
            "project": values["google_project"], "location": values["google_location"],
            "processor": values["google_processor"], "token": values["google_token"],
            "endpoint": values["google_endpoint"],
        }}
    return {}


class DocumentProcessingTemplate:
    name = "document_processing"
    version = "1.0"
    description = (
        "Business documents (PDF, scans, images, DOCX, HTML, text): OCR where needed, fields "
        "per type with confidences, checks, PII masking; JSON documents and Parquet tables."
    )
    parameters = PARAMETERS

    def expand(self, values: Mapping[str, Any]) -> PipelineSpec:
        """The pipeline spec for typed parameter ``values``."""
        if len(values["ai_providers"]) != 1:
            raise ValueError(
                f"parameters.ai_providers: name one provider (got {list(values['ai_providers'])}); "
                "each document is read by one"
            )
        if not values["document_types"] or not values["output_formats"]:
            raise ValueError("parameters.document_types and output_formats: name at least one each")
        out = values["output_dir"].rstrip("/")
        compliance = values["compliance_required"]
        steps: list[dict[str, Any]] = [
            {
                "name": "fields",
                "type": "document_fields",
                "description": "Classify each document and extract its type's fields.",
                "document_types": [t for t in DOCUMENT_TYPES if t in values["document_types"]],
                "mask_pii": compliance,
            }
        ]
        sinks: list[dict[str, Any]] = []
        for kind in DOCUMENT_TYPES:
            if kind in values["document_types"]:
                branch_steps, branch_sinks = _branch(kind, values, out)
                steps += branch_steps
                sinks += branch_sinks
        reading = {
            "min_ocr_confidence": values["min_ocr_confidence"],
            "provider": values["ai_providers"][0],
            **_provider_settings(values),
        }
        if values["kafka_topic"]:
            sources = [{
                "name": "references", "type": "kafka", "bootstrap_servers": values["kafka_bootstrap_servers"],
                "topics": values["kafka_topic"], "group_id": values["kafka_group_id"],
                "value_format": "json", "bounded": "end_offsets",
            }]
            steps.insert(0, {
                "name": "documents", "type": "read_documents", "input": "references",
                "description": "Read the document each message names.", "path_field": "path", **reading,
            })
        else:
            sources = [{"name": "documents", "type": "document", "paths": list(values["document_paths"]), **reading}]
        sinks.append(rejections_report("rejections", f"{out}/alerts/rejections_by_rule.csv"))
        return pipeline_spec(
            self,
            values,
            owner="document-operations",
            sources=sources,
            steps=steps,
            sinks=sinks,
            dead_letter={"path": f"{out}/alerts/dead_letters", "format": "jsonl", "redact": compliance},
            governance={
                "frameworks": ["GDPR"] if compliance else [],
                "classification": "confidential",
                "fields": {"text": "PII", "parties": "PII"} if compliance else {},
            },
        )


TEMPLATE = DocumentProcessingTemplate()
