"""Property and fault tests of `fastai_sprinkles.boxes` and `fastai_sprinkles.fills`: sampling boxes, hole masks, fills
and `sprinkle`"""
import pytest, torch
from hypothesis import given, settings, strategies as st
from fastai_sprinkles.checks import FILLS, as_range, check_sprinkle_args
from fastai_sprinkles.boxes import BOX_BITS, clip_boxes, sample_boxes, box_mask, box_runs, hole_offsets
from fastai_sprinkles.fills import fill_values, paint, sprinkle, Sprinkled

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
prop = settings(max_examples=25, deadline=None)

sides = st.integers(1, 48)
counts = st.tuples(st.integers(0, 6), st.integers(0, 6)).map(sorted).map(tuple)
sizes = st.tuples(st.floats(0.01, 1.5), st.floats(0.01, 1.5)).map(sorted).map(tuple)

def gen(seed=0): return torch.Generator().manual_seed(seed)

# --- boxes ---------------------------------------------------------------------------------------------------------

@prop
@given(B=st.integers(1, 6), H=sides, W=sides, n=counts, size=sizes, seed=st.integers(0, 2**16))
def test_boxes_in_bounds_and_counts_in_range(B, H, W, n, size, seed):
    boxes, valid = sample_boxes(B, H, W, n, size, generator=gen(seed))
    assert boxes.shape == (B, n[1], 4) and valid.shape == (B, n[1]) and valid.dtype == torch.bool
    y0, x0, y1, x1 = boxes.unbind(-1)
    assert ((0 <= y0) & (y0 <= y1) & (y1 <= H) & (0 <= x0) & (x0 <= x1) & (x1 <= W)).all()
    assert ((valid.sum(1) >= n[0]) & (valid.sum(1) <= n[1])).all()

def test_counts_cover_the_whole_range():
    valid = sample_boxes(300, 10, 10, n=(2, 5), generator=gen()).valid
    assert sorted(valid.sum(1).unique().tolist()) == [2, 3, 4, 5]

@prop
@given(B=st.integers(1, 4), H=sides, W=sides, extra=st.floats(0, 100))
def test_holes_bigger_than_the_image_are_clipped(B, H, W, extra):
    size = 2*max(H, W)/min(H, W) + extra  # a side of twice the longer side: covers the image from any centre
    s = sprinkle(torch.ones(B, 1, H, W), p=1., n=(1, 3), size=size, return_mask=True, generator=gen())
    boxes = sample_boxes(B, H, W, 1, size, generator=gen()).boxes
    assert (boxes == torch.tensor([0, 0, H, W])).all()
    assert s.mask.all() and (s.coverage == 1).all() and (s.x == 0).all()

@prop
@given(H=st.integers(2, 60), W=st.integers(2, 60), size=st.floats(0.05, 0.9))
def test_box_sides_follow_size_away_from_borders(H, W, size):
    boxes = sample_boxes(200, H, W, 1, size, generator=gen()).boxes[:, 0]
    side = max(1, round(size*min(H, W)))
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (h <= side).all() and (w <= side).all()
    inner = (boxes[:, 0] > 0) & (boxes[:, 2] < H)  # not clipped at the top or bottom
    assert (h[inner] == side).all()

def test_explicit_sizes_and_clip_boxes():
    sizes = torch.tensor([0.25, 0.5, 1.0])  # one per image
    b = sample_boxes(3, 40, 80, 1, sizes, generator=gen()).boxes[:, 0]
    assert ((b[:, 2] - b[:, 0]) <= torch.tensor([10, 20, 40])).all()
    per_box = torch.tensor([[0.1, 0.5], [0.5, 0.1]])  # (B, K): one size per box
    b2 = sample_boxes(2, 100, 100, 2, per_box, generator=gen()).boxes
    assert ((b2[..., 2] - b2[..., 0]) <= torch.tensor([[10, 50], [50, 10]])).all()
    assert (sample_boxes(2, 100, 100, 3, torch.tensor(0.2), generator=gen()).boxes[..., 2:] > 0).all()
    got = clip_boxes(torch.tensor([-5, 30]), torch.tensor([70, 2]), torch.tensor(10), torch.tensor([20, 4]), 40, 80)
    assert got.tolist() == [[0, 70, 5, 80], [30, 2, 40, 6]]

