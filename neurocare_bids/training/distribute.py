"""Where training runs: one device, all GPUs of a node, or several nodes of a Slurm job.

On Keras's TensorFlow backend (the default), ``execution.distribution`` picks the ``tf.distribute`` strategy
that every training of the group level (folds and final model) is built, compiled and fitted under:

* ``auto`` (default): ``MirroredStrategy`` over all GPUs when more than one is visible (or over
  ``execution.cpu_replicas`` logical CPU devices), otherwise the default single-device strategy;
* ``single``: one device, whatever is visible;
* ``mirrored``: ``MirroredStrategy`` over every visible GPU (or the logical CPU devices);
* ``multi-worker`` (``--distributed``): ``MultiWorkerMirroredStrategy`` across the tasks of a Slurm job
  (``SlurmClusterResolver``) or the cluster in ``TF_CONFIG``; each worker reads its own share of the
  TFRecord files, and only the chief (worker 0) writes outputs.

``training.batch_size`` is the global batch, split across the replicas, so the optimisation is the same
whatever the number of devices; batch-norm statistics are per replica, so results agree with a single
device run within a tolerance, not bit for bit (the documentation states it: Group level, several GPUs).

On the JAX backend (``KERAS_BACKEND=jax``) the same settings choose a ``keras.distribution.DataParallel``
over the devices JAX sees (its GPUs, else its CPU devices: ``execution.cpu_replicas`` or
``XLA_FLAGS=--xla_force_host_platform_device_count=N``), set for the whole process: ``auto`` and ``mirrored``
use every device when there are several, ``single`` one. ``multi-worker`` is TensorFlow's only (a usage
error on JAX). Keras hands the input pipeline's batches (``tf.data``'s or NumPy's) to JAX and splits each global
batch across the devices (which must divide it).

Between trainings :func:`release_models` drops what Keras keeps of the models trained so far.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from ..config import Config
from ..console import tensorflow_installed
from ..errors import UsageError

log = logging.getLogger("neurocare")


@dataclass(frozen=True)
class Placement:
    """The strategy and this process's part in it."""

    strategy: object  # a tf.distribute strategy; None on JAX (the keras.distribution is set globally)
    kind: str  # "single", "mirrored", "multi-worker" (TensorFlow) or "data-parallel" (JAX)
    replicas: int
    worker_index: int = 0
    workers: int = 1
    backend: str = "tensorflow"
    distribution: object = None  # the keras.distribution set for the process (JAX data-parallel), else None

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0

    def scope(self):
        """Where models are built and compiled: the strategy's scope on TensorFlow; on JAX nothing is needed
        (the process-wide ``keras.distribution`` lays the variables out)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def card(self) -> dict:
        """How the training ran, for ``fold.json`` and the model card."""
        return {"KerasBackend": self.backend, "Distribution": self.kind, "Replicas": self.replicas,
                "Workers": self.workers}


_PLACEMENT: Placement | None = None


def placement(cfg: Config) -> Placement:
    """The strategy for this process, created once (TF allows one collective setup per process)."""
    global _PLACEMENT
    if _PLACEMENT is None:
        _PLACEMENT = _create(cfg)
        if _PLACEMENT.kind != "single":
            log.info("distributed training: %s, %d replica(s), worker %d of %d", _PLACEMENT.kind,
                     _PLACEMENT.replicas, _PLACEMENT.worker_index + 1, _PLACEMENT.workers)
    return _PLACEMENT


def _create(cfg: Config) -> Placement:
    import keras

    if keras.config.backend() == "jax":
        return _create_jax(cfg)
    if keras.config.backend() != "tensorflow":
        raise UsageError(f"the group level trains on Keras's TensorFlow or JAX backend, not "
                         f"'{keras.config.backend()}' (KERAS_BACKEND)")
    import tensorflow as tf

    mode, cpu_replicas = cfg.execution.distribution, cfg.execution.cpu_replicas
    if mode == "multi-worker":
        return _multi_worker(tf)
    if cpu_replicas > 1:
        _split_cpu(tf, cpu_replicas)
    gpus = tf.config.list_physical_devices("GPU")
    if mode == "single" or (mode == "auto" and len(gpus) < 2 and cpu_replicas < 2):
        return Placement(tf.distribute.get_strategy(), "single", 1)
    devices = ([f"/gpu:{i}" for i in range(len(gpus))] if gpus
               else [d.name for d in tf.config.list_logical_devices("CPU")])
    if len(devices) < 2 and mode == "mirrored":
        log.warning("distribution = 'mirrored' but only one device is visible; training on it")
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return Placement(strategy, "mirrored", strategy.num_replicas_in_sync)


def _create_jax(cfg: Config) -> Placement:
    import jax
    import keras

    mode, cpu_replicas = cfg.execution.distribution, cfg.execution.cpu_replicas
    if mode == "multi-worker":
        raise UsageError("--distributed (multi-worker training) needs Keras's TensorFlow backend; on JAX, one "
                         "process trains data-parallel over every device of its node: leave KERAS_BACKEND=jax "
                         "or --distributed out")
    if cpu_replicas > 1:
        try:
            jax.config.update("jax_num_cpu_devices", cpu_replicas)
        except RuntimeError:  # JAX's devices already initialised in this process: keep what exists
            log.warning("could not split the CPU into %d devices (JAX already initialised)", cpu_replicas)
    devices = jax.devices()  # the default platform's: GPUs when JAX has them, else the CPU devices
    if mode == "single" or len(devices) < 2:
        if mode == "mirrored":
            log.warning("distribution = 'mirrored' but JAX sees only one device; training on it")
        return Placement(None, "single", 1, backend="jax")
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    return Placement(None, "data-parallel", len(devices), backend="jax", distribution=distribution)


_THREAD_COUNT = 0  # execution.omp_nthreads once set_training_threads applied it (0: not limited)


def set_training_threads(n: int) -> None:
    """At most ``n`` threads for this process's numerical work (``execution.omp_nthreads``; 0: every core it may
    use): TensorFlow's intra- and inter-op pools, OpenMP's (the feature baseline's gradient boosting) and BLAS's.
    Called before TensorFlow runs anything: its pools are created once, when it first runs an operation.

    Why it matters beyond sharing a node: TensorFlow's CPU kernels split their sums by thread, so the number of
    threads, not only the seed, fixes the last digits of a training (and op determinism does not change that)."""
    global _THREAD_COUNT
    if not n:
        return
    import keras
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)  # for the rest of the process (nothing restores it)
    _THREAD_COUNT = n
    if keras.config.backend() == "jax":
        log.warning("omp_nthreads = %d limits OpenMP and BLAS; XLA's CPU threads on JAX are not limited", n)
    if tensorflow_installed():  # also on JAX: tf.data's input pipeline
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError as exc:  # called from Python after TensorFlow has run something
            raise UsageError(f"cannot limit TensorFlow to {n} thread(s) once it has started: {exc}") from None


def training_threads() -> int:
    """The threads a training's kernels split their work over (``fold.json`` ``compute``): the limit set by
    :func:`set_training_threads` (as TensorFlow reports it, where installed), else the cores this process may run
    on (always on JAX, whose XLA CPU threads the limit does not reach)."""
    import keras

    from ..preprocessing.participant import available_cpus

    if _THREAD_COUNT and keras.config.backend() != "jax":
        if tensorflow_installed():  # what TensorFlow itself was told, not only what was asked
            import tensorflow as tf

            return tf.config.threading.get_intra_op_parallelism_threads()
        return _THREAD_COUNT
    return available_cpus()


def release_models() -> None:
    """Drop what Keras keeps of the models trained so far in this process (its global state; TensorFlow's kernel
    cache), between one training and the next. Without it a group run's memory grows with every fold: on the demo,
    the peak of the sixth fold was 650 MiB above the first's, against 440 MiB with it (the rest is TensorFlow's
    own). Keras's global state also holds the JAX distribution, which is set again."""
    import keras

    keras.backend.clear_session()  # and a garbage collection
    if _PLACEMENT is not None and _PLACEMENT.distribution is not None:
        keras.distribution.set_distribution(_PLACEMENT.distribution)


