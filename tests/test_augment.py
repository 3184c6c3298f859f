"""The contract of `BatchAugment`, held by every augmentation of the registry in `tests/helpers.py`: what `augment`
records, the arguments an `Annealer` may set (checked when set), `lr_find` left alone; the hooks, one signature each."""
import inspect
from pathlib import Path
import pytest, torch
from torch import nn
from fastai.basics import Learner, CrossEntropyLossFlat, set_seed
import fastai_sprinkles
from fastai_sprinkles.all import (BatchAugment, OneOf, ProgressiveSprinkles, KeepSprinkles, KeepCutout, GridMask,
                                  SaliencyHook, Annealer, checked, check_prob)
from helpers import quiet, cb, rand_dls, AUGMENTATIONS

torch.set_num_threads(1)

def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 3))

class Seen:
    "Whether each training batch came out of the augmentations changed: kept before them (order -20), seen after (20)"
    def __init__(self): self.changed, self.x0 = [], None
    def keep(self, c):
        if c.training: self.x0 = c.xb[0].clone()
    def look(self, c):
        if c.training: self.changed.append(not torch.equal(c.xb[0], self.x0))
    def cbs(self): return [cb(-20, before_batch=self.keep), cb(20, before_batch=self.look)]

def augs(cbs) -> list:
    "The augmentations among `cbs`, and the members of a `OneOf`"
    found = [c for c in cbs if isinstance(c, BatchAugment)]
    return found + [m for c in found if isinstance(c, OneOf) for m in c.augs]

@pytest.mark.parametrize('name', list(AUGMENTATIONS))
def test_every_augmentation_keeps_the_contract(name):
    set_seed(0)
    cbs, seen = AUGMENTATIONS[name](), Seen()
    learn = Learner(rand_dls(), net(), loss_func=CrossEntropyLossFlat(), cbs=cbs + seen.cbs())
    quiet(learn, 'lr_find', num_it=3, show_plot=False, suggest_funcs=())
    assert seen.changed and not any(seen.changed), "lr_find's batches were augmented"
    assert all(not a.hist for a in augs(cbs)), "lr_find left a record"
    seen.changed = []
    quiet(learn, 'fit', 1)
    assert len(seen.changed) == 4 and all(seen.changed), "a registered configuration must change every training batch"
    for a in augs(cbs):
        if isinstance(a, OneOf): continue  # its members record
        B = 16
        assert isinstance(a.coverage, torch.Tensor) and a.coverage.shape == (B,) and a.coverage.is_floating_point()
        assert bool(((a.coverage >= 0) & (a.coverage <= 1)).all())
        assert len(a.hist['coverage']) == 4
        if a.mixes_labels: assert a.lam.shape == a.perm.shape == (B,)
        for k in a.anneal:  # an attribute an Annealer may set is checked when set, and keeps its value on a bad one
            v = getattr(a, k)
            with pytest.raises((TypeError, ValueError)): setattr(a, k, object())
            assert getattr(a, k) is v

def test_where_is_one_hook_with_one_signature():
    "Every augmentation says where boxes may go with `where(x, h, w)`, and nothing tests which class overrides it"
    subs, todo = [], [BatchAugment]
    while todo: subs.append(c := todo.pop()); todo += c.__subclasses__()
    ours = [c for c in subs if c.__module__.startswith('fastai_sprinkles')]
    assert len(ours) >= 9
    for c in ours: assert list(inspect.signature(c.where).parameters) == ['self', 'x', 'h', 'w'], c
    src = '\n'.join(p.read_text() for p in Path(fastai_sprinkles.__file__).parent.glob('*.py'))
    assert '.where is ' not in src

def test_one_test_for_lr_find_and_get_preds():
    "The package asks whether a fit is `lr_find`'s or `get_preds`'s in one place"
    src = {p.name: p.read_text() for p in Path(fastai_sprinkles.__file__).parent.glob('*.py') if p.name != '_modidx.py'}
    assert [n for n, s in src.items() if 'lr_finder' in s] == ['augment.py']
    uses = sum(s.count('lr_find_or_get_preds(self.learn)') for s in src.values())
    assert uses == 4  # BatchAugment, Annealer, EarlyHeadTrainer, SaliencyHook

@pytest.mark.parametrize('make', [lambda: [ProgressiveSprinkles(fill='mean')], lambda: [GridMask(fill='mean')],
                                  lambda: [SaliencyHook('lowres'), KeepCutout(fill='mean')],
                                  lambda: [SaliencyHook('lowres'), KeepSprinkles(p=1., n=2, size=.2, fill='mean')],
                                  lambda: [OneOf([GridMask(fill='mean')])]],
                         ids=['sprinkles', 'gridmask', 'keep-cutout', 'keep-sprinkles', 'oneof'])
def test_fill_mean_without_stats_fails_for_every_painter(make):
    learn = Learner(rand_dls(), net(), loss_func=CrossEntropyLossFlat(), cbs=make())
    with pytest.raises(ValueError, match="fill='mean' paints the data set mean, but the DataLoaders have no Normalize"):
        quiet(learn, 'fit', 1)

def test_annealer_sets_only_what_an_augmentation_lists():
    learn = Learner(rand_dls(), net(), loss_func=CrossEntropyLossFlat(), cbs=[GridMask()])
    msg = r"GridMask lets an Annealer set \['p', 'ratio', 'period', 'opacity'\], not 'fill'"
    with pytest.raises(ValueError, match=msg):
        quiet(learn, 'fit', 1, cbs=Annealer({'grid_mask.fill': 'noise'}))
    with pytest.raises(ValueError, match=r'ratio must be in \(0, 1\]'):  # what it lists is checked when it is set
        quiet(learn, 'fit', 1, cbs=Annealer({'grid_mask.ratio': 2.}))
    assert learn.grid_mask.ratio == .5

def test_anneal_lists_only_checked_attributes():
    class Ok(BatchAugment): p, anneal = checked(check_prob), ('p',)
    assert Ok.anneal == ('p',)
    with pytest.raises(TypeError, match=r"Loose.anneal lists \['size'\], which are not checked when set"):
        class Loose(BatchAugment): size, anneal = 0.5, ('size',)