# --- masks ---------------------------------------------------------------------------------------------------------

def loop_mask(boxes, valid, H, W):
    "The union of the valid boxes, painted box by box: the plain answer to check `box_mask` against"
    ref = torch.zeros(len(boxes), 1, H, W, dtype=torch.bool)
    for b in range(len(boxes)):
        for (y0, x0, y1, x1), v in zip(boxes[b].tolist(), valid[b].tolist()):
            if v: ref[b, 0, y0:y1, x0:x1] = True
    return ref

@prop
@given(B=st.integers(1, 4), H=sides, W=sides, n=counts, size=sizes, p=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_mask_methods_agree_with_a_loop(B, H, W, n, size, p, seed):
    boxes, valid = sample_boxes(B, H, W, n, size, p, generator=gen(seed))
    ref = loop_mask(boxes, valid, H, W)
    assert torch.equal(box_mask(boxes, valid, H, W), ref)
    assert torch.equal(box_mask(boxes, valid, H, W, torch.float16), ref.half())

@pytest.mark.parametrize('n', [(40, BOX_BITS), BOX_BITS, (BOX_BITS+1, 100)])
def test_box_mask_with_many_boxes_per_image(n):
    bx = sample_boxes(3, 30, 50, n=n, size=(0.05, 0.3), p=0.9, generator=gen())
    assert torch.equal(box_mask(*bx, 30, 50), loop_mask(*bx, 30, 50))

def test_runs_refuse_more_boxes_than_bits():
    bx = sample_boxes(2, 30, 50, n=BOX_BITS+1, size=0.1, generator=gen())
    with pytest.raises(ValueError, match=f'at most {BOX_BITS} boxes'): box_runs(*bx, 30, 50)

def test_rows_between_the_same_edges_share_a_run():
    # one 3x4 box at rows 2..4, columns 1..4 of a 7x6 image: rows 0-1, 2-4 and 5-6 are three runs
    run, cols = box_runs(torch.tensor([[[2, 1, 5, 5]]]), None, 7, 6)
    assert run.tolist() == [[0, 0, 1, 1, 1, 2, 2]]
    assert cols[0, :3].int().tolist() == [[0]*6, [0, 1, 1, 1, 1, 0], [0]*6]

@prop
@given(B=st.integers(1, 4), C=st.integers(1, 4), H=sides, W=sides, n=counts, size=sizes, p=st.floats(0, 1),
       seed=st.integers(0, 2**16))
def test_hole_offsets_list_each_hole_pixel_once(B, C, H, W, n, size, p, seed):
    bx = sample_boxes(B, H, W, n, size, p, generator=gen(seed))
    at, count = hole_offsets(*bx, H, W, C)
    assert at.unique().numel() == at.numel()  # no pixel twice
    hit = torch.zeros(B*C*H*W, dtype=torch.bool)
    hit[at] = True
    hit = hit.view(B, C, H, W)
    assert torch.equal(hit[:, :1], box_mask(*bx, H, W)) and not hit[:, 1:].any()  # channel 0, exactly the holes
    assert torch.equal(count, hit.view(B, -1).sum(1))

# --- sprinkle: coverage, p, exact fills ------------------------------------------------------------------------

@prop
@given(B=st.integers(1, 5), C=st.sampled_from([1, 3, 4]), H=sides, W=sides, n=counts, size=sizes,
       p=st.floats(0, 1), fill=st.sampled_from(['zero', 'mean', 'noise', 0.9]), opacity=st.sampled_from([1., 0.5, 0.1]),
       seed=st.integers(0, 2**16))
def test_coverage_is_the_changed_fraction(B, C, H, W, n, size, p, fill, opacity, seed):
    # a constant image far from every fill: zero -> 0, mean -> 0.2, colour -> 0.9, noise -> N(0, 1)
    x = torch.full((B, C, H, W), 100.)
    s = sprinkle(x, p, n, size, fill, opacity, mean=[0.2]*C, std=[1.]*C, return_mask=True, generator=gen(seed))
    changed = (s.x != x).any(1, keepdim=True)
    assert torch.equal(changed, s.mask)
    assert torch.equal(s.coverage, changed.float().mean((1, 2, 3)))
    assert s.coverage.shape == (B,) and s.coverage.dtype == torch.float32
    assert torch.equal(x, torch.full((B, C, H, W), 100.))  # the input is untouched

@pytest.mark.parametrize('fill', [*FILLS, (0.1, 0.2, 0.3)])
def test_p0_is_bit_identical(fill):
    x = torch.randn(4, 3, 20, 30)
    x[0, 0, 0, 0] = float('nan')
    for s in (sprinkle(x, 0., (1, 8), 0.3, fill, mean=IMAGENET[0], std=IMAGENET[1], return_mask=True),
              sprinkle(x, 0.7, 0, 0.3, fill, mean=IMAGENET[0], std=IMAGENET[1], return_mask=True)):
        assert s.x is not x and torch.equal(s.x.view(torch.int32), x.view(torch.int32))
        assert not s.mask.any() and (s.coverage == 0).all()

@pytest.mark.parametrize('fill', FILLS)
def test_p1_changes_every_image(fill):
    x = torch.randn(32, 3, 24, 24)
    s = sprinkle(x, 1., (1, 4), (0.05, 0.5), fill, mean=IMAGENET[0], std=IMAGENET[1], generator=gen())
    assert (s.coverage > 0).all()
    assert (s.x != x).flatten(1).any(1).all()

@pytest.mark.parametrize('p', [0.1, 0.5, 0.9])
def test_p_is_the_chance_that_an_image_gets_sprinkles(p):
    s = sprinkle(torch.zeros(4000, 1, 4, 4), p, 1, 0.5, fill=1., generator=gen())
    assert abs((s.coverage > 0).float().mean() - p) < 0.03  # 4000 images: the standard error is below 0.008

@pytest.mark.parametrize('fill,pixel', [('zero', [0., 0., 0.]), ('mean', IMAGENET[0]), ((1., 0.5, 0.), [1., 0.5, 0.]),
                                        (0.25, [0.25]*3)])
def test_opacity_one_is_exactly_the_fill(fill, pixel):
    x = torch.randn(8, 3, 30, 20)
    s = sprinkle(x, 1., (1, 5), (0.1, 0.4), fill, mean=IMAGENET[0], std=IMAGENET[1], return_mask=True, generator=gen())
    v = ((torch.tensor(pixel) - torch.tensor(IMAGENET[0]))/torch.tensor(IMAGENET[1])).view(1, 3, 1, 1)
    assert torch.equal(s.x, torch.where(s.mask, v, x))
    assert torch.equal(fill_values(fill, 3, *IMAGENET), v)

def test_opacity_blends():
    x = torch.randn(4, 3, 16, 16)
    s = sprinkle(x, 1., 3, 0.3, 'zero', opacity=0.25, return_mask=True, generator=gen())
    torch.testing.assert_close(s.x, torch.where(s.mask, 0.75*x, x))

def test_black_is_minus_mean_over_std_in_normalised_space():
    v = fill_values('zero', 3, *IMAGENET).flatten()
    torch.testing.assert_close(v*torch.tensor(IMAGENET[1]) + torch.tensor(IMAGENET[0]), torch.zeros(3))
    assert torch.equal(fill_values('mean', 3, *IMAGENET), torch.zeros(1, 3, 1, 1))

@pytest.mark.parametrize('sparse', [True, False])
def test_noise_is_standard_gaussian_in_normalised_space(sparse):
    x = torch.zeros(8, 3, 64, 64)
    out = paint(x, torch.ones(8, 1, 64, 64, dtype=torch.bool), 'noise', sparse=sparse, generator=gen())
    assert abs(out.mean()) < 0.01 and abs(out.std() - 1) < 0.01
    assert out[:, 0].flatten().unique().numel() > 0.99*out[:, 0].numel()  # a fresh number per pixel and channel
    assert not torch.equal(out[:, 0], out[:, 1])

@pytest.mark.parametrize('sparse', [True, False])
@pytest.mark.parametrize('soft', [False, True])
def test_noise_opacity_blends(sparse, soft):
    x = torch.full((8, 3, 64, 64), 10.)
    mask = torch.ones(8, 1, 64, 64)
    mask = mask*0.5 if soft else mask.bool()  # a float mask is a weight, multiplied by opacity
    out = paint(x, mask, 'noise', opacity=0.5, sparse=sparse, generator=gen())
    a = 0.25 if soft else 0.5
    assert abs(out.mean() - 10*(1-a)) < 0.01 and abs(out.std() - a) < 0.01

def test_noise_is_fresh_on_every_call():
    x = torch.zeros(4, 3, 32, 32)
    g = gen()
    a, b = (sprinkle(x, 1., 4, 0.3, 'noise', generator=g, return_mask=True) for _ in range(2))
    both = a.mask & b.mask
    assert both.any() and (a.x != b.x)[both.expand_as(x)].all()

# --- dtype, device, layout, shapes ----------------------------------------------------------------------------

@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('fill', FILLS)
@pytest.mark.parametrize('opacity', [1., 0.5])
def test_dtype_device_and_memory_format_are_kept(dtype, channels_last, fill, opacity):
    x = torch.randn(3, 3, 17, 23).to(dtype)
    if channels_last: x = x.contiguous(memory_format=torch.channels_last)
    before = x.clone()
    s = sprinkle(x, 1., (2, 4), 0.3, fill, opacity, mean=IMAGENET[0], std=IMAGENET[1], generator=gen())
    assert (s.x.dtype, s.x.shape, s.x.device) == (dtype, x.shape, x.device)
    assert s.x.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert torch.equal(x, before) and (s.x != x).any()

@pytest.mark.parametrize('fill', FILLS)
@pytest.mark.parametrize('opacity', [1., 0.3])
def test_memory_format_does_not_change_the_values(fill, opacity):
    x = torch.randn(4, 3, 19, 13)
    kw = dict(p=0.8, n=(1, 5), size=(0.1, 0.6), fill=fill, opacity=opacity, mean=IMAGENET[0], std=IMAGENET[1])
    a = sprinkle(x, generator=gen(3), **kw).x
    b = sprinkle(x.contiguous(memory_format=torch.channels_last), generator=gen(3), **kw).x
    assert torch.equal(a, b)

@pytest.mark.parametrize('opacity', [1., 0.4])
def test_noise_on_a_strided_view_paints_the_view(opacity):
    base = torch.randn(4, 3, 40, 60)
    view = base[:, :, 5:35, ::2]  # not one dense block of memory
    kw = dict(p=1., n=(1, 6), size=(0.1, 0.5), fill='noise', opacity=opacity)
    a = sprinkle(view.contiguous(), generator=gen(4), **kw).x
    keep = base.clone()
    b = sprinkle(view, generator=gen(4), inplace=True, **kw).x
    assert b is view and torch.equal(view, a)  # the same values as on a contiguous copy
    outside = torch.ones_like(base, dtype=torch.bool)
    outside[:, :, 5:35, ::2] = False
    assert torch.equal(base[outside], keep[outside])  # nothing written outside the view

def test_sparse_paint_with_a_float_mask_on_channels_last():
    x = torch.full((2, 3, 20, 30), 10.).contiguous(memory_format=torch.channels_last)
    w = torch.zeros(2, 1, 20, 30)
    w[:, :, 5:10, 5:20] = 0.5
    out = paint(x, w, 'noise', sparse=True, generator=gen())
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out[(w == 0).expand_as(x)], x[(w == 0).expand_as(x)])
    inside = out[(w > 0).expand_as(x)]
    assert abs(inside.mean() - 5) < 0.1 and abs(inside.std() - 0.5) < 0.1  # half the image, half the noise

