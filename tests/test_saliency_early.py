"""The early head's own callback, `EarlyHeadTrainer`, and how `SaliencyHook('early')` uses it: the hook's own trainer is
on the learner for the fit only, however the fit stops; a trainer of yours is used, not a second one; the weighted early
loss joins the loss backpropagated and the head steps; the other modes add nothing; under a gradient scaler the head
steps on unscaled gradients and skips an overflow."""

import pytest
import torch
from torch import nn
from fastai.basics import (Learner, Callback, CancelFitException, CancelEpochException,
                           CancelBatchException, CrossEntropyLossFlat, set_seed)
from fastai.layers import ResBlock
from fastai.callback.schedule import SchedLin

from helpers import quiet, cb, rand_dls
from fastai_sprinkles.saliency import SaliencyHook, EarlyHeadTrainer, lowres_saliency, run_to
from fastai_sprinkles.cutmix import CutMix
from fastai_sprinkles.anneal import Annealer

torch.set_num_threads(1)

def net(seed=0, n_out=3):
    "A small CNN with BatchNorm, dropout and one residual block (`model[3]`, where the early head goes)"
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), ResBlock(1, 8, 8), nn.Dropout(.2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, n_out))

def learner(cbs=(), **kw):
    set_seed(0)
    return Learner(rand_dls(), net(), loss_func=CrossEntropyLossFlat(), cbs=list(cbs), **kw)

def trainers(learn): return [c for c in learn.cbs if isinstance(c, EarlyHeadTrainer)]
def cbs_of(learn): return sorted(type(c).__name__ for c in learn.cbs)  # `no_bar` puts a new progress bar at the end

def n_hooks(model):
    kinds = ('_forward_hooks', '_forward_pre_hooks', '_backward_hooks', '_backward_pre_hooks')
    return sum(len(getattr(m, k, {})) for m in model.modules() for k in kinds)

def state(m): return {k: v.clone() for k, v in m.state_dict().items()}
def same(a, b): return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

def spy(seen, event='after_step'):
    "A callback that records, at every training batch, the trainers on the learner and how many callbacks it has"
    return cb(5, **{event: lambda c: c.training and seen.append((trainers(c.learn), len(c.learn.cbs)))})

# ---------------------------------------------------------------- (a) the hook alone

def test_early_hook_on_an_xresnet_warns_nothing():
    "fastai's XResNet has a `block` attribute: the trainer must not shadow it (fastai warns when a callback does)"
    import warnings
    from fastai.vision.models.xresnet import xresnet18
    set_seed(0)
    learn = Learner(rand_dls(), xresnet18(n_out=3, c_in=3), loss_func=CrossEntropyLossFlat(), cbs=SaliencyHook('early'))
    assert hasattr(learn.model, 'block')
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        learn.fit(1, 1e-2)
    assert not [str(o.message) for o in w if 'shadowing' in str(o.message)]


def test_early_hook_alone_adds_its_own_trainer_for_the_fit_only():
    "SaliencyHook('early') alone trains a head with a trainer of its own, on the learner during the fit and only then"
    hook, seen = SaliencyHook('early', early_weight=.5, early_lr=2e-3), []
    learn = learner([hook, spy(seen)])
    cbs0 = cbs_of(learn)
    quiet(learn, 'fit', 1, 1e-2)
    t = hook.trainer
    assert isinstance(t, EarlyHeadTrainer) and len(seen) == 4 and all(ts == [t] for ts, _ in seen)
    # the hook's arguments, the first block
    assert (t.weight, t.layer, t.lr) == (.5, None, 2e-3) and t.block is learn.model[3]
    assert cbs_of(learn) == cbs0 and not hasattr(learn, 'early_head_trainer') and t.learn is None
    assert n_hooks(learn.model) == 0
    assert hook.head is t.head and isinstance(t.head, nn.Module) and t.head[-1].out_features == 3
    head0 = state(t.head)
    quiet(learn, 'fit', 1, 1e-2)
    assert hook.trainer is t and not same(head0, state(t.head))  # the same head trains on in a later fit
    assert cbs_of(learn) == cbs0 and n_hooks(learn.model) == 0
    x, y = learn.dls.one_batch()
    s = hook.compute(x, y)  # after the fit, with the trainer's head
    assert s.shape == (16, 16, 16) and bool(s.abs().sum() > 0)
    assert torch.equal(s, lowres_saliency(learn.model, x, y, 2, head=lambda v: t.head(run_to(learn.model, t.block, v))))

