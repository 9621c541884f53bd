"""An HTML report of answered Docs: summary, evaluation, and each document in displaCy's span style."""

from .page import HtmlReport, check_report_path, write_report

__all__ = ["HtmlReport", "check_report_path", "write_report"]
