"The comparison harness on segmentation folders: U-Net runs that report Dice, bad folders named before training"
from functools import partial
from types import SimpleNamespace
import pytest
from conftest import BIN, run, ROOT
from test_data import make_seg
import fastai_sprinkles.data as d
from fastai_sprinkles.compare import (train_run, scored, run_metric, make_learner, seg_refusals, is_seg_dls,
                                      load_runs, CONFIGS, split_config)
from fastai_sprinkles.analysis import summarize, format_table, conclusions, save_report
from fastai_sprinkles.cli import sprinkles_compare
from fastai.callback.mixup import MixUp, CutMix as FastaiCutMix
from fastai.vision.all import RandomErasing

OUTPUTS = ['conclusions.txt', 'curves.png', 'dice.png', 'equal_time.csv', 'runs.jsonl', 'summary.txt', 'table.csv',
           'verdicts.csv']

@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    "A small synthetic segmentation set on Imagenette photos: 14 images at 32 px, 3 of them named in valid.txt"
    return d.make_shapes_segmentation(tmp_path_factory.mktemp('seg')/'shapes', n=14, size=32, seed=0)

def test_compare_quick_profile_on_a_segmentation_folder(shapes, tmp_path):
    out = tmp_path/'res'
    r = run([str(BIN/'sprinkles-compare'), '--data', str(shapes), '--profile', 'quick', '--bs', '8',
             '--arch', 'xresnet18-half', '--threads', '1', '--out', str(out)], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '[6/6] progressive, seed 1, 1 epoch(s): Dice 0.' in r.stdout and 'Dice (mean ± std)' in r.stdout, \
        r.stdout[-3000:]
    assert 'dice_multi' in r.stdout  # fastai's epoch table
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    runs = load_runs(out/'runs.jsonl')
    grid = [(c, s) for s in (0, 1) for c in ('none', 'cutout', 'progressive')]
    assert [(x['config'], x['seed']) for x in runs] == grid
    assert {x['metric'] for x in runs} == {'dice'} and all(0 <= x['dice'] <= 1 for x in runs)
    assert {(x['n_train'], x['n_valid']) for x in runs} == {(11, 3)}
    assert {x['setup']['arch'] for x in runs} == {'xresnet18-half'} and {x['setup']['lr'] for x in runs} == {1e-3}
    concl = (out/'conclusions.txt').read_text()
    assert 'cutout vs none, 1 epoch(s): ' in concl and '% Dice (paired over 2 seeds' in concl
    assert 'accuracy' not in concl
    assert (out/'table.csv').read_text().splitlines()[0].endswith(',metric')
    assert (out/'summary.txt').read_text().startswith('At 1 epochs, over 2 paired seeds, ')

def test_a_run_on_masks_is_a_unet_with_dice(shapes):
    make = partial(d.seg_dls, shapes, size=32, num_workers=0)
    assert is_seg_dls(make(bs=4))
    res = train_run(make, epochs=1, bs=4, lr=1e-3, arch='xresnet18-half')
    assert res['metric'] == 'dice' and len(res['dice_per_epoch']) == 1 and res['best_dice'] == res['dice']
    assert 'accuracy' not in res and 'accs' not in res
    assert scored(res)['accuracy'] == res['dice'] and scored(res)['accs'] == res['dice_per_epoch']
    learn, metric = make_learner(make(bs=4), 'resnet18')
    assert metric == 'dice' and type(learn.model).__name__ == 'DynamicUnet' and learn.loss_func.axis == 1
    assert not any(p.requires_grad is False for p in learn.model.parameters())  # not pretrained, nothing frozen
    with pytest.raises(ValueError, match='for segmentation'): make_learner(make(bs=4), 'xresnet50')

def test_mixing_callbacks_are_refused_on_masks_and_erasing_is_not(shapes):
    assert seg_refusals([MixUp(), FastaiCutMix(), RandomErasing()])[0].startswith('MixUp: ')
    assert len(seg_refusals([MixUp(), FastaiCutMix(), RandomErasing()])) == 2
    ns = dict(seed=0, epochs=1, size=32, bs=8, lr=1e-3, arch='resnet18', data='x', sample=1.)
    ok = [c for c in CONFIGS if not seg_refusals(split_config(CONFIGS[c](SimpleNamespace(config=c, **ns)))[0])]
    assert 'fastai-mixup' not in ok and 'fastai-cutmix' not in ok and {'none', 'cutout', 'progressive'} <= set(ok)
    with pytest.raises(ValueError, match='cannot train on segmentation masks: MixUp'):
        train_run(partial(d.seg_dls, shapes, size=32, num_workers=0), cbs=[MixUp()], epochs=1, bs=4)

@pytest.mark.parametrize('config', ['cutmix', 'sprinkles+cutmix', 'keep-cutout'])
def test_the_library_mixing_and_saliency_configurations_train_on_masks(shapes, config):
    "CutMix pastes the masks, OneOf passes them on, KeepCutout's map is the loss over the pixels: all train a U-Net"
    ns = SimpleNamespace(config=config, seed=0, epochs=1, size=32, bs=4, lr=1e-3, arch='xresnet18-half', data='x',
                         sample=1.)
    cbs, tfms = split_config(CONFIGS[config](ns))
    assert not seg_refusals(cbs)
    res = train_run(partial(d.seg_dls, shapes, size=32, num_workers=0), cbs=cbs, batch_tfms=tfms, epochs=1, bs=4,
                    lr=1e-3, arch='xresnet18-half')
    assert res['metric'] == 'dice' and 0 <= res['dice'] <= 1 and res['aug_s'] > 0

def test_runs_of_one_kind_only(shapes):
    cls = dict(config='none', seed=0, epochs=1, accuracy=.5, best_accuracy=.5, accs=[.5])
    seg = dict(config='none', seed=0, epochs=1, metric='dice', dice=.4, best_dice=.4, dice_per_epoch=[.4])
    assert run_metric([cls]) == 'accuracy' and run_metric([seg]) == 'dice' and run_metric([]) == 'accuracy'
    assert scored(cls) is cls
    with pytest.raises(ValueError, match=r"different metrics \['accuracy', 'dice'\]"): run_metric([cls, seg])

def test_committed_classification_results_read_as_before(tmp_path):
    "Records without a `metric` are accuracy: no metric column, the same words, the same file names"
    files = sorted((ROOT/'results').glob('*/runs*.jsonl'))
    assert files
    runs = load_runs(files[0])
    df = summarize(runs)
    assert 'metric' not in df and 'accuracy (mean ± std)' in format_table(df)
    assert all(' accuracy (' in l for l in conclusions(df))
    assert sorted(p.name for p in save_report(runs, tmp_path).values())[0] == 'accuracy.png'

# ---------------------------------------------------------------- the command, on bad segmentation folders

@pytest.mark.parametrize('case,match', [
    ('missing masks', r"no mask for 2 of the 6 images of .*: im0.jpg, im3.jpg"),
    ('sizes differ', r"1 image\(s\) differ in size from their masks: im2.jpg 16x12 \(mask 10x10\)"),
    ('codes too few', r"codes.txt names 2 classes \(mask values 0-1\), but 2 mask\(s\) have larger values"),
    ('empty', 'holds no image files')])
def test_command_names_a_bad_segmentation_folder_before_training(tmp_path, case, match):
    root = make_seg(tmp_path/'s')
    if case == 'missing masks': (root/'labels'/'im0.png').unlink(); (root/'labels'/'im3.png').unlink()
    elif case == 'sizes differ':
        from PIL import Image
        Image.new('L', (10, 10)).save(root/'labels'/'im2.png')
    elif case == 'codes too few': (root/'codes.txt').write_text('background\nshape\n')
    elif case == 'empty': [f.unlink() for f in (root/'images').iterdir()]
    with pytest.raises(SystemExit, match=f"--data {root.resolve()}: .*" + match):
        sprinkles_compare(data=str(root), epochs='1', bs=2)

@pytest.mark.parametrize('args,match', [
    (dict(aug='fastai-mixup,cutout'), r"is a segmentation folder, and fastai-mixup cannot train on its masks"),
    (dict(profile='evidence'), r"fastai-mixup, fastai-cutmix cannot train on its masks \(MixUp: fastai's MixUp"),
    (dict(arch='xresnet50'), r"--arch must be one of \['resnet18', .*\] on a segmentation folder"),
    (dict(per_class=3), 'per_class is for a folder of class folders'),
    (dict(bs=64), '--bs 64 is larger than the 5 training images')])
def test_command_refuses_what_masks_cannot_train_with(tmp_path, args, match):
    root = make_seg(tmp_path/'s', valid=['im0.jpg'])
    with pytest.raises(SystemExit, match=match): sprinkles_compare(data=str(root), **{'epochs': '1', 'bs': 2, **args})
