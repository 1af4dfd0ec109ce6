"""Moved to odkit.masks (numpy only, below inference, so `odkit predict` can use it); kept for imports in flight."""

from odkit.masks import reframe_box_masks_to_image_masks

__all__ = ["reframe_box_masks_to_image_masks"]
