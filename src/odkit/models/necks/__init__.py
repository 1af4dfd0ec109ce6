"""Feature-map generators on top of backbones: FPN / FPN-lite (fpn.py), SSD extra layers (ssd_layers.py), BiFPN."""
