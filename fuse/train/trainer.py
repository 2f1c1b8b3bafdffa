"""One training loop for every registered stage; a stage is data (``fuse.train.stages``) and what
its batches hold is its task's business (``fuse.train.tasks``).

Single process on CPU or one GPU, or many processes under ``torchrun`` (DDP). Rank 0 logs
(text, TensorBoard, tqdm) and writes checkpoints; ``latest.pth`` holds everything needed to
resume exactly (model, optimizer, scheduler, position in the epoch, RNG states). It is written
after every epoch and every ``run.checkpoint_every_steps`` steps, rotating through
``latest.prev.pth`` (``fuse.checkpoint``), so a run killed at any moment resumes with
``--resume`` and loses at most that many steps. The output folder is checked for writability and
free space before the first step, and a data file that turns out bad mid-run stops the run with
its name after saving ``latest.pth`` (single process), so nothing trained is lost.
"""
from __future__ import annotations

import errno
import logging
import math
import random
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from fuse.atomic import WriteError, check_writable, remove_stale_temps
from fuse.errors import DataFormatError
from fuse.checkpoint import CheckpointError, read_resumable, save_checkpoint
from fuse.train.config import ConfigError, TrainConfig, dump_config
from fuse.train.distributed import DistContext, ResumableSampler, cleanup, init_distributed, mean_over_ranks
from fuse.train.stages import Stage, stage_named
from fuse.weights import load_weights, read_weights
from fuse.registry import model_kind
from fuse.layers.lora import lora_layers

LOG = logging.getLogger("fuse.train")

LATEST = "latest.pth"
VALIDATION_SHOWN = ("loss", "abs_rel", "rmse", "a1")  # and the stage's select_by
# Files a run keeps in its output folder (latest.prev.pth is the rotated previous copy).
CHECKPOINTS = (LATEST, "latest.prev.pth", "best.pth", "model.pth")
RESUME_KEYS = ("model", "optimizer", "scheduler", "epoch", "step", "batch_in_epoch", "rng", "run_config")


