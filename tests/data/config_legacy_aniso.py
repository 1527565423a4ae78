# A config in the style of the older LSD scripts (yacs), for `lsdctl config import` tests.
# It is parsed, never executed: the import below must not matter.
import math
import os

import torch
from yacs.config import CfgNode as CN

_C = CN()
_C.SYSTEM = CN()
_C.SYSTEM.NUM_GPUS = 1
_C.SYSTEM.NUM_WORKERS = 6
_C.SYSTEM.CACHE_SIZE = os.cpu_count() * 2

_C.DATA = CN()
_C.DATA.HOME = "/somewhere/on/a/cluster"
_C.DATA.FIB = 0
_C.DATA.DIM_2D = False
_C.DATA.RAW = "volumes/raw"
_C.DATA.NEURON_LABELS = "volumes/labels/neuron_ids"

_C.TRAIN = CN()
_C.TRAIN.BATCH_SIZE = 2
_C.TRAIN.NEIGHBORHOOD = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]
_C.TRAIN.NEIGHBORHOOD_2D = [[0, -1], [-1, 0]]
_C.TRAIN.EPOCHS = 200000
_C.TRAIN.SAVE_EVERY = 2000
_C.TRAIN.DEVICE = "cuda:0" if torch.cuda.is_available() else "cpu"
_C.TRAIN.INITIAL_LR = 0.5e-4
_C.TRAIN.LR_BETAS = (0.95, 0.999)
_C.TRAIN.MODEL_TYPE = "mtlsd"

if _C.TRAIN.MODEL_TYPE in ["ACLSD", "ACRLSD"]:
    _C.TRAIN.LSD_EPOCHS = 10
else:
    _C.TRAIN.LSD_EPOCHS = None

_C.MODEL_ISO = CN()
_C.MODEL_ISO.NUM_FMAPS = 99
_C.MODEL_ISO.INPUT_SHAPE = (196, 196, 196)

_C.MODEL_ANISO = CN()
_C.MODEL_ANISO.NUM_FMAPS = 12
_C.MODEL_ANISO.FMAP_INC_FACTOR = 5
_C.MODEL_ANISO.DOWNSAMPLE_FACTORS = [[1, 2, 2], [2, 2, 2], [3, 3, 3]]
_C.MODEL_ANISO.KERNEL_SIZE_DOWN = [
    [(1, 3, 3), (1, 3, 3)],
    [(3,) * 3, (3,) * 3],
    [(3,) * 3, (3,) * 3],
    [(3,) * 3, (3,) * 3],
]
_C.MODEL_ANISO.KERNEL_SIZE_UP = [[(3,) * 3, (3,) * 3]] * 3
_C.MODEL_ANISO.INPUT_SHAPE = (132, 268, 268)
_C.MODEL_ANISO.INPUT_SHAPE_2D = (268, 268)
_C.MODEL_ANISO.OUTPUT_SHAPE = (72, 144, 144)
_C.MODEL_ANISO.VOXEL_SIZE = (40, 4, 4)
_C.MODEL_ANISO.ROTATION_INTERVAL = [0, math.pi / 2.0]
_C.MODEL_ANISO.JITTER_SIGMA = [(0, 2, 2), (2, 2, 2)]
_C.MODEL_ANISO.PROB_SLIP = 0.5
_C.MODEL_ANISO.LSD_SIGMA = 80
_C.MODEL_ANISO.LSD_DOWNSAMPLE = 2
_C.MODEL_ANISO.LOG_DIR = f"{_C.DATA.HOME}/lsd_logs"
