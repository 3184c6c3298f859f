"""Statistics of a sweep against scipy and by simulation: intervals, Welch, paired t, signed-rank, Holm, detectable
difference, equal cost"""
import math, itertools
import numpy as np, pytest
from scipy import stats
from hypothesis import given, settings, strategies as st
from fastai_sprinkles.analysis import (mean_ci, welch_p, paired_t, signed_rank_p, holm, detectable, summarize,
                                       equal_time, acc_at_time, conclusions, format_table, run_clock)

SAMPLES = [([0.80, 0.82, 0.81, 0.85], [0.78, 0.79, 0.80, 0.77]), ([0.5, 0.7, 0.6], [0.55, 0.9, 0.1, 0.4, 0.6]),
           ([0.912, 0.915], [0.905, 0.911, 0.903])]

@pytest.mark.parametrize('a,b', SAMPLES)
def test_unpaired_stats_match_scipy(a, b):
    m, s, (lo, hi) = mean_ci(a)
    assert m == pytest.approx(np.mean(a)) and s == pytest.approx(np.std(a, ddof=1))
    slo, shi = stats.t.interval(0.95, len(a) - 1, loc=np.mean(a), scale=stats.sem(a))
    assert (lo, hi) == pytest.approx((slo, shi))
    assert welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p(a, b) != pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue, abs=1e-6)  # Welch, not Student

diffs = st.lists(st.floats(-0.2, 0.2, allow_nan=False).map(lambda v: round(v, 3)), min_size=2, max_size=10)

@settings(max_examples=60, deadline=None)
@given(diffs)
def test_paired_t_matches_scipy(d):
    m, (lo, hi), p = paired_t(d)
    assert m == pytest.approx(np.mean(d))
    if np.std(d) == 0: return  # scipy gives NaN there; `paired_t` says 0 or 1 (tested below)
    r = stats.ttest_1samp(d, 0)
    assert p == pytest.approx(r.pvalue, rel=1e-6, abs=1e-12)
    assert (lo, hi) == pytest.approx(tuple(r.confidence_interval(0.95)), rel=1e-6, abs=1e-12)
    base = np.linspace(.5, .6, len(d))
    assert p == pytest.approx(stats.ttest_rel(base + d, base).pvalue, rel=1e-5, abs=1e-9)

def test_paired_t_without_spread():
    assert paired_t([.01, .01, .01])[2] == 0. and paired_t([0., 0.])[2] == 1.
    assert math.isnan(paired_t([.01])[2])

@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([-3, -2, -1, 0, 1, 2, 3, 4, 5]).map(lambda v: v/100), min_size=1, max_size=9))
def test_signed_rank_matches_scipy_exact_with_ties_and_zeros(d):
    nz = [v for v in d if v != 0]
    if not nz: assert signed_rank_p(d) == 1.; return
    ref = stats.wilcoxon(d, zero_method='wilcox', method='exact' if len(set(map(abs, nz))) == len(nz) else 'auto')
    if len(set(map(abs, nz))) == len(nz): assert signed_rank_p(d) == pytest.approx(ref.pvalue)
    else:  # with ties scipy falls back to an approximation; check against a brute-force enumeration instead
        r = stats.rankdata(np.abs(nz)); w = r[np.array(nz) > 0].sum(); mid = r.sum()/2
        dist = [sum(ri for ri, s in zip(r, signs) if s) for signs in itertools.product((0, 1), repeat=len(nz))]
        assert signed_rank_p(d) == pytest.approx(np.mean([abs(x - mid) >= abs(w - mid) - 1e-9 for x in dist]))

def test_signed_rank_floor_with_five_pairs():
    assert signed_rank_p([.01, .02, .03, .04, .05]) == pytest.approx(2/32)

@settings(max_examples=20, deadline=None)
@given(st.integers(21, 60), st.integers(0, 2**32 - 1))
def test_signed_rank_exact_beyond_enumeration(n, seed):
    "Many pairs (no ties): the same p-value as scipy's exact test, which enumerates nothing either"
    d = np.random.default_rng(seed).normal(.003, .01, n)
    assert signed_rank_p(d) == pytest.approx(stats.wilcoxon(d, method='exact').pvalue, rel=1e-9, abs=1e-15)