def _rng_state() -> dict:
    """All RNG states, in plain types so the checkpoint stays loadable with ``weights_only``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _original_message(error: Exception) -> str:
    """The message of an error raised in a DataLoader worker, without the worker's traceback.

    PyTorch re-raises a worker's exception as ``Caught X in DataLoader worker process N.
    Original Traceback ...``, ending with the original ``module.X: message`` line.
    """
    text = str(error)
    if not text.startswith("Caught "):
        return text
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return text.rsplit(f"{name}: ", 1)[-1].strip()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Builds the stage's models, data and optimizer from a resolved config and runs ``fit``."""

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        self.config = config
        self.stage: Stage = stage_named(config.stage)
        self.kind: str = config.model.kind or self.stage.student
        self.inputs = model_kind(self.kind).inputs
        run = config.run
        if self.kind not in self.stage.student_kinds():
            raise ConfigError(f"config key 'model.kind' is {self.kind}, but stage {self.stage.name} trains "
                              f"{' or '.join(self.stage.student_kinds())} models")
        if run.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("config key 'run.device' is cuda, but CUDA is not available here; use auto or cpu")
        # Everything is checked before anything is created: a refused run leaves no folder behind.
        check_writable(run.output_dir, create=False)
        self._contents: dict = {}  # init files read by the check, by path (read once)
        self._check_init_files()
        device_type = "cuda" if run.device == "cuda" or (run.device == "auto" and torch.cuda.is_available()) else "cpu"
        self.ctx: DistContext = init_distributed(device_type)
        self.device = torch.device(device_type, self.ctx.local_rank) if device_type == "cuda" else torch.device("cpu")
        if device_type == "cuda":
            torch.cuda.set_device(self.device)
        self.out = Path(run.output_dir)
        _seed_everything(run.seed)
        self.student, self.teacher = self._build_models()
        self._contents.clear()  # the models hold the tensors now
        _seed_everything(run.seed + self.ctx.rank)  # dropout differs per rank, as with independent GPUs
        self.train_set, self.val_set = self._build_datasets()
        self.sampler = ResumableSampler(len(self.train_set), self.ctx, run.seed)
        self.steps_per_epoch = len(self.sampler) // config.optim.batch_size or 1
        self.total_steps = self.steps_per_epoch * config.optim.epochs
        self.optimizer, self.scheduler = self._build_optimizer()
        if self.ctx.is_main:
            self._check_free_space()
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(run.amp) if device_type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.model = self.student
        if self.ctx.enabled:
            self.model = DistributedDataParallel(self.student, device_ids=[self.device.index] if device_type == "cuda" else None,
                                                 find_unused_parameters=True)
        self.epoch, self.step, self.batch_in_epoch = 0, 0, 0
        self.best: dict = {}
        self.writer = None
        if resume:
            self._resume()
        elif self.ctx.is_main and (self.out / LATEST).is_file():
            print(f"note: {self.out} holds a checkpoint of an earlier run, which this run will replace; "
                  "stop now and pass --resume to continue that run instead", file=sys.stderr)
        if self.ctx.is_main:
            self._prepare_output_dir()
            self._start_logging()

    # ---------------------------------------------------------------- setup
    def _prepare_output_dir(self) -> None:
        """Fail now on a folder that refuses writes; drop temp files of a run killed mid-write."""
        check_writable(self.out)
        remove_stale_temps(self.out)
        dump_config(self.config, self.out / "config.yaml")

    def _check_init_files(self) -> None:
        """Each checkpoint the stage reads holds what the stage needs (``Stage.init_files``), or one
        message says what it holds and which stage makes the right one."""
        for need in self.stage.init_files:
            path = getattr(self.config.init, need.key)
            if not path:
                if need.required:
                    raise ConfigError(f"stage {self.stage.name} needs init.{need.key}: "
                                      f"{need.made_by[self.kind]}")
                continue
            self._contents[path] = read_weights(path)
            layout = self._contents[path][1]
            wanted = need.kinds[self.kind]
            head = layout.config.head if layout.config is not None else None
            if layout.kind not in wanted or (need.head is not None and head not in (None, need.head)):
                raise CheckpointError(
                    f"init.{need.key}: checkpoint {path} holds {layout.describe()}, but stage {self.stage.name} of a "
                    f"{self.kind} model needs {' or '.join(wanted)}" + (f" with a {need.head} head" if need.head else "")
                    + f": {need.made_by[self.kind]}")

    def _check_free_space(self) -> None:
        """Fail before the first step, not at a checkpoint hours later, when the checkpoints cannot fit.

        At the peak a run holds ``latest.pth``, its previous copy and the new one being written,
        plus ``best.pth`` and ``model.pth``; files already there count as space they will reuse.
        """
        model_bytes = sum(t.numel() * t.element_size() for t in self.student.state_dict().values())
        trained_bytes = sum(p.numel() * p.element_size() for p in self.student.parameters() if p.requires_grad)
        latest_bytes = model_bytes + 2 * trained_bytes  # AdamW keeps two moments per trained parameter
        needed = 3 * latest_bytes + 2 * model_bytes
        present = sum((self.out / name).stat().st_size for name in CHECKPOINTS if (self.out / name).is_file())
        existing = self.out
        while not existing.exists():
            existing = existing.parent
        free = shutil.disk_usage(existing).free
        if free + present < needed:
            raise WriteError(errno.ENOSPC, f"{self.out} has {free / 2**20:.0f} MiB free, but this run's checkpoints "
                             f"need about {(needed - present) / 2**20:.0f} MiB more (latest.pth of "
                             f"{latest_bytes / 2**20:.0f} MiB three times while rotating, best.pth and model.pth of "
                             f"{model_bytes / 2**20:.0f} MiB); free some space or choose another run.output_dir")

    def _build_models(self):
        model_cfg, init = self.config.model, self.config.init
        stage = self.stage
        student = model_kind(self.kind).build(**stage.task.student_options(self))
        self.stage.initialize(self._load, student, init)
        for name, param in student.named_parameters():
            param.requires_grad_(stage.trainable(name))
        self._merge_frozen_lora(student)
        teacher = None
        if stage.uses_teacher:
            teacher = model_kind(stage.teacher).build(encoder=model_cfg.encoder, head_size=model_cfg.head_size)
            path = getattr(init, stage.teacher_init)
            self._log_load(load_weights(teacher, path, contents=self._contents.get(path)))
            teacher.requires_grad_(False).eval().to(self.device)
        return student.to(self.device), teacher

    def _merge_frozen_lora(self, student) -> None:
        """Fold LoRA into the weights of every adapted layer that does not train (same outputs, fewer FLOPs)."""
        if not self.config.run.merge_frozen_lora:
            return
        for layer in lora_layers(student):
            if not any(p.requires_grad for p in layer.parameters()):
                layer.merge()

    def _load(self, model, path: str, into=None) -> None:
        """Load a checkpoint for the stage's ``initialize`` and log what it held (a file the init
        check read already is not read again)."""
        self._log_load(load_weights(model, path, into=into, contents=self._contents.get(path)))

    def _log_load(self, report) -> None:
        if self.ctx.is_main:
            print(report.summary(), file=sys.stderr)

    def _build_datasets(self):
        return self.stage.task.datasets(self)

    def _build_optimizer(self):
        optim = self.config.optim
        base, boosted = [], []
        for name, param in self.student.named_parameters():
            if param.requires_grad:
                (boosted if self.stage.boosted_lr(name) else base).append(param)
        groups = [{"params": p, "lr": optim.lr * mult} for p, mult in ((base, 1.0), (boosted, optim.boosted_lr_mult)) if p]
        if not groups:
            raise ConfigError(f"stage {self.stage.name} has no trainable parameters")
        optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self._lr_factor(step))

    def _lr_factor(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` over the base: ``optim.schedule``."""
        optim = self.config.optim
        if optim.schedule == "step":
            return optim.step_gamma ** (step // self.steps_per_epoch // optim.step_epochs)
        return max(0.0, 1 - step / self.total_steps) ** optim.poly_power

    def _loader(self, dataset, sampler=None, shuffle=False) -> DataLoader:
        workers = self.config.data.workers
        return DataLoader(dataset, batch_size=self.config.optim.batch_size, sampler=sampler, shuffle=shuffle,
                          num_workers=workers, pin_memory=self.device.type == "cuda", drop_last=sampler is not None,
                          persistent_workers=False,
                          # Its own generator: creating a loader must not consume the global RNG, or a
                          # resumed run would draw different dropout masks than an uninterrupted one.
                          generator=torch.Generator().manual_seed(self.config.run.seed))

    def _start_logging(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        handler = logging.FileHandler(self.out / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        LOG.handlers = [handler]
        LOG.setLevel(logging.INFO)
        LOG.propagate = False
        self.writer = SummaryWriter(str(self.out / "tb"))
        LOG.info("stage %s: %d train samples, %d steps/epoch, %d steps total, world size %d",
                 self.stage.name, len(self.train_set), self.steps_per_epoch, self.total_steps, self.ctx.world_size)

    # ---------------------------------------------------------------- checkpoints
    def _resume(self) -> None:
        if self.ctx.enabled and not self.ctx.is_main:
            torch.distributed.barrier()  # after rank 0, which may have moved an unreadable latest.pth aside
        state, path = read_resumable(self.out / LATEST)
        if self.ctx.enabled and self.ctx.is_main:
            torch.distributed.barrier()
        missing = [key for key in RESUME_KEYS if key not in state]
        if missing:
            raise CheckpointError(f"{path} cannot resume a run: it lacks {missing} (a model-only file?)")
        if state["run_config"].get("stage") != self.stage.name:
            raise CheckpointError(f"{path} belongs to stage {state['run_config'].get('stage')}, not {self.stage.name}")
        ours = self.student.config.to_dict()
        changed = {k: (v, ours.get(k)) for k, v in state.get("model_config", {}).items() if ours.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: {saved!r} in the file, {now!r} now" for k, (saved, now) in changed.items())
            raise CheckpointError(f"{path} was written for another model ({detail}); resume with the run's own "
                                  f"settings ({self.out / 'config.yaml'}) or choose another run.output_dir")
        try:
            self.student.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(f"{path} does not fit this run ({str(error).splitlines()[0][:300]}); resume with "
                                  f"the run's own settings ({self.out / 'config.yaml'})") from None
        self.epoch, self.step, self.batch_in_epoch = state["epoch"], state["step"], state["batch_in_epoch"]
        self.best = state.get("best", {})
        if self.ctx.is_main:
            self._say(f"resumed from step {self.step} (epoch {self.epoch + 1}, batch {self.batch_in_epoch}) of {path}")
            self._note_config_changes(state["run_config"])
        self._merge_frozen_lora(self.student)
        rng = state["rng"][min(self.ctx.rank, len(state["rng"]) - 1)]
        _set_rng_state(rng)

    def _note_config_changes(self, saved: dict) -> None:
        """Print the settings that differ from the interrupted run's (allowed, but the user should know)."""
        before_run = self._flat(saved)
        for key, now in self._flat(self.config.to_dict()).items():
            before = before_run.get(key)
            if before != now:
                print(f"note: {key} is {now!r} now, {before!r} in the interrupted run", file=sys.stderr)

    @staticmethod
    def _flat(config: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in config.items():
            if isinstance(value, dict):
                out |= Trainer._flat(value, f"{prefix}{key}.")
            else:
                out[prefix + key] = value
        return out

    def _say(self, message: str) -> None:
        """A line on the console (between progress bars) and in train.log."""
        tqdm.write(message, file=sys.stdout)
        sys.stdout.flush()
        LOG.info(message)

    def _gather_rng(self) -> list:
        states = [_rng_state()]
        if self.ctx.enabled:
            gathered = [None] * self.ctx.world_size
            torch.distributed.all_gather_object(gathered, states[0])
            states = gathered
        return states

    def save_latest(self) -> None:
        rng = self._gather_rng()
        if not self.ctx.is_main:
            return
        save_checkpoint(self.out / LATEST, self.student, keep_previous=True, optimizer=self.optimizer.state_dict(),
                        scheduler=self.scheduler.state_dict(), epoch=self.epoch, step=self.step,
                        batch_in_epoch=self.batch_in_epoch, run_config=self.config.to_dict(), best=self.best, rng=rng)

    # ---------------------------------------------------------------- training
    def autocast(self):
        """Mixed precision on CUDA as ``run.amp`` says (tasks wrap their forward pass in it)."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def compute_losses(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Forward the student (and teacher), return (total loss, named losses, prediction): the stage's task."""
        return self.stage.task.losses(self, batch)

    def train_step(self, batch: dict) -> dict[str, float]:
        total, named, pred = self.compute_losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        self.batch_in_epoch += 1
        self._last_pred = pred
        return {"loss": float(mean_over_ranks(total.detach(), self.ctx))} | {
            k: float(mean_over_ranks(v.detach(), self.ctx)) for k, v in named.items()}

    def fit(self) -> dict:
        """Train until the configured epochs (or ``optim.max_steps``) are done; returns the last logs."""
        history: list[dict] = []
        self.student.train()
        try:
            self._train_epochs(history)
            self.export("model.pth")
        except (DataFormatError, FileNotFoundError) as error:
            raise type(error)(self._stopped_on_data(error)) from None
        finally:
            if self.writer is not None:
                self.writer.close()
        return {"history": history, "best": self.best}

    def _train_epochs(self, history: list[dict]) -> None:
        """The epoch loop of ``fit``; appends each step's logs to ``history``."""
        optim, run = self.config.optim, self.config.run
        max_steps = optim.max_steps
        while self.epoch < optim.epochs and not (max_steps and self.step >= max_steps):
            self.train_set.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * optim.batch_size)
            loader = self._loader(self.train_set, sampler=self.sampler)
            bar = tqdm(loader, desc=f"{self.stage.name} epoch {self.epoch + 1}/{optim.epochs}",
                       initial=self.batch_in_epoch, total=self.steps_per_epoch, disable=not self.ctx.is_main,
                       dynamic_ncols=True, file=sys.stderr)
            for batch in bar:
                logs = self.train_step(batch)
                history.append(logs)
                lr = self.scheduler.get_last_lr()[0]
                if self.ctx.is_main:
                    bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{lr:.2e}")
                    if self.step % run.log_every == 0 or self.step == 1:
                        self._log_scalars("train", logs, lr)
                    if run.image_every_steps and self.step % run.image_every_steps == 0:
                        self._log_panel(batch)
                if run.checkpoint_every_steps and self.step % run.checkpoint_every_steps == 0:
                    self.save_latest()
                if max_steps and self.step >= max_steps:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
                self._end_epoch()
                continue
            self.save_latest()
            break

    def _stopped_on_data(self, error: Exception) -> str:
        """The data error's own message (not a worker's traceback), after saving what was trained.

        The failing batch was never used, so the saved state is the exact state after the last step.
        """
        message = _original_message(error)
        if self.ctx.enabled:  # other ranks may be inside a collective: a checkpoint cannot be gathered
            return f"{message}\n(training stopped at step {self.step}; fix or remove the file, then rerun with --resume)"
        self.save_latest()
        return (f"{message}\n(training stopped at step {self.step}, saved in {self.out / LATEST}; fix or remove the "
                "file, then rerun with --resume)")

    def _end_epoch(self) -> None:
        metrics = self.validate() if self.val_set is not None else {}
        if metrics and self.ctx.is_main:
            key, value = self._selection(metrics)
            self._log_scalars("val", {k: v for k, v in metrics.items() if isinstance(v, (int, float))}, None)
            improved = value is not None and (key not in self.best or value < self.best[key])
            if improved:
                self.best = {key: value, "epoch": self.epoch}
                self.export("best.pth")
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                             if (k in VALIDATION_SHOWN or k == key) and isinstance(v, float))
            if improved:
                best = f"new best, wrote {self.out / 'best.pth'}"
            elif key in self.best:
                best = f"best {key} {self.best[key]:.4g} at epoch {self.best['epoch']}"
            else:
                best = f"no {key}: no validation pixel was scored, so no best.pth yet"
            self._say(f"{self.stage.name} epoch {self.epoch}/{self.config.optim.epochs} validation: {shown} "
                      f"({best})")
        self.save_latest()

    def _selection(self, metrics: dict) -> tuple[str, float | None]:
        return self.stage.select_by, metrics.get(self.stage.select_by)

    @torch.no_grad()
    def validate(self) -> dict:
        """The stage loss, plus the task's validation metrics where the stage asks for them
        (reduced over ranks)."""
        self.student.eval()
        task = self.stage.task
        sampler = ResumableSampler(len(self.val_set), self.ctx, seed=0, shuffle=False)
        sums = {k: torch.tensor(float(v), dtype=torch.float64, device=self.device) for k, v in task.empty_sums().items()}
        loss_sum, batches = torch.zeros((), device=self.device, dtype=torch.float64), 0
        for batch in self._loader(self.val_set, sampler=sampler):
            total, _, pred = self.compute_losses(batch)
            loss_sum += total.double()
            batches += 1
            if self.stage.depth_metrics:
                sums = {key: sums[key] + value for key, value in task.metric_sums(self, batch, pred).items()}
        self.student.train()
        metrics: dict = {"loss": float(mean_over_ranks(loss_sum / max(batches, 1), self.ctx))}
        if self.stage.depth_metrics:
            metrics |= task.finalize(sums)
        return metrics

    def export(self, name: str) -> None:
        """Model-only checkpoint (no optimizer): what the next stage, inference and eval read."""
        if self.ctx.is_main:
            save_checkpoint(self.out / name, self.student, run_config=self.config.to_dict(), epoch=self.epoch, step=self.step)

    # ---------------------------------------------------------------- logging
    def _log_scalars(self, split: str, values: dict, lr: float | None) -> None:
        for key, value in values.items():
            if isinstance(value, float) and math.isfinite(value):
                self.writer.add_scalar(f"{split}/{key}", value, self.step)
        if lr is not None:
            self.writer.add_scalar("train/lr", lr, self.step)
        LOG.info("%s step %d %s", split, self.step, " ".join(f"{k}={v:.5g}" for k, v in values.items() if isinstance(v, float)))

    def _log_panel(self, batch: dict) -> None:
        """TensorBoard image panel of the first sample (the task's tiles side by side)."""
        tiles = self.stage.task.panel(self, batch, self._last_pred.detach().cpu())
        self.writer.add_image("panel", torch.cat(tiles, dim=1)[None], self.step)


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Run one stage; the entry point of ``python -m fuse align|fuse|adapt``."""
    trainer = Trainer(config, resume=resume)
    try:
        started = time.time()
        result = trainer.fit()
        if trainer.ctx.is_main:
            best = (f"; best.pth: epoch {trainer.best['epoch']} ("
                    + ", ".join(f"{k} {v:.4g}" for k, v in trainer.best.items() if k != "epoch") + ")"
                    if trainer.best else "")
            trainer._say(f"{trainer.stage.name} done in {time.time() - started:.1f} s at step {trainer.step}: wrote "
                         f"{trainer.out / 'model.pth'}{best}")
        return result
    finally:
        cleanup()
