"Everything public: `from fastai_sprinkles.all import *`"
from .data import *
from .compare import *
