"""Micro-batching: merge concurrent requests into one ``predict`` call, run off the event loop.

A transformer spends about as long on one pair as on a dozen, so under load it
pays to wait a few milliseconds for company. Requests queue up; one worker
task takes the oldest ones, as many pairs as the last batch had (so a lone
client never waits, and a loaded server fills its batches; ``max_batch_size``
at most) or what came until the oldest has waited ``max_wait_ms`` (counted from
when the model was last free, so that a request left over from a full batch
waits for the others to come back instead of running alone), runs ONE
``predict`` in a worker thread (the event loop keeps serving), and hands each
request its own slice of the results. A classifier that takes ``max_tokens``
(korpair's ``Predictor``) is asked to cut the batch into calls of at most
``max_batch_tokens`` padded tokens, longest pairs first.

With ``batching=False`` every request is predicted alone, still off the event
loop. Either way a single worker thread calls the model, so calls never
overlap: torch models are not safe to call from several threads at once. A
model loaded with ``load_on_model_thread`` is called from the thread that loaded
it (see there why that matters on a CPU).

The queue is bounded: past ``max_queue_pairs`` pairs waiting, ``predict`` raises
``QueueFull`` (the app answers 503 with Retry-After). A request whose caller is
cancelled (its client went away, or it passed its deadline) leaves the queue at
once, so nobody computes work that no one will read.

Example::

    batcher = MicroBatcher(predictor, max_batch_size=32, max_wait_ms=5)
    async with batcher.running():
        [p] = await batcher.predict([Pair("비가 온다", "날씨가 맑다")])
    p.label  # 'contradiction'
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from korpair.types import Pair, Prediction

log = logging.getLogger(__name__)


@runtime_checkable
class Classifier(Protocol):
    """What the server needs from a model: ``korpair.Predictor`` fits, and so does a test fake.

    A regression model also has ``task = "regression"`` and a ``score_range``
    (a ``ScoreRange``), and answers ``Prediction(None, {}, score=x)``; the
    batcher hands predictions on as they are, scores or labels.

    Example::

        class Always:
            labels = ("yes", "no")
            def predict(self, pairs, batch_size=64):
                return [Prediction("yes", {"yes": 1.0, "no": 0.0}) for _ in pairs]
        create_app(Always())

        class Similar:
            labels, task, score_range = ("score",), "regression", ScoreRange(0, 5)
            def predict(self, pairs, batch_size=64):
                return [Prediction(None, {}, score=4.2) for _ in pairs]
        create_app(Similar())
    """

    labels: Sequence[str]

    def predict(self, pairs: Sequence[Pair], batch_size: int) -> Sequence[Prediction]: ...


_Loaded = TypeVar("_Loaded")
# A model -> the thread that loaded it, which its batcher calls it from.
_MODEL_THREADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def load_on_model_thread(load: Callable[[], _Loaded]) -> _Loaded:
    """``load()`` run on a new thread, from which a ``MicroBatcher`` then makes every call to the loaded model.

    PyTorch on the CPU keeps one OpenMP thread pool per thread that calls it, and loading runs torch
    (the bf16 timing, weights): a model loaded on one thread and called from another leaves two pools
    on the same cores, libgomp then stops spinning at its barriers, and every call pays for it (bf16
    single-pair calls on 2 cores: 31-37 ms loaded on the calling thread, 44-48 ms loaded elsewhere).

    Example::

        predictor = load_on_model_thread(lambda: Predictor.from_pretrained("runs/sample/model"))
        create_app(predictor)  # its batcher calls the model from that thread
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="korpair-predict")
    try:
        loaded = executor.submit(load).result()
        _MODEL_THREADS[loaded] = executor
    except BaseException:
        executor.shutdown(wait=False)
        raise
    return loaded


class BatcherClosed(RuntimeError):
    """The batcher is not running (the server is starting or stopping): answer 503."""


class PredictionFailed(RuntimeError):
    """The classifier raised on this request's pairs (a server fault: answer 500)."""


