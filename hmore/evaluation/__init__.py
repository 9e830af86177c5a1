"""``hmore eval`` (the package behind it): H-MoRe beside classical optical flow, on synthetic pairs with exact
ground truth and on real clips annotated with ``hmore annotate``.

Synthetic (:func:`.runners.evaluate_synthetic`): the test split of :class:`hmore.data.synthetic.SyntheticPairs` (seeds
disjoint from training), rendered with :class:`~hmore.data.synthetic.SyntheticConfig`'s defaults at the
requested size: one subject doing any of walk/run/wave/jump/turn (limbs crossing in front of each other, so
self-occlusion), a camera pan (up to 2 px/frame at 256 px) with a zoom (up to 1 %/frame), and 1-3 swaying
background distractors. Ground-truth world flow is the body's image motion (camera included) and 0 off the
body; local flow is the world flow minus the subject's motion ``v_s``, 0 off the body.

Definitions (also written into the JSON under ``"definitions"``, :data:`DEFINITIONS`):

* **body pixels**: ``flow_valid`` = the subject mask of frame t (every body pixel has exact flow).
* **world EPE**: mean ``|w_pred - w_gt|`` over the body pixels of the whole split (pooled: every body pixel
  weighs the same, as Sintel's EPE does).
* **local EPE**: the same for local flow. H-MoRe: its ``local_flow`` output. Classical methods estimate no
  subject motion and no mask, so their local flow is their flow minus its per-channel median over the whole
  frame (a global-motion compensation: the median is the dominant, camera-like motion) [ours]; zero flow's
  local flow is 0.
* **px1 / px3**: share of body pixels whose world-flow end-point error is below 1 px / 3 px.
* **background leakage**: mean ``|w_pred|`` over the pixels outside the body mask dilated by
  :data:`LEAKAGE_DILATION` px (3x3 square element applied that many times), pooled over the split. The true
  world flow is 0 there; classical methods report the camera and distractor motion, which is what H-MoRe's
  world flow is meant to suppress.
* **boundary F-score**: predicted edges = pixels where the world flow's gradient magnitude
  (``hmore_kernels.flow_edges(flow, normalize=False)``: Sobel divided by 8 over both channels, so a flow
  ramp of slope s px/px gives s and a step of d px gives d/2 on the two pixels beside it) exceeds
  :data:`EDGE_THRESHOLD` px/px; true boundary = ``hmore_kernels.mask_boundary(mask0)`` (inner, 1 px).
  Precision = share of predicted edge pixels within :data:`BOUNDARY_TOLERANCE` px (Euclidean, via
  ``hmore_kernels.distance_transform``) of a true boundary pixel; recall = share of true boundary pixels
  within that distance of a predicted edge pixel; the counts are summed over the split, then
  ``F = 2PR / (P + R)`` (0 when P + R = 0).
* **pairs/s**: pairs divided by the wall time of the method's flow computation alone (not the rendering or
  the metrics), after one untimed warm-up call on the first batch.

Real (:func:`.runners.evaluate_real`), per clip and pooled over clips:

* **skeleton satisfaction**: H-MoRe's skeleton constraint as the training loss defines it
  (:func:`hmore.losses.skeleton_targets` + ``hmore_kernels.skeleton_offset_map``: every mask pixel matched to
  its confidence-weighted nearest skeleton point, offset ``k`` = that point's motion); among matched pixels
  with ``|k| >= 0.5`` px, the share whose flow ``u`` is within 15 degrees of ``k`` and has
  ``0.8 |k| <= |u| <= 1.2 |k|``.
* **flow on person**: ``sum |u|`` over the mask of frame t divided by ``sum |u|`` over the frame (pooled).

Classical methods run on grayscale uint8 frames (BT.601 luma of the RGB frames, OpenCV's ``cvtColor``):
OpenCV's DIS at its ultrafast / fast / medium presets and Farnebäck with :data:`FARNEBACK_PARAMS` (the
parameters of OpenCV's own Farnebäck sample and tutorial).

Layout: :mod:`.metrics` (the metric functions, their constants and :data:`~.metrics.DEFINITIONS`),
:mod:`.runners` (the methods, the model loader, the evaluation of each split and :func:`~.runners.run_eval`,
the function ``hmore eval`` calls; its parser is in :mod:`hmore.cli`), :mod:`.report` (the text table and the
JSON / CSV / PNG files). :mod:`hmore.evaluate` re-exports the public names.
"""
