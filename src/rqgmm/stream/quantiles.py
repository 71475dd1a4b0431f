"""A value's position in its field's current distribution, from a sorted reservoir sample."""

from __future__ import annotations

import torch


def quantile_map(sorted_sample: torch.Tensor, filled: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Empirical CDF of each field, linearly interpolated between sample points: in [0, 1].

    sorted_sample: (F, S) ascending, unused slots +inf; filled: (F,) used slots per field;
    values: (B, F) finite. A value equal to sample points gets the mid-rank of their block, a
    value between two points the linear interpolation of their ranks, values outside the sample
    0 or 1; fields with fewer than two sample points map everything to 0.5. Monotone
    non-decreasing in the value for every field.
    """
    columns = values.T.contiguous().to(sorted_sample.dtype)  # (F, B)
    count = filled.to(sorted_sample.device)[:, None]  # (F, 1)
    last = (count - 1).clamp_min(1)
    below = torch.searchsorted(sorted_sample, columns, right=False)  # points < value
    at_or_below = torch.searchsorted(sorted_sample, columns, right=True)  # points <= value
    tied = at_or_below > below
    mid_rank = (below + at_or_below - 1).to(columns.dtype) / 2
    low = (at_or_below - 1).clamp(min=0).minimum(last - 1)
    high = low + 1
    low_value = sorted_sample.gather(1, low)
    high_value = sorted_sample.gather(1, high.clamp(max=sorted_sample.shape[1] - 1))
    gap = high_value - low_value
    fraction = torch.where(gap > 0, (columns - low_value) / torch.where(gap > 0, gap, 1.0), 0.0).clamp(0.0, 1.0)
    rank = torch.where(tied, mid_rank, low.to(columns.dtype) + fraction)
    quantile = (rank / last.to(columns.dtype)).clamp(0.0, 1.0)
    quantile = torch.where(count >= 2, quantile, torch.full_like(quantile, 0.5))
    return quantile.T.to(values.dtype)