def test_early_hook_passed_to_fit_leaves_nothing():
    "The hook passed to `fit`: neither it nor its trainer stays on the learner; it maps with the head it trained"
    learn, hook, seen = learner(), SaliencyHook('early'), []
    cbs0 = cbs_of(learn)
    quiet(learn, 'fit', 1, cbs=[hook, spy(seen)])
    assert all(ts == [hook.trainer] for ts, _ in seen) and len(seen) == 4
    assert cbs_of(learn) == cbs0 and hook.learn is None and hook.trainer.learn is None and n_hooks(learn.model) == 0
    x, y = learn.dls.one_batch()
    assert hook.compute(x, y).shape == (16, 16, 16)

class Boom(RuntimeError):
    "An error of the training code, which fastai lets through"
    def __init__(self): super().__init__('boom')

FAULTS = [CancelFitException, CancelEpochException, CancelBatchException, KeyboardInterrupt, Boom]

@pytest.mark.parametrize('where', ['learner', 'fit'])
@pytest.mark.parametrize('exc', FAULTS, ids=lambda e: e.__name__)
def test_early_hook_takes_its_trainer_off_however_the_fit_stops(exc, where):
    """A fault at the 2nd training batch, after the trainer has armed its hook on the block: the trainer is off the
    learner and its hook off the model the moment `fit` has stopped, and the learner trains again as before"""
    n, hook = [0], SaliencyHook('early')
    def fault(c):
        n[0] += 1
        if n[0] == 2: raise exc()
    learn = learner([hook] if where == 'learner' else [])
    cbs0 = cbs_of(learn)
    extra = [cb(1, before_batch=lambda c: c.training and fault(c))] + ([hook] if where == 'fit' else [])
    try: quiet(learn, 'fit', 2, cbs=extra)
    except (KeyboardInterrupt, Boom) as e: assert type(e) is exc
    else: assert exc not in (KeyboardInterrupt, Boom)
    assert cbs_of(learn) == cbs0 and not hasattr(learn, 'early_head_trainer') and trainers(learn) == []
    assert n_hooks(learn.model) == 0 and '_with_events' not in vars(learn)
    seen = []
    quiet(learn, 'fit', 1, cbs=[spy(seen)] + ([hook] if where == 'fit' else []))
    assert len(seen) == 4 and all(ts == [hook.trainer] for ts, _ in seen)
    assert cbs_of(learn) == cbs0 and n_hooks(learn.model) == 0

def test_a_failing_trainer_comes_off_at_once():
    "No residual block and no `early_layer`: the error names `early_layer`, and the trainer is not left on the learner"
    learn = Learner(rand_dls(),
                    nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)),
                    loss_func=CrossEntropyLossFlat(), cbs=[SaliencyHook('early')])
    cbs0 = cbs_of(learn)
    with pytest.raises(ValueError, match='pass early_layer=<module or name>'): quiet(learn, 'fit', 1)
    assert cbs_of(learn) == cbs0 and trainers(learn) == []
    # fastai puts the callback and event first
    with pytest.raises(ValueError, match=r"\tlayer='nope' is not a module name"):
        quiet(Learner(rand_dls(), net(), loss_func=CrossEntropyLossFlat(), cbs=[EarlyHeadTrainer(layer='nope')]),
              'fit', 1)

def test_validate_inside_a_fit_keeps_the_trainer():
    "A `validate` run inside the fit (here after each epoch's training batches) does not take the hook's trainer off"
    hook, seen, scores = SaliencyHook('early'), [], []
    learn = learner([hook, spy(seen), cb(5, after_train=lambda c: scores.append(c.learn.validate()))])
    quiet(learn, 'fit', 2)
    assert len(seen) == 8 and all(ts == [hook.trainer] for ts, _ in seen) and len(scores) == 2
    assert trainers(learn) == [] and n_hooks(learn.model) == 0

def test_lr_find_and_get_preds_train_no_head():
    "`lr_find` and `get_preds` add no trainer and train no head; a trainer of yours does nothing in them either"
    hook = SaliencyHook('early')
    learn = learner([hook])
    quiet(learn, 'lr_find', num_it=5, show_plot=False)
    assert hook.trainer is None and trainers(learn) == [] and n_hooks(learn.model) == 0
    quiet(learn, 'fit', 1)
    head0 = state(hook.head)
    quiet(learn, 'get_preds')
    assert trainers(learn) == [] and same(head0, state(hook.head))
    t = EarlyHeadTrainer()
    learn = learner([t])
    quiet(learn, 'lr_find', num_it=5, show_plot=False)
    quiet(learn, 'get_preds')
    assert t.head is None and t.block is None and n_hooks(learn.model) == 0

