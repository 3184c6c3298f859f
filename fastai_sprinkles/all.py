"Everything public: `from fastai_sprinkles.all import *`"
from .data import *
from .boxes import *
from .anneal import *
from .sprinkles import *
from .cutmix import *
from .saliency import *
from .keep import *
from .compare import *
