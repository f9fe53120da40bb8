"""Stage: distillation training. Instances + teacher cache -> a trained checkpoint.

The loss is the authors' (PicoSAM3 ``model_compression/utils.py``), in these exact terms,
with ``s(x) = sigmoid(5·x)`` (their "steeper sigmoid") applied to student and teacher logits:

    teacher term  T = mean((s(student) − s(teacher))²) + dice(s(student), s(teacher))
    truth term    G = BCE(s(student), gt) + dice(s(student), gt)
    area term     A = mean(relu(0.4 − Σ s(student) / Σ gt))   (only where gt is known)
    α             = mean over the batch of clamp(teacher score, 0, 1)
    loss          = α·T + (1 − α)·G + area_weight·A            (area_weight 0.4 as theirs)

``dice(p, q) = 1 − mean_batch((2·Σ p·q + 1e-6) / (Σ p + Σ q + 1e-6))``. Modes: ``hybrid``
(the above), ``supervised`` (α = 0, no teacher needed) and ``teacher`` (α = 1, no ground
truth needed, no area term). Optimiser: AdamW, learning rate 3e-4 with a linear warm-up,
weight decay 0.01 (PyTorch's AdamW default, which the authors used).

Training state (model, optimiser, step) is saved every ``checkpoint_every`` steps under
``OUT/train_state``; a rerun with the same settings resumes where it stopped, and the data
order is a function of (seed, step), so a resumed run sees the same examples.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import numpy as np
import tensorflow as tf

from ..errors import PicosamError
from ..geometry import check_rule

MODES = ("hybrid", "supervised", "teacher")
LR_DECAYS = ("none", "linear")
PRECISIONS = ("float32", "mixed_bfloat16")
SHARPNESS = 5.0
MIN_AREA_RATIO = 0.4


@dataclass
class TrainConfig:
    architecture: str = "picosam3"
    mode: str = "hybrid"
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 3e-4
    warmup_steps: int = 1000
    lr_decay: str = "none"  # none (the authors': constant after warm-up) | linear (to 0 at `steps`)
    weight_decay: float = 0.01
    area_weight: float = 0.4
    box_jitter: float = 0.1
    horizontal_flip: bool = True
    colour: float = 0.2
    copy_paste: float = 0.0  # probability per example of pasting another photo's object over the crop
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off); the EMA is what is saved
    precision: str = "float32"  # float32 | mixed_bfloat16 (the CPU's AVX-512 BF16; weights stay float32)
    seed: int = 0
    checkpoint_every: int = 200
    # The ROI rule of the checkpoint this run writes (geometry.ROI_RULES): crops, copy-paste
    # donors and teacher targets are all cut with it. ``warp`` beats ``square`` (docs/results.md).
    roi_rule: str = "warp"
    teacher_weight: float = 1.0  # scales alpha, the teacher's share of the hybrid loss
    distribute: str = "none"  # none | mirrored | multi-worker

    def check(self) -> None:
        if self.mode not in MODES:
            raise PicosamError(f"training mode '{self.mode}' is not one of {MODES}")
        if self.steps < 1 or self.batch_size < 1:
            raise PicosamError("steps and batch size must be positive")
        if self.lr_decay not in LR_DECAYS:
            raise PicosamError(f"learning-rate decay '{self.lr_decay}' is not one of {LR_DECAYS}")
        if not 0.0 <= self.copy_paste <= 1.0:
            raise PicosamError(f"copy-paste probability {self.copy_paste} is not in [0, 1]")
        if not 0.0 <= self.ema < 1.0:
            raise PicosamError(f"EMA decay {self.ema} is not in [0, 1)")
        if self.precision not in PRECISIONS:
            raise PicosamError(f"precision '{self.precision}' is not one of {PRECISIONS}")
        check_rule(self.roi_rule)
        if not 0.0 <= self.teacher_weight <= 1.0:
            raise PicosamError(f"teacher weight {self.teacher_weight} is not in [0, 1]")


@dataclass(frozen=True)
class Source:
    """One training source and its share of the examples.

    ``weight`` is the probability (after normalising over the sources) that an example is
    drawn from this source, whatever its size: a mixture of 2,700 human COCO masks and
    1,700 teacher proposals on other photos is then a stated choice, not an accident of
    the two files' lengths."""

    instances: Any  # data.InstanceSet
    weight: float = 1.0
    teacher_cache: Any = None  # teacher_cache.TeacherCache, needed unless the mode is supervised


