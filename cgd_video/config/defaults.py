"""Every configuration key with its default and a comment (detectron2 ``config/defaults.py`` style).

Why yacs: it is what PySlowFast and detectron2 use, it freezes configs, and its ``CfgNode`` gives
typed keys for free (a YAML value must have the type of the default). We add ``_BASE_`` inheritance,
strict unknown-key errors with suggestions and clearer type errors in :mod:`cgd_video.config.loading`.

The defaults follow the paper's video protocol (Sec. 4.1, PROTOCOL.md §5) for C2D ResNet-50 + CGD on
UCF-101; the files in ``configs/`` override only what differs.
"""

from __future__ import annotations

from yacs.config import CfgNode as CN

_C = CN()

# ----------------------------------------------------------------------------------------------------
# Model (kwargs of cgd_video.models.C2DResNet; see cgd_video/boundary/model.py)
# ----------------------------------------------------------------------------------------------------
_C.MODEL = CN()
# Registered model name for cgd_video.models.create_model; "c2d_resnet" builds C2DResNet directly
# from the keys below.
_C.MODEL.NAME = "c2d_resnet"
# ResNet depth of the C2D backbone: 18, 34, 50 or 101.
_C.MODEL.DEPTH = 50
# Number of output classes (101 for UCF-101, 200 for Mini-Kinetics). Must match DATA.CLASSES.
_C.MODEL.NUM_CLASSES = 101
# Temporal layout preset (stem/pool temporal strides): "nonlocal32" (paper, 32 frames) or "pytorchvideo8".
_C.MODEL.LAYOUT = "nonlocal32"
# Attention inserted in every residual block: "none" or "cgd".
_C.MODEL.ATTENTION = "none"
# CGD variant of Table 2: "v1".."v10" (v10 is the paper's choice).
_C.MODEL.CGD_VARIANT = "v10"
# CGD temporal mode (Sec. 3.2): "shared" (Eq. 12), "concat" (Fig. 4a), "mean" or "frame".
_C.MODEL.CGD_TEMPORAL = "shared"
# Where CGD sits in the bottleneck: "conv1" (after the first 1x1 conv, paper) or "conv2" (Table 4).
_C.MODEL.CGD_POSITION = "conv1"
# CGD weight init: "xavier" (authors' code) or "zeros" (identity at start).
_C.MODEL.CGD_INIT = "xavier"
# Non-local baseline block: "none", "nl" (embedded Gaussian) or "cgnl" (dot product), PROTOCOL.md §4.
_C.MODEL.NONLOCAL = "none"
# Placement of the non-local / CGNL block(s): "res4_last" (one block before res4's last block, Table 3)
# or "nl5" (the Non-local paper's 5 blocks in res3/res4).
_C.MODEL.NONLOCAL_PLACEMENT = "res4_last"
# CGNL groups: 1 for the UCF-101 row, 8 for the Mini-Kinetics row of Table 3.
_C.MODEL.CGNL_GROUPS = 8
# Dropout after global pooling, before the classifier (paper: 0.5).
_C.MODEL.DROPOUT = 0.5
# Zero-init the last BN gamma of every residual block.
_C.MODEL.ZERO_INIT_RESIDUAL = False
# Local path of a torchvision ImageNet ResNet state_dict to initialise from. "none" = random init,
# chosen on purpose. "" = not chosen: random init with a warning at start (the paper's configs leave it
# "" because the paper fine-tunes from ImageNet, Sec. 4.1; set a file, or "none" to silence it).
_C.MODEL.PRETRAINED = "none"