# ---------------------------------------------------------------- (b) a trainer of yours

@pytest.mark.parametrize('where', ['learner', 'fit'])
def test_a_trainer_of_yours_is_used_not_a_second_one(where):
    "With an `EarlyHeadTrainer` in the fit, the hook maps with its head, makes none of its own, leaves it where it was"
    t, hook, seen = EarlyHeadTrainer(weight=.2, layer='0', lr=1e-3), SaliencyHook('early', early_weight=.9), []
    learn = learner([hook, spy(seen)] + ([t] if where == 'learner' else []))
    quiet(learn, 'fit', 1, cbs=[t] if where == 'fit' else None)
    assert len(seen) == 4 and all(ts == [t] for ts, _ in seen)  # one trainer on the learner: yours
    assert hook.trainer is t and hook._own is None and hook.head is t.head and t.head is not None
    # the hook's early_* are not forced on it
    assert (t.weight, t.layer, t.lr) == (.2, '0', 1e-3) and t.block is learn.model[0]
    assert trainers(learn) == ([t] if where == 'learner' else [])
    x, y = learn.dls.one_batch()
    head = lambda v: t.head(run_to(learn.model, t.block, v))
    assert torch.equal(hook.compute(x, y), lowres_saliency(learn.model, x, y, 2, head=head))

def test_a_trainer_of_yours_is_the_old_hook_bit_for_bit():
    """`[EarlyHeadTrainer(weight, layer, lr), SaliencyHook('early')]` trains exactly as
    `SaliencyHook('early', early_weight=weight, early_layer=layer, early_lr=lr)`: same losses, weights, head and maps,
    whichever comes first in the list"""
    runs = []
    for make in (lambda: [SaliencyHook('early', early_weight=.4, early_lr=3e-3)],
                 lambda: [EarlyHeadTrainer(weight=.4, lr=3e-3), SaliencyHook('early')],
                 lambda: [SaliencyHook('early', early_weight=.9), EarlyHeadTrainer(weight=.4, lr=3e-3)]):
        cbs = make()
        learn = learner(cbs + [CutMix(alpha=.5)])  # mixed labels: the head's loss is mixed too
        quiet(learn, 'fit', 2, 1e-2)
        hook = next(c for c in cbs if isinstance(c, SaliencyHook))
        x, y = learn.dls.one_batch()
        runs.append((learn.recorder.losses, state(learn.model), state(hook.head), hook.compute(x, y)))
    (l0, m0, h0, s0), *rest = runs
    for l, m, h, s in rest:
        assert [float(a) for a in l] == [float(b) for b in l0] and same(m, m0) and same(h, h0) and torch.equal(s, s0)

# ---------------------------------------------------------------- (c) the loss and the step

def test_the_trainer_adds_its_weighted_loss_and_steps_the_head():
    """The loss backpropagated is the network's loss + weight × the head's loss on the block's output of the training
    forward pass; every step moves every parameter of the head, by `lr` at Adam's first step"""
    t, rows, acts = EarlyHeadTrainer(weight=.7, layer='3', lr=3e-3), [], []
    learn = learner([t])
    h = learn.model[3].register_forward_hook(lambda m, i, o: acts.append(o.detach()))
    def before_step(c):  # after the backward pass, before any step
        with torch.no_grad(): want = c.learn.loss_func(t.head(acts[-1]), *c.learn.yb)
        rows.append(dict(loss=c.learn.loss.detach().clone(), loss_grad=c.learn.loss_grad.detach().clone(),
                         head_loss=t.head_loss, want=want, w=[p.detach().clone() for p in t.head.parameters()],
                         g=[p.grad.clone() for p in t.head.parameters()]))
    def after_step(c): rows[-1]['w1'] = [p.detach().clone() for p in t.head.parameters()]
    quiet(learn, 'fit', 1, 1e-2, cbs=cb(5, before_step=before_step, after_step=after_step))
    h.remove()
    assert len(rows) == 4
    for r in rows:
        assert torch.allclose(r['head_loss'], r['want'], rtol=1e-6, atol=0) and float(r['head_loss']) > 0
        assert torch.equal(r['loss_grad'], r['loss'] + .7*r['head_loss'])
        assert all(bool(g.abs().sum() > 0) for g in r['g'])
        assert all(bool((a != b).all()) for a, b in zip(r['w'], r['w1']))  # every parameter of the head moved
    first = torch.cat([(a - b).abs().flatten() for a, b in zip(rows[0]['w'], rows[0]['w1'])])
    assert torch.allclose(first, torch.full_like(first, 3e-3), rtol=1e-3)  # Adam's first step: lr × sign(grad)
    assert [o.grad for o in t.head.parameters()] == [None, None] and n_hooks(learn.model) == 0

