"""Reports over OpenLineage event logs: compliance, access patterns, the lineage graph.

Modules, in the order data flows through them:

* :mod:`~lineage.reports.events`: event logs (files or a Marquez API) -> runs;
* :mod:`~lineage.reports.compliance`: classification, personal-data flows, quality, findings;
* :mod:`~lineage.reports.access`: reads and writes per principal and dataset, anomalies,
  SOC 2 / ISO 27001 control mappings;
* :mod:`~lineage.reports.graph`: the dataset/job/column graph and its layout;
* :mod:`~lineage.reports.render` and :mod:`~lineage.reports.svg`: Markdown, HTML, text, SVG.

Standard library only, so the CLI that uses them starts fast and they run wherever the
events are, without the pipeline's heavy dependencies.
"""
