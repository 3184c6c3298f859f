"Offline data: the order of sources, clear errors, and extraction that never leaves a partial folder"
import os, shutil, tarfile
from collections import Counter
from pathlib import Path
import pytest
from PIL import Image
import fastai_sprinkles.data as d

def make_dataset(root:Path, name='imagenette2-224', valid='val', classes=('n01440764', 'n03000684'), n=3):
    "A tiny data set folder with the layout of the real one"
    for split in ('train', valid):
        for c in classes:
            (root/name/split/c).mkdir(parents=True, exist_ok=True)
            for i in range(n): Image.new('RGB', (8, 8), (i*40, 0, 0)).save(root/name/split/c/f'{c}_{i}.JPEG', 'JPEG')
    return root/name

def make_archive(src:Path, dest:Path) -> Path:
    with tarfile.open(dest, 'w:gz') as tf: tf.add(src, arcname=src.name)
    return dest

@pytest.fixture
def archive(tmp_path):
    src = make_dataset(tmp_path/'src')
    return make_archive(src, tmp_path/'imagenette2-224.tgz')

def test_missing_env_path_is_a_clear_error(tmp_data, monkeypatch):
    monkeypatch.setenv('SPRINKLES_DATA', '/no/such/place')
    with pytest.raises(d.DataNotFoundError, match=r"SPRINKLES_DATA='/no/such/place' does not exist"): d.imagenette()

def test_env_archive_is_extracted_into_fastai_data(tmp_data, archive, monkeypatch):
    monkeypatch.setenv('SPRINKLES_DATA', str(archive))
    p = d.imagenette(verbose=False)
    assert p == tmp_data/'imagenette2-224' and d.is_complete(p)
    assert sorted(o.name for o in tmp_data.iterdir()) == ['imagenette2-224']  # no temporary folder left
    assert d.imagenette(verbose=False) == p  # second call: no re-extraction needed

def test_env_folder_holding_data_sets(tmp_data, tmp_path, monkeypatch):
    make_dataset(tmp_path/'mine')
    monkeypatch.setenv('SPRINKLES_DATA', str(tmp_path/'mine'))
    assert d.imagenette(verbose=False) == tmp_path/'mine'/'imagenette2-224'
    with pytest.raises(d.DataNotFoundError, match='SPRINKLES_DATA=.*no complete folder or archive named cifar10'):
        d.cifar10()