def test_weight_zero_adds_nothing_and_lr_none_follows_the_learner():
    "weight=0 leaves the loss as it was; with lr=None the head steps at the learner's current lr"
    t, rows = EarlyHeadTrainer(weight=0.), []
    learn = learner([t])
    def before_step(c):
        rows.append((c.learn.loss.clone(), c.learn.loss_grad.detach().clone(),
                     [p.detach().clone() for p in t.head.parameters()]))
    quiet(learn, 'fit', 1, 2e-3, cbs=cb(5, before_step=before_step))
    assert all(torch.equal(l, g) for l, g, _ in rows)
    step = torch.cat([(a - b).abs().flatten() for a, b in zip(rows[0][2], rows[1][2])])
    assert torch.allclose(step[step > 0], torch.full_like(step[step > 0], 2e-3), rtol=1e-3)

def test_an_annealer_schedules_the_weight():
    """The trainer's `weight` can be annealed (`'early_head_trainer.weight'`): each batch adds its own weight, put back
    after the fit"""
    t, rows = EarlyHeadTrainer(weight=.3), []
    learn = learner([t])
    rec = cb(5, before_step=lambda c: rows.append((t.weight, c.learn.loss.clone(), c.learn.loss_grad.detach().clone(),
                                                   t.head_loss)))
    quiet(learn, 'fit', 2, cbs=[Annealer({'early_head_trainer.weight': SchedLin(0., 1.)}), rec])
    assert [w for w, *_ in rows] == pytest.approx([i/8 for i in range(8)]) and t.weight == .3
    assert all(torch.equal(g, l + w*h) for w, l, g, h in rows)

# ---------------------------------------------------------------- (d) the other modes

@pytest.mark.parametrize('mode', ['full', 'lowres'])
def test_other_modes_add_no_trainer(mode):
    hook, seen = SaliencyHook(mode), []
    learn = learner([hook, spy(seen)])
    quiet(learn, 'fit', 1)
    n0 = seen[0][1]
    assert len(seen) == 4 and all(ts == [] and n == n0 for ts, n in seen)
    assert hook.trainer is None and hook.head is None and hook._own is None and n_hooks(learn.model) == 0

# ---------------------------------------------------------------- under a gradient scaler

class CpuScaler(Callback):
    """fastai's `MixedPrecision` as far as loss scaling goes, on the CPU: a `GradScaler` in `learn.scaler` scales the
    loss, and the model's gradients are unscaled before the step (the scale, a power of two, stays)"""
    order = 10
    def before_fit(self): self.learn.scaler = torch.amp.GradScaler('cpu', init_scale=2.**12)
    def before_backward(self): self.learn.loss_grad = self.learn.scaler.scale(self.loss_grad)
    def before_step(self):
        for p in self.learn.model.parameters():
            if p.grad is not None: p.grad.div_(2.**12)
    def after_fit(self): self.learn.scaler = None

def test_under_a_gradient_scaler_the_head_steps_on_unscaled_gradients():
    "With the loss scaled by a power of two, the head and the network train bit for bit as in fp32"
    runs = []
    for extra in ([], [CpuScaler()]):
        t = EarlyHeadTrainer(lr=1e-2)
        learn = learner([t] + extra)
        quiet(learn, 'fit', 1)
        runs.append((state(learn.model), state(t.head), [float(l) for l in learn.recorder.losses]))
    assert same(runs[0][0], runs[1][0]) and same(runs[0][1], runs[1][1]) and runs[0][2] == runs[1][2]

def test_under_a_gradient_scaler_an_overflow_skips_the_head_step():
    "An overflow in the head's gradients at the 2nd batch: no step of the head there (Adam counts 3 steps of 4), no NaN"
    t, before, after = EarlyHeadTrainer(), [], []
    def overflow(c):
        if len(before) == 1: t.head[-1].bias.grad[0] = float('inf')
    learn = learner([t, CpuScaler(), cb(5, after_backward=overflow, before_step=lambda c: before.append(state(t.head)),
                                        after_step=lambda c: after.append(state(t.head)))])
    quiet(learn, 'fit', 1)
    assert [same(a, b) for a, b in zip(before, after)] == [False, True, False, False]
    assert all(int(s['step']) == 3 for s in t.head_opt.state.values())
    assert all(bool(torch.isfinite(v).all()) for v in state(t.head).values())
