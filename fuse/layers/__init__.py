"""Building blocks shared by methods: DINOv2 ViT on timm, DPT head, LoRA, attention, size registry.

Pure ``nn.Module``s and size tables; no file or dataset access and no registration lives here.
"""
