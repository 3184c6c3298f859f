"ProgressiveSprinkles in a real fastai training loop, on a small synthetic image learner"
from functools import partial
import pytest, torch
from torch import nn
from fastai.vision.all import (Learner, DataLoaders, TfmdDL, Normalize, Callback, CrossEntropyLossFlat, OptimWrapper,
                               SchedLin, set_seed, CancelFitException)
from fastai_sprinkles.sprinkles import ProgressiveSprinkles, normalize_stats
from fastai_sprinkles.anneal import Annealer, sched_pct
from helpers import rows

N_TRAIN, N_VALID, BS = 64, 32, 16

class Spy(Callback):
    "Keep a copy of every batch's input, as the model will see it (order 1: after augmentations)"
    order, run_valid = 1, True
    def __init__(self): self.seen = []
    def before_batch(self): self.seen.append((self.training, self.epoch, self.xb[0].detach().clone()))

class Raw(Spy):
    "The same, before any augmentation"
    order = -1

def data(seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(N_TRAIN+N_VALID, 3, size, size, generator=g), torch.randint(0, 2, (N_TRAIN+N_VALID,), generator=g)
    return x, y

def learner(opt_func=None, norm=True, **kw):
    x, y = data()
    tfms = [Normalize.from_stats([0.5]*3, [0.25]*3)] if norm else []
    dls = DataLoaders(TfmdDL(list(zip(x[:N_TRAIN], y[:N_TRAIN])), bs=BS, shuffle=True, after_batch=tfms),
                      TfmdDL(list(zip(x[N_TRAIN:], y[N_TRAIN:])), bs=BS, after_batch=tfms))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    kw = dict(kw, opt_func=opt_func) if opt_func else kw
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), **kw), x

def always(**kw): return ProgressiveSprinkles(p=1., n=4, size=0.3, **kw)

def test_training_batches_sprinkled_validation_untouched():
    learn, x = learner()
    spy, raw = Spy(), Raw()
    learn.fit(1, cbs=[always(), spy, raw])
    train = [(a, b) for (t, _, a), (_, _, b) in zip(spy.seen, raw.seen) if t]
    valid = [a for t, _, a in spy.seen if not t]
    assert len(train) == N_TRAIN//BS and all(not torch.equal(a, b) for a, b in train)
    assert torch.equal(torch.cat(valid), x[N_TRAIN:])  # the validation set, as it is

def test_black_is_black_in_pixel_space():
    learn, _ = learner()
    spy, raw = Spy(), Raw()
    learn.fit(1, cbs=[always(fill='zero'), spy, raw])
    t, _, a = spy.seen[0]
    changed = (a != raw.seen[0][2]).any(1)
    assert changed.any()
    # every changed pixel equals (0 - mean)/std = -2, what Normalize makes of a black pixel
    assert torch.allclose(a.permute(0, 2, 3, 1)[changed], torch.full((int(changed.sum()), 3), -2.))

def test_stats_found_in_dataloaders():
    learn, _ = learner()
    m, s = normalize_stats(learn.dls)
    assert torch.allclose(m, torch.tensor([0.5]*3)) and torch.allclose(s, torch.tensor([0.25]*3))
    learn, _ = learner(norm=False)
    assert normalize_stats(learn.dls) == (None, None)

def test_fill_mean_without_stats_is_a_clear_error():
    learn, _ = learner(norm=False)
    with pytest.raises(ValueError, match="fill='mean'.*no Normalize"): learn.fit(1, cbs=always(fill='mean'))

def test_lr_find_and_get_preds_untouched():
    learn, x = learner()
    sp, spy, raw = always(), Spy(), Raw()
    learn.add_cbs([sp, spy, raw])
    learn.lr_find(num_it=4, show_plot=False)
    assert spy.seen and all(torch.equal(a[2], b[2]) for a, b in zip(spy.seen, raw.seen))
    assert sp.hist == {}
    spy.seen.clear(); raw.seen.clear()
    learn.get_preds(ds_idx=0)
    assert spy.seen and all(torch.equal(a[2], b[2]) for a, b in zip(spy.seen, raw.seen))

def test_same_seed_same_batches():
    runs = []
    for _ in range(2):
        set_seed(3)
        learn, _ = learner()
        spy = Spy()
        learn.fit(1, cbs=[ProgressiveSprinkles(p=.7, n=(1, 6), size=(.1, .3), fill='noise'), spy])
        runs.append(torch.cat([a for t, _, a in spy.seen if t]))
    assert torch.equal(*runs)