# ----------------------------------------------------------------------------------------------------
# Data (kwargs of cgd_video.data.datasets.TrainClipDataset / MultiViewTestDataset)
# ----------------------------------------------------------------------------------------------------
_C.DATA = CN()
# Folder the list files' relative video paths are resolved against.
_C.DATA.ROOT = ""
# Training list: "<relative path> <0-based label>" per line.
_C.DATA.TRAIN_LIST = ""
# Validation list (centre-view validation during training); "" falls back to DATA.TEST_LIST.
_C.DATA.VAL_LIST = ""
# Test list used by tools/test.py.
_C.DATA.TEST_LIST = ""
# Class names file, one name per line in label order ("" = use "class_<i>").
_C.DATA.CLASSES = ""
# Frames per clip fed to the model (paper: 32).
_C.DATA.NUM_FRAMES = 32
# Temporal stride between sampled frames (paper: 2, i.e. a 64-frame window with every other frame kept).
_C.DATA.SAMPLING_RATE = 2
# Training crop size in pixels (paper: 224).
_C.DATA.TRAIN_CROP = 224
# Training augmentation: "paper" (random crop of 0.75-1 of the shorter side) or "jitter" (short side
# in DATA.TRAIN_JITTER, random crop).
_C.DATA.TRAIN_AUG = "paper"
# Shorter-side range [min, max] for the "jitter" augmentation.
_C.DATA.TRAIN_JITTER = [256, 320]
# Test: frames are resized so the shorter side is this many pixels (paper: 256).
_C.DATA.TEST_SCALE = 256
# Test crop size (paper: 256 for the 3-crop protocol; UCF 1-crop uses a centre crop of this size).
_C.DATA.TEST_CROP = 256
# Per-channel RGB mean used to normalise [0,1] pixels (ImageNet).
_C.DATA.MEAN = [0.485, 0.456, 0.406]
# Per-channel RGB std (ImageNet).
_C.DATA.STD = [0.229, 0.224, 0.225]
# Video decoding backend: "pyav" (mp4/mkv: seek + skip the frames a clip does not need; 1.17x decord's
# train clips per worker on h264, docs/BENCHMARKS.md §4b), "decord" (used only where its random access
# is frame-exact, else PyAV; falls back to PyAV) or "frames" (JPEG folders). Every backend returns the
# same frames.
_C.DATA.BACKEND = "pyav"
# Training: how many other videos to try when one cannot be decoded (the replacement is counted).
_C.DATA.MAX_RETRIES = 10

# ----------------------------------------------------------------------------------------------------
# Optimisation (cgd_video/engine/optim.py and lr_schedule.py)
# ----------------------------------------------------------------------------------------------------
_C.SOLVER = CN()
# Optimiser: "sgd" (paper) or "adamw".
_C.SOLVER.OPTIMIZER = "sgd"
# Learning rate for a total batch of SOLVER.REFERENCE_BATCH clips (paper: 0.01 for 44 clips).
_C.SOLVER.BASE_LR = 0.01
# Linear LR scaling: lr = BASE_LR * total_batch / REFERENCE_BATCH, where total_batch =
# TRAIN.BATCH_SIZE (per process) x world size x TRAIN.ACCUM_STEPS.
_C.SOLVER.LINEAR_SCALING = True
# The total batch BASE_LR was tuned for (paper: 11 clips x 4 GPUs = 44).
_C.SOLVER.REFERENCE_BATCH = 44
# SGD momentum (paper: 0.9).
_C.SOLVER.MOMENTUM = 0.9
# Use Nesterov momentum.
_C.SOLVER.NESTEROV = False
# Weight decay of ordinary weights (paper: 1e-4).
_C.SOLVER.WEIGHT_DECAY = 1e-4
# Weight decay of CGD parameters (paper's video runs: 5e-5; authors' ImageNet code: 4e-5).
_C.SOLVER.CGD_WEIGHT_DECAY = 5e-5
# Weight decay of BatchNorm/GroupNorm affine parameters.
_C.SOLVER.NORM_WEIGHT_DECAY = 1e-4
# Weight decay of biases (conv/linear).
_C.SOLVER.BIAS_WEIGHT_DECAY = 1e-4
# Decay after warmup: "step" (x GAMMA at SOLVER.STEPS) or "cosine" (down to COSINE_END_LR).
_C.SOLVER.LR_POLICY = "step"
# Epochs at which the step policy multiplies the LR by GAMMA (paper: 40 and 80).
_C.SOLVER.STEPS = [40, 80]
# Step policy factor (paper: 0.1).
_C.SOLVER.GAMMA = 0.1
# Final learning rate of the cosine policy, as a fraction of the (scaled) base LR.
_C.SOLVER.COSINE_END_FACTOR = 0.0
# Training length in epochs (paper: 100).
_C.SOLVER.MAX_EPOCH = 100
# Linear warmup length in epochs (fractional allowed; "gradual warmup" in the paper).
_C.SOLVER.WARMUP_EPOCHS = 1.0
# LR at epoch 0 as a fraction of the base LR; rises linearly to 1 over WARMUP_EPOCHS.
_C.SOLVER.WARMUP_START_FACTOR = 0.1
# Clip the global gradient norm to this value (0 = off).
_C.SOLVER.CLIP_GRAD_NORM = 0.0

