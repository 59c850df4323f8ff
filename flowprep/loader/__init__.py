"""Training-time reading of a store: snippet sampling, flow stacking, augmentation.

    from flowprep.loader import TwoStreamDataset
    ds = TwoStreamDataset("out/", modality="flow", length=10, num_segments=3,
                          mode="train", crop_size=224, seed=0)
    sample = ds[0]        # dict of numpy arrays + label + video_id + indices used

A plain map-style dataset (``__len__``, ``__getitem__``) that returns numpy
arrays, so ``torch.utils.data.DataLoader`` batches it; this package does not
import torch. docs/loader.md is the user guide; the conventions are fixed here.

Parts (each a small module; the dataset composes them)
    sampling  snippet starts, windows, padding, the test protocol (pure functions)
    views     crop boxes and flips: train crops, centre crop, ten-crop (pure functions)
    stacking  stored payloads -> arrays: plain, trajectory and clip flow stacks, RGB
              frames and clips, RGB differences (functions of what was read)
    source    FlowSource, the one place flow payloads, means and ranges are read
    dataset   TwoStreamDataset: options, store checks, per-worker video cache, seeding
    streaming StreamingTwoStreamDataset: an iterable over the store's shards read in
              sequence, split across ranks and workers, each video once an epoch, its
              sample TwoStreamDataset's (streaming.py states the rules)

Snippets and indices (N = num_flows, F = num_frames, s = the store's step, L = length)
    Flow i is the displacement from frame i to frame i+s (pixels of the stored
    frames). A snippet starts at frame tau. Its flow stack holds the flows
    tau, tau+s, ..., tau+(L-1)s, which chain end to end (frame tau -> tau+s ->
    ... -> tau+L*s); RGB is frame tau, so RGB and flow of a two-stream sample
    start at the same frame. Bidirectional stacks (``bidirectional=True``)
    hold L/2 forward flows tau, tau+s, ..., tau+(L/2-1)s (frames tau ->
    tau+(L/2)s) then L/2 backward flows tau-s, tau-2s, ..., tau-(L/2)s, each
    the stored backward flow i (frame i+s -> i), ordered outward from tau so
    they chain from frame tau back to frame tau-(L/2)s (the paper's "L/2
    forward flows between frames tau and tau+L/2 and L/2 backward flows
    between frames tau-L/2 and tau"). RGB-difference stacks use the L
    consecutive frames tau..tau+L-1 (frame stride 1, whatever the step) and
    hold their L-1 differences, frame tau+j+1 minus frame tau+j (TSN).

    tau ranges over the starts whose whole window exists: [0, N-(L-1)s)
    for flow, [(L/2)s, N-(L/2-1)s) bidirectional, [0, F) for RGB, [0, F-L+1)
    for RGB differences. The range is cut into K = num_segments equal
    segments (TSN): mode="train" draws one start uniformly inside each
    segment (K=1 is Simonyan & Zisserman's single random snippet); "val" takes
    each segment's centre; "test" takes ``test_snippets`` (25) evenly spaced
    centres (the papers' protocol). With fewer valid starts than segments,
    segments share starts.

Padding (videos shorter than one window)
    When a video has fewer flows (frames) than a window needs, tau is the
    first start (centred for bidirectional stacks) and out-of-range indices
    are mapped by ``pad``: "repeat_last" (default, TSN) clamps them into
    [0, N-1], so the stack repeats the last (first) flow; "loop" wraps them
    modulo N. No index error is ever raised for a short video.

Seeding (deterministic, worker-independent)
    Every random draw of sample ``index`` in epoch ``epoch`` comes from
    ``np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))``,
    drawn in a fixed order (segment offsets, crop, flip). A sample therefore
    depends only on (seed, epoch, index): not on the worker that loads it, on
    num_workers, on the start method or on what was loaded before; no numpy
    global state is used, so forked workers cannot repeat each other. The
    seed is fixed at construction (``seed=None`` draws one from the OS once)
    and travels with the dataset to the workers. ``set_epoch(e)`` selects the
    epoch; with ``persistent_workers=True`` the workers keep the epoch they
    were started with, so index with ``(index, epoch)`` pairs from the
    sampler instead (``ds[(i, e)]`` is accepted).

Values
    dtype="float32": flow in pixels of the output image (dequantized by the
    store's record; with ``mean_subtract=True`` the stored per-flow mean
    vector of flow i is subtracted from flow i's (dx, dy) -- the paper's
    zero-centering; mean_flow_backward for backward flows); RGB in [0, 1], or
    (x/255 - mean)/std when ``rgb_mean``/``rgb_std`` are given; RGB
    differences are differences of those values.
    dtype="uint8": flow and RGB exactly as stored (flip applied: 255-q on
    dx); RGB differences are int16. The sample then carries what is needed
    to finish on the GPU: ``flow_mean``, ``flow_scale`` and ``flow_bound``
    (fixed quantization) or ``flow_ranges`` (adaptive).

Crops and flips (the same box and flip for every segment, and for RGB and
flow of a two-stream sample)
    train: crop="multiscale" (default; TSN: a corner/centre/fixed-grid crop
    whose sides are picked from (1, .875, .75, .66) x the short side, aspect
    jittered by at most one scale step, resized to crop_size); "random" (the
    paper: a crop_size square anywhere in the frame); "center". Then a
    horizontal flip with probability 1/2 (``flip=True``).
    val: centre crop. test: centre crop (test_crops=1) or ten crops
    (test_crops=10): views 0-4 = centre, top-left, top-right, bottom-left,
    bottom-right; views 5-9 the same boxes flipped. Arrays hold V views x K
    snippets on axis 0, view-major: row v*K + k.
    A crop of w x h stored pixels resized to crop_size scales displacements:
    float output multiplies dx by sx = crop_size/w and dy by sy = crop_size/h
    (``flow_scale`` = (sx, sy)); uint8 output leaves the values alone (TSN's
    behaviour): multiply by flow_scale after dequantizing. The resize itself
    is bilinear on the stored uint8 planes (as TSN resizes its images; the
    rounding adds at most about one quantization step, 2B/255 px), followed
    by dequantization; a crop that needs no resize is exact. Crops larger
    than the frame are clipped to it.
    A flip mirrors the output and negates dx of every flow: -d exactly in
    float (the subtracted dx mean is negated with it), 255-q in uint8 (exact
    for fixed quantization; adaptive (lo, hi) becomes (-hi, -lo) in
    ``flow_ranges``). Trajectory stacks are computed unflipped and mirrored.

Decoding
    Flow planes and RGB frames are decoded only inside the union of the
    sample's crop boxes, by codec.decode_grey_crop / decode_rgb_crop
    (libjpeg-turbo partial decompression through flowprep._jpegcrop when
    built; else a whole cv2.imdecode and a copy): the same pixels either way.
    Trajectory stacks (which follow points anywhere in the frame) decode
    whole planes. docs/loader.md has the figures.

Layouts (layout="stack" | "clip")
    "stack" (default; 2D CNNs, TSN): flow (V*K, 2L, S, S) in the paper's channel
    order (dx_tau, dy_tau, dx_tau+s, ...), RGB (V*K, 3, S, S) of frame tau.
    "clip" (3D CNNs, I3D): flow (V*K, 2, L, S, S) and RGB (V*K, 3, L, S, S): axis 1
    the channel (dx, dy / R, G, B), axis 2 time. The flow clip holds exactly the
    stack's values: clip[r, c, j] == stack[r, 2j + c] (same sampling, crops, flips,
    scaling, trajectory stacking), bit for bit. RGB clips hold L frames
    tau + j*f (f = frame_interval, default 1; ``length`` applies to RGB in this
    layout and defaults to 16 for every modality), through the same crop and flip
    for every frame; a two-stream clip's RGB and flow share tau. With
    frame_interval f the flow clip holds flows tau + j*f*s (mmaction2's
    SampleFrames stride); tau then ranges over [0, N-(L-1)f s) (flow) or
    [0, F-(L-1)f) (RGB). Refused: rgbdiff clips (take differences of an RGB clip
    along axis 2), bidirectional clips, frame_interval != 1 with stacks. Short
    videos are padded as for stacks (padding cannot be turned off).

Flow scale (flow_scale="pixels" | "unit")
    "pixels" (default): the values above. "unit" (I3D: flow clipped at +-B and
    divided by B): (2q - 255)/255 = d/B, in stored pixels over the fixed bound B,
    computed so that it is exactly within [-1, 1] (q = 0 -> -1, q = 255 -> 1) and
    a flip negates it exactly; the crop's resize scale is *not* applied (as I3D,
    which crops without resizing, and as uint8 output; ``flow_scale`` in the sample
    still gives (sx, sy)). mean_subtract gives (d - m)/B (no longer bounded by 1).
    Refused for adaptive quantization (no common bound) and for dtype uint8.
    Trajectory stacks in unit scale are clamped to [-1, 1] (bilinear sampling
    stays within the bound up to float rounding). RGB in [-1, 1]:
    rgb_mean = rgb_std = (0.5, 0.5, 0.5).

Stores extracted with --task rgb or --task flow (store.config["task"]) serve only
their modality: asking for the other is a ConfigError at construction.

modality="warped-flow" (stores made with --warped, store.config["warped"]) gives the
samples of "flow" with TSN's warped flow planes (camera homography removed) under the
same "flow" key, mean vectors from video.mean_flow_warped[_backward]: every flow option
applies (clip layout, unit scale, mean_subtract, bidirectional with --warped --backward)
except stacking="trajectory" (a warped flow's displacement is in its own warped frame's
coordinates, so trajectories cannot be chained across flows), refused at construction.

Trajectory stacking (stacking="trajectory", Simonyan & Zisserman eq. 2)
    Channel pair k of the output pixel p holds flow tau+k*s sampled at p_k,
    with p_1 = p and p_{k+1} = p_k + d_{tau+(k-1)s}(p_k): bilinear sampling
    (cv2.remap; positions in 1/32 pixel, clamped to the frame border) of the
    whole frame's stored planes, dequantized at the points (the same as
    sampling the dequantized flow: bilinear weights sum to one). Points follow
    the raw flow; the mean is subtracted from the sampled values. The
    backward half of a bidirectional stack starts again at p and follows the
    backward flows. uint8 output samples the stored planes the same way.
"""
from __future__ import annotations

