"""Losses and regularisers of the pre-image objective, one function per equation (IJCV 2016)."""
from jaxinv.objectives.losses import inner_product_loss, inversion_loss, masked_inversion_loss  # noqa: F401
from jaxinv.objectives.regularisers import (  # noqa: F401
    TV_FLOOR, bounded_range, gram_matrix, jitter, project_bounded_range, texture_loss, total_variation)