# ----------------------------------------------------------------------------------------------------
# Training loop (cgd_video/engine/trainer.py)
# ----------------------------------------------------------------------------------------------------
_C.TRAIN = CN()
# Clips per process per micro-batch (paper: 11 per GPU).
_C.TRAIN.BATCH_SIZE = 11
# Micro-batches accumulated per optimiser step (1 GPU x 11 x ACCUM_STEPS 4 = the paper's 44).
_C.TRAIN.ACCUM_STEPS = 1
# Device: "auto" (cuda if available, else cpu), "cpu" or "cuda".
_C.TRAIN.DEVICE = "auto"
# Mixed precision: "none", "bf16" or "fp16" (fp16 uses a GradScaler, saved in checkpoints).
_C.TRAIN.AMP = "none"
# torch intra-op CPU threads of each process (0 = torch's default). 1 is fastest on a busy or small
# machine where OpenMP threads would spin against DataLoader workers and other processes.
_C.TRAIN.CPU_THREADS = 0
# Use the channels_last_3d memory format for model and inputs (faster convs on recent GPUs).
_C.TRAIN.CHANNELS_LAST = False
# torch.compile the model for training (default inductor backend; the first steps are slow while it
# compiles). Off: eager, always correct.
_C.TRAIN.COMPILE = False
# Convert BatchNorm to SyncBatchNorm under torchrun (multi-GPU).
_C.TRAIN.SYNC_BN = False
# Precise BN (engine/precise_bn.py): after each validated epoch and the last, recompute every BN layer's
# running statistics over this many training batches of the final weights (0 = off, the paper's recipe;
# PySlowFast's BN.NUM_BATCHES_PRECISE is 200). Helps small batches, where the running averages are noisy.
_C.TRAIN.PRECISE_BN_BATCHES = 0
# Save checkpoints/epoch_XXXX.pt every this many epochs (last.pt is written every epoch).
_C.TRAIN.CHECKPOINT_PERIOD = 1
# Also refresh last.pt every this many optimiser steps inside an epoch (0 = only at epoch ends).
_C.TRAIN.CHECKPOINT_ITERS = 0
# Validate with the test protocol's centre view (1 clip x 1 crop) every this many epochs (0 = never).
_C.TRAIN.EVAL_PERIOD = 5
# Resume automatically from OUTPUT_DIR/checkpoints/last.pt when it exists.
_C.TRAIN.AUTO_RESUME = True
# Write a metrics.jsonl line every this many optimiser steps.
_C.TRAIN.LOG_PERIOD = 10
# Debug/testing: stop (without saving) after this many optimiser steps in this process (0 = off).
_C.TRAIN.STOP_AFTER_ITERS = 0

# ----------------------------------------------------------------------------------------------------
# Testing (tools/test.py, cgd_video/engine/evaluator.py)
# ----------------------------------------------------------------------------------------------------
_C.TEST = CN()
# Clips evenly spread over the whole video (UCF-101: 1, Mini-Kinetics: 10).
_C.TEST.NUM_CLIPS = 1
# Spatial crops per clip along the longer side (UCF-101: 1 centre crop, Mini-Kinetics: 3).
_C.TEST.NUM_CROPS = 1
# Videos per test batch (each video contributes NUM_CLIPS x NUM_CROPS views).
_C.TEST.BATCH_SIZE = 2
# Checkpoint to test ("" = OUTPUT_DIR/checkpoints/last.pt).
_C.TEST.CHECKPOINT = ""
# Test/inference only: fold every eval BatchNorm that follows a conv into it (models/fusion.py); same
# logits to float32 rounding, fewer passes over memory. The model cannot be trained afterwards.
_C.TEST.FUSE_BN = True
# Headline top1/top5/mean_class_acc of test_results.json: False = over the decoded videos (undecodable ones
# listed and left out), True = every labelled video, an undecodable one counted as a wrong prediction
# (the leaderboard convention). Both sets are always written (*_decoded, *_failed_as_wrong).
_C.TEST.FAILED_AS_WRONG = False

# ----------------------------------------------------------------------------------------------------
# Data loading
# ----------------------------------------------------------------------------------------------------
_C.DATALOADER = CN()
# Decoding worker processes per training/testing process (0 = decode in the main process).
_C.DATALOADER.NUM_WORKERS = 4
# Pin host memory for faster host-to-GPU copies (ignored on CPU).
_C.DATALOADER.PIN_MEMORY = True

# ----------------------------------------------------------------------------------------------------
# Misc
# ----------------------------------------------------------------------------------------------------
# Where config.yaml, metrics.jsonl, checkpoints/ and test results are written.
_C.OUTPUT_DIR = "outputs/default"
# Seed of model init, data order and augmentation (derived per (seed, epoch, index)).
_C.SEED = 0


def get_cfg_defaults() -> CN:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
