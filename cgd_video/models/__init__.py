"""Models: C2D ResNets with CGD, Non-local and CGNL blocks, a registry of named presets."""

from cgd_video.models.attention import create_attention
from cgd_video.models.cgd import CGD
from cgd_video.models.cgnl import CGNLBlock
from cgd_video.models.nonlocal_block import NonLocalBlock
from cgd_video.models.pretrained import convert_pytorchvideo_c2d_state_dict, load_imagenet_weights
from cgd_video.models.registry import create_model, list_models, register_model
from cgd_video.models.resnet_c2d import C2DResNet
from cgd_video.models import presets  # noqa: F401  (registers the named models)

__all__ = [
    "CGD",
    "create_attention",
    "C2DResNet",
    "create_model",
    "list_models",
    "register_model",
    "load_imagenet_weights",
    "convert_pytorchvideo_c2d_state_dict",
    "NonLocalBlock",
    "CGNLBlock",
]