@prop
@given(B=st.integers(1, 3), C=st.sampled_from([1, 3, 4]), H=st.integers(1, 70), W=st.integers(1, 70),
       fill=st.sampled_from(FILLS))
def test_any_shape_and_channel_count(B, C, H, W, fill):
    x = torch.randn(B, C, H, W)
    s = sprinkle(x, 1., (1, 3), (0.1, 0.5), fill, mean=[0.5]*C, std=[0.25]*C, return_mask=True, generator=gen())
    assert s.x.shape == x.shape and s.mask.shape == (B, 1, H, W)
    assert ((0 < s.coverage) & (s.coverage <= 1)).all()

def test_cuda_if_available():
    if not torch.cuda.is_available(): pytest.skip('no CUDA device')
    x = torch.randn(4, 3, 32, 32, device='cuda')
    for fill in FILLS:
        s = sprinkle(x, 1., 4, 0.2, fill, mean=IMAGENET[0], std=IMAGENET[1], return_mask=True,
                     generator=torch.Generator('cuda').manual_seed(0))
        assert s.x.device == x.device and s.mask.device == x.device and (s.coverage > 0).all()
    m = s.mask
    for sparse in (True, False):  # the sparse path writes by indexed assignment on GPUs
        out = paint(x, m, 'noise', sparse=sparse, generator=torch.Generator('cuda').manual_seed(0))
        assert torch.equal((out != x).any(1, keepdim=True), m)

