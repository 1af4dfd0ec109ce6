"""Faster R-CNN feature extractors (TF OD API `faster_rcnn_resnet_keras_feature_extractor` / TF1 resnet_v1 and
`faster_rcnn_resnet_v1_fpn_keras_feature_extractor`).

Interface used by `odkit.models.faster_rcnn.FasterRCNNMetaArch`:
`preprocess(float images [B,3,H,W] in 0..255) -> float`, `extract_proposal_features(x) -> [B, C1, H/16, W/16]`
(FPN: a list of levels), `extract_box_classifier_features(crops [N, C1, h, w]) -> [N, C2, h', w']` (FPN:
`[N, 1024]`), attributes `proposal_channels`, `box_classifier_channels`, `first_stage_features_stride`,
`backbone_param_prefixes`. The ResNet sits under `backbone.` with torchvision names, so torchvision ImageNet
state dicts load as classification fine-tune checkpoints. Preprocessing subtracts the channel means
(123.68, 116.779, 103.939) like TF. batch_norm_trainable false freezes the batch-norm statistics.

- `ResNetFasterRcnnFeatureExtractor(depth, batch_norm_trainable)` (faster_rcnn_resnet{50,101,152}[_keras]):
  conv1..layer3 (TF conv1..conv4, stride 16) for proposals, layer4 (TF conv5, stride 2 on the crops, as the
  Keras extractor) for the box classifier.
- `InceptionResNetV2FasterRcnnFeatureExtractor(first_stage_features_stride, batch_norm_trainable)`
  (faster_rcnn_inception_resnet_v2[_keras]): preprocessing x * 2 / 255 - 1; block17_20_ac (1088 channels,
  stride 16, or 8 atrous) for proposals, mixed_7a .. conv_7b (1536 channels) for the box classifier
  (odkit.models.backbones.inception_resnet_v2).
- `ResNetFpnFasterRcnnFeatureExtractor(...)` (faster_rcnn_resnet{50,101,152}_fpn_keras): C2..C5 -> FPN levels
  min..max (odkit.models.necks.fpn), box classifier (TF) flatten in NHWC order -> FC 1024 relu -> batch norm
  (conv_hyperparams; none without batch_norm) -> FC 1024 relu.
"""

from __future__ import annotations

import torch
from torch import nn

from odkit.models.hyperparams import FrozenStatsBatchNorm1d, FrozenStatsBatchNorm2d

CHANNEL_MEANS = (123.68, 116.779, 103.939)

RESNET_TYPES = {
    "faster_rcnn_resnet50_keras": 50,
    "faster_rcnn_resnet101_keras": 101,
    "faster_rcnn_resnet152_keras": 152,
    "faster_rcnn_resnet50": 50,
    "faster_rcnn_resnet101": 101,
    "faster_rcnn_resnet152": 152,
}

INCEPTION_RESNET_V2_TYPES = ("faster_rcnn_inception_resnet_v2_keras", "faster_rcnn_inception_resnet_v2")

FPN_TYPES = {
    "faster_rcnn_resnet50_fpn_keras": 50,
    "faster_rcnn_resnet101_fpn_keras": 101,
    "faster_rcnn_resnet152_fpn_keras": 152,
}


