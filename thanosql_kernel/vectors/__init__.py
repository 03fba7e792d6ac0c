"""The vector index behind a small interface (Chroma by default), the compact copy exact
SEARCH scans, exact numpy cosine, and the plane PRINT EMBEDDING maps vectors onto."""

from __future__ import annotations

from .blobs import UNREADABLE, blobs_to_matrix, from_blob, to_blob
from .chroma import HNSW, ChromaIndex, collection_name
from .compact import CompactVectors
from .exact import cosine_scores, cosine_similarities, exact_top_k, normalize
from .index import VectorIndex
from .projection import Projection, pca_2d

__all__ = ["HNSW", "UNREADABLE", "ChromaIndex", "CompactVectors", "Projection", "VectorIndex",
           "blobs_to_matrix", "collection_name", "cosine_scores", "cosine_similarities",
           "exact_top_k", "from_blob", "normalize", "pca_2d", "to_blob"]
