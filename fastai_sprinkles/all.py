"The augmentations, for `from fastai_sprinkles.all import *`: the sweep harness (`compare`) is imported on its own"
from .data import *
from .checks import *
from .boxes import *
from .fills import *
from .restoring import *
from .anneal import *
from .augment import *
from .sprinkles import *
from .cutmix import *
from .oneof import *
from .saliency import *
from .keep import *
