"Offline data: the order of sources, clear errors, and extraction that never leaves a partial folder"
import io, os, tarfile
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
    with pytest.raises(d.DataNotFoundError, match='SPRINKLES_DATA=.*no complete folder or archive named cifar10'): d.cifar10()

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
