"""A stream actor's handle on its node's ASR server, shaped like the whisper model it replaces.

:class:`detectors.speech.StreamingTranscriber` calls ``model.transcribe(audio, ...)`` and
reads one segment; :class:`RemoteWhisper` sends that call to the node's
:class:`stream_actor.asr_server.AsrServer` instead, so the streaming logic is the same
whichever runs the model. It is called from the actor's ASR thread, which waits for the
answer.
"""
from __future__ import annotations

import logging
import threading
import time

import ray

from detectors.speech import STREAM_DECODE
from records.backoff import Backoff

log = logging.getLogger(__name__)

RETRY_FOR = 8.0  # seconds a call is retried while Ray restarts the server (then: no words)
CALL_TIMEOUT = 60.0  # a batch never takes this long; past it the server is taken as lost


def server_for(options, node_id: str):
    """The node's ASR server for ``options.model``: found by name, created (pinned to the
    node, detached, restarted by Ray) if it is not there yet."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from stream_actor.asr_server import AsrServer, server_name
    from supervisor.supervisor import NAMESPACE

    return (
        ray.remote(AsrServer)
        .options(
            name=server_name(node_id, options.model),
            namespace=NAMESPACE,
            get_if_exists=True,
            lifetime="detached",  # outlives the stream actor that happened to create it
            max_restarts=-1,
            num_cpus=0,  # node infrastructure: the streams' slots account for the CPU it does for them
            num_gpus=options.gpus,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        )
        .remote(options)
    )


class RemoteWhisper:
    """``transcribe()`` as faster-whisper's, for the calls the streaming transcriber makes."""

    def __init__(self, server, stream_id: str, stop: threading.Event | None = None) -> None:
        self.server = server
        self.stream_id = stream_id
        self.stop = stop or threading.Event()
        self.failed_calls = 0  # calls given up on (the server was lost for longer than RETRY_FOR)
        self.shed_calls = 0  # calls the overloaded server answered without decoding
        self.last_call_seconds = 0.0  # wall time of the last call: the server's queue plus its batch
        self.server_waiting = 0  # calls queued at the server (all streams) as of the last answer

    def transcribe(self, audio, *, language: str = "en", initial_prompt: str | None = None, **kwargs):
        unexpected = {k: v for k, v in kwargs.items() if STREAM_DECODE.get(k, object()) != v}
        if unexpected:
            raise ValueError(f"the ASR server does not implement {unexpected}")
        started = time.monotonic()
        answer = self._call(audio, initial_prompt, language)
        self.last_call_seconds = time.monotonic() - started
        if answer is None:
            return iter(()), None
        self.server_waiting = answer.waiting
        self.shed_calls += answer.shed
        return iter(() if answer.segment is None else (answer.segment,)), None

    def _call(self, audio, prompt, language):
        backoff = Backoff(0.25, 2.0)
        give_up = time.monotonic() + RETRY_FOR
        while True:
            try:
                # a future, not ray.get: this thread is not the actor's event loop, which must not block
                return self.server.transcribe.remote(self.stream_id, audio, prompt, language).future().result(CALL_TIMEOUT)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, TimeoutError) as exc:
                if time.monotonic() >= give_up or not backoff.wait(self.stop):
                    self.failed_calls += 1
                    log.warning("stream %s: ASR server unavailable, %.1f s of audio not transcribed: %s",
                                self.stream_id, len(audio) / 16000.0, type(exc).__name__)  # fmt: skip
                    return None
