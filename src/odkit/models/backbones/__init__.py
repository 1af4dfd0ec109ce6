"""Classification backbones that return feature maps by pyramid level (level L has stride 2**L).

Every backbone is an nn.Module with `forward(x) -> dict[int, Tensor]`, `out_channels: dict[int, int]`
and `param_prefix` attributes. They are built from torchvision (never downloading weights) except MobileNet v1.
"""
