"""The model input size fixed by an `image_resizer`, when it fixes one."""

from __future__ import annotations


def fixed_input_size(meta_arch_config) -> tuple[int, int] | None:
    """(H, W) for fixed_shape_resizer and padded keep_aspect_ratio_resizer; None when the size varies per image.

    ``meta_arch_config`` is an ``Ssd`` or ``FasterRcnn`` message (anything with an ``image_resizer`` field).
    """
    if not meta_arch_config.HasField("image_resizer"):
        return None
    r = meta_arch_config.image_resizer
    kind = r.WhichOneof("image_resizer_oneof")
    if kind == "fixed_shape_resizer":
        return (int(r.fixed_shape_resizer.height), int(r.fixed_shape_resizer.width))
    if kind == "keep_aspect_ratio_resizer" and r.keep_aspect_ratio_resizer.pad_to_max_dimension:
        d = int(r.keep_aspect_ratio_resizer.max_dimension)
        return (d, d)
    return None
