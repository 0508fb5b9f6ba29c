"""Losses and regularisers of the pre-image objective, one function per equation (IJCV 2016), and
the loss registry the engine looks losses up in."""
from jaxinv.objectives.losses import (  # noqa: F401
    Loss, Target, inner_product_loss, inversion_loss, masked_inversion_loss, register)
from jaxinv.objectives.regularisers import (  # noqa: F401
    TV_FLOOR, bounded_range, gram_cosine_similarity, gram_matrix, jitter, project_bounded_range, texture_loss,
    total_variation)
