"""Feedback: funnel metrics, experiment statistics, the closed loop and the report.

Modules are imported on demand (``autopersona.evaluation.experiment`` and so on); this
package file stays free of heavy imports so that the command line starts quickly.
"""