from .dataset import (CLIP_LENGTH, CROPS, DEFAULT_LENGTH, DTYPES, FLOW_SCALES, LAYOUTS,
                      MODALITIES, MODES, PADS, STACKINGS, TwoStreamDataset)
from .sampling import (flow_window, frame_window, pad_indices, segment_offsets, snippet_starts,
                       valid_starts)
from .source import FlowSource
from .streaming import StreamingTwoStreamDataset
from .stacking import (clip_to_stack, decode_grey, plain_flow_stack, stack_to_clip,
                       trajectory_flow_stack)
from .views import (TSN_SCALES, fixed_offsets, multiscale_boxes, multiscale_candidates,
                    sample_views, ten_crop_boxes, union_box)

__all__ = ["TwoStreamDataset", "StreamingTwoStreamDataset", "segment_offsets", "flow_window", "pad_indices",
           "multiscale_boxes", "fixed_offsets", "union_box", "decode_grey",
           "snippet_starts", "valid_starts", "frame_window", "multiscale_candidates",
           "sample_views", "ten_crop_boxes", "stack_to_clip", "clip_to_stack",
           "plain_flow_stack", "trajectory_flow_stack", "FlowSource", "TSN_SCALES",
           "MODALITIES", "MODES", "CROPS", "STACKINGS", "LAYOUTS", "FLOW_SCALES", "PADS",
           "DTYPES", "DEFAULT_LENGTH", "CLIP_LENGTH"]
