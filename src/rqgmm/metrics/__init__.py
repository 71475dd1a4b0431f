"""Semantic-ID quality: pure functions, frozen result dataclasses and a streaming accumulator."""

from rqgmm.metrics.churn import ChurnStats, id_churn
from rqgmm.metrics.quality import (
    CollisionStats,
    LevelUsage,
    OverlapStats,
    QualityAccumulator,
    QualityReport,
    ReconstructionStats,
    SemanticStats,
    compare,
    quality_report,
    usage_stats,
)

__all__ = ["ChurnStats", "id_churn", "CollisionStats", "LevelUsage", "OverlapStats", "QualityAccumulator", "QualityReport",
           "ReconstructionStats", "SemanticStats", "compare", "quality_report", "usage_stats"]