def freeze_batch_norm_stats(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in `module` by a FrozenStatsBatchNorm2d holding the same parameters."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, FrozenStatsBatchNorm2d):
            frozen = FrozenStatsBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            frozen.load_state_dict(child.state_dict())
            frozen.weight.requires_grad_(child.weight.requires_grad)
            frozen.bias.requires_grad_(child.bias.requires_grad)
            setattr(module, name, frozen)
        else:
            freeze_batch_norm_stats(child)
    return module


def apply_conv_hyperparams(module: nn.Module, hp) -> None:
    """TF `override_base_feature_extractor_hyperparams`: the backbone's convs, batch norms and activations
    follow `conv_hyperparams` (initializer, l2 weight, batch-norm decay / epsilon, activation)."""
    from odkit.models.hyperparams import L2_ATTR, activation_layer, init_weight

    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            init_weight(child.weight, hp.initializer)
            setattr(child, L2_ATTR, float(hp.l2_weight))
        elif isinstance(child, nn.BatchNorm2d) and hp.batch_norm is not None:
            child.eps = hp.batch_norm.epsilon
            child.momentum = 1.0 - hp.batch_norm.decay
        elif isinstance(child, nn.ReLU):
            setattr(module, name, activation_layer(hp.activation))
        else:
            apply_conv_hyperparams(child, hp)


class _FlattenNHWC(nn.Module):
    """[N, C, H, W] -> [N, H*W*C] in TF's (channels-last) order, so TF Dense kernels apply unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class _ResNetBase(nn.Module):
    first_stage_features_stride = 16

    def __init__(self, depth: int) -> None:
        super().__init__()
        from odkit.models.backbones.resnet import ResNetBackbone

        self.backbone = ResNetBackbone(depth)
        self.register_buffer("channel_means", torch.tensor(CHANNEL_MEANS).view(1, 3, 1, 1), persistent=False)
        self.backbone_param_prefixes = ("backbone.",)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() - self.channel_means


class ResNetFasterRcnnFeatureExtractor(_ResNetBase):
    """first_stage_features_stride 8 (atrous, TF1 `faster_rcnn_resnet*` with output_stride 8): layer3 (TF
    conv4 / block3) keeps stride 1 and dilates its 3x3 convs by 2, so proposals are at stride 8; the box
    classifier is unchanged. (TF2's Keras ResNet extractors raise for stride 8; odkit gives both names the
    TF1 meaning.)"""

    def __init__(self, depth: int = 50, batch_norm_trainable: bool = False, first_stage_features_stride: int = 16
                 ) -> None:
        super().__init__(depth)
        self.first_stage_features_stride = int(first_stage_features_stride)
        if self.first_stage_features_stride == 8:
            for i, block in enumerate(self.backbone.layer3):
                if i == 0:
                    block.conv1.stride = (1, 1)
                    block.conv2.stride = (1, 1)
                    if block.downsample is not None:
                        block.downsample[0].stride = (1, 1)
                block.conv2.dilation, block.conv2.padding = (2, 2), (2, 2)
        elif self.first_stage_features_stride != 16:
            raise ValueError("first_stage_features_stride must be 8 or 16")
        if not batch_norm_trainable:
            freeze_batch_norm_stats(self)
        self.proposal_channels = 1024
        self.box_classifier_channels = 2048

    def extract_proposal_features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.backbone
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer3(n.layer2(n.layer1(x)))

    def extract_box_classifier_features(self, crops: torch.Tensor) -> torch.Tensor:
        return self.backbone.layer4(crops)


class ResNetFpnFasterRcnnFeatureExtractor(_ResNetBase):
    """FPN (depth additional_layer_depth, coarse stride-2 levels above 5) over ResNet C2..C5; the box
    classifier's FC layers use Keras Dense defaults (glorot-uniform kernels, zero biases, no regularizer)."""

    def __init__(
        self,
        depth: int,
        batch_norm_trainable: bool,
        min_level: int,
        max_level: int,
        fpn_depth: int,
        hp,
        override_base_hyperparams: bool,
        crop_features: int,
    ) -> None:
        super().__init__(depth)
        from odkit.models.necks.fpn import FPN

        if override_base_hyperparams:
            apply_conv_hyperparams(self.backbone, hp)
        self.fpn = FPN(
            self.backbone.out_channels,
            min_level,
            max_level,
            fpn_depth,
            hp,
            freeze_bn=not batch_norm_trainable,
        )
        if not batch_norm_trainable:
            freeze_batch_norm_stats(self)
        # TF: Flatten (NHWC order), Dense(1024, relu), batch norm from conv_hyperparams, Dense(1024, relu)
        bn: nn.Module = nn.Identity()
        if hp.batch_norm is not None:
            p = hp.batch_norm
            cls = nn.BatchNorm1d if batch_norm_trainable and p.train else FrozenStatsBatchNorm1d
            bn = cls(1024, eps=p.epsilon, momentum=1.0 - p.decay)
            bn.weight.requires_grad_(bool(p.scale))
            bn.bias.requires_grad_(bool(p.center))
        self.box_classifier = nn.Sequential(
            _FlattenNHWC(), nn.Linear(crop_features, 1024), nn.ReLU(), bn, nn.Linear(1024, 1024), nn.ReLU()
        )
        for layer in self.box_classifier:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.proposal_channels = fpn_depth
        self.box_classifier_channels = 1024

    def extract_proposal_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.fpn(self.backbone(x))

    def extract_box_classifier_features(self, crops: torch.Tensor) -> torch.Tensor:
        return self.box_classifier(crops)


class InceptionResNetV2FasterRcnnFeatureExtractor(nn.Module):
    """TF `FasterRCNNInceptionResnetV2KerasFeatureExtractor` (stride 16 or 8)."""

    def __init__(self, first_stage_features_stride: int = 16, batch_norm_trainable: bool = False) -> None:
        super().__init__()
        from odkit.models.backbones.inception_resnet_v2 import InceptionResNetV2, frozen_batch_norm

        self.first_stage_features_stride = int(first_stage_features_stride)
        self.backbone = InceptionResNetV2(self.first_stage_features_stride)
        if not batch_norm_trainable:
            frozen_batch_norm(self.backbone)
        self.proposal_channels = 1088
        self.box_classifier_channels = 1536
        self.backbone_param_prefixes = ("backbone.",)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() * (2.0 / 255.0) - 1.0

    def extract_proposal_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.proposal_features(x)

    def extract_box_classifier_features(self, crops: torch.Tensor) -> torch.Tensor:
        return self.backbone.box_classifier_features(crops)