def test_default_recipe_values_by_epoch():
    learn, _ = learner()
    sp = ProgressiveSprinkles()
    learn.fit(10, cbs=sp)
    per_epoch = [rows(sp.hist)[e*(N_TRAIN//BS)]['p'] for e in range(10)]
    assert per_epoch == pytest.approx([i/10 for i in range(10)])
    assert all(h['coverage'] == 0 for h in rows(sp.hist)[:N_TRAIN//BS])  # the first tenth: no sprinkles
    assert rows(sp.hist)[-1]['n'][1] == round(SchedLin(4, 24)(0.9))

def test_every_k_epochs_stair_steps():
    learn, _ = learner()
    sp = ProgressiveSprinkles(p=SchedLin(0, .8), n=3, size=.2, every=2)
    learn.fit(4, cbs=sp)
    nb = N_TRAIN//BS
    assert [h['p'] for h in rows(sp.hist)] == pytest.approx([0.]*(2*nb) + [0.4]*(2*nb))

def test_resume_with_start_epoch():
    learn, _ = learner()
    full = ProgressiveSprinkles(p=SchedLin(0, 1), n=(1, SchedLin(2, 10)), size=.2)
    learn.fit(4, cbs=full)
    learn, _ = learner()
    resumed = ProgressiveSprinkles(p=SchedLin(0, 1), n=(1, SchedLin(2, 10)), size=.2)
    learn.fit(4, cbs=resumed, start_epoch=2)
    nb = N_TRAIN//BS
    assert len(rows(resumed.hist)) == 2*nb
    for a, b in zip(rows(full.hist)[2*nb:], rows(resumed.hist)):
        assert (a['p'], a['n'], a['pct']) == (b['p'], b['n'], b['pct'])

def test_with_annealer_and_plain_torch_optimizer():
    learn, _ = learner(opt_func=partial(OptimWrapper, opt=torch.optim.SGD))
    sp = ProgressiveSprinkles(p=0., n=3, size=.2)
    learn.fit_one_cycle(2, 1e-2, cbs=[sp, Annealer({'progressive_sprinkles.p': SchedLin(0, .5)})])
    nb = N_TRAIN//BS
    expected = [SchedLin(0, .5)(sched_pct(e, 2, i, nb)) for e in range(2) for i in range(nb)]
    assert [h['p'] for h in rows(sp.hist)] == pytest.approx(expected)
    assert sp.p == 0.  # restored by the annealer after fit

def test_under_fp16_keeps_dtype():
    learn, _ = learner()
    learn.to_fp16()
    spy = Spy()
    learn.fit(1, cbs=[always(fill='noise'), spy])
    assert all(a.dtype == torch.float32 and torch.isfinite(a).all() for _, _, a in spy.seen)

def test_cancelled_fit_then_fit_again():
    class Stop(Callback):
        def after_batch(self):
            if self.iter == 1: raise CancelFitException
    learn, _ = learner()
    sp = always()
    learn.fit(2, cbs=[sp, Stop()])
    assert len(rows(sp.hist)) == 2
    learn.fit(1, cbs=sp)
    assert len(rows(sp.hist)) == N_TRAIN//BS

def test_non_image_batch_is_a_clear_error():
    x = torch.rand(32, 5)
    items = list(zip(x, torch.zeros(32).long()))
    dls = DataLoaders(TfmdDL(items, bs=8), TfmdDL(items, bs=8))
    learn = Learner(dls, nn.Linear(5, 2), loss_func=CrossEntropyLossFlat())
    with pytest.raises(TypeError, match=r'x must be a 4-D floating point tensor \(B, C, H, W\), got a 2-D'):
        learn.fit(1, cbs=always())

@pytest.mark.parametrize('kw,msg', [(dict(p=-.1), r'p must be in \[0, 1\]'),
                                    (dict(p=SchedLin(0, 1.5)), r'p must be in \[0, 1\]'),
                                    (dict(n=(3, 1)), 'inverted'), (dict(n=-1), 'n must be >= 0'),
                                    (dict(size=0), 'size must be > 0'), (dict(size=(.3, .1)), 'inverted'),
                                    (dict(fill='red'), 'fill must be one of'),
                                    (dict(opacity=1.5), r'opacity must be in \(0, 1\]'),
                                    (dict(p=object()), 'p must be a constant')])
def test_bad_input_at_construction(kw, msg):
    with pytest.raises((ValueError, TypeError), match=msg): ProgressiveSprinkles(**kw)
