"""cgd_video: video action recognition with Compact Global Descriptors (He et al., arXiv 1907.09665)."""

__version__ = "0.1.0"

__all__ = ["__version__", "Predictor"]


def __getattr__(name):
    # Lazy: importing the package must not pull in the data/decoding stack.
    if name == "Predictor":
        from cgd_video.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'cgd_video' has no attribute {name!r}")
