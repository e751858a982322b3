"""Serve a checkpoint over HTTP with dynamic batching: ``python -m mnist_lit.serve ckpt_path=<ckpt> [port=8000]``.

A LitServe server. ``POST /predict`` takes an image file's bytes (``image/png`` or ``image/jpeg``), prepared
exactly as ``mnist_lit.predict`` prepares an image file (``prepare``), or a JSON array of 28 rows of 28 gray
levels in [0, 255] laid out like the data set's images (white digit on black for MNIST). It answers
``{"class": <name>, "probability": <p>, "probabilities": {<name>: <p>, ...}}``, the numbers predict gives for
the same image. Requests that arrive within ``batch_timeout`` of each other share one forward pass of up to
``max_batch_size`` images; ``backend=onnx`` runs an export of ``python -m mnist_lit.export`` by onnxruntime.

Every request is read, checked and prepared in the HTTP server (``RequestGate``) before it joins a batch, so a
malformed one is refused alone (a 4xx with ``{"error": <why>}``) and never reaches the model.
"""

from __future__ import annotations

import asyncio
import io
import json
import multiprocessing
import os
import signal
import warnings
from http import HTTPStatus
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor

from mnist_lit.checkpoints import load_classifier
from mnist_lit.command import command
from mnist_lit.config.schema import finite, typed
from mnist_lit.config.settings import ServeSettings
from mnist_lit.errors import ConfigError
from mnist_lit.evaluation.inference import classify
from mnist_lit.export import INPUT, OUTPUT, is_export
from mnist_lit.interrupts import terminate
from mnist_lit.io.readers import MAX_PIXELS
from mnist_lit.predict import SIZE, prepare

IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
JSON_TYPE = "application/json"


class RequestError(Exception):
    """A request the server refuses: an HTTP status in the 4xx range and a sentence saying why."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_image(body: bytes, kind: str) -> Tensor:
    """An image file's bytes (``kind``: PNG or JPEG) -> the uint8 (28, 28) image predict would give the model."""
    try:
        with Image.open(io.BytesIO(body), formats=[kind]) as image:  # reads the header only
            if image.width * image.height > MAX_PIXELS:
                raise RequestError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"an image is at most {MAX_PIXELS:,} pixels, not {image.width}x{image.height}",
                )
            image.load()
            digit = prepare(image)  # mnist_lit.predict's preparation, unchanged
    except RequestError:
        raise
    except Exception as e:  # Pillow's decoders raise many kinds (OSError, SyntaxError, ...) on bad bytes
        why = f"the body is not a readable {kind} image ({type(e).__name__})"
        raise RequestError(HTTPStatus.BAD_REQUEST, why) from None
    if not digit.any():
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "the image holds no digit (every pixel has the background's gray level)",
        )
    return digit


def decode_pixels(body: bytes) -> Tensor:
    """A JSON array of 28 rows of 28 numbers in [0, 255] -> a uint8 (28, 28) image (values rounded)."""
    try:
        rows = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the body is not JSON ({type(e).__name__})") from None
    shape = f"a JSON array of {SIZE} rows of {SIZE} gray levels in [0, 255]"
    if not (isinstance(rows, list) and len(rows) == SIZE and all(isinstance(r, list) and len(r) == SIZE for r in rows)):
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"send {shape}")
    values = [v for row in rows for v in row]
    if not all(map(finite, values)):
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"every value must be a finite number: send {shape}")
    pixels = np.asarray(values, dtype=np.float64).reshape(SIZE, SIZE)
    if pixels.min() < 0 or pixels.max() > 255:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"a value is outside [0, 255]: send {shape}")
    return torch.from_numpy(pixels.round().astype(np.uint8))


def decode_body(body: bytes, content_type: str) -> Tensor:
    """A request's body -> the uint8 (28, 28) image the model reads."""
    if content_type in IMAGE_TYPES:
        return decode_image(body, IMAGE_TYPES[content_type])
    if content_type == JSON_TYPE:
        return decode_pixels(body)
    allowed = ", ".join([*IMAGE_TYPES, JSON_TYPE])
    raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"send {allowed}, not {content_type or 'no Content-Type'}")