@dataclass
class TrainResult:
    checkpoint_path: Path
    steps: int
    resumed_from: int
    crops_per_second: float
    final_loss: float
    log_path: Path
    details: Dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------- loss


def sharpen(logits):
    return tf.sigmoid(SHARPNESS * logits)


def _dice(p, q):
    intersection = tf.reduce_sum(p * q, axis=[1, 2, 3])
    union = tf.reduce_sum(p, axis=[1, 2, 3]) + tf.reduce_sum(q, axis=[1, 2, 3])
    return 1.0 - tf.reduce_mean((2.0 * intersection + 1e-6) / (union + 1e-6))


def distillation_loss(student_logits, gt_mask, teacher_logits, teacher_score, mode: str, area_weight: float,
                      teacher_weight: float = 1.0):
    """The loss above; returns (loss, alpha). Tensors are (B, 96, 96, 1) and (B,).
    ``teacher_weight`` scales the hybrid loss's alpha (1: the authors' loss)."""
    pred = sharpen(student_logits)
    terms = {}
    if mode in ("hybrid", "teacher"):
        soft = sharpen(teacher_logits)
        terms["teacher"] = tf.reduce_mean(tf.square(pred - soft)) + _dice(pred, soft)
    if mode in ("hybrid", "supervised"):
        eps = 1e-7
        clipped = tf.clip_by_value(pred, eps, 1.0 - eps)
        bce = -tf.reduce_mean(gt_mask * tf.math.log(clipped) + (1.0 - gt_mask) * tf.math.log(1.0 - clipped))
        terms["truth"] = bce + _dice(pred, gt_mask)
        ratio = tf.reduce_sum(pred, axis=[1, 2]) / (tf.reduce_sum(gt_mask, axis=[1, 2]) + 1e-6)
        terms["area"] = tf.reduce_mean(tf.nn.relu(MIN_AREA_RATIO - ratio))
    if mode == "hybrid":
        alpha = teacher_weight * tf.reduce_mean(tf.clip_by_value(teacher_score, 0.0, 1.0))
    else:
        alpha = tf.constant(1.0 if mode == "teacher" else 0.0)
    loss = alpha * terms.get("teacher", 0.0) + (1.0 - alpha) * terms.get("truth", 0.0)
    if "area" in terms:
        loss = loss + area_weight * terms["area"]
    return loss, alpha


# ----------------------------------------------------------------------- data


def example_stream(sources, config: TrainConfig, start_position: int) -> Iterator[Dict[str, Any]]:
    """Endless examples in a seeded order that depends only on (seed, position): resumable.

    With one source, epochs are seeded permutations of its instances (each seen once per
    epoch). With several, example ``p`` comes from source ``k`` drawn with the stated
    weights by a generator seeded with (seed, p), and within a source the instances follow
    that source's own seeded permutations indexed by ``p``: any position can be recomputed
    without replaying the ones before it, so a resumed run sees what an uninterrupted one
    would have seen.
    """
    from .data import Augmentation, iterate_crops
    from ..images import ImageCache

    augmentation = Augmentation(config.box_jitter, config.horizontal_flip, config.colour, config.copy_paste)
    # Every photo of a subset-sized set stays decoded for the whole run (a 640 px JPEG is
    # about 0.9 MB decoded; 1,024 of them fit in 1 GB): each is decoded once per run.
    images = ImageCache(capacity=1024)
    caches = [source.teacher_cache if config.mode != "supervised" else None for source in sources]
    if len(sources) == 1:
        instances, count = sources[0].instances, len(sources[0].instances.instances)
        epoch, offset = divmod(start_position, count)
        while True:
            order = np.random.default_rng([config.seed, epoch]).permutation(count)
            # Seeded by the example's place in its epoch, not in the tail after a resume.
            yield from iterate_crops(instances, order[offset:], augmentation, seed=config.seed * 1_000_003 + epoch,
                                     teacher_cache=caches[0], images=images, first_position=offset,
                                     rule=config.roi_rule)
            epoch, offset = epoch + 1, 0
    weights = np.asarray([source.weight for source in sources], dtype=np.float64)
    weights = weights / weights.sum()
    counts = [len(source.instances.instances) for source in sources]
    orders: Dict[Any, np.ndarray] = {}
    position = start_position
    while True:
        k = int(np.random.default_rng([config.seed, 7, position]).choice(len(sources), p=weights))
        epoch, offset = divmod(position, counts[k])
        if (k, epoch) not in orders:
            orders = {key: v for key, v in orders.items() if key[0] != k}  # keep one epoch per source
            orders[(k, epoch)] = np.random.default_rng([config.seed, k, epoch]).permutation(counts[k])
        index = int(orders[(k, epoch)][offset])
        example = next(iterate_crops(sources[k].instances, [index], augmentation,
                                     seed=config.seed * 1_000_003 + position, teacher_cache=caches[k], images=images,
                                     rule=config.roi_rule))
        example["source"] = k
        yield example
        position += 1