def _split_cpu(tf, n: int) -> None:
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:  # devices already initialised in this process: keep what exists
        log.warning("could not split the CPU into %d logical devices (TensorFlow already initialised)", n)


def _multi_worker(tf) -> Placement:
    if os.environ.get("TF_CONFIG"):
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    elif os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        port = int(os.environ.get("NEUROCARE_PORT", "8888"))
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(port_base=port)
    else:
        raise UsageError("--distributed needs a multi-task Slurm job (srun with --ntasks > 1) or TF_CONFIG; "
                         "on one node, leave it out: all GPUs of the node are used automatically")
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    task = resolver.task_id or 0
    workers = len(resolver.cluster_spec().as_dict().get("worker", [])) or 1
    return Placement(strategy, "multi-worker", strategy.num_replicas_in_sync, int(task), workers)


def worker_share(files: list, place: Placement) -> list:
    """This worker's TFRecord files: seizure-bearing and background files dealt out separately, so every
    worker gets seizures to sample; every file when there are fewer seizure files than workers."""
    if place.workers <= 1:
        return files
    with_seizures = [f for f in files if f.seizure_window_count]
    without = [f for f in files if not f.seizure_window_count]
    if len(with_seizures) < place.workers:
        return files
    return with_seizures[place.worker_index::place.workers] + without[place.worker_index::place.workers]


def fit_multi_worker(model, dataset, *, epochs: int, steps: int, batch_size: int, callbacks: list,
                     place: Placement) -> dict:
    """``model.fit`` for ``MultiWorkerMirroredStrategy``, which Keras 3's ``fit`` cannot run (its TensorFlow
    trainer fails on the distributed batches: keras-team/keras#20585). The same step as ``fit``: per-replica
    losses averaged over the global batch plus the model's regularisation losses, gradients summed across
    replicas by the optimizer, and the same Keras callbacks (early stopping, LR schedule, TensorBoard, ...)."""
    import keras
    import tensorflow as tf

    strategy = place.strategy
    batches = iter(strategy.experimental_distribute_dataset(dataset))
    loss_fn, optimizer = model.loss, model.optimizer

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            predictions = model(x, training=True)
            loss = tf.nn.compute_average_loss(loss_fn.call(y, predictions), global_batch_size=batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function
    def train_step(iterator):
        return strategy.reduce("SUM", strategy.run(replica_step, args=next(iterator)), axis=None)

    history = keras.callbacks.History()
    hooks = keras.callbacks.CallbackList([*callbacks, history], model=model,
                                         epochs=epochs, steps=steps, verbose=0)
    model.stop_training = False
    hooks.on_train_begin()
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        total = 0.0
        for step in range(steps):
            hooks.on_train_batch_begin(step)
            total += float(train_step(batches))
            hooks.on_train_batch_end(step)
        logs = {"loss": total / steps}
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end()
    return history.history