async def answer(send: Any, status: HTTPStatus, message: str) -> None:
    """Send ``{"error": message}`` with ``status`` and close the connection (an unread body is not a request)."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": int(status), "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class RequestGate:
    """ASGI middleware in front of ``/predict``: at most ``max_queue`` requests in the server at once (more get
    503); a body of at most ``max_body`` bytes (413), read whole, checked and prepared (``decode_body``); what
    goes on to LitServe is the prepared image as JSON (28x28 integers), which ``DigitAPI`` reads."""

    def __init__(self, app: Any, *, path: str, max_body: int, max_queue: int) -> None:
        self.app, self.path, self.max_body, self.max_queue = app, path, max_body, max_queue
        self.inside = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.inside >= self.max_queue:
            await answer(send, HTTPStatus.SERVICE_UNAVAILABLE, f"busy: {self.max_queue} requests are waiting")
            return
        self.inside += 1
        try:
            try:
                image = await self.read(scope, receive)
            except RequestError as e:
                await answer(send, e.status, str(e))
                return
            body = json.dumps(image.tolist()).encode()
            headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
            headers += [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(body)).encode())]
            sent = False

            async def prepared() -> dict:
                nonlocal sent
                if sent:
                    return await receive()  # the client's disconnect, if it comes
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app({**scope, "headers": headers}, prepared, send)
        finally:
            self.inside -= 1

    async def read(self, scope: dict, receive: Any) -> Tensor:
        """The request's body, prepared; RequestError for one too large or not an image the model can read."""
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.max_body:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a body is at most {self.max_body:,} bytes")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError(HTTPStatus.BAD_REQUEST, "the client left before sending the whole body")
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a body is at most {self.max_body:,} bytes")
            more = message.get("more_body", False)
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        return await asyncio.to_thread(decode_body, b"".join(chunks), content_type)


class DigitAPI(ls.LitAPI):
    """The model behind ``/predict``: a batch of prepared 28x28 images -> each one's class probabilities."""

    def __init__(self, settings: ServeSettings, classes: tuple[str, ...]) -> None:
        with warnings.catch_warnings():  # that batch and unbatch go unused with max_batch_size=1 is meant
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(max_batch_size=settings.max_batch_size, batch_timeout=settings.batch_timeout)
        self.settings, self.classes = settings, classes

    def setup(self, device: str) -> None:
        torch.set_num_threads(self.settings.threads)
        if self.settings.backend == "onnx":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.settings.threads
            path = str(Path(self.settings.onnx_path).expanduser())
            self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        else:
            self.model = load_classifier(self.settings.ckpt_path, device).eval()

    def decode_request(self, request):  # noqa: ANN001 (unannotated: LitServe hands over the request's JSON)
        return torch.tensor(request, dtype=torch.uint8)  # RequestGate checked and prepared it

    def batch(self, inputs: list[Tensor]) -> Tensor:
        return torch.stack(inputs)

    def predict(self, x: Tensor) -> Tensor:
        """Probabilities (N, classes) for a batch (N, 28, 28); (classes,) for one image (max_batch_size=1, where
        LitServe calls neither ``batch`` nor ``unbatch``)."""
        images = x if x.dim() == 3 else x[None]
        if self.settings.backend == "onnx":
            logits = self.session.run([OUTPUT], {INPUT: images[:, None].numpy()})[0]
            probabilities = torch.from_numpy(logits).softmax(dim=1)
        else:
            probabilities = classify(self.model, images)  # mnist_lit.predict's inference
        return probabilities if x.dim() == 3 else probabilities[0]

    def unbatch(self, output: Tensor) -> list[Tensor]:
        return list(output)

    def encode_response(self, output: Tensor) -> dict[str, Any]:
        probabilities = [float(p) for p in output]
        best = int(output.argmax())
        return {
            "class": self.classes[best],
            "probability": probabilities[best],
            "probabilities": dict(zip(self.classes, probabilities, strict=True)),
        }


class Server(ls.LitServer):
    """A LitServer whose child processes leave Ctrl-C to this one.

    A terminal sends Ctrl-C to every process of the group: LitServe's inference workers, uvicorn's server and the
    multiprocessing Manager they talk through would each stop on their own, in no order. The inference workers
    are spawned with SIGINT ignored (a new interpreter keeps an ignored signal ignored); the forked processes
    block it (``forked_child``). Only this process sees it, and LitServe's shutdown stops the others in order
    with SIGTERM, which each still obeys."""

    def launch_inference_worker(self, lit_api: ls.LitAPI) -> list:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return super().launch_inference_worker(lit_api)
        finally:
            signal.signal(signal.SIGINT, previous)


class Announce(ls.Callback):
    """Print the line that says the server is up, once the model is loaded."""

    def __init__(self, line: str) -> None:
        self.line = line

    def on_after_setup(self, *args: Any, **kwargs: Any) -> None:
        print(self.line, flush=True)