def batches(stream: Iterator[Dict[str, Any]], batch_size: int) -> Iterator[Dict[str, np.ndarray]]:
    from ..geometry import to_model_range

    while True:
        items = [next(stream) for _ in range(batch_size)]
        batch = {
            "image": to_model_range(np.stack([it["image"] for it in items])),
            "mask": np.stack([it["mask"] for it in items]).astype(np.float32)[..., None],
        }
        if "teacher_logits" in items[0]:
            batch["teacher_logits"] = np.stack([it["teacher_logits"] for it in items]).astype(np.float32)[..., None]
            batch["teacher_score"] = np.asarray([it["teacher_score"] for it in items], dtype=np.float32)
        else:
            batch["teacher_logits"] = np.zeros_like(batch["mask"])
            batch["teacher_score"] = np.zeros(batch_size, dtype=np.float32)
        yield batch


# ----------------------------------------------------------------------- loop


def _strategy(name: str):
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        # Each worker reads TF_CONFIG (cluster + task); see docs/training.md.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise PicosamError(f"--distribute '{name}' is not none, mirrored or multi-worker")


def train(instances, out_dir: Path, config: TrainConfig, teacher_cache=None, init_checkpoint: Optional[Path] = None,
          name: str = "picosam", provenance_details: Optional[Dict[str, Any]] = None, progress: bool = True) -> TrainResult:
    """Train and write ``out_dir/NAME.weights.h5`` (+ sidecar, provenance ``trained``).

    ``instances`` is one :class:`~.data.InstanceSet` (with ``teacher_cache``) or a list of
    :class:`Source` (each with its own weight and cache). The sidecar records, per source,
    the annotation file's sha256 and the image ids used, so the run can be reproduced.

    The run holds ``out_dir``'s lock (:mod:`..lock`): a second run on the same folder stops
    in one line (each worker of a multi-worker run takes its own)."""
    from ..lock import LOCK_NAME, FolderLock

    config.check()
    lock_name = LOCK_NAME
    if config.distribute == "multi-worker":
        try:
            index = int(json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {}).get("index", 0))
        except (ValueError, TypeError, AttributeError):
            index = 0  # TensorFlow itself reports a malformed TF_CONFIG
        lock_name = f".picosam-worker-{index}.lock"
    with FolderLock(out_dir, "picosam train", name=lock_name):
        return _locked_train(instances, out_dir, config, teacher_cache, init_checkpoint, name, provenance_details,
                             progress)


def _locked_train(instances, out_dir: Path, config: TrainConfig, teacher_cache, init_checkpoint: Optional[Path],
                  name: str, provenance_details: Optional[Dict[str, Any]], progress: bool) -> TrainResult:
    from ..atomic import write_json

    config.check()
    sources = list(instances) if isinstance(instances, (list, tuple)) else [Source(instances, 1.0, teacher_cache)]
    if not sources or any(source.weight <= 0 for source in sources):
        raise PicosamError("every training source needs a positive weight")
    if config.mode != "supervised" and any(source.teacher_cache is None for source in sources):
        raise PicosamError(f"training mode '{config.mode}' needs a teacher cache (--teacher-cache) for every source")
    out_dir = Path(out_dir)
    state_dir = out_dir / "train_state"
    state_dir.mkdir(parents=True, exist_ok=True)
    config_path = state_dir / "config.json"
    # A run may be resumed with more steps or another checkpoint interval, nothing else.
    recorded = {"config": {k: v for k, v in asdict(config).items() if k not in ("steps", "checkpoint_every")},
                "annotations": str(sources[0].instances.annotations_path), "instances": len(sources[0].instances.instances)}
    if len(sources) > 1:
        recorded["annotations"] = [str(source.instances.annotations_path) for source in sources]
        recorded["instances"] = [len(source.instances.instances) for source in sources]
        recorded["weights"] = [source.weight for source in sources]
    if config_path.is_file():
        previous = json.loads(config_path.read_text())
        # Settings added after a run started count as unchanged while they keep their default.
        defaults = asdict(TrainConfig())
        for key, value in recorded["config"].items():
            if key not in previous.get("config", {}) and value == defaults.get(key):
                previous.setdefault("config", {})[key] = value
        if previous != recorded:
            changed = sorted(k for k in recorded["config"] if previous.get("config", {}).get(k) != recorded["config"][k])
            what = ", ".join(changed) or "the data"
            raise PicosamError(f"{state_dir}: holds a run with other settings ({what}); use another --out or delete it")
    else:
        write_json(config_path, recorded)

    tf.keras.utils.set_random_seed(config.seed)
    strategy = _strategy(config.distribute)
    # Mixed bfloat16 computes in bf16 on AVX-512 BF16 while the weights (and so the saved
    # checkpoint) stay float32; the global policy is restored when the run ends.
    previous_policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(config.precision)
    try:
        return _train(sources, out_dir, state_dir, config, strategy, init_checkpoint, name, provenance_details, progress)
    finally:
        tf.keras.mixed_precision.set_global_policy(previous_policy)