def test_inplace_paints_the_input():
    x = torch.randn(4, 3, 16, 16)
    ref = sprinkle(x, 1., 3, 0.3, 'zero', generator=gen()).x
    s = sprinkle(x, 1., 3, 0.3, 'zero', generator=gen(), inplace=True)
    assert s.x is x and torch.equal(x, ref)

def test_fastai_tensor_image_stays_a_tensor_image():
    from fastai.torch_core import TensorImage
    x = TensorImage(torch.randn(2, 3, 16, 16))
    for fill in FILLS: assert isinstance(sprinkle(x, 1., 3, 0.3, fill, mean=[0.]*3, std=[1.]*3).x, TensorImage)

# --- reproducibility -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('fill', FILLS)
def test_same_seed_same_output(fill):
    x = torch.randn(8, 3, 32, 32)
    kw = dict(p=0.6, n=(1, 8), size=(0.05, 0.3), fill=fill, opacity=0.7, mean=IMAGENET[0], std=IMAGENET[1])
    a, b, c = (sprinkle(x, generator=gen(s), return_mask=True, **kw) for s in (7, 7, 8))
    assert torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask) and torch.equal(a.coverage, b.coverage)
    assert not torch.equal(a.x, c.x)

def test_result_is_a_named_tuple():
    s = sprinkle(torch.randn(2, 3, 8, 8), 1., 1, 0.5)
    x, mask, coverage = s
    assert isinstance(s, Sprinkled) and mask is None and coverage.shape == (2,)

