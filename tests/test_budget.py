"The budget curve: sweeps over several budgets, the trend test against scipy, the figure from a results file, the words"
import dataclasses, math
import numpy as np, pytest
from scipy import stats
from fastai.vision.all import Callback
from fastai_sprinkles.compare import run_sweep, train_run, merge_runs, run_key, save_runs, load_runs, shard_grid
from fastai_sprinkles.cli import PROFILES, BUDGET_CONFIGS, run_profile, parse_epochs
from fastai_sprinkles.analysis import summarize, holm
from fastai_sprinkles.findings import (budget_curve, budget_trend, plot_budget, budget_conclusions, budget_summary,
                                       budget_table, save_findings, summary, pts)
from fastai_sprinkles.sprinkles import ProgressiveSprinkles
from test_compare import tiny_dls, tiny_model

class Probe(Callback):
    "Record a fingerprint of the initial weights and of the first training batch, before any augmentation"
    order = -100
    def before_fit(self):
        self.w0, self.x0 = float(sum(p.detach().double().sum() for p in self.learn.model.parameters())), None
    def before_batch(self):
        if self.training and self.x0 is None: self.x0 = float(self.learn.xb[0].double().sum())

def probed(make_dls, cbs=(), **kw):
    p = Probe()
    return dict(train_run(make_dls, cbs=[p] + list(cbs), **kw), w0=p.w0, x0=p.x0)

CFGS = {'none': lambda r: [], 'cutout': lambda r: [ProgressiveSprinkles(p=1., n=1, size=.5)]}

def test_budgets_pair_by_seed_and_shard_without_loss_or_repetition(tmp_path):
    kw = dict(seeds=(0, 1, 2), epochs=(1, 2, 4), setup=dict(data='tiny', size=8), bs=16, lr=1e-2, arch=tiny_model,
              train=probed, log=None)
    for k in (1, 2): run_sweep(tmp_path/f'runs-{k}-of-2.jsonl', CFGS, tiny_dls, shard=(k, 2), **kw)
    runs = merge_runs(tmp_path/'runs-1-of-2.jsonl', tmp_path/'runs-2-of-2.jsonl')  # refuses a run held twice
    grid = {(c, s, e) for c in CFGS for s in (0, 1, 2) for e in (1, 2, 4)}
    assert sorted(run_key(r) for r in runs) == sorted(grid)  # every run once
    for s in (0, 1, 2):  # one seed: the same initial weights and first batch in every configuration and budget
        assert len({(r['w0'], r['x0']) for r in runs if r['seed'] == s}) == 1
    assert len({r['w0'] for r in runs}) == 3
    assert {r['epochs']: len(r['accs']) for r in runs} == {1: 1, 2: 2, 4: 4}  # each budget a run of its own
    loads = [sum(r['epochs'] for r in load_runs(tmp_path/f'runs-{k}-of-2.jsonl')) for k in (1, 2)]
    assert abs(loads[0] - loads[1]) <= 2*4  # balanced to within one block of the longest budget

def test_shards_balance_budgets_and_keep_round_robin_for_one_budget():
    grid = [(c, s, e) for s in range(5) for e in (20, 40, 80) for c in ('none', 'cutout')]
    parts = [shard_grid(grid, k, 2) for k in (1, 2)]
    assert sorted(parts[0] + parts[1]) == sorted(grid) and not set(parts[0]) & set(parts[1])
    load = [sum(e for c, _, e in p if c == 'none') for p in parts]
    assert abs(load[0] - load[1]) <= 20 and sum(load) == 5*140
    one = [(c, s, 5) for s in range(5) for c in ('none', 'cutout')]
    assert [sorted({s for _, s, _ in shard_grid(one, k, 3)}) for k in (1, 2, 3)] == [[0, 3], [1, 4], [2]]

@pytest.mark.parametrize('bad,msg', [('25,x', 'whole numbers'), ('0,10', 'at least 1 epoch'), ('10,10', 'given twice')])
def test_parse_epochs(bad, msg):
    assert parse_epochs('100,25,50') == (25, 50, 100) and parse_epochs(7) == (7,)
    with pytest.raises(ValueError, match=msg): parse_epochs(bad)

def test_sweep_refuses_bad_budgets(tmp_path):
    with pytest.raises(ValueError, match='whole number of epochs'):
        run_sweep(tmp_path/'r.jsonl', CFGS, tiny_dls, epochs=(2, 0), arch=tiny_model, log=None)

def made_up(effects, seeds=range(6), base=(.6, .64, .66), noise=.006, seed=0, budgets=(10, 20, 40), digits=3):
    "Runs with a shared per-seed luck, each configuration's effect per budget, and noise"
    rng, runs = np.random.default_rng(seed), []
    for s in seeds:
        luck = rng.normal(0, .01)
        for e, b in zip(budgets, base):
            for c, eff in {'none': (0, 0, 0), **effects}.items():
                acc = b + luck + eff[budgets.index(e)] + (0 if c == 'none' else rng.normal(0, noise))
                acc = acc if digits is None else round(acc, digits)
                runs.append(dict(config=c, seed=s, epochs=e, accuracy=acc, best_accuracy=acc, valid_loss=2 - acc,
                                 train_loss=1.5 - e/40, epoch_s=1., imgs_per_s=100., aug_frac=0., accs=[acc],
                                 times=[float(e)], cpu_times=[float(e)], env=dict(device='CPU')))
    return runs