def test_holm_by_hand_and_by_definition():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2]) == [0.2] and holm([]) == []
    rng = np.random.default_rng(1)
    for _ in range(50):
        ps = rng.uniform(0, .2, size=rng.integers(1, 8))
        m, order = len(ps), np.argsort(ps)
        want = np.empty(m)  # the definition: max over j <= i of min(1, (m - j) p_(j)), from the smallest
        for i, k in enumerate(order): want[k] = max(min(1, (m - j)*ps[order[j]]) for j in range(i + 1))
        assert holm(ps) == pytest.approx(want.tolist())
    h = holm([0.01, math.nan, 0.03])
    assert math.isnan(h[1]) and h[0] == pytest.approx(0.02) and h[2] == pytest.approx(0.03)

@pytest.mark.parametrize('s,n', [(0.01, 5), (0.02, 3), (0.005, 10)])
def test_detectable_difference_has_the_power_it_claims(s, n):
    d = detectable(s, n)
    sims = np.random.default_rng(0).normal(d, s, size=(40000, n))
    hit = np.mean(stats.ttest_1samp(sims, 0, axis=1).pvalue < 0.05)
    assert hit == pytest.approx(0.8, abs=0.01)
    assert detectable(s, n, power=0.9) > d > detectable(s, n + 5)
    assert math.isnan(detectable(s, 1)) and math.isnan(detectable(0., 5))

def fake(config, seed, acc, times=(10., 20.), accs=None, epochs=2, cpu=None, device='CPU, 2 cores'):
    accs = list(accs or [acc - .1, acc])
    return dict(config=config, seed=seed, epochs=epochs, accuracy=acc, best_accuracy=max(accs), valid_loss=1 - acc,
                train_loss=.3, epoch_s=times[-1]/epochs, imgs_per_s=100. + seed, aug_frac=0.01*seed, accs=accs,
                times=list(times), cpu_times=list(cpu or times), env=dict(device=device))

def test_summarize_pairs_by_seed_and_corrects_for_many_configs():
    base = [fake('none', s, a) for s, a in enumerate([.50, .60, .55, .58])]
    b = [fake('b', s, a + .02) for s, a in enumerate([.50, .60, .55, .58])]  # +2 points with every seed, give or take
    b[0]['accuracy'] += .005
    c = [fake('c', s, a - .01) for s, a in enumerate([.50, .61, .55, .57])]
    df = summarize(base + b + c).set_index('config')
    db = [r['accuracy'] - x['accuracy'] for r, x in zip(b, base)]
    dc = [r['accuracy'] - x['accuracy'] for r, x in zip(c, base)]
    assert df.loc['b'].test == 'paired t' and df.loc['b'].pairs == 4
    assert df.loc['b'].p_paired == pytest.approx(stats.ttest_rel([r['accuracy'] for r in b],
                                                                 [r['accuracy'] for r in base]).pvalue)
    assert df.loc['b'].p_paired < df.loc['b'].p_welch  # the shared seed-to-seed spread cancels
    assert df.loc['b'].p_rank == pytest.approx(stats.wilcoxon(db, method='exact').pvalue)
    assert [df.loc['b'].p_holm, df.loc['c'].p_holm] == pytest.approx(holm([df.loc['b'].p, df.loc['c'].p]))
    assert df.loc['b'].comparisons == 2 and math.isnan(df.loc['none'].p_holm)
    ci = tuple(stats.ttest_1samp(db, 0).confidence_interval())
    assert (df.loc['b'].diff_lo, df.loc['b'].diff_hi) == pytest.approx(ci)
    assert df.loc['b'].detectable == pytest.approx(detectable(float(np.std(db, ddof=1)), 4))
    lines = conclusions(df.reset_index())
    assert df.loc['b', 'diff'] == pytest.approx(np.mean(db)) and df.loc['c', 'diff'] == pytest.approx(np.mean(dc))
    assert lines[0].startswith(f"b vs none, 2 epoch(s): {df.loc['b', 'diff']:+.2%} accuracy (paired over 4 seeds")
    assert 'Holm-adjusted over 2' in lines[0]
    assert len(format_table(df.reset_index())) == 3

