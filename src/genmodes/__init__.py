"""genmodes: controlled studies of how language models generalize from parameters vs context.

Pipeline: dataset -> condition (how the model gets the knowledge) -> scorer -> results -> report.
"""

__version__ = "0.1.0"