def _train(sources, out_dir: Path, state_dir: Path, config: TrainConfig, strategy, init_checkpoint, name: str,
           provenance_details, progress: bool) -> TrainResult:
    from tqdm import tqdm

    from ..model.checkpoint import Provenance, load_model, save_checkpoint
    from ..hashing import sha256_of
    from ..model.network import build_model
    from ..model.resolve import resolve_checkpoint

    initialised_from = None
    with strategy.scope():
        if init_checkpoint is not None:
            start = resolve_checkpoint(Path(init_checkpoint))  # the front door: .weights.h5, a folder or a .pt
            model = load_model(start)
            # The start's own provenance is kept whole, so a chain of runs stays traceable.
            initialised_from = {"weights": start.weights_path.name, "sha256": start.weights_sha256,
                                "provenance": asdict(start.provenance)}
        else:
            model = build_model(config.architecture)
        schedule = LearningRateSchedule(config.learning_rate, config.warmup_steps,
                                        config.steps if config.lr_decay == "linear" else None)
        optimizer = tf.keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # The weight average (Polyak / EMA): a shadow of every trainable weight.
        ema_weights = [tf.Variable(v, trainable=False, name=f"ema_{i}") for i, v in enumerate(model.trainable_variables)] \
            if config.ema > 0 else []
    extra = {"ema_weights": ema_weights} if ema_weights else {}
    state = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var, **extra)
    manager = tf.train.CheckpointManager(state, str(state_dir), max_to_keep=2)
    if manager.latest_checkpoint:
        state.restore(manager.latest_checkpoint).expect_partial()
    resumed_from = int(step_var.numpy())

    replicas = strategy.num_replicas_in_sync

    def replica_step(batch):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(batch["image"], training=True), tf.float32)
            loss, alpha = distillation_loss(logits, batch["mask"], batch["teacher_logits"], batch["teacher_score"],
                                            config.mode, config.area_weight, config.teacher_weight)
            scaled = loss / replicas
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        if ema_weights:
            # The usual warm-up of the decay, so the average is not dominated by the start.
            step = tf.cast(step_var, tf.float32)
            decay = tf.minimum(config.ema, (1.0 + step) / (10.0 + step))
            for shadow, weight in zip(ema_weights, model.trainable_variables):
                shadow.assign(decay * shadow + (1.0 - decay) * weight)
        predicted = tf.cast(logits > 0, tf.float32)
        intersection = tf.reduce_sum(predicted * batch["mask"], axis=[1, 2, 3])
        union = tf.reduce_sum(tf.maximum(predicted, batch["mask"]), axis=[1, 2, 3])
        iou = tf.reduce_mean(tf.where(union > 0, intersection / tf.maximum(union, 1.0), 1.0))
        return loss, alpha, iou

    @tf.function
    def distributed_step(batch):
        loss, alpha, iou = strategy.run(replica_step, args=(batch,))
        mean = lambda v: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)  # noqa: E731
        return mean(loss), mean(alpha), mean(iou)

    stream = example_stream(sources, config, resumed_from * config.batch_size)
    signature = {
        "image": tf.TensorSpec((config.batch_size, 96, 96, 3), tf.float32),
        "mask": tf.TensorSpec((config.batch_size, 96, 96, 1), tf.float32),
        "teacher_logits": tf.TensorSpec((config.batch_size, 96, 96, 1), tf.float32),
        "teacher_score": tf.TensorSpec((config.batch_size,), tf.float32),
    }
    dataset = tf.data.Dataset.from_generator(lambda: batches(stream, config.batch_size), output_signature=signature)
    dataset = dataset.prefetch(2)
    batches_iter = iter(strategy.experimental_distribute_dataset(dataset))

    log_path = out_dir / "train_log.jsonl"
    _rewind_log(log_path, resumed_from)
    started = time.perf_counter()
    final_loss = float("nan")
    bar = tqdm(total=config.steps, initial=resumed_from, desc="train", unit="step", disable=not progress)
    with open(log_path, "a") as log:
        for step in range(resumed_from, config.steps):
            loss, alpha, iou = distributed_step(next(batches_iter))
            step_var.assign(step + 1)
            final_loss = float(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{final_loss:.3f}", alpha=f"{float(alpha):.2f}", iou=f"{float(iou):.2f}")
            if (step + 1) % 10 == 0 or step + 1 == config.steps:
                log.write(json.dumps({"step": step + 1, "loss": round(final_loss, 5), "alpha": round(float(alpha), 4),
                                      "train_iou": round(float(iou), 4), "lr": float(schedule(step)),
                                      "seconds": round(time.perf_counter() - started, 2)}) + "\n")
                log.flush()
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                manager.save(checkpoint_number=step + 1)
    bar.close()
    seconds = time.perf_counter() - started
    trained_steps = config.steps - resumed_from
    crops_per_second = trained_steps * config.batch_size / seconds if trained_steps and seconds > 0 else 0.0

    if ema_weights:
        for shadow, weight in zip(ema_weights, model.trainable_variables):
            weight.assign(shadow)
    first = sources[0].instances
    details = {
        "config": asdict(config),
        "annotations": str(first.annotations_path),
        "instances": sum(len(source.instances.instances) for source in sources),
        "images": sum(len(source.instances.image_ids()) for source in sources),
        "data": [{"annotations": str(source.instances.annotations_path),
                  "annotations_sha256": sha256_of(Path(source.instances.annotations_path)),
                  "weight": source.weight, "instances": len(source.instances.instances),
                  "image_ids": source.instances.image_ids(), "skipped": dict(source.instances.skipped)}
                 for source in sources],
        "loss": "alpha*(MSE+Dice vs teacher) + (1-alpha)*(BCE+Dice vs gt) + 0.4*area, sigmoid(5x), alpha = batch mean clamp(score)",
        "final_loss": final_loss,
        "tensorflow": tf.__version__,
    }
    if initialised_from is not None:
        details["initialised_from"] = initialised_from
    caches = [source.teacher_cache for source in sources if source.teacher_cache is not None]
    if caches and config.mode != "supervised":
        meta_path = caches[0].folder / "cache.json"
        details["teacher"] = json.loads(meta_path.read_text()).get("teacher") if meta_path.is_file() else None
    details.update(provenance_details or {})
    checkpoint = save_checkpoint(model, out_dir / f"{name}.weights.h5", Provenance(kind="trained", details=details),
                                 roi_rule=config.roi_rule)
    return TrainResult(checkpoint.weights_path, config.steps, resumed_from, crops_per_second, final_loss, log_path, details)


def _rewind_log(log_path: Path, resumed_from: int) -> None:
    """Drop the log lines of steps after ``resumed_from``: a run killed after logging a step
    but before saving its state redoes that step, and the log then holds each step once."""
    from ..atomic import atomic_path

    if not log_path.is_file():
        return
    lines = log_path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            step = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):  # a line cut short by the kill
            continue
        if step <= resumed_from:
            kept.append(line if line.endswith("\n") else line + "\n")
    if kept != lines:
        with atomic_path(log_path) as tmp:
            tmp.write_text("".join(kept))


class LearningRateSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup`` steps, then constant (as the authors), or,
    with ``decay_end``, falling linearly to 0 at that step (a fixed-length run ends annealed).
    Resuming a decaying run with more steps stretches the remaining decay."""

    def __init__(self, peak: float, warmup: int, decay_end: Optional[int] = None):
        super().__init__()
        self.peak, self.warmup, self.decay_end = peak, max(1, int(warmup)), decay_end

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = self.peak * tf.minimum(1.0, (step + 1.0) / float(self.warmup))
        if self.decay_end is not None:
            span = float(max(1, self.decay_end - self.warmup))
            rate *= tf.clip_by_value(1.0 - (step - float(self.warmup)) / span, 0.0, 1.0)
        return rate

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup, "decay_end": self.decay_end}