def test_corrupt_archive_is_a_clear_error_and_leaves_nothing(tmp_data, archive, monkeypatch):
    bad = archive.parent/'bad'/'imagenette2-224.tgz'
    bad.parent.mkdir()
    bad.write_bytes(archive.read_bytes()[:len(archive.read_bytes())//2])  # truncated download
    monkeypatch.setenv('SPRINKLES_DATA', str(bad))
    with pytest.raises(d.DataNotFoundError, match='corrupt or truncated'): d.imagenette()
    assert not tmp_data.exists() or list(tmp_data.iterdir()) == []

def test_garbage_archive(tmp_data, tmp_path, monkeypatch):
    bad = tmp_path/'imagenette2-224.tgz'
    bad.write_bytes(os.urandom(5000))
    monkeypatch.setenv('SPRINKLES_DATA', str(bad))
    with pytest.raises(d.DataNotFoundError, match='corrupt or truncated'): d.imagenette()
    assert list(tmp_data.iterdir()) == []

def test_archive_with_wrong_top_folder(tmp_data, tmp_path, monkeypatch):
    src = make_dataset(tmp_path/'src', name='something-else')
    arc = make_archive(src, tmp_path/'imagenette2-224.tgz')
    monkeypatch.setenv('SPRINKLES_DATA', str(arc))
    with pytest.raises(d.DataNotFoundError, match="top folder 'imagenette2-224'"): d.imagenette()
    assert list(tmp_data.iterdir()) == []

def test_interrupted_extraction_is_not_mistaken_for_complete(tmp_data, tmp_path, monkeypatch):
    # what an interrupted extraction leaves: a hidden partial folder, and (from other tools) a folder without `val`
    (tmp_data/'.imagenette2-224-partial-x'/'imagenette2-224'/'train').mkdir(parents=True)
    (tmp_data/'imagenette2-160'/'train').mkdir(parents=True)
    shared = tmp_path/'shared'
    shared.mkdir()
    make_archive(make_dataset(tmp_path/'src'), shared/'imagenette2-224.tgz')
    monkeypatch.setattr(d, 'shared_dirs', lambda: [shared])
    p = d.imagenette(verbose=False)
    assert p == tmp_data/'imagenette2-224' and d.is_complete(p)

def test_extraction_interrupted_midway_leaves_no_final_folder(tmp_data, archive, monkeypatch):
    def boom(self, *a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(tarfile.TarFile, 'extractall', boom)
    with pytest.raises(KeyboardInterrupt): d.extract_archive(archive, tmp_data, 'imagenette2-224')
    assert list(tmp_data.iterdir()) == []

def test_nothing_found_lists_everything_tried(tmp_data):
    with pytest.raises(d.DataNotFoundError) as e: d.imagenette()
    msg = str(e.value)
    for part in ('fastai data folder', 'untar_data(https://', 'did not answer', 'shared archives'): assert part in msg

def test_download_is_used_when_host_answers(tmp_data, tmp_path, monkeypatch):
    got = make_dataset(tmp_path/'dl', name='imagenette2-160')
    monkeypatch.setattr(d, 'host_answers', lambda url, timeout=3.: True)
    monkeypatch.setattr(d, 'untar_data', lambda url: got)
    assert d.imagenette(verbose=False) == got

def test_failed_download_falls_back_to_shared(tmp_data, tmp_path, monkeypatch, capsys):
    def fail(url): raise OSError('connection reset')
    shared = tmp_path/'shared'
    shared.mkdir()
    make_archive(make_dataset(tmp_path/'src'), shared/'imagenette2-224.tgz')
    monkeypatch.setattr(d, 'host_answers', lambda url, timeout=3.: True)
    monkeypatch.setattr(d, 'untar_data', fail)
    monkeypatch.setattr(d, 'shared_dirs', lambda: [shared])
    assert d.imagenette() == tmp_data/'imagenette2-224'
    assert 'squashed to 224x224' in capsys.readouterr().out  # says which copy is used

def test_host_answers_fails_fast():
    import time
    t = time.perf_counter()
    assert d.host_answers('https://unreachable.invalid/x.tgz', timeout=2) is False
    assert time.perf_counter() - t < 10

def test_bad_names():
    with pytest.raises(ValueError, match='name must be one of'): d.find_data('mnist')
    with pytest.raises(ValueError, match=r'sample must be in \(0, 1\]'): d.imagenette_dls(sample=0)

# --- any folder of class folders

def make_folder(root, classes=('cat', 'dog', 'owl'), n=6, split=True, seed=0):
    "Images of mixed modes, sizes and extension case; `split`: train/ and valid/ folders, else class folders only"
    import random
    rng = random.Random(seed)
    modes, exts = ['RGB', 'L', 'RGBA', 'P', 'RGB', 'L'], ['.jpg', '.JPG', '.png', '.PNG', '.JpEg', '.bmp']
    for sub in (('train', 'valid') if split else ('',)):
        for c in classes:
            d = Path(root)/sub/c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n if sub != 'valid' else 2):
                mode, ext = modes[i % len(modes)], exts[(i + len(c)) % len(exts)]
                if mode == 'RGBA' and ext.lower() in ('.jpg', '.jpeg', '.bmp'): ext = '.png'
                if mode == 'P' and ext.lower() in ('.jpg', '.jpeg'): ext = '.png'
                size = (rng.randint(17, 90), rng.randint(17, 90))
                color = rng.randint(0, 255) if mode in ('L', 'P') else tuple(rng.randint(0, 255) for _ in mode)
                Image.new(mode, size, color=color).save(d/f'{i}{ext}')
    return Path(root)

def test_folder_with_mixed_modes_sizes_and_extensions(tmp_path):
    root = make_folder(tmp_path/'imgs')
    dls = d.folder_dls(root, size=24, bs=4, num_workers=0)
    assert dls.vocab == ['cat', 'dog', 'owl'] and len(dls.train_ds) == 18 and len(dls.valid_ds) == 6
    x, y = dls.one_batch()
    assert x.shape == (4, 3, 24, 24)
    xv, _ = dls.valid.one_batch()
    assert xv.shape[1:] == (3, 24, 24)

def test_folder_without_split_uses_valid_pct_with_a_fixed_seed(tmp_path):
    root = make_folder(tmp_path/'imgs', split=False, n=10)
    f1, v1 = d.folder_items(root, valid_pct=0.3)
    f2, v2 = d.folder_items(root, valid_pct=0.3)
    assert v1 == v2 and len(v1) == 9 and len(f1) == 30
    assert d.folder_items(root)[1] != v1 and len(d.folder_items(root)[1]) == 6  # the default 0.2
    with pytest.raises(d.DataFolderError, match='valid_pct must be in'): d.folder_items(root, valid_pct=1.5)
    with pytest.raises(d.DataFolderError, match='already split'):
        d.folder_items(make_folder(tmp_path/'s'), valid_pct=0.3)

def test_val_and_test_folders_are_found(tmp_path):
    root = make_folder(tmp_path/'imgs')
    (root/'valid').rename(root/'val')
    assert len(d.folder_items(root)[1]) == 6

@pytest.mark.parametrize('case,match', [
    ('missing', 'does not exist'), ('file', 'is not a folder'), ('empty', 'holds no image files'),
    ('one class', 'at least two'), ('loose', 'outside class folders'), ('train only', 'no valid'),
    ('valid class unknown', 'have no training images'), ('empty valid', 'holds no image files')])
def test_folder_errors_name_the_path(tmp_path, case, match):
    root = tmp_path/'data'
    if case == 'file': root.write_text('x')
    elif case == 'empty': root.mkdir()
    elif case == 'one class': make_folder(root, classes=('cat',), split=False)
    elif case == 'loose': make_folder(root, split=False); Image.new('RGB', (8, 8)).save(root/'stray.png')
    elif case == 'train only': make_folder(root); shutil.rmtree(root/'valid')
    elif case == 'valid class unknown': make_folder(root); shutil.copytree(root/'valid'/'cat', root/'valid'/'yak')
    elif case == 'empty valid': make_folder(root); shutil.rmtree(root/'valid'); (root/'valid'/'cat').mkdir(parents=True)
    with pytest.raises(d.DataFolderError, match=match) as e: d.folder_items(root)
    assert str(root) in str(e.value)

def test_unreadable_image_is_reported_and_skipped_before_training(tmp_path):
    root = make_folder(tmp_path/'imgs')
    bad = root/'train'/'dog'/'broken.jpg'
    bad.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    lines = []
    kept = d.readable(d.folder_items(root)[0], log=lines.append)
    assert bad not in kept and len(kept) == 24
    assert len(lines) == 1 and str(bad) in lines[0] and 'skipped 1 unreadable' in lines[0]
    dls = d.folder_dls(root, size=16, bs=6, num_workers=0)
    assert bad not in dls.train.items and len(dls.train_ds) == 18
    for _ in dls.train: pass  # a whole epoch, no crash

def test_per_class_and_valid_n_subsets(tmp_path):
    root = make_folder(tmp_path/'imgs', n=6)
    files, valid = d.folder_items(root)
    keep = d.select_items(files, valid, per_class=4, valid_n=3)
    train = [f for f in keep if f not in valid]
    assert sorted(Counter(f.parent.name for f in train).values()) == [4, 4, 4]
    assert len([f for f in keep if f in valid]) == 3
    assert keep == [f for f in files if f in set(keep)]  # the original order
    assert keep == d.select_items(files, valid, per_class=4, valid_n=3)  # seeded
    with pytest.raises(ValueError, match='fewer training images'): d.select_items(files, valid, per_class=7)
    with pytest.raises(ValueError, match='only 6 validation'): d.select_items(files, valid, valid_n=7)
    with pytest.raises(ValueError, match='per_class must be'): d.select_items(files, valid, per_class=0)

def test_measured_stats(tmp_path):
    root = tmp_path/'grey'
    for c, v in (('dark', 50), ('light', 200)):
        (root/c).mkdir(parents=True)
        for i in range(5): Image.new('L', (20, 30), color=v).save(root/c/f'{i}.png')
    mean, std = d.measure_stats(d.folder_items(root, valid_pct=0.2)[0], size=8)
    assert mean == pytest.approx([125/255]*3, abs=0.1) and all(s > 0.2 for s in std)
    dls = d.folder_dls(root, size=8, bs=2, valid_pct=0.2, stats='measure', num_workers=0)
    norm = [t for t in dls.train.after_batch.fs if type(t).__name__ == 'Normalize'][0]
    assert norm.mean.flatten().tolist() != pytest.approx([0.485, 0.456, 0.406], abs=0.01)
    with pytest.raises(ValueError, match="stats must be"): d.folder_dls(root, size=8, valid_pct=0.2, stats='cifar')

# ---------------------------------------------------------------- the synthetic segmentation set

def photos(root:Path, n=6):
    "A few plain photos of odd sizes and modes to draw shapes on"
    root.mkdir(parents=True)
    for i in range(n): Image.new('RGB' if i % 2 else 'L', (40 + 7*i, 30 + 5*i), 40*i).save(root/f'p{i}.jpg')
    return sorted(root.iterdir())

def test_shapes_segmentation_layout_masks_and_seed(tmp_path):
    import numpy as np
    ps = photos(tmp_path/'photos')
    a = d.make_shapes_segmentation(tmp_path/'a', n=5, size=24, seed=3, photos=ps)
    b = d.make_shapes_segmentation(tmp_path/'b', n=5, size=24, seed=3, photos=ps)
    c = d.make_shapes_segmentation(tmp_path/'c', n=5, size=24, seed=4, photos=ps)
    names = sorted(o.name for o in (a/'images').iterdir())
    assert names == sorted(o.name for o in (a/'labels').iterdir()) and len(names) == 5
    assert (a/'codes.txt').read_text().split() == list(d.SHAPE_CODES)
    assert (a/'valid.txt').read_text().split() and set((a/'valid.txt').read_text().split()) <= set(names)
    masks = [np.asarray(Image.open(a/'labels'/o)) for o in names]
    assert all(m.shape == (24, 24) and m.max() < len(d.SHAPE_CODES) for m in masks)
    assert all((m > 0).any() for m in masks)  # every image has at least one shape
    assert Image.open(a/'images'/names[0]).size == (24, 24) and Image.open(a/'images'/names[0]).mode == 'RGB'
    same = [(a/s/o).read_bytes() == (b/s/o).read_bytes() for s in ('images', 'labels') for o in names]
    assert all(same) and (a/'valid.txt').read_text() == (b/'valid.txt').read_text()
    assert any((a/'labels'/o).read_bytes() != (c/'labels'/o).read_bytes() for o in names)

def test_shapes_are_drawn_where_the_mask_says():
    import random, numpy as np
    photo = Image.new('RGB', (48, 48), (0, 0, 0))
    img, mask = d.draw_shapes(photo, random.Random(0), n_shapes=(3, 3))
    x, m = np.asarray(img), np.asarray(mask)
    assert (x[m == 0] == 0).all()  # outside the shapes the photo is untouched
    assert set(np.unique(m)) - {0}  # some shape was drawn
    assert np.asarray(photo).max() == 0  # the photo given is not changed

def test_shapes_segmentation_bad_arguments(tmp_path):
    ps = photos(tmp_path/'photos', n=3)
    (tmp_path/'full').mkdir(); (tmp_path/'full'/'x').write_text('x')
    with pytest.raises(FileExistsError, match='not empty'): d.make_shapes_segmentation(tmp_path/'full', n=2, photos=ps)
    with pytest.raises(ValueError, match='only 3 photos'): d.make_shapes_segmentation(tmp_path/'n', n=4, photos=ps)
    with pytest.raises(ValueError, match='valid_pct'):
        d.make_shapes_segmentation(tmp_path/'v', n=2, valid_pct=1, photos=ps)
    with pytest.raises(ValueError, match='size'): d.make_shapes_segmentation(tmp_path/'s', n=2, size=2, photos=ps)

# ---------------------------------------------------------------- segmentation folders

def make_seg(root:Path, n=6, size=(16, 12), codes=('background', 'a', 'b'), mask_suffix='', images='images',
             labels='labels', valid=None):
    "A segmentation folder: image i has a mask whose values are 0 and i % 3"
    import numpy as np
    (root/images).mkdir(parents=True); (root/labels).mkdir()
    for i in range(n):
        Image.new('RGB', size, (20*i, 0, 0)).save(root/images/f'im{i}.jpg')
        m = np.zeros(size[::-1], np.uint8); m[:size[1]//2] = i % 3
        Image.fromarray(m).save(root/labels/f'im{i}{mask_suffix}.png')
    if codes is not None: (root/'codes.txt').write_text('\n'.join(codes) + '\n')
    if valid is not None: (root/'valid.txt').write_text('\n'.join(valid) + '\n')
    return root

def test_seg_folder_is_read_and_split(tmp_path):
    root = make_seg(tmp_path/'s', valid=['im1.jpg', 'im4.jpg'])
    assert d.is_seg_folder(root) and not d.is_seg_folder(make_folder(tmp_path/'cls'))
    assert not d.is_seg_folder(make_folder(tmp_path/'faces', classes=('mask', 'no_mask')))  # a class named mask
    files, valid, masks, codes = d.seg_items(root)
    assert [f.name for f in files] == [f'im{i}.jpg' for i in range(6)] and codes == ['background', 'a', 'b']
    assert sorted(f.name for f in valid) == ['im1.jpg', 'im4.jpg']
    assert all(masks[f].stem == f.stem for f in files)
    (root/'valid.txt').unlink()
    v1, v2 = d.seg_items(root)[1], d.seg_items(root)[1]
    assert v1 == v2 and len(v1) == 1 and len(d.seg_items(root, valid_pct=.5)[1]) == 3

def test_seg_conventions_camvid_suffix_palette_subfolders_and_codes_from_values(tmp_path):
    import numpy as np
    root = make_seg(tmp_path/'s', codes=None, mask_suffix='_P', images='img', labels='masks')
    (root/'img'/'sub').mkdir(); (root/'masks'/'sub').mkdir()
    Image.new('RGB', (16, 12)).save(root/'img'/'sub'/'x.png')
    pal = Image.fromarray(np.full((12, 16), 4, np.uint8)).convert('P')  # palette index 4, not the colour's grey
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 200, 200, 200] + [0]*(256*3 - 15))
    pal.save(root/'masks'/'sub'/'x_P.png')
    files, valid, masks, codes = d.seg_items(root)
    assert codes == ['0', '1', '2', '3', '4'] and masks[root/'img'/'sub'/'x.png'].name == 'x_P.png'
    assert np.asarray(d.read_mask(root/'masks'/'sub'/'x_P.png')).max() == 4
    dls = d.seg_dls(root, size=8, bs=2, num_workers=0)
    x, y = dls.one_batch()
    assert x.shape == (2, 3, 8, 8) and y.shape == (2, 8, 8) and type(y).__name__ == 'TensorMask'

@pytest.mark.parametrize('case,match', [
    ('missing masks', r"no mask for 2 of the 6 images of .*: im0.jpg, im3.jpg"),
    ('sizes differ', r"1 image\(s\) differ in size from their masks: im2.jpg 16x12 \(mask 10x10\)"),
    ('codes too few', r"codes.txt names 2 classes \(mask values 0-1\), but 2 mask\(s\) have larger values: "
                      r"im2.png \(max 2\), im5.png \(max 2\)"),
    ('empty', 'holds no image files'), ('no images folder', 'no images folder'), ('no labels folder', 'no labels'),
    ('rgb mask', 'is a RGB image: a mask holds one class index per pixel'),
    ('unknown valid', r"valid.txt names 1 image\(s\) not in .*: nope.jpg"),
    ('all valid', 'both training and validation need some'),
    ('one class', 'segmentation needs two classes at least'), ('empty codes', 'codes.txt is empty'),
    ('valid_pct and valid.txt', 'valid_pct is only for a folder without one'),
    ('two masks', 'has several masks'),
    ('broken mask', r"1 image\(s\) or their masks cannot be opened: im4.jpg \(UnidentifiedImageError\)")])
def test_bad_seg_folders_are_named_before_training(tmp_path, case, match):
    import numpy as np
    root = make_seg(tmp_path/'s')
    kw = {}
    if case == 'missing masks': (root/'labels'/'im0.png').unlink(); (root/'labels'/'im3.png').unlink()
    elif case == 'sizes differ': Image.new('L', (10, 10)).save(root/'labels'/'im2.png')
    elif case == 'codes too few': (root/'codes.txt').write_text('background\nshape\n')
    elif case == 'empty': shutil.rmtree(root/'images'); (root/'images').mkdir()
    elif case == 'no images folder': shutil.rmtree(root/'images')
    elif case == 'no labels folder': shutil.rmtree(root/'labels'); root = root/'images'
    elif case == 'rgb mask': Image.new('RGB', (16, 12)).save(root/'labels'/'im1.png')
    elif case == 'unknown valid': (root/'valid.txt').write_text('im1.jpg\nnope.jpg\n')
    elif case == 'all valid': (root/'valid.txt').write_text('\n'.join(f'im{i}.jpg' for i in range(6)))
    elif case == 'one class':
        (root/'codes.txt').unlink()
        for i in range(6): Image.fromarray(np.zeros((12, 16), np.uint8)).save(root/'labels'/f'im{i}.png')
    elif case == 'empty codes': (root/'codes.txt').write_text('\n')
    elif case == 'valid_pct and valid.txt': (root/'valid.txt').write_text('im1.jpg\n'); kw = dict(valid_pct=.3)
    elif case == 'two masks': Image.new('L', (16, 12)).save(root/'labels'/'im1.bmp')
    elif case == 'broken mask': (root/'labels'/'im4.png').write_bytes(b'not a png')
    with pytest.raises(d.DataFolderError, match=match): d.seg_items(root, **kw)

def test_masks_move_with_their_images_through_crops_and_flips(tmp_path):
    "Shapes on black photos: after random resized crops and flips, the drawn pixels are where the mask says"
    black = []
    for i in range(10): Image.new('RGB', (48, 48)).save(f := tmp_path/f'black{i}.png'); black.append(f)
    seg = d.make_shapes_segmentation(tmp_path/'s', n=10, size=48, seed=0, photos=black)
    dls = d.seg_dls(seg, size=32, bs=8, num_workers=0, stats=([0.]*3, [1.]*3), min_scale=.2)
    for _ in range(3):
        x, y = dls.one_batch()
        drawn = x.abs().sum(1) > .05  # the photos are black: only the shapes have colour
        # edges blur in the image and not in the mask: about 0.95 agree; a mask flipped on its own, about 0.75
        assert y.shape == (8, 32, 32) and (drawn == (y > 0)).float().mean() > .9