@pytest.mark.parametrize('seed', range(5))
def test_trend_agrees_with_scipy(seed):
    # unrounded accuracies: no ties, where scipy's exact signed-rank test applies
    runs = made_up({'a': (-.01, 0, .02), 'b': (0, 0, 0), 'c': (.01, .0, -.01)}, seed=seed, digits=None)
    acc = {(r['config'], r['seed'], r['epochs']): r['accuracy'] for r in runs}
    tr = budget_trend(runs).set_index('config')
    for c in 'abc':
        t = [(acc[c, s, 40] - acc['none', s, 40]) - (acc[c, s, 10] - acc['none', s, 10]) for s in range(6)]
        assert tr.trend[c] == pytest.approx(np.mean(t), abs=1e-6)  # per-seed trends rounded to 1e-6
        assert tr.p[c] == pytest.approx(stats.ttest_1samp(np.round(t, 6), 0).pvalue, rel=1e-9)
        assert tr.p_rank[c] == pytest.approx(stats.wilcoxon(np.round(t, 6), method='exact').pvalue, rel=1e-9)
        lo, hi = stats.ttest_1samp(np.round(t, 6), 0).confidence_interval(0.95)
        assert (tr.trend_lo[c], tr.trend_hi[c]) == pytest.approx((lo, hi), rel=1e-9)
    assert list(tr.p_holm) == pytest.approx(holm(tr.p.values))

def test_trend_uses_only_seeds_with_all_four_runs():
    runs = made_up({'a': (-.01, 0, .02)})
    runs = [r for r in runs if not (r['config'] == 'a' and r['seed'] == 0 and r['epochs'] == 40)]
    assert budget_trend(runs).pairs.tolist() == [5]

def test_budget_figure_is_drawn_from_a_results_file(tmp_path):
    save_runs(tmp_path/'runs.jsonl', made_up({'a': (-.01, 0, .02), 'b': (0, -.005, 0)}))
    runs = load_runs(tmp_path/'runs.jsonl')
    fig = plot_budget(runs)
    ax = fig.axes[0]
    bc = budget_curve(runs)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ['a', 'b']
    for i, c in enumerate(('a', 'b')):  # the line of each configuration: its differences in points, budget by budget
        ys = [l for l in ax.get_lines() if l.get_color() == f"C{i}" and len(l.get_ydata()) == 3][0].get_ydata()
        assert list(ys) == pytest.approx(list(100*bc[bc.config == c].sort_values('epochs')['diff']))
    assert any(list(l.get_ydata()) == [0, 0] for l in ax.get_lines())  # zero marked
    paths = save_findings(runs, tmp_path)
    assert paths['budget_fig'].read_bytes()[:4] == b'\x89PNG'
    assert (tmp_path/'summary.txt').read_text().strip() == budget_summary(runs)

def test_conclusions_name_the_budget_and_the_detectable_gain():
    none_pays = made_up({'a': (-.01, -.005, 0.), 'b': (0, 0, -.002)})
    s = budget_summary(none_pays)
    det = budget_curve(none_pays).query('epochs == 40').detectable
    assert s.startswith('No augmentation beat the none baseline at any budget up to 40 epochs '
                        '(6 paired seeds at each of 10, 20, 40')
    assert s.endswith(f"; at 40 epochs a gain of {pts(det.min(), False)} to {pts(det.max(), False)} points, "
                      "depending on the configuration, would have been detected 80% of the time.")
    pays = made_up({'a': (-.01, .0, .03), 'b': (0, 0, -.002)}, noise=.003)
    s = budget_summary(pays)
    a40 = budget_curve(pays).query("epochs == 40 and config == 'a'")
    at40, lo40, hi40 = a40[['diff', 'diff_lo', 'diff_hi']].iloc[0]
    assert f"a beat it from 40 epochs on ({pts(at40)} points at 40); b did not beat it at 40 epochs" in s
    lines = budget_conclusions(pays)
    assert lines[0].startswith('a: ') and 'better at 40 epochs' in lines[0]
    assert 'it pays more with longer training' in lines[0]
    table = budget_table(pays).set_index('config')
    assert list(table.columns) == ['10 epochs', '20 epochs', '40 epochs', 'trend 10→40']
    assert table.loc['a', '40 epochs'] == f"{pts(at40)} ({pts(lo40)} to {pts(hi40)}) better"
    assert ' at 10, ' in lines[0] and ' at 20, ' in lines[0] and ' at 40 epochs' in lines[0]
    one = summarize([r for r in none_pays if r['epochs'] == 40])
    assert summary(one).startswith('At 40 epochs, over 6 paired seeds, no configuration beat the none baseline')

def test_budget_profile_is_a_curve():
    p = PROFILES['budget']
    assert len(p.epochs) >= 3 and p.epochs[-1] >= 4*p.epochs[0] and p.runs >= 5 and p.threads == 1
    assert p.configs == BUDGET_CONFIGS and p.configs[0] == 'none'
    named = {'none', 'cutout', 'sprinkles-fixed', 'progressive', 'fastai-mixup', 'fastai-cutmix', 'keep-cutout'}
    assert named == set(p.configs)

def test_long_profile_runs_end_to_end_at_a_tiny_size(tmp_path):
    p = PROFILES['long']
    assert (p.size, p.epochs, p.arch, p.configs) == (128, (80,), 'xresnet50', BUDGET_CONFIGS)
    tiny = dataclasses.replace(p, size=32, per_class=2, valid_n=10, epochs=(1,), runs=1, bs=8, workers=0)
    runs = run_profile(tiny, tmp_path/'runs.jsonl', log=None)
    assert sorted(r['config'] for r in runs) == sorted(BUDGET_CONFIGS)
    assert {r['setup']['arch'] for r in runs} == {'xresnet50'} and all(0 <= r['accuracy'] <= 1 for r in runs)
    assert all(math.isfinite(r['train_loss']) for r in runs)
