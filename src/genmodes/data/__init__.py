"""Datasets: types, nonsense words, one generator per family, the published reversal-curse loader, audit."""

from genmodes.data.types import Dataset, Document, Fact, Question

__all__ = ["Dataset", "Document", "Fact", "Question"]
