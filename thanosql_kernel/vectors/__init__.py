"""The vector index behind a small interface (Chroma by default), the compact copy exact
SEARCH scans, exact numpy cosine, and the plane PRINT EMBEDDING maps vectors onto."""

from __future__ import annotations

from .blobs import UNREADABLE, blobs_to_matrix, from_blob, to_blob
from .chroma import HNSW, ChromaIndex, collection_name
from .compact import CompactVectors
from .exact import cosine_scores, cosine_similarities, exact_top_k, normalize
from .index import VectorIndex
from .neighbours import Scores, chance_precision, nearest_others, scores
from .projection import Projection, pca_2d
from .stored import StoredCopies

__all__ = ["HNSW", "UNREADABLE", "ChromaIndex", "CompactVectors", "Projection", "Scores",
           "StoredCopies", "VectorIndex", "blobs_to_matrix", "chance_precision", "collection_name",
           "cosine_scores", "cosine_similarities", "exact_top_k", "from_blob", "nearest_others",
           "normalize", "pca_2d", "scores", "to_blob"]