def test_summarize_falls_back_to_welch_without_pairs():
    runs = [fake('none', s, a) for s, a in enumerate([.5, .52, .51])]
    runs += [fake('b', s + 10, a) for s, a in enumerate([.6, .7, .8])]
    df = summarize(runs)
    b = df.iloc[1]
    assert b.test == 'Welch' and b.pairs == 0
    assert b.p == pytest.approx(stats.ttest_ind([.6, .7, .8], [.5, .52, .51], equal_var=False).pvalue)
    assert 'Welch p = ' in conclusions(df)[0] and '3 and 3 runs' in conclusions(df)[0]

def test_too_few_runs_give_nan_and_no_test():
    assert math.isnan(mean_ci([0.5])[1]) and math.isnan(welch_p([0.5], [0.4, 0.6]))
    df = summarize([fake('none', 0, .5), fake('b', 0, .6), fake('b', 0, .9, epochs=5)])
    assert all('no test' in l for l in conclusions(df))

def test_clock_is_cpu_time_on_a_cpu_and_wall_time_on_a_gpu():
    cpu = [fake('none', s, .5, times=(10., 20.), cpu=(5., 10.)) for s in range(2)]
    # another process doubled its wall time
    loaded = [fake('b', s, .5, times=(20., 40.), cpu=(5., 10.)) for s in range(2)]
    assert run_clock(cpu + loaded) == 'cpu'
    assert summarize(cpu + loaded).time_ratio.iloc[1] == pytest.approx(1.)
    assert summarize(cpu + loaded, clock='wall').time_ratio.iloc[1] == pytest.approx(2.)
    gpu = [dict(r, env=dict(device='NVIDIA H200')) for r in cpu + loaded]
    assert run_clock(gpu) == 'wall'
    assert run_clock([{k: v for k, v in r.items() if k != 'cpu_times'} for r in cpu]) == 'wall'
    assert 'process CPU' in format_table(summarize(cpu + loaded))['time ratio'].iloc[1]

def test_equal_time_on_constructed_runs():
    base = [fake('none', s, a, times=(10., 20.), accs=[a - .1, a]) for s, a in enumerate([.70, .72])]
    slow = [fake('slow', s, a, times=(15., 30.), accs=[a - .2, a]) for s, a in enumerate([.80, .84])]  # 1.5x the time
    fast = [fake('fast', 0, .75, times=(8., 16.)), fake('fast', 1, .77, times=(9., 21.))]
    late = [fake('late', s, .9, times=(25., 50.)) for s in range(2)]  # not even one epoch within 20 s
    et = equal_time(base + slow + fast + late).set_index('config')
    assert et.loc['slow'].base_time_s == pytest.approx(20.) and et.loc['slow'].time_ratio == pytest.approx(1.5)
    assert et.loc['slow'].acc_mean == pytest.approx(np.mean([.60, .64]))  # its first epoch, at 15 s
    assert et.loc['slow'].p_welch == pytest.approx(stats.ttest_ind([.60, .64], [.70, .72], equal_var=False).pvalue)
    assert et.loc['slow'].p == pytest.approx(stats.ttest_rel([.60, .64], [.70, .72]).pvalue)
    assert et.loc['fast'].acc_mean == pytest.approx(np.mean([.75, .77 - .1]))  # run 1 ends after 20 s: its first epoch
    assert et.loc['late'].runs_with_value == 0 and math.isnan(et.loc['late'].acc_mean)
    assert 'none' not in et.index
    assert acc_at_time([1., 2., 3.], [.1, .2, .3], 2.5) == .2 and acc_at_time([1., 2.], [.1, .2], 2.) == .2