# --- bad input -------------------------------------------------------------------------------------------------

GOOD = dict(p=0.5, n=4, size=0.1)

@pytest.mark.parametrize('kw,err,match', [
    (dict(p=1.5), ValueError, r'p must be in \[0, 1\]'),
    (dict(p=-0.1), ValueError, r'p must be in \[0, 1\]'),
    (dict(p=float('nan')), ValueError, r'p must be in'),
    (dict(p='0.5'), ValueError, r'p must be in'),
    (dict(n=-1), ValueError, r'n must be >= 0'),
    (dict(n=(5, 2)), ValueError, r'n=\(5, 2\) is inverted'),
    (dict(n=2.5), TypeError, r'n must be an int'),
    (dict(n=(1, 2, 3)), TypeError, r'n must be an int or a \(lo, hi\) pair'),
    (dict(size=0), ValueError, r'size must be > 0'),
    (dict(size=-0.2), ValueError, r'size must be > 0'),
    (dict(size=(0.3, 0.1)), ValueError, r'size=\(0.3, 0.1\) is inverted'),
    (dict(size=(-0.1, 0.2)), ValueError, r'size must be > 0'),
    (dict(size=float('inf')), ValueError, r'size must be > 0 and finite'),
    (dict(fill='grey'), ValueError, r"fill must be one of \('zero', 'mean', 'noise'\)"),
    (dict(fill='mean'), ValueError, r"fill='mean' .* needs mean and std"),
    (dict(fill=[0.1, 0.2]), ValueError, r'fill has 2 values but x has C=3'),
    (dict(opacity=0), ValueError, r'opacity must be in \(0, 1\]'),
    (dict(opacity=1.01), ValueError, r'opacity must be in \(0, 1\]'),
    (dict(mean=[0.5]*3), ValueError, r'mean and std must be given together'),
    (dict(mean=[0.5]*4, std=[0.2]*4), ValueError, r'mean has 4 values but x has C=3'),
    (dict(mean=[0.5]*3, std=[0.2]*2), ValueError, r'mean has 3 values but std has 2'),
    (dict(mean=[0.5]*3, std=[0.2, 0., 0.2]), ValueError, r'std must be > 0'),
    (dict(x=torch.zeros(3, 8, 8)), TypeError, r'x must be a 4-D floating point tensor .* 3-D .* \(3, 8, 8\)'),
    (dict(x=torch.zeros(1, 3, 8, 8, dtype=torch.uint8)), TypeError, r'x must be .*floating.* torch.uint8'),
    (dict(x=[[1.]]), TypeError, r'x must be a 4-D floating point tensor .* got list'),
])
def test_bad_input_names_the_parameter(kw, err, match):
    kw = {**GOOD, 'x': torch.zeros(2, 3, 8, 8), **kw}
    with pytest.raises(err, match=match): sprinkle(**kw)
    if 'x' not in kw or isinstance(kw['x'], torch.Tensor) and kw['x'].ndim == 4 and kw['x'].is_floating_point():
        with pytest.raises(err, match=match): check_sprinkle_args(**kw)