def check_onnx(settings: ServeSettings, model: dict[str, Any]) -> None:
    """With ``backend=onnx``: ``onnx_path`` is an export of this checkpoint's network."""
    if not settings.onnx_path:
        raise ConfigError(
            "onnx_path is missing: backend=onnx serves an ONNX file; make one with "
            "python -m mnist_lit.export ckpt_path=<ckpt> output=<file.onnx> and give onnx_path=<file.onnx>"
        )
    import onnx

    path = Path(settings.onnx_path).expanduser()
    if not path.is_file() or not is_export(path):
        raise ConfigError(
            f"onnx_path={settings.onnx_path!r} is not allowed: it is not an ONNX export of python -m mnist_lit.export"
        )
    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    if json.loads(props.get("mnist_lit.model", "null")) != model:
        raise ConfigError(
            f"onnx_path={settings.onnx_path!r} is not allowed: it holds another network than "
            f"ckpt_path={settings.ckpt_path!r}; export this checkpoint"
        )


def make_server(cfg: DictConfig, api_class: type[DigitAPI] = DigitAPI) -> tuple[Server, ServeSettings]:
    """The LitServer for ``cfg`` (conf/serve.yaml), its settings checked, the checkpoint read once."""
    settings = typed(cfg, ServeSettings, "")
    if not settings.ckpt_path:
        raise ConfigError("ckpt_path is missing: give ckpt_path=<run directory>/checkpoints/best.ckpt")
    classifier = load_classifier(settings.ckpt_path)
    model = dict(classifier.hparams.model)
    if classifier.spec.input_shape != (1, SIZE, SIZE):
        raise ConfigError(
            f"ckpt_path={settings.ckpt_path!r} is not allowed: its network reads images of shape "
            f"{classifier.spec.input_shape}, and the server gives it one-channel {SIZE}x{SIZE} images"
        )
    if settings.backend == "onnx":
        check_onnx(settings, model)
    name = str(model.get("name") or model["arch"])
    dataset = classifier.hparams.get("dataset") or "its own images"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    line = (
        f"Serving {name} ({Path(settings.ckpt_path).name}, trained on {dataset}, backend {settings.backend}) at "
        f"http://{host}:{settings.port}/predict  (Ctrl-C stops it)"
    )
    api = api_class(settings, classifier.spec.class_names)
    gate = (RequestGate, {"path": api.api_path, "max_body": settings.max_body, "max_queue": settings.max_queue})
    server = Server(
        api,
        accelerator="cpu" if settings.backend == "onnx" else "auto",
        devices=1,
        workers_per_device=1,
        timeout=settings.timeout,
        middlewares=[gate],
        callbacks=[Announce(line)],
        disable_openapi_url=True,
        fast_queue=True,  # ZeroMQ between the HTTP server and the inference worker, not a Manager's queues
    )
    return server, settings


def forked_child() -> None:
    """In a process forked from the server's (uvicorn's, the Manager): Ctrl-C blocked (see ``Server``); SIGTERM
    ends it (it would otherwise inherit ``serve``'s handler)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def end_children() -> None:
    """Stop the processes LitServe left running: its own shutdown covers a server that has started, not one stopped
    while its model loads."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()


def serve(cfg: DictConfig, api_class: type[DigitAPI] = DigitAPI) -> None:
    """Run the server until Ctrl-C or SIGTERM."""
    server, settings = make_server(cfg, api_class)
    os.register_at_fork(after_in_child=forked_child)
    if settings.host != "127.0.0.1":
        print(
            f"host={settings.host}: listening on every network interface; anyone who reaches this machine can "
            "send requests",
            flush=True,
        )
    stopped_by: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        stopped_by.append(signum)
        for s in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C does not cut the shutdown short
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt  # LitServe shuts down on KeyboardInterrupt: for SIGTERM too

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(
            host=settings.host,
            port=settings.port,
            num_api_servers=1,
            log_level="warning",
            generate_client_file=False,
        )
    except KeyboardInterrupt:
        pass  # stopped while LitServe was starting: end_children stops what it had started
    except OSError as e:
        raise ConfigError(
            f"host={settings.host} port={settings.port} cannot be used: {e.strerror or e}. Give another port="
        ) from e
    finally:
        end_children()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    # LitServe's run returns only after Ctrl-C or SIGTERM (it has no shutdown address here): end as they end a command.
    if stopped_by and stopped_by[0] == signal.SIGTERM:
        terminate()
    raise KeyboardInterrupt


@command("the server stopped", config="serve")
def main(cfg: DictConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    main()