class QueueFull(RuntimeError):
    """Too many pairs wait for the model already: answer 503, and ask to come back in ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)  # a job is itself: the queue removes it by identity
class _Job:
    pairs: list[Pair]
    future: asyncio.Future
    enqueued_at: float  # loop.time(), seconds


class MicroBatcher:
    """Queue of pending requests and the one worker that feeds them to the classifier.

    Example::

        batcher = MicroBatcher(predictor, max_batch_size=32, max_wait_ms=5)
        async with batcher.running():
            results = await asyncio.gather(*(batcher.predict([pair]) for pair in pairs))
    """

    def __init__(self, classifier: Classifier, *, max_batch_size: int = 32, max_wait_ms: float = 5.0,
                 batching: bool = True, max_queue_pairs: int | None = None,
                 max_batch_tokens: int | None = None) -> None:
        if max_batch_size < 1 or max_wait_ms < 0 or (max_queue_pairs is not None and max_queue_pairs < 1):
            raise ValueError(f"need max_batch_size >= 1, max_wait_ms >= 0 and max_queue_pairs >= 1 (or None), "
                             f"got {max_batch_size}, {max_wait_ms} and {max_queue_pairs}")
        self.classifier = classifier
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.batching = batching
        self.max_queue_pairs = max_queue_pairs
        # A classifier that can cap a call's padded tokens (korpair's Predictor) is asked to; a test fake is not.
        takes_tokens = "max_tokens" in inspect.signature(classifier.predict).parameters
        self._token_cap = {"max_tokens": max_batch_tokens} if takes_tokens and max_batch_tokens else {}
        self._seconds_per_pair = 0.0  # of the last model call: how fast the queue drains
        self._last_batch_pairs = 1  # how much company the last batch had: what is worth waiting for
        self._free_since = 0.0  # loop time the last model call ended
        self._queue: deque[_Job] = deque()
        self._queued_pairs = 0
        self._in_flight: list[_Job] = []
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._owns_executor = True

    @property
    def queue_depth(self) -> int:
        """Pairs waiting for the model (not counting the batch it is working on)."""
        return self._queued_pairs

    @property
    def is_running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MicroBatcher]:
        """Start the worker; on exit stop it and fail whatever still waits with ``BatcherClosed``."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def start(self) -> None:
        if self.is_running:
            return
        self._arrived = asyncio.Event()
        # One thread: model calls are serialized, and always come from the same thread (the one that loaded it).
        try:
            self._executor = _MODEL_THREADS.get(self.classifier)
        except TypeError:  # a classifier that cannot be weakly referenced or hashed
            self._executor = None
        self._owns_executor = self._executor is None
        if self._owns_executor:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="korpair-predict")
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="korpair-batcher")

    async def stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        closed = BatcherClosed("the server is shutting down")
        for job in [*self._in_flight, *self._queue]:
            if not job.future.done():
                job.future.set_exception(closed)
        self._queue.clear()
        self._in_flight = []
        self._queued_pairs = 0
        if self._executor is not None and self._owns_executor:
            # A model call still running finishes in its thread; nobody waits for its result.
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None

    def retry_after_s(self) -> int:
        """Whole seconds (1 to 60) the queue needs to drain at the speed of the last model call."""
        return min(60, max(1, math.ceil(self._queued_pairs * self._seconds_per_pair)))

    async def predict(self, pairs: Sequence[Pair]) -> list[Prediction]:
        """Predictions for ``pairs``, in order, computed in some batch together with other requests.

        Raises ``QueueFull`` when ``max_queue_pairs`` would be passed (a request arriving at an
        empty queue is always taken, however large). Cancelling the caller takes the request off the queue.
        """
        if not self.is_running:
            raise BatcherClosed("the server is not running (starting up or shutting down)")
        if not pairs:
            return []
        limit = self.max_queue_pairs
        if limit is not None and self._queued_pairs and self._queued_pairs + len(pairs) > limit:
            raise QueueFull(f"the server is busy: {self._queued_pairs} pairs already wait for the model "
                            f"(the queue holds max_queue_pairs={limit}); retry later", self.retry_after_s())
        loop = asyncio.get_running_loop()
        job = _Job(list(pairs), loop.create_future(), loop.time())
        self._queue.append(job)
        self._queued_pairs += len(job.pairs)
        self._arrived.set()
        try:
            return await job.future
        finally:
            if job.future.cancelled():
                self._forget(job)

    def _forget(self, job: _Job) -> None:
        # The caller gave up: free its place now, so that the queue bound counts live work only.
        try:
            self._queue.remove(job)
        except ValueError:
            return  # the worker has taken it already; its result will be dropped
        self._queued_pairs -= len(job.pairs)

    async def _work(self) -> None:
        while True:
            await self._wait_for_batch()
            jobs = self._take_batch()
            if jobs:
                self._in_flight = jobs
                await self._run(jobs)
                self._in_flight = []

    async def _wait_for_batch(self) -> None:
        """Return once the queue holds as many pairs as the last batch had (a full batch at most), or its oldest
        job has waited ``max_wait_s``.

        Waiting pays only when company is coming: a lone client (the last batch was one pair) goes at once,
        and under load the batch fills up to the size it had, which is how many requests are in flight.
        """
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        if not self.batching:
            return
        loop = asyncio.get_running_loop()
        # Counted from the oldest job's arrival, or from the end of the last call if that came later. Under a
        # steady load of N clients a batch of N - 1 leaves one request behind; counted from its arrival it has
        # waited long enough and runs alone, the N - 1 wait for it, and batches of N - 1 and 1 alternate for
        # good (served OpenVINO int8 at 32 clients: 116 requests/s; 152 with the wait counted from here).
        deadline = max(self._queue[0].enqueued_at, self._free_since) + self.max_wait_s
        while self._queued_pairs < min(self.max_batch_size, self._last_batch_pairs):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take_batch(self) -> list[_Job]:
        # Oldest first and never split a request: a request larger than
        # max_batch_size runs alone (predict cuts it into batch_size chunks).
        jobs = [self._queue.popleft()]
        size = len(jobs[0].pairs)
        while self.batching and self._queue and size + len(self._queue[0].pairs) <= self.max_batch_size:
            jobs.append(self._queue.popleft())
            size += len(jobs[-1].pairs)
        self._queued_pairs -= size
        self._last_batch_pairs = max(1, size)
        return [job for job in jobs if not job.future.done()]  # done = stopped, or its caller gave up

    async def _run(self, jobs: list[_Job]) -> None:
        pairs = [pair for job in jobs for pair in job.pairs]
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            predictions = await loop.run_in_executor(self._executor, self._call_model, pairs)
            self._seconds_per_pair = (loop.time() - started) / len(pairs)
        except Exception as err:
            self._free_since = loop.time()
            if len(jobs) > 1:
                # One bad request must not fail the requests merged with it: retry each alone.
                for job in jobs:
                    if not job.future.done():  # its caller may have given up meanwhile
                        await self._run([job])
                return
            log.error("prediction failed for %d pair(s)", len(pairs), exc_info=err)
            failure = PredictionFailed(f"the model failed on this request: {type(err).__name__}")
            failure.__cause__ = err
            if not jobs[0].future.done():
                jobs[0].future.set_exception(failure)
            return
        self._free_since = loop.time()
        start = 0
        for job in jobs:
            end = start + len(job.pairs)
            if not job.future.done():
                job.future.set_result(predictions[start:end])
            start = end

    def _call_model(self, pairs: list[Pair]) -> list[Prediction]:
        predictions = list(self.classifier.predict(pairs, batch_size=self.max_batch_size, **self._token_cap))
        if len(predictions) != len(pairs):
            raise RuntimeError(f"classifier returned {len(predictions)} predictions for {len(pairs)} pairs")
        return predictions