def test_checks_without_a_batch_at_construction_time():
    check_sprinkle_args(p=0.3, n=(0, 16), size=(0.02, 0.2), fill='noise', opacity=0.5)
    with pytest.raises(ValueError, match='opacity'): check_sprinkle_args(p=0.3, n=2, size=0.1, opacity=-1)
    assert as_range([2, 3], 'n', integer=True) == (2, 3)

def test_paint_rejects_a_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r'mask must have shape \(B, 1, H, W\)'):
        paint(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8, dtype=torch.bool))

# --- invariants other libraries test for their erasing and CutMix ----------------------------------------------------

@pytest.mark.parametrize('fill', ['zero', 'mean', 'noise', 0.5])
def test_empty_batch(fill):
    x = torch.zeros(0, 3, 8, 8)
    s = sprinkle(x, 1., 3, .2, fill, mean=IMAGENET[0], std=IMAGENET[1], return_mask=True, generator=gen())
    assert s.x.shape == (0, 3, 8, 8) and s.mask.shape == (0, 1, 8, 8) and s.coverage.shape == (0,)

@pytest.mark.parametrize('kw', [dict(fill='noise', opacity=.5, n=4), dict(fill='noise', n=70),
                                dict(fill='noise', opacity=.5, n=70), dict(fill='noise', n=4),
                                dict(fill='zero', opacity=.5, n=70)])
def test_backpropagates_through_the_holes(kw):
    "The gradient of the sum of a sprinkled batch is 1 outside the holes and 1 - opacity inside"
    x = torch.randn(3, 3, 20, 20, requires_grad=True)
    op = kw.pop('opacity', 1.)
    s = sprinkle(x, 1., size=.1, opacity=op, return_mask=True, generator=gen(), **kw)
    s.x.sum().backward()
    want = torch.where(s.mask.expand_as(x), torch.tensor(1 - op), torch.tensor(1.))
    assert torch.allclose(x.grad, want)
